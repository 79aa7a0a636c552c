"""The e2e test bed: a real control plane and real DBMS servers, reusable by tests, `make demo` and bench."""
