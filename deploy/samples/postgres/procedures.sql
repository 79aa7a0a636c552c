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
-- Exactly once: create and rotate take the operator's idempotency key (`{{ operation.id }}`, one per
-- intent) as `intent`. When the operator repeats a call because the answer of the first was lost, the
-- key is already recorded: the function returns the same credentials and changes nothing. No password
-- is stored for that: a keyed call's password is derived from the key and a random secret that never
-- leaves this database (SHA-256 in an HMAC-like nesting), so the repeat can compute it again. Without a
-- key (older classes) each call issues a fresh random password, as before.
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
-- One row per keyed create or rotate that took effect: a repeat of the same key is recognised here.
CREATE TABLE IF NOT EXISTS dbaas.intents (
  intent      text PRIMARY KEY,
  op          text NOT NULL,
  ident       text NOT NULL,
  done_at     timestamptz NOT NULL DEFAULT now()
);
-- The secret keyed passwords are derived from; generated once, readable by superusers only.
CREATE TABLE IF NOT EXISTS dbaas.password_key (
  id     smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  secret text NOT NULL
);
INSERT INTO dbaas.password_key(secret)
  SELECT replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '')
  ON CONFLICT DO NOTHING;

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

-- The password of a keyed call: the same for every repeat of one intent, unpredictable without the secret.
CREATE OR REPLACE FUNCTION dbaas.intent_password(intent text) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT encode(sha256(convert_to(k.secret || encode(sha256(convert_to(k.secret || intent, 'UTF8')), 'hex'),
                                  'UTF8')), 'hex')
  FROM dbaas.password_key k
$$;

-- Records a keyed call; false when the key was recorded before (this call repeats one that took effect).
-- A repeat racing the first call waits on the key's row until the first one's transaction ends.
CREATE OR REPLACE FUNCTION dbaas.first_call(intent text, op text, ident text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  IF intent IS NULL OR intent = '' THEN
    RETURN true;
  END IF;
  INSERT INTO dbaas.intents(intent, op, ident) VALUES (intent, op, ident) ON CONFLICT DO NOTHING;
  RETURN FOUND;
END $$;

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

-- Earlier versions took no intent: drop them, or a two-argument call would be ambiguous.
DROP FUNCTION IF EXISTS dbaas.create_database(text, text);
DROP FUNCTION IF EXISTS dbaas.rotate_password(text, text);

CREATE OR REPLACE FUNCTION dbaas.create_database(k8sNamespace text, k8sName text, intent text DEFAULT NULL)
RETURNS TABLE(key text, value text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  id text := dbaas.ident(k8sNamespace, k8sName);
  pw text := coalesce(dbaas.intent_password(nullif(intent, '')), dbaas.new_password());
  owner_ns text;
  owner_name text;
BEGIN
  IF coalesce(k8sNamespace, '') = '' OR coalesce(k8sName, '') = '' THEN
    RAISE EXCEPTION 'namespace and name are required';
  END IF;
  IF NOT dbaas.first_call(intent, 'create', id) THEN
    RETURN QUERY SELECT * FROM dbaas.credentials(id, pw);  -- a repeat: the same answer, no change
    RETURN;
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

CREATE OR REPLACE FUNCTION dbaas.rotate_password(k8sNamespace text, k8sName text, intent text DEFAULT NULL)
RETURNS TABLE(key text, value text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  id text := dbaas.ident(k8sNamespace, k8sName);
  pw text := coalesce(dbaas.intent_password(nullif(intent, '')), dbaas.new_password());
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = id) THEN
    RAISE EXCEPTION 'no database for %/% (role % does not exist)', k8sNamespace, k8sName, id;
  END IF;
  IF NOT dbaas.first_call(intent, 'rotate', id) THEN
    RETURN QUERY SELECT * FROM dbaas.credentials(id, pw);  -- a repeat: the same answer, no change
    RETURN;
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
  DELETE FROM dbaas.intents i WHERE i.ident = id;
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dbaas FROM PUBLIC;
