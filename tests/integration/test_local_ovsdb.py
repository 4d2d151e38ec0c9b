"""ovn_k8s.local_ovsdb (and the CNI's error codes on top of it, ovn_k8s.cni.ovsdb) against a
real ovsdb-server with the Open_vSwitch schema.

The server listens on a unix socket in a temporary directory, and for the remote-form tests also
on 127.0.0.1 (tcp and ssl); there is no ovs-vswitchd. The tests play ovn-controller, the
operator and (where a commit waits for it) ovs-vswitchd with ovs-vsctl, and read the outcome
with it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ovn_k8s.cni.ovsdb import PodPorts, attach_ids
from ovn_k8s.cni.protocol import CniError
from ovn_k8s.errors import ConfigError, ConnectionFailed
from ovn_k8s.local_ovsdb import POD_PORT_COLUMNS, LocalOvsdb, Mode
from ovn_k8s.ovsdb_remote import TlsFiles
from sandbox.lab.proc import stop_pidfile
from tests.helpers import self_signed_cert

pytestmark = pytest.mark.integration

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


class Db:
    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.remote = f"unix:{directory}/db.sock"
        self.tcp = self.ssl = ""  # the 127.0.0.1 remotes, when served

    def vsctl(self, *args: str) -> str:
        return subprocess.run(["ovs-vsctl", f"--db={self.remote}", "--no-wait", "--timeout=10", *args],
                              capture_output=True, text=True, check=True).stdout.strip()

    def ids(self, iface: str) -> dict[str, str]:
        out = self.vsctl("--format=json", "--columns=external_ids", "find", "interface", f"name={iface}")
        (row,) = json.loads(out)["data"]
        return dict(row[0][1])

    def ports(self, bridge: str) -> list[str]:
        return self.vsctl("list-ports", bridge).split()


def start_server(d: str, *extra: str) -> Db:
    subprocess.run(["ovsdb-tool", "create", f"{d}/conf.db", SCHEMA], check=True)
    subprocess.run(["ovsdb-server", f"{d}/conf.db", f"--remote=punix:{d}/db.sock", *extra, f"--pidfile={d}/db.pid",
                    f"--unixctl={d}/db.ctl", f"--log-file={d}/db.log", "-vfile:info", "--detach", "--no-chdir"],
                   check=True)
    server = Db(d)
    server.vsctl("init", "--", "add-br", "br-int", "--", "add-br", "br-phy",
                 "--", "set", "open_vswitch", ".", "external_ids:k8s-api-server=10.0.0.1:8080")
    return server


@pytest.fixture
def db(tmp_path) -> Iterator[Db]:  # type: ignore[no-untyped-def]
    try:
        yield start_server(str(tmp_path))
    finally:
        stop_pidfile(f"{tmp_path}/db.pid")


def deadline(seconds: float = 10) -> float:
    return time.monotonic() + seconds


IDS = attach_ids(iface_id="ns_pod", mac="0A:58:0A:F4:01:0A", sandbox="sandbox1", ifname="eth0",
                 ip_cidr="10.244.1.10/24")


def later(delay: float, action: Any) -> None:
    def run() -> None:
        time.sleep(delay)
        action()

    threading.Thread(target=run, daemon=True).start()


class FakeVswitchd:
    """Acknowledges every configuration change as ovs-vswitchd would (cur_cfg := next_cfg)."""

    def __init__(self, db: Db) -> None:
        self.db = db
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.02):
            wanted = self.db.vsctl("get", "open_vswitch", ".", "next_cfg")
            if self.db.vsctl("get", "open_vswitch", ".", "cur_cfg") != wanted:
                self.db.vsctl("set", "open_vswitch", ".", f"cur_cfg={wanted}")

    def __enter__(self) -> FakeVswitchd:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


# -- pod ports (the CNI plugins' mode) ----------------------------------------------------------


def test_pod_ports_mode_replicates_only_what_a_pod_port_needs(db: Db) -> None:
    with LocalOvsdb(db.remote, timeout=10, mode=Mode.POD_PORTS) as ovs:
        assert {t: set(ovs.idl.tables[t].columns) for t in ovs.idl.tables} == {
            t: set(c) for t, c in POD_PORT_COLUMNS.items()}
    with LocalOvsdb(db.remote, timeout=10) as ovs:
        assert {"Open_vSwitch", "Bridge", "Port", "Interface", "Controller", "Flow_Table"} <= set(ovs.idl.tables)
        assert "mac_in_use" in ovs.idl.tables["Interface"].columns


def test_attach_is_one_port_and_idempotent(db: Db) -> None:
    with PodPorts(db.remote, deadline=deadline()) as ovs:
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
    with PodPorts(db.remote, deadline=deadline()) as ovs:
        assert ovs.attach("br-int", "ovnbbbbbbbbbbbb", IDS, deadline=deadline())
    assert db.ports("br-phy") == [] and db.ports("br-int") == ["ovnbbbbbbbbbbbb"]
    assert db.ids("ovnbbbbbbbbbbbb")["iface-id"] == "ns_pod"


def test_attach_replaces_the_port_of_an_older_sandbox_but_not_foreign_ports(db: Db) -> None:
    db.vsctl("add-port", "br-int", "manual", "--", "set", "interface", "manual", "external_ids:iface-id=ns_other")
    with PodPorts(db.remote, deadline=deadline()) as ovs:
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
    with PodPorts(db.remote, deadline=deadline()) as ovs, pytest.raises(CniError) as err:
        ovs.attach("br-nope", "ovnccccccccccc", IDS, deadline=deadline())
    assert err.value.code == 101 and err.value.msg == "OVS bridge br-nope does not exist"
    assert "has minion-init run on this node?" in err.value.details


def test_detach_by_name_and_by_sandbox_tags(db: Db) -> None:
    with PodPorts(db.remote, deadline=deadline()) as ovs:
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


def test_wait_installed_returns_once_ovn_controller_marks_the_port(db: Db) -> None:
    with PodPorts(db.remote, deadline=deadline()) as ovs:
        ovs.attach("br-int", "ovneeeeeeeeeeee", IDS, deadline=deadline())
        later(0.3, lambda: db.vsctl("set", "interface", "ovneeeeeeeeeeee", "external_ids:ovn-installed=true"))
        assert ovs.wait_installed("ovneeeeeeeeeeee", "ns_pod", deadline=deadline(30)) > 0
        state = ovs.port_state("ovneeeeeeeeeeee")
        assert state is not None and state.installed


@pytest.mark.parametrize(("action", "code", "fragment"), [
    (None, 104, "OVN did not bind ns_pod"),
    (["set", "interface", "ovnffffffffffff", "external_ids:iface-id=ns_someone_else"], 101, "taken over"),
    (["del-port", "ovnffffffffffff"], 101, "disappeared"),
    (["set", "interface", "ovnffffffffffff", "ofport=-1", "error=\"could not open network device\""], 101,
     "cannot use"),
])
def test_wait_installed_failures(db: Db, action: list[str] | None, code: int, fragment: str) -> None:
    with PodPorts(db.remote, deadline=deadline()) as ovs:
        ovs.attach("br-int", "ovnffffffffffff", IDS, deadline=deadline())
        if action:
            later(0.2, lambda: db.vsctl(*action))
        with pytest.raises(CniError) as err:
            ovs.wait_installed("ovnffffffffffff", "ns_pod", deadline=deadline(1.5 if action is None else 60))
        assert err.value.code == code and fragment in err.value.msg, err.value


def test_concurrent_attaches_of_the_same_port_make_one_port(db: Db) -> None:
    """The same ADD run twice at once: both succeed, one Port (the name index decides)."""
    code = ("import sys, time\n"
            "from ovn_k8s.cni.ovsdb import PodPorts, attach_ids\n"
            "ids = attach_ids(iface_id='ns_pod', mac='0a:58:0a:f4:01:0a', sandbox='s', ifname='eth0',"
            " ip_cidr='10.244.1.10/24')\n"
            "with PodPorts(sys.argv[1], deadline=time.monotonic() + 20) as ovs:\n"
            "    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
            "    ovs.attach('br-int', 'ovnsame00000000', ids, deadline=time.monotonic() + 20)\n")
    start = str(time.time() + 1.0)
    procs = [subprocess.Popen([sys.executable, "-c", code, db.remote, start], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    assert db.ports("br-int") == ["ovnsame00000000"]
    assert db.vsctl("--bare", "--columns=name", "find", "interface", "name=ovnsame00000000") == "ovnsame00000000"


# -- the full mode: queued compare-then-write, one transaction, ovs-vswitchd's acknowledgement -----


def test_queued_writes_are_one_transaction_and_a_rerun_queues_nothing(db: Db) -> None:
    def wanted(ovs: LocalOvsdb) -> None:
        ovs.ensure_integration_bridge()
        ovs.ensure_port("br-int", "k8s-node1", type="internal", mac="0a:58:0a:f4:01:02",
                        external_ids={"iface-id": "k8s-node1"})
        ovs.ensure_bridge("breth1", fail_mode="standalone", other_config={"hwaddr": "0a:00:00:00:00:01"})
        ovs.ensure_patch_pair("br-int", "int-to-breth1", "breth1", "breth1-to-int",
                              external_ids_a={"ovn-k8s/owner": "gateway:node1"})

    with FakeVswitchd(db), LocalOvsdb(db.remote, timeout=30) as ovs:
        wanted(ovs)
        assert ovs.pending > 0
        assert ovs.commit() is True
        # commit returned after "ovs-vswitchd" acknowledged the change
        assert int(db.vsctl("get", "open_vswitch", ".", "cur_cfg")) >= int(
            db.vsctl("get", "open_vswitch", ".", "next_cfg")) > 0
        wanted(ovs)
        assert ovs.pending == 0 and ovs.commit() is False
    assert db.ports("br-int") == ["int-to-breth1", "k8s-node1"]
    assert db.ports("breth1") == ["breth1-to-int"]
    assert db.vsctl("get", "bridge", "br-int", "fail_mode") == "secure"
    assert db.vsctl("get", "bridge", "br-int", "other_config:disable-in-band") == '"true"'
    assert db.vsctl("get", "bridge", "breth1", "other_config:hwaddr") == '"0a:00:00:00:00:01"'
    assert db.vsctl("get", "interface", "k8s-node1", "type", "mac") == 'internal\n"0a:58:0a:f4:01:02"'
    assert db.vsctl("get", "interface", "int-to-breth1", "options:peer") == "breth1-to-int"
    assert db.vsctl("get", "interface", "breth1", "type") == "internal"  # the bridge's own port


def test_ensure_port_converges_columns_and_moves_ports_and_removes_owned_ones(db: Db) -> None:
    db.vsctl("add-port", "br-phy", "nic1", "--", "set", "interface", "nic1", "external_ids:keep=me")
    with FakeVswitchd(db), LocalOvsdb(db.remote, timeout=30) as ovs:
        ovs.ensure_port("br-int", "nic1", external_ids={"ovn-k8s/owner": "gateway:node1"})
        ovs.commit()
        assert db.ports("br-phy") == [] and db.ports("br-int") == ["nic1"]
        db.vsctl("set", "interface", "nic1", "external_ids:ovn-k8s/owner=gateway:node1")
        ovs.ensure_port("br-int", "nic1", external_ids={"ovn-k8s/owner": "gateway:node1", "x": "y"})
        ovs.commit()
        assert db.ids("nic1") == {"ovn-k8s/owner": "gateway:node1", "x": "y"}
        assert ovs.remove_owned_ports("gateway:node1", keep={"other"}) == ["nic1"]
        ovs.commit()
    assert db.ports("br-int") == []


def test_external_ids_and_access_port_tags_converge_and_a_rerun_queues_nothing(db: Db) -> None:
    """What ovn-integrate and the Docker underlay write: Open_vSwitch external_ids keys (others
    kept) and a port's VLAN tag."""
    db.vsctl("set", "open_vswitch", ".", "external_ids:keep=me", "external_ids:ovn-encap-ip=10.0.0.9")
    with FakeVswitchd(db), LocalOvsdb(db.remote, timeout=30) as ovs:
        assert ovs.ensure_external_ids({"ovn-encap-ip": "10.0.0.1", "ovn-encap-type": "geneve"}) == [
            "ovn-encap-ip", "ovn-encap-type"]
        ovs.ensure_port("br-int", "child1", tag=7)
        assert ovs.commit() is True
        assert ovs.ensure_external_ids({"ovn-encap-ip": "10.0.0.1"}) == []
        ovs.ensure_port("br-int", "child1", tag=7)
        assert ovs.pending == 0
        ovs.ensure_port("br-int", "child1", tag=8)
        ovs.commit()
        assert isinstance(ovs.iface_types(), list)
    ids = db.vsctl("get", "open_vswitch", ".", "external_ids")
    assert "keep=me" in ids and 'ovn-encap-ip="10.0.0.1"' in ids and "ovn-encap-type=geneve" in ids
    assert db.vsctl("get", "port", "child1", "tag") == "8"


def test_a_commit_without_ovs_vswitchd_is_written_and_returns_after_the_timeout(db: Db) -> None:
    with LocalOvsdb(db.remote, timeout=0.5) as ovs:
        ovs.ensure_port("br-int", "mgmt", type="internal")
        assert ovs.commit() is True
    assert db.ports("br-int") == ["mgmt"]


def test_reads_see_changes_made_by_others_on_the_same_connection(db: Db) -> None:
    """The gateway helper keeps one connection and reads it every second."""
    db.vsctl("add-port", "br-phy", "eth1", "--", "set", "interface", "eth1", "ofport=3")
    with LocalOvsdb(db.remote, timeout=10) as ovs:
        assert {i.name: i.ofport for i in ovs.bridge_interfaces("br-phy") or []} == {"br-phy": None, "eth1": 3}
        db.vsctl("set", "interface", "eth1", "ofport=7", "error=\"gone\"")
        time.sleep(0.2)  # give the server time to send the update; the read itself must not wait
        states = {i.name: i for i in ovs.bridge_interfaces("br-phy") or []}
        assert (states["eth1"].ofport, states["eth1"].error) == (7, "gone")
        assert ovs.bridge_interfaces("br-nope") is None
        with pytest.raises(ConfigError, match="no system-id"):
            ovs.system_id()


# -- connecting: every remote form, and one clear error when nobody answers --------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nobody listens on it once the socket is closed


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[Db, TlsFiles, TlsFiles]]:  # type: ignore[no-untyped-def]
    """A server on unix, ptcp and pssl (127.0.0.1); the client's TLS files, and a stranger's."""
    d = str(tmp_path)
    server_cert, server_key = self_signed_cert(d, "server")
    client_cert, client_key = self_signed_cert(d, "client")
    other_cert, other_key = self_signed_cert(d, "other")
    tcp, ssl = free_port(), free_port()
    try:
        db = start_server(d, f"--remote=ptcp:{tcp}:127.0.0.1", f"--remote=pssl:{ssl}:127.0.0.1",
                          f"--private-key={server_key}", f"--certificate={server_cert}", f"--ca-cert={client_cert}")
        db.tcp, db.ssl = f"tcp:127.0.0.1:{tcp}", f"ssl:127.0.0.1:{ssl}"
        yield (db, TlsFiles(privkey=client_key, cert=client_cert, cacert=server_cert),
               TlsFiles(privkey=other_key, cert=other_cert, cacert=server_cert))
    finally:
        stop_pidfile(f"{d}/db.pid")


@pytest.mark.parametrize("mode", list(Mode))
def test_every_remote_form_works(served: tuple[Db, TlsFiles, TlsFiles], mode: Mode) -> None:
    db, tls, _ = served
    for remote in (db.remote, db.tcp, db.ssl):
        with LocalOvsdb(remote, timeout=10, mode=mode, tls=tls) as ovs:
            assert ovs.external_ids() == {"k8s-api-server": "10.0.0.1:8080"}, remote
            assert ovs.attach("br-int", "ovn" + remote[:3], IDS, deadline=deadline()) is True, remote
    assert len(db.ports("br-int")) == 3


def test_ssl_needs_tls_files_and_a_certificate_the_server_trusts(served: tuple[Db, TlsFiles, TlsFiles]) -> None:
    db, tls, stranger = served
    ssl = db.ssl
    with pytest.raises(ConfigError, match="needs a private key, a certificate and a CA certificate"):
        LocalOvsdb(ssl, timeout=5)
    with pytest.raises(ConfigError, match="/nonexistent.pem does not exist"):
        LocalOvsdb(ssl, timeout=5, tls=TlsFiles(privkey=tls.privkey, cert=tls.cert, cacert="/nonexistent.pem"))
    with pytest.raises(ConnectionFailed) as err:
        LocalOvsdb(ssl, timeout=3, tls=stranger)
    assert "check the TLS key, certificate and CA" in str(err.value)


@pytest.mark.parametrize("mode", list(Mode))
def test_nothing_listening_is_one_error_at_once(tmp_path, mode: Mode) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConnectionFailed) as err:
        LocalOvsdb(f"unix:{tmp_path}/missing.sock", timeout=600, mode=mode)
    assert str(err.value) == f"cannot reach the local OVS database at unix:{tmp_path}/missing.sock: " \
                             "No such file or directory"
    with pytest.raises(ConnectionFailed, match="Connection refused"):
        LocalOvsdb(f"tcp:127.0.0.1:{free_port()}", timeout=600, mode=mode)


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_a_server_that_never_answers_is_one_error_at_the_deadline(tmp_path, kind: str) -> None:  # type: ignore[no-untyped-def]
    """It accepts the connection (the kernel does, into the backlog) but says nothing."""
    family = socket.AF_UNIX if kind == "unix" else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as silent:
        silent.bind(f"{tmp_path}/silent.sock" if kind == "unix" else ("127.0.0.1", 0))
        silent.listen(8)
        remote = f"unix:{tmp_path}/silent.sock" if kind == "unix" else f"tcp:127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(ConnectionFailed) as err:
            LocalOvsdb(remote, timeout=1)
        assert str(err.value) == f"no answer from the local OVS database at {remote} in time"
        with pytest.raises(CniError) as cni:
            PodPorts(remote, deadline=deadline(1))
        assert (cni.value.code, cni.value.msg) == (101, "cannot connect to the local OVSDB")


def test_a_bad_address_is_a_config_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="is not an OVSDB address"):
        LocalOvsdb("tcp:127.0.0.1", timeout=1)
    with pytest.raises(CniError) as cni:
        PodPorts("tcp:nowhere", deadline=deadline(1))
    assert cni.value.code == 7


def test_a_database_without_the_open_vswitch_schema_is_one_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = str(tmp_path)
    nb_schema = "/usr/share/ovn/ovn-nb.ovsschema"
    subprocess.run(["ovsdb-tool", "create", f"{d}/nb.db", nb_schema], check=True)
    subprocess.run(["ovsdb-server", f"{d}/nb.db", f"--remote=punix:{d}/nb.sock", f"--pidfile={d}/nb.pid",
                    f"--unixctl={d}/nb.ctl", f"--log-file={d}/nb.log", "--detach", "--no-chdir"], check=True)
    try:
        with pytest.raises(ConnectionFailed, match="has no Open_vSwitch database"):
            LocalOvsdb(f"unix:{d}/nb.sock", timeout=10)
    finally:
        stop_pidfile(f"{d}/nb.pid")
    assert not os.path.exists(f"{d}/nb.pid")
