"""Templates in the reconciler: rendered once per pass, off the event loop, failures as conditions."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from reconciler_harness import Harness, database_class

from dbaasctl.controller import reasons
from dbaasctl.templates import (
    TemplateContext,
    TemplateRenderError,
    TemplateSecurityError,
    limits,
    offloop,
    rendering,
)
from dbaasctl.templates.offloop import Renders

#: Within every limit of the sandbox (size, nodes, budget), yet it runs until the render deadline:
#: each substring search allocates nothing and scans a megabyte. How long 300 of them take depends on
#: the machine, so the tests that need it to reach the deadline shorten the deadline (`short_deadline`).
WORST_CASE = "{% set h = 'a' * 1000000 %}{% set n = 'a' * 3000 ~ 'b' %}" + "{{ n in h }}" * 300
#: Far below what 300 one-megabyte scans take on any machine.
SHORT_DEADLINE = 0.002


@pytest.fixture
def short_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "RENDER_DEADLINE", SHORT_DEADLINE)
    monkeypatch.setattr(offloop, "LOOP_DEADLINE", 5.0)  # the sandbox's own check, not the backstop


def _class(**spec: Any) -> dict[str, Any]:
    klass = database_class()
    for key, value in spec.items():
        klass["spec"][key] = value
    return klass


#: Not cheap (an operator, not a plain reference): rendered on the pool, once per pass.
POOLED_NAME = "{{ metadata.name ~ '' }}"


def _pooled_class(**spec: Any) -> dict[str, Any]:
    klass = _class(**spec)
    for operation in klass["spec"]["operations"].values():
        operation["inputs"] = {key: POOLED_NAME for key in operation["inputs"]}
    return klass


@pytest.fixture
def render_log(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every template actually rendered: (template text, thread name)."""
    seen: list[tuple[str, str]] = []
    original = rendering._render

    def counting(text: str, ctx: TemplateContext, variables: dict[str, Any]) -> str:
        seen.append((text, threading.current_thread().name))
        return original(text, ctx, variables)

    monkeypatch.setattr(rendering, "_render", counting)
    return seen


async def test_a_create_pass_renders_each_template_once(render_log: list[tuple[str, str]]) -> None:
    secret_format = {"user": "{{ result.username ~ '' }}", "password": "{{ result.password ~ '' }}"}
    h = Harness(klass=_pooled_class(secretFormat=secret_format))
    await h.start()
    h.create_database()
    await h.reconcile()
    assert h.dbms.count("create") == 1
    assert h.ready()[:2] == ("True", reasons.PROVISIONED)  # type: ignore[index]
    texts = [text for text, _ in render_log]
    assert texts.count(POOLED_NAME) == 1, texts  # the create inputs
    assert texts.count("{{ result.password ~ '' }}") == 1, texts
    assert texts.count("{{ result.username ~ '' }}") == 1, texts


async def test_templates_render_off_the_event_loop(render_log: list[tuple[str, str]]) -> None:
    """Cheap ones excepted (`test_templates_cheap.py`)."""
    h = Harness(klass=_pooled_class(secretFormat={"password": "{{ result.password ~ '' }}"}))
    await h.start()
    h.create_database()
    await h.reconcile()
    loop_thread = threading.current_thread().name
    assert render_log
    assert all(thread != loop_thread for _, thread in render_log), render_log


@pytest.mark.usefixtures("short_deadline")
async def test_a_template_past_the_deadline_is_a_condition_and_no_call() -> None:
    klass = database_class()
    klass["spec"]["operations"]["create"]["inputs"] = {"k8sName": WORST_CASE}
    h = Harness(klass=klass)
    await h.start()
    h.create_database()
    await h.reconcile()
    ready = h.ready()
    assert ready is not None
    assert ready[:2] == ("False", reasons.TEMPLATE_ERROR), ready
    assert "longer than" in ready[2], ready
    assert reasons.TEMPLATE_ERROR in h.events.reasons()
    assert not h.dbms.calls


async def test_the_loop_keeps_serving_while_a_template_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    """A render that holds its thread for half a second (as a template at the deadline does): a loop
    that ran it would not tick at all meanwhile."""
    original = rendering._render

    def slow(text: str, ctx: TemplateContext, variables: dict[str, Any]) -> str:
        time.sleep(0.5)  # blocking on purpose: what a CPU-bound render does to its thread
        return original(text, ctx, variables)

    monkeypatch.setattr(rendering, "_render", slow)
    h = Harness(klass=_pooled_class())
    await h.start()
    h.create_database()
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await h.reconcile()
    done.set()
    await task
    assert h.ready()[:2] == ("True", reasons.PROVISIONED)  # type: ignore[index]
    assert ticks >= 10, f"the event loop ticked {ticks} times while the template rendered"


@pytest.mark.usefixtures("short_deadline")
async def test_a_failed_render_is_remembered_for_the_pass() -> None:
    renders = Renders()
    ctx = TemplateContext(metadata={"name": "n"}, params={})
    for _ in range(3):
        with pytest.raises(TemplateSecurityError, match="longer than"):
            await renders.inputs({"0": WORST_CASE}, ctx)
    assert renders.runs == 1
    assert await renders.inputs({"0": "{{ metadata.name | upper }}.{{ 1 + 1 }}"}, ctx) == {"0": "N.2"}
    assert await renders.inputs({"0": "{{ metadata.name | upper }}.{{ 1 + 1 }}"}, ctx) == {"0": "N.2"}
    assert renders.runs == 2


async def test_an_unclassified_failure_in_the_render_thread_is_a_template_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(text: str, ctx: TemplateContext, variables: dict[str, Any]) -> str:
        raise RuntimeError("hunter2-secret")

    monkeypatch.setattr(rendering, "_render", broken)
    with pytest.raises(TemplateRenderError) as info:
        await Renders().inputs(
            {"0": "{{ metadata.name }}"}, TemplateContext(metadata={"name": "n"}, params={})
        )
    assert "hunter2" not in str(info.value)


async def test_a_secret_format_that_cannot_render_is_a_condition_and_an_event() -> None:
    h = Harness(klass=_class(secretFormat={"password": "{{ result.password ~ ('x' * 2000000) }}"}))
    await h.start()
    h.create_database()
    await h.reconcile()
    ready = h.ready()
    assert ready is not None
    assert ready[:2] == ("False", reasons.SECRET_TEMPLATE_ERROR), ready
    assert reasons.SECRET_TEMPLATE_ERROR in h.events.reasons()
    assert h.dbms.count("create") == 1


async def test_a_render_queued_behind_hostile_ones_is_not_timed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop's backstop deadline counts from when a render starts: waiting for the pool is not a
    template's fault."""
    original = rendering._render

    def hostile_ones_hold_their_thread(text: str, ctx: TemplateContext, variables: dict[str, Any]) -> str:
        if text == "{{ slow }}":
            time.sleep(0.3)  # longer than the backstop below; the thread stays busy regardless
            return "slow"
        return original(text, ctx, variables)

    monkeypatch.setattr(rendering, "_render", hostile_ones_hold_their_thread)
    monkeypatch.setattr(offloop, "LOOP_DEADLINE", 0.2)
    ctx = TemplateContext(metadata={"name": "n"}, params={})
    hostile = [
        asyncio.create_task(
            Renders().inputs({"0": "{{ slow }}"}, TemplateContext(metadata={"name": f"h{i}"}, params={}))
        )
        for i in range(4)
    ]
    await asyncio.sleep(0.05)  # the hostile renders hold both threads of the pool, more are queued
    assert await Renders().inputs({"0": "{{ metadata.name }}"}, ctx) == {"0": "n"}
    for task in hostile:
        with pytest.raises(TemplateSecurityError, match="did not end within"):
            await task
