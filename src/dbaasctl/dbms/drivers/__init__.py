"""dbms/drivers."""
