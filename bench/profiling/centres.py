"""Cost centres of the operator from a py-spy profile: where each millisecond per Database goes.

    py-spy record -p PID -o stacks.txt --format raw -r 50 --nonblocking   # while a storm runs
    python bench/profiling/centres.py stacks.txt N CPU_SECONDS

Each sample goes to the first centre (in list order) found anywhere in its stack, so the rows add up to
100 %; N and the subject's CPU seconds over the recorded window (from the bench's table) turn shares
into milliseconds per Database.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

CENTRES = [
    ("template rendering (on the loop or its thread pool)", r"dbaasctl/templates/|jinja2/"),
    (
        "other worker threads (aiohttp's trust_env proxy lookup per request, until it was turned off)",
        r"concurrent/futures/thread|threading\.py",
    ),
    ("metrics scrape (bench)", r"prometheus_client/exposition"),
    ("logging (records, redaction, JSON)", r"\(logging/__init__\.py|observability/logging\.py"),
    ("Events (recorder + POST)", r"kube/events\.py|kube/eventseries\.py"),
    ("DBMS call (asyncpg)", r"dbaasctl/dbms/|asyncpg/"),
    ("status patch construction / record", r"reconciler\.py:\d+\)[^;]*;[^;]*\(_record|status_body"),
    ("pydantic: Database parse + status copies", r"observe\.py|model_validate|model_dump|to_api"),
    ("secret build / inspect", r"controller/secrets\.py"),
    ("API requests (aiohttp, TLS, JSON)", r"kube/rest\.py"),
    ("watch: read + JSON decode", r"kube/watch\.py"),
    ("watch: reflector apply + handlers + queue", r"kube/cache/|kube/workqueue\.py|Operator\."),
    ("reconciler other", r"dbaasctl/controller/"),
    ("kit other (controller, leader, http)", r"dbaasctl/kube/|dbaasctl/observability/"),
    ("event loop, sockets, TLS (no caller of ours)", r"asyncio/|ssl|selectors"),
    ("other", r""),
]


def main(path: str, n_db: float, cpu_s: float) -> None:
    counts: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        c = int(count)
        # A thread runnable but not running (waiting for a CPU on a busy machine) shows in the syscall it
        # last made: epoll and the socket send. Those samples are wait, not CPU; the process's stime is small.
        # An idle pool thread blocked on its work queue shows as its `_worker` frame: wait as well.
        leaf = stack.rsplit(";", 1)[-1]
        if (
            stack.endswith(("EpollSelector.select (selectors.py:468)",))
            or "_SelectorSocketTransport.write (asyncio/selector_events.py:1057)" in leaf
            or leaf.startswith("_worker (concurrent/futures/thread.py:")
        ):
            continue
        total += c
        for name, pat in CENTRES:
            if re.search(pat, stack):
                counts[name] += c
                break
    print(f"{total} samples")
    for name, _ in CENTRES:
        share = counts[name] / total
        extra = f"  {1000 * cpu_s * share / n_db:6.2f} ms/DB" if n_db and cpu_s else ""
        print(f"{name:48s} {100 * share:5.1f}%{extra}")


if __name__ == "__main__":
    main(
        sys.argv[1],
        float(sys.argv[2]) if len(sys.argv) > 2 else 0.0,
        float(sys.argv[3]) if len(sys.argv) > 3 else 0.0,
    )
