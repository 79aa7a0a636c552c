"""Label and field selectors as the API server reads them, and RFC 7386 merge patches, for FakeKube."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dbaasctl.kube.errors import ApiError

Matcher = Callable[[Mapping[str, Any]], bool]

_SET = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _bad(selector: str, what: str) -> ApiError:
    return ApiError.from_status(
        {"kind": "Status", "code": 400, "reason": "BadRequest", "message": f"{what} {selector!r}"}
    )


def _split(selector: str) -> list[str]:
    """Requirements are separated by commas outside `in (...)` sets."""
    parts: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(selector):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(selector[start:i])
            start = i + 1
    parts.append(selector[start:])
    return [p.strip() for p in parts if p.strip()]


@dataclass(frozen=True)
class _Requirement:
    """One comma-separated part of a label selector."""

    key: str
    op: str  # in | notin | != | = | exists | !exists
    values: frozenset[str] = frozenset()

    def holds(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.op == "in":
            return value in self.values
        if self.op == "notin":
            return value not in self.values
        if self.op == "!=":
            return value not in self.values
        if self.op == "=":
            return value in self.values
        return (self.key in labels) == (self.op == "exists")


def _requirement(selector: str, req: str) -> _Requirement:
    set_match = _SET.match(req)
    if set_match:
        key, op, values = set_match.group(1), set_match.group(2), set_match.group(3)
        return _Requirement(key, op, frozenset(v.strip() for v in values.split(",") if v.strip()))
    if "!=" in req:
        key, value = (s.strip() for s in req.split("!=", 1))
        return _Requirement(key, "!=", frozenset({value}))
    if "=" in req:
        key, value = (s.strip() for s in req.replace("==", "=").split("=", 1))
        return _Requirement(key, "=", frozenset({value}))
    if req.startswith("!"):
        return _Requirement(req[1:].strip(), "!exists")
    if re.fullmatch(r"[\w./-]+", req):
        return _Requirement(req, "exists")
    raise _bad(selector, "unable to parse label selector")


def label_matcher(selector: str | None) -> Matcher:
    """`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`, comma-joined (all must hold)."""
    if not selector:
        return lambda _obj: True
    tests = [_requirement(selector, req).holds for req in _split(selector)]

    def match(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(t(labels) for t in tests)

    return match


def field_matcher(selector: str | None) -> Matcher:
    """Only the fields every type supports: metadata.name and metadata.namespace (= / == / !=)."""
    if not selector:
        return lambda _obj: True
    tests: list[Matcher] = []
    for req in _split(selector):
        negate = "!=" in req
        key, value = (s.strip() for s in req.replace("!=", "=").replace("==", "=").split("=", 1))
        if key not in ("metadata.name", "metadata.namespace"):
            raise _bad(selector, "field label not supported")
        field = key.split(".", 1)[1]

        def test(obj: Mapping[str, Any], f: str = field, v: str = value, n: bool = negate) -> bool:
            return ((obj.get("metadata") or {}).get(f) == v) != n

        tests.append(test)
    return lambda obj: all(t(obj) for t in tests)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else (lists included) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
