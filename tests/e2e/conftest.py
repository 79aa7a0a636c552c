"""E2E suite: every test here runs against real processes started by the test bed."""

import pytest

pytest_plugins = ["testbed.fixtures_cluster", "testbed.fixtures_dbms"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.e2e)
