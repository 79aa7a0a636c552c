"""One measured phase: act on N objects at once, wait until the watch shows each one done, and charge
the subject with what it spent (API requests by verb, Event writes, CPU seconds, peak RSS).

Timing: an object's latency runs from the moment the driver sent its request (POST, annotate, DELETE)
to the moment the watch event showing it done arrived. The phase's duration runs from the first
request to the last such event; throughput is N over that duration.

Costs: the subject's counters and /proc figures are read once it has settled before the phase and again
once it has settled after it (no request for 2 s), so trailing writes (Events, status) are charged to
the phase that caused them. Peak RSS is reset at the start of the phase when the kernel allows it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench import procstat
from bench.scrape import Scrape, settle
from bench.stats import by_verb, latency_summary, per_object, writes
from bench.subjects import Subject
from bench.watcher import DatabaseWatcher, Predicate

Action = Callable[[str], Awaitable[Any]]


@dataclass
class PhaseResult:
    phase: str
    n: int
    completed: int
    seconds: float | None
    throughput_per_s: float | None
    apply_seconds: float
    latency: dict[str, float | None]
    requests: dict[str, float]
    #: The same, answered 2xx only (a refused 429 that was retried is in `requests`, not here).
    requests_2xx: dict[str, float]
    requests_per_object: dict[str, float]
    writes_per_object: float | None
    event_writes_per_object: float | None
    writes_excl_events_per_object: float | None
    #: Reconcile passes per object (0 for subjects without the operator's metrics): what each
    #: event of an object's own writes costs beyond the requests.
    reconciles_per_object: float | None
    non_2xx: dict[str, float]
    cpu_seconds: float
    peak_rss_mb: float
    peak_reset: bool
    #: CPU seconds of the rest of the test bed over the same window (kube-apiserver, etcd, PostgreSQL
    #: with its backends, the benchmark driver): where the machine's time went.
    component_cpu_seconds: dict[str, float] = field(default_factory=dict)
    #: Share of all CPUs busy over the window, whoever used them (other work on the machine included).
    machine_busy_pct: float | None = None
    #: The measured window (settled before → settled after) the CPU figures cover.
    window_s: float | None = None
    driver_errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _mb(n: int) -> float:
    return round(n / 1024 / 1024, 1)


async def run_phase(
    phase: str,
    subject: Subject,
    watcher: DatabaseWatcher,
    names: Sequence[str],
    act: Action,
    done: Predicate,
    *,
    apply_concurrency: int,
    timeout: float,
    components: Mapping[str, Callable[[], float]] | None = None,
) -> PhaseResult:
    before: Scrape = await settle(subject.metrics_url)
    reset = procstat.reset_peak(subject.pid)
    proc_before = procstat.sample(subject.pid)
    parts_before = {k: meter() for k, meter in (components or {}).items()}
    busy_before = procstat.machine_jiffies()
    expectation = watcher.expect(names, done)
    sent: dict[str, float] = {}
    errors: list[str] = []
    sem = asyncio.Semaphore(apply_concurrency)

    async def one(name: str) -> None:
        async with sem:
            sent[name] = time.monotonic()
            try:
                await act(name)
            except Exception as exc:
                errors.append(f"{name}: {exc}"[:300])

    start = time.monotonic()
    await asyncio.gather(*(one(n) for n in names))
    apply_seconds = time.monotonic() - start
    await expectation.wait(timeout)
    after: Scrape = await settle(subject.metrics_url)
    proc_after = procstat.sample(subject.pid)
    parts = {k: round(meter() - parts_before[k], 2) for k, meter in (components or {}).items()}
    busy_after = procstat.machine_jiffies()
    window = busy_after[1] - busy_before[1]

    delta = after.minus(before)
    verbs = by_verb(delta.requests)
    n = len(names)
    finished = [expectation.done[name] - sent[name] for name in expectation.done if name in sent]
    seconds = (max(expectation.done.values()) - start) if expectation.done else None
    complete = not expectation.pending
    total_writes = writes(verbs)
    return PhaseResult(
        phase=phase,
        n=n,
        completed=len(expectation.done),
        seconds=round(seconds, 3) if seconds is not None and complete else None,
        throughput_per_s=round(n / seconds, 2) if seconds and complete else None,
        apply_seconds=round(apply_seconds, 3),
        latency=latency_summary(finished),
        requests=verbs,
        requests_2xx=by_verb({k: v for k, v in delta.requests.items() if k[1].startswith("2")}),
        requests_per_object=per_object(verbs, n),
        writes_per_object=round(total_writes / n, 2) if n else None,
        event_writes_per_object=round(delta.event_writes / n, 2) if n else None,
        writes_excl_events_per_object=round((total_writes - delta.event_writes) / n, 2) if n else None,
        reconciles_per_object=round(delta.reconciles / n, 2) if n else None,
        non_2xx={f"{m} {c}": v for (m, c), v in delta.requests.items() if v and not c.startswith("2")},
        cpu_seconds=round(proc_after.cpu_seconds - proc_before.cpu_seconds, 2),
        peak_rss_mb=_mb(proc_after.peak_rss_bytes),
        peak_reset=reset,
        component_cpu_seconds=parts,
        machine_busy_pct=round(100.0 * (busy_after[0] - busy_before[0]) / window, 1) if window else None,
        window_s=round(proc_after.at - proc_before.at, 2),
        driver_errors=errors[:10],
    )
