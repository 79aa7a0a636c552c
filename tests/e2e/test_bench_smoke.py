"""The benchmark tooling at tiny N, so it cannot rot: a raw-baseline storm, an operator storm and a kopf-peer
storm.

No timing is asserted. What is asserted is what the numbers must mean: every object reached each state
on the watch, the raw baseline made exactly the writes it is documented to make, the operator's request
counts were scraped, and the report renders from the results.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.report import write_report
from bench.storm import run_storm
from bench.world import World
from testbed.controlplane import ControlPlane, KubeTools
from testbed.dbms import PostgresServer

N = 5


@pytest.fixture(scope="module")
def world(
    kube: KubeTools, crds: Path, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    if not isinstance(kube, ControlPlane):
        pytest.skip("the benchmarks need the local control plane (admin token, CA file)")
    w = World.attach(kube, postgres, tmp_path_factory.mktemp("bench"))
    yield w
    w.close()


async def test_raw_storm_counts_the_minimal_writes(world: World, tmp_path: Path) -> None:
    result = await run_storm(world, "raw", N, concurrency=2, apply_concurrency=4)
    assert result.failure is None, result.failure
    create, rotate, delete = result.phases
    for phase in result.phases:
        assert phase.completed == N
        assert phase.latency["p50_ms"] is not None
        assert phase.throughput_per_s is not None
    assert result.secrets_after_create == N
    assert result.secrets_after_delete == 0
    # finalizer PATCH + Secret POST + status PATCH; rotate: Secret, status, annotation; delete: Secret
    # DELETE + finalizer PATCH. No Events, no re-reads.
    assert create.requests_2xx.get("POST") == N
    assert create.requests_2xx.get("PATCH") == 2 * N
    assert rotate.requests_2xx.get("PATCH") == 3 * N
    assert delete.requests_2xx.get("DELETE") == N
    assert delete.requests_2xx.get("PATCH") == N
    assert create.writes_excl_events_per_object is not None
    assert create.writes_excl_events_per_object >= 3
    assert create.event_writes_per_object == 0

    results = {"mode": "smoke", "storms": [result.to_json()]}
    write_report(results, tmp_path, "smoke")
    assert json.loads((tmp_path / "smoke.json").read_text())["storms"][0]["n"] == N
    table = (tmp_path / "smoke.md").read_text()
    assert "| raw |" in table


async def test_operator_storm_is_measured(world: World) -> None:
    result = await run_storm(world, "operator", N, concurrency=2, apply_concurrency=4)
    assert result.failure is None, result.failure
    assert [p.phase for p in result.phases] == ["create", "rotate", "delete"]
    create = result.phases[0]
    assert all(p.completed == N for p in result.phases)
    assert result.secrets_after_create == N
    assert result.secrets_after_delete == 0
    # Scraped from the operator's own rest_client_requests_total: it must have written the Secrets.
    assert create.requests.get("POST", 0) >= N
    assert create.writes_excl_events_per_object is not None
    assert create.writes_excl_events_per_object >= 2  # at least the Secret and the status
    assert create.cpu_seconds > 0
    assert create.peak_rss_mb > 0


async def test_kopf_peer_storm_is_measured(world: World, tmp_path: Path) -> None:
    result = await run_storm(world, "kopf", N, concurrency=2, apply_concurrency=4)
    assert result.failure is None, result.failure
    assert all(p.completed == N for p in result.phases)
    assert result.secrets_after_create == N
    assert result.secrets_after_delete == 0
    create, rotate, delete = result.phases
    # Counted by the trace hook on kopf's own HTTP sessions: the Secret POSTs and kopf's PATCHes
    # (finalizer, status, its annotations) must all be there.
    assert create.requests_2xx.get("POST", 0) >= N
    assert create.requests_2xx.get("PATCH", 0) >= N
    assert rotate.requests_2xx.get("PATCH", 0) >= 2 * N  # the Secret, and status + annotation
    assert delete.requests_2xx.get("DELETE", 0) >= N
    assert create.cpu_seconds > 0
    assert create.peak_rss_mb > 0

    write_report({"mode": "smoke", "storms": [result.to_json()]}, tmp_path, "smoke")
    assert "| kopf |" in (tmp_path / "smoke.md").read_text()
