"""The vagrant walkthroughs' provisioning scripts, run for real in the lab (issue 12 item 9).

vagrant/{kubernetes,mesos}/Vagrantfile run the shell scripts of vagrant/provisioning and
vagrant/<walkthrough>/provisioning on each VM with the VM's parameters. Here the same scripts run
inside the lab's namespaces (sandbox.lab.proc.run with netns=...), one lab node per VM and the
lab's central namespace as the NB/SB host, with SKIP_PACKAGES=1 (the packages are installed and
the lab runs each node's ovsdb-server, ovs-vswitchd and ovn-controller) and the stand-ins of
tests/e2e/test_original_lines.py (Ctx.env: the node's OVS socket, no config file, the lab's CNI
directories, our executables first in PATH). The central databases are started as ovn-ctl
starts them, listening where NB_Global/SB_Global `connections` say, so that the central
script's `set-connection` is what opens TCP 6641/6642. Addresses are the lab's: the underlay
(172.30.0.0/24) instead of the VMs' private network, the VMs' public network inside <p>-out.

The resulting cluster is checked with traffic: Kubernetes pods (made by the watcher the master
script started, wired by the CNI plugin minion-init installed) ping across nodes and reach the
outside through the gateway's SNAT address, the gateway host keeping its own network (the
helper); Mesos tasks (the task files' network_infos handed to ovn-mesos-plugin as the agent
does) of coke reach each other across agents, pepsi's answer only pepsi, and each tenant leaves
through its own gateway.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.kubeapi import KubeApiServer
from sandbox.lab.cluster import Lab, Node
from sandbox.lab.forward import Forwarder
from sandbox.lab.proc import alive, read_pid, run, wait_for
from tests.e2e.test_mesos import NETNS_DIR, client_addresses, network_conf, plugin
from tests.e2e.test_original_lines import BIN, CENTRAL_IP, NEEDS, Ctx
from tests.helpers import nb_dump

pytestmark = pytest.mark.e2e

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VAGRANT = os.path.join(REPO, "vagrant")
COMMON = os.path.join(VAGRANT, "provisioning", "setup-common.sh")
CENTRAL = os.path.join(VAGRANT, "provisioning", "setup-central.sh")
CLUSTER_SUBNET = "192.168.0.0/16"


def _lab(names: tuple[str, ...]) -> tuple[Lab, dict[str, Node]]:
    """The central databases without TCP listeners yet (setup-central.sh opens them) and one
    node per VM."""
    missing = [b for b in NEEDS if shutil.which(b) is None]
    if os.geteuid() != 0 or missing:
        pytest.fail(f"this test needs root and OVS/OVN installed (missing: {missing})")
    lab = Lab()
    try:
        lab.up_central()
        assert lab.central_ip == CENTRAL_IP
        # as ovn-ctl starts them: the databases also listen where their connections column says
        for db, remote in (("nb", "db:OVN_Northbound,NB_Global,connections"),
                           ("sb", "db:OVN_Southbound,SB_Global,connections")):
            run(["ovs-appctl", "-t", f"{lab.central_dir}/{db}.ctl", "ovsdb-server/add-remote", remote])
        nodes = {name: lab.add_node(name) for name in names}
    except BaseException:
        lab.down()
        raise
    return lab, nodes


def provision(ctx: Ctx, where: Node | None, script: str, **params: str) -> str:
    """`sh <script>` in a node's namespace (None: the central host's) with the Vagrantfile's
    parameters, SKIP_PACKAGES=1 and the lab's stand-ins; returns its stdout."""
    if where is None:
        env = {"PATH": f"{BIN}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
               "OVN_NB_DB": ctx.lab.nb, "OVN_SB_DB": ctx.lab.sb}
        netns = ctx.lab.ns("central")
    else:
        env = ctx.env(where, "", {})
        netns = where.netns
    env.update(params, SKIP_PACKAGES="1")
    proc = run(["sh", script], netns=netns, env=env, check=False, timeout=120)
    assert proc.returncode == 0, f"{script} exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout


def provision_common(ctx: Ctx, node: Node, **params: str) -> None:
    out = provision(ctx, node, COMMON, NODE_NAME=node.name, LOCAL_IP=node.encap_ip,
                    CENTRAL_IP=CENTRAL_IP, **params)
    assert f"{node.name}: OVS configured" in out
    assert node.vsctl("get", "open_vswitch", ".", "external_ids:ovn-remote").strip('"') == \
        f"tcp:{CENTRAL_IP}:6642"


def configured(lab: Lab) -> dict[str, Any]:
    """nb_dump without what ovsdb-server writes itself: the connections' status."""
    dump = nb_dump(lab)
    dump["Connection"] = [{k: v for k, v in row.items() if k not in ("status", "is_connected")}
                          for row in dump.get("Connection", [])]
    return dump


def drop_task_links(lab: Lab) -> None:
    """/var/run/netns/<container-id> links ovn-mesos-plugin made into this lab."""
    if os.path.isdir(NETNS_DIR):
        for name in os.listdir(NETNS_DIR):
            path = os.path.join(NETNS_DIR, name)
            if os.path.islink(path) and os.readlink(path).startswith(f"{NETNS_DIR}/{lab.prefix}-"):
                os.unlink(path)


# --- Kubernetes: master, two minions, a gateway ---------------------------------------------------
K8S_NODES = {"k8smaster": "192.168.1.0/24", "k8sminion1": "192.168.2.0/24",
             "k8sminion2": "192.168.3.0/24", "k8sgateway": "192.168.4.0/24"}
SERVICE_RANGE = "172.16.200.0/24"
PUBLIC_GW, GATEWAY_IP = "10.10.0.1", "10.10.0.14"


@pytest.fixture(scope="module")
def kubernetes() -> Iterator[Ctx]:
    lab, nodes = _lab(tuple(K8S_NODES))
    ctx = Ctx(lab, nodes)
    try:
        lab.add_outside(f"{PUBLIC_GW}/24")      # the VMs' public network
        gateway = nodes["k8sgateway"]
        lab.connect_outside(gateway, "eth1")
        gateway.exec(["ip", "addr", "add", f"{GATEWAY_IP}/24", "dev", "eth1"])
        # the lab's userspace datapath also hands eth1's frames to the node's kernel, which
        # would reset the gateway router's connections: rp_filter drops those copies
        # (tests/e2e/test_gateway_helper.py, module docstring)
        gateway.exec(["sysctl", "-qw", "net.ipv4.conf.eth1.rp_filter=1"])
        with KubeApiServer() as api, Forwarder(lab.ns("central"), lab.central_ip, api.port) as fwd:
            ctx.api = api
            ctx.values["api_server"] = fwd.url.removeprefix("http://")
            yield ctx
    finally:
        lab.down()      # the daemons by their pid files (under the nodes' directories), the namespaces


def cni_add(ctx: Ctx, node: Node, name: str) -> dict[str, Any]:
    """The kubelet's ADD for pod `name` on `node`, through the conflist and plugin link that
    minion-init installed (the API server from the node's external_ids, as provisioned)."""
    conf_dir, bin_dir = f"{node.dir}/cni/net.d", f"{node.dir}/cni/bin"
    with open(f"{conf_dir}/10-ovn-k8s.conflist", encoding="utf-8") as f:
        conflist = json.load(f)
    (entry,) = conflist["plugins"]
    conf = {**entry, "cniVersion": conflist["cniVersion"], "name": conflist["name"],
            "log_file": f"{ctx.lab.dir}/cni-{node.name}.log"}
    netns = ctx.lab.add_netns(name)
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": f"sandbox-{name}", "CNI_NETNS": f"/run/netns/{netns}",
           "CNI_IFNAME": "eth0", "CNI_PATH": bin_dir,
           "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={name}"}
    proc = run([f"{bin_dir}/{entry['type']}"], netns=node.netns, env=env, input=json.dumps(conf),
               check=False, timeout=120)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    result = json.loads(proc.stdout)
    result["netns"] = netns
    return result


def provision_kubernetes(ctx: Ctx) -> None:
    """What vagrant/kubernetes/Vagrantfile runs on each VM, in its order (but the Kubernetes
    control plane and kubelets: setup-kubernetes.sh is for VMs only)."""
    nodes, api_server = ctx.nodes, ctx.values["api_server"]
    out = provision(ctx, None, CENTRAL, CENTRAL_IP=CENTRAL_IP)
    assert f"NB tcp:{CENTRAL_IP}:6641" in out
    for node in nodes.values():
        provision_common(ctx, node, API_SERVER=api_server)
    kube = os.path.join(VAGRANT, "kubernetes", "provisioning")
    params = {"CLUSTER_SUBNET": CLUSTER_SUBNET, "SERVICE_RANGE": SERVICE_RANGE}
    out = provision(ctx, nodes["k8smaster"], f"{kube}/setup-master.sh", NODE_NAME="k8smaster",
                    NODE_SUBNET=K8S_NODES["k8smaster"], **params)
    assert "Initialization complete." in out
    for name in ("k8sminion1", "k8sminion2", "k8sgateway"):
        provision(ctx, nodes[name], f"{kube}/setup-minion.sh", NODE_NAME=name,
                  NODE_SUBNET=K8S_NODES[name], **params)
    # PHYSICAL_INTERFACE left out, as the Vagrantfile does: the NIC holding the address (eth1,
    # then breth1 on a re-run)
    provision(ctx, nodes["k8sgateway"], f"{kube}/setup-gateway.sh", NODE_NAME="k8sgateway",
              CLUSTER_SUBNET=CLUSTER_SUBNET, PHYSICAL_IP=f"{GATEWAY_IP}/24", DEFAULT_GW=PUBLIC_GW)


def test_kubernetes_vagrant_provisioning(kubernetes: Ctx) -> None:
    ctx, lab, nodes = kubernetes, kubernetes.lab, kubernetes.nodes
    provision_kubernetes(ctx)
    # the central script opened the databases' TCP ports, which every node now uses
    assert lab.sbctl("get-connection").endswith(f" ptcp:6642:{CENTRAL_IP}")
    assert lab.nbctl("get-connection") == f"ptcp:6641:{CENTRAL_IP}"
    assert nodes["k8sgateway"].vsctl("port-to-br", "eth1") == "breth1"
    master, gateway = nodes["k8smaster"], nodes["k8sgateway"]
    for node, program, wanted in ((master, "ovn-k8s-watcher", ("synced: yes", "role: leader")),
                                  (gateway, "ovn-k8s-gateway-helper", ("state: ok",))):
        wait_for(lambda: all(w in ctx.appctl(node, program, "status").stdout for w in wanted),  # noqa: B023
                 30, f"{program} status {wanted}", interval=0.2)

    # pods: the watcher gives them their ports, the CNI plugin wires them
    assert ctx.api is not None
    pods: dict[str, dict[str, Any]] = {}
    for pod, node in (("web1", "k8sminion1"), ("web2", "k8sminion2"), ("web3", "k8sgateway")):
        ctx.api.create("pods", {"apiVersion": "v1", "kind": "Pod",
                                "metadata": {"name": pod, "namespace": "default"},
                                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}},
                       namespace="default")
        pods[pod] = cni_add(ctx, nodes[node], pod)
    ip = {pod: r["ips"][0]["address"].split("/")[0] for pod, r in pods.items()}
    assert ip["web1"].startswith("192.168.2.") and ip["web2"].startswith("192.168.3.")
    lab.wait_hv()
    assert lab.ping(pods["web1"]["netns"], ip["web2"])
    assert lab.ping(pods["web2"]["netns"], ip["web3"])
    # the outside through the gateway router's SNAT address; the gateway host keeps its network
    log = lab.start_http(lab.ns("out"), 8080, "outside")
    for pod in pods:
        assert lab.http_get(pods[pod]["netns"], f"http://{PUBLIC_GW}:8080/") == "hello-from-outside", pod
    assert set(client_addresses(log)) == {GATEWAY_IP}
    assert lab.ping(gateway.netns, PUBLIC_GW)
    assert lab.http_get(gateway.netns, f"http://{PUBLIC_GW}:8080/") == "hello-from-outside"

    # `vagrant provision` again: every script re-runs, nothing changes, the daemons stay
    before = configured(lab)
    pids = {p: read_pid(os.path.join(n.env["OVS_RUNDIR"], f"{p}.pid"))
            for n, p in ((master, "ovn-k8s-watcher"), (gateway, "ovn-k8s-gateway-helper"))}
    provision_kubernetes(ctx)
    assert configured(lab) == before
    assert pids == {p: read_pid(os.path.join(n.env["OVS_RUNDIR"], f"{p}.pid"))
                    for n, p in ((master, "ovn-k8s-watcher"), (gateway, "ovn-k8s-gateway-helper"))}
    assert all(pid is not None and alive(pid) for pid in pids.values())
    assert lab.ping(pods["web1"]["netns"], ip["web2"])
    assert lab.http_get(pods["web2"]["netns"], f"http://{PUBLIC_GW}:8080/") == "hello-from-outside"


# --- Mesos: mesos-master, mesos-agent1, mesos-agent2 ----------------------------------------------
MESOS_NODES = ("mesos-master", "mesos-agent1", "mesos-agent2")
TENANTS = {  # the walkthrough's: tenant, its gateway host, NIC and address, its network
    "coke": {"host": "mesos-master", "PHYSICAL_IP": "10.10.1.12/24", "NETWORK": "coke1",
             "PHYSICAL_INTERFACE": "enp0s9"},
    # the NIC left out: the one holding the address (enp0s9 too)
    "pepsi": {"host": "mesos-agent1", "PHYSICAL_IP": "10.10.1.14/24", "NETWORK": "pepsi1"},
}
TASKS = {"apachecoke": "mesos-agent1", "nginxcoke": "mesos-agent2",     # task file -> agent
         "apachepepsi": "mesos-agent1", "nginxpepsi": "mesos-agent2"}


@pytest.fixture(scope="module")
def mesos() -> Iterator[Ctx]:
    lab, nodes = _lab(MESOS_NODES)
    ctx = Ctx(lab, nodes)
    try:
        lab.add_outside("10.10.1.1/24")
        for tenant in TENANTS.values():
            node = nodes[tenant["host"]]
            lab.connect_outside(node, "enp0s9")
            node.exec(["ip", "addr", "add", tenant["PHYSICAL_IP"], "dev", "enp0s9"])
        yield ctx
    finally:
        drop_task_links(lab)
        lab.down()


def task_labels(name: str) -> dict[str, str]:
    with open(os.path.join(VAGRANT, "mesos", "tasks", name), encoding="utf-8") as f:
        task = json.load(f)
    (network,) = task["container"]["network_infos"]
    assert network["name"] == "ovn"
    return {label["key"]: label["value"] for label in network["labels"]["labels"]}


def provision_mesos(ctx: Ctx) -> None:
    """What vagrant/mesos/Vagrantfile runs on each VM (but setup-mesos.sh, for VMs only)."""
    nodes = ctx.nodes
    provision(ctx, None, CENTRAL, CENTRAL_IP=CENTRAL_IP)
    mesos_dir = os.path.join(VAGRANT, "mesos", "provisioning")
    for node in nodes.values():
        provision_common(ctx, node)
        provision(ctx, node, f"{mesos_dir}/setup-agent.sh",
                  MESOS_CNI_PLUGINS_DIR=f"{node.dir}/mesos/cni/plugins",
                  MESOS_CNI_CONFIG_DIR=f"{node.dir}/mesos/cni/config")
    for tenant, t in TENANTS.items():
        params = {k: v for k, v in t.items() if k != "host"}
        out = provision(ctx, nodes[t["host"]], f"{mesos_dir}/setup-tenant.sh", TENANT=tenant,
                        SUBNET="192.168.1.0/24", CLUSTER_SUBNET=CLUSTER_SUBNET, DEFAULT_GW="10.10.1.1",
                        **params)
        assert out.count("Initialization complete.") == 3, out
        assert nodes[t["host"]].vsctl("get", "interface", "enp0s9", "external_ids:iface-id").strip('"') == \
            f"enp0s9_{t['host']}"


def test_mesos_vagrant_provisioning(mesos: Ctx) -> None:
    ctx, lab, nodes = mesos, mesos.lab, mesos.nodes
    provision_mesos(ctx)
    # `vagrant provision` again (pepsi's NIC, its address now in OVN, found in br-int)
    before = configured(lab)
    provision_mesos(ctx)
    assert configured(lab) == before

    # the tasks: each task file's network_infos, handed to the installed plugin as the agent does
    ns: dict[str, str] = {}
    ip: dict[str, str] = {}
    for name, agent_name in TASKS.items():
        agent = nodes[agent_name]
        config_dir, plugins_dir = f"{agent.dir}/mesos/cni/config", f"{agent.dir}/mesos/cni/plugins"
        with open(f"{config_dir}/10-ovn.conf", encoding="utf-8") as f:
            installed = json.load(f)
        assert os.path.realpath(f"{plugins_dir}/{installed['type']}") == \
            os.path.realpath(os.path.join(BIN, "ovn-mesos-plugin"))
        conf = {**network_conf(agent, task_labels(name)), **installed}
        ns[name] = lab.add_netns(name)
        proc, result = plugin(agent, "ADD", name, ns[name], conf)
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        ip[name] = result["ip4"]["ip"].split("/")[0]
        lab.start_http(ns[name], 80, name)
    # the tenants reuse one subnet: the same addresses on both sides
    assert ip["apachecoke"] == ip["apachepepsi"] and ip["nginxcoke"] == ip["nginxpepsi"]
    lab.wait_hv()
    # coke reaches coke across agents; pepsi's same addresses answer only pepsi
    assert lab.http_get(ns["apachecoke"], f"http://{ip['nginxcoke']}/") == "hello-from-nginxcoke"
    assert lab.http_get(ns["nginxcoke"], f"http://{ip['apachecoke']}/") == "hello-from-apachecoke"
    assert lab.http_get(ns["apachepepsi"], f"http://{ip['nginxpepsi']}/") == "hello-from-nginxpepsi"
    assert lab.http_get(ns["nginxpepsi"], f"http://{ip['apachepepsi']}/") == "hello-from-apachepepsi"
    # each tenant leaves through its own gateway router's address
    out = lab.ns("out")
    logs = {"coke": lab.start_http(out, 8080, "outside-coke"), "pepsi": lab.start_http(out, 8081, "outside-pepsi")}
    for name in TASKS:
        tenant = "coke" if name.endswith("coke") else "pepsi"
        port = 8080 if tenant == "coke" else 8081
        assert lab.http_get(ns[name], f"http://10.10.1.1:{port}/") == f"hello-from-outside-{tenant}", name
    for tenant, log in logs.items():
        assert set(client_addresses(log)) == {TENANTS[tenant]["PHYSICAL_IP"].split("/")[0]}
    # as the walkthrough shows on an agent: `ip netns ls` lists its tasks
    assert {"apachecoke", "apachepepsi"} <= set(nodes["mesos-agent1"].exec(["ip", "netns", "ls"]).stdout.split())

    # DEL, as the agent does when the tasks end: the links and ports go
    for name, agent_name in TASKS.items():
        agent = nodes[agent_name]
        proc, _ = plugin(agent, "DEL", name, ns[name], network_conf(agent, task_labels(name)))
        assert proc.returncode == 0, proc.stderr
        assert not os.path.lexists(f"{NETNS_DIR}/{name}")
