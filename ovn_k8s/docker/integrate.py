"""ovn-integrate's steps: the local Open_vSwitch settings ovn-controller reads, each idempotent
(only what differs is written; a re-run writes nothing), through `ovn_k8s.local_ovsdb`.

    create-integration-bridge   br-int: fail-mode secure, disable-in-band, bridge-id br-int
                                (datapath_type from external_ids:ovn-bridge-datapath-type)
    set-ipam ADDR [SB]          where the OVN central databases are. The original's IPAM was a
                                Neutron server whose host also ran the OVN databases; today the NB
                                is the IPAM: a bare IP sets ovn-nb=tcp:IP:6641 and
                                ovn-remote=tcp:IP:6642 (and ipam=IP, the original key); OVSDB
                                addresses set ovn-nb=ADDR and ovn-remote=SB
    set-tep IP                  external_ids:ovn-encap-ip
    set-encap-type T[,T]        external_ids:ovn-encap-type; a type ovs-vswitchd lacks (stt, on
                                every datapath but the out-of-tree kernel module's) is refused
    nics-to-bridge NIC...       the same step as ovn-k8s-util's (ovn_k8s.nic_bridge)
"""

from __future__ import annotations

import ipaddress
import logging
import os

from ovn_k8s import naming
from ovn_k8s.errors import ConfigError
from ovn_k8s.local_ovsdb import LocalOvsdb
from ovn_k8s.ovsdb_remote import parse_remote

LOG = logging.getLogger(__name__)
NB_PORT = 6641
SB_PORT = 6642
ENCAP_TYPES = ("geneve", "vxlan", "stt")
OOT_MODULE_MARK = "/sys/module/openvswitch/version"   # only the out-of-tree module has it
STT_MODULE = "/sys/module/vport_stt"


def create_integration_bridge(ovs: LocalOvsdb) -> bool:
    ovs.ensure_bridge(naming.BR_INT, fail_mode="secure", other_config={"disable-in-band": "true"},
                      external_ids={"bridge-id": naming.BR_INT})
    return ovs.commit()


def _ip(text: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not an IP address") from None


def ipam_settings(central: str, sb: str | None = None) -> dict[str, str]:
    if ":" not in central or _is_ip(central):
        ip = _ip(central, "set-ipam")
        if sb is not None:
            raise ConfigError("set-ipam: with an IP address the SB is tcp:IP:6642; give "
                              "OVSDB addresses for both to choose others")
        host = f"[{ip}]" if ":" in ip else ip
        return {"ipam": ip, "ovn-nb": f"tcp:{host}:{NB_PORT}", "ovn-remote": f"tcp:{host}:{SB_PORT}"}
    parse_remote(central, "set-ipam NB")
    if sb is None:
        raise ConfigError("set-ipam: with an NB address (e.g. tcp:10.0.0.1:6641) give the SB "
                          "address too (e.g. tcp:10.0.0.1:6642)")
    parse_remote(sb, "set-ipam SB")
    return {"ovn-nb": central, "ovn-remote": sb}


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def set_ipam(ovs: LocalOvsdb, central: str, sb: str | None = None) -> bool:
    ovs.ensure_external_ids(ipam_settings(central, sb))
    return ovs.commit()


def set_tep(ovs: LocalOvsdb, ip: str) -> bool:
    ovs.ensure_external_ids({"ovn-encap-ip": _ip(ip, "set-tep")})
    return ovs.commit()


def stt_missing(ovs: LocalOvsdb) -> str | None:
    """Why STT cannot work on this host, or None. ovs-vswitchd lists `stt` among its
    iface_types either way; only the out-of-tree kernel module implements it (the upstream
    kernel module and the userspace datapath do not)."""
    datapath = ovs.datapath_type() or getattr(ovs.bridge(naming.BR_INT), "datapath_type", "") or "system"
    if datapath == "netdev":
        return "the userspace (netdev) datapath has no STT"
    if os.path.exists(OOT_MODULE_MARK) or os.path.isdir(STT_MODULE):
        return None
    return "the kernel's openvswitch module has no STT (it needs the out-of-tree Open vSwitch module)"


def set_encap_type(ovs: LocalOvsdb, types: str) -> bool:
    wanted = [t.strip() for t in types.split(",") if t.strip()]
    if not wanted:
        raise ConfigError("set-encap-type: give geneve, vxlan or stt")
    for t in wanted:
        if t not in ENCAP_TYPES:
            raise ConfigError(f"set-encap-type: {t!r} is not one of {', '.join(ENCAP_TYPES)}")
    supported = ovs.iface_types()
    for t in wanted:
        if t == "stt" and "stt" in supported:
            why = stt_missing(ovs)
            if why:
                raise ConfigError(f"set-encap-type: stt tunnels are not supported here: {why}; use geneve")
        elif t not in supported:
            raise ConfigError(f"set-encap-type: {t} tunnels are not supported by this Open vSwitch "
                              f"(it has {', '.join(x for x in supported if x in ENCAP_TYPES) or 'none'})")
    ovs.ensure_external_ids({"ovn-encap-type": ",".join(wanted)})
    return ovs.commit()
