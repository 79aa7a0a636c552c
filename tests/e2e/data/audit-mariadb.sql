-- Call-counting wrappers around deploy/samples/mariadb/procedures.sql, for the reliability suite.
--
-- Each wrapper has the sample's positional signature, runs the sample procedure (whose key/value row set
-- goes to the client unchanged), then records the call in audit_calls. The operator's connection runs
-- in autocommit, so the row lands when the call completes; a call cut off before (server killed) leaves
-- none. The invariant checker counts calls here, on the server. `intent` is the operator's idempotency
-- key, passed through to the sample's *_once procedures; `replayed` marks a call the sample recognised by
-- it as a repeat of one that took effect (it changed nothing). Load after procedures.sql.

CREATE TABLE IF NOT EXISTS audit_calls (
  id          BIGINT AUTO_INCREMENT PRIMARY KEY,
  op          VARCHAR(16) NOT NULL,
  namespace   VARCHAR(253) NOT NULL,
  name        VARCHAR(253) NOT NULL,
  started_at  TIMESTAMP(6) NOT NULL,
  finished_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  replayed    BOOLEAN NOT NULL DEFAULT FALSE
) ENGINE=InnoDB;

DELIMITER //

CREATE OR REPLACE PROCEDURE audit_create(k8sNamespace VARCHAR(253), k8sName VARCHAR(253), intent VARCHAR(255))
BEGIN
  DECLARE started TIMESTAMP(6) DEFAULT SYSDATE(6);
  DECLARE seen BOOLEAN DEFAULT EXISTS (SELECT 1 FROM dbaas_intents i WHERE i.intent = intent);
  CALL dbaas_create_once(k8sNamespace, k8sName, intent);
  INSERT INTO audit_calls(op, namespace, name, started_at, replayed)
    VALUES ('create', k8sNamespace, k8sName, started, seen);
END //

CREATE OR REPLACE PROCEDURE audit_rotate(k8sNamespace VARCHAR(253), k8sName VARCHAR(253), intent VARCHAR(255))
BEGIN
  DECLARE started TIMESTAMP(6) DEFAULT SYSDATE(6);
  DECLARE seen BOOLEAN DEFAULT EXISTS (SELECT 1 FROM dbaas_intents i WHERE i.intent = intent);
  CALL dbaas_rotate_once(k8sNamespace, k8sName, intent);
  INSERT INTO audit_calls(op, namespace, name, started_at, replayed)
    VALUES ('rotate', k8sNamespace, k8sName, started, seen);
END //

CREATE OR REPLACE PROCEDURE audit_delete(k8sNamespace VARCHAR(253), k8sName VARCHAR(253))
BEGIN
  DECLARE started TIMESTAMP(6) DEFAULT SYSDATE(6);
  CALL dbaas_delete(k8sNamespace, k8sName);
  INSERT INTO audit_calls(op, namespace, name, started_at) VALUES ('delete', k8sNamespace, k8sName, started);
END //

-- Calls that succeed only after sleeping: widen the window in which a fault hits a call in flight.
CREATE OR REPLACE PROCEDURE audit_slow_create(
  k8sNamespace VARCHAR(253), k8sName VARCHAR(253), delay TEXT, intent VARCHAR(255))
BEGIN
  DO SLEEP(CAST(delay AS DECIMAL(10, 3)));
  CALL audit_create(k8sNamespace, k8sName, intent);
END //

CREATE OR REPLACE PROCEDURE audit_slow_rotate(
  k8sNamespace VARCHAR(253), k8sName VARCHAR(253), delay TEXT, intent VARCHAR(255))
BEGIN
  DO SLEEP(CAST(delay AS DECIMAL(10, 3)));
  CALL audit_rotate(k8sNamespace, k8sName, intent);
END //

CREATE OR REPLACE PROCEDURE audit_slow_delete(k8sNamespace VARCHAR(253), k8sName VARCHAR(253), delay TEXT)
BEGIN
  DO SLEEP(CAST(delay AS DECIMAL(10, 3)));
  CALL audit_delete(k8sNamespace, k8sName);
END //

DELIMITER ;
