"""The init commands against an NB served over pssl:, with certificates this test makes.

The client CA file does not exist at first: the first command bootstraps it from the server
(trust on first use, as the original tools did), later commands verify against it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sandbox.lab.cluster import Lab, SslFiles
from tests.helpers import cli, gateway_init, master_init, minion_init, ok

pytestmark = pytest.mark.e2e


def make_pki(d: Path) -> Path:
    pki = d / "pki"
    subprocess.run(["ovs-pki", f"--dir={pki}", "init", "--force"], check=True, capture_output=True)
    for name in ("ovnnb", "ovncontroller"):
        subprocess.run(["ovs-pki", f"--dir={pki}", "req+sign", name, "switch"], cwd=d, check=True,
                       capture_output=True)
    return pki


def test_init_commands_over_ssl_with_ca_bootstrap(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    server = SslFiles(privkey=str(tmp_path / "ovnnb-privkey.pem"),
                      cert=str(tmp_path / "ovnnb-cert.pem"),
                      cacert=str(pki / "switchca" / "cacert.pem"))
    with Lab() as lab:
        lab.up_central(nb_ssl=server)
        ssl_nb = next(r for r in lab.nb_remotes if r.startswith("ssl:"))
        node1, node2 = lab.add_node("node1"), lab.add_node("node2")
        lab.add_outside("192.0.2.1/24")
        lab.connect_outside(node2)
        ca = tmp_path / "bootstrapped-ca.pem"
        tls = [f"--ovn-nb={ssl_nb}", f"--nb-privkey={tmp_path / 'ovncontroller-privkey.pem'}",
               f"--nb-cert={tmp_path / 'ovncontroller-cert.pem'}", f"--nb-cacert={ca}"]
        assert not ca.exists()
        ok(master_init(node1, "10.244.1.0/24", *tls))
        assert ca.exists()
        ok(minion_init(node2, "10.244.2.0/24", *tls))
        ok(gateway_init(node2, "192.0.2.20/24", *tls))
        assert {"node1", "node2", "join", "ext_node2"} <= {
            line.split("(")[1].rstrip(")") for line in lab.nbctl("ls-list").splitlines()}
        assert "GR_node2" in lab.nbctl("lr-list")

        # a client certificate the server's CA did not sign is refused, with one line
        (tmp_path / "other").mkdir()
        make_pki(tmp_path / "other")
        bad = [f"--ovn-nb={ssl_nb}", f"--nb-privkey={tmp_path / 'other' / 'ovncontroller-privkey.pem'}",
               f"--nb-cert={tmp_path / 'other' / 'ovncontroller-cert.pem'}", f"--nb-cacert={ca}",
               "--timeout=3"]
        proc = minion_init(node2, "10.244.2.0/24", *bad)
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "check the TLS key, certificate and CA" in proc.stderr
        missing = cli(node2, "ovn-k8s-overlay", "minion-init", "--node-name=node2",
                      "--cluster-ip-subnet=10.244.0.0/16", "--minion-switch-subnet=10.244.2.0/24",
                      f"--ovn-nb={ssl_nb}", f"--nb-privkey={tmp_path / 'nope.pem'}",
                      f"--nb-cert={tmp_path / 'ovncontroller-cert.pem'}", f"--nb-cacert={ca}")
        assert missing.returncode == 1 and "--nb-privkey" in missing.stderr
        assert os.path.exists(ca)
