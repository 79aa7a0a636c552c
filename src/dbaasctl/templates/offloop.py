"""Rendering for the reconciler: off the event loop, with a deadline, at most once per pass.

Every template operation is bounded (`limits`), yet a worst-case template still costs up to the render
deadline, and compiling a large one costs as much again. On the event loop that would stall every
other Database, the probes and the leader lease for that long, so compiles and renders run on a small
dedicated thread pool: the loop keeps serving while a hostile class burns its budget. The pool is
small on purpose: hostile classes queue behind each other instead of taking the whole CPU.

The sandbox's own deadline ends a render from inside; the loop waits a little longer than that as a
backstop and reports a render that never came back as a `TemplateSecurityError` (the thread finishes
on its own, bounded by the same limits). Within one reconcile pass identical renders (same templates,
same context) are done once and their outcome, failure included, is reused.

Templates already compiled and made only of references, literal text and linear filters (what classes
are written with: `{{ metadata.name }}`, `{{ result.password | urlencode }}`; `rendering.cheap`) render
on the loop: nothing in them can take long, and the hop to the pool cost more than the render itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dbaasctl.templates import limits
from dbaasctl.templates.context import TemplateContext
from dbaasctl.templates.errors import TemplateError, TemplateRenderError, TemplateSecurityError
from dbaasctl.templates.rendering import cheap, render_inputs, render_secret, validate_template

__all__ = ["LOOP_DEADLINE", "Renders", "off_loop"]

#: Seconds the loop waits for one compile or render job before giving up on it; None: five times the
#: render deadline (which the sandbox checks itself; this is the backstop).
LOOP_DEADLINE: float | None = None
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dbaasctl-templates")

T = TypeVar("T")


async def off_loop(job: Callable[[], T]) -> T:
    """Run a template job on the template pool; every failure comes back as a TemplateError.

    The deadline counts from when the job starts, not from when it was queued: a render waiting behind
    hostile ones is slow, not wrong, and must not fail its Database."""
    loop = asyncio.get_running_loop()
    started: asyncio.Future[None] = loop.create_future()
    backstop = LOOP_DEADLINE if LOOP_DEADLINE is not None else 5 * limits.RENDER_DEADLINE

    def announce() -> None:
        if not started.done():
            started.set_result(None)

    def run() -> T:
        loop.call_soon_threadsafe(announce)
        return _classified(job)

    future = loop.run_in_executor(_POOL, run)
    try:
        either: list[asyncio.Future[Any]] = [future, started]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        return await asyncio.wait_for(future, backstop)
    except TimeoutError:
        raise TemplateSecurityError(f"rendering did not end within {backstop:g}s") from None


def _classified(job: Callable[[], T]) -> T:
    """Run a template job where it is called (the pool's thread, or the loop for a cheap render); every
    failure comes back as a TemplateError."""
    try:
        return job()
    except TemplateError:
        raise
    except Exception as exc:  # anything the sandbox did not classify; its message may quote values
        raise TemplateRenderError(f"{type(exc).__name__} while rendering") from None


def _fingerprint(kind: str, templates: Mapping[str, str], ctx: TemplateContext) -> str:
    """A digest, so the memo does not keep a second copy of credentials as its keys."""
    text = json.dumps(
        [kind, templates, ctx.metadata, ctx.params, ctx.result, ctx.endpoint, ctx.operation],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Renders:
    """The renders of one reconcile pass. `runs` counts the jobs that actually ran."""

    _done: dict[str, dict[str, str] | TemplateError] = field(default_factory=dict)
    runs: int = 0

    async def inputs(self, inputs: Mapping[str, str], ctx: TemplateContext) -> dict[str, str]:
        """An operation's rendered inputs (see `render_inputs`)."""
        return await self._once("input", inputs, ctx, render_inputs)

    async def secret(self, fmt: Mapping[str, str], ctx: TemplateContext) -> dict[str, str]:
        """A secretFormat rendered against a context carrying the procedure's result."""
        return await self._once("secretFormat", fmt, ctx, render_secret)

    async def validate(self, templates: Mapping[str, str]) -> None:
        """Compile every template (cached per process after the first time); the first error names
        the key it belongs to in `key`."""
        if not templates:
            return

        def job() -> dict[str, str]:
            for key, text in templates.items():
                try:
                    validate_template(text)
                except TemplateError as exc:
                    raise type(exc)(exc.detail, key=key) from None
            return {}

        await self._once("validate", templates, TemplateContext({}, {}), lambda _t, _c: job())

    async def _once(
        self,
        kind: str,
        templates: Mapping[str, str],
        ctx: TemplateContext,
        render: Callable[[Mapping[str, str], TemplateContext], dict[str, str]],
    ) -> dict[str, str]:
        if all(cheap(text) for text in templates.values()):
            # Here, not on the pool: the hop (and the memo's fingerprint) would cost more than the render.
            return dict(_classified(lambda: render(templates, ctx)))
        key = _fingerprint(kind, templates, ctx)
        outcome = self._done.get(key)
        if outcome is None:
            self.runs += 1
            try:
                outcome = await off_loop(lambda: render(templates, ctx))
            except TemplateError as exc:
                outcome = exc
            self._done[key] = outcome
        if isinstance(outcome, TemplateError):
            err = type(outcome)(str(outcome), key=outcome.key)
            err.detail = outcome.detail
            raise err
        return dict(outcome)
