"""Sandboxed rendering of DatabaseClass templates (procedure inputs and Secret values).

Why it looks like this:

* Values are data, never template text. The reference operator rendered a JSON document as a
  template and parsed it back, so a quote or backslash in a value corrupted the result. Here each
  template is compiled once and the values go in through the context, so whatever a user or a
  procedure returns comes out byte for byte.
* Templates are written by DBAs but run inside the operator, next to DSN passwords. Jinja's
  immutable sandbox blocks attribute walking at run time; on top of that every template is
  checked statically (no `_` attributes, no globals such as `self`, `lipsum` or `cycler`, no
  includes) so a bad class is refused when it is validated, not when it first renders.
* The reference's Go-style references (`{{ .Metadata.name }}`, `{{ .Parameters.x }}`,
  `{{ .Params.x }}`, `{{ .Result.x }}`) are rewritten before compiling, so existing classes port
  unchanged.
* A missing key is an error naming the full path ("params.size is not defined"), the same
  strictness as Go's `missingkey=error` with a message a DBA can act on.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from jinja2 import StrictUndefined, Template, Undefined, nodes
from jinja2 import exceptions as jexc
from jinja2 import meta as jmeta
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from dbaasctl import template_limits as limits
from dbaasctl.redaction import mask
from dbaasctl.template_go import go_hint

if TYPE_CHECKING:
    from dbaasctl.api.database import Database

__all__ = [
    "CONTEXT_NAMES",
    "MAX_RENDERED_LENGTH",
    "MAX_TEMPLATE_LENGTH",
    "TemplateContext",
    "TemplateError",
    "TemplateRenderError",
    "TemplateSecurityError",
    "TemplateSyntaxError",
    "TemplateUndefinedError",
    "render_inputs",
    "render_secret",
    "render_template",
    "template_references",
    "translate_go_style",
    "validate_template",
]

#: The only top-level names a template sees.
CONTEXT_NAMES: tuple[str, ...] = ("metadata", "params", "result", "endpoint", "previous")
#: Larger output is refused: a Secret as a whole is limited to 1 MiB anyway.
MAX_RENDERED_LENGTH = limits.MAX_VALUE_LENGTH
#: Longer template text is refused; templates are one-line references, not programs.
MAX_TEMPLATE_LENGTH = 64 * 1024
#: Statements procedure inputs and Secret values never need; each one is a way to spend
#: unbounded time (loops, recursion through macros) or to hide a computation.
_REFUSED_STATEMENTS: dict[type[nodes.Node], str] = {
    nodes.For: "for loops",
    nodes.Macro: "macros",
    nodes.CallBlock: "call blocks",
    nodes.FilterBlock: "filter blocks",
    nodes.AssignBlock: "set blocks",
    nodes.Block: "blocks",
    nodes.With: "with blocks",
    nodes.Scope: "scoped blocks",
    nodes.ScopedEvalContextModifier: "autoescape blocks",
    nodes.EvalContextModifier: "autoescape blocks",
}
#: Methods that interpret a string as a format with attribute access (the Jinja2 < 3.1.6
#: sandbox escapes went through them).
_FORMAT_METHODS = frozenset({"format", "format_map"})
_DUNDER_FIELD = re.compile(r"\{[^{}]*__")

#: Names that exist in a stock Jinja environment (or in Flask/Ansible folklore) and are the usual
#: first step of a sandbox escape. Using one is reported as a security problem, not a typo.
_FORBIDDEN_NAMES = frozenset(
    {
        "self",
        "lipsum",
        "cycler",
        "joiner",
        "namespace",
        "range",
        "dict",
        "config",
        "request",
        "session",
        "g",
        "url_for",
        "get_flashed_messages",
        "__builtins__",
        "__import__",
    }
)
_GO_ROOTS = {
    "Metadata": "metadata",
    "Parameters": "params",
    "Params": "params",
    "Result": "result",
    "Endpoint": "endpoint",
}
_MAPPING_METHODS = frozenset({"items", "keys", "values", "get"})
#: Filters that take an attribute name as a string argument (`map(attribute="x")`).
_ATTRIBUTE_FILTERS = frozenset(
    {"attr", "map", "selectattr", "rejectattr", "sort", "groupby", "sum", "unique", "min", "max"}
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# --- errors ------------------------------------------------------------------------------------


class TemplateError(Exception):
    """A template could not be compiled or rendered. The message never contains result values.

    `key` names the input or Secret key whose template failed, when known.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.detail = message
        self.key = key
        super().__init__(message)

    def for_key(self, kind: str, key: str) -> TemplateError:
        """The same error, prefixed with where it happened (`input "k8sName": ...`)."""
        err = type(self)(f"{kind} {json.dumps(key, ensure_ascii=False)}: {self.detail}", key=key)
        err.detail = self.detail
        return err


class TemplateSyntaxError(TemplateError):
    """The template text does not parse."""


class TemplateUndefinedError(TemplateError):
    """The template references a name or key the context does not have."""


class TemplateSecurityError(TemplateError):
    """The template tried something the sandbox forbids (attribute walking, globals, huge output)."""


class TemplateRenderError(TemplateError):
    """Any other failure while rendering (a filter given the wrong type, division by zero, ...)."""


# --- context -----------------------------------------------------------------------------------


def _child_path(path: str, key: str) -> str:
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


class _Scope(dict[str, Any]):
    """A context mapping that knows its own path, so a missing key can be named precisely.

    It is a dict (so filters such as tojson and dictsort work); the immutable sandbox refuses
    every mutating method on it.
    """

    __slots__ = ("_path",)

    def __init__(self, path: str, data: Mapping[str, Any]) -> None:
        super().__init__((k, _wrap(_child_path(path, k), v)) for k, v in data.items())
        self._path = path


def _wrap(path: str, value: Any) -> Any:
    if isinstance(value, Mapping):
        return _Scope(path, value)
    if isinstance(value, list | tuple):
        return tuple(_wrap(f"{path}[{i}]", v) for i, v in enumerate(value))
    return value


@dataclass(frozen=True, slots=True)
class TemplateContext:
    """Everything a template may reference.

    `metadata` holds name, namespace, uid, labels and annotations of the Database; `params` its
    effective params (class defaults applied); `result` the row set the create or rotate
    procedure returned (empty while rendering procedure inputs); `endpoint` at least `name`;
    `previous` the data of the Secret a rotation supersedes (rotate and retire inputs of a two-phase
    rotation; empty elsewhere, or when that Secret was missing or modified).
    """

    metadata: Mapping[str, Any]
    params: Mapping[str, str]
    result: Mapping[str, str] = field(default_factory=dict)
    endpoint: Mapping[str, str] = field(default_factory=dict)
    previous: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_database(
        cls,
        db: Database,
        *,
        params: Mapping[str, str] | None = None,
        result: Mapping[str, str] | None = None,
        endpoint_name: str | None = None,
    ) -> TemplateContext:
        """The context for one Database; `params` overrides spec.params (use the resolved ones)."""
        meta = db.metadata
        metadata: dict[str, Any] = {
            "name": meta.name,
            "namespace": meta.namespace or "",
            "labels": dict(meta.labels),
            "annotations": dict(meta.annotations),
        }
        if meta.uid:
            metadata["uid"] = meta.uid
        return cls(
            metadata=metadata,
            params=dict(db.spec.params if params is None else params),
            result=dict(result or {}),
            endpoint={"name": endpoint_name if endpoint_name is not None else db.spec.endpoint},
        )

    def with_result(self, result: Mapping[str, str]) -> TemplateContext:
        """The same context with a procedure's result, for rendering the Secret."""
        return replace(self, result=dict(result))

    def with_previous(self, previous: Mapping[str, str]) -> TemplateContext:
        """The same context with the superseded Secret's data, for rotate and retire inputs."""
        return replace(self, previous=dict(previous))

    def _variables(self) -> dict[str, Any]:
        return {
            "metadata": _Scope("metadata", self.metadata),
            "params": _Scope("params", self.params),
            "result": _Scope("result", self.result),
            "endpoint": _Scope("endpoint", self.endpoint),
            "previous": _Scope("previous", self.previous),
        }


# --- the sandbox -------------------------------------------------------------------------------


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
        if isinstance(obj, _Scope):
            if limits.shown(name).startswith("("):  # a key computed at render time: never echoed
                return f"a computed key (not shown) is not defined in {obj._path}"
            return f"{_child_path(obj._path, str(name))} is not defined"
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

    def checked_concat(self, parts: tuple[Any, ...]) -> str:
        return limits.checked_concat(parts)

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
        if isinstance(obj, str) and attr in _FORMAT_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        # Fail at once instead of returning an Undefined that a filter (map, list) could carry
        # along silently.
        kind = "mapping" if isinstance(obj, _Scope) else type(obj).__name__
        raise jexc.SecurityError(
            f"access to attribute {limits.shown(attribute)} of a {kind} value is not allowed in the sandbox"
        )

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Keys win over dict methods: `params.items` is the param called "items".
        if isinstance(obj, _Scope):
            if attribute in obj:
                return obj[attribute]
            if attribute.startswith("_"):
                return self.unsafe_undefined(obj, attribute)
            if attribute not in _MAPPING_METHODS:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, _Scope) and isinstance(argument, str):
            if argument in obj:
                return obj[argument]
            return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)


_ENV = _Environment()


# --- Go-style references -----------------------------------------------------------------------

_TAG_OPEN = re.compile(r"\{\{|\{%|\{#")
_RAW_OPEN = re.compile(r"\{%-?\s*raw\s*-?%\}")
_RAW_CLOSE = re.compile(r"\{%-?\s*endraw\s*-?%\}")
_GO_REF = re.compile(r"(?<![\w.)\]])\.(" + "|".join(_GO_ROOTS) + r")\b")
_CLOSERS = {"{{": "}}", "{%": "%}", "{#": "#}"}


def _translate_code(code: str) -> str:
    """Rewrite Go-style roots in the code of one tag, leaving string literals alone."""
    out: list[str] = []
    pos = 0
    plain_start = 0
    while pos < len(code):
        ch = code[pos]
        if ch in "'\"":
            out.append(_GO_REF.sub(lambda m: _GO_ROOTS[m.group(1)], code[plain_start:pos]))
            end = pos + 1
            while end < len(code) and code[end] != ch:
                end += 2 if code[end] == "\\" else 1
            out.append(code[pos : end + 1])
            pos = plain_start = end + 1
        else:
            pos += 1
    out.append(_GO_REF.sub(lambda m: _GO_ROOTS[m.group(1)], code[plain_start:]))
    return "".join(out)


def translate_go_style(text: str) -> str:
    """`{{ .Metadata.name }}` -> `{{ metadata.name }}` and friends; text outside tags is untouched."""
    if "." not in text:
        return text
    out: list[str] = []
    pos = 0
    while True:
        match = _TAG_OPEN.search(text, pos)
        if match is None:
            out.append(text[pos:])
            return "".join(out)
        start = match.start()
        opener = match.group()
        if opener == "{%":
            raw = _RAW_OPEN.match(text, start)
            if raw is not None:
                close = _RAW_CLOSE.search(text, raw.end())
                end = close.end() if close else len(text)
                out.append(text[pos:end])
                pos = end
                continue
        closer = _CLOSERS[opener]
        close_at = _find_closer(text, match.end(), closer)
        if close_at < 0:  # unterminated tag: leave it for the parser to report
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos : match.end()])
        code = text[match.end() : close_at]
        out.append(code if opener == "{#" else _translate_code(code))
        pos = close_at


def _find_closer(text: str, pos: int, closer: str) -> int:
    """Index of the closer that ends a tag, skipping string literals inside it."""
    while pos < len(text):
        if text.startswith(closer, pos):
            return pos
        ch = text[pos]
        if ch in "'\"" and closer != "#}":
            pos += 1
            while pos < len(text) and text[pos] != ch:
                pos += 2 if text[pos] == "\\" else 1
        pos += 1
    return -1


# --- compile, check, render --------------------------------------------------------------------


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child)


def _is_private(value: object) -> bool:
    return isinstance(value, str) and any(part.startswith("_") for part in value.split("."))


def _check_ast(ast: nodes.Template) -> None:
    for node in _walk(ast):
        refused = _REFUSED_STATEMENTS.get(type(node))
        if refused is not None:
            raise TemplateSecurityError(
                f"line {node.lineno}: {refused} are not available in templates; procedure inputs and "
                "Secret values take references, filters and if/else only"
            )
        if isinstance(node, nodes.Getattr) and (node.attr.startswith("_") or node.attr in _FORMAT_METHODS):
            raise TemplateSecurityError(
                f"line {node.lineno}: access to attribute {node.attr!r} is not allowed in the template sandbox"
                + ("; use the format filter ('%s' | format(x)) or ~" if node.attr in _FORMAT_METHODS else "")
            )
        if isinstance(node, nodes.Const) and isinstance(node.value, str) and _DUNDER_FIELD.search(node.value):
            raise TemplateSecurityError(
                f"line {node.lineno}: a string with a format field naming '__' attributes is not allowed "
                "in the template sandbox"
            )
        if isinstance(node, nodes.Name) and node.name in _FORBIDDEN_NAMES:
            raise TemplateSecurityError(
                f"line {node.lineno}: {node.name!r} is not available in the template sandbox; "
                f"templates see only {', '.join(CONTEXT_NAMES)}"
            )
        if isinstance(node, nodes.Filter | nodes.Test):
            if any(p.startswith("_") for p in node.name.split(".")):
                raise TemplateSecurityError(
                    f"line {node.lineno}: filter or test {node.name!r} is not allowed in the template sandbox"
                )
            if node.name in _ATTRIBUTE_FILTERS:
                for arg in (*node.args, *(kw.value for kw in node.kwargs)):
                    if not isinstance(arg, nodes.Const):
                        raise TemplateSecurityError(
                            f"line {node.lineno}: the attribute names given to {node.name} must be "
                            "literal strings in the template sandbox"
                        )
                    if _is_private(arg.value) or arg.value in _FORMAT_METHODS:
                        raise TemplateSecurityError(
                            f"line {node.lineno}: attribute {arg.value!r} is not allowed in the template sandbox"
                        )
        if isinstance(node, nodes.Extends | nodes.Include | nodes.Import | nodes.FromImport):
            raise TemplateSecurityError(
                f"line {node.lineno}: extends, include and import are not available in the template sandbox"
            )
    try:
        undeclared = jmeta.find_undeclared_variables(ast)
    except jexc.TemplateAssertionError as exc:  # e.g. an unknown filter
        raise TemplateSyntaxError(f"line {exc.lineno}: {exc.message}") from None
    unknown = sorted(undeclared - set(CONTEXT_NAMES))
    if unknown:
        raise TemplateUndefinedError(
            f"{unknown[0]} is not defined; templates see only {', '.join(CONTEXT_NAMES)} "
            "(Go-style .Metadata, .Parameters, .Params, .Result and .Endpoint work too)"
        )


def _literal_names(ast: nodes.Template) -> frozenset[str]:
    """Every name and string the template spells out: only these may appear in a message."""
    found: set[str] = set()
    for node in _walk(ast):
        if isinstance(node, nodes.Getattr):
            found.add(node.attr)
        elif isinstance(node, nodes.Name):
            found.add(node.name)
        elif isinstance(node, nodes.Const) and isinstance(node.value, str):
            found.add(node.value)
    return frozenset(found)


@functools.lru_cache(maxsize=4096)
def _compile(text: str) -> tuple[Template, frozenset[str]]:
    if len(text) > MAX_TEMPLATE_LENGTH:
        raise TemplateSecurityError(f"the template is longer than {MAX_TEMPLATE_LENGTH} characters")
    source = translate_go_style(text)
    failure: str | None = None
    try:
        ast = _ENV.parse(source)
    except jexc.TemplateSyntaxError as exc:
        failure = f"line {exc.lineno}: {exc.message}"
    except RecursionError:
        failure = "the template is nested too deeply"
    if failure is not None:
        hint = go_hint(text)
        if hint is None and re.search(r"\{\{-?\s*\.[A-Z]", text):
            hint = "Go-style references must start with .Metadata, .Parameters, .Params, .Result or .Endpoint"
        raise TemplateSyntaxError(f"{failure} ({hint})" if hint else failure)
    try:
        _check_ast(ast)
    except TemplateSyntaxError as exc:
        hint = go_hint(text)
        if hint is None:
            raise
        raise TemplateSyntaxError(f"{exc.detail} ({hint})") from None
    try:
        return _ENV.from_string(ast), _literal_names(ast)
    except (jexc.TemplateError, RecursionError) as exc:
        raise TemplateSyntaxError(f"the template cannot be compiled: {type(exc).__name__}") from None


def validate_template(text: str) -> None:
    """Compile a template and run the static sandbox checks; raises a TemplateError subclass.

    Cheap enough for admission and for status checks of a DatabaseClass: results are cached.
    """
    _compile(text)


def render_template(text: str, ctx: TemplateContext) -> str:
    """Render one template against a context."""
    return _render(text, ctx, ctx._variables())


def _render(text: str, ctx: TemplateContext, variables: dict[str, Any]) -> str:
    template, names = _compile(text)
    failure: tuple[type[TemplateError], str] | None = None
    rendered = ""
    try:
        with limits.rendering(names):
            rendered = template.render(variables)
    except jexc.SecurityError as exc:
        failure = TemplateSecurityError, str(exc)
    except jexc.UndefinedError as exc:
        failure = TemplateUndefinedError, str(exc)
    except (OverflowError, MemoryError):
        failure = TemplateSecurityError, "a value is too large for the template sandbox"
    except RecursionError:
        failure = TemplateSecurityError, "the template recursed too deeply"
    except Exception as exc:
        # Python's own messages quote the values they failed on; only the kind is reported.
        failure = TemplateRenderError, f"{type(exc).__name__} while rendering"
    if failure is not None:
        # Raised outside the except block so no driver or Jinja exception rides along as
        # __context__; the message is masked of every context value as a second line.
        exc_type, message = failure
        raise exc_type(
            mask(message, [*ctx.result.values(), *(v for v in ctx.params.values() if len(v) >= 4)])
        )
    if len(rendered) > MAX_RENDERED_LENGTH:
        raise TemplateSecurityError(f"rendered value is larger than {MAX_RENDERED_LENGTH} characters")
    return rendered


def _render_all(kind: str, templates: Mapping[str, str], ctx: TemplateContext) -> dict[str, str]:
    out: dict[str, str] = {}
    variables = ctx._variables()  # read-only to templates, so one build serves every key
    for key, text in templates.items():
        try:
            out[key] = _render(text, ctx, variables)
        except TemplateError as exc:
            raise exc.for_key(kind, key) from None
    return out


def render_inputs(inputs: Mapping[str, str], ctx: TemplateContext) -> dict[str, str]:
    """Render an operation's inputs (parameter name or position -> value)."""
    return _render_all("input", inputs, ctx)


def render_secret(fmt: Mapping[str, str], ctx: TemplateContext) -> dict[str, str]:
    """Render a class's secretFormat against a context that carries the procedure's result."""
    return _render_all("secretFormat", fmt, ctx)


def template_references(text: str) -> frozenset[tuple[str, str]]:
    """The (root, key) pairs a template reads with a constant key, e.g. ("result", "password").

    Lets callers check before any DBMS call that the keys a Secret needs will be there, and
    lets `dbaasctl render` list the result keys a class expects.
    """
    _compile(text)  # validates first
    ast = _ENV.parse(translate_go_style(text))
    refs: set[tuple[str, str]] = set()
    for node in _walk(ast):
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
            refs.add((node.node.name, node.attr))
        elif (
            isinstance(node, nodes.Getitem)
            and isinstance(node.node, nodes.Name)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            refs.add((node.node.name, node.arg.value))
    return frozenset((root, key) for root, key in refs if root in CONTEXT_NAMES)
