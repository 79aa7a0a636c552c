"""pytest fixtures over `testbed.node`: the images and one node per session, and the machine-wide check.

The node is skipped only where it cannot run (not root, no cgroups, missing packages), with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from testbed.controlplane import ControlPlane, KubeTools
from testbed.node import Images, Node, NodeUnavailable, build_images, unavailable_reason

#: Wall-clock figures of this run (image build, node start), printed in the terminal summary.
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def node_images() -> Images:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no test-bed node: {reason}")
    started = time.monotonic()
    images = build_images()
    TIMINGS["images (build or cache check) s"] = time.monotonic() - started
    return images


@pytest.fixture(scope="session")
def node(control_plane: KubeTools, node_images: Images) -> Iterator[Node]:
    if not isinstance(control_plane, ControlPlane):
        pytest.skip("the test-bed node joins the local control plane only")
    started = time.monotonic()
    try:
        running = Node(control_plane, node_images).start()
    except NodeUnavailable as exc:
        pytest.skip(f"no test-bed node: {exc}")
    TIMINGS["node start (containerd, image import, kubelet, scheduler, Ready) s"] = time.monotonic() - started
    try:
        yield running
    finally:
        running.stop()
