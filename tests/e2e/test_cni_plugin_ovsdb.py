"""ovn_k8s.cni.ovsdb against a real ovsdb-server with the Open_vSwitch schema.

The server runs on a unix socket in a temporary directory (no network, no ovs-vswitchd); the
test plays ovn-controller and the operator with ovs-vsctl, and reads the outcome with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ovn_k8s.cni.ovsdb import LocalOvsdb, attach_ids
from ovn_k8s.cni.protocol import CniError
from sandbox.lab.proc import stop_pidfile

pytestmark = pytest.mark.integration

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


class Db:
    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.remote = f"unix:{directory}/db.sock"

    def vsctl(self, *args: str) -> str:
        return subprocess.run(["ovs-vsctl", f"--db={self.remote}", "--no-wait", "--timeout=10", *args],
                              capture_output=True, text=True, check=True).stdout.strip()

    def ids(self, iface: str) -> dict[str, str]:
        out = self.vsctl("--format=json", "--columns=external_ids", "find", "interface", f"name={iface}")
        (row,) = json.loads(out)["data"]
        return dict(row[0][1])

    def ports(self, bridge: str) -> list[str]:
        return self.vsctl("list-ports", bridge).split()


@pytest.fixture
def db(tmp_path) -> Iterator[Db]:  # type: ignore[no-untyped-def]
    d = str(tmp_path)
    subprocess.run(["ovsdb-tool", "create", f"{d}/conf.db", SCHEMA], check=True)
    subprocess.run(["ovsdb-server", f"{d}/conf.db", f"--remote=punix:{d}/db.sock", f"--pidfile={d}/db.pid",
                    f"--unixctl={d}/db.ctl", f"--log-file={d}/db.log", "--detach", "--no-chdir"], check=True)
    try:
        server = Db(d)
        server.vsctl("init", "--", "add-br", "br-int", "--", "add-br", "br-phy",
                     "--", "set", "open_vswitch", ".", "external_ids:k8s-api-server=10.0.0.1:8080")
        yield server
    finally:
        stop_pidfile(f"{d}/db.pid")


def deadline(seconds: float = 10) -> float:
    return time.monotonic() + seconds


IDS = attach_ids(iface_id="ns_pod", mac="0A:58:0A:F4:01:0A", sandbox="sandbox1", ifname="eth0",
                 ip_cidr="10.244.1.10/24")


def later(delay: float, action: Any) -> None:
    def run() -> None:
        time.sleep(delay)
        action()

    threading.Thread(target=run, daemon=True).start()


def test_attach_is_one_port_and_idempotent(db: Db) -> None:
    with LocalOvsdb(db.remote, deadline=deadline()) as ovs:
        assert ovs.external_ids() == {"k8s-api-server": "10.0.0.1:8080"}
        assert ovs.attach("br-int", "ovnaaaaaaaaaaaa", IDS, deadline=deadline()) is True
        assert db.ports("br-int") == ["ovnaaaaaaaaaaaa"]
        assert db.ids("ovnaaaaaaaaaaaa") == {
            "iface-id": "ns_pod", "attached-mac": "0a:58:0a:f4:01:0a", "iface-status": "active",
            "ip_addresses": "10.244.1.10/24", "ovn-k8s/sandbox": "sandbox1", "ovn-k8s/ifname": "eth0"}
        # ovn-controller marks it; a second attach writes nothing and keeps that mark
        db.vsctl("set", "interface", "ovnaaaaaaaaaaaa", "external_ids:ovn-installed=true")
        assert ovs.attach("br-int", "ovnaaaaaaaaaaaa", IDS, deadline=deadline()) is False
        # a changed key is set alone, other keys stay
        assert ovs.attach("br-int", "ovnaaaaaaaaaaaa", {**IDS, "ip_addresses": "10.244.1.11/24"},
                          deadline=deadline()) is True
        ids = db.ids("ovnaaaaaaaaaaaa")
        assert ids["ip_addresses"] == "10.244.1.11/24" and ids["ovn-installed"] == "true"
        state = ovs.port_state("ovnaaaaaaaaaaaa")
        assert state is not None and state.bridge == "br-int" and state.installed
    assert db.ports("br-int") == ["ovnaaaaaaaaaaaa"]


def test_attach_moves_a_port_from_another_bridge(db: Db) -> None:
    db.vsctl("add-port", "br-phy", "ovnbbbbbbbbbbbb")
    with LocalOvsdb(db.remote, deadline=deadline()) as ovs:
        assert ovs.attach("br-int", "ovnbbbbbbbbbbbb", IDS, deadline=deadline())
    assert db.ports("br-phy") == [] and db.ports("br-int") == ["ovnbbbbbbbbbbbb"]
    assert db.ids("ovnbbbbbbbbbbbb")["iface-id"] == "ns_pod"


def test_attach_replaces_the_port_of_an_older_sandbox_but_not_foreign_ports(db: Db) -> None:
    db.vsctl("add-port", "br-int", "manual", "--", "set", "interface", "manual", "external_ids:iface-id=ns_other")
    with LocalOvsdb(db.remote, deadline=deadline()) as ovs:
        ovs.attach("br-int", "ovnold000000000", IDS, deadline=deadline())
        ovs.attach("br-int", "ovnnew000000000", {**IDS, "ovn-k8s/sandbox": "sandbox2"}, deadline=deadline())
        assert db.ports("br-int") == ["manual", "ovnnew000000000"]
        # a port we did not make (no ovn-k8s/sandbox) that claims the same logical port is left alone
        db.vsctl("set", "interface", "manual", "external_ids:iface-id=ns_pod")
        ovs.attach("br-int", "ovnnew000000000", {**IDS, "ovn-k8s/sandbox": "sandbox2"}, deadline=deadline())
        assert db.ports("br-int") == ["manual", "ovnnew000000000"]
        # another interface of the same sandbox is not an older sandbox: it stays
        ovs.attach("br-int", "ovnnet100000000", {**IDS, "ovn-k8s/sandbox": "sandbox2", "ovn-k8s/ifname": "net1"},
                   deadline=deadline())
        assert db.ports("br-int") == ["manual", "ovnnet100000000", "ovnnew000000000"]


def test_attach_to_a_missing_bridge_is_code_101(db: Db) -> None:
    with LocalOvsdb(db.remote, deadline=deadline()) as ovs, pytest.raises(CniError) as err:
        ovs.attach("br-nope", "ovnccccccccccc", IDS, deadline=deadline())
    assert err.value.code == 101 and "br-nope does not exist" in err.value.msg


def test_detach_by_name_and_by_sandbox_tags(db: Db) -> None:
    with LocalOvsdb(db.remote, deadline=deadline()) as ovs:
        ovs.attach("br-int", "ovnddddddddddd1", IDS, deadline=deadline())
        ovs.attach("br-int", "ovnddddddddddd2", {**IDS, "iface-id": "ns_b", "ovn-k8s/ifname": "net1"},
                   deadline=deadline())
        assert ovs.detach("ovnddddddddddd1", sandbox="sandbox1", ifname="eth0", deadline=deadline()) == \
            ["br-int/ovnddddddddddd1"]
        assert db.ports("br-int") == ["ovnddddddddddd2"]  # another ifname of the same sandbox stays
        assert ovs.detach("ovnddddddddddd1", sandbox="sandbox1", ifname="eth0", deadline=deadline()) == []
        # found by its tags although the name differs (e.g. a name scheme of an older version)
        assert ovs.detach("ovnzzzzzzzzzzzz", sandbox="sandbox1", ifname="net1", deadline=deadline()) == \
            ["br-int/ovnddddddddddd2"]
    assert db.ports("br-int") == []


def test_wait_installed(db: Db) -> None:
    with LocalOvsdb(db.remote, deadline=deadline()) as ovs:
        ovs.attach("br-int", "ovneeeeeeeeeeee", IDS, deadline=deadline())
        later(0.3, lambda: db.vsctl("set", "interface", "ovneeeeeeeeeeee", "external_ids:ovn-installed=true"))
        waited = ovs.wait_installed("ovneeeeeeeeeeee", "ns_pod", deadline=deadline())
        assert 0.25 < waited < 5


@pytest.mark.parametrize(("action", "code", "fragment"), [
    (None, 104, "OVN did not bind ns_pod"),
    (["set", "interface", "ovnffffffffffff", "external_ids:iface-id=ns_someone_else"], 101, "taken over"),
    (["del-port", "ovnffffffffffff"], 101, "disappeared"),
    (["set", "interface", "ovnffffffffffff", "ofport=-1", "error=\"could not open network device\""], 101,
     "cannot use"),
])
def test_wait_installed_failures(db: Db, action: list[str] | None, code: int, fragment: str) -> None:
    with LocalOvsdb(db.remote, deadline=deadline()) as ovs:
        ovs.attach("br-int", "ovnffffffffffff", IDS, deadline=deadline())
        if action:
            later(0.2, lambda: db.vsctl(*action))
        t0 = time.monotonic()
        with pytest.raises(CniError) as err:
            ovs.wait_installed("ovnffffffffffff", "ns_pod", deadline=deadline(1.5 if action is None else 10))
        assert err.value.code == code and fragment in err.value.msg, err.value
        assert time.monotonic() - t0 < (3 if action is None else 2)


def test_connecting_to_nothing_is_code_101_at_the_deadline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    with pytest.raises(CniError) as err:
        LocalOvsdb(f"unix:{tmp_path}/missing.sock", deadline=deadline(0.5))
    assert err.value.code == 101 and "does not exist" in err.value.details
    assert time.monotonic() - t0 < 2


def test_concurrent_attaches_of_the_same_port_make_one_port(db: Db) -> None:
    """The same ADD run twice at once: both succeed, one Port (the name index decides)."""
    code = ("import sys, time\n"
            "from ovn_k8s.cni.ovsdb import LocalOvsdb, attach_ids\n"
            "ids = attach_ids(iface_id='ns_pod', mac='0a:58:0a:f4:01:0a', sandbox='s', ifname='eth0',"
            " ip_cidr='10.244.1.10/24')\n"
            "with LocalOvsdb(sys.argv[1], deadline=time.monotonic() + 20) as ovs:\n"
            "    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
            "    ovs.attach('br-int', 'ovnsame00000000', ids, deadline=time.monotonic() + 20)\n")
    start = str(time.time() + 1.0)
    procs = [subprocess.Popen([sys.executable, "-c", code, db.remote, start], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    assert db.ports("br-int") == ["ovnsame00000000"]
    assert db.vsctl("--bare", "--columns=name", "find", "interface", "name=ovnsame00000000") == "ovnsame00000000"
