"""A NB served over ssl: whose certificate the client's CA does not sign: a setting to fix, so
one error at once (commands: one line, exit 1, nothing changed; the Mesos plugin: a code the
agent does not retry), never "try again"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.lab.cluster import Lab, SslFiles
from tests.e2e.test_mesos import network_conf, plugin
from tests.e2e.test_overlay_ssl import make_pki
from tests.helpers import master_init, nb_dump

pytestmark = pytest.mark.e2e

TRY_AGAIN = 11


def test_a_wrong_nb_ca_is_a_configuration_error(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    server = SslFiles(privkey=str(tmp_path / "ovnnb-privkey.pem"), cert=str(tmp_path / "ovnnb-cert.pem"),
                      cacert=str(pki / "switchca" / "cacert.pem"))
    (tmp_path / "other").mkdir()
    wrong_ca = make_pki(tmp_path / "other") / "switchca" / "cacert.pem"   # signed nothing of the server's
    key, cert = tmp_path / "ovncontroller-privkey.pem", tmp_path / "ovncontroller-cert.pem"
    with Lab() as lab:
        lab.up_central(nb_ssl=server)
        ssl_nb = next(r for r in lab.nb_remotes if r.startswith("ssl:"))
        node1 = lab.add_node("node1")
        before = nb_dump(lab)
        proc = master_init(node1, "10.244.1.0/24", f"--ovn-nb={ssl_nb}", f"--nb-privkey={key}",
                           f"--nb-cert={cert}", f"--nb-cacert={wrong_ca}", "--timeout=5")
        assert proc.returncode == 1, proc
        (line,) = proc.stderr.strip().splitlines()
        assert f"TLS with the OVN NB database at {ssl_nb} failed" in line, line
        assert "CERTIFICATE_VERIFY_FAILED" in line and "check the TLS key, certificate and CA" in line
        assert nb_dump(lab) == before

        ns = lab.add_netns("task")
        conf = network_conf(node1, {"logical_switch": "web"}, ovn_nb=ssl_nb, nb_privkey=str(key),
                            nb_cert=str(cert), nb_cacert=str(wrong_ca), timeout=5)
        for command in ("ADD", "DEL"):
            proc, out = plugin(node1, command, "task", ns, conf)
            assert proc.returncode == 1, proc
            assert out["code"] not in (TRY_AGAIN, 999), json.dumps(out)
            assert out["code"] == 7 and "CERTIFICATE_VERIFY_FAILED" in out["details"], json.dumps(out)
        assert nb_dump(lab) == before
