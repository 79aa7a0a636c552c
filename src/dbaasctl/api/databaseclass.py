"""`DatabaseClass` (dbaasctl.io/v1, cluster-scoped, short name `dbc`): the DBA's contract.

It names the stored procedure behind each operation, how each procedure input is templated from
the Database, and how the Secret is templated from the procedure's result. Mirrors
deploy/crds/databaseclasses.dbaasctl.io.yaml.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, model_validator

from dbaasctl.api.common import ApiModel, Duration, ObjectMeta
from dbaasctl.api.conditions import Condition
from dbaasctl.api.database import API_VERSION

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "POSITIONAL_DRIVERS",
    "DatabaseClass",
    "DatabaseClassSpec",
    "DatabaseClassStatus",
    "Driver",
    "Operation",
    "OperationName",
    "Operations",
    "ParameterError",
    "ParameterSpec",
    "RotationSpec",
    "RotationWindow",
    "compile_pattern",
    "positional_keys",
]

KIND = "DatabaseClass"
PLURAL = "databaseclasses"

Driver = Literal["postgres", "mysql", "mariadb", "sqlserver", "odbc"]
OperationName = Literal["create", "rotate", "delete", "retire"]
#: Drivers whose procedures take arguments by position (`CALL proc(%s, %s)`).
POSITIONAL_DRIVERS: frozenset[str] = frozenset({"mysql", "mariadb"})

_INDEX = re.compile(r"0|[1-9][0-9]{0,2}")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
#: Same pattern as the CRD: an identifier, optionally schema-qualified.
_PROCEDURE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,127}(\.[A-Za-z_][A-Za-z0-9_$]{0,127})?")


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    """A parameter pattern with RE2 semantics: matching is linear in the value's length.

    A DBA's pattern runs against end-user input inside admission; Python's backtracking `re`
    takes exponential time on patterns such as `^([a-z0-9]+[-_]?)+$`. RE2 is also what the
    API server uses for the CRD's own `pattern`, so a value is judged the same way at both
    gates. Constructs RE2 does not have (backreferences, lookaround) raise ValueError.

    RE2 (about 2 MB resident) is loaded with the first class that declares a pattern.
    """
    import re2

    options = re2.Options()
    options.log_errors = False  # the error is reported as a class problem, not on stderr
    options.never_capture = True  # only whole-value matching is asked of a pattern
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(f"{reason} (patterns use RE2 syntax: no backreferences or lookaround)") from None


def positional_keys(inputs: Mapping[str, str]) -> list[str]:
    """The input keys in call order for a positional driver: "0", "1", ... without gaps.

    The reference operator silently called `proc()` for non-numeric keys and panicked on gaps;
    here either problem is a class error that names the offending keys.
    """
    bad = sorted(k for k in inputs if not _INDEX.fullmatch(k))
    if bad:
        raise ValueError(
            f'positional inputs must be keyed "0", "1", ...; not numeric: {", ".join(map(repr, bad))}'
        )
    indices = sorted(int(k) for k in inputs)
    expected = list(range(len(indices)))
    if indices != expected:
        missing = sorted(set(expected) - set(indices))
        raise ValueError(
            'positional inputs must be keyed "0" to "n-1" without gaps; '
            f"have {', '.join(repr(str(i)) for i in indices)}, "
            f"missing {', '.join(repr(str(i)) for i in missing)}"
        )
    return [str(i) for i in indices]


class Operation(ApiModel):
    name: str
    inputs: dict[str, str] = Field(default_factory=dict)


class Operations(ApiModel):
    create: Operation
    delete: Operation
    rotate: Operation | None = None
    #: Two-phase rotation: called `rotation.gracePeriod` after a rotation, to end the credentials the
    #: rotation superseded (templates see them as `previous`). Without it a rotation is a cut-over.
    retire: Operation | None = None

    def get(self, op: OperationName) -> Operation | None:
        """The operation by name; rotate and retire may be absent."""
        result: Operation | None = getattr(self, op)
        return result


class ParameterSpec(ApiModel):
    name: str
    required: bool = False
    default: str | None = None
    pattern: str | None = None
    max_length: int | None = None
    description: str | None = None


#: How long previous credentials stay valid after a rotation when the class declares retire and no
#: gracePeriod: longer than the kubelet takes to refresh a mounted Secret (about a minute).
DEFAULT_GRACE_PERIOD = timedelta(minutes=5)
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


class RotationWindow(ApiModel):
    """A daily UTC time range scheduled rotations start in; `end` before `start` spans midnight."""

    start: str
    end: str

    @model_validator(mode="after")
    def _check(self) -> RotationWindow:
        for name in ("start", "end"):
            if not _CLOCK.fullmatch(getattr(self, name)):
                raise ValueError(f"rotation.window.{name} must be HH:MM (UTC, 24-hour clock)")
        if self.start == self.end:
            raise ValueError("rotation.window.start and end must differ")
        return self

    def minutes(self) -> tuple[int, int]:
        """(start, end) as minutes after midnight UTC."""
        h1, m1 = self.start.split(":")
        h2, m2 = self.end.split(":")
        return int(h1) * 60 + int(m1), int(h2) * 60 + int(m2)


class RotationSpec(ApiModel):
    interval: Duration | None = None
    #: With a retire operation: how long the previous credentials stay valid after a rotation.
    grace_period: Duration | None = None
    window: RotationWindow | None = None


class ParameterError(ValueError):
    """A Database's params do not satisfy the class's declared parameters.

    `problems` lists one human-readable line per problem; values are never quoted, since a
    param may well be something the user considers private.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class DatabaseClassSpec(ApiModel):
    driver: Driver
    operations: Operations
    #: Empty: the Secret gets the Service Binding layout (type, provider, host, port, username, ...).
    secret_format: dict[str, str] = Field(default_factory=dict)
    parameters: list[ParameterSpec] = Field(default_factory=list)
    rotation: RotationSpec | None = None

    @property
    def grace_period(self) -> timedelta | None:
        """How long previous credentials stay valid after a rotation; None: cut-over (no retire)."""
        if self.operations.retire is None:
            return None
        declared = self.rotation.grace_period if self.rotation is not None else None
        return declared if declared is not None else DEFAULT_GRACE_PERIOD

    @model_validator(mode="after")
    def _check(self) -> DatabaseClassSpec:
        for op_name in ("create", "rotate", "delete", "retire"):
            op = self.operations.get(op_name)
            if op is None:
                continue
            if not _PROCEDURE.fullmatch(op.name):
                raise ValueError(
                    f"operations.{op_name}.name {op.name!r} is not a procedure name "
                    "(letters, digits, '_', '$', optionally schema-qualified as schema.name)"
                )
            bad = sorted(k for k in op.inputs if not (_IDENT.fullmatch(k) or _INDEX.fullmatch(k)))
            if bad:
                raise ValueError(
                    f"operations.{op_name}.inputs keys must be parameter names or positions; "
                    f"invalid: {', '.join(map(repr, bad))}"
                )
            if self.driver in POSITIONAL_DRIVERS:
                try:
                    positional_keys(op.inputs)
                except ValueError as exc:
                    raise ValueError(f"{self.driver} operations.{op_name}.inputs: {exc}") from None
        seen: set[str] = set()
        for param in self.parameters:
            if param.name in seen:
                raise ValueError(f"parameters: {param.name!r} is declared twice")
            seen.add(param.name)
            if param.pattern is not None:
                try:
                    compile_pattern(param.pattern)
                except ValueError as exc:
                    raise ValueError(f"parameters.{param.name}.pattern is not a valid regex: {exc}") from None
        return self

    def resolve_params(self, params: Mapping[str, str]) -> dict[str, str]:
        """The params templates see: declared defaults applied, declared rules enforced.

        A class that declares no parameters passes params through untouched (the reference
        operator's behaviour). A class that declares some is a contract: unknown keys are
        typos, required ones must be present, patterns must match the whole value, and an
        optional parameter without a default is the empty string, so templates may always
        reference it.
        """
        if not self.parameters:
            return dict(params)
        problems: list[str] = []
        declared = {p.name: p for p in self.parameters}
        unknown = sorted(set(params) - set(declared))
        if unknown:
            problems.append(
                f"unknown params {', '.join(unknown)} (this class accepts: {', '.join(sorted(declared))})"
            )
        resolved: dict[str, str] = {}
        for name, spec in declared.items():
            if name in params:
                value = params[name]
            elif spec.required:
                problems.append(
                    f"params.{name} is required" + (f" ({spec.description})" if spec.description else "")
                )
                continue
            else:
                value = spec.default if spec.default is not None else ""
            if spec.max_length is not None and len(value) > spec.max_length:
                problems.append(f"params.{name} is longer than {spec.max_length} characters")
            elif (
                spec.pattern is not None
                and name in params
                and compile_pattern(spec.pattern).fullmatch(value) is None
            ):
                problems.append(f"params.{name} does not match the pattern {spec.pattern}")
            resolved[name] = value
        if problems:
            raise ParameterError(problems)
        return resolved


class DatabaseClassStatus(ApiModel):
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None


class DatabaseClass(ApiModel):
    api_version: str = API_VERSION
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: DatabaseClassSpec
    status: DatabaseClassStatus = Field(default_factory=DatabaseClassStatus)
