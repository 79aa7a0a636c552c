-- dbaasctl sample procedures for PostgreSQL (15+; tested on 15).
--
-- What they do: one database and one login role per Database object, named from its namespace AND
-- name (so "shop/orders" and "billing/orders" never share a database), idempotent, returning
-- key/value rows: username, password, database, dbName, host, port.
--
-- CREATE DATABASE cannot run inside a function (it refuses any transaction block), so these functions
-- run exactly that statement, and DROP DATABASE, through dblink on a loopback connection. The
-- loopback's login lives in a USER MAPPING (readable by superusers only), never in function text.
-- Role creation and passwords stay local: no password is ever sent through dblink, so none lands in a
-- statement log. The functions are SECURITY DEFINER: the operator's own login only needs EXECUTE.
--
-- Install (as a superuser, into the database the operator's DSN names, e.g. `dbaas`):
--   psql -v loopback_user=<superuser> -v loopback_password=<its password> -d dbaas -f procedures.sql
-- Optional: what applications should connect to, if not the address the operator used:
--   INSERT INTO dbaas.settings VALUES ('host', 'pg.example.com'), ('port', '5432')
--     ON CONFLICT (name) DO UPDATE SET value = excluded.value;

\set ON_ERROR_STOP 1
CREATE EXTENSION IF NOT EXISTS dblink;
CREATE SCHEMA IF NOT EXISTS dbaas;
REVOKE ALL ON SCHEMA dbaas FROM PUBLIC;

CREATE TABLE IF NOT EXISTS dbaas.settings (name text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS dbaas.databases (
  namespace   text NOT NULL,
  name        text NOT NULL,
  ident       text NOT NULL UNIQUE,
  created_at  timestamptz NOT NULL DEFAULT now(),
  rotated_at  timestamptz,
  PRIMARY KEY (namespace, name)
);

-- The loopback server: the Unix socket of this very server (no listen address needed).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_foreign_server WHERE srvname = 'dbaas_loopback') THEN
    EXECUTE format(
      'CREATE SERVER dbaas_loopback FOREIGN DATA WRAPPER dblink_fdw OPTIONS (host %L, port %L, dbname %L)',
      split_part(current_setting('unix_socket_directories'), ',', 1),
      current_setting('port'),
      current_database());
  END IF;
END $$;
DROP USER MAPPING IF EXISTS FOR CURRENT_USER SERVER dbaas_loopback;
CREATE USER MAPPING FOR CURRENT_USER SERVER dbaas_loopback
  OPTIONS (user :'loopback_user', password :'loopback_password');

-- A safe, stable identifier: readable prefix from the name + a hash of namespace/name.
CREATE OR REPLACE FUNCTION dbaas.ident(k8sNamespace text, k8sName text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
  SELECT 'd_' || left(regexp_replace(lower(k8sName), '[^a-z0-9]+', '_', 'g'), 30) || '_'
         || left(md5(k8sNamespace || '/' || k8sName), 16)
$$;

CREATE OR REPLACE FUNCTION dbaas.new_password() RETURNS text
LANGUAGE sql VOLATILE AS $$
  -- gen_random_uuid() draws from the server's strong random source (pg_strong_random).
  SELECT replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '')
$$;

CREATE OR REPLACE FUNCTION dbaas.credentials(ident text, password text)
RETURNS TABLE(key text, value text)
LANGUAGE sql STABLE AS $$
  SELECT k, v FROM (VALUES
    ('username', ident),
    ('password', password),
    ('database', ident),
    ('dbName',   ident),
    ('host', coalesce((SELECT s.value FROM dbaas.settings s WHERE s.name = 'host'),
                      host(inet_server_addr()), 'localhost')),
    ('port', coalesce((SELECT s.value FROM dbaas.settings s WHERE s.name = 'port'),
                      current_setting('port')))
  ) AS t(k, v)
$$;

CREATE OR REPLACE FUNCTION dbaas.create_database(k8sNamespace text, k8sName text)
RETURNS TABLE(key text, value text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  id text := dbaas.ident(k8sNamespace, k8sName);
  pw text := dbaas.new_password();
  owner_ns text;
  owner_name text;
BEGIN
  IF coalesce(k8sNamespace, '') = '' OR coalesce(k8sName, '') = '' THEN
    RAISE EXCEPTION 'namespace and name are required';
  END IF;
  SELECT d.namespace, d.name INTO owner_ns, owner_name FROM dbaas.databases d WHERE d.ident = id;
  IF FOUND AND (owner_ns, owner_name) IS DISTINCT FROM (k8sNamespace, k8sName) THEN
    RAISE EXCEPTION 'identifier % already belongs to %/%', id, owner_ns, owner_name;
  END IF;
  -- Role first (committed by dblink, without a password) so CREATE DATABASE can name it as owner.
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = id) THEN
    PERFORM dblink_exec('dbaas_loopback', format('CREATE ROLE %I LOGIN', id));
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = id) THEN
    PERFORM dblink_exec('dbaas_loopback', format('CREATE DATABASE %I OWNER %I', id, id));
  END IF;
  -- Re-running create hands out fresh working credentials (the old password stops working).
  EXECUTE format('ALTER ROLE %I WITH LOGIN PASSWORD %L', id, pw);
  EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', id);
  EXECUTE format('GRANT ALL ON DATABASE %I TO %I', id, id);
  INSERT INTO dbaas.databases(namespace, name, ident) VALUES (k8sNamespace, k8sName, id)
    ON CONFLICT (namespace, name) DO NOTHING;
  RETURN QUERY SELECT * FROM dbaas.credentials(id, pw);
END $$;

CREATE OR REPLACE FUNCTION dbaas.rotate_password(k8sNamespace text, k8sName text)
RETURNS TABLE(key text, value text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  id text := dbaas.ident(k8sNamespace, k8sName);
  pw text := dbaas.new_password();
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = id) THEN
    RAISE EXCEPTION 'no database for %/% (role % does not exist)', k8sNamespace, k8sName, id;
  END IF;
  EXECUTE format('ALTER ROLE %I WITH PASSWORD %L', id, pw);
  UPDATE dbaas.databases SET rotated_at = now() WHERE ident = id;
  RETURN QUERY SELECT * FROM dbaas.credentials(id, pw);
END $$;

CREATE OR REPLACE FUNCTION dbaas.drop_database(k8sNamespace text, k8sName text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  id text := dbaas.ident(k8sNamespace, k8sName);
BEGIN
  -- WITH (FORCE) disconnects the application's sessions first (PostgreSQL 13+).
  PERFORM dblink_exec('dbaas_loopback', format('DROP DATABASE IF EXISTS %I WITH (FORCE)', id));
  PERFORM dblink_exec('dbaas_loopback', format('DROP ROLE IF EXISTS %I', id));
  DELETE FROM dbaas.databases WHERE ident = id;
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dbaas FROM PUBLIC;
