-- dbaasctl two-phase rotation sample for MariaDB (10.10+; tested on 10.11): A/B users.
--
-- Install after procedures.sql (it uses its helpers), the same way:
--   mariadb dbaas < procedures-ab.sql
-- and use databaseclass-ab.yaml. Each Database gets one database and two users, <ident>_a and
-- <ident>_b, with the same privileges on it (MariaDB has no object owners, so what one creates the
-- other may use and alter). Superseded users are locked, not dropped: views and routines the
-- application created name their user as DEFINER and keep working.
--
-- rotate gives the user NOT in use a new password (unlocking it) and returns it; the one in use keeps
-- working. retire (called by the operator after rotation.gracePeriod) locks the superseded user and
-- ends its connections; it never touches the user in use and may run twice. Which user is in use comes
-- from the Secret (`previous.username`, passed by the class), and falls back to the registry table
-- below when the Secret was missing or modified.

CREATE TABLE IF NOT EXISTS dbaas_ab_logins (
  ident         VARCHAR(64) PRIMARY KEY,
  current_login VARCHAR(80) NOT NULL
);

DELIMITER //

CREATE OR REPLACE FUNCTION dbaas_ab_partner(id VARCHAR(64), login VARCHAR(80)) RETURNS VARCHAR(80)
  DETERMINISTIC
  RETURN IF(login = CONCAT(id, '_a'), CONCAT(id, '_b'), CONCAT(id, '_a')) //

-- Give one of the two users a password (creating it on first use) and the database's privileges.
CREATE OR REPLACE PROCEDURE dbaas_ab_enable(id VARCHAR(64), login VARCHAR(80), pw VARCHAR(128))
BEGIN
  IF login NOT IN (CONCAT(id, '_a'), CONCAT(id, '_b')) THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'not one of the two users of this database';
  END IF;
  EXECUTE IMMEDIATE CONCAT('CREATE USER IF NOT EXISTS ', QUOTE(login), '@''%''');
  EXECUTE IMMEDIATE CONCAT('ALTER USER ', QUOTE(login), '@''%'' IDENTIFIED BY ', QUOTE(pw), ' ACCOUNT UNLOCK');
  EXECUTE IMMEDIATE CONCAT('GRANT ALL PRIVILEGES ON `', id, '`.* TO ', QUOTE(login), '@''%''');
  INSERT INTO dbaas_ab_logins(ident, current_login) VALUES (id, login)
    ON DUPLICATE KEY UPDATE current_login = VALUES(current_login);
END //

CREATE OR REPLACE PROCEDURE dbaas_ab_credentials(id VARCHAR(64), login VARCHAR(80), pw VARCHAR(128))
BEGIN
  DECLARE h VARCHAR(255) DEFAULT COALESCE((SELECT value FROM dbaas_settings WHERE name = 'host'), @@hostname);
  DECLARE p VARCHAR(255) DEFAULT COALESCE((SELECT value FROM dbaas_settings WHERE name = 'port'), @@port);
  SELECT 'username' AS `key`, login AS `value`
  UNION ALL SELECT 'password', pw
  UNION ALL SELECT 'database', id
  UNION ALL SELECT 'dbName', id
  UNION ALL SELECT 'host', h
  UNION ALL SELECT 'port', p;
END //

CREATE OR REPLACE PROCEDURE dbaas_create_ab(k8sNamespace VARCHAR(253), k8sName VARCHAR(253))
BEGIN
  DECLARE id VARCHAR(64) DEFAULT dbaas_ident(k8sNamespace, k8sName);
  DECLARE pw VARCHAR(128) DEFAULT LOWER(HEX(RANDOM_BYTES(24)));
  DECLARE owner VARCHAR(510);
  DECLARE login VARCHAR(80);
  IF COALESCE(k8sNamespace, '') = '' OR COALESCE(k8sName, '') = '' THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'namespace and name are required';
  END IF;
  SET owner = (SELECT CONCAT(namespace, '/', name) FROM dbaas_databases WHERE ident = id);
  IF owner IS NOT NULL AND owner <> CONCAT(k8sNamespace, '/', k8sName) THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'identifier collision with another Database';
  END IF;
  EXECUTE IMMEDIATE CONCAT('CREATE DATABASE IF NOT EXISTS `', id, '` CHARACTER SET utf8mb4');
  INSERT INTO dbaas_databases(namespace, name, ident) VALUES (k8sNamespace, k8sName, id)
    ON DUPLICATE KEY UPDATE ident = ident;
  -- Re-running create hands out fresh working credentials for the user in use.
  SET login = COALESCE((SELECT current_login FROM dbaas_ab_logins WHERE ident = id), CONCAT(id, '_a'));
  CALL dbaas_ab_enable(id, login, pw);
  CALL dbaas_ab_credentials(id, login, pw);
END //

CREATE OR REPLACE PROCEDURE dbaas_rotate_ab(k8sNamespace VARCHAR(253), k8sName VARCHAR(253), inUse VARCHAR(80))
BEGIN
  DECLARE id VARCHAR(64) DEFAULT dbaas_ident(k8sNamespace, k8sName);
  DECLARE pw VARCHAR(128) DEFAULT LOWER(HEX(RANDOM_BYTES(24)));
  DECLARE cur VARCHAR(80);
  DECLARE next_login VARCHAR(80);
  IF NOT EXISTS (SELECT 1 FROM dbaas_databases WHERE ident = id) THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'no database for this namespace/name';
  END IF;
  SET cur = (SELECT current_login FROM dbaas_ab_logins WHERE ident = id);
  -- The Secret says which user applications use; a repeated call rotates the same partner again.
  IF inUse IN (CONCAT(id, '_a'), CONCAT(id, '_b')) THEN
    SET cur = inUse;
  END IF;
  SET next_login = dbaas_ab_partner(id, COALESCE(cur, CONCAT(id, '_a')));
  CALL dbaas_ab_enable(id, next_login, pw);
  UPDATE dbaas_databases SET rotated_at = CURRENT_TIMESTAMP WHERE ident = id;
  CALL dbaas_ab_credentials(id, next_login, pw);
END //

CREATE OR REPLACE PROCEDURE dbaas_retire_ab(k8sNamespace VARCHAR(253), k8sName VARCHAR(253), retiredUser VARCHAR(80))
BEGIN
  DECLARE id VARCHAR(64) DEFAULT dbaas_ident(k8sNamespace, k8sName);
  DECLARE cur VARCHAR(80);
  DECLARE target VARCHAR(80);
  DECLARE done INT DEFAULT 0;
  DECLARE conn BIGINT;
  DECLARE sessions CURSOR FOR SELECT p.ID FROM information_schema.PROCESSLIST p WHERE p.USER = target;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
  -- A session that ended by itself meanwhile is not an error.
  DECLARE CONTINUE HANDLER FOR 1094 BEGIN END;
  SET cur = (SELECT current_login FROM dbaas_ab_logins WHERE ident = id);
  IF cur IS NOT NULL THEN
    SET target = IF(retiredUser IN (CONCAT(id, '_a'), CONCAT(id, '_b')), retiredUser, dbaas_ab_partner(id, cur));
    -- Never the user in use.
    IF target <> cur AND EXISTS (SELECT 1 FROM mysql.user WHERE User = target AND Host = '%') THEN
      EXECUTE IMMEDIATE CONCAT('ALTER USER ', QUOTE(target), '@''%'' ACCOUNT LOCK');
      OPEN sessions;
      end_sessions: LOOP
        FETCH sessions INTO conn;
        IF done THEN
          LEAVE end_sessions;
        END IF;
        KILL CONNECTION conn;
      END LOOP;
      CLOSE sessions;
    END IF;
  END IF;
END //

CREATE OR REPLACE PROCEDURE dbaas_delete_ab(k8sNamespace VARCHAR(253), k8sName VARCHAR(253))
BEGIN
  DECLARE id VARCHAR(64) DEFAULT dbaas_ident(k8sNamespace, k8sName);
  EXECUTE IMMEDIATE CONCAT('DROP DATABASE IF EXISTS `', id, '`');
  EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS ', QUOTE(CONCAT(id, '_a')), '@''%''');
  EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS ', QUOTE(CONCAT(id, '_b')), '@''%''');
  DELETE FROM dbaas_ab_logins WHERE ident = id;
  DELETE FROM dbaas_databases WHERE ident = id;
END //

DELIMITER ;
