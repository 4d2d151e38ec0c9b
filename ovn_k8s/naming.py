"""Every OVN Northbound name and every `external_ids` key ovn-k8s writes, in one place.

Names follow the original ovn-kubernetes tools so that `ovn-nbctl show` reads the same to people
who know them; identity never relies on names (Logical_Switch, Logical_Router and Load_Balancer
names are not unique in the NB schema) but on the two ownership keys below.

Node names are lower-cased everywhere (Kubernetes reports lower-case node names; the original
lower-cased them in minion-init but not in gateway-init).
"""

from __future__ import annotations

import hashlib
import re

# --- ownership: on every row we create --------------------------------------------------------
OWNER_KEY = "ovn-k8s/owner"   # who owns the row: "cluster", "node:<n>", "gateway:<n>", "pod:<ns>/<name>"
ID_KEY = "ovn-k8s/id"         # the row's identity, unique within its table

OWNER_CLUSTER = "cluster"


def owner_node(node: str) -> str:
    return f"node:{node}"


def owner_gateway(node: str) -> str:
    return f"gateway:{node}"


# --- markers kept from the original tools (read by people and old scripts) --------------------
CLUSTER_ROUTER_MARK = "k8s-cluster-router"        # = "yes" on the cluster router
CONNECT_TO_JOIN_MARK = "connect_to_join"          # = "yes" on router ports on the join switch
GATEWAY_PHYSICAL_IP_MARK = "gateway-physical-ip"  # = "yes" on rtoe-GR_<node>
PHYSICAL_IP_KEY = "physical_ip"                   # on GR_<node>: its external IP, no mask
GATEWAY_IP_KEY = "gateway_ip"                     # on a node switch: <router ip>/<len>
CLUSTER_SUBNET_KEY = "ovn-k8s/cluster-subnet"     # on the cluster router
JOIN_SUBNET_KEY = "ovn-k8s/join-subnet"           # on the join switch
NODE_KEY = "ovn-k8s/node"                         # node name on node switches and gateway routers

# --- load balancer groups (the table has no external_ids: these names are reserved) ----------
CLUSTER_LB_GROUP = "k8s-cluster-lbs"   # on every node switch: ClusterIP VIPs
GATEWAY_LB_GROUP = "k8s-gateway-lbs"   # on every gateway router: NodePort / external VIPs
LB_GROUPS = (CLUSTER_LB_GROUP, GATEWAY_LB_GROUP)

JOIN_SWITCH = "join"
BR_INT = "br-int"

_NODE_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


def node_name(raw: str) -> str:
    """Canonical node name: lower-case, and a valid Kubernetes node name."""
    name = raw.strip().lower()
    if not _NODE_RE.match(name):
        from ovn_k8s.errors import ConfigError

        raise ConfigError(f"invalid node name {raw!r}: expected a DNS subdomain such as 'node-1'")
    return name


# --- per node ---------------------------------------------------------------------------------
def node_switch(node: str) -> str:
    return node


def rtos(node: str) -> str:
    return f"rtos-{node}"


def stor(node: str) -> str:
    return f"stor-{node}"


def mgmt_port(node: str) -> str:
    """Logical switch port of the node's management port (the OVS iface-id)."""
    return f"k8s-{node}"


def mgmt_ifname(node: str) -> str:
    """Host interface of the management port: Linux limits names to 15 characters."""
    return f"k8s-{node[:11]}"


# --- cluster router side of the join switch -----------------------------------------------------
def rtoj(router: str) -> str:
    return f"rtoj-{router}"


def jtor(router: str) -> str:
    return f"jtor-{router}"


# --- per gateway --------------------------------------------------------------------------------
def gateway_router(node: str) -> str:
    return f"GR_{node}"


def external_switch(node: str) -> str:
    return f"ext_{node}"


def rtoe(router: str) -> str:
    return f"rtoe-{router}"


def etor(router: str) -> str:
    return f"etor-{router}"


def external_port(iface: str, node: str) -> str:
    """The LSP on ext_<node> bound to the NIC (or to the patch port of a shared-NIC bridge)."""
    return f"{iface}_{node}"


def patch_int_to_bridge(bridge: str) -> str:
    return f"k8s-patch-{BR_INT}-{bridge}"


def patch_bridge_to_int(bridge: str) -> str:
    return f"k8s-patch-{bridge}-{BR_INT}"


def nic_bridge(nic: str) -> str:
    """nics-to-bridge eth0 -> breth0."""
    return f"br{nic}"


# --- services (watcher/services.py, ovn_k8s/desired/services.py) -----------------------------------
# One Load_Balancer per (service, protocol, scope); see docs/services.md.
#   cluster         ClusterIP (+ external and ingress IPs) VIPs, in group k8s-cluster-lbs
#   external        externalIPs and status.loadBalancer.ingress IPs, in group k8s-gateway-lbs,
#                   options:neighbor_responder=none (no gateway answers ARP for them)
#   nodeport        NodePort template VIPs "^NODEIP:<nodePort>", in group k8s-gateway-lbs
#                   (only with NodePortMode.TEMPLATE)
#   nodeport:<node> NodePort VIPs "<physical_ip>:<nodePort>", on GR_<node> itself
#                   (NodePortMode.PER_GATEWAY, the default on OVN 23.03)
SERVICE_KEY = "ovn-k8s/service"        # "<namespace>/<name>" on every service load balancer
LB_PROTOCOL_KEY = "ovn-k8s/protocol"   # "tcp" | "udp" | "sctp"
LB_SCOPE_KEY = "ovn-k8s/lb-scope"      # "cluster" | "external" | "nodeport" | "nodeport:<node>"
OWNER_SERVICE_PREFIX = "service:"
OWNER_SERVICE_TEMPLATES = "service-templates"   # owner of our Chassis_Template_Var rows
NODEIP_TEMPLATE_VAR = "NODEIP"                  # Chassis_Template_Var variable: the gateway's IP

SCOPE_CLUSTER = "cluster"
SCOPE_EXTERNAL = "external"
SCOPE_NODEPORT = "nodeport"


def owner_service(key: str) -> str:
    """Owner of a service's rows; key is "<namespace>/<name>"."""
    return f"{OWNER_SERVICE_PREFIX}{key}"


def service_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def scope_nodeport_gateway(node: str) -> str:
    return f"{SCOPE_NODEPORT}:{node}"


def service_lb_id(key: str, protocol: str, scope: str) -> str:
    """Identity of a service load balancer: service:<ns>/<name>:<proto>:<scope>."""
    return f"{owner_service(key)}:{protocol}:{scope}"


def service_lb_name(key: str, protocol: str, scope: str) -> str:
    """Readable name (not unique by schema, never used for identity): Service_<ns>/<name>_TCP_cluster."""
    return f"Service_{key}_{protocol.upper()}_{scope.replace(':', '_')}"


def template_var_id(chassis: str) -> str:
    return f"template-vars:{chassis}"


# --- Mesos: tenants, their networks, gateways and task ports (ovn-mesos-init, ovn-mesos-plugin) --
# Names follow the original ovn-mesos where that name is unique; the original's bare network
# switch name `<network>` (and its `rtos-<tenant>-<network>`, `stor-<network>-<tenant>`)
# collided across tenants, so every per-network name here is built on `<tenant>_<network>`.
# Tenant names have no '_', so the tenant is always the text before the first '_'.
TENANT_KEY = "ovn-k8s/tenant"                     # tenant name on every tenant row
NETWORK_KEY = "ovn-k8s/network"                   # network name on a tenant network switch
CONTAINER_KEY = "ovn-k8s/container"               # Mesos container ID on a task port
IFNAME_KEY = "ovn-k8s/ifname"                     # CNI_IFNAME on a task port
SYSTEM_ID_KEY = "ovn-k8s/system-id"               # chassis of a tenant gateway / external switch

_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")
_NETWORK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def tenant_name(raw: str) -> str:
    """A tenant name as given (case kept, as the original): letters, digits, '.', '-'."""
    name = (raw or "").strip()
    if not _TENANT_RE.match(name):
        from ovn_k8s.errors import ConfigError

        raise ConfigError(f"invalid tenant name {raw!r}: use up to 63 letters, digits, '.' or '-' "
                          "(no '_', '/' or spaces), starting with a letter or digit")
    return name


def network_name(raw: str) -> str:
    """A network name as given: letters, digits, '.', '-', '_'; unique within its tenant."""
    name = (raw or "").strip()
    if not _NETWORK_RE.match(name):
        from ovn_k8s.errors import ConfigError

        raise ConfigError(f"invalid network name {raw!r}: use up to 63 letters, digits, '.', '-' "
                          "or '_', starting with a letter or digit")
    return name


def owner_tenant(tenant: str) -> str:
    return f"tenant:{tenant}"


def owner_network(tenant: str, network: str) -> str:
    return f"network:{tenant}/{network}"


def owner_tenant_gateway(tenant: str, system_id: str) -> str:
    return f"tenant-gateway:{tenant}/{system_id}"


def owner_tenant_external(system_id: str, port: str) -> str:
    """The external switch of one NIC (or shared bridge) on one chassis, shared by every
    tenant gateway on it (one NIC can be bound to only one logical port)."""
    return f"tenant-external:{system_id}/{port}"


def owner_container(container_id: str, ifname: str) -> str:
    """One CNI attachment (a container may join several networks, one per CNI_IFNAME)."""
    return f"container:{container_id}/{ifname}"


def tenant_router(tenant: str) -> str:
    return tenant


def tenant_join_switch(tenant: str) -> str:
    return f"join_{tenant}"


def tenant_network_switch(tenant: str, network: str) -> str:
    return f"{tenant}_{network}"


def tenant_gateway_router(tenant: str, system_id: str) -> str:
    return f"GR_{tenant}_{system_id}"


def tenant_external_switch(port: str, system_id: str) -> str:
    return f"ext_{port}_{system_id}"


def tenant_lb(tenant: str, protocol: str) -> str:
    return f"lb_{tenant}_{protocol}"


def task_port(ifname: str, container_id: str) -> str:
    """A task's logical switch port and OVS iface-id, as the original: `<ifname>_<container>`."""
    return f"{ifname}_{container_id}"


def mesos_patch_int_to_bridge(bridge: str) -> str:
    return f"mesos-patch-{BR_INT}-{bridge}"


def mesos_patch_bridge_to_int(bridge: str) -> str:
    return f"mesos-patch-{bridge}-{BR_INT}"


# --- pods (owned by ovn-k8s-watcher) ------------------------------------------------------------
POD_ANNOTATION = "ovn"              # the pod annotation the CNI plugin reads (original JSON keys)
POD_MARK = "pod"                    # = "true" on pod ports (the original's marker, kept)
POD_NAMESPACE_KEY = "namespace"     # the pod's namespace on its port (the original's marker, kept)
OWNER_POD_PREFIX = "pod:"


def owner_pod(namespace: str, name: str) -> str:
    return f"{OWNER_POD_PREFIX}{namespace}/{name}"


def pod_port(namespace: str, name: str) -> str:
    """The pod's logical switch port (and OVS iface-id): `<namespace>_<pod>`, as the original.

    Unique: namespace names are DNS labels and pod names DNS subdomains, neither has '_'."""
    return f"{namespace}_{name}"


def pod_port_external_ids(namespace: str, name: str) -> dict[str, str]:
    """Every external_ids key of a pod port: ownership plus the original markers."""
    return {OWNER_KEY: owner_pod(namespace, name), ID_KEY: pod_port(namespace, name),
            POD_NAMESPACE_KEY: namespace, POD_MARK: "true"}


# --- nodes (subnets handed out by ovn-k8s-watcher --allocate-node-subnets) ----------------------
NODE_SUBNET_ANNOTATION = "ovn-k8s/node-subnet"   # on a Node: its subnet, e.g. "10.244.3.0/24"
# On a node switch the watcher allocated or adopted: the Node's uid. A switch without it (made
# by minion-init or master-init for a Node the watcher never saw) is never deleted by a sync.
NODE_UID_KEY = "ovn-k8s/node-uid"


# --- NetworkPolicy (watcher/policies.py, ovn_k8s/desired/policies.py) ---------------------------
# Every policy row's owner is "netpol:<what>", which is also its key in the watcher's engine:
#   netpol:policy/<ns>/<name>  a policy's port group, its ACLs and its named-port address sets
#   netpol:peer/<digest>       the address set of one peer selector (shared by policies)
#   netpol:node/<node>         the ACL on a node switch that lets its management port in
# Port group and address set names appear in ACL matches (`@name`, `$name`): they must be
# identifiers (letters, digits, underscores), so they carry a digest, never a k8s name.
OWNER_POLICY_PREFIX = "netpol:"
POLICY_KEY = "ovn-k8s/network-policy"       # "<ns>/<name>" on a policy's rows
POLICY_PEER_KEY = "ovn-k8s/policy-peer"     # the peer selector an address set holds, as text


def owner_policy(namespace: str, name: str) -> str:
    return f"{OWNER_POLICY_PREFIX}policy/{namespace}/{name}"


def owner_policy_peer(digest: str) -> str:
    return f"{OWNER_POLICY_PREFIX}peer/{digest}"


def owner_policy_node(node: str) -> str:
    return f"{OWNER_POLICY_PREFIX}node/{node}"


def policy_digest(text: str) -> str:
    """A short, stable digest for identifiers made from Kubernetes names or selectors."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def policy_port_group(namespace: str, name: str) -> str:
    return f"ovnk8s_np_{policy_digest(f'{namespace}/{name}')}"


def policy_peer_set(digest: str) -> str:
    return f"ovnk8s_peer_{digest}"


def policy_named_port_set(namespace: str, name: str, which: str) -> str:
    """A policy's address set of the pods whose named port resolves to one number."""
    return f"ovnk8s_npp_{policy_digest(f'{namespace}/{name}/{which}')}"
