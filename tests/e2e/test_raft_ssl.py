"""The init commands against a 3-member RAFT NB over pssl: (issue 16 item 4): a list of ssl:
remotes, one member down from the start (the probe, the schema fetch and the CA bootstrap move
on to the next), then the leader killed between two commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.lab.cluster import Lab, SslFiles
from tests.e2e.test_overlay_ssl import make_pki
from tests.helpers import master_init, minion_init, ok

pytestmark = pytest.mark.e2e


def test_init_commands_on_an_ssl_raft_nb_with_members_down(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    server = SslFiles(privkey=str(tmp_path / "ovnnb-privkey.pem"), cert=str(tmp_path / "ovnnb-cert.pem"),
                      cacert=str(pki / "switchca" / "cacert.pem"))
    with Lab() as lab:
        lab.up_central(nb_ssl=server, db_cluster=3)
        ssl_nb = next(r for r in lab.nb_remotes if r.startswith("ssl:"))
        assert ssl_nb.split(",") == [f"ssl:{lab.central_ip}:{6642 + 10 * i}" for i in range(3)]
        node1, node2 = lab.add_node("node1"), lab.add_node("node2")
        ca = tmp_path / "bootstrapped-ca.pem"
        tls = [f"--ovn-nb={ssl_nb}", f"--nb-privkey={tmp_path / 'ovncontroller-privkey.pem'}",
               f"--nb-cert={tmp_path / 'ovncontroller-cert.pem'}", f"--nb-cacert={ca}"]
        # the first listed member is down from the start: the others serve
        lab.kill_member("nb", 1)
        ok(master_init(node1, "10.244.1.0/24", *tls))
        assert ca.exists()
        # the leader dies too: one member is left, no majority; it comes back, a leader is
        # elected, and minion-init (within its --timeout) writes through it
        leader = lab.leader("nb")
        lab.kill_member("nb", leader)
        lab.restart_member("nb", leader)
        ok(minion_init(node2, "10.244.2.0/24", *tls))
        assert {"node1", "node2", "join"} <= {
            line.split("(")[1].rstrip(")") for line in lab.nbctl("ls-list").splitlines()}
