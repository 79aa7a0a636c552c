-- Call-counting wrappers around deploy/samples/postgres/procedures.sql, for the reliability suite.
--
-- Each wrapper has the sample's signature (plus an optional `payload` the hostile-input tests template
-- from params or annotations), runs the sample function, then records the call in audit.calls in the
-- same transaction: a call whose transaction did not commit (connection killed, timeout) leaves no row,
-- exactly like its ALTER ROLE. The invariant checker reads this table, so "create ran at most once after
-- success" and "no DBMS call for a namespace that is not allowed" are counted on the server.
-- `issued` keeps the password a create or rotate handed out: this is a throw-away test server, and the
-- leak scan needs every password that ever existed, including those no Secret ever held.
-- `intent` is the operator's idempotency key, passed through; `replayed` marks a call the sample
-- recognised by it as a repeat of one that took effect (it changed nothing: not a side effect).
-- Load after procedures.sql into the same database.

CREATE SCHEMA IF NOT EXISTS audit;

CREATE TABLE IF NOT EXISTS audit.calls (
  id          bigserial PRIMARY KEY,
  op          text NOT NULL,
  namespace   text NOT NULL,
  name        text NOT NULL,
  payload     text,
  started_at  timestamptz NOT NULL,
  finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  issued      text,
  replayed    boolean NOT NULL DEFAULT false
);

-- Did the intent take effect in an earlier transaction? (The sample records it in this one otherwise.)
CREATE OR REPLACE FUNCTION audit.replayed(intent text) RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT coalesce(intent, '') <> '' AND EXISTS (
    SELECT 1 FROM dbaas.intents i WHERE i.intent = replayed.intent AND i.done_at <> now())
$$;

-- Every create that reached the server, committed or not: written through the sample's dblink loopback,
-- so the row is committed at once, even when the call itself is rolled back (killed, timed out).
CREATE TABLE IF NOT EXISTS audit.attempts (
  id         bigserial PRIMARY KEY,
  op         text NOT NULL,
  namespace  text NOT NULL,
  name       text NOT NULL,
  started_at timestamptz NOT NULL
);

CREATE OR REPLACE FUNCTION audit.attempt(op text, k8sNamespace text, k8sName text, started timestamptz)
RETURNS void
-- SECURITY DEFINER: the loopback's user mapping belongs to the installing superuser, not to the caller.
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  PERFORM dblink_exec('dbaas_loopback', format(
    'INSERT INTO audit.attempts(op, namespace, name, started_at) VALUES (%L, %L, %L, %L)',
    op, k8sNamespace, k8sName, started));
END $$;

DROP FUNCTION IF EXISTS audit.create_database(text, text, text);
CREATE OR REPLACE FUNCTION audit.create_database(
  k8sNamespace text, k8sName text, payload text DEFAULT NULL, intent text DEFAULT NULL)
RETURNS TABLE(key text, value text)
LANGUAGE plpgsql AS $$
DECLARE
  started timestamptz := clock_timestamp();
  r record;
  pw text;
BEGIN
  PERFORM audit.attempt('create', k8sNamespace, k8sName, started);
  FOR r IN SELECT c.key AS k, c.value AS v FROM dbaas.create_database(k8sNamespace, k8sName, intent) AS c LOOP
    IF r.k = 'password' THEN pw := r.v; END IF;
    key := r.k;
    value := r.v;
    RETURN NEXT;
  END LOOP;
  INSERT INTO audit.calls(op, namespace, name, payload, started_at, issued, replayed)
    VALUES ('create', k8sNamespace, k8sName, payload, started, pw, audit.replayed(intent));
END $$;

DROP FUNCTION IF EXISTS audit.rotate_password(text, text, text);
CREATE OR REPLACE FUNCTION audit.rotate_password(
  k8sNamespace text, k8sName text, payload text DEFAULT NULL, intent text DEFAULT NULL)
RETURNS TABLE(key text, value text)
LANGUAGE plpgsql AS $$
DECLARE
  started timestamptz := clock_timestamp();
  r record;
  pw text;
BEGIN
  FOR r IN SELECT c.key AS k, c.value AS v FROM dbaas.rotate_password(k8sNamespace, k8sName, intent) AS c LOOP
    IF r.k = 'password' THEN pw := r.v; END IF;
    key := r.k;
    value := r.v;
    RETURN NEXT;
  END LOOP;
  INSERT INTO audit.calls(op, namespace, name, payload, started_at, issued, replayed)
    VALUES ('rotate', k8sNamespace, k8sName, payload, started, pw, audit.replayed(intent));
END $$;

CREATE OR REPLACE FUNCTION audit.drop_database(k8sNamespace text, k8sName text, payload text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  started timestamptz := clock_timestamp();
BEGIN
  PERFORM dbaas.drop_database(k8sNamespace, k8sName);
  INSERT INTO audit.calls(op, namespace, name, payload, started_at)
    VALUES ('delete', k8sNamespace, k8sName, payload, started);
END $$;

-- Calls that succeed on the server only after sleeping (create here, rotate and delete below): widen
-- the window in which a fault (a killed server or operator, a lost leader) hits a call in flight.
DROP FUNCTION IF EXISTS audit.slow_create_database(text, text, text);
CREATE OR REPLACE FUNCTION audit.slow_create_database(
  k8sNamespace text, k8sName text, delay text DEFAULT '0', intent text DEFAULT NULL)
RETURNS TABLE(key text, value text)
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_sleep(delay::double precision);
  RETURN QUERY SELECT * FROM audit.create_database(k8sNamespace, k8sName, NULL, intent);
END $$;

DROP FUNCTION IF EXISTS audit.slow_rotate_password(text, text, text);
CREATE OR REPLACE FUNCTION audit.slow_rotate_password(
  k8sNamespace text, k8sName text, delay text DEFAULT '0', intent text DEFAULT NULL)
RETURNS TABLE(key text, value text)
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_sleep(delay::double precision);
  RETURN QUERY SELECT * FROM audit.rotate_password(k8sNamespace, k8sName, NULL, intent);
END $$;

CREATE OR REPLACE FUNCTION audit.slow_drop_database(k8sNamespace text, k8sName text, delay text DEFAULT '0')
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_sleep(delay::double precision);
  PERFORM audit.drop_database(k8sNamespace, k8sName);
END $$;
