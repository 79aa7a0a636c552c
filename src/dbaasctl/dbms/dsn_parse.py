"""Endpoint DSNs from text: the URL form and `odbc:` + an ODBC connection string, into a `Dsn`.

A malformed DSN is exactly when a password ends up where a host or port was expected, so every
`DsnError` raised here is built only from fixed text and the scheme, never from any part of the
input after `://`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import parse_qsl, unquote_to_bytes

from dbaasctl.dbms.dsn import Dsn, DsnError, parse_odbc, quote_odbc_value

__all__ = [
    "DEFAULT_PORTS",
    "parse_dsn",
]

#: URL scheme (lower case) -> (driver, flavor).
_SCHEMES: dict[str, tuple[str, str]] = {
    "postgres": ("postgres", "postgres"),
    "postgresql": ("postgres", "postgres"),
    "pg": ("postgres", "postgres"),
    "pgsql": ("postgres", "postgres"),
    "mysql": ("mysql", "mysql"),
    "my": ("mysql", "mysql"),
    "mariadb": ("mysql", "mariadb"),
    "maria": ("mysql", "mariadb"),
    "sqlserver": ("sqlserver", "sqlserver"),
    "mssql": ("sqlserver", "sqlserver"),
    "ms": ("sqlserver", "sqlserver"),
}
DEFAULT_PORTS: Mapping[str, int] = MappingProxyType({"postgres": 5432, "mysql": 3306, "sqlserver": 1433})
_ACCEPTED = (
    "postgres, postgresql, pg, pgsql, mysql, my, mariadb, maria, sqlserver, mssql, ms, odbc:, odbc+<driver>"
)
_SAFE_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}")
_ENCODING_HINT = "percent-encode '@', ':', '/', '?', '#' and '%' in the user name and password"
_ODBC_HOST_KEYS = ("server", "servername", "host", "address", "addr")
_ODBC_USER_KEYS = ("uid", "user", "username", "user id")
_ODBC_PASSWORD_KEYS = ("pwd", "password")
_ODBC_DATABASE_KEYS = ("database", "db", "initial catalog")


def _decode(raw: str, what: str) -> str:
    data = unquote_to_bytes(raw)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None:  # raised outside the except block: no decoder error (with bytes) as context
        raise DsnError(f"the {what} is not valid UTF-8 after percent-decoding; {_ENCODING_HINT}")
    return text


def parse_dsn(text: str) -> Dsn:
    """Parse an endpoint DSN (URL form or `odbc:` + ODBC connection string)."""
    text = text.strip()
    if not text:
        raise DsnError("the DSN is empty")
    lowered = text.lower()
    if lowered.startswith("odbc:") and not lowered.startswith("odbc://"):
        return _parse_raw_odbc(text[len("odbc:") :])
    scheme, sep, rest = text.partition("://")
    if not sep or not scheme:
        raise DsnError(
            "a DSN must look like scheme://user:password@host:port/database?options "
            f"or odbc:<ODBC connection string>; accepted schemes: {_ACCEPTED}"
        )
    odbc_driver: str | None = None
    if scheme.lower().startswith("odbc+"):
        odbc_driver = _decode(scheme[len("odbc+") :], "ODBC driver name")
        if not odbc_driver:
            raise DsnError("odbc+<driver>:// needs an ODBC driver name, e.g. odbc+PostgreSQL%20Unicode://")
        driver, flavor = "odbc", odbc_driver
    else:
        key = scheme.lower()
        if key not in _SCHEMES:
            shown = repr(scheme) if _SAFE_SCHEME.fullmatch(scheme) else "(not shown)"
            raise DsnError(f"unknown DSN scheme {shown}; accepted: {_ACCEPTED}")
        driver, flavor = _SCHEMES[key]

    split = len(rest)
    for stop in "/?":
        at = rest.find(stop)
        if 0 <= at < split:
            split = at
    authority, tail = rest[:split], rest[split:]
    if "@" in tail:
        raise DsnError(f"'@' found after the host; {_ENCODING_HINT}")
    userinfo, at_sign, hostport = authority.rpartition("@")
    raw_user, colon, raw_password = userinfo.partition(":")
    user = _decode(raw_user, "user name") if at_sign else ""
    password = _decode(raw_password, "password") if at_sign and colon else ""
    host, port = _split_hostport(hostport)

    path, _, raw_query = tail.partition("?")
    options: dict[str, str] = {}
    if raw_query:
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            options[key] = value
    database = _decode(path[1:], "database name") if path.startswith("/") else ""
    if driver == "sqlserver" and "/" in database:
        instance, _, database = database.partition("/")
        options.setdefault("instance", instance)
    if "/" in database:
        raise DsnError(f"the database name must not contain '/'; {_ENCODING_HINT}")
    if not user and "user" in options:
        user = options.pop("user")
    if not password and "password" in options:
        password = options.pop("password")
    if not database:
        for key in ("database", "dbname"):
            if key in options:
                database = options.pop(key)
                break
    if port is None:
        port = DEFAULT_PORTS.get(driver)
    if not host and (driver == "sqlserver" or odbc_driver is not None):
        raise DsnError("the DSN has no host")

    odbc: str | None = None
    if odbc_driver is not None:
        odbc = _build_odbc(odbc_driver, host, port, user, password, database, options)
    return Dsn(
        driver=driver,
        flavor=flavor,
        host=host,
        port=port,
        user=user,
        password=password,
        database=database,
        options=MappingProxyType(options),
        odbc=odbc,
    )


def _split_hostport(hostport: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise DsnError("an IPv6 host must be written [address]:port")
        host, rest = hostport[1:end], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            raise DsnError("an IPv6 host must be written [address]:port")
        port_text = rest[1:] if rest else ""
    else:
        host, colon, port_text = hostport.rpartition(":")
        if not colon:
            host, port_text = hostport, ""
    if ":" in port_text or (host.count(":") and not hostport.startswith("[")):
        raise DsnError(f"the host part has more than one ':'; {_ENCODING_HINT}")
    port: int | None = None
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
            raise DsnError(f"the port must be a number from 1 to 65535; {_ENCODING_HINT}")
        port = int(port_text)
    return _decode(host, "host"), port


def _build_odbc(
    driver: str,
    host: str,
    port: int | None,
    user: str,
    password: str,
    database: str,
    options: Mapping[str, str],
) -> str:
    parts = [("Driver", driver)]
    if "sql server" in driver.lower():
        # Microsoft's drivers take the port after a comma; the others have a Port attribute.
        parts.append(("Server", f"{host},{port}" if port else host))
    else:
        parts.append(("Server", host))
        if port:
            parts.append(("Port", str(port)))
    if database:
        parts.append(("Database", database))
    if user:
        parts.append(("UID", user))
    if password:
        parts.append(("PWD", password))
    parts += list(options.items())
    # The driver name is always braced: names like "PostgreSQL Unicode" need it.
    head = "Driver={" + driver.replace("}", "}}") + "};"
    return head + "".join(f"{k}={quote_odbc_value(v)};" for k, v in parts[1:])


def _parse_raw_odbc(conn: str) -> Dsn:
    if not conn.strip():
        raise DsnError(
            "odbc: must be followed by an ODBC connection string, e.g. odbc:Driver={...};Server=..."
        )
    pairs = parse_odbc(conn)
    found: dict[str, str] = {}
    options: dict[str, str] = {}
    flavor = "odbc"
    for key, value in pairs:
        low = key.lower()
        if low == "driver" or (low == "dsn" and flavor == "odbc"):
            flavor = value
        if low in _ODBC_HOST_KEYS + _ODBC_USER_KEYS + _ODBC_PASSWORD_KEYS + _ODBC_DATABASE_KEYS + ("port",):
            found.setdefault(low, value)
        elif low not in ("driver", "dsn"):
            options[key] = value
    host_value = next((found[k] for k in _ODBC_HOST_KEYS if k in found), "")
    port: int | None = None
    if host_value.lower().startswith("tcp:"):
        host_value = host_value[4:]
    if "," in host_value:  # SQL Server style host,port
        host_value, _, port_text = host_value.partition(",")
        found.setdefault("port", port_text.strip())
    port_text = found.get("port", "").strip()
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
            raise DsnError("the ODBC Port must be a number from 1 to 65535")
        port = int(port_text)
    return Dsn(
        driver="odbc",
        flavor=flavor,
        host=host_value.strip(),
        port=port,
        user=next((found[k] for k in _ODBC_USER_KEYS if k in found), ""),
        password=next((found[k] for k in _ODBC_PASSWORD_KEYS if k in found), ""),
        database=next((found[k] for k in _ODBC_DATABASE_KEYS if k in found), ""),
        options=MappingProxyType(options),
        odbc=conn,
    )
