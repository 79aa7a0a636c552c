-- Procedures for tests/e2e/test_chart_rbac.py: a database and a user per Database.
-- Idempotent as the contract requires. Identifiers are quoted here, inside the DBMS; the operator
-- only ever passes the name as a bound parameter.
DELIMITER //

CREATE OR REPLACE PROCEDURE chartrbac_create(k8sName VARCHAR(64))
BEGIN
  DECLARE pw VARCHAR(64) DEFAULT LEFT(SHA2(CONCAT(RAND(), NOW(6)), 256), 32);
  SET @ident = CONCAT('`', REPLACE(k8sName, '`', '``'), '`');
  SET @stmt = CONCAT('CREATE DATABASE IF NOT EXISTS ', @ident);
  PREPARE s FROM @stmt; EXECUTE s; DEALLOCATE PREPARE s;
  SET @stmt = CONCAT('CREATE OR REPLACE USER ', QUOTE(k8sName), '@''%'' IDENTIFIED BY ', QUOTE(pw));
  PREPARE s FROM @stmt; EXECUTE s; DEALLOCATE PREPARE s;
  SET @stmt = CONCAT('GRANT ALL ON ', @ident, '.* TO ', QUOTE(k8sName), '@''%''');
  PREPARE s FROM @stmt; EXECUTE s; DEALLOCATE PREPARE s;
  SELECT 'username' AS `key`, k8sName AS `value` UNION ALL SELECT 'password', pw;
END //

CREATE OR REPLACE PROCEDURE chartrbac_rotate(k8sName VARCHAR(64))
BEGIN
  DECLARE pw VARCHAR(64) DEFAULT LEFT(SHA2(CONCAT(RAND(), NOW(6)), 256), 32);
  SET @stmt = CONCAT('ALTER USER ', QUOTE(k8sName), '@''%'' IDENTIFIED BY ', QUOTE(pw));
  PREPARE s FROM @stmt; EXECUTE s; DEALLOCATE PREPARE s;
  SELECT 'username' AS `key`, k8sName AS `value` UNION ALL SELECT 'password', pw;
END //

CREATE OR REPLACE PROCEDURE chartrbac_delete(k8sName VARCHAR(64))
BEGIN
  SET @stmt = CONCAT('DROP DATABASE IF EXISTS `', REPLACE(k8sName, '`', '``'), '`');
  PREPARE s FROM @stmt; EXECUTE s; DEALLOCATE PREPARE s;
  SET @stmt = CONCAT('DROP USER IF EXISTS ', QUOTE(k8sName), '@''%''');
  PREPARE s FROM @stmt; EXECUTE s; DEALLOCATE PREPARE s;
END //

DELIMITER ;
