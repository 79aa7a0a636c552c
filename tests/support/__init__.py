"""Test doubles that stand in for real components where a unit test cannot run them (the API server)."""
