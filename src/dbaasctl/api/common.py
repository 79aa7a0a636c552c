"""Building blocks shared by the three resource models.

The API server speaks camelCase JSON; Python code reads snake_case. Every model derives from
`ApiModel`, which accepts both spellings on input and always emits the API's spelling, so a
model can be fed straight from a watch event and dumped straight into a patch body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "ApiModel",
    "Duration",
    "LabelSelector",
    "LabelSelectorRequirement",
    "ObjectMeta",
    "Timestamp",
    "format_duration",
    "format_timestamp",
    "parse_duration",
]


class ApiModel(BaseModel):
    """Base for every model that mirrors a CRD schema node."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        # Unknown fields come from newer CRD versions or from tools; ignoring them keeps an
        # older operator working next to a newer CRD instead of failing every reconcile.
        extra="ignore",
    )

    def to_api(self) -> dict[str, Any]:
        """The JSON body the API server expects: camelCase keys, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- durations ---------------------------------------------------------------------------------

_DURATION_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # Go accepts the micro sign as well as "us"
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")
#: The same grammar as Go's time.ParseDuration (unsigned), used verbatim as the CRD pattern.
DURATION_PATTERN = r"^(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h))+$"


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse a Go-style duration ("720h", "1h30m", "90s", "1.5h").

    Go syntax because the surrounding ecosystem (metav1.Duration, Helm values, the reference
    operator's users) writes durations that way. Bare numbers are taken as seconds, which is
    what YAML authors mean when they write `operationTimeout: 30`.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration must be a string like '30s', '5m' or '720h'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration must not be negative")
        return timedelta(seconds=value)
    text = value.strip()
    if text == "0":
        return timedelta(0)
    if not text:
        raise ValueError("a duration must not be empty")
    pos = 0
    seconds = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError(
            f"invalid duration {text!r}: use numbers with units (h, m, s, ms), e.g. '720h' or '1h30m'"
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Render a duration the way Go prints it ("1h30m0s"), so it parses back identically."""
    total = value.total_seconds()
    if total == 0:
        return "0s"
    sign = "-" if total < 0 else ""
    total = abs(total)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    sec_text = f"{seconds:.9f}".rstrip("0").rstrip(".")
    if hours:
        return f"{sign}{int(hours)}h{int(minutes)}m{sec_text}s"
    if minutes:
        return f"{sign}{int(minutes)}m{sec_text}s"
    return f"{sign}{sec_text}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A Go-style duration string in the API, a `timedelta` in Python."""


# --- timestamps --------------------------------------------------------------------------------


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with second precision, like metav1.Time serialises."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Timestamp = Annotated[datetime, PlainSerializer(format_timestamp, return_type=str, when_used="json")]
"""A metav1.Time: `datetime` in Python, second-precision RFC 3339 UTC on the wire."""


# --- metadata and selectors --------------------------------------------------------------------


class ObjectMeta(ApiModel):
    """The subset of metav1.ObjectMeta the operator reads. Everything else is ignored."""

    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    finalizers: list[str] = Field(default_factory=list)
    creation_timestamp: Timestamp | None = None
    deletion_timestamp: Timestamp | None = None


class LabelSelectorRequirement(ApiModel):
    """One metav1.LabelSelectorRequirement."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"{self.operator} needs values")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"{self.operator} takes no values")
        return self


class LabelSelector(ApiModel):
    """metav1.LabelSelector with the same matching rules as labels.SelectorFromSet + requirements.

    An empty selector matches everything, as it does in Kubernetes.
    """

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "In":
                if not present or labels[req.key] not in req.values:
                    return False
            elif req.operator == "NotIn":
                if present and labels[req.key] in req.values:
                    return False
            elif req.operator == "Exists":
                if not present:
                    return False
            elif present:  # DoesNotExist
                return False
        return True
