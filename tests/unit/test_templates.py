"""Sandboxed template rendering: syntax, Go-style references, errors, sandbox escapes, exactness."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dbaasctl import templates
from dbaasctl.api import Database, DatabaseClass
from dbaasctl.templates import (
    TemplateContext,
    TemplateError,
    TemplateRenderError,
    TemplateSecurityError,
    TemplateSyntaxError,
    TemplateUndefinedError,
    render_inputs,
    render_secret,
    render_template,
    template_references,
    translate_go_style,
    validate_template,
)

DB = Database.model_validate(
    {
        "metadata": {
            "name": "orders",
            "namespace": "shop",
            "uid": "5b1c",
            "labels": {"app.kubernetes.io/name": "shop", "tier": "gold"},
            "annotations": {"team/owner": "ann"},
        },
        "spec": {"endpoint": "pg-eu", "params": {"size": "10", "items": "I", "with-dash": "d"}},
    }
)
CTX = TemplateContext.from_database(DB, result={"password": "pw", "username": "u1"})


def render(text: str, ctx: TemplateContext = CTX) -> str:
    return render_template(text, ctx)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ metadata.name }}", "orders"),
        ("{{ metadata.namespace }}-{{ metadata.name }}", "shop-orders"),
        ("{{ metadata.uid }}", "5b1c"),
        ("{{ params.size }}", "10"),
        ("{{ result.password }}", "pw"),
        ("{{ endpoint.name }}", "pg-eu"),
        ('{{ metadata.labels["app.kubernetes.io/name"] }}', "shop"),
        ("{{ metadata.labels.tier }}", "gold"),
        ('{{ metadata.annotations["team/owner"] }}', "ann"),
        ('{{ params["with-dash"] }}', "d"),
        ("{{ params.items }}", "I"),  # a key wins over the dict method of the same name
        ("{{ params.missing | default('dflt') }}", "dflt"),
        ("{% if params.missing is defined %}y{% else %}n{% endif %}", "n"),
        ("{{ params.size | int + 1 }}", "11"),
        ("{{ metadata.name | upper }}", "ORDERS"),
        ("{{ params | sort | join(';') }}", "items;size;with-dash"),
        ("{{ metadata.labels.keys() | list | length }}", "2"),
        ("{{ params | tojson }}", '{"items": "I", "size": "10", "with-dash": "d"}'),
        ("plain text, no tags", "plain text, no tags"),
        ("trailing newline\n", "trailing newline\n"),
        ("{# a comment #}x", "x"),
    ],
)
def test_renders(template: str, expected: str) -> None:
    assert render(template) == expected


@pytest.mark.parametrize(
    ("go", "expected"),
    [
        ("{{ .Metadata.name }}", "orders"),
        ("{{.Metadata.name}}", "orders"),
        ("{{- .Metadata.namespace -}}", "shop"),
        ("{{ .Parameters.size }}", "10"),
        ("{{ .Params.size }}", "10"),
        ("{{ .Result.password }}", "pw"),
        ("{{ .Endpoint.name }}", "pg-eu"),
        ("{{ .Metadata.labels.tier }}", "gold"),
        ('{{ .Metadata.labels["app.kubernetes.io/name"] }}', "shop"),
        ("{{ .Metadata.namespace }}_{{ .Metadata.name }}", "shop_orders"),
        ("x .Metadata.name {{ .Metadata.name }}", "x .Metadata.name orders"),  # text is not code
        ('{{ ".Metadata.name" }}', ".Metadata.name"),  # nor are string literals
        ("{% raw %}{{ .Metadata.name }}{% endraw %}", "{{ .Metadata.name }}"),
        ("{% if .Parameters.size == '10' %}ten{% endif %}", "ten"),
    ],
)
def test_go_style_references(go: str, expected: str) -> None:
    assert render(go) == expected


def test_translate_leaves_other_dots_alone() -> None:
    assert translate_go_style("{{ params.Metadata }}") == "{{ params.Metadata }}"
    assert translate_go_style("{{ (x).Result }}") == "{{ (x).Result }}"
    assert translate_go_style("{{ .Result.a ~ '.Result' }}") == "{{ result.a ~ '.Result' }}"
    assert translate_go_style("{{ unterminated .Metadata") == "{{ unterminated .Metadata"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ params.size2 }}", "params.size2 is not defined"),
        ("{{ .Parameters.department }}", "params.department is not defined"),
        ("{{ .Result.password2 }}", "result.password2 is not defined"),
        ("{{ metadata.labels.app }}", "metadata.labels.app is not defined"),
        ('{{ metadata.labels["a.b/c"] }}', 'metadata.labels["a.b/c"] is not defined'),
        ("{{ params.nope.deeper }}", "params.nope is not defined"),
        ("{{ endpoint.host }}", "endpoint.host is not defined"),
    ],
)
def test_missing_key_names_the_path(template: str, message: str) -> None:
    with pytest.raises(TemplateUndefinedError) as info:
        render(template)
    assert str(info.value) == message


def test_unknown_top_level_name_is_refused_at_validation() -> None:
    with pytest.raises(TemplateUndefinedError, match="Metadata is not defined; templates see only"):
        validate_template("{{ Metadata.name }}")


def test_syntax_errors() -> None:
    with pytest.raises(TemplateSyntaxError, match="line 2"):
        validate_template("ok\n{{ metadata.name ")
    with pytest.raises(TemplateSyntaxError, match=r"Go-style references must start with \.Metadata"):
        validate_template("{{ .Labels.x }}")
    assert issubclass(TemplateSyntaxError, TemplateError)


def test_render_inputs_and_secret_name_the_failing_key() -> None:
    inputs = {"k8sName": "{{ .Metadata.namespace }}-{{ .Metadata.name }}", "size": "{{ .Parameters.size }}"}
    assert render_inputs(inputs, CTX) == {"k8sName": "shop-orders", "size": "10"}
    with pytest.raises(TemplateUndefinedError) as info:
        render_inputs({"0": "{{ .Parameters.size }}", "1": "{{ .Parameters.dept }}"}, CTX)
    assert str(info.value) == 'input "1": params.dept is not defined'
    assert info.value.key == "1"
    assert info.value.detail == "params.dept is not defined"
    with pytest.raises(TemplateUndefinedError, match=r'secretFormat "dsn": result\.host is not defined'):
        render_secret({"user": "{{ result.username }}", "dsn": "pg://{{ result.host }}"}, CTX)


def test_inputs_see_no_result() -> None:
    ctx = TemplateContext.from_database(DB)
    with pytest.raises(TemplateUndefinedError, match=r"result\.password is not defined"):
        render_inputs({"p": "{{ result.password }}"}, ctx)
    assert render_secret({"p": "{{ result.password }}"}, ctx.with_result({"password": "x"})) == {"p": "x"}


def test_context_from_database() -> None:
    ctx = TemplateContext.from_database(DB, params={"size": "20"}, endpoint_name="other")
    assert ctx.params == {"size": "20"}
    assert ctx.endpoint == {"name": "other"}
    assert ctx.metadata["labels"] == {"app.kubernetes.io/name": "shop", "tier": "gold"}
    no_uid = Database.model_validate({"metadata": {"name": "a"}, "spec": {"endpoint": "e"}})
    ctx2 = TemplateContext.from_database(no_uid)
    assert "uid" not in ctx2.metadata
    assert ctx2.metadata["namespace"] == ""
    # The model is not aliased: later changes to the object do not leak into a built context.
    DB.metadata.labels["tier"] = "silver"
    try:
        assert render("{{ metadata.labels.tier }}") == "gold"
    finally:
        DB.metadata.labels["tier"] = "gold"


SANDBOX_ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ lipsum(5, html=False) }}",
    "{{ range.__self__ }}",
    "{{ range(100000) | list }}",
    "{{ self }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ config.items() }}",
    "{{ request.application.__globals__ }}",
    "{{ params.__class__ }}",
    "{{ params | attr('__class__') }}",
    "{{ params | attr('_path') }}",
    "{{ metadata.name | attr('__class__') }}",
    "{{ '{0.__class__.__mro__}'.format(params) }}",
    "{{ 'x' | format.__globals__ }}",
    "{{ (params | map(attribute='__class__') | list) }}",
    "{{ (params | map('attr', '__class__') | list) }}",
    "{% set n = '__cla' ~ 'ss__' %}{{ params | map(attribute=n) | list }}",
    "{% set n = '__cla' ~ 'ss__' %}{{ params | attr(n) }}",
    "{% set l = [] %}{{ l.append(1) }}",
    "{% set d = {} %}{{ d.update({'a': 1}) }}",
    "{{ 2 ** 100000 }}",
    "{{ 'a' * 100000000 }}",
    "{{ ['a'] * 100000000 }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ '%0999999999d' | format(1) }}",
    "{{ 'x' | center(999999999) }}",
    "{{ 'x' | indent(999999999) }}",
    "{% include 'other' %}",
    "{% import 'other' as o %}",
    "{% extends 'base' %}",
]


@pytest.mark.parametrize("payload", SANDBOX_ESCAPES)
def test_sandbox_escapes_are_refused(payload: str) -> None:
    with pytest.raises(TemplateSecurityError) as info:
        render(payload)
    message = str(info.value)
    assert "sandbox" in message or "unsafe" in message
    assert isinstance(info.value, TemplateError)


def test_params_cannot_be_mutated_through_dict_methods() -> None:
    with pytest.raises(TemplateError):
        render("{{ params.pop('size') }}")
    with pytest.raises(TemplateError):
        render("{{ params.clear() }}")
    assert render("{{ params.size }}") == "10"


def test_random_filter_is_gone_so_rendering_is_deterministic() -> None:
    with pytest.raises(TemplateSyntaxError, match="random"):
        validate_template("{{ [1, 2] | random }}")


def test_other_render_failures() -> None:
    with pytest.raises(TemplateRenderError, match="ZeroDivisionError"):
        render("{{ 1 / 0 }}")


def test_error_messages_do_not_carry_result_values() -> None:
    secret = "_Sup3r$ecret!"
    ctx = CTX.with_result({"password": secret})
    for template in ("{{ metadata.name | attr(result.password) }}", "{{ params[result.password] }}"):
        with pytest.raises(TemplateError) as info:
            render(template, ctx)
        assert secret not in str(info.value)
        assert info.value.__cause__ is None
        assert info.value.__context__ is None


QUOTE_CORPUS = [
    "'",
    '"',
    "\\",
    "\\n",
    "';DROP TABLE x;--",
    "{{ metadata.name }}",
    "{% raw %}",
    "{#",
    "%s %d %(x)s",
    "${x} $1 ?",
    "ünïcödé ✓ 🐘 \u200b",
    "\x00\x01\t\r\n",
    "</script><b>&amp;",
    "x" * 65536,
]


@pytest.mark.parametrize("value", QUOTE_CORPUS)
def test_values_pass_through_byte_identical(value: str) -> None:
    ctx = TemplateContext(metadata={"name": value}, params={"x": value}, result={"x": value})
    assert render("{{ params.x }}", ctx) == value
    assert render("{{ .Parameters.x }}", ctx) == value
    assert render("{{ .Result.x }}", ctx) == value
    assert render("{{ metadata.name }}-{{ params.x }}", ctx) == f"{value}-{value}"


@settings(max_examples=300, deadline=None)
@given(value=st.text(), key=st.text(min_size=1, max_size=20))
def test_any_value_round_trips(value: str, key: str) -> None:
    ctx = TemplateContext(metadata={}, params={"x": value, key: value})
    assert render("{{ params.x }}", ctx) == value
    assert render("{{ .Params.x }}", ctx) == value
    assert render(f"{{{{ params[{key!r}] }}}}", ctx) == value


def test_compiled_templates_are_cached() -> None:
    text = "{{ metadata.namespace }}/{{ metadata.name }}/cache-test"
    render(text)
    before = templates.rendering._compiled.cache_info()
    for _ in range(200):
        render(text)
    after = templates.rendering._compiled.cache_info()
    assert after.hits - before.hits == 200
    assert after.misses == before.misses


def test_template_references() -> None:
    refs = template_references("{{ .Result.username }}:{{ result['password'] }}@{{ params.x }}")
    assert refs == {("result", "username"), ("result", "password"), ("params", "x")}


REFERENCE_CLASS = """
apiVersion: dbaasctl.io/v1
kind: DatabaseClass
metadata:
  name: databaseclass-sample-mariadb
spec:
  driver: "mariadb"
  operations:
    create:
      name: "sp_create_db_rowset_eav"
      inputs:
        "0": "{{ .Metadata.name }}"
        "1": "{{ .Parameters.department }}"
    delete:
      name: "sp_delete"
      inputs:
        "0": "{{ .Metadata.name }}"
    rotate:
      name: "sp_rotate"
      inputs:
        "0": "{{ .Metadata.name }}"
  secretFormat:
    username: "{{ .Result.username }}"
    password: "{{ .Result.password }}"
    port: "{{ .Result.port }}"
    dbName: "{{ .Result.dbName }}"
    server: "{{ .Result.fqdn }}"
    dsn: "mariadb://{{ .Result.username }}:{{ .Result.password }}@{{ .Result.fqdn }}:{{ .Result.port }}/{{ .Result.dbName }}"
    lastRotation: "{{ .Result.lastRotation }}"
"""


def test_reference_operator_class_parses_and_renders() -> None:
    dbclass = DatabaseClass.model_validate(yaml.safe_load(REFERENCE_CLASS))
    spec = dbclass.spec
    db = Database.model_validate(
        {
            "metadata": {"name": "my-db", "namespace": "ns"},
            "spec": {"endpoint": "us-mariadb-test", "params": {"department": 'R&D "x"'}},
        }
    )
    ctx = TemplateContext.from_database(db, params=spec.resolve_params(db.spec.params))
    assert render_inputs(spec.operations.create.inputs, ctx) == {"0": "my-db", "1": 'R&D "x"'}
    result = {
        "username": "u",
        "password": 'p"\\w',
        "port": "3306",
        "dbName": "my-db",
        "fqdn": "db.example",
        "lastRotation": "",
    }
    secret = render_secret(spec.secret_format, ctx.with_result(result))
    assert secret["password"] == 'p"\\w'
    assert secret["dsn"] == 'mariadb://u:p"\\w@db.example:3306/my-db'
    assert secret["lastRotation"] == ""
    for text in [*spec.secret_format.values(), *spec.operations.create.inputs.values()]:
        validate_template(text)
