"""The pod's OVS port as the CNI plugins use it: `ovn_k8s.local_ovsdb` in its POD_PORTS mode,
with its errors as the CNI codes of docs/cni.md.

The OVSDB work (one IDL connection per call replicating only what a pod port needs, the attach
and detach transactions, the event-driven wait for `ovn-installed`) is local_ovsdb's; this
module only turns its failures into CniErrors: 104 (OVN_BINDING_TIMEOUT) when ovn-controller
does not bind the port before the deadline, 7 (INVALID_NETWORK_CONFIG) for an unusable `ovsdb`
address, 101 (OVS_ATTACH_FAILED) for everything else.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping

from ovn_k8s import local_ovsdb
from ovn_k8s.cni.protocol import CniError, ErrorCode
from ovn_k8s.errors import ConfigError, ConnectionFailed, OvnK8sError
from ovn_k8s.local_ovsdb import IFACE_ID_KEY, PortState, attach_ids

__all__ = ["IFACE_ID_KEY", "PodPorts", "PortState", "attach_ids"]


@contextlib.contextmanager
def _codes() -> Iterator[None]:
    try:
        yield
    except local_ovsdb.BindingTimeout as err:
        raise CniError(ErrorCode.OVN_BINDING_TIMEOUT, err.summary, err.details) from None
    except local_ovsdb.OvsdbError as err:
        raise CniError(ErrorCode.OVS_ATTACH_FAILED, err.summary, err.details) from None
    except ConfigError as err:
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "unusable ovsdb", str(err)) from None
    except ConnectionFailed as err:
        raise CniError(ErrorCode.OVS_ATTACH_FAILED, "cannot connect to the local OVSDB", str(err)) from None
    except OvnK8sError as err:
        raise CniError(ErrorCode.OVS_ATTACH_FAILED, "local OVSDB", str(err)) from None


class PodPorts:
    """The node's OVSDB for one plugin call, connected before `deadline`. A context manager."""

    def __init__(self, remote: str, *, deadline: float) -> None:
        with _codes():
            self.db = local_ovsdb.LocalOvsdb(remote, mode=local_ovsdb.Mode.POD_PORTS,
                                             timeout=deadline - time.monotonic())

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> PodPorts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def external_ids(self) -> dict[str, str]:
        return self.db.external_ids()

    def port_state(self, name: str) -> PortState | None:
        return self.db.port_state(name)

    def attach(self, bridge: str, name: str, external_ids: Mapping[str, str], *, deadline: float) -> bool:
        with _codes():
            return self.db.attach(bridge, name, external_ids, deadline=deadline)

    def detach(self, name: str, *, sandbox: str | None = None, ifname: str | None = None,
               deadline: float) -> list[str]:
        with _codes():
            return self.db.detach(name, sandbox=sandbox, ifname=ifname, deadline=deadline)

    def wait_installed(self, name: str, iface_id: str, *, deadline: float) -> float:
        with _codes():
            return self.db.wait_installed(name, iface_id, deadline=deadline)
