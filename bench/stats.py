"""Percentiles and per-verb request arithmetic shared by the scenarios and the report."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_summary(seconds: Iterable[float]) -> dict[str, float | None]:
    values = list(seconds)
    return {
        "p50_ms": _ms(percentile(values, 50)),
        "p95_ms": _ms(percentile(values, 95)),
        "p99_ms": _ms(percentile(values, 99)),
        "max_ms": _ms(max(values) if values else None),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 1)


def by_verb(delta: Mapping[tuple[str, str], float]) -> dict[str, float]:
    """Sum (method, code) counters per method."""
    out: dict[str, float] = {}
    for (method, _code), value in delta.items():
        out[method] = out.get(method, 0.0) + value
    return dict(sorted(out.items()))


def per_object(counts: Mapping[str, float], n: int) -> dict[str, float]:
    return {k: round(v / n, 2) for k, v in counts.items()} if n else {}


def writes(counts: Mapping[str, float]) -> float:
    return sum(v for k, v in counts.items() if k in WRITE_VERBS)
