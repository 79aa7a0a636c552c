"""Logging: every record is scrubbed whatever path a secret takes; JSON/console output; TRACE level."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from dbaasctl.observability.logging import (
    TRACE,
    parse_level,
    redact,
    register_pattern,
    register_redactor,
    register_secret,
    setup_logging,
    trace,
    unregister_secret,
)


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    setup_logging("trace", "json", stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_registered_secret_is_masked_in_message_args_extra_and_traceback(json_log: io.StringIO) -> None:
    secret = "hunter2-very-secret"
    register_secret(secret)
    log = logging.getLogger("dbaasctl.test")
    log.info("connecting with %s", secret, extra={"dsn": f"x {secret}", "nested": {"pw": secret}})
    try:
        raise RuntimeError(f"driver said: bad password {secret}")
    except RuntimeError:
        log.exception("create failed for %s", "db1")
    out = json_log.getvalue()
    assert secret not in out
    records = lines(json_log)
    assert records[0]["msg"] == "connecting with ***"
    assert records[0]["dsn"] == "x ***"
    assert records[0]["nested"] == {"pw": "***"}
    assert "RuntimeError: driver said: bad password ***" in str(records[1]["exc"])


def test_builtin_shapes_are_masked_without_registration() -> None:
    assert redact("postgres://app:pa55@db:5432/x") == "postgres://app:***@db:5432/x"
    assert redact("mysql://root:p%40ss@host/db?x=1") == "mysql://root:***@host/db?x=1"
    assert redact("Authorization: Bearer eyJhbGciOi.abc-def") == "Authorization: Bearer ***"
    assert redact("DRIVER=x;SERVER=h;UID=sa;PWD=Str0ng!;") == "DRIVER=x;SERVER=h;UID=sa;PWD=***;"
    assert redact("host=h password='a b c' user=u") == "host=h password='***' user=u"
    assert redact("no secrets here: http://host:8080/path") == "no secrets here: http://host:8080/path"


def test_longer_secret_containing_a_shorter_one_is_masked_whole() -> None:
    register_secret("abcd1234")
    register_secret("abcd1234-extended")
    assert redact("x abcd1234-extended y") == "x *** y"


def test_too_short_secrets_are_ignored_and_unregister_works() -> None:
    register_secret("ab")
    assert redact("a cab b") == "a cab b"
    register_secret("rotated-old-pw")
    unregister_secret("rotated-old-pw")
    assert redact("rotated-old-pw") == "rotated-old-pw"


def test_custom_patterns_and_hooks() -> None:
    register_pattern(r"tok_[A-Za-z0-9]{8,}", "tok_***")
    register_redactor(lambda text: text.replace("internal-hostname.corp", "<host>"))
    assert redact("tok_ABCDEFGH123 at internal-hostname.corp") == "tok_*** at <host>"


def test_console_format_and_levels() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging("info", "console", stream)
        log = logging.getLogger("dbaasctl.console")
        trace(log, "hidden trace")
        log.debug("hidden debug")
        log.info("shown %d", 1, extra={"key": "ns/db"})
        out = stream.getvalue()
        assert "hidden" not in out
        assert "INFO    dbaasctl.console: shown 1 key='ns/db'" in out
        setup_logging("trace", "console", stream)
        trace(log, "now visible")
        assert "TRACE   dbaasctl.console: now visible" in stream.getvalue()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_parse_level() -> None:
    assert parse_level("trace") == TRACE < logging.DEBUG
    assert parse_level("INFO") == logging.INFO
    with pytest.raises(ValueError, match="unknown log level"):
        parse_level("verbose")
