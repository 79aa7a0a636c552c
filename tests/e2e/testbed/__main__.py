"""`python -m testbed cluster-up | cluster-down | demo | demo-cluster`: the test bed for people, not only for pytest.

cluster-up starts a detached supervisor process that owns the control plane until cluster-down sends it
SIGTERM, so the same start/stop code (and the same cleanup guarantees) serve tests and manual use.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

from testbed.state import STATE_DIR, STATE_FILE, alive, running_demo


def _serve(args: argparse.Namespace) -> int:
    from testbed.controlplane import ControlPlane

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    cluster = ControlPlane()
    try:
        cluster.start()
        STATE_FILE.write_text(
            json.dumps(
                {"pid": os.getpid(), "kubeconfig": str(cluster.kubeconfig), "workdir": str(cluster.workdir)}
            ),
            encoding="utf-8",
        )
        stop.wait()
    finally:
        cluster.stop()
        STATE_FILE.unlink(missing_ok=True)
    return 0


def _running_state() -> dict[str, str] | None:
    try:
        state: dict[str, str] = json.loads(STATE_FILE.read_text(encoding="utf-8"))
        os.kill(int(state["pid"]), 0)
        return state
    except (OSError, ValueError, KeyError):
        return None


def _cluster_up(_: argparse.Namespace) -> int:
    state = _running_state()
    if state is None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        STATE_FILE.unlink(missing_ok=True)
        log = (STATE_DIR / "supervisor.log").open("w", encoding="utf-8")
        proc = subprocess.Popen(
            [sys.executable, "-m", "testbed", "serve"],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 600
        while (state := _running_state()) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                print((STATE_DIR / "supervisor.log").read_text(encoding="utf-8")[-4000:], file=sys.stderr)
                print("control plane failed to start", file=sys.stderr)
                return 1
            time.sleep(0.5)
    print(f"control plane running (supervisor pid {state['pid']}); to use it:")
    print(f"export KUBECONFIG={state['kubeconfig']}")
    return 0


def _stop(pid: int, what: str) -> int:
    """SIGTERM, then wait: the process cleans up after itself (servers, temp directories)."""
    os.kill(pid, signal.SIGTERM)
    print(f"stopping {what} (pid {pid}) ...", flush=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if not alive(pid):
            print(f"{what} stopped")
            return 0
        time.sleep(0.3)
    print(f"{what} (pid {pid}) did not stop within 180s; kill it with: kill -9 {pid}", file=sys.stderr)
    return 1


def _cluster_down(_: argparse.Namespace) -> int:
    code = 0
    demo = running_demo()
    if demo is not None:
        code = _stop(int(demo["pid"]), "the demo (make demo KEEP=1)")
        print(f"operator log kept: {demo['operator_log']}")
    state = _running_state()
    if state is not None:
        code = _stop(int(state["pid"]), "control plane") or code
    elif demo is None:
        print("no control plane running")
    return code


def _demo(args: argparse.Namespace) -> int:
    from testbed.demo import run_demo

    return run_demo(keep=os.environ.get("KEEP") == "1")


def _demo_cluster(args: argparse.Namespace) -> int:
    from testbed.demo_cluster import run_demo_cluster

    return run_demo_cluster(keep=os.environ.get("KEEP") == "1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("cluster-up", help="start a local control plane in the background").set_defaults(
        func=_cluster_up
    )
    sub.add_parser("cluster-down", help="stop it").set_defaults(func=_cluster_down)
    sub.add_parser("serve", help="(internal) supervise a control plane until SIGTERM").set_defaults(
        func=_serve
    )
    sub.add_parser("demo", help="run the operator end to end and show a Secret").set_defaults(func=_demo)
    sub.add_parser(
        "demo-cluster", help="build the image, helm install it on a real node, show a Secret"
    ).set_defaults(func=_demo_cluster)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
