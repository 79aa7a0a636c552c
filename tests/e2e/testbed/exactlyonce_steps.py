"""The steps of the exactly-once scenarios (tests/e2e/test_reliability_exactlyonce.py).

Both DBMS run every scenario at once: names are grouped per endpoint ({"pg": [...], "maria": [...]}),
each step acts on all of them and waits on each server. Edits are kubectl processes, started together
once the calls are seen sleeping on the servers; a step that needs its fault inside a call checks that
on the server rather than trusting timing.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from testbed.exactlyonce import Fault, committed, judge_scoped, sleeping, wait_for
from testbed.invariants import ServerView
from testbed.operator import database
from testbed.reliability import SOAK, World, create_objects, kubectl_retrying, ready_of
from testbed.toxiproxy import Proxy, Toxiproxy

SLOW = 2.0
#: The user-edit scenarios start several kubectl processes once the calls sleep: a wider window keeps
#: every edit inside the call on a loaded 2-core machine.
EDIT_SLOW = 8.0 if SOAK else 4.0  # soak edits three times as many Databases at once
#: Per-endpoint operation timeout: a call whose answer was dropped fails after this, then is retried.
OPERATION_TIMEOUT = "6s"
ENDPOINTS = ("pg", "maria")
ROTATE = "dbaasctl.io/rotate"
#: Databases per edit kind: 1 in `make test`, more in `make soak`.
EACH = 3 if SOAK else 1


@dataclass
class Env:
    """One module's world: the operator behind the API proxy, each DBMS behind its own proxy."""

    world: World
    toxiproxy: Toxiproxy
    api: Proxy
    dbms: dict[str, Proxy]  # endpoint -> its proxy
    views: dict[str, ServerView]


def kubectl(env: Env, *args: str, input: str | None = None) -> None:
    kubectl_retrying(env.world.kube, *args, input=input)


def parallel(*actions: Callable[[], object]) -> None:
    """Run kubectl edits at once (each is a process start): they must all land inside the call."""
    with ThreadPoolExecutor(max_workers=len(actions) or 1) as pool:
        for future in [pool.submit(a) for a in actions]:
            future.result()


def names_for(prefix: str, n: int = EACH) -> dict[str, list[str]]:
    """Database names per endpoint: both DBMS run each scenario at the same time."""
    return {ep: [f"{ep}-{prefix}-{j}" for j in range(n)] for ep in ENDPOINTS}


def every(names: dict[str, list[str]]) -> list[str]:
    return [n for group in names.values() for n in group]


def create(env: Env, names: dict[str, list[str]], *, edit: bool = False) -> dict[str, dict[str, Any]]:
    """`kubectl create` (no last-applied annotation: a later `kubectl apply` of the same manifest is a
    real write, as a GitOps tool's first sync of a hand-made object is). `edit`: on the endpoints whose
    procedures sleep `EDIT_SLOW`."""
    manifests = {
        n: database(n, env.world.ns, f"{ep}-edit" if edit else ep)
        for ep, group in names.items()
        for n in group
    }
    create_objects(env.world.kube, list(manifests.values()))
    return manifests


def rotate(env: Env, names: list[str], token: str) -> None:
    kubectl(
        env, "annotate", "--overwrite", "-n", env.world.ns, *[f"db/{n}" for n in names], f"{ROTATE}={token}"
    )


def _at_least(count: Callable[[], int], n: int) -> bool:
    return count() >= n


def wait_sleeping(env: Env, names: dict[str, list[str]]) -> None:
    """Until every endpoint has as many calls sleeping as it has Databases in this step."""
    for ep, group in names.items():
        view = env.views[ep]
        want = len(group)
        wait_for(
            f"{want} call(s) sleeping on {ep}",
            functools.partial(_at_least, functools.partial(sleeping, view), want),
            timeout=60,
        )


def wait_committed(env: Env, op: str, names: dict[str, list[str]], at_least: int = 1) -> None:
    for ep, group in names.items():
        keys = [f"{env.world.ns}/{x}" for x in group]
        view, want = env.views[ep], at_least * len(group)
        wait_for(
            f"{want} {op} call(s) committed on {ep}",
            functools.partial(_at_least, functools.partial(committed, view, op, keys), want),
            timeout=60,
        )


def wait_rotated(env: Env, names: dict[str, tuple[int, str]], timeout: float = 120.0) -> None:
    """Until each Database is Ready at credentialGeneration >= g with rotationToken t ({name: (g, t)})."""

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

    try:
        env.world.wait_dbs(f"{len(names)} rotations", done, timeout=timeout)
    except AssertionError as exc:
        seen = {
            n: {k: (d.get("status") or {}).get(k) for k in ("credentialGeneration", "rotationToken")}
            for n, d in env.world.list_dbs().items()
            if n in names
        }
        raise AssertionError(f"{exc}\nwanted (generation, token): {names}\nseen: {seen}") from None


def judge(
    env: Env,
    scenario: str,
    names: dict[str, list[str]],
    faults: list[Fault],
    expected: dict[str, int],
    repeats_allowed: tuple[str, ...] = (),
    per_name: dict[str, dict[str, int]] | None = None,
) -> None:
    """Judge each DBMS's share on its own (its own figures, its own matrix rows); fail with all."""
    failures = []
    for ep, group in names.items():
        try:
            mine = [
                dataclasses.replace(f, names=tuple(n for n in f.names if n in group))
                if f.names is not None
                else f
                for f in faults
            ]
            judge_scoped(
                env.world,
                f"{ep}: {scenario}",
                group,
                mine,
                expected_calls={n: (per_name or {}).get(n, expected) for n in group},
                repeats_allowed=repeats_allowed,
            )
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)


def edit_action(env: Env, kind: str, name: str, manifest: dict[str, Any], step: int) -> Callable[[], None]:
    ns = env.world.ns
    if kind == "kubectl label":
        return lambda: kubectl(env, "label", "--overwrite", "-n", ns, f"db/{name}", f"edit=e{step}")
    if kind == "kubectl annotate":
        return lambda: kubectl(
            env, "annotate", "--overwrite", "-n", ns, f"db/{name}", f"example.com/note=n{step}"
        )
    if kind == "kubectl apply":
        return lambda: kubectl(env, "apply", "-f", "-", input=json.dumps(manifest))
    if kind == "second rotate annotation":
        return lambda: kubectl(env, "annotate", "--overwrite", "-n", ns, f"db/{name}", f"{ROTATE}=r2")
    raise ValueError(kind)


EDITS = ("kubectl label", "kubectl annotate", "kubectl apply")


def edit_faults(op: str, kind_of: dict[str, str]) -> list[Fault]:
    kinds = dict.fromkeys(kind_of.values())
    return [
        Fault(op, "user edit during the call", k, tuple(n for n, kk in kind_of.items() if kk == k))
        for k in kinds
    ]


def _edit_names(prefix: str, kinds: tuple[str, ...]) -> tuple[dict[str, list[str]], dict[str, str]]:
    names = names_for(prefix, EACH * len(kinds))
    kind_of = {n: kinds[i // EACH] for group in names.values() for i, n in enumerate(group)}
    return names, kind_of


#: Attempts at landing every edit inside the calls (a loaded machine can make kubectl slower than a call).
EDIT_ATTEMPTS = 3


def edits_during(
    env: Env,
    op: str,
    prefix: str,
    kinds: tuple[str, ...],
    start: Callable[[dict[str, list[str]]], dict[str, dict[str, Any]]],
    step: int,
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Start `op` on fresh Databases (`start` returns their manifests), edit each once its call sleeps,
    and check on the servers that no call had finished when the last edit was done. A miss (the edits
    came too late to prove anything) is retried on fresh Databases, a bounded number of times."""
    for attempt in range(EDIT_ATTEMPTS):
        names, kind_of = _edit_names(f"{prefix}{attempt}", kinds)
        manifests = start(names)
        wait_sleeping(env, names)
        parallel(*[edit_action(env, kind_of[n], n, manifests[n], step) for n in every(names)])
        keys = {ep: [f"{env.world.ns}/{n}" for n in group] for ep, group in names.items()}
        if all(committed(env.views[ep], op, keys[ep]) == 0 for ep in names):
            return names, kind_of
    pytest.skip(f"no attempt landed every edit inside a {EDIT_SLOW} s {op} call (machine overloaded)")


def ready_then(
    env: Env, names: dict[str, list[str]], then: Callable[[list[str]], None]
) -> dict[str, dict[str, Any]]:
    manifests = create(env, names, edit=True)
    env.world.wait_ready(every(names), timeout=120)
    then(every(names))
    return manifests


def _secrets_changed(env: Env, names: list[str], before: dict[str, str]) -> bool:
    """Every Database's Secret exists and its password differs from `before` (absent = "")."""
    current = passwords(env, names)
    return all(current.get(n, "") not in ("", before.get(n, "")) for n in names)


def passwords(env: Env, names: list[str]) -> dict[str, str]:
    items = env.world.kube.kubectl_json("get", "secrets", "-n", env.world.ns)["items"]
    out = {}
    for secret in items:
        owner = (secret["metadata"].get("labels") or {}).get("dbaasctl.io/database")
        if owner in names and "password" in (secret.get("data") or {}):
            out[owner] = base64.b64decode(secret["data"]["password"]).decode()
    env.world.leaks.add_all(set(out.values()), "a credentials Secret")
    return out


def kill_between_secret_and_status(env: Env, op: str, names: dict[str, list[str]]) -> None:
    """Slow the API link (each request waits 4 s before it reaches the server) while the procedures
    sleep; once they committed and the Secrets hold their results, cut the link (the status write that
    records the call, still held by the proxy, never arrives) and SIGKILL the operator. Then heal and
    start it again."""
    all_names = every(names)
    before = passwords(env, all_names)
    wait_sleeping(env, names)
    operator = env.world.operators[0]
    env.api.add("slow", "latency", "upstream", latency=4000)
    wait_committed(env, op, names)
    wait_for(
        "the Secrets to hold the new credentials",
        lambda: _secrets_changed(env, all_names, before),
        timeout=60,
    )
    env.api.disable()
    operator.kill()
    env.toxiproxy.heal()
    operator.start()
