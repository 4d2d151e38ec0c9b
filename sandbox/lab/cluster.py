"""The lab: central OVN daemons, simulated nodes, pods and an outside network, in namespaces.

    <p>-ul       underlay: Linux bridge br-ul <UL>.1/24; every node's eth0 and central plug in
    <p>-central  NB + SB ovsdb-server and ovn-northd; <UL>.2 on the underlay (TCP/SSL NB remote)
    <p>-<node>   eth0 in OVS bridge br-phy (encap IP <UL>.(10+i) on br-phy), br-int for OVN,
                 its own ovsdb-server, userspace ovs-vswitchd and ovn-controller (OVS_RUNDIR
                 per node); arp_ignore=1 and IPv6 off (ovn-lab.md pitfalls 2 and 4)
    <p>-<pod>    a pod: eth0 is a veth whose peer sits in the node's br-int
    <p>-out      the outside world: Linux bridge br-out; gateway nodes get an eth1 into it

With `up_central(db_cluster=3)` the NB and the SB are each a RAFT cluster of three ovsdb-servers
in <p>-central (`ovsdb-tool create-cluster` / `join-cluster`; member i has its own file, unix
socket nb<i>.sock / sb<i>.sock and control socket, and speaks RAFT on <UL>.2:6740+i / 6750+i):
`lab.nb` and `lab.sb` are then the comma-separated lists every client takes (docs/ha.md).

Every address lives inside these namespaces; the root namespace only holds unix sockets. All
state is under one directory (pid files, sockets, logs, the list of namespaces), so `down()`
removes exactly what this lab made, even after a crash of the process that made it.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

from sandbox.lab.proc import LabError, alive, netns_exists, read_pid, run, stop_pidfile, wait_for

LOG = logging.getLogger(__name__)
REGISTRY = "/run/ovn-k8s-lab"
NB_SCHEMA = "/usr/share/ovn/ovn-nb.ovsschema"
SB_SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
NB_PORT = 6641
POD_MTU = 1400
RAFT_PORTS = {"nb": 6740, "sb": 6750}      # + member index: each member's RAFT address
DB_NAMES = {"nb": "OVN_Northbound", "sb": "OVN_Southbound"}


@dataclass(frozen=True, slots=True)
class SslFiles:
    """Server-side TLS files for the NB: private key, certificate (with chain), CA."""

    privkey: str
    cert: str
    cacert: str


@dataclass
class Node:
    lab: Lab
    name: str
    index: int
    dir: str
    netns: str
    encap_ip: str

    @property
    def ovs_db(self) -> str:
        return f"unix:{self.dir}/db.sock"

    @property
    def env(self) -> dict[str, str]:
        d = self.dir
        return {"OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d, "OVN_RUNDIR": d, "OVN_LOGDIR": d}

    def exec(self, cmd: list[str], check: bool = True, timeout: float = 60,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run(cmd, netns=self.netns, check=check, timeout=timeout, env={**self.env, **(env or {})})

    def vsctl(self, *args: str) -> str:
        return run(["ovs-vsctl", f"--db={self.ovs_db}", "--timeout=30", *args]).stdout.strip()

    def ofctl(self, *args: str) -> str:
        return self.exec(["ovs-ofctl", *args]).stdout

    def appctl(self, daemon: str, *args: str) -> str:
        return run(["ovs-appctl", "-t", f"{self.dir}/{daemon}.ctl", *args]).stdout


@dataclass
class Pod:
    name: str
    node: Node
    netns: str
    ip: str            # without prefix
    cidr: str          # with prefix
    mac: str
    host_ifname: str
    lsp: str | None


@dataclass
class Lab:
    """One lab. Use as a context manager, or call up_central()/add_node() and then down()."""

    prefix: str = field(default_factory=lambda: "ok8s" + secrets.token_hex(3))
    underlay: str = "172.30.0"   # the /24 of the underlay; only inside the lab's namespaces
    dir: str = ""
    nodes: dict[str, Node] = field(default_factory=dict)
    pods: dict[str, Pod] = field(default_factory=dict)
    nb_remotes: list[str] = field(default_factory=list)
    db_cluster: int = 0          # > 0: NB and SB are RAFT clusters of this many members

    def __post_init__(self) -> None:
        if not self.dir:
            self.dir = f"/tmp/{self.prefix}"
        os.makedirs(f"{self.dir}/pids", exist_ok=True)
        os.makedirs(REGISTRY, exist_ok=True)
        with open(f"{REGISTRY}/{self.prefix}", "w", encoding="utf-8") as f:
            json.dump({"dir": self.dir, "owner": os.getpid()}, f)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- names and paths -------------------------------------------------------------------------
    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    @property
    def central_dir(self) -> str:
        return f"{self.dir}/central"

    @property
    def nb(self) -> str:
        """The NB for clients: its unix socket, or the list of the cluster members' sockets."""
        return self.db_remote("nb")

    @property
    def sb(self) -> str:
        return self.db_remote("sb")

    def db_remote(self, db: str) -> str:
        if not self.db_cluster:
            return f"unix:{self.central_dir}/{db}.sock"
        return ",".join(self.member_remote(db, i) for i in self.members)

    def live_remote(self, db: str) -> str:
        """`db_remote` without the members that are down: ovn-nbctl, ovn-sbctl and
        ovsdb-client (OVN 23.03) fail on the first member that refuses them, where python-ovs,
        ovn-northd and ovn-controller move on to the next."""
        if not self.db_cluster:
            return self.db_remote(db)
        return ",".join(self.member_remote(db, i) for i in self.members
                        if self.member_pid(db, i) is not None)

    @property
    def members(self) -> range:
        return range(1, self.db_cluster + 1)

    def member_remote(self, db: str, i: int) -> str:
        return f"unix:{self.central_dir}/{db}{i}.sock"

    @property
    def central_ip(self) -> str:
        return f"{self.underlay}.2"

    def add_netns(self, name: str) -> str:
        """Create namespace <prefix>-<name> and record it so down() deletes it."""
        ns = self.ns(name)
        with open(f"{self.dir}/netns.list", "a", encoding="utf-8") as f:
            f.write(ns + "\n")
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        return ns

    def _tx_off(self, ns: str, dev: str) -> None:
        # ovn-lab.md pitfall 1: OVS reads veth frames with AF_PACKET and forwards
        # CHECKSUM_PARTIAL frames as they are, so the kernel must fill checksums itself.
        run(["ethtool", "-K", dev, "tx", "off"], netns=ns)

    # -- central -----------------------------------------------------------------------------------
    def _underlay_up(self) -> str:
        ul = self.ns("ul")
        if not netns_exists(ul):
            self.add_netns("ul")
            run(["ip", "-n", ul, "link", "add", "br-ul", "type", "bridge"])
            run(["ip", "-n", ul, "addr", "add", f"{self.underlay}.1/24", "dev", "br-ul"])
            run(["ip", "-n", ul, "link", "set", "br-ul", "up"])
        return ul

    def up_central(self, *, nb_tcp: bool = False, nb_ssl: SslFiles | None = None,
                   db_cluster: int = 0) -> None:
        """NB and SB ovsdb-servers and ovn-northd in <p>-central; NB also on TCP or SSL at
        <central_ip>:6641 when asked. `db_cluster` > 0: NB and SB are RAFT clusters of that
        many members (member i's TCP/SSL NB remote is on port 6641/6642 + 10 * (i - 1))."""
        c = self.central_dir
        os.makedirs(c, exist_ok=True)
        ul = self._underlay_up()
        ns = self.add_netns("central")
        run(["ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", "central",
             "netns", ul])
        run(["ip", "-n", ul, "link", "set", "central", "master", "br-ul", "up"])
        run(["ip", "-n", ns, "addr", "add", f"{self.central_ip}/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        self._tx_off(ns, "eth0")
        self.db_cluster = db_cluster
        self._nb_tcp, self._nb_ssl = nb_tcp, nb_ssl
        if db_cluster:
            self._cluster_up()
        else:
            for db, schema in (("nb", NB_SCHEMA), ("sb", SB_SCHEMA)):
                if not os.path.exists(f"{c}/{db}.db"):
                    run(["ovsdb-tool", "create", f"{c}/{db}.db", schema])
            self.nb_remotes = [self.nb, *self._nb_listeners(None)[1]]
            for db in ("nb", "sb"):
                self._start_server(db, None)
        self.nbctl("--no-wait", "init")
        run(["ovn-northd", f"--ovnnb-db={self.nb}", f"--ovnsb-db={self.sb}",
             f"--pidfile={c}/northd.pid", f"--unixctl={c}/northd.ctl", f"--log-file={c}/northd.log",
             "--detach", "--no-chdir"], netns=ns, env=self._central_env)
        self.nbctl("--wait=sb", "sync")

    @property
    def _central_env(self) -> dict[str, str]:
        c = self.central_dir
        return {"OVS_RUNDIR": c, "OVS_DBDIR": c, "OVS_LOGDIR": c, "OVN_RUNDIR": c, "OVN_LOGDIR": c}

    def _nb_listeners(self, member: int | None) -> tuple[list[str], list[str]]:
        """(ovsdb-server options, client remotes) of the NB's TCP and SSL listeners."""
        offset = 10 * (member - 1) if member else 0
        extra: list[str] = []
        remotes: list[str] = []
        if getattr(self, "_nb_tcp", False):
            extra.append(f"--remote=ptcp:{NB_PORT + offset}:{self.central_ip}")
            remotes.append(f"tcp:{self.central_ip}:{NB_PORT + offset}")
        ssl = getattr(self, "_nb_ssl", None)
        if ssl is not None:
            extra += [f"--remote=pssl:{NB_PORT + 1 + offset}:{self.central_ip}",
                      f"--private-key={ssl.privkey}", f"--certificate={ssl.cert}",
                      f"--ca-cert={ssl.cacert}"]
            remotes.append(f"ssl:{self.central_ip}:{NB_PORT + 1 + offset}")
        return extra, remotes

    def _start_server(self, db: str, member: int | None) -> None:
        c = self.central_dir
        name = f"{db}{member or ''}"
        more = self._nb_listeners(member)[0] if db == "nb" else []
        run(["ovsdb-server", f"{c}/{name}.db", f"--remote=punix:{c}/{name}.sock", *more,
             f"--pidfile={c}/{name}.pid", f"--unixctl={c}/{name}.ctl", f"--log-file={c}/{name}.log",
             "--detach", "--no-chdir"], netns=self.ns("central"), env=self._central_env)

    # -- clustered databases ---------------------------------------------------------------------
    def raft_address(self, db: str, i: int) -> str:
        return f"tcp:{self.central_ip}:{RAFT_PORTS[db] + i}"

    def _cluster_up(self) -> None:
        c = self.central_dir
        for db, schema in (("nb", NB_SCHEMA), ("sb", SB_SCHEMA)):
            run(["ovsdb-tool", "create-cluster", f"{c}/{db}1.db", schema, self.raft_address(db, 1)])
            for i in self.members[1:]:
                run(["ovsdb-tool", "join-cluster", f"{c}/{db}{i}.db", DB_NAMES[db],
                     self.raft_address(db, i), self.raft_address(db, 1)])
            for i in self.members:
                self._start_server(db, i)
        tcp_lists: list[list[str]] = [[], []]
        for i in self.members:
            for k, remote in enumerate(self._nb_listeners(i)[1]):
                tcp_lists[k].append(remote)
        self.nb_remotes = [self.nb, *(",".join(lst) for lst in tcp_lists if lst)]
        for db in ("nb", "sb"):
            for i in self.members:
                self.wait_member(db, i)

    def wait_member(self, db: str, i: int, timeout: float = 30) -> None:
        """Until member i has joined the cluster and is connected to it."""
        run(["ovsdb-client", f"--timeout={int(timeout)}", "wait", self.member_remote(db, i),
             DB_NAMES[db], "connected"], timeout=timeout + 5)

    def member_pid(self, db: str, i: int) -> int | None:
        pid = read_pid(f"{self.central_dir}/{db}{i}.pid")
        return pid if pid is not None and alive(pid) else None

    def cluster_role(self, db: str, i: int) -> str | None:
        """'leader', 'follower' or 'candidate' of a running member (None: not running)."""
        if self.member_pid(db, i) is None:
            return None
        proc = run(["ovs-appctl", "-t", f"{self.central_dir}/{db}{i}.ctl", "cluster/status",
                    DB_NAMES[db]], check=False, timeout=10)
        for line in proc.stdout.splitlines():
            if line.startswith("Role:"):
                return line.split(":", 1)[1].strip()
        return None

    def leader(self, db: str, timeout: float = 30) -> int:
        """The member that is the cluster's leader now (waits for an election)."""
        found: list[int] = []

        def elected() -> bool:
            found[:] = [i for i in self.members if self.cluster_role(db, i) == "leader"]
            return len(found) == 1
        wait_for(elected, timeout, f"a {db.upper()} cluster leader")
        return found[0]

    def kill_member(self, db: str, i: int, sig: int = signal.SIGKILL) -> None:
        """Kill member i (SIGKILL: a crash, no goodbye to clients or peers)."""
        pid = self.member_pid(db, i)
        if pid is None:
            return
        os.kill(pid, sig)
        wait_for(lambda: not alive(pid), 10, f"{db}{i} (pid {pid}) to exit")

    def restart_member(self, db: str, i: int) -> None:
        """Start member i again on its file: it rejoins the cluster and catches up."""
        for leftover in (f"{db}{i}.pid", f"{db}{i}.sock", f"{db}{i}.ctl"):
            try:
                os.unlink(f"{self.central_dir}/{leftover}")
            except FileNotFoundError:
                pass
        self._start_server(db, i)
        self.wait_member(db, i)

    def nbctl(self, *args: str, check: bool = True) -> str:
        return self._ctl("ovn-nbctl", "nb", ["--timeout=30", *args], check=check).stdout.strip()

    def sbctl(self, *args: str) -> str:
        return self._ctl("ovn-sbctl", "sb", ["--timeout=30", *args]).stdout.strip()

    def _ctl(self, prog: str, db: str, args: list[str], *, check: bool = True,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """ovn-nbctl/ovn-sbctl on the live members. During an election (no leader yet) they
        exit with "database connection failed" before sending anything, so that is retried,
        within 30 s."""
        deadline = time.monotonic() + 30
        while True:
            proc = run([prog, f"--db={self.live_remote(db)}", *args], check=False, timeout=timeout)
            if not (self.db_cluster and proc.returncode != 0
                    and "database connection failed" in proc.stderr
                    and time.monotonic() < deadline):
                break
            time.sleep(0.1)
        if check and proc.returncode != 0:
            raise LabError(f"{prog} {' '.join(args)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def wait_hv(self) -> None:
        """Return once every chassis has applied the current NB (ovn-nbctl --wait=hv)."""
        self.nbctl("--wait=hv", "sync")

    # -- nodes -------------------------------------------------------------------------------------
    def add_node(self, name: str) -> Node:
        index = len(self.nodes) + 1
        d = f"{self.dir}/{name}"
        os.makedirs(d, exist_ok=True)
        ns = self.add_netns(name)
        node = Node(lab=self, name=name, index=index, dir=d, netns=ns,
                    encap_ip=f"{self.underlay}.{10 + index}")
        for key, value in (("net.ipv4.conf.all.arp_ignore", "1"),
                           ("net.ipv4.conf.all.arp_announce", "2"),
                           ("net.ipv6.conf.default.disable_ipv6", "1"),
                           ("net.ipv6.conf.all.disable_ipv6", "1")):
            run(["sysctl", "-qw", f"{key}={value}"], netns=ns)
        ul = self._underlay_up()
        run(["ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", name[:15],
             "netns", ul])
        run(["ip", "-n", ul, "link", "set", name[:15], "master", "br-ul", "up"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ovsdb-tool", "create", f"{d}/conf.db", OVS_SCHEMA])
        node.exec(["ovsdb-server", f"{d}/conf.db", f"--remote=punix:{d}/db.sock",
                   f"--pidfile={d}/ovsdb-server.pid", f"--unixctl={d}/ovsdb-server.ctl",
                   f"--log-file={d}/ovsdb-server.log", "--detach", "--no-chdir"])
        node.vsctl("--no-wait", "init")
        node.exec(["ovs-vswitchd", node.ovs_db, "--disable-system",
                   f"--pidfile={d}/ovs-vswitchd.pid", f"--unixctl={d}/ovs-vswitchd.ctl",
                   f"--log-file={d}/ovs-vswitchd.log", "--detach", "--no-chdir"])
        # br-phy carries the encap IP: userspace tunnels route and ARP through an OVS bridge
        # that owns the IP. br-int is made by ovn-k8s itself (minion-init), as in production.
        node.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
                   "--", "add-port", "br-phy", "eth0")
        node.exec(["ip", "addr", "add", f"{node.encap_ip}/24", "dev", "br-phy"])
        node.exec(["ip", "link", "set", "br-phy", "up"])
        node.vsctl("set", "open_vswitch", ".", f"external_ids:system-id={name}",
                   f"external_ids:hostname={name}", f"external_ids:ovn-remote={self.sb}",
                   "external_ids:ovn-encap-type=geneve", f"external_ids:ovn-encap-ip={node.encap_ip}",
                   "external_ids:ovn-bridge-datapath-type=netdev")
        # ovn-controller 23.03 has no --unixctl: its socket is <OVN_RUNDIR>/ovn-controller.<pid>.ctl
        node.exec(["ovn-controller", node.ovs_db, f"--pidfile={d}/ovn-controller.pid",
                   f"--log-file={d}/ovn-controller.log", "--detach", "--no-chdir"])
        self.sbctl("wait-until", "Chassis", name)
        self.nodes[name] = node
        return node

    # -- pods, wired by hand (the CNI plugin does this in production) ------------------------------
    def add_pod(self, node: Node, name: str, *, cidr: str, gateway: str | None, mac: str,
                switch: str | None = None, lsp: str | None = None) -> Pod:
        """A pod namespace on `node`. With `switch`, also create its logical port (named `lsp`
        or `name`) with "mac ip"; without, the port must exist already (a watcher made it)."""
        ip = cidr.split("/")[0]
        lsp = lsp or name
        if switch is not None:
            self.nbctl("--may-exist", "lsp-add", switch, lsp, "--",
                       "lsp-set-addresses", lsp, f"{mac} {ip}")
        ns = self.add_netns(name)
        host_if = ("v" + name)[:15]
        run(["ip", "link", "add", host_if, "netns", node.netns, "type", "veth", "peer", "name",
             "eth0", "netns", ns])
        run(["ip", "-n", ns, "link", "set", "eth0", "address", mac, "mtu", str(POD_MTU), "up"])
        run(["ip", "-n", ns, "addr", "add", cidr, "dev", "eth0"])
        if gateway:
            run(["ip", "-n", ns, "route", "add", "default", "via", gateway])
        self._tx_off(ns, "eth0")
        node.exec(["ip", "link", "set", host_if, "up"])
        node.vsctl("add-port", "br-int", host_if, "--", "set", "interface", host_if,
                   f"external_ids:iface-id={lsp}")
        pod = Pod(name=name, node=node, netns=ns, ip=ip, cidr=cidr, mac=mac, host_ifname=host_if,
                  lsp=lsp)
        self.pods[name] = pod
        return pod

    def wait_port_up(self, lsp: str, timeout: float = 30) -> None:
        self._ctl("ovn-nbctl", "nb", [f"--timeout={int(timeout)}", "wait-until",
                                      "Logical_Switch_Port", lsp, "up=true"], timeout=timeout + 5)

    # -- the outside world -------------------------------------------------------------------------
    def add_outside(self, cidr: str = "192.0.2.1/24") -> str:
        """Namespace <p>-out with a Linux bridge holding `cidr`: the physical network."""
        ns = self.add_netns("out")
        run(["ip", "-n", ns, "link", "add", "br-out", "type", "bridge"])
        run(["ip", "-n", ns, "addr", "add", cidr, "dev", "br-out"])
        run(["ip", "-n", ns, "link", "set", "br-out", "up"])
        self._tx_off(ns, "br-out")
        return ns

    def connect_outside(self, node: Node, ifname: str = "eth1") -> None:
        """Give `node` a NIC `ifname` on the outside network."""
        out = self.ns("out")
        peer = f"{node.name[:9]}-{ifname[:5]}"  # one veth per (node, NIC), <= 15 chars
        run(["ip", "link", "add", ifname, "netns", node.netns, "type", "veth", "peer", "name", peer,
             "netns", out])
        run(["ip", "-n", out, "link", "set", peer, "master", "br-out", "up"])
        self._tx_off(out, peer)
        node.exec(["ip", "link", "set", ifname, "up"])

    # -- servers and probes --------------------------------------------------------------------------
    def start_http(self, netns: str, port: int, name: str, text: str | None = None) -> str:
        """A python http.server in `netns` answering `text`; returns the path of its access log
        (one line per request, starting with the client address)."""
        www = f"{self.dir}/www/{name}"
        os.makedirs(www, exist_ok=True)
        with open(f"{www}/index.html", "w", encoding="utf-8") as f:
            f.write((text or f"hello-from-{name}") + "\n")
        log = f"{self.dir}/pids/http-{name}.log"
        with open(log, "w", encoding="utf-8") as logf:
            proc = subprocess.Popen(["ip", "netns", "exec", netns, "python3", "-u", "-m",
                                     "http.server", str(port), "--bind", "0.0.0.0",
                                     "--directory", www], stdout=subprocess.DEVNULL, stderr=logf,
                                    start_new_session=True)
        with open(f"{self.dir}/pids/http-{name}.pid", "w", encoding="ascii") as f:
            f.write(str(proc.pid))
        wait_for(lambda: run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"], netns=netns,
                             check=False).returncode == 0, 10, f"http server {name}")
        return log

    def ping(self, netns: str, ip: str, count: int = 3) -> bool:
        # The first packet across nodes may be lost while OVS resolves the tunnel neighbour.
        return run(["ping", "-c", str(count), "-i", "0.2", "-w", "10", ip], netns=netns,
                   check=False, timeout=20).returncode == 0

    def http_get(self, netns: str, url: str, timeout: float = 5) -> str | None:
        proc = run(["curl", "-s", "-m", str(timeout), url], netns=netns, check=False,
                   timeout=timeout + 5)
        return proc.stdout.strip() if proc.returncode == 0 else None

    # -- teardown --------------------------------------------------------------------------------------
    def down(self) -> None:
        down_dir(self.dir, self.prefix)


def down_dir(directory: str, prefix: str) -> None:
    """Stop every daemon with a pid file under `directory`, delete the lab's namespaces (which
    takes their veths with them), remove the directory and the registry entry."""
    # A sandbox's real nodes first (containers, shims, mounts, the host's sysctls): a swept
    # crashed sandbox comes here without sandbox.cluster.down.
    from sandbox import realnode

    realnode.teardown(prefix, directory, [])
    for pidfile in sorted(glob.glob(f"{directory}/**/*.pid", recursive=True)):
        stop_pidfile(pidfile)
    try:
        with open(f"{directory}/netns.list", encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        names = []
    for ns in reversed(names):
        if netns_exists(ns):
            # Processes we did not start by pid file (a server a test forgot) die with no netns
            # of their own to run in only if we kill them: find them by their netns.
            _kill_netns_pids(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    shutil.rmtree(directory, ignore_errors=True)
    try:
        os.unlink(f"{REGISTRY}/{prefix}")
    except FileNotFoundError:
        pass


def _kill_netns_pids(ns: str) -> None:
    proc = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False)
    for pid in proc.stdout.split():
        if pid.isdigit():
            from sandbox.lab.proc import stop_pid

            stop_pid(int(pid), timeout=2)


def sweep_stale() -> list[str]:
    """Tear down labs whose creating process is gone (a crashed test run); returns their names."""
    swept = []
    for entry in glob.glob(f"{REGISTRY}/*"):
        try:
            with open(entry, encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        if not alive(int(info.get("owner", 0))):
            down_dir(info["dir"], os.path.basename(entry))
            swept.append(os.path.basename(entry))
    return swept


def wait_pid_gone(pidfile: str, timeout: float = 5) -> None:
    pid = read_pid(pidfile)
    if pid is not None:
        wait_for(lambda: not alive(pid), timeout, f"pid {pid} to exit")


def elapsed(t0: float) -> str:
    return f"{time.monotonic() - t0:.2f}s"


__all__ = ["Lab", "LabError", "Node", "Pod", "SslFiles", "down_dir", "sweep_stale"]
