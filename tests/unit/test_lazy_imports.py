"""What `dbaasctl run` loads is what its configuration needs: a DBMS driver library (megabytes resident
each) only once an endpoint of that driver is configured, RE2 only once a class declares a parameter
pattern, PyYAML only to read a kubeconfig or settings file. Each case runs in a fresh interpreter, so nothing another test imported can hide an eager import.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

#: The third-party library behind each driver kind.
DRIVER_LIBRARIES = {
    "postgres": ("asyncpg",),
    "mysql": ("aiomysql", "pymysql"),
    "odbc": ("aioodbc", "pyodbc"),
}
ALL_DRIVER_LIBRARIES = sorted({lib for libs in DRIVER_LIBRARIES.values() for lib in libs})

#: The operator's run path up to a configured registry: the entry point and everything `run` wires,
#: a DatabaseClass read and admitted as the config reconciler does, then the endpoints applied.
PROGRAM = textwrap.dedent(
    """
    import asyncio, json, sys

    import dbaasctl.cli
    import dbaasctl.operator
    from dbaasctl.api.databaseclass import DatabaseClass
    from dbaasctl.dbms.endpoints import EndpointRegistry, EndpointSpec

    drivers, pattern = json.loads(sys.argv[1]), sys.argv[2] == "pattern"
    inputs = {"0": "{{ metadata.name }}"}
    spec = {
        "driver": drivers[0] if drivers else "postgres",
        "operations": {
            "create": {"name": "dbaas.create", "inputs": inputs},
            "delete": {"name": "dbaas.delete", "inputs": inputs},
        },
    }
    if pattern:
        spec["parameters"] = [{"name": "size", "pattern": "^[a-z]+$"}]
    DatabaseClass.model_validate(
        {"apiVersion": "dbaasctl.io/v1", "kind": "DatabaseClass", "metadata": {"name": "c"}, "spec": spec}
    )
    DSNS = {
        "postgres": "postgresql://u:p@127.0.0.1:9/db",
        "mysql": "mysql://u:p@127.0.0.1:9/db",
        "odbc": "odbc:Driver=x;Server=127.0.0.1",
    }

    async def main():
        registry = EndpointRegistry()
        await registry.apply(
            [EndpointSpec(name=d, driver=d, dsn=DSNS[d], keepalive=0) for d in drivers]
        )
        await registry.close()

    asyncio.run(main())
    print(json.dumps(sorted(m for m in sys.modules if "." not in m)))
    """
)


def _loaded(drivers: list[str], pattern: bool = False) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, json.dumps(drivers), "pattern" if pattern else "none"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_no_endpoint_loads_no_driver_library() -> None:
    loaded = _loaded([])
    assert not loaded & set(ALL_DRIVER_LIBRARIES), sorted(loaded & set(ALL_DRIVER_LIBRARIES))


def test_yaml_is_loaded_only_to_read_a_file() -> None:
    """In a cluster neither a kubeconfig nor a settings file is read: PyYAML stays out."""
    assert "yaml" not in _loaded(["postgres"])


@pytest.mark.parametrize("driver", sorted(DRIVER_LIBRARIES))
def test_an_endpoint_loads_its_driver_library_and_no_other(driver: str) -> None:
    loaded = _loaded([driver])
    wanted = set(DRIVER_LIBRARIES[driver])
    assert wanted <= loaded, sorted(wanted - loaded)  # the check sees a real import
    others = set(ALL_DRIVER_LIBRARIES) - wanted
    assert not loaded & others, sorted(loaded & others)


def test_re2_is_loaded_only_for_a_class_with_a_parameter_pattern() -> None:
    assert "re2" not in _loaded(["postgres"])
    assert "re2" in _loaded(["postgres"], pattern=True)
