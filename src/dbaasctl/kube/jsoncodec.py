"""JSON for the API client's hot path (watch lines, list pages, answers, request bodies) via orjson.

orjson differs from the standard library in two places: it reads an integer beyond 64 bits (a CRD
with preserve-unknown-fields may hold one) as a float, losing digits, and refuses non-string keys in
what we send. A document with a run of 19 or more digits (found by two C-speed passes) is decoded by
`json`, and so is what orjson cannot encode: the result is always what `json` gives, only faster in the
common case.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_DUMP_OPTIONS = orjson.OPT_NON_STR_KEYS
#: Every digit → "0", everything else → " ": a run of 19 zeros then marks a run of 19 digits. 2**63 has 19
#: digits, so a shorter run is always a 64-bit integer (or part of a string).
_DIGITS = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_LONG_RUN = b"0" * 19


def loads(data: bytes | str) -> Any:
    raw = data.encode() if isinstance(data, str) else data
    if _LONG_RUN in raw.translate(_DIGITS):
        return json.loads(raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=_DUMP_OPTIONS)
    except TypeError:
        return json.dumps(value).encode()
