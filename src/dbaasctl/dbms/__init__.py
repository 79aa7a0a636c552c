"""dbms."""
