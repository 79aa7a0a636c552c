"""Reliability §5: exactly once per intent, on the real control plane, PostgreSQL and MariaDB.

Every procedure sleeps on the server first (`SLOW` seconds), and each scenario waits until the calls are
seen sleeping on the server before it strikes, so the fault lands inside the call or right after it,
never merely near it:

- users edit the Database while create, rotate and delete run: `kubectl label`, `kubectl annotate`,
  `kubectl apply` of the manifest the object was created from, a second rotate annotation mid-rotate;
- the operator's link to the API server fails right after the DBMS call returned (Toxiproxy between
  them): answers dropped after the server applied the write, connections reset;
- the operator's link to the DBMS is slow (latency, a bandwidth limit), reset mid-call, or loses the
  answer of a call the server completed;
- the operator is SIGKILLed right after a procedure returned, once the Secret holds the new credentials
  and before the status recorded them.

Then: every procedure ran once per intent on the server (testbed.intents), the Secret's credentials log
in, Ready=True only with working credentials, nothing orphaned, 0 invariant violations. When the DBMS's
answer never reaches the operator it cannot know whether the call ran; those scenarios count the repeat
(the procedures are idempotent) and hold every other invariant.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testbed.controlplane import KubeTools
from testbed.dbms import MariaDBServer, PostgresServer
from testbed.exactlyonce import (
    Fault,
    api_upstream,
    committed,
    judge_scoped,
    proxied_kubeconfig,
    sleeping,
    via,
    wait_for,
)
from testbed.invariants import MariaDBView, PostgresView, ServerView
from testbed.operator import database
from testbed.reliability import (
    SOAK,
    World,
    audited_mariadb_class,
    audited_postgres_class,
    create_objects,
    kubectl_retrying,
    ready_of,
    world_of,
)
from testbed.toxiproxy import Proxy, Toxiproxy

SLOW = 2.0
#: Per-endpoint operation timeout: a call whose answer was dropped fails after this, then is retried.
OPERATION_TIMEOUT = "6s"
ENDPOINTS = ["pg", "maria"]
ROTATE = "dbaasctl.io/rotate"
#: Databases per edit kind: 1 in `make test`, more in `make soak`.
EACH = 3 if SOAK else 1


@dataclass
class Env:
    world: World
    toxiproxy: Toxiproxy
    api: Proxy
    dbms: dict[str, Proxy]  # endpoint -> its proxy
    views: dict[str, ServerView]


@pytest.fixture(scope="module")
def env(kube: KubeTools, crds: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("releo")
    with (
        PostgresServer() as pg,
        MariaDBServer() as maria,
        Toxiproxy(workdir / "toxiproxy") as tp,
        world_of(kube, workdir, "releo") as w,
    ):
        api = tp.proxy("api", api_upstream(kube.kubeconfig))
        pg_view, maria_view = PostgresView(pg), MariaDBView(maria)
        proxies = {
            "pg": tp.proxy("pg", f"127.0.0.1:{pg.port}"),
            "maria": tp.proxy("maria", f"127.0.0.1:{maria.port}"),
        }
        pg_class = w.add_class(audited_postgres_class(f"rel-eo-pg-{w.suffix}", slow=SLOW))
        maria_class = w.add_class(audited_mariadb_class(f"rel-eo-maria-{w.suffix}", slow=SLOW))
        for cls, name, view, server in (
            (pg_class, "pg", pg_view, pg),
            (maria_class, "maria", maria_view, maria),
        ):
            dsn = via(view.install(), server.port, proxies[name])
            w.add_endpoint(cls, {"name": name, "dsn": dsn, "operationTimeout": OPERATION_TIMEOUT}, view)
        w.leaks.add(pg.admin_password, "PostgreSQL admin password")
        w.leaks.add(maria.admin_password, "MariaDB admin password")
        w.apply_config()
        w.start_operator(
            kubeconfig=proxied_kubeconfig(kube.kubeconfig, api, workdir / "via-proxy.kubeconfig")
        )
        yield Env(w, tp, api, proxies, {"pg": pg_view, "maria": maria_view})
        tp.heal()  # the world's teardown talks to the API server without faults


@pytest.fixture(autouse=True)
def healed(env: Env) -> Iterator[None]:
    """Each scenario starts with clean links and a running operator, whatever the last one left."""
    env.toxiproxy.heal()
    for op in env.world.operators:
        if not op.running:
            op.start()
    yield
    env.toxiproxy.heal()


# -- helpers ---------------------------------------------------------------------------------------


def _kubectl(env: Env, *args: str, input: str | None = None) -> None:
    kubectl_retrying(env.world.kube, *args, input=input)


def _create(env: Env, names: list[str], endpoint: str) -> list[dict[str, Any]]:
    """`kubectl create` (no last-applied annotation: a later `kubectl apply` of the same manifest is a
    real write, as a GitOps tool's first sync of a hand-made object is)."""
    manifests = [database(n, env.world.ns, endpoint) for n in names]
    create_objects(env.world.kube, manifests)
    return manifests


def _wait_sleeping(env: Env, endpoint: str, n: int) -> None:
    view = env.views[endpoint]
    wait_for(f"{n} call(s) sleeping on {endpoint}", lambda: sleeping(view) >= n, timeout=60)


def _wait_committed(env: Env, endpoint: str, op: str, names: list[str], n: int) -> None:
    keys = [f"{env.world.ns}/{x}" for x in names]
    view = env.views[endpoint]
    wait_for(f"{n} {op} call(s) committed on {endpoint}", lambda: committed(view, op, keys) >= n, timeout=60)


def _wait_rotated(env: Env, names: dict[str, tuple[int, str]], timeout: float = 120.0) -> None:
    """Until each Database is Ready at credentialGeneration g with rotationToken t ({name: (g, t)})."""

    def done(dbs: dict[str, dict[str, Any]]) -> bool:
        for name, (generation, token) in names.items():
            db = dbs.get(name)
            status = (db or {}).get("status") or {}
            if db is None or (ready_of(db) or ("",))[0] != "True":
                return False
            if int(status.get("credentialGeneration") or 0) < generation:
                return False
            if status.get("rotationToken") != token:
                return False
            if status.get("observedGeneration") != db["metadata"].get("generation"):
                return False
        return True

    env.world.wait_dbs(f"{len(names)} rotations", done, timeout=timeout)


def _edit(env: Env, kind: str, name: str, manifest: dict[str, Any], step: int) -> None:
    ns = env.world.ns
    if kind == "kubectl label":
        _kubectl(env, "label", "--overwrite", "-n", ns, f"db/{name}", f"edit=e{step}")
    elif kind == "kubectl annotate":
        _kubectl(env, "annotate", "--overwrite", "-n", ns, f"db/{name}", f"example.com/note=n{step}")
    elif kind == "kubectl apply":
        _kubectl(env, "apply", "-f", "-", input=json.dumps(manifest))
    else:
        raise ValueError(kind)


EDITS = ("kubectl label", "kubectl annotate", "kubectl apply")


# -- users edit the Database while a procedure runs ----------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_user_edits_while_create_runs(env: Env, endpoint: str) -> None:
    by_kind = {kind: [f"{endpoint}-ce{i}-{j}" for j in range(EACH)] for i, kind in enumerate(EDITS)}
    names = [n for group in by_kind.values() for n in group]
    manifests = dict(zip(names, _create(env, names, endpoint), strict=True))
    _wait_sleeping(env, endpoint, len(names))
    for kind, group in by_kind.items():
        for name in group:
            _edit(env, kind, name, manifests[name], 1)
    env.world.wait_ready(names, timeout=120)
    judge_scoped(
        env.world,
        f"{endpoint}: label, annotate and apply while create runs",
        names,
        [Fault("create", "user edit during the call", kind) for kind in EDITS],
        expected_calls={n: {"create": 1} for n in names},
    )


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_user_edits_while_rotate_runs(env: Env, endpoint: str) -> None:
    kinds = (*EDITS, "second rotate annotation")
    by_kind = {kind: [f"{endpoint}-re{i}-{j}" for j in range(EACH)] for i, kind in enumerate(kinds)}
    names = [n for group in by_kind.values() for n in group]
    manifests = dict(zip(names, _create(env, names, endpoint), strict=True))
    env.world.wait_ready(names, timeout=120)
    _kubectl(env, "annotate", "-n", env.world.ns, *[f"db/{n}" for n in names], f"{ROTATE}=r1")
    _wait_sleeping(env, endpoint, len(names))
    for kind, group in by_kind.items():
        for name in group:
            if kind == "second rotate annotation":
                _kubectl(env, "annotate", "--overwrite", "-n", env.world.ns, f"db/{name}", f"{ROTATE}=r2")
            else:
                _edit(env, kind, name, manifests[name], 2)
    second = set(by_kind["second rotate annotation"])
    _wait_rotated(env, {n: (3, "r2") if n in second else (2, "r1") for n in names})
    judge_scoped(
        env.world,
        f"{endpoint}: label, annotate, apply and a second rotate annotation while rotate runs",
        names,
        [Fault("rotate", "user edit during the call", kind) for kind in kinds],
        expected_calls={n: {"create": 1, "rotate": 2 if n in second else 1} for n in names},
    )


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_user_edits_while_delete_runs(env: Env, endpoint: str) -> None:
    by_kind = {kind: [f"{endpoint}-de{i}-{j}" for j in range(EACH)] for i, kind in enumerate(EDITS[:2])}
    names = [n for group in by_kind.values() for n in group]
    manifests = dict(zip(names, _create(env, names, endpoint), strict=True))
    env.world.wait_ready(names, timeout=120)
    env.world.delete_many(names)
    _wait_sleeping(env, endpoint, len(names))
    for kind, group in by_kind.items():
        for name in group:
            _edit(env, kind, name, manifests[name], 3)
    env.world.wait_gone(names, timeout=120)
    judge_scoped(
        env.world,
        f"{endpoint}: label and annotate while delete runs",
        names,
        [Fault("delete", "user edit during the call", kind) for kind in EDITS[:2]],
        expected_calls={n: {"create": 1, "delete": 1} for n in names},
    )


# -- the API link fails right after the DBMS call ------------------------------------------------------

API_FAULTS = {
    # The request reaches the API server and is applied; the answer is swallowed, the connection
    # closed 2 s later: the operator cannot tell a write that happened from one that did not.
    "response dropped": lambda api: api.drop_responses(close_after_ms=2000),
    # Every connection to the API server is reset as soon as it carries data.
    "connection reset": lambda api: api.reset(after_ms=0, stream="downstream"),
}
#: How long the API link stays broken once the procedure has returned (the writes that record it fail).
API_OUTAGE = 3.0


def _through_api_fault(env: Env, kind: str, endpoint: str, op: str, names: list[str], n: int) -> None:
    """While the procedure sleeps, break the API link; keep it broken until the call committed on the
    server and the operator's writes had time to fail; then heal it."""
    _wait_sleeping(env, endpoint, len(names))
    with API_FAULTS[kind](env.api):
        _wait_committed(env, endpoint, op, names, n)
        time.sleep(API_OUTAGE)


@pytest.mark.parametrize("kind", list(API_FAULTS))
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_api_link_fails_after_the_call(env: Env, endpoint: str, kind: str) -> None:
    slug = "drop" if kind == "response dropped" else "reset"
    names = [f"{endpoint}-api{slug}-{j}" for j in range(EACH)]
    _create(env, names, endpoint)
    _through_api_fault(env, kind, endpoint, "create", names, len(names))
    env.world.wait_ready(names, timeout=120)
    _kubectl(env, "annotate", "-n", env.world.ns, *[f"db/{n}" for n in names], f"{ROTATE}=r1")
    _through_api_fault(env, kind, endpoint, "rotate", names, len(names))
    _wait_rotated(env, {n: (2, "r1") for n in names})
    judge_scoped(
        env.world,
        f"{endpoint}: API link {kind} after create and rotate",
        names,
        [Fault(op, "API link after the DBMS call", kind) for op in ("create", "rotate")],
        expected_calls={n: {"create": 1, "rotate": 1} for n in names},
    )
