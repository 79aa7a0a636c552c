"""Which renders stay on the event loop: only compiled templates made of references, literal text and
linear filters, whose cost is bounded by the values they copy; everything else goes to the pool."""

from __future__ import annotations

import threading

import pytest

from dbaasctl.templates import offloop, rendering
from dbaasctl.templates.context import TemplateContext
from dbaasctl.templates.errors import TemplateRenderError
from dbaasctl.templates.offloop import Renders
from dbaasctl.templates.rendering import MAX_CHEAP_REFERENCES, cheap, validate_template


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ metadata.name }}", True),
        ("plain text", True),
        ("{{ operation.id }}", True),
        (
            "postgresql://{{ result.username | urlencode }}:{{ result.password | urlencode }}@{{ result.host }}",
            True,
        ),
        ("{{ params['size'] | default('10') | lower }}", True),
        ("{{ .Metadata.Name }}", True),  # Go style is translated before the check
        ("{{ metadata.name ~ 'x' }}", False),  # an operator: not a plain reference
        ("{{ 'x' * 10 }}", False),
        ("{{ params[metadata.name] }}", False),  # a computed key
        ("{{ params.a | replace('a', params.b) }}", False),  # output can grow with the product of inputs
        ("{{ params.a | default(params.b) }}", False),  # arguments must be literals
        ("{{ params.a | center(100000) }}", False),
        ("{{ params.a | join(',') }}", False),
        ("{% if params.a %}a{% endif %}", False),
        ("{{ params.a | wordwrap(5) }}", False),
        ("{{ params.a | format(1) }}", False),
        (" ".join("{{ metadata.name }}" for _ in range(MAX_CHEAP_REFERENCES)), True),
        (" ".join("{{ metadata.name }}" for _ in range(MAX_CHEAP_REFERENCES + 1)), False),
    ],
)
def test_cheap_templates_are_references_literals_and_linear_filters(text: str, expected: bool) -> None:
    validate_template(text)
    assert cheap(text) is expected


def test_a_template_not_compiled_yet_is_not_cheap() -> None:
    assert not cheap("{{ metadata.namespace }}{{ metadata.name }}-never-compiled")


def test_a_template_refused_by_the_sandbox_is_not_cheap() -> None:
    with pytest.raises(Exception):  # noqa: B017, PT011 - which refusal does not matter here
        validate_template("{{ metadata.__class__ }}")
    assert not cheap("{{ metadata.__class__ }}")


async def test_cheap_renders_run_on_the_loop_and_the_rest_on_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[str] = []
    original = rendering._render

    def where(text: str, ctx: TemplateContext, variables: dict[str, object]) -> str:
        threads.append(threading.current_thread().name)
        return original(text, ctx, variables)

    monkeypatch.setattr(rendering, "_render", where)
    ctx = TemplateContext(metadata={"name": "orders"}, params={"size": "10"})
    first = "{{ metadata.name }}-{{ params.size }}-first-seen"
    assert await Renders().inputs({"0": first}, ctx) == {"0": "orders-10-first-seen"}  # compiled on the pool
    assert await Renders().inputs({"0": first}, ctx) == {"0": "orders-10-first-seen"}
    assert await Renders().inputs({"0": "{{ params.size ~ metadata.name }}"}, ctx) == {"0": "10orders"}
    loop_thread = threading.current_thread().name
    assert threads[0] != loop_thread
    assert threads[1] == loop_thread
    assert threads[2] != loop_thread


async def test_an_unclassified_failure_of_a_cheap_render_is_a_template_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    validate_template("{{ metadata.name }}")

    def broken(text: str, ctx: TemplateContext, variables: dict[str, object]) -> str:
        raise RuntimeError("hunter2-secret")

    monkeypatch.setattr(rendering, "_render", broken)
    monkeypatch.setattr(offloop, "off_loop", None)  # must not be reached
    with pytest.raises(TemplateRenderError) as info:
        await Renders().inputs(
            {"0": "{{ metadata.name }}"}, TemplateContext(metadata={"name": "n"}, params={})
        )
    assert "hunter2" not in str(info.value)
