-- Contract-test procedures for the MySQL/MariaDB driver (tests/e2e/test_drivers_*.py). Not a sample.
-- Load with the mariadb client (it understands DELIMITER) into a database of your choice.
DELIMITER //

CREATE OR REPLACE PROCEDURE echo(a LONGTEXT CHARACTER SET utf8mb4, b LONGTEXT CHARACTER SET utf8mb4)
BEGIN
  SELECT 'a' AS `key`, a AS `value` UNION ALL SELECT 'b', b;
END //

CREATE OR REPLACE PROCEDURE with_null()
BEGIN
  SELECT 'username' AS `key`, 'u' AS `value` UNION ALL SELECT 'password', NULL;
END //

CREATE OR REPLACE PROCEDURE extra_columns()
BEGIN
  SELECT 1 AS id, 'username' AS `key`, 'ignored' AS note, 'u' AS `value`
  UNION ALL SELECT 2, 'port', 'ignored', '3306';
END //

CREATE OR REPLACE PROCEDURE non_text()
BEGIN
  SELECT 'port' AS `key`, 3306 AS `value`;
END //

CREATE OR REPLACE PROCEDURE dup_keys()
BEGIN
  SELECT 'password' AS `key`, 'one' AS `value` UNION ALL SELECT 'password', 'two';
END //

CREATE OR REPLACE PROCEDURE wrong_shape()
BEGIN
  SELECT 'a' AS name, 'b' AS val;
END //

-- A debugging SELECT first, then the real key/value set: the key/value set is the result.
CREATE OR REPLACE PROCEDURE two_sets()
BEGIN
  SELECT 'debug' AS note;
  SELECT 'username' AS `key`, 'u' AS `value`;
END //

CREATE OR REPLACE PROCEDURE two_kv_sets()
BEGIN
  SELECT 'username' AS `key`, 'u' AS `value`;
  SELECT 'password' AS `key`, 'p' AS `value`;
END //

CREATE OR REPLACE PROCEDURE raise_error(msg TEXT)
BEGIN
  DECLARE m VARCHAR(128) DEFAULT LEFT(CONCAT('procedure refused: ', msg), 128);
  SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = m;
END //

-- The reference operator lost errors raised after the first result set; we must not.
CREATE OR REPLACE PROCEDURE error_after_rows()
BEGIN
  SELECT 'username' AS `key`, 'u' AS `value`;
  SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'failed after the first result set';
END //

CREATE OR REPLACE PROCEDURE sleep_for(seconds TEXT)
BEGIN
  DO SLEEP(CAST(seconds AS DECIMAL(10, 3)));
  SELECT 'slept' AS `key`, seconds AS `value`;
END //

CREATE OR REPLACE PROCEDURE many(n TEXT)
BEGIN
  SET STATEMENT max_recursive_iterations = 10000000 FOR
  WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < CAST(n AS UNSIGNED))
  SELECT CONCAT('k', i) AS `key`, CONCAT(REPEAT('v', 20), i) AS `value` FROM seq;
END //

CREATE TABLE IF NOT EXISTS deleted (name VARCHAR(255) PRIMARY KEY) //
CREATE OR REPLACE PROCEDURE delete_it(k8sname TEXT)
BEGIN
  INSERT INTO deleted VALUES (k8sname) ON DUPLICATE KEY UPDATE name = name;
END //

DELIMITER ;
