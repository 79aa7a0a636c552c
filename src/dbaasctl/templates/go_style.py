"""Go-template compatibility for classes ported from the reference operator.

Its references (`{{ .Metadata.name }}`, `{{ .Parameters.x }}`, `{{ .Params.x }}`, `{{ .Result.x }}`)
are rewritten to Jinja before compiling, so existing classes port unchanged; its functions and actions are
not, and Jinja's own message for them ("expected token 'end of print statement'") says nothing
useful. `go_hint` names the Go construct and the Jinja spelling that does the same.
"""

from __future__ import annotations

import re

__all__ = ["go_hint", "translate_go_style"]

_GO_ROOTS = {
    "Metadata": "metadata",
    "Parameters": "params",
    "Params": "params",
    "Result": "result",
    "Endpoint": "endpoint",
    "Operation": "operation",
}

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
