-- Procedures for tests/e2e/test_chart_rbac.py: a login role plus a schema per Database.
-- Idempotent as the contract requires: create may run again after a crash, delete after a delete.
CREATE SCHEMA IF NOT EXISTS chartrbac;

CREATE OR REPLACE FUNCTION chartrbac.create_db(k8sName text)
RETURNS TABLE(key text, value text) LANGUAGE plpgsql AS $$
DECLARE
  pw text := md5(random()::text || clock_timestamp()::text);
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = k8sName) THEN
    EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', k8sName, pw);
  ELSE
    EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', k8sName, pw);
  END IF;
  EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', k8sName, k8sName);
  RETURN QUERY VALUES ('username', k8sName), ('password', pw);
END $$;

CREATE OR REPLACE FUNCTION chartrbac.rotate_db(k8sName text)
RETURNS TABLE(key text, value text) LANGUAGE plpgsql AS $$
DECLARE
  pw text := md5(random()::text || clock_timestamp()::text);
BEGIN
  EXECUTE format('ALTER ROLE %I PASSWORD %L', k8sName, pw);
  RETURN QUERY VALUES ('username', k8sName), ('password', pw);
END $$;

CREATE OR REPLACE FUNCTION chartrbac.delete_db(k8sName text)
RETURNS TABLE(key text, value text) LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', k8sName);
  EXECUTE format('DROP ROLE IF EXISTS %I', k8sName);
  RETURN;
END $$;
