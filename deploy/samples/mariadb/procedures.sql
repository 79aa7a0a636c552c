-- dbaasctl sample procedures for MariaDB (10.10+ for RANDOM_BYTES; tested on 10.11).
--
-- One database and one user per Database object, named from its namespace AND name (no collision
-- between namespaces), idempotent, returning key/value rows: username, password, database, dbName,
-- host, port. Inputs are positional: "0" = namespace, "1" = name, and for dbaas_create_once and
-- dbaas_rotate_once "2" = the operator's idempotency key, `{{ operation.id }}` (see databaseclass.yaml).
--
-- Exactly once: when the operator repeats a call because the answer of the first was lost, the key is
-- already recorded and the procedure answers the same credentials without changing anything. No password
-- is stored for that: a keyed call's password is derived from the key and a random secret that never
-- leaves this database, so the repeat computes it again. dbaas_create and dbaas_rotate (no key, as the
-- reference operator calls them) issue a fresh random password on every call.
--
-- Identifiers are derived inside the procedure from [a-z0-9_] only, so dynamic SQL never contains
-- user text; the generated password is hex. The procedures run with the definer's rights
-- (SQL SECURITY DEFINER, MariaDB's default): the operator's login only needs EXECUTE on them.
--
-- Install into the database the operator's DSN names (e.g. `dbaas`), as an account that may create
-- databases and users and grant privileges:
--   mariadb dbaas < procedures.sql
-- Optional: what applications should connect to, if not this server's hostname and port:
--   INSERT INTO dbaas_settings VALUES ('host', 'db.example.com'), ('port', '3306')
--     ON DUPLICATE KEY UPDATE value = VALUES(value);

CREATE TABLE IF NOT EXISTS dbaas_settings (
  name  VARCHAR(64) PRIMARY KEY,
  value VARCHAR(255) NOT NULL
);
CREATE TABLE IF NOT EXISTS dbaas_databases (
  namespace  VARCHAR(253) NOT NULL,
  name       VARCHAR(253) NOT NULL,
  ident      VARCHAR(64) NOT NULL UNIQUE,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  rotated_at TIMESTAMP NULL,
  PRIMARY KEY (namespace, name)
);
-- One row per keyed create or rotate that took effect: a repeat of the same key is recognised here.
CREATE TABLE IF NOT EXISTS dbaas_intents (
  intent  VARCHAR(255) PRIMARY KEY,
  op      VARCHAR(16) NOT NULL,
  ident   VARCHAR(64) NOT NULL,
  done_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  KEY (ident)
) ENGINE=InnoDB;
-- The secret keyed passwords are derived from; generated once.
CREATE TABLE IF NOT EXISTS dbaas_password_key (id TINYINT PRIMARY KEY, secret VARCHAR(64) NOT NULL);
INSERT IGNORE INTO dbaas_password_key VALUES (1, LOWER(HEX(RANDOM_BYTES(32))));

DELIMITER //

CREATE OR REPLACE FUNCTION dbaas_ident(ns VARCHAR(253), nm VARCHAR(253)) RETURNS VARCHAR(64)
  DETERMINISTIC
  RETURN CONCAT('d_', LEFT(REGEXP_REPLACE(LOWER(nm), '[^a-z0-9]+', '_'), 30), '_',
                LEFT(SHA2(CONCAT(ns, '/', nm), 256), 16)) //

-- The password of a keyed call (NULL without a key): the same for every repeat of one intent.
CREATE OR REPLACE FUNCTION dbaas_intent_password(intent VARCHAR(255)) RETURNS VARCHAR(64)
  READS SQL DATA
  RETURN (SELECT SHA2(CONCAT(secret, SHA2(CONCAT(secret, NULLIF(intent, '')), 256)), 256)
          FROM dbaas_password_key WHERE id = 1) //

CREATE OR REPLACE PROCEDURE dbaas_credentials(id VARCHAR(64), pw VARCHAR(128))
BEGIN
  DECLARE h VARCHAR(255) DEFAULT COALESCE((SELECT value FROM dbaas_settings WHERE name = 'host'), @@hostname);
  DECLARE p VARCHAR(255) DEFAULT COALESCE((SELECT value FROM dbaas_settings WHERE name = 'port'), @@port);
  SELECT 'username' AS `key`, id AS `value`
  UNION ALL SELECT 'password', pw
  UNION ALL SELECT 'database', id
  UNION ALL SELECT 'dbName', id
  UNION ALL SELECT 'host', h
  UNION ALL SELECT 'port', p;
END //

CREATE OR REPLACE PROCEDURE dbaas_create_once(
  k8sNamespace VARCHAR(253), k8sName VARCHAR(253), intent VARCHAR(255))
body: BEGIN
  DECLARE id VARCHAR(64) DEFAULT dbaas_ident(k8sNamespace, k8sName);
  DECLARE pw VARCHAR(128) DEFAULT COALESCE(dbaas_intent_password(intent), LOWER(HEX(RANDOM_BYTES(24))));
  DECLARE owner VARCHAR(510);
  IF COALESCE(k8sNamespace, '') = '' OR COALESCE(k8sName, '') = '' THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'namespace and name are required';
  END IF;
  IF EXISTS (SELECT 1 FROM dbaas_intents i WHERE i.intent = intent) THEN
    CALL dbaas_credentials(id, pw);  -- a repeat: the same answer, no change
    LEAVE body;
  END IF;
  SET owner = (SELECT CONCAT(namespace, '/', name) FROM dbaas_databases WHERE ident = id);
  IF owner IS NOT NULL AND owner <> CONCAT(k8sNamespace, '/', k8sName) THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'identifier collision with another Database';
  END IF;
  EXECUTE IMMEDIATE CONCAT('CREATE DATABASE IF NOT EXISTS `', id, '` CHARACTER SET utf8mb4');
  EXECUTE IMMEDIATE CONCAT('CREATE USER IF NOT EXISTS ', QUOTE(id), '@''%''');
  -- Re-running create hands out fresh working credentials (the old password stops working).
  EXECUTE IMMEDIATE CONCAT('ALTER USER ', QUOTE(id), '@''%'' IDENTIFIED BY ', QUOTE(pw));
  EXECUTE IMMEDIATE CONCAT('GRANT ALL PRIVILEGES ON `', id, '`.* TO ', QUOTE(id), '@''%''');
  INSERT INTO dbaas_databases(namespace, name, ident) VALUES (k8sNamespace, k8sName, id)
    ON DUPLICATE KEY UPDATE ident = ident;
  IF COALESCE(intent, '') <> '' THEN  -- after the change: a key is only ever recorded for one that happened
    INSERT IGNORE INTO dbaas_intents(intent, op, ident) VALUES (intent, 'create', id);
  END IF;
  CALL dbaas_credentials(id, pw);
END //

CREATE OR REPLACE PROCEDURE dbaas_create(k8sNamespace VARCHAR(253), k8sName VARCHAR(253))
  CALL dbaas_create_once(k8sNamespace, k8sName, NULL) //

CREATE OR REPLACE PROCEDURE dbaas_rotate_once(
  k8sNamespace VARCHAR(253), k8sName VARCHAR(253), intent VARCHAR(255))
body: BEGIN
  DECLARE id VARCHAR(64) DEFAULT dbaas_ident(k8sNamespace, k8sName);
  DECLARE pw VARCHAR(128) DEFAULT COALESCE(dbaas_intent_password(intent), LOWER(HEX(RANDOM_BYTES(24))));
  IF NOT EXISTS (SELECT 1 FROM mysql.user WHERE User = id AND Host = '%') THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'no database for this namespace/name';
  END IF;
  IF EXISTS (SELECT 1 FROM dbaas_intents i WHERE i.intent = intent) THEN
    CALL dbaas_credentials(id, pw);  -- a repeat: the same answer, no change
    LEAVE body;
  END IF;
  EXECUTE IMMEDIATE CONCAT('ALTER USER ', QUOTE(id), '@''%'' IDENTIFIED BY ', QUOTE(pw));
  UPDATE dbaas_databases SET rotated_at = CURRENT_TIMESTAMP WHERE ident = id;
  IF COALESCE(intent, '') <> '' THEN
    INSERT IGNORE INTO dbaas_intents(intent, op, ident) VALUES (intent, 'rotate', id);
  END IF;
  CALL dbaas_credentials(id, pw);
END //

CREATE OR REPLACE PROCEDURE dbaas_rotate(k8sNamespace VARCHAR(253), k8sName VARCHAR(253))
  CALL dbaas_rotate_once(k8sNamespace, k8sName, NULL) //

CREATE OR REPLACE PROCEDURE dbaas_delete(k8sNamespace VARCHAR(253), k8sName VARCHAR(253))
BEGIN
  DECLARE id VARCHAR(64) DEFAULT dbaas_ident(k8sNamespace, k8sName);
  EXECUTE IMMEDIATE CONCAT('DROP DATABASE IF EXISTS `', id, '`');
  EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS ', QUOTE(id), '@''%''');
  DELETE FROM dbaas_databases WHERE ident = id;
  DELETE FROM dbaas_intents WHERE ident = id;
END //

DELIMITER ;
