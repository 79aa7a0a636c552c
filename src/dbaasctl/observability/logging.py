"""Process logging: JSON or console lines, a TRACE level, and a redaction filter on every handler.

Secrets must never reach a log line, whatever path they take (a message argument, an `extra` field, an
exception text from a driver that echoes a DSN). So scrubbing is not left to call sites: `setup_logging`
installs `RedactionFilter` on the handler, and any module that learns a secret registers it with
`dbaasctl.redaction.register_secret`. The filter renders the record's message and exception text once,
scrubs them with `dbaasctl.redaction.redact`, and stores the result back on the record, so every
formatter downstream only ever sees scrubbed text.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
from typing import Any, Literal, TextIO

from dbaasctl.redaction import (
    MASK,
    MIN_SECRET_LENGTH,
    redact,
    register_pattern,
    register_redactor,
    register_secret,
    register_secrets,
    unregister_secret,
)

# The redactor lives in dbaasctl.redaction; these names stay importable from here because the
# logging set-up is where most modules first meet them.
__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "TRACE",
    "ConsoleFormatter",
    "JsonFormatter",
    "RedactionFilter",
    "parse_level",
    "redact",
    "register_pattern",
    "register_redactor",
    "register_secret",
    "register_secrets",
    "setup_logging",
    "trace",
    "unregister_secret",
]

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LogFormat = Literal["json", "console"]
LogLevel = Literal["trace", "debug", "info", "warning", "error"]

_LEVELS: dict[str, int] = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Attributes every LogRecord has; anything else came in through `extra=` and is logged as a field.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName"}
)


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub_value(v) for v in value]
    return redact(str(value))


class RedactionFilter(logging.Filter):
    """Renders and scrubs a record in place; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_dbaasctl_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        # The traceback is now text; dropping exc_info keeps formatters from re-rendering it unscrubbed.
        record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                setattr(record, key, _scrub_value(value))
        record._dbaasctl_redacted = True
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    ts = _dt.datetime.fromtimestamp(record.created, tz=_dt.UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, extra fields, exception text."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """Human-oriented: `ts LEVEL logger: message key=value ...`."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        extras = _extras(record)
        if extras:
            line += " " + " ".join(
                f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in extras.items()
            )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


def parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(_LEVELS)}") from None


def setup_logging(
    level: str | int = "info", fmt: LogFormat = "json", stream: TextIO | None = None
) -> logging.Handler:
    """Replace the root handlers with one scrubbing handler. Returns the handler (tests capture it)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(RedactionFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(parse_level(level))
    # Library chatter at our debug level would bury our own lines.
    for noisy in ("aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
    return handler


def trace(logger: logging.Logger, msg: str, *args: object, **kwargs: Any) -> None:
    if logger.isEnabledFor(TRACE):
        logger.log(TRACE, msg, *args, **kwargs)
