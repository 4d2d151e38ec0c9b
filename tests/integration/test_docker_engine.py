"""ovn_k8s.docker.engine (the Engine API client of `ovn-container container-create`) against a
real dockerd (Debian's docker.io 20.10) in a lab namespace, without OVN: what each call makes,
as the engine itself reports it, and each failure as one clear line.

The namespace has no route, so a pull fails at once (no registry is ever reached).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ovn_k8s.docker.engine import DockerApi
from ovn_k8s.errors import HostError
from sandbox.lab.cluster import Lab
from sandbox.lab.docker import IMAGE, DockerEngine

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine() -> Iterator[DockerEngine]:
    lab = Lab()
    engine = DockerEngine(netns=lab.add_netns("dk"), dir=f"{lab.dir}/docker")
    try:
        engine.start()
        engine.import_busybox()
        yield engine
    finally:
        try:
            engine.destroy()
        finally:
            lab.down()


def test_create_start_inspect_delete_as_docker_run_net_none(engine: DockerEngine) -> None:
    api = DockerApi(engine.host)
    cid = api.create(IMAGE, ["sleep", "2147483647"], name="network_api1", labels={"ovn-k8s/owner": "t"})
    try:
        assert engine.inspect("container", cid)["State"]["Status"] == "created"
        api.start(cid)
        api.start(cid)                                     # already running (304): no error
        seen = engine.inspect("container", "network_api1")
        assert seen["Id"] == cid and seen["State"]["Running"]
        assert seen["HostConfig"]["NetworkMode"] == "none" and seen["HostConfig"]["Init"] is True
        assert seen["Config"]["Labels"] == {"ovn-k8s/owner": "t"}
        assert seen["Config"]["Cmd"] == ["sleep", "2147483647"]
        assert api.pid(cid) == seen["State"]["Pid"] == engine.container_pid(cid)
    finally:
        api.delete(cid)
    assert engine.docker("ps", "-aq", "--no-trunc").stdout.split().count(cid) == 0
    api.delete(cid)                                        # gone already: no error


def test_failures_are_one_line(engine: DockerEngine) -> None:
    api = DockerApi(engine.host)
    cid = api.create(IMAGE, ["sleep", "60"], name="network_api2", labels={})
    try:
        with pytest.raises(HostError, match="docker create failed: Conflict. The container name "
                                            '"/network_api2" is already in use'):
            api.create(IMAGE, ["true"], name="network_api2", labels={})
        with pytest.raises(HostError, match="container .* is not running"):
            api.pid(cid)                                   # created, never started
    finally:
        api.delete(cid)
    with pytest.raises(HostError, match="docker start failed: No such container: nosuch"):
        api.start("nosuch")
    # A missing image is pulled first, as `docker run` does; here the pull cannot succeed.
    with pytest.raises(HostError, match="docker pull nosuchimage:v1 failed: ") as failed:
        api.create("nosuchimage:v1", ["true"], name="network_api3", labels={})
    assert "\n" not in str(failed.value)
    with pytest.raises(HostError, match=f"cannot reach the Docker Engine at unix://{engine.dir}/none.sock"):
        DockerApi(f"unix://{engine.dir}/none.sock").start("x")
    assert engine.docker("ps", "-aq").stdout.strip() == ""

