-- Contract-test functions for the PostgreSQL driver (tests/e2e/test_drivers_*.py). Not a sample to deploy.
-- Every function lives in schema ct so the tests also exercise schema-qualified names.
CREATE SCHEMA IF NOT EXISTS ct;

-- Echo inputs back byte-identical, in named (a, b) form and with a mixed-case name like the reference's.
CREATE OR REPLACE FUNCTION ct.echo(a text, b text DEFAULT '')
RETURNS TABLE(key text, value text) LANGUAGE sql AS $$
  SELECT 'a', a UNION ALL SELECT 'b', b
$$;

CREATE OR REPLACE FUNCTION ct.echo_name(k8sName text)
RETURNS TABLE(key text, value text) LANGUAGE sql AS $$ SELECT 'k8sName', k8sName $$;

CREATE OR REPLACE FUNCTION ct.with_null()
RETURNS TABLE(key text, value text) LANGUAGE sql AS $$
  SELECT 'username', 'u' UNION ALL SELECT 'password', NULL
$$;

CREATE OR REPLACE FUNCTION ct.extra_columns()
RETURNS TABLE(id int, key text, note text, value text) LANGUAGE sql AS $$
  SELECT 1, 'username', 'ignored', 'u' UNION ALL SELECT 2, 'port', 'ignored', '5432'
$$;

CREATE OR REPLACE FUNCTION ct.non_text()
RETURNS TABLE(key text, value int) LANGUAGE sql AS $$ SELECT 'port', 5432 $$;

CREATE OR REPLACE FUNCTION ct.empty()
RETURNS TABLE(key text, value text) LANGUAGE sql AS $$ SELECT 'x', 'y' WHERE false $$;

CREATE OR REPLACE FUNCTION ct.dup_keys()
RETURNS TABLE(key text, value text) LANGUAGE sql AS $$
  SELECT 'password', 'one' UNION ALL SELECT 'password', 'two'
$$;

CREATE OR REPLACE FUNCTION ct.null_key()
RETURNS TABLE(key text, value text) LANGUAGE sql AS $$ SELECT NULL::text, 'v' $$;

CREATE OR REPLACE FUNCTION ct.wrong_shape()
RETURNS TABLE(name text, val text) LANGUAGE sql AS $$ SELECT 'a', 'b' $$;

CREATE OR REPLACE FUNCTION ct.wrong_shape_empty()
RETURNS TABLE(name text, val text) LANGUAGE sql AS $$ SELECT 'a', 'b' WHERE false $$;

CREATE OR REPLACE FUNCTION ct.raise_error(msg text)
RETURNS TABLE(key text, value text) LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'procedure refused: %', msg USING HINT = 'ask the DBA';
END $$;

-- Rows first, then an error: the error must win.
CREATE OR REPLACE FUNCTION ct.error_after_rows()
RETURNS TABLE(key text, value text) LANGUAGE plpgsql AS $$
BEGIN
  key := 'username'; value := 'u'; RETURN NEXT;
  RAISE EXCEPTION 'failed after the first row';
END $$;

CREATE OR REPLACE FUNCTION ct.sleep(seconds text)
RETURNS TABLE(key text, value text) LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_sleep(seconds::double precision);
  key := 'slept'; value := seconds; RETURN NEXT;
END $$;

CREATE OR REPLACE FUNCTION ct.many(n text)
RETURNS TABLE(key text, value text) LANGUAGE sql AS $$
  SELECT 'k' || i, repeat('v', 20) || i FROM generate_series(1, n::int) AS i
$$;

-- delete-style routines: a void function and a real procedure (called with CALL).
CREATE TABLE IF NOT EXISTS ct.deleted(name text PRIMARY KEY);
CREATE OR REPLACE FUNCTION ct.delete_void(k8sname text)
RETURNS void LANGUAGE sql AS $$ INSERT INTO ct.deleted VALUES (k8sname) ON CONFLICT DO NOTHING $$;
CREATE OR REPLACE PROCEDURE ct.delete_proc(k8sname text)
LANGUAGE sql AS $$ INSERT INTO ct.deleted VALUES (k8sname) ON CONFLICT DO NOTHING $$;
