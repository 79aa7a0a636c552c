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
