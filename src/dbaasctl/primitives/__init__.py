"""Small building blocks shared by the controller kit and the DBMS side.

This package imports nothing of dbaasctl, so `kube/` and `dbms/` can both depend on it without knowing
of each other.
"""
