-- Call-counting wrappers around deploy/samples/mariadb/procedures.sql, for the reliability suite.
--
-- Each wrapper has the sample's positional signature, runs the sample procedure (whose key/value row set
-- goes to the client unchanged), then records the call in audit_calls. The operator's connection runs
-- in autocommit, so the row lands when the call completes; a call cut off before (server killed) leaves
-- none. The invariant checker counts calls here, on the server. Load after procedures.sql.

CREATE TABLE IF NOT EXISTS audit_calls (
  id          BIGINT AUTO_INCREMENT PRIMARY KEY,
  op          VARCHAR(16) NOT NULL,
  namespace   VARCHAR(253) NOT NULL,
  name        VARCHAR(253) NOT NULL,
  started_at  TIMESTAMP(6) NOT NULL,
  finished_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB;

DELIMITER //

CREATE OR REPLACE PROCEDURE audit_create(k8sNamespace VARCHAR(253), k8sName VARCHAR(253))
BEGIN
  DECLARE started TIMESTAMP(6) DEFAULT SYSDATE(6);
  CALL dbaas_create(k8sNamespace, k8sName);
  INSERT INTO audit_calls(op, namespace, name, started_at) VALUES ('create', k8sNamespace, k8sName, started);
END //

CREATE OR REPLACE PROCEDURE audit_rotate(k8sNamespace VARCHAR(253), k8sName VARCHAR(253))
BEGIN
  DECLARE started TIMESTAMP(6) DEFAULT SYSDATE(6);
  CALL dbaas_rotate(k8sNamespace, k8sName);
  INSERT INTO audit_calls(op, namespace, name, started_at) VALUES ('rotate', k8sNamespace, k8sName, started);
END //

CREATE OR REPLACE PROCEDURE audit_delete(k8sNamespace VARCHAR(253), k8sName VARCHAR(253))
BEGIN
  DECLARE started TIMESTAMP(6) DEFAULT SYSDATE(6);
  CALL dbaas_delete(k8sNamespace, k8sName);
  INSERT INTO audit_calls(op, namespace, name, started_at) VALUES ('delete', k8sNamespace, k8sName, started);
END //

-- Calls that succeed only after sleeping: widen the window in which a fault hits a call in flight.
CREATE OR REPLACE PROCEDURE audit_slow_create(k8sNamespace VARCHAR(253), k8sName VARCHAR(253), delay TEXT)
BEGIN
  DO SLEEP(CAST(delay AS DECIMAL(10, 3)));
  CALL audit_create(k8sNamespace, k8sName);
END //

CREATE OR REPLACE PROCEDURE audit_slow_rotate(k8sNamespace VARCHAR(253), k8sName VARCHAR(253), delay TEXT)
BEGIN
  DO SLEEP(CAST(delay AS DECIMAL(10, 3)));
  CALL audit_rotate(k8sNamespace, k8sName);
END //

CREATE OR REPLACE PROCEDURE audit_slow_delete(k8sNamespace VARCHAR(253), k8sName VARCHAR(253), delay TEXT)
BEGIN
  DO SLEEP(CAST(delay AS DECIMAL(10, 3)));
  CALL audit_delete(k8sNamespace, k8sName);
END //

DELIMITER ;
