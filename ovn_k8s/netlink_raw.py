"""A minimal rtnetlink client: the few link, address and route requests of a pod's veth pair.

Private to `ovn_k8s.netlink`, which owns every link, address and route change; this module
only speaks the wire format (socket.AF_NETLINK + struct). It exists for speed, against the
project's rule to use the library that already does the job: pyroute2 costs the CNI plugin
~50 ms of import per ADD and DEL, more than the plugin's own netlink work (figures in
docs/performance.md, "CNI: rtnetlink without pyroute2"). The node-side operations (nics to
bridge, the gateway helper, Docker's pair) stay on pyroute2.

Messages come back as plain dicts keyed like pyroute2's (`index`, `flags`, `address`, `mtu`,
`link`, `link_netnsid`, `("linkinfo", "kind")`; `family`, `prefixlen`, `scope`, `local`;
`dst`, `dst_len`, `gateway`, `oif`, `table`), so `ovn_k8s.netlink`'s primitives read both.
Kernel errors are NetlinkError, an OSError with the errno (and `code`, as pyroute2's has).
Imports only the standard library.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

# linux/netlink.h
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST, _NLM_F_MULTI, _NLM_F_ACK = 0x1, 0x2, 0x4
_NLM_F_DUMP = 0x300
_NLM_F_REPLACE, _NLM_F_EXCL, _NLM_F_CREATE = 0x100, 0x200, 0x400
_NLM_F_CAPPED, _NLM_F_ACK_TLVS = 0x100, 0x200  # in an error message: request cut, ext-ack follows
_NETLINK_CAP_ACK, _NETLINK_EXT_ACK = 10, 11
_NLMSGERR_ATTR_MSG = 1
_SOL_NETLINK = 270
_NLA_TYPE_MASK = 0x3FFF
# linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h, linux/veth.h, linux/net_namespace.h
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTM_GETNSID = 90
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_LINKINFO = 1, 3, 4, 5, 18
IFLA_NET_NS_FD, IFLA_LINK_NETNSID = 28, 37
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
NETNSA_NSID, NETNSA_FD = 1, 3
RTPROT_STATIC = 4  # what pyroute2 gave these routes
RTN_UNICAST = 1
IFF_UP = 0x1

_NLMSGHDR = struct.Struct("=IHHII")     # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")   # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")    # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")    # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTATTR = struct.Struct("=HH")          # len, type
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")


class NetlinkError(OSError):
    """The kernel refused a request: errno, strerror and, when the kernel says more, its text."""

    @property
    def code(self) -> int:  # pyroute2's name for the errno
        return int(self.errno or 0)


def _attr(kind: int, payload: bytes) -> bytes:
    size = _RTATTR.size + len(payload)
    return _RTATTR.pack(size, kind) + payload + b"\0" * (-size % 4)


def _attrs(data: bytes, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    while offset + _RTATTR.size <= len(data):
        size, kind = _RTATTR.unpack_from(data, offset)
        if size < _RTATTR.size:
            return
        yield kind & _NLA_TYPE_MASK, data[offset + _RTATTR.size:offset + size]
        offset += (size + 3) & ~3


def _ifname(name: str) -> bytes:
    return _attr(IFLA_IFNAME, name.encode() + b"\0")


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _ip(text: str) -> tuple[int, bytes]:
    addr = ipaddress.ip_address(text)
    return (socket.AF_INET if addr.version == 4 else socket.AF_INET6), addr.packed


def _text(payload: bytes) -> str:
    return payload.split(b"\0", 1)[0].decode(errors="replace")


def _parse_link(body: bytes) -> dict[Any, Any]:
    family, kind, index, flags, _ = _IFINFOMSG.unpack_from(body)
    link: dict[Any, Any] = {"family": family, "ifi_type": kind, "index": index, "flags": flags}
    for attr, payload in _attrs(body, _IFINFOMSG.size):
        if attr == IFLA_IFNAME:
            link["ifname"] = _text(payload)
        elif attr == IFLA_ADDRESS:
            link["address"] = ":".join(f"{b:02x}" for b in payload)
        elif attr == IFLA_MTU:
            link["mtu"] = _U32.unpack(payload)[0]
        elif attr == IFLA_LINK:
            link["link"] = _U32.unpack(payload)[0]
        elif attr == IFLA_LINK_NETNSID:
            link["link_netnsid"] = _S32.unpack(payload)[0]
        elif attr == IFLA_LINKINFO:
            for info, value in _attrs(payload):
                if info == IFLA_INFO_KIND:
                    link[("linkinfo", "kind")] = _text(value)
    return link


def _parse_addr(body: bytes) -> dict[str, Any]:
    family, prefixlen, flags, scope, index = _IFADDRMSG.unpack_from(body)
    msg: dict[str, Any] = {"family": family, "prefixlen": prefixlen, "flags": flags, "scope": scope,
                           "index": index}
    for attr, payload in _attrs(body, _IFADDRMSG.size):
        if attr in (IFA_ADDRESS, IFA_LOCAL):
            msg["address" if attr == IFA_ADDRESS else "local"] = str(ipaddress.ip_address(payload))
    return msg


def _parse_route(body: bytes) -> dict[str, Any]:
    family, dst_len, _, _, table, proto, scope, rtype, _ = _RTMSG.unpack_from(body)
    msg: dict[str, Any] = {"family": family, "dst_len": dst_len, "table": table, "proto": proto,
                           "scope": scope, "type": rtype}
    for attr, payload in _attrs(body, _RTMSG.size):
        if attr in (RTA_DST, RTA_GATEWAY) and len(payload) in (4, 16):
            msg["dst" if attr == RTA_DST else "gateway"] = str(ipaddress.ip_address(payload))
        elif attr == RTA_OIF:
            msg["oif"] = _U32.unpack(payload)[0]
        elif attr == RTA_TABLE:
            msg["table"] = _U32.unpack(payload)[0]
    return msg


class Rtnl:
    """One NETLINK_ROUTE socket (in the netns it was made in), requests answered in order.

    The methods mirror the pyroute2 IPRoute calls `ovn_k8s.netlink` makes on a pod's pair,
    with the same argument names, so its primitives work on either."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self._sock = sock or socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                                           socket.NETLINK_ROUTE)
        try:
            # Errors without the echoed request, with the kernel's own text where it has one.
            self._sock.setsockopt(_SOL_NETLINK, _NETLINK_CAP_ACK, 1)
            self._sock.setsockopt(_SOL_NETLINK, _NETLINK_EXT_ACK, 1)
        except OSError:
            pass  # old kernels: errno only
        self._seq = 0

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    # -- the exchange ------------------------------------------------------------------------

    def _request(self, kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one request; the (type, body) replies up to the ACK or NLMSG_DONE."""
        self._seq += 1
        seq = self._seq
        self._sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, _NLM_F_REQUEST | flags, seq, 0)
                        + body)
        replies: list[tuple[int, bytes]] = []
        while True:
            data = self._sock.recv(1 << 16)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                size, mtype, mflags, mseq, _ = _NLMSGHDR.unpack_from(data, offset)
                if size < _NLMSGHDR.size:
                    raise NetlinkError(0, "malformed netlink reply")
                body_ = data[offset + _NLMSGHDR.size:offset + size]
                offset += (size + 3) & ~3
                if mseq != seq:
                    continue  # a late reply to an earlier request
                if mtype == _NLMSG_DONE:
                    return replies
                if mtype == _NLMSG_ERROR:
                    code = _S32.unpack_from(body_)[0]
                    if code:
                        raise _error(-code, body_, mflags)
                    return replies  # the ACK
                replies.append((mtype, body_))
                if not mflags & _NLM_F_MULTI and not flags & _NLM_F_ACK:
                    return replies

    # -- links -------------------------------------------------------------------------------

    def link(self, command: str, *, index: int = 0, ifname: str | None = None, kind: str | None = None,
             mtu: int | None = None, address: str | None = None, state: str | None = None,
             peer: dict[str, Any] | None = None) -> list[dict[Any, Any]]:
        """"get" (by ifname or index), "add" (a veth: kind="veth", peer={ifname, net_ns_fd,
        address, mtu}), "set" (mtu, address, state="up"), "del" (by index)."""
        up = IFF_UP if state == "up" else 0
        attrs = b""
        if ifname is not None:
            attrs += _ifname(ifname)
        if mtu is not None:
            attrs += _attr(IFLA_MTU, _U32.pack(mtu))
        if address is not None:
            attrs += _attr(IFLA_ADDRESS, _mac(address))
        if command == "get":
            replies = self._request(RTM_GETLINK, 0, _IFINFOMSG.pack(0, 0, index, 0, 0) + attrs)
            return [_parse_link(body) for mtype, body in replies if mtype == RTM_NEWLINK]
        if command == "add":
            if kind != "veth" or peer is None:
                raise ValueError("only veth pairs are supported")
            peer_attrs = _ifname(peer["ifname"])
            if peer.get("net_ns_fd") is not None:
                peer_attrs += _attr(IFLA_NET_NS_FD, _U32.pack(peer["net_ns_fd"]))
            if peer.get("address") is not None:
                peer_attrs += _attr(IFLA_ADDRESS, _mac(peer["address"]))
            if peer.get("mtu") is not None:
                peer_attrs += _attr(IFLA_MTU, _U32.pack(peer["mtu"]))
            data = _attr(VETH_INFO_PEER, _IFINFOMSG.pack(0, 0, 0, 0, 0) + peer_attrs)
            attrs += _attr(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, b"veth\0") + _attr(IFLA_INFO_DATA, data))
            self._request(RTM_NEWLINK, _NLM_F_ACK | _NLM_F_CREATE | _NLM_F_EXCL,
                          _IFINFOMSG.pack(0, 0, 0, up, up) + attrs)
        elif command == "set":
            self._request(RTM_NEWLINK, _NLM_F_ACK, _IFINFOMSG.pack(0, 0, index, up, up) + attrs)
        elif command == "del":
            self._request(RTM_DELLINK, _NLM_F_ACK, _IFINFOMSG.pack(0, 0, index, 0, 0) + attrs)
        else:
            raise ValueError(f"unsupported link command {command!r}")
        return []

    def get_netnsid(self, *, fd: int) -> dict[str, int] | None:
        """The id this netns gives the netns of `fd` ({"nsid": -1} when it has none)."""
        body = struct.pack("=Bxxx", socket.AF_UNSPEC) + _attr(NETNSA_FD, _U32.pack(fd))
        for _, reply in self._request(RTM_GETNSID, 0, body):
            for attr, payload in _attrs(reply, 4):
                if attr == NETNSA_NSID:
                    return {"nsid": _S32.unpack(payload)[0]}
        return None

    # -- addresses ---------------------------------------------------------------------------

    def addr(self, command: str, *, index: int, address: str | None = None,
             prefixlen: int | None = None) -> list[dict[str, Any]]:
        """"dump" (every address of the netns: filter by index), "add", "del"."""
        if command == "dump":
            replies = self._request(RTM_GETADDR, _NLM_F_DUMP, _IFADDRMSG.pack(0, 0, 0, 0, 0))
            return [_parse_addr(body) for mtype, body in replies if mtype == RTM_NEWADDR]
        if address is None or prefixlen is None:
            raise ValueError("address and prefixlen are required")
        family, packed = _ip(address)
        body = (_IFADDRMSG.pack(family, prefixlen, 0, 0, index)
                + _attr(IFA_LOCAL, packed) + _attr(IFA_ADDRESS, packed))
        if command == "add":
            self._request(RTM_NEWADDR, _NLM_F_ACK | _NLM_F_CREATE | _NLM_F_EXCL, body)
        elif command == "del":
            self._request(RTM_DELADDR, _NLM_F_ACK, body)
        else:
            raise ValueError(f"unsupported addr command {command!r}")
        return []

    # -- routes ------------------------------------------------------------------------------

    def route(self, command: str, *, family: int = 0, table: int = 254, dst: str | None = None,
              gateway: str | None = None, oif: int | None = None, scope: int = 0) -> list[dict[str, Any]]:
        """"dump" (every route of `family`, 0 for all: filter by table and oif) and "replace"
        (a unicast main-table route; dst "A/N", gateway, oif, scope)."""
        if command == "dump":
            replies = self._request(RTM_GETROUTE, _NLM_F_DUMP, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0))
            return [_parse_route(body) for mtype, body in replies if mtype == RTM_NEWROUTE]
        if command != "replace" or dst is None:
            raise ValueError(f"unsupported route command {command!r}")
        net = ipaddress.ip_network(dst, strict=False)
        family = socket.AF_INET if net.version == 4 else socket.AF_INET6
        attrs = _attr(RTA_TABLE, _U32.pack(table))
        if net.prefixlen:
            attrs += _attr(RTA_DST, net.network_address.packed)
        if gateway is not None:
            attrs += _attr(RTA_GATEWAY, _ip(gateway)[1])
        if oif is not None:
            attrs += _attr(RTA_OIF, _U32.pack(oif))
        self._request(RTM_NEWROUTE, _NLM_F_ACK | _NLM_F_CREATE | _NLM_F_REPLACE,
                      _RTMSG.pack(family, net.prefixlen, 0, 0, table if table < 256 else 0, RTPROT_STATIC,
                                  scope, RTN_UNICAST, 0) + attrs)
        return []


def _error(code: int, body: bytes, flags: int) -> NetlinkError:
    """The kernel's errno, with its extended-ack text when it sent one (one line)."""
    text = os.strerror(code)
    if flags & _NLM_F_ACK_TLVS and len(body) >= 4 + _NLMSGHDR.size:
        # int error, the request's header (or, not capped, the whole request), then attributes
        echoed = _NLMSGHDR.size if flags & _NLM_F_CAPPED else _NLMSGHDR.unpack_from(body, 4)[0]
        for attr, payload in _attrs(body, 4 + ((echoed + 3) & ~3)):
            if attr == _NLMSGERR_ATTR_MSG:
                text += f" ({_text(payload)})"
    return NetlinkError(code, text)
