"""E2E suite: every test here runs against real processes started by the test bed.

The fixtures live in `testbed` so `make demo` and the benchmarks share the same code; they are
re-exported here (pytest only honours `pytest_plugins` in the rootdir's conftest).
"""

from pathlib import Path

import pytest

from testbed.fixtures_cluster import *  # noqa: F403
from testbed.fixtures_dbms import *  # noqa: F403
from testbed.fixtures_node import *  # noqa: F403
from testbed.fixtures_node import TIMINGS
from testbed.hoststate import HostState

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("run_first"):
            return 0
        return 2 if item.get_closest_marker("run_last") else 1

    items.sort(key=rank)  # stable: order kept within each rank


def pytest_sessionstart(session: pytest.Session) -> None:
    session.stash[HOST_STATE] = HostState.capture()


HOST_STATE = pytest.StashKey[HostState]()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every server the test bed started is gone once the run ends, pass or fail, and so is every
    mount, cgroup, iptables rule, network link and runtime state dir its node added."""
    import time

    import psutil

    deadline = time.monotonic() + 30
    while (left := psutil.Process().children(recursive=True)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if left:
        names = ", ".join(sorted({f"{p.name()}({p.pid})" for p in left if p.is_running()}))
        session.config.get_terminal_writer().line(f"test bed processes left running: {names}", red=True)
        for proc in left:
            proc.kill()
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    before = session.stash.get(HOST_STATE, None)
    if before is not None:
        deadline = time.monotonic() + 30
        while (added := HostState.capture().added_since(before)) and time.monotonic() < deadline:
            time.sleep(1)
        if added:
            writer = session.config.get_terminal_writer()
            for kind, items in added.items():
                writer.line(f"test bed left {kind} behind: {', '.join(items[:20])}", red=True)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    for name, seconds in TIMINGS.items():
        session.config.get_terminal_writer().line(f"{name}: {seconds:.1f}")
