"""E2E suite: every test here runs against real processes started by the test bed.

The fixtures live in `testbed` so `make demo` and the benchmarks share the same code; they are
re-exported here (pytest only honours `pytest_plugins` in the rootdir's conftest).
"""

from pathlib import Path

import pytest

from testbed.fixtures_cluster import *  # noqa: F403
from testbed.fixtures_dbms import *  # noqa: F403

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every server the test bed started is gone once the run ends, pass or fail."""
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
