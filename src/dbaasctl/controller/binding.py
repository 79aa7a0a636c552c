"""The Secret's default layout when a class declares no `secretFormat`: the Service Binding
specification (servicebinding.io), so binding-aware libraries and frameworks read it without
configuration.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

__all__ = ["MissingResultKey", "binding_data"]

_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")


class MissingResultKey(ValueError):
    """The procedure result lacks a key the default (Service Binding) format needs."""


_ALIASES: dict[str, tuple[str, ...]] = {
    "username": ("username", "user", "userName", "login"),
    "password": ("password", "pass", "pwd"),
    "database": ("database", "dbName", "dbname", "db", "databaseName"),
    "host": ("host", "server", "fqdn", "hostname"),
    "port": ("port",),
}
#: Service Binding `type` per driver (servicebinding.io well-known types).
_BINDING_TYPE = {"postgres": "postgresql", "mysql": "mysql", "mariadb": "mysql", "sqlserver": "sqlserver"}
_DEFAULT_PORT = {"postgres": "5432", "mysql": "3306", "mariadb": "3306", "sqlserver": "1433"}
_URI_SCHEME = {"postgres": "postgresql", "mysql": "mysql", "mariadb": "mariadb", "sqlserver": "sqlserver"}


def _pick(result: Mapping[str, str], name: str) -> tuple[str | None, str | None]:
    for alias in _ALIASES[name]:
        if result.get(alias):
            return alias, result[alias]
    folded = {k.lower(): k for k in result}
    for alias in _ALIASES[name]:
        key = folded.get(alias.lower())
        if key is not None and result[key]:
            return key, result[key]
    return None, None


def binding_data(
    result: Mapping[str, str],
    *,
    driver: str,
    endpoint_host: str | None = None,
    endpoint_port: int | None = None,
) -> dict[str, str]:
    """Secret data in the Service Binding layout when the class has no `secretFormat`.

    Well-known keys are mapped from the usual result names (user/username, dbName/database,
    server/host, ...); host and port fall back to the endpoint's DSN (what the operator itself connects
    to), the port then to the driver's default. Result keys that were not mapped are kept as they are
    when they are valid Secret keys, so nothing usable the procedure returned is lost.
    """
    used: set[str] = set()
    values: dict[str, str] = {}
    for name in ("username", "password", "database", "host", "port"):
        key, value = _pick(result, name)
        if key is not None and value is not None:
            used.add(key)
            values[name] = value
    for needed in ("username", "password"):
        if needed not in values:
            raise MissingResultKey(
                f"the procedure result has no {needed} (looked for {', '.join(_ALIASES[needed])}); "
                "return one or declare secretFormat in the DatabaseClass"
            )
    if "host" not in values and endpoint_host:
        values["host"] = endpoint_host
    if "port" not in values:
        values["port"] = str(endpoint_port) if endpoint_port else _DEFAULT_PORT.get(driver, "")
    binding_type = _BINDING_TYPE.get(driver, driver)
    data = {
        "type": binding_type,
        "provider": driver,
        **values,
    }
    if "host" in values:
        auth = f"{quote(values['username'], safe='')}:{quote(values['password'], safe='')}"
        port = f":{values['port']}" if values.get("port") else ""
        path = f"/{quote(values['database'], safe='')}" if values.get("database") else ""
        host = values["host"]
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 literal
        data["uri"] = f"{_URI_SCHEME.get(driver, driver)}://{auth}@{host}{port}{path}"
    for key, value in result.items():
        if key not in used and key not in data and _SECRET_KEY.fullmatch(key) and key not in (".", ".."):
            data[key] = value
    return {k: v for k, v in data.items() if v is not None}
