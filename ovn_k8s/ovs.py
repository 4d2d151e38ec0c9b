"""The local Open vSwitch database, through ovsdbapp's Open_vSwitch schema (no ovs-vsctl).

Every `ensure_*` method compares the IDL cache with what is wanted and queues only the
commands that change something; `commit()` writes them in one transaction, which ovsdbapp
holds open until ovs-vswitchd has applied it (so a new internal port's device exists when
commit returns).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ovn_k8s import naming
from ovn_k8s.errors import ConfigError, HostError
from ovn_k8s.nb import connection

LOG = logging.getLogger(__name__)


class LocalOvs:
    def __init__(self, remote: str, *, timeout: float) -> None:
        self.remote = remote
        self.timeout = timeout
        self.api = connection.connect(remote, "Open_vSwitch", what="local OVS database",
                                      timeout=timeout)
        self._pending: list[Any] = []

    def close(self) -> None:
        connection.disconnect(self.api)

    def __enter__(self) -> LocalOvs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads ---------------------------------------------------------------------------------
    def _root(self) -> Any:
        rows = list(self.api.tables["Open_vSwitch"].rows.values())
        if not rows:
            raise ConfigError(f"the OVS database at {self.remote} is not initialised "
                              "(run 'ovs-vsctl init')")
        return rows[0]

    def external_ids(self) -> dict[str, str]:
        return dict(self._root().external_ids)

    def system_id(self) -> str:
        sysid = self.external_ids().get("system-id", "").strip()
        if not sysid:
            raise ConfigError("no system-id configured in the local OVS "
                              "(set it with: ovs-vsctl set Open_vSwitch . external_ids:system-id=ID)")
        return sysid

    def datapath_type(self) -> str | None:
        """The datapath ovn-controller uses for br-int (netdev for the userspace datapath)."""
        return self.external_ids().get("ovn-bridge-datapath-type") or None

    def _find(self, table: str, name: str) -> Any | None:
        for row in self.api.tables[table].rows.values():
            if row.name == name:
                return row
        return None

    def bridge(self, name: str) -> Any | None:
        return self._find("Bridge", name)

    def interface(self, name: str) -> Any | None:
        return self._find("Interface", name)

    def port_bridge(self, port: str) -> str | None:
        for br in self.api.tables["Bridge"].rows.values():
            if any(p.name == port for p in br.ports):
                return str(br.name)
        return None

    def require_bridge(self, name: str) -> Any:
        row = self.bridge(name)
        if row is None:
            raise HostError(f"OVS bridge {name} does not exist")
        return row

    def mac_in_use(self, iface: str) -> str:
        row = self.interface(iface)
        macs = list(row.mac_in_use) if row is not None else []
        if not macs or not macs[0]:
            raise HostError(f"OVS interface {iface} has no MAC address yet")
        return str(macs[0])

    # -- queued writes -------------------------------------------------------------------------
    def ensure_bridge(self, name: str, *, fail_mode: str | None = None,
                      other_config: Mapping[str, str] | None = None,
                      external_ids: Mapping[str, str] | None = None) -> None:
        row = self.bridge(name)
        dp_type = self.datapath_type()
        if row is None:
            self._pending.append(self.api.add_br(name, may_exist=True, datapath_type=dp_type))
        elif dp_type and row.datapath_type != dp_type:
            self._pending.append(self.api.db_set("Bridge", name, ("datapath_type", dp_type)))
        if fail_mode is not None and (row is None or list(row.fail_mode) != [fail_mode]):
            self._pending.append(self.api.db_set("Bridge", name, ("fail_mode", fail_mode)))
        for column, wanted in (("other_config", other_config), ("external_ids", external_ids)):
            if wanted and (row is None or any(getattr(row, column).get(k) != v
                                              for k, v in wanted.items())):
                self._pending.append(self.api.db_set("Bridge", name, (column, dict(wanted))))

    def ensure_integration_bridge(self) -> None:
        self.ensure_bridge(naming.BR_INT, fail_mode="secure",
                           other_config={"disable-in-band": "true"})

    def ensure_port(self, bridge: str, name: str, **iface: Any) -> None:
        """Port `name` on `bridge` whose Interface has at least the given column values."""
        current = self.port_bridge(name)
        if current is not None and current != bridge:
            self._pending.append(self.api.del_port(name, bridge=current))
            current = None
        if current is None:
            self._pending.append(self.api.add_port(bridge, name, may_exist=True, **iface))
            return
        row = self.interface(name)
        changes = []
        for column, value in iface.items():
            have = getattr(row, column) if row is not None else None
            if isinstance(value, Mapping):
                if have is None or any(have.get(k) != v for k, v in value.items()):
                    changes.append((column, dict(value)))
            else:
                plain = list(have) if isinstance(have, list) else have
                if plain not in (value, [value]):
                    changes.append((column, value))
        if changes:
            self._pending.append(self.api.db_set("Interface", name, *changes))

    def ensure_patch_pair(self, bridge_a: str, port_a: str, bridge_b: str, port_b: str, *,
                          external_ids_a: Mapping[str, str] | None = None) -> None:
        self.ensure_port(bridge_a, port_a, type="patch", options={"peer": port_b},
                         **({"external_ids": external_ids_a} if external_ids_a else {}))
        self.ensure_port(bridge_b, port_b, type="patch", options={"peer": port_a})

    def remove_owned_ports(self, owner: str, keep: set[str]) -> list[str]:
        """Queue removal of every port whose interface carries our owner key but is not in
        `keep` (e.g. the NIC a previous gateway-init moved into br-int)."""
        removed = []
        for br in self.api.tables["Bridge"].rows.values():
            for port in br.ports:
                if port.name in keep:
                    continue
                if any(iface.external_ids.get(naming.OWNER_KEY) == owner for iface in port.interfaces):
                    self._pending.append(self.api.del_port(port.name, bridge=br.name))
                    removed.append(str(port.name))
        return removed

    @property
    def pending(self) -> int:
        return len(self._pending)

    def commit(self) -> bool:
        """Write the queued changes in one transaction; False if there was nothing to do."""
        if not self._pending:
            return False
        commands, self._pending = self._pending, []
        try:
            with connection.transaction(self.api, timeout=self.timeout) as txn:
                for cmd in commands:
                    txn.add(cmd)
        except Exception as e:  # noqa: BLE001 - report the OVSDB error in one line
            raise HostError(f"local OVS transaction failed: {e}") from e
        return True
