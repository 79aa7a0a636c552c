"""Templates cannot escape the sandbox, exhaust the operator, or echo issued credentials.

Each exhaustion payload runs in a child process with a 1 GiB address-space limit and a time
limit, so a template that would hang or allocate gigabytes fails the test instead of the run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import re
import subprocess
import sys
import textwrap
from urllib.parse import unquote, urlsplit

import pytest

from dbaasctl.templates import (
    TemplateContext,
    TemplateError,
    TemplateSecurityError,
    TemplateSyntaxError,
    render_secret,
    render_template,
    validate_template,
)

PASSWORD = "Iss-ued_Pa55word!xyz"
CTX = TemplateContext(
    metadata={"name": "orders", "namespace": "shop"},
    params={"size": "10"},
    result={"password": PASSWORD, "username": "app_user"},
    endpoint={"name": "pg"},
)

_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    from dbaasctl.templates import TemplateContext, render_template
    ctx = TemplateContext(metadata={"name": "n"}, params={"size": "10"}, result={"password": "pw-123456"})
    render_template("{{ metadata.name | upper ~ 'x' * 3 }}", ctx)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        out = render_template(sys.argv[1], ctx)
        outcome = {"ok": len(out)}
    except BaseException as exc:
        outcome = {"error": type(exc).__module__ + "." + type(exc).__name__, "message": str(exc)}
    outcome["grew_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps(outcome))
    """
)
#: What one render may add to the process's peak memory (the budget is 8 MiB of characters).
MAX_GROWTH_KIB = 64 * 1024


def _render_in_child(template: str) -> dict[str, object]:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, template], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail("rendering did not end within 60 s")
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


EXHAUSTION = [
    "{% for a in 'x' * 1000000 %}{% for b in 'x' * 1000000 %}{% endfor %}{% endfor %}",
    "{% for a in 'x' * 30000 %}{% for b in 'x' * 30000 %}.{% endfor %}{% endfor %}",
    "{{ 'a'.ljust(10 ** 9) }}",
    "{{ 'a'.rjust(10 ** 9) }}",
    "{{ 'a'.center(10 ** 9) }}",
    "{{ 'a'.zfill(10 ** 9) }}",
    "{{ '{:>1000000000}'.format('a') }}",
    "{{ ('a' * 1000000).replace('a', 'a' * 1000) }}",
    "{{ ('a' * 1000000) | replace('a', 'a' * 1000) }}",
    "{{ ('a' * 1000).join('b' * 1000000) }}",
    "{{ ('b' * 1000000) | join('a' * 1000) }}",
    "{{ 'x' | center(1000000000) }}",
    "{{ [1] | batch(1000000000, 'x') | list }}",
    "{{ [1] | slice(100000000) | list }}",
    "{% set v1 = 2 ** 2000 %}"
    "{% set v2 = v1 * v1 %}"
    "{% set v3 = v2 * v2 %}"
    "{% set v4 = v3 * v3 %}"
    "{% set v5 = v4 * v4 %}"
    "{% set v6 = v5 * v5 %}"
    "{% set v7 = v6 * v6 %}"
    "{% set v8 = v7 * v7 %}"
    "{% set v9 = v8 * v8 %}"
    "{% set v10 = v9 * v9 %}"
    "{% set v11 = v10 * v10 %}"
    "{% set v12 = v11 * v11 %}"
    "{% set v13 = v12 * v12 %}"
    "{% set v14 = v13 * v13 %}"
    "{% set v15 = v14 * v14 %}"
    "{% set v16 = v15 * v15 %}"
    "{% set v17 = v16 * v16 %}"
    "{% set v18 = v17 * v17 %}"
    "{% set v19 = v18 * v18 %}"
    "{{ v19 % 7 }}",
    "{% set v1 = 'x' * 1000000 %}{% set v2 = v1 ~ v1 %}{% set v3 = v2 ~ v2 %}{% set v4 = v3 ~ v3 %}{% set v5 = v4 ~ v4 %}{% set v6 = v5 ~ v5 %}{% set v7 = v6 ~ v6 %}{% set v8 = v7 ~ v7 %}{% set v9 = v8 ~ v8 %}{% set v10 = v9 ~ v9 %}{% set v11 = v10 ~ v10 %}{{ v11 | length }}",
    "{% set v1 = 'x' * 1000000 %}"
    "{% set v2 = v1 + v1 %}"
    "{% set v3 = v2 + v2 %}"
    "{% set v4 = v3 + v3 %}"
    "{% set v5 = v4 + v4 %}"
    "{% set v6 = v5 + v5 %}"
    "{% set v7 = v6 + v6 %}"
    "{% set v8 = v7 + v7 %}"
    "{% set v9 = v8 + v8 %}"
    "{% set v10 = v9 + v9 %}"
    "{% set v11 = v10 + v10 %}"
    "{{ v11 | length }}",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{% set x %}{{ 'a' * 1000 }}{% endset %}{{ x }}",
    "{% filter upper %}{{ 'a' }}{% endfilter %}",
    "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
    "{{ " + "-" * 100000 + "1 }}",
    # Operations that allocate nothing but take time: the deadline is checked after each one.
    "{% set h = 'a' * 1000000 %}{% set n = 'a' * 3000 ~ 'b' %}" + "{{ n in h }}" * 300,
    "{% set h = 'a' * 1000000 %}{% set n = 'a' * 3000 ~ 'b' %}" + "{{ n is in h }}" * 300,
    # Filters that walk their input item by item in Python.
    "{{ ('x' * 1000000) | list | sort | length }}",
    "{{ ('x' * 1000000) | map('upper') | join }}",
    "{{ ('x' * 1000000) | unique | list | length }}",
    # Compiling costs time per syntax element.
    "{{ metadata.name }}" * 1000,
]


@pytest.mark.parametrize("payload", EXHAUSTION, ids=lambda p: p[:60])
def test_exhaustion_payloads_end_in_a_template_error(payload: str) -> None:
    outcome = _render_in_child(payload)
    assert "error" in outcome, f"rendered {outcome}"
    assert str(outcome["error"]).startswith("dbaasctl.templates."), outcome
    assert str(outcome["error"]).rsplit(".", 1)[1].startswith("Template"), outcome
    assert isinstance(outcome["grew_kib"], int)
    assert outcome["grew_kib"] < MAX_GROWTH_KIB, f"peak memory grew by {outcome['grew_kib']} KiB: {outcome}"


@pytest.mark.parametrize(
    "payload",
    [
        "{% for a in 'xy' %}{{ a }}{% endfor %}",
        "{% macro f() %}x{% endmacro %}{{ f() }}",
        "{% call f() %}x{% endcall %}",
        "{% set x %}y{% endset %}{{ x }}",
        "{% filter upper %}x{% endfilter %}",
        "{% with a = 1 %}{{ a }}{% endwith %}",
    ],
)
def test_statements_templates_do_not_need_are_refused_at_validation(payload: str) -> None:
    with pytest.raises(TemplateSecurityError, match="not available in templates"):
        validate_template(payload)


def test_bounded_operations_still_work() -> None:
    assert render_template("{{ 'ab'.ljust(4, '.') }}|{{ 'x' * 3 }}|{{ 2 ** 10 }}", CTX) == "ab..|xxx|1024"
    assert render_template("{{ ['a', 'b'] | join('-') }}|{{ 'a-b'.replace('-', '+') }}", CTX) == "a-b|a+b"
    assert render_template("{% set u = result.username %}{{ u ~ '@' ~ params.size }}", CTX) == "app_user@10"
    assert render_template("{{ '%s:%05d' | format(params.size, 42) }}", CTX) == "10:00042"


# --- str.format sandbox escapes (CVE-2024-56326, CVE-2025-27516) --------------------------------

FORMAT_ESCAPES = [
    "{{ '{0.__class__.__init__.__globals__}'.format(result) }}",
    "{% set f = '{0.__init__.__globals__}'.format %}{{ f(result) }}",
    "{{ ('{0.__init__.__globals__}' | attr('format'))(result) }}",
    '{{ ("{0.__class__}" | attr("format"))(params) }}',
    "{{ (metadata.name | attr('format'))(result) }}",
    "{{ ('{x.__class__}' | attr('format_map'))({'x': result}) }}",
    "{% set n = 'for' ~ 'mat' %}{{ ('{0.__class__}' | attr(n))(result) }}",
    "{{ (result | map(attribute='format') | list) }}",
    "{{ '{0}'.format_map(result) }}",
    "{{ ('{0.items.__self__}') }}",
]


@pytest.mark.parametrize("payload", FORMAT_ESCAPES)
def test_format_string_escapes_are_refused_statically(payload: str) -> None:
    with pytest.raises(TemplateSecurityError):
        validate_template(payload)


def test_format_methods_are_refused_at_render_time_too() -> None:
    """Behind the static check, the environment itself refuses str.format and format_map."""
    from jinja2.exceptions import SecurityError

    from dbaasctl import templates

    for method in ("format", "format_map"):
        template = templates.sandbox.ENV.from_string("{{ x." + method + " }}")
        with pytest.raises(SecurityError):
            template.render(x="{0.__class__}")


# --- messages never echo computed keys or values ------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ result[result.password ~ '!'] }}",
        "{{ result[result.password | urlencode] }}",
        "{{ result[result.password | upper] }}",
        "{{ result[result.password | reverse] }}",
        "{{ params[result.password | reverse | join] }}",
        "{{ metadata.labels[result.password[1:]] }}",
        "{{ metadata.name[result.password | lower] }}",
        "{{ (result.password | upper) | int(0) + [] }}",
    ],
)
def test_computed_keys_are_not_echoed(template: str) -> None:
    with pytest.raises(TemplateError) as info:
        render_secret({"dsn": template}, CTX)
    message = str(info.value).lower()
    for variant in (PASSWORD, PASSWORD[::-1], PASSWORD[1:]):
        assert variant.lower() not in message, message
    assert "pa55" not in message
    assert "55ap" not in message


def test_literal_keys_are_still_named() -> None:
    with pytest.raises(TemplateError, match=r"result\.missing is not defined"):
        render_template("{{ result.missing }}", CTX)
    with pytest.raises(TemplateError, match=r'params\["no-such"\] is not defined'):
        render_template("{{ params['no-such'] }}", CTX)


# --- urlencode makes any password safe in URI user info -------------------------------------------

PASSWORDS = ["p@ss:w/rd?#%+ x", "a b/c", "/", "@@", "::", "?#", "100%", "+plus+", "ü/ñ ✓", "k=v&x=y;z"]
URI = "postgresql://{{ result.username | urlencode }}:{{ result.password | urlencode }}@db.example:5432/app"
# RFC 3986 appendix B, the grammar java.net.URI and JDBC URL parsers follow.
_RFC3986 = re.compile(r"^(([^:/?#]+):)?(//([^/?#]*))?([^?#]*)(\?([^#]*))?(#(.*))?")


def _libpq_parse(uri: str) -> dict[str, str]:
    path = ctypes.util.find_library("pq")
    if path is None:
        pytest.skip("libpq is not installed")

    class Option(ctypes.Structure):
        _fields_ = [
            ("keyword", ctypes.c_char_p),
            ("envvar", ctypes.c_char_p),
            ("compiled", ctypes.c_char_p),
            ("val", ctypes.c_char_p),
            ("label", ctypes.c_char_p),
            ("dispchar", ctypes.c_char_p),
            ("dispsize", ctypes.c_int),
        ]

    libpq = ctypes.CDLL(path)
    libpq.PQconninfoParse.restype = ctypes.POINTER(Option)
    libpq.PQconninfoParse.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
    err = ctypes.c_char_p()
    options = libpq.PQconninfoParse(uri.encode(), ctypes.byref(err))
    assert options, err.value
    parsed: dict[str, str] = {}
    i = 0
    while options[i].keyword is not None:
        if options[i].val is not None:
            parsed[options[i].keyword.decode()] = options[i].val.decode()
        i += 1
    libpq.PQconninfoFree(options)
    return parsed


@pytest.mark.parametrize("password", PASSWORDS)
def test_urlencoded_credentials_parse_back_everywhere(password: str) -> None:
    ctx = TemplateContext(metadata={}, params={}, result={"username": "u@ser/1", "password": password})
    uri = render_template(URI, ctx)

    split = urlsplit(uri)
    assert (split.hostname, split.port, split.path) == ("db.example", 5432, "/app")
    assert (unquote(split.username or ""), unquote(split.password or "")) == ("u@ser/1", password)

    libpq = _libpq_parse(uri)
    assert (libpq["host"], libpq["port"], libpq["dbname"]) == ("db.example", "5432", "app")
    assert (libpq["user"], libpq["password"]) == ("u@ser/1", password)

    match = _RFC3986.match(uri)
    assert match is not None
    authority = match.group(4)
    userinfo, _, hostport = authority.rpartition("@")
    user, _, secret = userinfo.partition(":")
    assert hostport == "db.example:5432"
    assert (unquote(user), unquote(secret)) == ("u@ser/1", password)
    assert match.group(5) == "/app"


# --- Go-template constructs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "function", "equivalent"),
    [
        ('{{ printf "%s-%s" .Metadata.namespace .Metadata.name }}', "printf", "format"),
        ('{{ index .Params "my-key" }}', "index", 'params["my-key"]'),
        ("{{ range .Result }}x{{ end }}", "range", "loops are not available"),
        ('{{ .Params.x | printf "%q" }}', "printf", "format"),
        ("{{ .Result.password | urlquery }}", "urlquery", "urlencode"),
        ("{{ len .Params.x }}", "len", "length"),
    ],
)
def test_go_template_functions_get_a_jinja_equivalent(template: str, function: str, equivalent: str) -> None:
    with pytest.raises(TemplateSyntaxError) as info:
        validate_template(template)
    message = str(info.value)
    assert f"Go template function {function!r} is not supported" in message
    assert equivalent in message


def test_a_jinja2_with_the_format_escapes_fixed_is_required() -> None:
    import tomllib
    from importlib.metadata import version
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text("utf-8"))
    jinja = [d for d in project["project"]["dependencies"] if d.lower().startswith("jinja2")]
    assert jinja == ["jinja2>=3.1.6"]
    assert tuple(int(p) for p in version("jinja2").split(".")[:3]) >= (3, 1, 6)
