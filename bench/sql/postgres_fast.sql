-- dbaasctl benchmark procedures for PostgreSQL: the same contract as deploy/samples/postgres, but cheap.
--
-- Why: the sample procedures run CREATE DATABASE (a copy of template1 through dblink) for every
-- Database, so a storm would only measure how fast PostgreSQL copies files. These give each Database a
-- login role and a schema it owns in the endpoint's own database instead: a few catalog rows per call,
-- so the operator's side (API round trips, scheduling, rendering) is what a storm measures.
--
-- Contract (DESIGN.md): inputs by name as bound parameters; create and rotate return key/value rows
-- (username, password, database, dbName, schema, host, port) with a freshly generated password; delete
-- returns nothing; all three are idempotent (create re-run hands out fresh credentials, delete twice is
-- fine). Names derive from namespace AND name, so the same name in two namespaces never collides.
--
-- No dblink, no GRANT on the shared pg_database row (concurrent GRANTs on one row fail with "tuple
-- concurrently updated"): CONNECT comes from PUBLIC's default privilege, the schema's owner is the role.
--
-- Install (as a superuser, into the database the operator's DSN names):
--   psql -d bench -f bench/sql/postgres_fast.sql

\set ON_ERROR_STOP 1
CREATE SCHEMA IF NOT EXISTS dbaas_fast;
REVOKE ALL ON SCHEMA dbaas_fast FROM PUBLIC;

CREATE OR REPLACE FUNCTION dbaas_fast.ident(k8sNamespace text, k8sName text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
  SELECT 'f_' || left(regexp_replace(lower(k8sName), '[^a-z0-9]+', '_', 'g'), 30) || '_'
         || left(md5(k8sNamespace || '/' || k8sName), 16)
$$;

CREATE OR REPLACE FUNCTION dbaas_fast.new_password() RETURNS text
LANGUAGE sql VOLATILE AS $$
  -- gen_random_uuid() draws from the server's strong random source (pg_strong_random).
  SELECT replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '')
$$;

CREATE OR REPLACE FUNCTION dbaas_fast.credentials(ident text, password text)
RETURNS TABLE(key text, value text)
LANGUAGE sql STABLE AS $$
  SELECT k, v FROM (VALUES
    ('username', ident),
    ('password', password),
    ('database', current_database()::text),
    ('dbName',   current_database()::text),
    ('schema',   ident),
    ('host', coalesce(host(inet_server_addr()), 'localhost')),
    ('port', current_setting('port'))
  ) AS t(k, v)
$$;

CREATE OR REPLACE FUNCTION dbaas_fast.create_database(k8sNamespace text, k8sName text)
RETURNS TABLE(key text, value text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  id text;
  pw text := dbaas_fast.new_password();
BEGIN
  IF coalesce(k8sNamespace, '') = '' OR coalesce(k8sName, '') = '' THEN
    RAISE EXCEPTION 'namespace and name are required';
  END IF;
  id := dbaas_fast.ident(k8sNamespace, k8sName);
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = id) THEN
    EXECUTE format('CREATE ROLE %I LOGIN', id);
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = id) THEN
    EXECUTE format('CREATE SCHEMA %I AUTHORIZATION %I', id, id);
  END IF;
  -- Re-running create hands out fresh working credentials (the old password stops working).
  EXECUTE format('ALTER ROLE %I WITH LOGIN PASSWORD %L', id, pw);
  RETURN QUERY SELECT * FROM dbaas_fast.credentials(id, pw);
END $$;

CREATE OR REPLACE FUNCTION dbaas_fast.rotate_password(k8sNamespace text, k8sName text)
RETURNS TABLE(key text, value text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  id text := dbaas_fast.ident(k8sNamespace, k8sName);
  pw text := dbaas_fast.new_password();
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = id) THEN
    RAISE EXCEPTION 'no database for %/% (role % does not exist)', k8sNamespace, k8sName, id;
  END IF;
  EXECUTE format('ALTER ROLE %I WITH PASSWORD %L', id, pw);
  RETURN QUERY SELECT * FROM dbaas_fast.credentials(id, pw);
END $$;

CREATE OR REPLACE FUNCTION dbaas_fast.drop_database(k8sNamespace text, k8sName text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  id text := dbaas_fast.ident(k8sNamespace, k8sName);
BEGIN
  EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', id);
  EXECUTE format('DROP ROLE IF EXISTS %I', id);
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dbaas_fast FROM PUBLIC;
