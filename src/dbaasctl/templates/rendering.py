"""Compile, check and render one template, or every template of an input or secretFormat map.

Values are data, never template text: each template is compiled once (cached) and values go in
through the context, so whatever a user or a procedure returns comes out byte for byte. A missing key
is an error naming the full path ("params.size is not defined"), the strictness of Go's
`missingkey=error` with a message a DBA can act on. These calls are synchronous and bounded by
`limits`; the reconciler runs them off the event loop through `offloop`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from jinja2 import Template, nodes
from jinja2 import exceptions as jexc

from dbaasctl.redaction import mask
from dbaasctl.templates import limits
from dbaasctl.templates.checks import check_ast, literal_names, walk
from dbaasctl.templates.context import CONTEXT_NAMES, TemplateContext
from dbaasctl.templates.errors import (
    TemplateError,
    TemplateRenderError,
    TemplateSecurityError,
    TemplateSyntaxError,
    TemplateUndefinedError,
)
from dbaasctl.templates.go_style import go_hint, translate_go_style
from dbaasctl.templates.sandbox import ENV

__all__ = [
    "MAX_CHEAP_REFERENCES",
    "MAX_RENDERED_LENGTH",
    "MAX_TEMPLATE_LENGTH",
    "MAX_TEMPLATE_NODES",
    "cheap",
    "render_inputs",
    "render_secret",
    "render_template",
    "template_references",
    "validate_template",
]

#: Larger output is refused: a Secret as a whole is limited to 1 MiB anyway.
MAX_RENDERED_LENGTH = limits.MAX_VALUE_LENGTH
#: Longer template text is refused; templates are one-line references, not programs.
MAX_TEMPLATE_LENGTH = 64 * 1024
#: Syntax-tree nodes a template may have: compiling costs about a quarter of a millisecond per node,
#: and a reference with a filter or two is a dozen.
MAX_TEMPLATE_NODES = 2000


def _compile(text: str) -> tuple[Template, frozenset[str]]:
    """The compiled template and its literal names; a refusal is remembered like a success, so a bad
    class costs one compile per process, not one per reconcile."""
    outcome = _compiled(text)
    if isinstance(outcome, TemplateError):
        raise type(outcome)(outcome.detail) from None
    return outcome


#: Filters whose cost is linear in their input and that call nothing of the template's.
_CHEAP_FILTERS = frozenset({"urlencode", "lower", "upper", "trim", "default", "d"})
_CHEAP_NODES = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Const,
    nodes.Name,
    nodes.Getattr,
    nodes.Getitem,
    nodes.Filter,
)
#: References a cheap template may make: with each value at most MAX_VALUE_LENGTH, its output is bounded.
MAX_CHEAP_REFERENCES = 8
_COMPILED_CACHE = 4096
#: Compiled templates known to be cheap (see `cheap`), filled by the compile. Evicted on its own: should
#: the compile cache have dropped a cheap template first, compiling it again is as small as the template.
_CHEAP: dict[str, bool] = {}


def _is_cheap(ast: nodes.Template) -> bool:
    references = 0
    for node in walk(ast):
        if not isinstance(node, _CHEAP_NODES):
            return False
        if isinstance(node, nodes.Getitem) and not isinstance(node.arg, nodes.Const):
            return False
        if isinstance(node, nodes.Filter) and (
            node.name not in _CHEAP_FILTERS
            or node.kwargs
            or node.dyn_args is not None
            or node.dyn_kwargs is not None
            or not all(isinstance(arg, nodes.Const) for arg in node.args)
        ):
            return False
        if isinstance(node, nodes.Name):
            references += 1
    return references <= MAX_CHEAP_REFERENCES


def cheap(text: str) -> bool:
    """Compiled already, and only references, literal text and linear filters (`{{ result.password |
    urlencode }}`): its render costs microseconds whatever the values, less than handing it to a thread.
    False for a template not compiled yet: the compile itself may be expensive."""
    return _CHEAP.get(text, False)


@functools.lru_cache(maxsize=_COMPILED_CACHE)
def _compiled(text: str) -> tuple[Template, frozenset[str]] | TemplateError:
    try:
        return _compile_uncached(text)
    except TemplateError as exc:
        exc.__traceback__ = exc.__context__ = exc.__cause__ = None  # keep no frames (and ASTs) alive
        return exc


def _compile_uncached(text: str) -> tuple[Template, frozenset[str]]:
    if len(text) > MAX_TEMPLATE_LENGTH:
        raise TemplateSecurityError(f"the template is longer than {MAX_TEMPLATE_LENGTH} characters")
    source = translate_go_style(text)
    failure: str | None = None
    try:
        ast = ENV.parse(source)
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
        nodes_count = sum(1 for _ in walk(ast))
    except RecursionError:
        raise TemplateSyntaxError("the template is nested too deeply") from None
    if nodes_count > MAX_TEMPLATE_NODES:
        raise TemplateSecurityError(
            f"the template has more than {MAX_TEMPLATE_NODES} elements; templates are references with "
            "a few filters, not programs"
        )
    try:
        check_ast(ast)
    except TemplateSyntaxError as exc:
        hint = go_hint(text)
        if hint is None:
            raise
        raise TemplateSyntaxError(f"{exc.detail} ({hint})") from None
    try:
        compiled = ENV.from_string(ast), literal_names(ast)
    except (jexc.TemplateError, RecursionError) as exc:
        raise TemplateSyntaxError(f"the template cannot be compiled: {type(exc).__name__}") from None
    if len(_CHEAP) >= _COMPILED_CACHE:
        del _CHEAP[next(iter(_CHEAP))]
    _CHEAP[text] = _is_cheap(ast)
    return compiled


def validate_template(text: str) -> None:
    """Compile a template and run the static sandbox checks; raises a TemplateError subclass.

    Results (refusals too) are cached; the reconciler runs the first compile off the event loop.
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
    ast = ENV.parse(translate_go_style(text))
    refs: set[tuple[str, str]] = set()
    for node in walk(ast):
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
