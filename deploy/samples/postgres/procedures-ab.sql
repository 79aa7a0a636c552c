-- dbaasctl two-phase rotation sample for PostgreSQL (15+; tested on 15): A/B login roles.
--
-- Install after procedures.sql (it uses its helpers), the same way:
--   psql -d dbaas -f procedures-ab.sql
-- and use databaseclass-ab.yaml. Each Database gets a database owned by a NOLOGIN owner role
-- (d_<name>_<hash>) and two login roles, <owner>_a and <owner>_b, members of it. Every login starts
-- its session as the owner role (ALTER ROLE ... SET role), so whatever the application creates is
-- owned by the owner role: grants and ownership are the same whichever login is in use.
--
-- rotate gives the login NOT in use a new password and returns it; the one in use keeps working.
-- retire (called by the operator after rotation.gracePeriod) takes LOGIN away from the superseded
-- login, clears its password and ends its sessions; it never touches the login in use and may run
-- twice. Which login is in use comes from the Secret (`previous.username`, passed by the class),
-- and falls back to the registry table below when the Secret was missing or modified.

\set ON_ERROR_STOP 1
CREATE TABLE IF NOT EXISTS dbaas.ab_logins (
  ident         text PRIMARY KEY,
  current_login text NOT NULL
);

CREATE OR REPLACE FUNCTION dbaas.ab_partner(id text, login text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN login = id || '_a' THEN id || '_b' ELSE id || '_a' END
$$;

-- Give one of the two logins a password (creating it on first use); it acts as the owner role.
CREATE OR REPLACE FUNCTION dbaas.ab_enable(id text, login text, pw text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  IF login NOT IN (id || '_a', id || '_b') THEN
    RAISE EXCEPTION 'login % is not one of the two logins of %', login, id;
  END IF;
  -- Through the loopback: a security-definer function may not set a role default itself.
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = login) THEN
    PERFORM dblink_exec('dbaas_loopback', format('CREATE ROLE %I NOLOGIN IN ROLE %I', login, id));
  END IF;
  PERFORM dblink_exec('dbaas_loopback', format('ALTER ROLE %I SET role = %I', login, id));
  EXECUTE format('ALTER ROLE %I WITH LOGIN PASSWORD %L', login, pw);
  INSERT INTO dbaas.ab_logins(ident, current_login) VALUES (id, login)
    ON CONFLICT (ident) DO UPDATE SET current_login = excluded.current_login;
END $$;

CREATE OR REPLACE FUNCTION dbaas.ab_credentials(id text, login text, pw text)
RETURNS TABLE(key text, value text)
LANGUAGE sql STABLE AS $$
  SELECT c.key, CASE WHEN c.key = 'username' THEN login ELSE c.value END
  FROM dbaas.credentials(id, pw) c
$$;

CREATE OR REPLACE FUNCTION dbaas.create_database_ab(k8sNamespace text, k8sName text)
RETURNS TABLE(key text, value text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  id text := dbaas.ident(k8sNamespace, k8sName);
  pw text := dbaas.new_password();
  login text;
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
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = id) THEN
    PERFORM dblink_exec('dbaas_loopback', format('CREATE ROLE %I NOLOGIN', id));
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = id) THEN
    PERFORM dblink_exec('dbaas_loopback', format('CREATE DATABASE %I OWNER %I', id, id));
  END IF;
  EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', id);
  EXECUTE format('GRANT ALL ON DATABASE %I TO %I', id, id);
  INSERT INTO dbaas.databases(namespace, name, ident) VALUES (k8sNamespace, k8sName, id)
    ON CONFLICT (namespace, name) DO NOTHING;
  -- Re-running create hands out fresh working credentials for the login in use.
  SELECT a.current_login INTO login FROM dbaas.ab_logins a WHERE a.ident = id;
  login := coalesce(login, id || '_a');
  PERFORM dbaas.ab_enable(id, login, pw);
  RETURN QUERY SELECT * FROM dbaas.ab_credentials(id, login, pw);
END $$;

CREATE OR REPLACE FUNCTION dbaas.rotate_ab(k8sNamespace text, k8sName text, inUse text)
RETURNS TABLE(key text, value text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  id text := dbaas.ident(k8sNamespace, k8sName);
  pw text := dbaas.new_password();
  current_login text;
  next_login text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = id) THEN
    RAISE EXCEPTION 'no database for %/% (role % does not exist)', k8sNamespace, k8sName, id;
  END IF;
  SELECT a.current_login INTO current_login FROM dbaas.ab_logins a WHERE a.ident = id FOR UPDATE;
  -- The Secret says which login applications use; a repeated call rotates the same partner again.
  IF inUse IN (id || '_a', id || '_b') THEN
    current_login := inUse;
  END IF;
  next_login := dbaas.ab_partner(id, coalesce(current_login, id || '_a'));
  PERFORM dbaas.ab_enable(id, next_login, pw);
  UPDATE dbaas.databases SET rotated_at = now() WHERE ident = id;
  RETURN QUERY SELECT * FROM dbaas.ab_credentials(id, next_login, pw);
END $$;

CREATE OR REPLACE FUNCTION dbaas.retire_ab(k8sNamespace text, k8sName text, retiredUser text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  id text := dbaas.ident(k8sNamespace, k8sName);
  current_login text;
  target text;
BEGIN
  SELECT a.current_login INTO current_login FROM dbaas.ab_logins a WHERE a.ident = id;
  IF current_login IS NULL THEN
    RETURN;  -- nothing was rotated (or the database is gone): nothing to retire
  END IF;
  target := CASE WHEN retiredUser IN (id || '_a', id || '_b') THEN retiredUser
                 ELSE dbaas.ab_partner(id, current_login) END;
  IF target = current_login OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = target) THEN
    RETURN;  -- never the login in use
  END IF;
  EXECUTE format('ALTER ROLE %I WITH NOLOGIN PASSWORD NULL', target);
  PERFORM pg_terminate_backend(s.pid) FROM pg_stat_activity s WHERE s.usename = target;
END $$;

CREATE OR REPLACE FUNCTION dbaas.drop_database_ab(k8sNamespace text, k8sName text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  id text := dbaas.ident(k8sNamespace, k8sName);
BEGIN
  PERFORM dblink_exec('dbaas_loopback', format('DROP DATABASE IF EXISTS %I WITH (FORCE)', id));
  PERFORM dblink_exec('dbaas_loopback', format('DROP ROLE IF EXISTS %I', id || '_a'));
  PERFORM dblink_exec('dbaas_loopback', format('DROP ROLE IF EXISTS %I', id || '_b'));
  PERFORM dblink_exec('dbaas_loopback', format('DROP ROLE IF EXISTS %I', id));
  DELETE FROM dbaas.ab_logins WHERE ident = id;
  DELETE FROM dbaas.databases WHERE ident = id;
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dbaas FROM PUBLIC;
