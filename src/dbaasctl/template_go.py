"""Hints for Go-template constructs ported from the reference operator's classes.

Its references (`.Metadata.name`, `.Params.x`) are translated; its functions and actions are
not, and Jinja's own message for them ("expected token 'end of print statement'") says nothing
useful. `go_hint` names the Go construct and the Jinja spelling that does the same.
"""

from __future__ import annotations

import re

__all__ = ["go_hint"]

#: Go function or action -> the supported Jinja equivalent.
_EQUIVALENTS: dict[str, str] = {
    "printf": "the format filter: {{ '%s-%s' | format(params.a, params.b) }}, or a ~ b",
    "print": "~ to join values: {{ params.a ~ params.b }}",
    "println": "~ to join values: {{ params.a ~ params.b }}",
    "index": 'a subscript: {{ params["my-key"] }} or {{ result["key"] }}',
    "range": "reference each key explicitly (loops are not available in templates)",
    "with": "{% if params.x %}...{% endif %} and params.x",
    "end": "{% endif %} (Jinja closes if blocks with endif)",
    "define": "nothing: templates cannot define other templates",
    "template": "nothing: templates cannot include other templates",
    "block": "nothing: templates cannot define blocks",
    "len": "the length filter: {{ params.x | length }}",
    "urlquery": "the urlencode filter: {{ result.password | urlencode }}",
    "html": "the escape filter: {{ params.x | escape }}",
    "js": "the tojson filter: {{ params.x | tojson }}",
    "slice": "slicing: {{ params.x[1:3] }}",
    "and": "the and operator: {% if a and b %}",
    "or": "the or operator: {{ a or b }}",
    "not": "the not operator: {% if not a %}",
    "eq": "==",
    "ne": "!=",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
    "call": "nothing: templates cannot call functions",
}
_NAMES = "|".join(sorted(_EQUIVALENTS, key=len, reverse=True))
# `{{ printf "..." .x }}`, `{{- index .Params "k" }}`, `{{ range .Result }}`, `{{ end }}`: a Go
# function at the start of an action, followed by an argument (or the end of the action).
_ACTION = re.compile(r"\{\{-?\s*(" + _NAMES + r")(?:\s+[\"'`.$\w(]|\s*-?\}\})")
# `{{ .Params.x | printf "%q" }}`, `{{ .Params.x | urlquery }}`: a pipeline into a Go function.
_PIPE = re.compile(r"\|\s*(" + _NAMES + r")\b(?!\s*\()")
# `{{ if .x }}`, `{{ else }}`: Go actions Jinja spells as statements.
_STATEMENT = re.compile(r"\{\{-?\s*(if|else)\b")


def go_hint(text: str) -> str | None:
    """A hint when the template uses a Go-template construct; None otherwise."""
    statement = _STATEMENT.search(text)
    if statement is not None:
        word = statement.group(1)
        return f"Go template action {word!r} is not supported; write {{% {word} ... %}} ... {{% endif %}}"
    for pattern in (_ACTION, _PIPE):
        found = pattern.search(text)
        if found is not None:
            name = found.group(1)
            return f"Go template function {name!r} is not supported; use {_EQUIVALENTS[name]}"
    return None
