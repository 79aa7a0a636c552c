"""The fast JSON codec gives exactly what the standard library gives, including where orjson alone fails."""

from __future__ import annotations

import json

from dbaasctl.kube import jsoncodec


def test_round_trip_matches_the_standard_library() -> None:
    doc = {"a": [1, 2.5, None, True], "ü": "ß\\\"'", "n": {"x": "y"}}
    assert jsoncodec.loads(jsoncodec.dumps(doc)) == doc == json.loads(json.dumps(doc))


def test_integers_beyond_64_bits_decode_like_json() -> None:
    text = '{"big": 123456789012345678901234567890}'
    assert jsoncodec.loads(text) == json.loads(text)
    assert jsoncodec.loads(text.encode()) == {"big": 123456789012345678901234567890}


def test_bodies_with_non_string_keys_or_big_integers_encode() -> None:
    assert json.loads(jsoncodec.dumps({1: "a"})) == {"1": "a"}
    assert json.loads(jsoncodec.dumps({"big": 2**70})) == {"big": 2**70}
