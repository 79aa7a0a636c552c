"""A minimal operator on the controller kit, run as a child process by the kit's leader-election tests.

It watches ConfigMaps in one namespace and reconciles each key forever (requeue_after), appending
`identity start end` (CLOCK_MONOTONIC, comparable across processes on one host) to a shared file after
every reconcile, so the test can prove that two replicas never ran work at the same time.

usage: kit_manager_proc.py KUBECONFIG NAMESPACE LEASE IDENTITY WORKLOG PROBE_PORT METRICS_PORT
       [LEASE_DURATION RENEW_DEADLINE RETRY_PERIOD]
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from dbaasctl.kube.controller import Result
from dbaasctl.kube.manager import Manager
from dbaasctl.kube.manager_settings import ManagerSettings
from dbaasctl.kube.resources import CONFIGMAPS, object_key
from dbaasctl.kube.rest import KubeClient
from dbaasctl.observability.logging import setup_logging


async def main(argv: list[str]) -> int:
    kubeconfig, namespace, lease, identity, worklog, probe_port, metrics_port = argv[:7]
    durations = [float(x) for x in argv[7:10]] or [15.0, 10.0, 2.0]
    setup_logging("debug", "console")
    client = await KubeClient.from_config(kubeconfig)
    settings = ManagerSettings(
        probe_host="127.0.0.1",
        probe_port=int(probe_port),
        metrics_host="127.0.0.1",
        metrics_port=int(metrics_port),
        lease_name=lease,
        lease_namespace=namespace,
        identity=identity,
        lease_duration=durations[0],
        renew_deadline=durations[1],
        retry_period=durations[2],
        graceful_shutdown_timeout=5.0,
    )
    manager = Manager(client, settings)
    informer = manager.add_informer(CONFIGMAPS, namespace=namespace)
    log = Path(worklog)

    async def reconcile(key: str) -> Result:
        start = time.monotonic()
        await asyncio.sleep(0.02)
        with log.open("a", encoding="utf-8") as fh:
            fh.write(f"{identity} {start:.6f} {time.monotonic():.6f} {os.getpid()}\n")
        return Result(requeue_after=0.05)

    controller = manager.add_controller("configmaps", reconcile, workers=2)
    informer.add_handlers(on_add=lambda obj: controller.enqueue(object_key(obj)))
    return await manager.run()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
