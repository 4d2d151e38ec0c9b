"""ovn-mesos-init and ovn-mesos-plugin against an NB served only over pssl: (the original's
SSL paths were tuples, so it could not do this). The client CA is bootstrapped on first use."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.lab.cluster import Lab, SslFiles
from tests.e2e.test_mesos import (
    OUTSIDE,
    network_conf,
    plugin,
    remove_task_links,  # noqa: F401 (autouse fixture)
)
from tests.e2e.test_overlay_ssl import make_pki
from tests.helpers import cli, ok, rows

pytestmark = pytest.mark.e2e


def test_mesos_over_ssl_with_ca_bootstrap(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    server = SslFiles(privkey=str(tmp_path / "ovnnb-privkey.pem"), cert=str(tmp_path / "ovnnb-cert.pem"),
                      cacert=str(pki / "switchca" / "cacert.pem"))
    with Lab() as lab:
        lab.up_central(nb_ssl=server)
        ssl_nb = next(r for r in lab.nb_remotes if r.startswith("ssl:"))
        node1 = lab.add_node("node1")
        lab.add_outside(f"{OUTSIDE}/24")
        lab.connect_outside(node1)
        ca = tmp_path / "bootstrapped-ca.pem"
        key, cert = tmp_path / "ovncontroller-privkey.pem", tmp_path / "ovncontroller-cert.pem"
        tls = [f"--nb-privkey={key}", f"--nb-cert={cert}", f"--nb-cacert={ca}"]

        def mesos(*args: str):  # type: ignore[no-untyped-def]
            return cli(node1, "ovn-mesos-init", *args, *tls, nb=ssl_nb)

        assert not ca.exists()
        ok(mesos("tenant-init", "--tenant-name=coke"))
        assert ca.exists()
        ok(mesos("network-init", "--tenant-name=coke", "--network-name=web", "--subnet=192.168.1.0/24"))
        ok(mesos("gateway-init", "--tenant-name=coke", "--cluster-ip-subnet=192.168.0.0/16",
                 "--physical-interface=eth1", "--physical-ip=192.0.2.10/24"))
        ok(mesos("publish", "--tenant-name=coke", "--vip=192.0.2.10:80", "--backends=192.168.1.2:80"))
        assert "GR_coke_node1" in lab.nbctl("lr-list")

        # the plugin takes the same TLS settings from its network configuration
        ns = lab.add_netns("task")
        conf = network_conf(node1, {"logical_switch": "web"}, ovn_nb=ssl_nb, nb_privkey=str(key),
                            nb_cert=str(cert), nb_cacert=str(ca))
        proc, out = plugin(node1, "ADD", "task", ns, conf)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert out["ip4"]["ip"] == "192.168.1.2/24"
        assert rows(lab, "Logical_Switch_Port", "name", where=["name=eth0_task"])

        # a client certificate the server's CA did not sign: one line, and CNI error JSON
        (tmp_path / "other").mkdir()
        make_pki(tmp_path / "other")
        other = tmp_path / "other"
        bad_key, bad_cert = other / "ovncontroller-privkey.pem", other / "ovncontroller-cert.pem"
        proc = cli(node1, "ovn-mesos-init", "tenant-init", "--tenant-name=pepsi", f"--nb-privkey={bad_key}",
                   f"--nb-cert={bad_cert}", f"--nb-cacert={ca}", "--timeout=3", nb=ssl_nb)
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "check the TLS key, certificate and CA" in proc.stderr
        bad = {**conf, "nb_privkey": str(bad_key), "nb_cert": str(bad_cert), "timeout": 3}
        proc, out = plugin(node1, "DEL", "task", ns, bad)
        assert proc.returncode == 1 and out["code"] == 11 and "check the TLS key" in out["details"], proc.stdout
