"""Static checks run when a template is compiled, so a bad class is refused when it is validated.

Procedure inputs and Secret values need references, filters and if/else, nothing more: statements
that loop, recurse or hide a computation are refused, as are `_` attributes, the format methods,
globals that are the usual first step of a sandbox escape, and includes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from jinja2 import exceptions as jexc
from jinja2 import meta as jmeta
from jinja2 import nodes

from dbaasctl.templates.context import CONTEXT_NAMES
from dbaasctl.templates.errors import TemplateSecurityError, TemplateSyntaxError, TemplateUndefinedError
from dbaasctl.templates.sandbox import FORMAT_METHODS

__all__ = ["check_ast", "literal_names", "walk"]

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
#: A format field naming `__` attributes: the Jinja2 < 3.1.6 sandbox escapes were built from one.
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
#: Filters that take an attribute name as a string argument (`map(attribute="x")`).
_ATTRIBUTE_FILTERS = frozenset(
    {"attr", "map", "selectattr", "rejectattr", "sort", "groupby", "sum", "unique", "min", "max"}
)


def walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from walk(child)


def _is_private(value: object) -> bool:
    return isinstance(value, str) and any(part.startswith("_") for part in value.split("."))


def check_ast(ast: nodes.Template) -> None:
    for node in walk(ast):
        refused = _REFUSED_STATEMENTS.get(type(node))
        if refused is not None:
            raise TemplateSecurityError(
                f"line {node.lineno}: {refused} are not available in templates; procedure inputs and "
                "Secret values take references, filters and if/else only"
            )
        if isinstance(node, nodes.Getattr) and (node.attr.startswith("_") or node.attr in FORMAT_METHODS):
            raise TemplateSecurityError(
                f"line {node.lineno}: access to attribute {node.attr!r} is not allowed in the template sandbox"
                + ("; use the format filter ('%s' | format(x)) or ~" if node.attr in FORMAT_METHODS else "")
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
                    if _is_private(arg.value) or arg.value in FORMAT_METHODS:
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
            "(Go-style .Metadata, .Parameters, .Params, .Result, .Endpoint and .Operation work too)"
        )


def literal_names(ast: nodes.Template) -> frozenset[str]:
    """Every name and string the template spells out: only these may appear in a message."""
    found: set[str] = set()
    for node in walk(ast):
        if isinstance(node, nodes.Getattr):
            found.add(node.attr)
        elif isinstance(node, nodes.Name):
            found.add(node.name)
        elif isinstance(node, nodes.Const) and isinstance(node.value, str):
            found.add(node.value)
    return frozenset(found)
