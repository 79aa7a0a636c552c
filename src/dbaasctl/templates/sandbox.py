"""The Jinja environment templates run in: immutable sandbox, strict undefined, bounded operations.

Jinja's immutable sandbox blocks attribute walking at run time; this environment also refuses
`str.format` (the Jinja2 < 3.1.6 escapes went through it), lets keys win over dict methods, and
routes every operation that can allocate (`~`, arithmetic, method calls, filters) through `limits`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import quote

from jinja2 import StrictUndefined, Undefined, nodes
from jinja2 import exceptions as jexc
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from dbaasctl.templates import limits
from dbaasctl.templates.context import Scope, child_path

__all__ = ["ENV", "FORMAT_METHODS"]

#: Methods that interpret a string as a format with attribute access.
FORMAT_METHODS = frozenset({"format", "format_map"})
_MAPPING_METHODS = frozenset({"items", "keys", "values", "get"})


class _Undefined(StrictUndefined):
    """StrictUndefined whose message is the full key path of what was missing."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        name = self._undefined_name
        obj = self._undefined_obj
        if obj is missing:
            return f"{name} is not defined"
        if isinstance(obj, Scope):
            if limits.shown(name).startswith("("):  # a key computed at render time: never echoed
                return f"a computed key (not shown) is not defined in {obj._path}"
            return f"{child_path(obj._path, str(name))} is not defined"
        return f"{type(obj).__name__} value has no attribute or item {limits.shown(name)}"


def _urlencode(value: Any) -> str:
    """Percent-encode every reserved character (including `/`), so a value is safe in any URI
    component: user info, path segment or query. Pairs become a query string."""
    if isinstance(value, str) or not isinstance(value, Mapping | list | tuple):
        text = value if isinstance(value, str) else str(value)
        limits.charge(len(text) * 3, "an encoded value")
        return quote(text, safe="")
    items = value.items() if isinstance(value, Mapping) else value
    return "&".join(f"{quote(str(k), safe='')}={quote(str(v), safe='')}" for k, v in items)


class _CodeGenerator(CodeGenerator):
    """Compiles `~` to a call that checks the result size before building it."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_Compare(self, node: nodes.Compare, frame: Frame) -> None:
        # `needle in haystack` costs time but allocates nothing: the deadline is checked after it.
        self.write("environment.checked_compare(")
        super().visit_Compare(node, frame)
        self.write(")")


class _Environment(ImmutableSandboxedEnvironment):
    # Intercepting these also stops Jinja from constant-folding `9 ** 9 ** 9` at compile time.
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    code_generator_class = _CodeGenerator

    def __init__(self) -> None:
        super().__init__(
            undefined=_Undefined,
            autoescape=False,
            keep_trailing_newline=True,
            auto_reload=False,
            cache_size=0,
        )
        self.globals.clear()
        self.filters.pop("random", None)  # rendering must be deterministic: delete re-renders
        self.filters["urlencode"] = _urlencode
        for name, original in list(self.filters.items()):
            self.filters[name] = limits.guard_filter(name, original)
        tests = cast(dict[str, Callable[..., Any]], self.tests)
        for name, test in list(tests.items()):
            tests[name] = limits.guard_test(test)

    def checked_concat(self, parts: tuple[Any, ...]) -> str:
        return limits.checked_concat(parts)

    def checked_compare(self, outcome: Any) -> Any:
        limits.tick()
        return outcome

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limits.check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if not __self.is_safe_callable(__obj):
            raise jexc.SecurityError("this value is not safely callable")
        return limits.call_method(__obj, args, kwargs)

    def wrap_str_format(self, value: Any) -> None:
        # Jinja would hand out a sandboxed str.format; templates get none (see is_safe_attribute).
        return None

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in FORMAT_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        # Fail at once instead of returning an Undefined that a filter (map, list) could carry
        # along silently.
        kind = "mapping" if isinstance(obj, Scope) else type(obj).__name__
        raise jexc.SecurityError(
            f"access to attribute {limits.shown(attribute)} of a {kind} value is not allowed in the sandbox"
        )

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Keys win over dict methods: `params.items` is the param called "items".
        if isinstance(obj, Scope):
            if attribute in obj:
                return obj[attribute]
            if attribute.startswith("_"):
                return self.unsafe_undefined(obj, attribute)
            if attribute not in _MAPPING_METHODS:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Scope) and isinstance(argument, str):
            if argument in obj:
                return obj[argument]
            return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)


ENV = _Environment()
