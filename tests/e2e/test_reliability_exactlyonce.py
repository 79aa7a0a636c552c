"""Reliability §5: exactly once per intent, on the real control plane, PostgreSQL and MariaDB.

Every procedure sleeps on the server first (`SLOW` seconds, `EDIT_SLOW` for user edits), and each
scenario waits until the calls are seen sleeping on the server before it strikes, so the fault lands
inside the call or right after it, never merely near it:

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
answer never reaches the operator it cannot know whether the call ran and calls again, with the same
idempotency key (`{{ operation.id }}`): the samples recognise it and answer the first result without a
second side effect, so those scenarios hold exactly once too; the recognised repeats are counted apart.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from testbed.controlplane import KubeTools
from testbed.dbms import MariaDBServer, PostgresServer
from testbed.exactlyonce import (
    Fault,
    api_upstream,
    proxied_kubeconfig,
    via,
)
from testbed.exactlyonce_steps import (
    EDIT_SLOW,
    EDITS,
    ENDPOINTS,
    OPERATION_TIMEOUT,
    SLOW,
    Env,
    create,
    edit_faults,
    edits_during,
    every,
    judge,
    kill_between_secret_and_status,
    names_for,
    ready_then,
    rotate,
    wait_committed,
    wait_rotated,
    wait_sleeping,
)
from testbed.invariants import MariaDBView, PostgresView
from testbed.reliability import (
    SOAK,
    audited_mariadb_class,
    audited_postgres_class,
    world_of,
)
from testbed.toxiproxy import Proxy, Toxiproxy


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
        for name, view, server, make in (
            ("pg", pg_view, pg, audited_postgres_class),
            ("maria", maria_view, maria, audited_mariadb_class),
        ):
            dsn = via(view.install(), server.port, proxies[name])
            for endpoint, slow in ((name, SLOW), (f"{name}-edit", EDIT_SLOW)):
                cls = w.add_class(make(f"rel-eo-{endpoint}-{w.suffix}", slow=slow))
                spec = {
                    "name": endpoint,
                    "dsn": dsn,
                    "operationTimeout": OPERATION_TIMEOUT,
                    "maxConcurrentOperations": 32,  # every call of a soak-scale scenario at once
                }
                w.add_endpoint(cls, spec, view)
        w.leaks.add(pg.admin_password, "PostgreSQL admin password")
        w.leaks.add(maria.admin_password, "MariaDB admin password")
        w.apply_config()
        # Enough workers for every Database of a scenario to have its call in flight at once (soak).
        w.start_operator(
            kubeconfig=proxied_kubeconfig(kube.kubeconfig, api, workdir / "via-proxy.kubeconfig"),
            extra_args=["--workers=32"],
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


# -- users edit the Database while a procedure runs ----------------------------------------------------


def test_user_edits_while_create_runs(env: Env) -> None:
    names, kind_of = edits_during(env, "create", "ce", EDITS, lambda names: create(env, names, edit=True), 1)
    env.world.wait_ready(every(names), timeout=120)
    judge(
        env,
        "label, annotate and apply while create runs",
        names,
        edit_faults("create", kind_of),
        {"create": 1},
    )


def test_user_edits_while_rotate_runs(env: Env) -> None:
    kinds = (*EDITS, "second rotate annotation")
    names, kind_of = edits_during(
        env,
        "rotate",
        "re",
        kinds,
        lambda names: ready_then(env, names, lambda all_: rotate(env, all_, "r1")),
        2,
    )
    second = {n for n in every(names) if kind_of[n] == "second rotate annotation"}
    # r2 arrived while r1's call ran: both intents are served (two rotate calls); the judge holds the
    # generation to the calls (a lost record of r1 shows as one call more than generations).
    wait_rotated(env, {n: (2, "r2") if n in second else (2, "r1") for n in every(names)})
    judge(
        env,
        "label, annotate, apply and a second rotate annotation while rotate runs",
        names,
        edit_faults("rotate", kind_of),
        {"create": 1, "rotate": 1},
        per_name={n: {"create": 1, "rotate": 2} for n in second},
    )


def test_user_edits_while_delete_runs(env: Env) -> None:
    kinds = EDITS[:2]  # a deleting object still takes label and annotation edits
    names, kind_of = edits_during(
        env, "delete", "de", kinds, lambda names: ready_then(env, names, env.world.delete_many), 3
    )
    env.world.wait_gone(every(names), timeout=120)
    judge(
        env,
        "label and annotate while delete runs",
        names,
        edit_faults("delete", kind_of),
        {"create": 1, "delete": 1},
    )


# -- the API link fails right after the DBMS call ------------------------------------------------------

API_FAULTS: dict[str, Callable[[Proxy], AbstractContextManager[None]]] = {
    # The request reaches the API server and is applied; the answer is swallowed, the connection
    # closed 2 s later: the operator cannot tell a write that happened from one that did not.
    "response dropped": lambda api: api.drop_responses(close_after_ms=2000),
    # Every connection to the API server is reset as soon as it is open.
    "connection reset": lambda api: api.reset(after_ms=0, stream="downstream"),
}
#: How long the API link stays broken once the procedure has returned (the writes that record it fail).
API_OUTAGE = 2.0


def _through_api_fault(env: Env, kind: str, op: str, names: dict[str, list[str]]) -> None:
    """While the procedures sleep, break the API link; keep it broken until the calls committed on the
    servers and the operator's writes had time to fail; then heal it."""
    wait_sleeping(env, names)
    with API_FAULTS[kind](env.api):
        wait_committed(env, op, names)
        time.sleep(API_OUTAGE)


@pytest.mark.parametrize("kind", list(API_FAULTS))
def test_api_link_fails_after_the_call(env: Env, kind: str) -> None:
    names = names_for("api" + kind.split()[1][:4])
    create(env, names)
    _through_api_fault(env, kind, "create", names)
    env.world.wait_ready(every(names), timeout=120)
    rotate(env, every(names), "r1")
    _through_api_fault(env, kind, "rotate", names)
    wait_rotated(env, {n: (2, "r1") for n in every(names)})
    judge(
        env,
        f"API link {kind} after create and rotate",
        names,
        [Fault(op, "API link after the DBMS call", kind) for op in ("create", "rotate")],
        {"create": 1, "rotate": 1},
    )


# -- the operator dies right after a procedure returned -----------------------------------------------


def test_operator_killed_after_the_call(env: Env) -> None:
    names = names_for("kill")
    # One DBMS at a time, each converged before the next kill: a kill must fall between one call's
    # Secret write and its status write, and hit no other call.
    for ep in ENDPOINTS:
        mine = {ep: names[ep]}
        create(env, mine)
        kill_between_secret_and_status(env, "create", mine)
        env.world.wait_ready(names[ep], timeout=120)
        rotate(env, names[ep], "r1")
        kill_between_secret_and_status(env, "rotate", mine)
        wait_rotated(env, {n: (2, "r1") for n in names[ep]})
    judge(
        env,
        "operator SIGKILLed after create and rotate returned (Secret written, status not)",
        names,
        [Fault(op, "operator, after the DBMS call", "SIGKILL") for op in ("create", "rotate")],
        {"create": 1, "rotate": 1},
    )


@pytest.mark.skipif(not SOAK, reason="soak only (DBAASCTL_SOAK=1): adds half a minute")
def test_operator_killed_before_anything_was_recorded(env: Env) -> None:
    """The API link is cut while the procedures sleep and the operator SIGKILLed once they committed:
    nothing durable says the call ran, so the restarted operator calls again with the same idempotency
    key; the procedure answers the first result without a second side effect, and that Secret logs in."""
    names = names_for("killearly")
    for ep in ENDPOINTS:
        mine = {ep: names[ep]}
        create(env, mine)
        for op in ("create", "rotate"):
            if op == "rotate":
                env.world.wait_ready(names[ep], timeout=120)
                rotate(env, names[ep], "r1")
            wait_sleeping(env, mine)
            env.api.disable()
            wait_committed(env, op, mine)
            env.world.operators[0].kill()
            env.toxiproxy.heal()
            env.world.operators[0].start()
        wait_rotated(env, {n: (2, "r1") for n in names[ep]})
    judge(
        env,
        "operator SIGKILLed after create and rotate returned, API link cut (nothing recorded)",
        names,
        [
            Fault(op, "operator, after the DBMS call, nothing recorded", "SIGKILL")
            for op in ("create", "rotate")
        ],
        {"create": 1, "rotate": 1},
    )


# -- the DBMS link is slow, or breaks during the call ---------------------------------------------------


def test_dbms_link_slow(env: Env) -> None:
    """Latency both ways and a bandwidth limit on every DBMS connection, for the whole create and
    rotation: the calls take longer (well within the operation timeout), nothing runs twice."""
    names = names_for("slowlink")
    with contextlib.ExitStack() as faults:
        for ep in ENDPOINTS:
            faults.enter_context(env.dbms[ep].latency(150, stream="upstream"))
            faults.enter_context(env.dbms[ep].latency(150, stream="downstream"))
            faults.enter_context(env.dbms[ep].bandwidth(4, stream="downstream"))
        create(env, names)
        env.world.wait_ready(every(names), timeout=120)
        rotate(env, every(names), "r1")
        wait_rotated(env, {n: (2, "r1") for n in every(names)})
    judge(
        env,
        "DBMS link latency 150 ms each way + 4 KB/s during create and rotate",
        names,
        [
            Fault(op, "DBMS link during the call", kind)
            for op in ("create", "rotate")
            for kind in ("latency", "bandwidth")
        ],
        {"create": 1, "rotate": 1},
    )


DBMS_BREAKS: dict[str, Callable[[Proxy], AbstractContextManager[None]]] = {
    # The connection is reset while the procedure sleeps on the server.
    "connection reset mid-call": lambda p: p.reset(after_ms=0, stream="downstream"),
    # The server got the CALL and completes it; its answer never reaches the operator, whose operation
    # timeout ends the wait.
    "answer dropped after the server got the call": lambda p: p.toxic("timeout", "downstream", timeout=0),
}
if SOAK:
    # The connection is closed after a few bytes of the answer went through.
    DBMS_BREAKS["connection cut mid-answer"] = lambda p: p.limit_data(16, stream="downstream")


@pytest.mark.parametrize("kind", list(DBMS_BREAKS))
def test_dbms_link_breaks_during_the_call(env: Env, kind: str) -> None:
    """The operator cannot know whether a call whose answer it never got ran: it calls again with the
    same idempotency key, and the samples answer the first result without acting twice, so there is
    no repeated side effect. Everything else holds: the Secret logs in, Ready only with working
    credentials, nothing orphaned."""
    names = names_for("break" + str(list(DBMS_BREAKS).index(kind)))
    create(env, names)
    for op in ("create", "rotate"):
        if op == "rotate":
            env.world.wait_ready(every(names), timeout=120)
            rotate(env, every(names), "r1")
        wait_sleeping(env, names)
        with contextlib.ExitStack() as faults:
            for ep in ENDPOINTS:
                faults.enter_context(DBMS_BREAKS[kind](env.dbms[ep]))
            wait_committed(env, op, names)
    wait_rotated(env, {n: (2, "r1") for n in every(names)}, timeout=180)
    judge(
        env,
        f"DBMS link: {kind} (create and rotate)",
        names,
        [Fault(op, "DBMS link during the call", kind) for op in ("create", "rotate")],
        {"create": 1, "rotate": 1},
    )
    replays = _replays(env, names)
    print(f"DBMS link {kind}: repeated calls recognised by their key (no side effect): {replays}")
    if kind.startswith("answer dropped"):
        # The server completed every call whose answer was dropped: each was called again, and the key
        # made each repeat a replay.
        assert all(n > 0 for n in replays.values()), replays


def _replays(env: Env, names: dict[str, list[str]]) -> dict[str, int]:
    """Per DBMS: calls of these Databases its procedures answered as repeats of an intent's first call."""
    ns = env.world.ns
    return {
        ep: sum(1 for c in env.views[ep].calls() if c.replayed and c.namespace == ns and c.name in group)
        for ep, group in names.items()
    }


def test_no_secret_leaked(env: Env) -> None:
    """Every password the module's procedures issued, every Secret and DSN: in no operator log (trace
    level, through every fault above), Event, status or metric."""
    env.world.scan_leaks()
