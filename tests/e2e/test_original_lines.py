"""Every command line of the original documents, run verbatim against the lab (issue 12 item 1).

The table below (K8S_LINES, MESOS_LINES) lists each line exactly as the original document
printed it, with its `$VARIABLES`; where it comes from (the source ids of
../shared/reference/original-systems.md: K-doc is the last Python-era ovn-kubernetes README and
docs, M the ovn-mesos READMEs; the section is the one of that inventory); the values the lab
gives the variables; and the check of its outcome. A test per line runs the text through
`sh -c` inside the node's namespace (sandbox.lab.proc.run with netns=...), with the variables
in the environment so that the shell fills them in, and then checks the NB (ovn-nbctl), the
node's OVS (ovs-vsctl), the host (ip) or the daemon (ovs-appctl status).

What the lab provides, as a host that followed the documents would have it:
- the node's OVS is its own ovsdb-server (OVS_RUNDIR is the node's directory, as for
  ovs-vsctl; our tools find it through OVN_K8S_OVS_DB, the stand-in for the default
  /var/run/openvswitch/db.sock) and no config file (OVN_K8S_CONFIG=/dev/null);
- the CNI directories of minion-init are the lab's (OVN_K8S_CNI_CONF_DIR/_BIN_DIR), never the
  machine's /etc/cni and /opt/cni; our executables are first in PATH (as after `pip install .`);
- the central NB and SB listen on TCP at $CENTRAL_IP (ports 6641 and 6642);
- `sudo`: the lab's shell is root already; `sudo` is a shell function that runs its arguments
  (no sudo binary here, and a real one would reset the environment);
- the API server is our in-process one, reached at 127.0.0.1:8080 inside the master's
  namespace (`k8s-api-server="127.0.0.1:8080"`, as the README sets on the master);
- the README's shared NIC is `eth0`: the gateway host's underlay NIC is renamed `ul0` so the
  outside network's NIC can be `eth0`, as on the README's host.

Not in the table (not our commands, and not OVS configuration of ours): ovn-ctl start_northd /
start_controller, git clone / pip install, `ovn-nbctl/ovn-sbctl set-connection` (the lab's
servers listen on TCP themselves), `uuidgen > $id_file` (the lab's system-id file is written by
the fixture), mesos-execute (no Mesos here: the lab makes the agent's call to ovn-mesos-plugin
in the network-init and hand-made-network checks) and `ip netns exec $NAMESPACE1 ifconfig -a`.

One lab per orchestrator (class-scoped fixtures); each class runs its lines in table order,
since later lines depend on earlier ones, as in the documents. The daemons' lines are also
tested in depth elsewhere (tests/unit/test_ovs_daemon.py: the watcher line's options and
ovs-appctl commands; tests/e2e/test_gateway_helper.py: the helper line's flows); here each runs
once against the lab, is checked serving (ovs-appctl status, a pod's port, the conntrack
flows) and is stopped by its pid file at teardown.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from sandbox.kubeapi import KubeApiServer
from sandbox.lab.cluster import Lab, Node
from sandbox.lab.forward import Forwarder
from sandbox.lab.proc import alive, read_pid, run, stop_pidfile, wait_for
from tests.e2e.test_mesos import network_conf, plugin
from tests.helpers import nb_dump, rows

pytestmark = pytest.mark.e2e

BIN = os.path.dirname(sys.executable)
LS, LSP, LR, LRP, LB, NAT = ("Logical_Switch", "Logical_Switch_Port", "Logical_Router",
                             "Logical_Router_Port", "Load_Balancer", "NAT")
NETNS_DIR = "/var/run/netns"
NEEDS = ("ovsdb-server", "ovn-northd", "ovs-vswitchd", "ovn-controller", "ovs-appctl", "ip", "ethtool")


# --- the table ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    """One command line of an original document."""

    key: str                       # test id
    node: str                      # the lab node whose namespace runs it
    text: str                      # exactly as printed, `$VARIABLES` and line continuations kept
    source: str                    # document and section (original-systems.md source ids)
    variables: dict[str, str] = field(default_factory=dict)   # "{name}" filled from the lab
    check: str = ""                # name of the check function (CHECKS)


CENTRAL_IP = "172.30.0.2"         # the lab's central namespace on its default underlay
ONE_TIME_SETUP_K8S = """ovs-vsctl set Open_vSwitch . external_ids:ovn-remote="tcp:$CENTRAL_IP:6642" \\
  external_ids:ovn-nb="tcp:$CENTRAL_IP:6641" \\
  external_ids:ovn-encap-ip=$LOCAL_IP \\
  external_ids:ovn-encap-type="$ENCAP_TYPE" \\
  external_ids:system-id=$SYSTEM_ID"""
MASTER_INIT = """ovn-k8s-overlay master-init \\
  --cluster-ip-subnet=$CLUSTER_IP_SUBNET \\
  --master-switch-subnet="$MASTER_SWITCH_SUBNET" \\
  --node-name="$NODE_NAME\""""
MASTER_INIT_EXAMPLE = """ovn-k8s-overlay master-init \\
  --cluster-ip-subnet="192.168.0.0/16" \\
  --master-switch-subnet="192.168.1.0/24" \\
  --node-name="kube-master\""""
MINION_INIT = """ovn-k8s-overlay minion-init \\
  --cluster-ip-subnet="$CLUSTER_IP_SUBNET" \\
  --minion-switch-subnet="$MINION_SWITCH_SUBNET" \\
  --node-name="$NODE_NAME\""""
MINION_INIT_EXAMPLE = """ovn-k8s-overlay minion-init \\
  --cluster-ip-subnet="192.168.0.0/16" \\
  --minion-switch-subnet="192.168.2.0/24" \\
  --node-name="kube-minion1\""""
API_SERVER_INSECURE = """ovs-vsctl set Open_vSwitch . \\
  external_ids:k8s-api-server="$K8S_API_SERVER_IP:8080\""""
API_SERVER_SECURE = """ovs-vsctl set Open_vSwitch . \\
  external_ids:k8s-api-server="https://$K8S_API_SERVER_IP" \\
  external_ids:k8s-ca-certificate="$CA_CRT" \\
  external_ids:k8s-api-token="$API_TOKEN\""""
GATEWAY_INIT = """ovn-k8s-overlay gateway-init \\
  --cluster-ip-subnet="$CLUSTER_IP_SUBNET" \\
  --physical-interface eth1 \\
  --physical-ip "$PHYSICAL_IP" \\
  --node-name="$NODE_NAME" \\
  --default-gw "$EXTERNAL_GATEWAY\""""
GATEWAY_INIT_EXAMPLE = """ovn-k8s-overlay gateway-init \\
  --cluster-ip-subnet="192.168.0.0/16" \\
  --physical-interface eth1 \\
  --physical-ip 10.33.74.138/24 \\
  --node-name="kube-minion2" \\
  --default-gw 10.33.74.253"""
GATEWAY_INIT_BRIDGE = """ovn-k8s-overlay gateway-init \\
  --cluster-ip-subnet="$CLUSTER_IP_SUBNET" \\
  --bridge-interface breth0 \\
  --physical-ip "$PHYSICAL_IP" \\
  --node-name="$NODE_NAME" \\
  --default-gw "$EXTERNAL_GATEWAY\""""
GATEWAY_HELPER = """ovn-k8s-gateway-helper --physical-bridge=breth0 --physical-interface=eth0 \\
    --pidfile --detach"""
WATCHER = """ovn-k8s-watcher \\
  --overlay \\
  --pidfile \\
  --log-file \\
  -vfile:info \\
  -vconsole:emer \\
  --detach"""

K8S_README = "K-doc README.md (Python era, 8b301348)"
K8S = {"CLUSTER_IP_SUBNET": "192.168.0.0/16"}
K8S_LINES: list[Line] = [
    Line("one-time-setup-master", "kube-master", ONE_TIME_SETUP_K8S,
         f"{K8S_README}, System Initialization, One time setup; §E.2",
         {"CENTRAL_IP": CENTRAL_IP, "LOCAL_IP": "172.30.0.11", "ENCAP_TYPE": "geneve",
          "SYSTEM_ID": "kube-master"}, "one_time_setup"),
    Line("one-time-setup-minion1", "kube-minion1", ONE_TIME_SETUP_K8S,
         f"{K8S_README}, System Initialization, One time setup; §E.2",
         {"CENTRAL_IP": CENTRAL_IP, "LOCAL_IP": "172.30.0.12", "ENCAP_TYPE": "geneve",
          "SYSTEM_ID": "kube-minion1"}, "one_time_setup"),
    Line("one-time-setup-minion2", "kube-minion2", ONE_TIME_SETUP_K8S,
         f"{K8S_README}, System Initialization, One time setup; §E.2",
         {"CENTRAL_IP": CENTRAL_IP, "LOCAL_IP": "172.30.0.13", "ENCAP_TYPE": "geneve",
          "SYSTEM_ID": "kube-minion2"}, "one_time_setup"),
    Line("master-api-server", "kube-master",
         'ovs-vsctl set Open_vSwitch . external_ids:k8s-api-server="127.0.0.1:8080"',
         f"{K8S_README}, k8s master node initialization; §E.3", {}, "api_server_set"),
    Line("master-init", "kube-master", MASTER_INIT,
         f"{K8S_README}, k8s master node initialization; §A.1.1",
         {**K8S, "MASTER_SWITCH_SUBNET": "192.168.1.0/24", "NODE_NAME": "kube-master"},
         "master_init"),
    Line("master-init-example", "kube-master", MASTER_INIT_EXAMPLE,
         f"{K8S_README}, k8s master node initialization (An example is); §A.1.1", {},
         "nb_unchanged"),
    Line("minion-api-server-insecure", "kube-minion1", API_SERVER_INSECURE,
         f"{K8S_README}, k8s minion node initializations (insecure); §E.3",
         {"K8S_API_SERVER_IP": "192.168.1.2"}, "api_server_set"),
    Line("minion-api-server-secure", "kube-minion2", API_SERVER_SECURE,
         f"{K8S_README}, k8s minion node initializations (secure); §E.2, §E.3",
         {"K8S_API_SERVER_IP": "192.168.1.2", "API_TOKEN": "lab-token",
          "CA_CRT": "-----BEGIN CERTIFICATE-----\\nMIIBlab\\n-----END CERTIFICATE-----"},
         "api_server_secure_set"),
    Line("minion-init-example", "kube-minion1", MINION_INIT_EXAMPLE,
         f"{K8S_README}, k8s minion node initializations (An example is); §A.1.2", {},
         "minion_init"),
    Line("minion-init", "kube-minion2", MINION_INIT,
         f"{K8S_README}, k8s minion node initializations; §A.1.2",
         {**K8S, "MINION_SWITCH_SUBNET": "192.168.3.0/24", "NODE_NAME": "kube-minion2"},
         "minion_init"),
    Line("gateway-api-server", "kube-minion2", API_SERVER_INSECURE,
         f"{K8S_README}, k8s gateway node initialization; §E.3",
         {"K8S_API_SERVER_IP": "192.168.1.2"}, "api_server_set"),
    Line("gateway-init-physical-example", "kube-minion2", GATEWAY_INIT_EXAMPLE,
         f"{K8S_README}, k8s gateway node initialization (An example is); §A.1.3", {},
         "gateway_init_physical"),
    Line("gateway-init-physical", "kube-minion2", GATEWAY_INIT,
         f"{K8S_README}, k8s gateway node initialization; §A.1.3",
         {**K8S, "PHYSICAL_IP": "10.33.74.138/24", "NODE_NAME": "kube-minion2",
          "EXTERNAL_GATEWAY": "10.33.74.253"}, "nb_unchanged"),
    Line("nics-to-bridge", "kube-master", "ovn-k8s-util nics-to-bridge eth0",
         f"{K8S_README}, k8s gateway node initialization (shared NIC); §A.5, §D", {},
         "nics_to_bridge"),
    Line("gateway-init-bridge", "kube-master", GATEWAY_INIT_BRIDGE,
         f"{K8S_README}, k8s gateway node initialization (shared NIC); §A.1.3, §D",
         {**K8S, "PHYSICAL_IP": "10.33.74.139/24", "NODE_NAME": "kube-master",
          "EXTERNAL_GATEWAY": "10.33.74.253"}, "gateway_init_bridge"),
    Line("gateway-helper", "kube-master", GATEWAY_HELPER,
         f"{K8S_README}, k8s gateway node initialization (shared NIC); §A.3, §D", {}, "gateway_helper"),
    Line("watcher", "kube-master", WATCHER,
         f"{K8S_README}, Watchers on master node; §A.2", {}, "watcher"),
]

M_README = "M README.md (1ddc29ed)"
M_WALK = "M vagrant/README.md (9be79081), the walkthrough"
ONE_TIME_SETUP_MESOS = """ovs-vsctl set Open_vSwitch . external_ids:ovn-remote="tcp:$CENTRAL_IP:6642" \\
  external_ids:ovn-nb="tcp:$CENTRAL_IP:6641" \\
  external_ids:ovn-encap-ip=$LOCAL_IP \\
  external_ids:ovn-encap-type="$ENCAP_TYPE\""""
MESOS_GATEWAY_INIT = """PHYSICAL_INTERFACE="enp0s9"
TENANT="coke"
sudo ovn-mesos-init gateway-init --cluster-ip-subnet=192.168.0.0/16 \\
    --physical-interface=$PHYSICAL_INTERFACE --physical-ip=10.10.1.12/24 \\
    --default-gw=10.10.1.1 --tenant-name="$TENANT\""""
MESOS_LINES: list[Line] = [
    Line("one-time-setup-master", "mesos-master", ONE_TIME_SETUP_MESOS,
         f"{M_README}, One time setup; §H.1, §E.2",
         {"CENTRAL_IP": CENTRAL_IP, "LOCAL_IP": "172.30.0.11", "ENCAP_TYPE": "geneve"},
         "one_time_setup"),
    Line("one-time-setup-agent1", "mesos-agent1", ONE_TIME_SETUP_MESOS,
         f"{M_README}, One time setup; §H.1, §E.2",
         {"CENTRAL_IP": CENTRAL_IP, "LOCAL_IP": "172.30.0.12", "ENCAP_TYPE": "geneve"},
         "one_time_setup"),
    Line("system-id-master", "mesos-master",
         "ovs-vsctl set Open_vSwitch . external_ids:system-id=$(cat $id_file)",
         f"{M_README}, One time setup (system-id); §E.2",
         {"id_file": "{dir}/mesos-master.system-id.conf"}, "system_id"),
    Line("system-id-agent1", "mesos-agent1",
         "ovs-vsctl set Open_vSwitch . external_ids:system-id=$(cat $id_file)",
         f"{M_README}, One time setup (system-id); §E.2",
         {"id_file": "{dir}/mesos-agent1.system-id.conf"}, "system_id"),
    Line("tenant-init", "mesos-master", "TENANT=coke\nsudo ovn-mesos-init tenant-init --tenant-name $TENANT",
         f"{M_WALK}; §H.1, §H.3", {}, "tenant_init"),
    Line("gateway-init", "mesos-master", MESOS_GATEWAY_INIT, f"{M_WALK}; §H.1, §H.3", {},
         "mesos_gateway_init"),
    Line("network-init", "mesos-master", """TENANT="coke"
NETWORK="coke1"
SUBNET="192.168.1.0/24"
sudo ovn-mesos-init network-init --network-name="$NETWORK" \\
    --subnet="$SUBNET" --tenant-name="$TENANT\"""", f"{M_WALK}; §H.1, §H.2, §H.3", {},
         "network_init"),
    Line("lb-add", "mesos-master",
         "ovn-nbctl --may-exist lb-add coke '10.10.1.12:32350' '192.168.1.2:80,192.168.1.3:80'",
         "M README.md (HEAD b155c7aa), north-south load balancer; §H.3", {}, "lb_added"),
    Line("lb-attach", "mesos-master",
         "ovn-nbctl set logical_router GR_coke_$OVS_SYSTEM_ID load_balancer=$LB_UUID",
         "M README.md (HEAD b155c7aa), north-south load balancer; §H.3",
         {"OVS_SYSTEM_ID": "mesos-master", "LB_UUID": "{lb_uuid}"}, "lb_survives_gateway_init"),
    Line("network-by-hand", "mesos-master", """ovn-nbctl ls-add $SWITCH -- set logical_switch $SWITCH \\
    other_config:subnet="$SUBNET\"""", f"{M_README}, Setting up OVN networks; §H.2",
         {"SWITCH": "sprite1", "SUBNET": "192.168.5.0/24"}, "network_by_hand"),
]


# --- the labs -------------------------------------------------------------------------------------
@dataclass
class Ctx:
    lab: Lab
    nodes: dict[str, Node]
    values: dict[str, str] = field(default_factory=dict)     # "{name}" in variables
    daemons: list[str] = field(default_factory=list)         # pid files of daemons started
    api: KubeApiServer | None = None

    def env(self, node: Node, line_text: str, variables: dict[str, str]) -> dict[str, str]:
        env = {**node.env, "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
               "OVN_K8S_CONFIG": "/dev/null", "OVN_K8S_OVS_DB": node.ovs_db,
               "OVN_K8S_CNI_CONF_DIR": f"{node.dir}/cni/net.d",
               "OVN_K8S_CNI_BIN_DIR": f"{node.dir}/cni/bin"}
        if line_text.startswith("ovn-nbctl"):
            env["OVN_NB_DB"] = self.lab.nb    # ovn-nbctl on the central host: its NB socket
        env.update({k: v.format(**self.values) for k, v in variables.items()})
        return env

    def sh(self, line: Line) -> subprocess.CompletedProcess[str]:
        """The line through sh -c in its node's namespace, exactly as written."""
        node = self.nodes[line.node]
        preamble = 'sudo() { "$@"; }\n' if "sudo " in line.text else ""
        return run(["sh", "-c", preamble + line.text], netns=node.netns,
                   env=self.env(node, line.text, line.variables), check=False, timeout=120)

    def appctl(self, node: Node, target: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run(["ovs-appctl", "-t", target, *args], netns=node.netns, env=node.env,
                   check=False, timeout=15)


def _add_sb_tcp(lab: Lab) -> None:
    # The documents point ovn-controller at tcp:$CENTRAL_IP:6642; the lab's SB listens there too.
    run(["ovs-appctl", "-t", f"{lab.central_dir}/sb.ctl", "ovsdb-server/add-remote",
         f"ptcp:6642:{lab.central_ip}"])


def _start_lab(names: tuple[str, ...]) -> tuple[Lab, dict[str, Node]]:
    missing = [b for b in NEEDS if shutil.which(b) is None]
    if os.geteuid() != 0 or missing:
        pytest.fail(f"this test needs root and OVS/OVN installed (missing: {missing})")
    lab = Lab()
    try:
        lab.up_central(nb_tcp=True)
        assert lab.central_ip == CENTRAL_IP
        _add_sb_tcp(lab)
        nodes = {name: lab.add_node(name) for name in names}
    except BaseException:
        lab.down()
        raise
    return lab, nodes


@pytest.fixture(scope="class")
def k8s() -> Iterator[Ctx]:
    lab, nodes = _start_lab(("kube-master", "kube-minion1", "kube-minion2"))
    ctx = Ctx(lab, nodes)
    try:
        lab.add_outside("10.33.74.253/24")
        minion2 = nodes["kube-minion2"]
        lab.connect_outside(minion2, "eth1")
        minion2.exec(["ip", "addr", "add", "10.33.74.138/24", "dev", "eth1"])
        # The README's shared NIC is eth0: the master's underlay NIC becomes ul0 (still in
        # br-phy, which holds the tunnel address) and the outside NIC is eth0.
        master = nodes["kube-master"]
        master.vsctl("del-port", "br-phy", "eth0")
        master.exec(["ip", "link", "set", "eth0", "down"])
        master.exec(["ip", "link", "set", "eth0", "name", "ul0"])
        master.exec(["ip", "link", "set", "ul0", "up"])
        master.vsctl("add-port", "br-phy", "ul0")
        lab.connect_outside(master, "eth0")
        master.exec(["ip", "addr", "add", "10.33.74.139/24", "dev", "eth0"])
        with KubeApiServer() as api, Forwarder(master.netns, "127.0.0.1", api.port, port=8080):
            ctx.api = api
            yield ctx
    finally:
        for pidfile in ctx.daemons:
            stop_pidfile(pidfile)
        lab.down()


@pytest.fixture(scope="class")
def mesos() -> Iterator[Ctx]:
    lab, nodes = _start_lab(("mesos-master", "mesos-agent1"))
    ctx = Ctx(lab, nodes, values={"dir": lab.dir})
    try:
        for name in nodes:
            with open(f"{lab.dir}/{name}.system-id.conf", "w", encoding="ascii") as f:
                f.write(name + "\n")     # the lab's chassis names, as uuidgen > $id_file would
        lab.add_outside("10.10.1.1/24")
        master = nodes["mesos-master"]
        lab.connect_outside(master, "enp0s9")
        master.exec(["ip", "addr", "add", "10.10.1.12/24", "dev", "enp0s9"])
        yield ctx
    finally:
        if os.path.isdir(NETNS_DIR):       # task links the plugin made into this lab
            for name in os.listdir(NETNS_DIR):
                path = os.path.join(NETNS_DIR, name)
                if os.path.islink(path) and os.readlink(path).startswith(f"{NETNS_DIR}/{lab.prefix}-"):
                    os.unlink(path)
        lab.down()


# --- checks -----------------------------------------------------------------------------------------
Proc = subprocess.CompletedProcess[str]
Dump = dict[str, Any]       # nb_dump before the line ran
Check = Callable[[Ctx, Line, Proc, Dump], None]


def succeeded(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"


def ovs_get(node: Node, *args: str) -> str:
    return node.vsctl("get", *args).strip('"')


def one_time_setup(ctx: Ctx, line: Line, proc: Proc, before: Dump) -> None:
    succeeded(proc)
    node, v = ctx.nodes[line.node], line.variables
    assert ovs_get(node, "open_vswitch", ".", "external_ids:ovn-remote") == f"tcp:{CENTRAL_IP}:6642"
    assert ovs_get(node, "open_vswitch", ".", "external_ids:ovn-nb") == f"tcp:{CENTRAL_IP}:6641"
    assert ovs_get(node, "open_vswitch", ".", "external_ids:ovn-encap-ip") == v["LOCAL_IP"]
    assert ovs_get(node, "open_vswitch", ".", "external_ids:ovn-encap-type") == "geneve"
    if "SYSTEM_ID" in v:
        assert ovs_get(node, "open_vswitch", ".", "external_ids:system-id") == v["SYSTEM_ID"]
    # ovn-controller follows the new SB remote: its chassis is there over TCP
    ctx.lab.sbctl("--timeout=20", "wait-until", "Chassis", line.node)


def api_server_set(ctx: Ctx, line: Line, proc: Proc, before: Dump) -> None:
    succeeded(proc)
    want = f"{line.variables['K8S_API_SERVER_IP']}:8080" if line.variables else "127.0.0.1:8080"
    assert ovs_get(ctx.nodes[line.node], "open_vswitch", ".", "external_ids:k8s-api-server") == want


def api_server_secure_set(ctx: Ctx, line: Line, proc: Proc, before: Dump) -> None:
    succeeded(proc)
    node = ctx.nodes[line.node]
    assert ovs_get(node, "open_vswitch", ".", "external_ids:k8s-api-server") == "https://192.168.1.2"
    assert ovs_get(node, "open_vswitch", ".", "external_ids:k8s-api-token") == "lab-token"
    ca = ovs_get(node, "open_vswitch", ".", "external_ids:k8s-ca-certificate")
    assert "BEGIN CERTIFICATE" in ca and "MIIBlab" in ca


def nb_unchanged(ctx: Ctx, line: Line, proc: Proc, before: Dump) -> None:
    """The example repeats the values of the $VARIABLES line before it: a re-run changes nothing."""
    succeeded(proc)
    assert proc.stdout.strip() == "Initialization complete."
    assert nb_dump(ctx.lab) == before


def _mgmt_port(ctx: Ctx, node: Node, name: str, subnet_prefix: str) -> None:
    iface = node.vsctl("--bare", "--columns=name", "find", "interface",
                       f"external_ids:iface-id=k8s-{name}")
    assert iface, f"no OVS interface with iface-id k8s-{name}"
    assert f"{subnet_prefix}.2/24" in node.exec(["ip", "-4", "-o", "addr", "show", iface]).stdout
    assert f"via {subnet_prefix}.1" in node.exec(["ip", "route", "show", "192.168.0.0/16"]).stdout
    (sw,) = rows(ctx.lab, LS, "other_config", where=[f"name={name}"])
    assert sw["other_config"]["subnet"] == f"{subnet_prefix}.0/24"
    assert rows(ctx.lab, LSP, "addresses", where=[f"name=k8s-{name}"])


def master_init(ctx: Ctx, line: Line, proc: Proc, before: Dump) -> None:
    succeeded(proc)
    assert proc.stdout.strip() == "Initialization complete."
    (router,) = rows(ctx.lab, LR, "name", "external_ids", where=["external_ids:k8s-cluster-router=yes"])
    assert router["name"] == "kube-master"
    assert rows(ctx.lab, LRP, "networks", where=["name=rtoj-kube-master"])
    _mgmt_port(ctx, ctx.nodes["kube-master"], "kube-master", "192.168.1")


def minion_init(ctx: Ctx, line: Line, proc: Proc, before: Dump) -> None:
    succeeded(proc)
    assert proc.stdout.strip() == "Initialization complete."
    node = ctx.nodes[line.node]
    _mgmt_port(ctx, node, line.node, "192.168.2" if line.node == "kube-minion1" else "192.168.3")
    # the CNI configuration and plugin link, in the directories the host configured
    assert os.listdir(f"{node.dir}/cni/net.d") and os.listdir(f"{node.dir}/cni/bin")


def gateway_init_physical(ctx: Ctx, line: Line, proc: Proc, before: Dump) -> None:
    succeeded(proc)
    node = ctx.nodes["kube-minion2"]
    (gr,) = rows(ctx.lab, LR, "options", "external_ids", where=["name=GR_kube-minion2"])
    assert gr["options"]["chassis"] == "kube-minion2"
    assert gr["external_ids"]["physical_ip"] == "10.33.74.138"
    (rtoe,) = rows(ctx.lab, LRP, "networks", where=["name=rtoe-GR_kube-minion2"])
    assert rtoe["networks"] == "10.33.74.138/24"
    assert any(r["external_ip"] == "10.33.74.138" for r in rows(ctx.lab, NAT, "external_ip"))
    assert ovs_get(node, "interface", "eth1", "external_ids:iface-id") == "eth1_kube-minion2"
    assert "inet " not in node.exec(["ip", "-4", "-o", "addr", "show", "eth1"]).stdout


def nics_to_bridge(ctx: Ctx, line: Line, proc: Proc, before: Dump) -> None:
    succeeded(proc)
    node = ctx.nodes["kube-master"]
    assert node.vsctl("port-to-br", "eth0") == "breth0"
    assert "10.33.74.139/24" in node.exec(["ip", "-4", "-o", "addr", "show", "breth0"]).stdout
    assert "inet " not in node.exec(["ip", "-4", "-o", "addr", "show", "eth0"]).stdout
    assert ctx.lab.ping(node.netns, "10.33.74.253", count=2)   # the host keeps its network


def gateway_init_bridge(ctx: Ctx, line: Line, proc: Proc, before: Dump) -> None:
    succeeded(proc)
    node = ctx.nodes["kube-master"]
    (gr,) = rows(ctx.lab, LR, "options", where=["name=GR_kube-master"])
    assert gr["options"]["chassis"] == "kube-master"
    (rtoe,) = rows(ctx.lab, LRP, "networks", "mac", where=["name=rtoe-GR_kube-master"])
    assert rtoe["networks"] == "10.33.74.139/24"
    assert rtoe["mac"] == ovs_get(node, "interface", "breth0", "mac_in_use")   # one MAC, one IP
    patches = node.vsctl("list-ports", "breth0").split()
    assert any(p.startswith("k8s-patch-breth0") for p in patches), patches
    assert "10.33.74.139/24" in node.exec(["ip", "-4", "-o", "addr", "show", "breth0"]).stdout
    assert ctx.lab.ping(node.netns, "10.33.74.253", count=2)


def _daemon(ctx: Ctx, node: Node, program: str) -> int:
    pidfile = os.path.join(node.env["OVS_RUNDIR"], f"{program}.pid")
    ctx.daemons.append(pidfile)
    pid = read_pid(pidfile)
    assert pid is not None and alive(pid), f"no live {program} behind {pidfile}"
    return pid


def _status_until(ctx: Ctx, node: Node, program: str, wanted: tuple[str, ...]) -> str:
    seen = ""

    def ready() -> bool:
        nonlocal seen
        seen = ctx.appctl(node, program, "status").stdout
        return all(w in seen for w in wanted)

    try:
        wait_for(ready, 30, f"{program} status {wanted}", interval=0.2)
    except Exception as e:  # noqa: BLE001 - the last status says why
        raise AssertionError(f"{e}; last status:\n{seen}") from None
    return seen


def gateway_helper(ctx: Ctx, line: Line, proc: Proc, before: Dump) -> None:
    succeeded(proc)
    node = ctx.nodes["kube-master"]
    _daemon(ctx, node, "ovn-k8s-gateway-helper")
    _status_until(ctx, node, "ovn-k8s-gateway-helper", ("state: ok", "services synced: yes"))
    assert "ct(commit" in node.ofctl("dump-flows", "breth0")


def watcher(ctx: Ctx, line: Line, proc: Proc, before: Dump) -> None:
    succeeded(proc)
    assert proc.stderr == ""                                   # -vconsole:emer
    node = ctx.nodes["kube-master"]
    _daemon(ctx, node, "ovn-k8s-watcher")
    _status_until(ctx, node, "ovn-k8s-watcher", ("synced: yes", "role: leader"))
    assert os.path.exists(os.path.join(node.env["OVS_LOGDIR"], "ovn-k8s-watcher.log"))
    # serving: a pod scheduled on kube-minion1 gets its logical port on that node's switch
    assert ctx.api is not None
    ctx.api.create("pods", {"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": "web", "namespace": "default"},
                        "spec": {"nodeName": "kube-minion1", "containers": [{"name": "c", "image": "x"}]}},
               namespace="default")
    wait_for(lambda: bool(rows(ctx.lab, LSP, "name", where=["name=default_web"])), 30,
             "the watcher to create the pod's logical port")


def system_id(ctx: Ctx, line: Line, proc: Proc, before: Dump) -> None:
    succeeded(proc)
    assert ovs_get(ctx.nodes[line.node], "open_vswitch", ".", "external_ids:system-id") == line.node


def tenant_init(ctx: Ctx, line: Line, proc: Proc, before: Dump) -> None:
    succeeded(proc)
    assert proc.stdout.strip() == "Initialization complete."
    assert rows(ctx.lab, LR, "name", where=["name=coke"])
    assert rows(ctx.lab, LS, "name", where=["name=join_coke"])
    assert rows(ctx.lab, LRP, "name", where=["name=rtoj-coke"])


def mesos_gateway_init(ctx: Ctx, line: Line, proc: Proc, before: Dump) -> None:
    succeeded(proc)
    node = ctx.nodes["mesos-master"]
    (gr,) = rows(ctx.lab, LR, "options", where=["name=GR_coke_mesos-master"])
    assert gr["options"]["chassis"] == "mesos-master"
    (rtoe,) = rows(ctx.lab, LRP, "networks", where=["name=rtoe-GR_coke_mesos-master"])
    assert rtoe["networks"] == "10.10.1.12/24"
    (nat,) = rows(ctx.lab, NAT, "type", "logical_ip", "external_ip")
    assert nat == {"type": "snat", "logical_ip": "192.168.0.0/16", "external_ip": "10.10.1.12"}
    assert ovs_get(node, "interface", "enp0s9", "external_ids:iface-id") == "enp0s9_mesos-master"


def _task(ctx: Ctx, name: str, labels: dict[str, str]) -> tuple[dict[str, Any], str]:
    """The Mesos agent's call to ovn-mesos-plugin for a task (mesos-execute's effect)."""
    agent = ctx.nodes["mesos-agent1"]
    ns = ctx.lab.add_netns(name)
    proc, result = plugin(agent, "ADD", name, ns, network_conf(agent, labels))
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert os.path.islink(f"{NETNS_DIR}/{name}")            # `ip netns ls` on the agent shows it
    return result, ns


def network_init(ctx: Ctx, line: Line, proc: Proc, before: Dump) -> None:
    succeeded(proc)
    (sw,) = rows(ctx.lab, LS, "other_config", where=["name=coke_coke1"])
    assert sw["other_config"]["subnet"] == "192.168.1.0/24"
    # vagrant/tasks/apachecoke's network_infos: labels app and logical_switch=coke1
    result, _ = _task(ctx, "apachecoke", {"app": "apachecoke", "logical_switch": "coke1"})
    assert result["ip4"]["ip"].startswith("192.168.1.") and result["ip4"]["gateway"] == "192.168.1.1"


def lb_added(ctx: Ctx, line: Line, proc: Proc, before: Dump) -> None:
    succeeded(proc)
    (lb,) = rows(ctx.lab, LB, "_uuid", "vips", where=["name=coke"])
    assert lb["vips"] == {"10.10.1.12:32350": "192.168.1.2:80,192.168.1.3:80"}
    ctx.values["lb_uuid"] = lb["_uuid"]


def lb_survives_gateway_init(ctx: Ctx, line: Line, proc: Proc, before: Dump) -> None:
    """`set ... load_balancer=` replaces the column; the walkthrough's gateway-init, run again
    verbatim, adds ours back and keeps the user's."""
    succeeded(proc)

    def gateway_lbs() -> set[str]:
        names = {r["_uuid"]: r["name"] for r in rows(ctx.lab, LB, "_uuid", "name")}
        (gr,) = rows(ctx.lab, LR, "load_balancer", where=["name=GR_coke_mesos-master"])
        value = gr["load_balancer"]
        return {names[u] for u in (value if isinstance(value, list) else [value] if value else [])}

    assert gateway_lbs() == {"coke"}
    (gateway_line,) = [x for x in MESOS_LINES if x.key == "gateway-init"]
    succeeded(ctx.sh(gateway_line))
    assert "coke" in gateway_lbs() and len(gateway_lbs()) > 1


def network_by_hand(ctx: Ctx, line: Line, proc: Proc, before: Dump) -> None:
    """The older README's network, used with its labels: logical_switch and task_id."""
    succeeded(proc)
    result, _ = _task(ctx, "task1234", {"logical_switch": "sprite1", "task_id": "1234"})
    assert result["ip4"]["ip"].startswith("192.168.5.")
    assert rows(ctx.lab, LSP, "name", where=["name=sprite1_1234"])


CHECKS: dict[str, Check] = {f.__name__: f for f in (
    one_time_setup, api_server_set, api_server_secure_set, nb_unchanged, master_init, minion_init,
    gateway_init_physical, nics_to_bridge, gateway_init_bridge, gateway_helper, watcher,
    system_id, tenant_init, mesos_gateway_init, network_init, lb_added, lb_survives_gateway_init,
    network_by_hand)}


def params(lines: list[Line]) -> list[Any]:
    return [pytest.param(line, id=line.key) for line in lines]


def run_line(ctx: Ctx, line: Line) -> None:
    before = nb_dump(ctx.lab)
    proc = ctx.sh(line)
    CHECKS[line.check](ctx, line, proc, before)


# --- the tests ------------------------------------------------------------------------------------
class TestKubernetesLines:
    @pytest.mark.parametrize("line", params(K8S_LINES))
    def test_line(self, k8s: Ctx, line: Line) -> None:
        run_line(k8s, line)


class TestMesosLines:
    @pytest.mark.parametrize("line", params(MESOS_LINES))
    def test_line(self, mesos: Ctx, line: Line) -> None:
        run_line(mesos, line)


def test_the_table_is_complete() -> None:
    """Every line has its source and a check; the texts are the documents' (spot checks)."""
    for line in K8S_LINES + MESOS_LINES:
        assert line.source and line.check in CHECKS, line.key
        for name in line.variables:
            assert f"${name}" in line.text or f"${{{name}}}" in line.text, (line.key, name)
    texts = {line.text for line in K8S_LINES}
    assert {MASTER_INIT, MINION_INIT, GATEWAY_INIT, GATEWAY_INIT_BRIDGE, WATCHER, GATEWAY_HELPER,
            "ovn-k8s-util nics-to-bridge eth0"} <= texts
