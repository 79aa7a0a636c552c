"""The shared redactor: registered secrets are bounded by what is in use, `mask` covers encoded forms."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from dbaasctl import redaction
from dbaasctl.redaction import (
    MASK,
    mask,
    redact,
    register_secret,
    registered_secrets,
    unregister_secret,
)


def _jwt(sub: str, serial: int) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    claims = {"iss": "https://kubernetes.default.svc", "sub": sub, "iat": serial}
    return f"{part({'alg': 'RS256'})}.{part(claims)}.{part({'sig': serial})}"


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    before = registered_secrets()
    yield
    for value in registered_secrets() - before:
        unregister_secret(value)


def test_a_rotated_service_account_token_replaces_its_predecessor() -> None:
    start = len(registered_secrets())
    tokens = [_jwt("system:serviceaccount:dbaas:dbaasctl", n) for n in range(2000)]
    for token in tokens:
        register_secret(token)
    assert len(registered_secrets()) == start + 1
    assert redact(f"Bearer-less text {tokens[-1]}") == f"Bearer-less text {MASK}"
    # A token of another subject is a different credential and stays.
    other = _jwt("system:serviceaccount:other:app", 1)
    register_secret(other)
    assert {tokens[-1], other} <= registered_secrets()


def test_a_slot_holds_one_value() -> None:
    for n in range(500):
        register_secret(f"postgres://admin:pw-{n}-xyz@db/postgres", slot="endpoint-dsn/pg")
    assert [s for s in registered_secrets() if s.startswith("postgres://admin:pw-")] == [
        "postgres://admin:pw-499-xyz@db/postgres"
    ]
    assert "pw-499-xyz" not in redact("connect postgres://admin:pw-499-xyz@db/postgres failed")


def test_registering_never_compiles_a_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[str] = []
    real = redaction.re.compile

    def spy(pattern: str, *args: object) -> object:
        compiled.append(pattern)
        return real(pattern, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(redaction.re, "compile", spy)
    for n in range(200):
        register_secret(f"secret-value-{n:04d}")
        assert redact(f"x secret-value-{n:04d} y") == f"x {MASK} y"
    assert compiled == []


def test_unregister_forgets_a_value_in_any_slot() -> None:
    register_secret("first-password-1", slot="a")
    register_secret("first-password-1")
    unregister_secret("first-password-1")
    assert "first-password-1" not in registered_secrets()


@pytest.mark.parametrize(
    "value",
    ["p@ss:w/rd?#%+ x", "it's-a-secret", 'back\\slash"quote', "ünïcødé-pässwörd"],
)
def test_mask_covers_the_forms_a_value_takes_in_foreign_text(value: str) -> None:
    from urllib.parse import quote, quote_plus

    texts = [
        f"DETAIL:  Key (v)=({value}) already exists.",
        f"url postgres://u:{quote(value, safe='')}@h/db",
        f"form {quote_plus(value)}",
        f"json {json.dumps({'v': value})}",
        f"repr {value!r}",
        "sql '" + value.replace("'", "''") + "'",
    ]
    for text in texts:
        assert value not in mask(text, [value])
        assert quote(value, safe="") not in mask(text, [value])
        assert MASK in mask(text, [value])


def test_mask_leaves_short_values_inside_words_alone() -> None:
    assert mask("small tables and a small", ["small"]) == f"{MASK} tables and a {MASK}"
    assert mask("smallest", ["small"]) == "smallest"
    assert mask("anything", [""]) == "anything"
