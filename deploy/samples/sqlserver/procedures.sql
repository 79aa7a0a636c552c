-- dbaasctl sample procedures for SQL Server (2017+). Same contract as the PostgreSQL and MariaDB
-- samples: one database + one login/user per Database object, named from namespace AND name,
-- idempotent, returning key/value rows (username, password, database, dbName, host, port).
-- NOT tested against a real SQL Server by this project's test suite (no SQL Server in the test bed).
--
-- Dynamic SQL only ever contains identifiers built here from [a-z0-9_] (QUOTENAME'd anyway) and the
-- generated password (QUOTENAME(..., '''')). Install into the database the operator's DSN names
-- (e.g. dbaas) as a login with CREATE ANY DATABASE and ALTER ANY LOGIN. Optional public endpoint:
--   INSERT INTO dbo.dbaas_settings VALUES ('host', 'mssql.example.com'), ('port', '1433');

IF OBJECT_ID('dbo.dbaas_settings') IS NULL
  CREATE TABLE dbo.dbaas_settings (name sysname PRIMARY KEY, value nvarchar(255) NOT NULL);
IF OBJECT_ID('dbo.dbaas_databases') IS NULL
  CREATE TABLE dbo.dbaas_databases (
    namespace  nvarchar(253) NOT NULL,
    name       nvarchar(253) NOT NULL,
    ident      sysname NOT NULL UNIQUE,
    created_at datetime2 NOT NULL DEFAULT sysutcdatetime(),
    rotated_at datetime2 NULL,
    PRIMARY KEY (namespace, name)
  );
GO

CREATE OR ALTER FUNCTION dbo.dbaas_ident(@ns nvarchar(253), @nm nvarchar(253)) RETURNS sysname
AS
BEGIN
  DECLARE @clean nvarchar(253) = N'';
  DECLARE @i int = 1, @c nchar(1);
  WHILE @i <= LEN(@nm) AND LEN(@clean) < 30
  BEGIN
    SET @c = LOWER(SUBSTRING(@nm, @i, 1));
    SET @clean += CASE WHEN @c LIKE N'[a-z0-9]' THEN @c ELSE N'_' END;
    SET @i += 1;
  END;
  RETURN N'd_' + @clean + N'_'
       + LOWER(LEFT(CONVERT(varchar(64), HASHBYTES('SHA2_256', CONCAT(@ns, N'/', @nm)), 2), 16));
END;
GO

CREATE OR ALTER PROCEDURE dbo.dbaas_credentials @id sysname, @pw nvarchar(128)
AS
BEGIN
  SET NOCOUNT ON;
  DECLARE @host nvarchar(255) = COALESCE((SELECT value FROM dbo.dbaas_settings WHERE name = 'host'),
                                         CONVERT(nvarchar(255), SERVERPROPERTY('MachineName')));
  DECLARE @port nvarchar(255) = COALESCE((SELECT value FROM dbo.dbaas_settings WHERE name = 'port'), N'1433');
  SELECT [key], [value] FROM (VALUES
    (N'username', @id), (N'password', @pw), (N'database', @id), (N'dbName', @id),
    (N'host', @host), (N'port', @port)) AS t([key], [value]);
END;
GO

CREATE OR ALTER PROCEDURE dbo.dbaas_create @k8sNamespace nvarchar(253), @k8sName nvarchar(253)
AS
BEGIN
  SET NOCOUNT ON;
  SET XACT_ABORT ON;
  IF COALESCE(@k8sNamespace, N'') = N'' OR COALESCE(@k8sName, N'') = N''
    THROW 50001, N'namespace and name are required', 1;
  DECLARE @id sysname = dbo.dbaas_ident(@k8sNamespace, @k8sName);
  -- 48 hex chars + a fixed suffix satisfying Windows password complexity policies.
  DECLARE @pw nvarchar(128) = LOWER(CONVERT(varchar(64), CRYPT_GEN_RANDOM(24), 2)) + N'Aa1!';
  DECLARE @sql nvarchar(max);
  IF EXISTS (SELECT 1 FROM dbo.dbaas_databases WHERE ident = @id
             AND (namespace <> @k8sNamespace OR name <> @k8sName))
    THROW 50002, N'identifier collision with another Database', 1;
  IF DB_ID(@id) IS NULL
  BEGIN
    SET @sql = N'CREATE DATABASE ' + QUOTENAME(@id);
    EXEC (@sql);
  END;
  IF SUSER_ID(@id) IS NULL
    SET @sql = N'CREATE LOGIN ' + QUOTENAME(@id) + N' WITH PASSWORD = ' + QUOTENAME(@pw, '''')
             + N', CHECK_POLICY = OFF, DEFAULT_DATABASE = ' + QUOTENAME(@id);
  ELSE
    -- Re-running create hands out fresh working credentials.
    SET @sql = N'ALTER LOGIN ' + QUOTENAME(@id) + N' WITH PASSWORD = ' + QUOTENAME(@pw, '''');
  EXEC (@sql);
  SET @sql = N'USE ' + QUOTENAME(@id) + N'; '
           + N'IF USER_ID(' + QUOTENAME(@id, '''') + N') IS NULL CREATE USER ' + QUOTENAME(@id)
           + N' FOR LOGIN ' + QUOTENAME(@id) + N'; ALTER ROLE db_owner ADD MEMBER ' + QUOTENAME(@id) + N';';
  EXEC (@sql);
  IF NOT EXISTS (SELECT 1 FROM dbo.dbaas_databases WHERE namespace = @k8sNamespace AND name = @k8sName)
    INSERT INTO dbo.dbaas_databases(namespace, name, ident) VALUES (@k8sNamespace, @k8sName, @id);
  EXEC dbo.dbaas_credentials @id, @pw;
END;
GO

CREATE OR ALTER PROCEDURE dbo.dbaas_rotate @k8sNamespace nvarchar(253), @k8sName nvarchar(253)
AS
BEGIN
  SET NOCOUNT ON;
  DECLARE @id sysname = dbo.dbaas_ident(@k8sNamespace, @k8sName);
  DECLARE @pw nvarchar(128) = LOWER(CONVERT(varchar(64), CRYPT_GEN_RANDOM(24), 2)) + N'Aa1!';
  DECLARE @sql nvarchar(max);
  IF SUSER_ID(@id) IS NULL
    THROW 50003, N'no database for this namespace/name', 1;
  SET @sql = N'ALTER LOGIN ' + QUOTENAME(@id) + N' WITH PASSWORD = ' + QUOTENAME(@pw, '''');
  EXEC (@sql);
  UPDATE dbo.dbaas_databases SET rotated_at = sysutcdatetime() WHERE ident = @id;
  EXEC dbo.dbaas_credentials @id, @pw;
END;
GO

CREATE OR ALTER PROCEDURE dbo.dbaas_delete @k8sNamespace nvarchar(253), @k8sName nvarchar(253)
AS
BEGIN
  SET NOCOUNT ON;
  DECLARE @id sysname = dbo.dbaas_ident(@k8sNamespace, @k8sName);
  DECLARE @sql nvarchar(max);
  IF DB_ID(@id) IS NOT NULL
  BEGIN
    SET @sql = N'ALTER DATABASE ' + QUOTENAME(@id) + N' SET SINGLE_USER WITH ROLLBACK IMMEDIATE; '
             + N'DROP DATABASE ' + QUOTENAME(@id) + N';';
    EXEC (@sql);
  END;
  IF SUSER_ID(@id) IS NOT NULL
  BEGIN
    SET @sql = N'DROP LOGIN ' + QUOTENAME(@id);
    EXEC (@sql);
  END;
  DELETE FROM dbo.dbaas_databases WHERE ident = @id;
END;
GO
