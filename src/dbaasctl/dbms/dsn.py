"""Endpoint DSNs: the parsed value, and printing it without the password.

DSNs carry the most valuable secret the operator holds (a DBMS admin password), and the
reference operator leaked it in start-up errors. So:

* `Dsn` never prints its password (`repr`, `str` and `redacted()` all mask it);
* `DsnError` messages are built only from fixed text and the scheme, never from any part of
  the input after `://` (see `dbaasctl.dbms.dsn_parse`, which turns text into a `Dsn`);
* `secrets()` lists the literals that `dbaasctl.redaction.redact` must mask in any text built
  from a driver's errors.

The ODBC connection-string syntax lives here because masking an `odbc:` DSN needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import quote, urlencode

from dbaasctl.redaction import MASK, redact

__all__ = [
    "Dsn",
    "DsnError",
    "ensure_compatible",
    "parse_odbc",
    "quote_odbc_value",
]

#: DatabaseClass driver -> DSN drivers it can use.
_COMPATIBLE: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "postgres": frozenset({"postgres"}),
        "mysql": frozenset({"mysql"}),
        "mariadb": frozenset({"mysql"}),
        "sqlserver": frozenset({"sqlserver", "odbc"}),
        "odbc": frozenset({"odbc"}),
    }
)
#: Option keys whose values are secrets wherever they appear (URL query, ODBC, libpq conninfo).
_SECRET_OPTION_KEYS = frozenset({"password", "passwd", "pwd", "sslpassword"})


class DsnError(ValueError):
    """A DSN could not be understood. The message never contains any part of the credentials."""


@dataclass(frozen=True, repr=False)
class Dsn:
    """A parsed endpoint DSN.

    `driver` is the family (postgres, mysql, sqlserver, odbc); `flavor` keeps what the URL said
    (mariadb vs mysql, or the ODBC driver name). `options` are the query parameters (TLS and
    the like), passed through untouched. `odbc` is the ODBC connection string for the odbc
    driver, given verbatim (`odbc:...`) or built from `odbc+<driver>://...`.
    """

    driver: str
    flavor: str
    host: str
    port: int | None
    user: str
    password: str
    database: str
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    odbc: str | None = None

    def __repr__(self) -> str:
        return f"Dsn({self.redacted()})"

    def __str__(self) -> str:
        return self.redacted()

    def secrets(self) -> tuple[str, ...]:
        """The literal secrets in this DSN, for `redact(text, dsn.secrets())`."""
        found = [self.password]
        found += [v for k, v in self.options.items() if k.lower() in _SECRET_OPTION_KEYS]
        if self.odbc is not None:
            found += [v for k, v in parse_odbc(self.odbc) if k.lower() in _SECRET_OPTION_KEYS]
        return tuple(s for s in dict.fromkeys(found) if s)

    def redacted(self) -> str:
        """The DSN as a URL with the password (and secret options) masked; safe to log."""
        if self.odbc is not None:
            return "odbc:" + _redact_odbc(self.odbc)
        scheme = self.flavor
        userinfo = ""
        if self.user or self.password:
            userinfo = quote(self.user, safe="") + (f":{MASK}" if self.password else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else quote(self.host, safe="")
        port = f":{self.port}" if self.port is not None else ""
        path = "/" + quote(self.database, safe="/") if self.database else ""
        query = ""
        if self.options:
            pairs = [(k, MASK if k.lower() in _SECRET_OPTION_KEYS else v) for k, v in self.options.items()]
            query = "?" + urlencode(pairs, safe="*")
        return f"{scheme}://{userinfo}{host}{port}{path}{query}"


def ensure_compatible(dsn: Dsn, class_driver: str) -> None:
    """Refuse an endpoint whose DSN cannot serve its DatabaseClass's driver."""
    allowed = _COMPATIBLE.get(class_driver)
    if allowed is None:
        raise DsnError(f"unknown DatabaseClass driver {class_driver!r}; known: {', '.join(_COMPATIBLE)}")
    if dsn.driver not in allowed:
        raise DsnError(
            f"a {dsn.flavor} DSN cannot serve a DatabaseClass with driver {class_driver}; "
            f"use a DSN of kind {', '.join(sorted(allowed))}"
        )


# --- ODBC connection strings -------------------------------------------------------------------


def parse_odbc(conn: str) -> list[tuple[str, str]]:
    """`key=value;key={va;lue}` pairs; `}}` inside braces is a literal `}`."""
    pairs: list[tuple[str, str]] = []
    pos = 0
    n = len(conn)
    while pos < n:
        while pos < n and conn[pos] in "; \t\r\n":
            pos += 1
        if pos >= n:
            break
        eq = conn.find("=", pos)
        if eq < 0:
            raise DsnError("the ODBC connection string has an attribute without '=' (expected key=value;...)")
        key = conn[pos:eq].strip()
        pos = eq + 1
        while pos < n and conn[pos] in " \t":
            pos += 1
        if pos < n and conn[pos] == "{":
            value_chars: list[str] = []
            pos += 1
            while True:
                if pos >= n:
                    raise DsnError("the ODBC connection string has a '{' value without its closing '}'")
                ch = conn[pos]
                if ch == "}":
                    if pos + 1 < n and conn[pos + 1] == "}":
                        value_chars.append("}")
                        pos += 2
                        continue
                    pos += 1
                    break
                value_chars.append(ch)
                pos += 1
            value = "".join(value_chars)
            while pos < n and conn[pos] in " \t":
                pos += 1
            if pos < n and conn[pos] != ";":
                raise DsnError("the ODBC connection string has text after a '{...}' value; separate with ';'")
        else:
            end = conn.find(";", pos)
            end = n if end < 0 else end
            value = conn[pos:end].strip()
            pos = end
        if not key:
            raise DsnError("the ODBC connection string has an attribute with an empty name")
        pairs.append((key, value))
    return pairs


def quote_odbc_value(value: str) -> str:
    if value == "" or any(c in value for c in ";{}=") or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value


def _redact_odbc(conn: str) -> str:
    try:
        pairs = parse_odbc(conn)
    except DsnError:
        return redact(conn)
    return "".join(
        f"{k}={MASK if k.lower() in _SECRET_OPTION_KEYS else quote_odbc_value(v)};" for k, v in pairs
    )
