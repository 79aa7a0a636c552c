"""`previous` in templates (the superseded Secret's data, for rotate and retire inputs) and the name of
the Secret that keeps it."""

from __future__ import annotations

import pytest

from dbaasctl.api.database import Database
from dbaasctl.controller.database.previous import previous_secret_name, superseded_data
from dbaasctl.controller.secrets import build_secret
from dbaasctl.templates import TemplateContext, TemplateUndefinedError, render_inputs, validate_template

DB = Database.model_validate(
    {"metadata": {"name": "orders", "namespace": "shop"}, "spec": {"endpoint": "pg"}}
)


def test_previous_is_rendered_as_data() -> None:
    ctx = TemplateContext.from_database(DB).with_previous({"username": "d_orders_a", "password": "p'\\\"w"})
    out = render_inputs({"retiredUser": "{{ previous.username }}", "pw": "{{ previous.password }}"}, ctx)
    assert out == {"retiredUser": "d_orders_a", "pw": "p'\\\"w"}


def test_previous_missing_is_an_error_naming_it_unless_defaulted() -> None:
    ctx = TemplateContext.from_database(DB)
    with pytest.raises(TemplateUndefinedError, match=r"previous\.username"):
        render_inputs({"x": "{{ previous.username }}"}, ctx)
    assert render_inputs({"x": "{{ previous.username | default('') }}"}, ctx) == {"x": ""}
    validate_template("{{ previous['username'] }}")


def test_previous_secret_name_fits_a_secret_name() -> None:
    assert previous_secret_name("orders-credentials") == "orders-credentials-previous"
    long = previous_secret_name("a" * 253)
    assert len(long) <= 253
    assert long.endswith("-previous")
    assert long != previous_secret_name("a" * 252)


def test_superseded_data_only_from_our_unmodified_secret() -> None:
    raw = {"metadata": {"name": "orders", "namespace": "shop", "uid": "u1"}}
    assert superseded_data(None, raw) == {}
    foreign = {"metadata": {"name": "orders-credentials"}, "data": {"username": "eA=="}}
    assert superseded_data(foreign, raw) == {}
    ours = build_secret(raw, "orders-credentials", {"username": "d_orders_a", "password": "pw"}, 3)
    ours["metadata"]["resourceVersion"] = "1"
    assert superseded_data(ours, raw) == {"username": "d_orders_a", "password": "pw"}
    edited = {**ours, "data": {**ours["data"], "password": "ZWRpdGVk"}}
    assert superseded_data(edited, raw) == {}  # modified: it no longer names what is in use
