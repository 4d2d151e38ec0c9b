"""Fixtures: a fresh lab (real OVN in namespaces) per test, torn down even when a test fails.

A previous run that crashed leaves a registry entry whose owner process is gone; those labs
are swept at session start, so the suite can always run twice in a row.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from sandbox.lab.cluster import Lab, sweep_stale

# The real Kubernetes control plane fixture and its "NOT RUN" report (issue 13).
pytest_plugins = ("tests.real_control_plane",)

NEEDS = ("ovsdb-server", "ovn-northd", "ovs-vswitchd", "ovn-controller", "ip", "ethtool")


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() == 0:
        sweep_stale()


def _require_root_and_ovn() -> None:
    missing = [b for b in NEEDS if shutil.which(b) is None]
    if os.geteuid() != 0 or missing:
        pytest.fail(f"this test needs root and OVS/OVN installed (missing: {missing}); "
                    "run scripts/test.sh, which installs them")


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """Central NB/SB/northd up; add nodes with lab.add_node(name). Parametrized indirectly
    with N (`@pytest.mark.parametrize("lab", [3], indirect=True)`), the NB and SB are N-member
    RAFT clusters (lab.nb and lab.sb are then lists; docs/ha.md)."""
    _require_root_and_ovn()
    lab = Lab()
    try:
        lab.up_central(db_cluster=getattr(request, "param", 0))
        yield lab
    finally:
        lab.down()


@pytest.fixture
def two_nodes(lab: Lab) -> Lab:
    lab.add_node("node1")
    lab.add_node("node2")
    return lab
