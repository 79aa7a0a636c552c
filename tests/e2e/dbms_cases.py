"""Shared material for the driver contract tests: the injection corpus and leak checks."""

from __future__ import annotations

from dbaasctl.dbms.drivers import Driver

# Values that broke (or would break) string-built SQL; each must come back byte-identical.
# NUL is left out on purpose: PostgreSQL text cannot hold it (the server refuses, it is not altered).
INJECTION_CORPUS: list[str] = [
    "plain",
    "",
    " leading and trailing ",
    "it's",
    "'; DROP TABLE users; --",
    "' OR '1'='1",
    '"double" quotes',
    "back\\slash",
    "\\'",
    "trailing backslash\\",
    "\\\\server\\share",
    ";",
    "a; SELECT pg_sleep(10); --",
    "-- comment",
    "/* block */ comment",
    "#hash comment",
    "%s",
    "%(name)s %d %%",
    "?",
    "$1 $2",
    ":name @param",
    "{{ metadata.name }}",
    "{% raw %}{{ .Metadata.name }}{% endraw %}",
    "`backtick`",
    "[bracket]",
    "line\nfeed\r\ncarriage\ttab",
    "ünïcödé — ñ",
    "日本語テキスト",
    "emoji 😀 and astral 𝄞 𠜎",
    "\u202eright-to-left override",
    "zero\u200bwidth",
    "x" * 65536,
    "é😀'\\;%s" * 8000,
]


def in_use(driver: Driver) -> int:
    stats = driver.stats()
    return stats.size - stats.idle
