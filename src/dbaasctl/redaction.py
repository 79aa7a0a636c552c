"""The one redactor: masks credentials in any text before it leaves the process.

It imports nothing of dbaasctl, so the controller kit (`kube/`, `observability/`), the DBMS side
(`dbms/`) and the templates all use the same code without depending on each other.

Two kinds of secret are masked:

* values the process knows are secret (DSNs, DSN passwords, API tokens) sit in a registry for the
  life of their use. A registration may name a `slot`; registering a new value in the same slot
  drops the old one, so a rotated credential does not stay in the registry forever. A JSON Web
  Token (a Kubernetes ServiceAccount token) is slotted by its issuer and subject automatically,
  so the hourly rotation of a projected token replaces its predecessor without the caller
  keeping track of it;
* values a caller knows for one message only (the bound parameters of one DBMS call, the
  credentials one procedure issued) are passed to `mask()` or `redact(text, secrets)` and never
  stored.

Matching is plain substring search in C (`str.replace`) over a snapshot sorted longest first, so
adding or removing a secret costs O(1) and never compiles a pattern; the snapshot is rebuilt
lazily (a sort, no regex) on the first use after a change.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "mask",
    "redact",
    "register_pattern",
    "register_redactor",
    "register_secret",
    "register_secrets",
    "registered_secrets",
    "unregister_secret",
]

MASK = "***"
#: Registered secrets shorter than this are ignored: masking every "a" or "12" would destroy the
#: text while protecting nothing worth protecting.
MIN_SECRET_LENGTH = 4
#: Values shorter than this are masked only where they stand on their own, not inside words.
_SHORT_SECRET = 6

# scheme://user:password@ -- the password runs to the last '@' before whitespace, so a raw '@'
# in it is still covered (over-masking a query that contains '@' is the safe failure).
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.%-]*://[^\s:/?#@]*):[^\s]*@")
# Authorization: Bearer xxx
_BEARER = re.compile(r"(?i)(?P<pre>\bbearer\s+)[A-Za-z0-9\-._~+/]+=*")
# key=value / key: value forms for password-like keys, in URL queries, libpq conninfo, ODBC
# strings, JSON and Python reprs. Values may be {braced}, 'quoted' or "quoted".
_KEYED_SECRET = re.compile(
    r"(?P<key>(?<![A-Za-z0-9_])(?P<q>[\"']?)(?:password|passwd|pwd|sslpassword)(?P=q)\s*[:=]\s*)"
    r"(?P<value>\{(?:[^}]|\}\})*\}?|'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^;&,}\s'\"]*)",
    re.IGNORECASE,
)


def _mask_keyed(match: re.Match[str]) -> str:
    value = match.group("value")
    if value[:1] in ("'", '"'):
        return f"{match.group('key')}{value[0]}{MASK}{value[0]}"
    return f"{match.group('key')}{MASK}"


def _variants(value: str) -> set[str]:
    """The forms a value takes in foreign text: as is, percent-encoded (inside a URL), escaped
    as in JSON or a Python repr (log fields, exception reprs), quotes doubled (SQL literals)."""
    found = {value, quote(value, safe=""), quote_plus(value, safe=""), value.replace("'", "''")}
    found.add(json.dumps(value, ensure_ascii=False)[1:-1])
    found.add(json.dumps(value)[1:-1])
    found.add(repr(value)[1:-1])
    return {v for v in found if v}


def _replace_all(text: str, values: Iterable[str]) -> str:
    for value in values:
        if value not in text:
            continue
        if len(value) >= _SHORT_SECRET:
            text = text.replace(value, MASK)
        else:
            # A very short value ("u", "5432") would shred ordinary words if masked everywhere.
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", MASK, text)
    return text


def _jwt_slot(value: str) -> str | None:
    """`jwt:<iss>:<sub>` for a JSON Web Token that names both, else None."""
    parts = value.split(".")
    if len(parts) != 3 or not parts[1]:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(claims, dict):
        return None
    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or not isinstance(sub, str):
        return None
    return f"jwt:{iss}:{sub}"


class _Registry:
    """The process-wide secrets; thread-safe because logging runs in executor threads too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._permanent: set[str] = set()
        self._slots: dict[str, str] = {}
        self._snapshot: tuple[str, ...] | None = ()
        self._patterns: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
            (_URL_PASSWORD, lambda m: f"{m.group('head')}:{MASK}@"),
            (_BEARER, r"\g<pre>" + MASK),
            (_KEYED_SECRET, _mask_keyed),
        ]
        self._hooks: list[Callable[[str], str]] = []

    def add(self, value: str, slot: str | None) -> None:
        if len(value) < MIN_SECRET_LENGTH:
            return
        slot = slot if slot is not None else _jwt_slot(value)
        with self._lock:
            if slot is None:
                if value not in self._permanent:
                    self._permanent.add(value)
                    self._snapshot = None
            elif self._slots.get(slot) != value:
                self._slots[slot] = value
                self._snapshot = None

    def remove(self, value: str) -> None:
        with self._lock:
            self._permanent.discard(value)
            for slot in [s for s, v in self._slots.items() if v == value]:
                del self._slots[slot]
            self._snapshot = None

    def values(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._permanent | set(self._slots.values()))

    def snapshot(self) -> tuple[str, ...]:
        snap = self._snapshot
        if snap is None:
            with self._lock:
                found: set[str] = set()
                for value in self._permanent | set(self._slots.values()):
                    found |= _variants(value)
                # Longest first, so a secret that contains another is masked whole.
                snap = self._snapshot = tuple(sorted(found, key=len, reverse=True))
        return snap

    def add_pattern(self, pattern: re.Pattern[str], replacement: str) -> None:
        with self._lock:
            self._patterns.append((pattern, replacement))

    def add_hook(self, hook: Callable[[str], str]) -> None:
        with self._lock:
            self._hooks.append(hook)

    def scrub(self, text: str, extra: Iterable[str]) -> str:
        snapshot = self.snapshot()
        found: set[str] = set()
        for value in extra:
            if value:
                found |= _variants(value)
        if found:
            text = _replace_all(text, sorted(found.union(snapshot), key=len, reverse=True))
        else:
            text = _replace_all(text, snapshot)
        for pattern, replacement in tuple(self._patterns):
            text = pattern.sub(replacement, text)
        for hook in tuple(self._hooks):
            text = hook(text)
        return text


_registry = _Registry()


def register_secret(value: str, *, slot: str | None = None) -> None:
    """Mask this exact value everywhere from now on (passwords, tokens, DSNs).

    With `slot` (e.g. `endpoint-dsn/<name>`), the value replaces whatever the slot held before, so
    a rotated or reconfigured credential leaves the registry with its successor's arrival.
    """
    _registry.add(value, slot)


def register_secrets(values: Iterable[str]) -> None:
    for value in values:
        _registry.add(value, None)


def unregister_secret(value: str) -> None:
    """Forget a secret that is no longer in use, wherever it was registered."""
    _registry.remove(value)


def registered_secrets() -> frozenset[str]:
    """The registered secrets now in force (for tests and diagnostics; never log it)."""
    return _registry.values()


def register_pattern(pattern: str | re.Pattern[str], replacement: str = MASK) -> None:
    """Mask whatever matches `pattern` in every redacted text from now on."""
    _registry.add_pattern(re.compile(pattern) if isinstance(pattern, str) else pattern, replacement)


def register_redactor(hook: Callable[[str], str]) -> None:
    """Add a scrubbing function applied after secrets and patterns."""
    _registry.add_hook(hook)


def mask(text: str, values: Iterable[str]) -> str:
    """Mask these values (and their encoded forms) in `text`; nothing else.

    For texts that may carry values the caller knows for this one message: the bound
    parameters of a DBMS call, the credentials a procedure issued, a Database's params.
    """
    found: set[str] = set()
    for value in values:
        if value:
            found |= _variants(value)
    return _replace_all(text, sorted(found, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask every credential in free text before it is logged, recorded or raised.

    Masks registered secrets, the given `secrets` (plus their encoded forms), the password of any
    `scheme://user:password@host` URL, the value of password-like keys (`PWD=...;`,
    `password=...`, `"password": "..."`) and bearer tokens.
    """
    return _registry.scrub(text, secrets)
