"""Bounds on one template render: time, memory, and what a message may echo.

A DatabaseClass template runs inside the operator. Procedure inputs and Secret values need
references, filters and conditionals, not computation, so `checks.py` refuses loops, macros
and call blocks statically; what remains is a straight line of operations. This module bounds
each of those operations *before* it allocates (a width, a repetition count, a replacement, a
join, an integer's size) and charges what it produced against a per-render budget, so a render
can neither hold the process for long nor grow its memory by more than a few MiB, whatever the
template. A deadline is checked at every operation as a second line.

Error messages must not carry values computed from the context (an issued password used as a
key): `shown()` names a key or attribute only when it is spelled literally in the template.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment
from jinja2 import exceptions as jexc
from jinja2.nodes import EvalContext

__all__ = [
    "MAX_INT_BITS",
    "MAX_ITEMS",
    "MAX_VALUE_LENGTH",
    "MAX_WIDTH",
    "RENDER_BUDGET",
    "RENDER_DEADLINE",
    "LimitExceeded",
    "call_method",
    "charge",
    "check_binop",
    "check_percent_format",
    "checked_concat",
    "guard_filter",
    "guard_test",
    "rendering",
    "shown",
    "tick",
]

#: No single value may be larger: a Secret as a whole is limited to 1 MiB anyway.
MAX_VALUE_LENGTH = 1024 * 1024
#: Characters (or items) all operations of one render may produce together.
RENDER_BUDGET = 8 * MAX_VALUE_LENGTH
#: Widths, counts and lengths passed to filters and methods.
MAX_WIDTH = 10_000
#: Integers stay small (a 4096-bit number is 1,234 decimal digits).
MAX_INT_BITS = 4096
#: Items a filter that works item by item in Python (sort, map, unique, ...) may be given.
MAX_ITEMS = 100_000
#: Seconds one render may take, checked after every operation (comparisons and tests included):
#: each operation is bounded, but a template of 64 KiB holds thousands of them.
RENDER_DEADLINE = 1.0


class LimitExceeded(jexc.SecurityError):
    """A render went past one of the bounds above."""


@dataclass
class _State:
    deadline: float
    budget: int
    names: frozenset[str]


_STATE: ContextVar[_State | None] = ContextVar("dbaasctl_template_render", default=None)


@contextlib.contextmanager
def rendering(names: frozenset[str], *, deadline: float = RENDER_DEADLINE) -> Iterator[None]:
    """Bounds for the render running inside this block; `names` are the template's literals."""
    token = _STATE.set(_State(time.monotonic() + deadline, RENDER_BUDGET, names))
    try:
        yield
    finally:
        _STATE.reset(token)


def shown(name: object) -> str:
    """A key or attribute for a message: quoted when the template spells it, else not shown."""
    state = _STATE.get()
    if isinstance(name, str) and state is not None and name in state.names:
        return repr(name)
    return "(a computed name, not shown)"


def _size(value: Any) -> int:
    if isinstance(value, str | bytes | tuple | list | dict | set | frozenset):
        return len(value)
    if isinstance(value, int):
        return value.bit_length() // 8
    return 0


def tick() -> None:
    """Check the render's deadline (no-op outside a render)."""
    state = _STATE.get()
    if state is not None and time.monotonic() > state.deadline:
        raise LimitExceeded(f"rendering took longer than {RENDER_DEADLINE:g}s")


def charge(size: int, what: str = "a value") -> None:
    """Count `size` against the render's budget; check the deadline."""
    if size > MAX_VALUE_LENGTH:
        raise LimitExceeded(f"{what} would be larger than the sandbox allows ({MAX_VALUE_LENGTH} characters)")
    state = _STATE.get()
    if state is None:
        return
    if time.monotonic() > state.deadline:
        raise LimitExceeded(f"rendering took longer than {RENDER_DEADLINE:g}s")
    state.budget -= size
    if state.budget < 0:
        raise LimitExceeded(f"the template produces more than {RENDER_BUDGET} characters in total")


def _width(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_WIDTH:
        raise LimitExceeded(f"{what} {value} is larger than the sandbox allows ({MAX_WIDTH})")


_PERCENT_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d+|\*)?(?:\.(\d+|\*))?")


def check_percent_format(fmt: str) -> None:
    """Widths and precisions in a printf-style format string stay small; no `*`."""
    for match in _PERCENT_FIELD.finditer(fmt):
        for group in match.groups():
            if group == "*":
                raise LimitExceeded("'*' widths are not allowed in the sandbox")
            if group is not None:
                _width(int(group) if len(group) < 7 else MAX_WIDTH + 1, "width")


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse an arithmetic or sequence operation whose result would be too large."""
    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(count, int):
                charge(len(seq) * max(count, 0), "a repetition")
        if ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise LimitExceeded("the product is larger than the sandbox allows")
    elif operator == "**":
        if ints and right > 0 and max(left.bit_length(), 1) * right > MAX_INT_BITS:
            raise LimitExceeded("the power is larger than the sandbox allows")
    elif operator == "+":
        if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            charge(len(left) + len(right), "a concatenation")
        elif ints and max(left.bit_length(), right.bit_length()) >= MAX_INT_BITS:
            raise LimitExceeded("the sum is larger than the sandbox allows")
    elif operator == "%" and isinstance(left, str):
        check_percent_format(left)
        charge(len(left) * 2, "a formatted string")


def checked_concat(parts: tuple[Any, ...]) -> str:
    """The `~` operator, with its result size checked before it is built."""
    texts = [p if isinstance(p, str) else str(p) for p in parts]
    charge(sum(map(len, texts)), "a concatenation")
    return "".join(texts)


# --- methods ----------------------------------------------------------------------------------

#: str methods a template may call; anything else (notably format and format_map) is refused.
_STR_METHODS = frozenset(
    {
        "lower", "upper", "strip", "lstrip", "rstrip", "title", "capitalize", "casefold",
        "swapcase", "split", "rsplit", "splitlines", "startswith", "endswith", "find", "rfind",
        "count", "replace", "join", "removeprefix", "removesuffix", "partition", "rpartition",
        "isdigit", "isalpha", "isalnum", "isascii", "islower", "isupper", "isspace",
        "ljust", "rjust", "center", "zfill",
    }
)  # fmt: skip
_MAPPING_METHODS = frozenset({"items", "keys", "values", "get"})
_SEQUENCE_METHODS = frozenset({"count", "index"})


def _replaced_size(s: str, old: str, new: str, count: int = -1) -> int:
    hits = (len(s) + 1) if old == "" else s.count(old)
    if count >= 0:
        hits = min(hits, count)
    return len(s) + hits * max(len(new) - len(old), 0)


def _joined(sep: str, items: Any) -> tuple[list[str], int]:
    texts = [i if isinstance(i, str) else str(i) for i in items]
    return texts, sum(map(len, texts)) + len(sep) * max(len(texts) - 1, 0)


def call_method(method: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """Call a method of a context value, checking its result size first; others are refused."""
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")
    if isinstance(owner, str) and name in _STR_METHODS:
        if name in ("ljust", "rjust", "center", "zfill") and args:
            _width(args[0], "width")
            charge(max(len(owner), int(args[0])), "a padded string")
        elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
            count = args[2] if len(args) > 2 and isinstance(args[2], int) else -1
            charge(_replaced_size(owner, args[0], args[1], count), "a replacement")
        elif name == "join" and args:
            texts, size = _joined(owner, args[0])
            charge(size, "a join")
            return owner.join(texts)
        else:
            charge(len(owner) * 3, "a string")
        return method(*args, **kwargs)
    if isinstance(owner, dict) and name in _MAPPING_METHODS:
        return method(*args, **kwargs)
    if isinstance(owner, tuple) and name in _SEQUENCE_METHODS:
        return method(*args, **kwargs)
    raise LimitExceeded(
        f"calling {type(owner).__name__}.{name or 'this'} is not allowed in the template sandbox"
    )


# --- filters ----------------------------------------------------------------------------------

#: Filters that walk their input item by item in Python: a long input is refused before the walk.
_ITEM_FILTERS = frozenset(
    {
        "sort", "unique", "groupby", "map", "select", "reject", "selectattr", "rejectattr", "sum",
        "min", "max", "dictsort", "batch", "slice", "list", "join", "first", "last", "length",
        "count", "reverse", "items", "tojson", "string",
    }
)  # fmt: skip
#: Filters whose integer arguments are widths, counts or lengths.
_SIZED_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate", "batch", "slice", "round", "replace"})


def guard_filter(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a built-in filter: arguments that size the result are checked before the call, the
    result is charged after it."""

    @functools.wraps(original)  # keeps jinja_pass_arg, so Jinja passes the same leading argument
    def guarded(*args: Any, **kwargs: Any) -> Any:
        values = [a for a in args if not isinstance(a, EvalContext | Environment)]
        if name in _ITEM_FILTERS and values:
            bounded = _bounded_items(name, values[0])
            if bounded is not values[0]:
                args = tuple(bounded if a is values[0] else a for a in args)
                values[0] = bounded
        if name in _SIZED_FILTERS:
            for arg in (*values[1:], *kwargs.values()):
                _width(arg, f"{name} argument")
        if name == "format" and values and isinstance(values[0], str):
            check_percent_format(values[0])
        elif name == "replace" and len(values) >= 3 and all(isinstance(v, str) for v in values[:3]):
            count = values[3] if len(values) > 3 and isinstance(values[3], int) else -1
            charge(_replaced_size(values[0], values[1], values[2], count), "a replacement")
        elif name == "join" and values:
            # Materialised once here, so a lazy input (map, select) is measured before the join.
            items = list(values[0])
            sep = values[1] if len(values) > 1 and isinstance(values[1], str) else str(kwargs.get("d", ""))
            charge(_joined(sep, items)[1], "a join")
            args = tuple(items if a is values[0] else a for a in args)
        result = original(*args, **kwargs)
        charge(_size(result), f"the result of {name}")
        return result

    return guarded


def _bounded_items(name: str, value: Any) -> Any:
    """`value` itself when its length is known and small; a lazy one (map, select) is materialised
    up to the limit, so the walk that would produce more items than allowed is stopped early."""
    if isinstance(value, str | bytes | list | tuple | dict | set | frozenset):
        if len(value) > MAX_ITEMS and not (isinstance(value, str) and name in ("length", "count", "string")):
            raise LimitExceeded(f"{name} was given more than {MAX_ITEMS} items")
        return value
    if not hasattr(value, "__next__"):
        return value
    items = list(itertools.islice(value, MAX_ITEMS + 1))
    if len(items) > MAX_ITEMS:
        raise LimitExceeded(f"{name} was given more than {MAX_ITEMS} items")
    tick()
    return iter(items)


def guard_test(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a built-in test (`is in`, `is divisibleby`): the deadline is checked after each one."""

    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        tick()
        return result

    return guarded
