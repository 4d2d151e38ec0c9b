"""Helpers shared by the integration and e2e tests: running our commands in a node's
namespace, and NB snapshots that compare by identity rather than by UUID."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from sandbox.lab.cluster import Lab, Node

BIN = os.path.dirname(sys.executable)
CLUSTER = "10.244.0.0/16"


def cli(node: Node | None, prog: str, *args: str, nb: str | None = None,
        env: dict[str, str] | None = None, lab: Lab | None = None) -> subprocess.CompletedProcess[str]:
    """Run one of our executables as a user would: in the node's namespace, with its OVS."""
    cmd = [os.path.join(BIN, prog), *args]
    if node is not None:
        cmd.append(f"--ovs-db={node.ovs_db}")
        if nb is None and prog == "ovn-k8s-overlay" and not any(a.startswith("--ovn-nb") for a in args):
            nb = node.lab.nb
    if nb is not None:
        cmd.append(f"--ovn-nb={nb}")
    full = (["ip", "netns", "exec", node.netns] if node is not None else []) + cmd
    # No stray config file or OVN_K8S_* environment from the machine may leak into a test.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OVN_K8S_")}
    clean["OVN_K8S_CONFIG"] = "/dev/null"  # an empty config file
    return subprocess.run(full, capture_output=True, text=True, timeout=120,
                          env={**clean, **(env or {})}, check=False)


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc


def master_init(node: Node, subnet: str = "10.244.1.0/24", *extra: str) -> subprocess.CompletedProcess[str]:
    return cli(node, "ovn-k8s-overlay", "master-init", f"--node-name={node.name}",
               f"--cluster-ip-subnet={CLUSTER}", f"--master-switch-subnet={subnet}", *extra)


def minion_init(node: Node, subnet: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli(node, "ovn-k8s-overlay", "minion-init", f"--node-name={node.name}",
               f"--cluster-ip-subnet={CLUSTER}", f"--minion-switch-subnet={subnet}", *extra)


def gateway_init(node: Node, physical_ip: str, *extra: str, nic: str = "eth1") -> subprocess.CompletedProcess[str]:
    mode = [] if any(e.startswith("--bridge-interface") for e in extra) else [f"--physical-interface={nic}"]
    return cli(node, "ovn-k8s-overlay", "gateway-init", f"--node-name={node.name}",
               f"--cluster-ip-subnet={CLUSTER}", f"--physical-ip={physical_ip}", *mode, *extra)


# Written by ovn-northd as chassis bind ports and apply config, not by us: a dump taken while
# the lab settles would differ in these even when our command changed nothing.
NORTHD_OWNED = {"NB_Global": None, "Logical_Switch_Port": {"up"}}


def nb_dump(lab: Lab) -> dict[str, Any]:
    """The whole NB as ovsdb-client prints it, UUIDs included (equal dumps = nothing changed),
    without the columns ovn-northd maintains (NORTHD_OWNED)."""
    out = subprocess.run(["ovsdb-client", "-f", "json", "dump", lab.nb, "OVN_Northbound"],
                         capture_output=True, text=True, check=True).stdout
    tables: dict[str, Any] = {}
    for block in out.split("\n"):
        if not block.strip():
            continue
        data = json.loads(block)
        for table in data if isinstance(data, list) else [data]:
            caption = table.get("caption", "")
            name = caption.split()[0] if caption else "?"
            if name in NORTHD_OWNED and NORTHD_OWNED[name] is None:
                continue
            drop = NORTHD_OWNED.get(name) or set()
            rows = [{k: v for k, v in zip(table["headings"], row, strict=True) if k not in drop}
                    for row in table["data"]]
            tables[name] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))
    return tables


def row_versions(lab: Lab, *tables: str) -> dict[str, dict[str, str]]:
    """table -> {row UUID: row _version}, read from the server. OVSDB gives a row a new
    `_version` on every change, so equal results prove that no row of these tables was
    created, changed or deleted in between, whoever else writes other tables (ovn-northd)."""
    ops = [{"op": "select", "table": t, "where": [], "columns": ["_uuid", "_version"]} for t in tables]
    out = subprocess.run(["ovsdb-client", "transact", lab.nb, json.dumps(["OVN_Northbound", *ops])],
                         capture_output=True, text=True, check=True).stdout
    return {t: {r["_uuid"][1]: r["_version"][1] for r in res["rows"]}
            for t, res in zip(tables, json.loads(out), strict=True)}


def nb_caught_up(api: Any) -> None:
    """Return once an NB connection's IDL has every change committed before (e.g. by
    ovn-nbctl): the server answers our own write only after it has sent us the updates
    committed before it (one connection, in order)."""
    api.db_set("NB_Global", ".", ("external_ids", {"ovn-k8s-test/sync": str(time.monotonic())})).execute(
        check_error=True)


def identities(lab: Lab) -> set[tuple[str, str]]:
    """(table, name-or-identity) of every row in the NB's topology tables."""
    out: set[tuple[str, str]] = set()
    for table, rows in nb_dump(lab).items():
        if table in ("NB_Global", "Connection", "SSL"):
            continue
        for row in rows:
            ident = _ext(row).get("ovn-k8s/id") or row.get("name") or row.get("_uuid")
            out.add((table, str(ident)))
    return out


def _ext(row: dict[str, Any]) -> dict[str, str]:
    ext = row.get("external_ids")
    if isinstance(ext, list) and ext and ext[0] == "map":
        return dict(ext[1])
    return {}


def rows(lab: Lab, table: str, *columns: str, where: Sequence[str] = ()) -> list[dict[str, str]]:
    """Rows of `table` read with ovn-nbctl (values as ovn-nbctl prints them)."""
    cols = ",".join(columns)
    out = lab.nbctl("--format=json", f"--columns={cols}", "find", table, *where)
    data = json.loads(out)
    return [dict(zip(data["headings"], [_plain(v) for v in r], strict=True)) for r in data["data"]]


def _plain(value: Any) -> Any:
    if isinstance(value, list) and len(value) == 2 and value[0] in ("set", "map", "uuid"):
        kind, inner = value
        if kind == "map":
            return {k: _plain(v) for k, v in inner}
        if kind == "set":
            return sorted(_plain(v) for v in inner)
        return inner
    return value


def self_signed_cert(directory: str | os.PathLike[str], name: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key, made with the openssl CLI: (cert, key)."""
    key, cert = os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=30)
    return cert, key
