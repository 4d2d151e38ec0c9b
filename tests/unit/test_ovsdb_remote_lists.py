"""Comma-separated lists of OVSDB remotes (a clustered database's members): how they are
split and checked, and the probe that asks only that one member listen."""

from __future__ import annotations

import socket

import pytest

from ovn_k8s.errors import ConfigError, ConnectionFailed
from ovn_k8s.ovsdb_remote import probe, split_remotes


def test_a_list_is_split_into_checked_members() -> None:
    assert split_remotes("tcp:10.0.0.1:6641,tcp:10.0.0.2:6641,ssl:[fd00::3]:6641", "--ovn-nb") == [
        "tcp:10.0.0.1:6641", "tcp:10.0.0.2:6641", "ssl:[fd00::3]:6641"]
    assert split_remotes("unix:/run/ovn/nb.sock", "--ovn-nb") == ["unix:/run/ovn/nb.sock"]
    # python-ovs' own rule: a piece without ':' continues the previous member (a path with a comma)
    assert split_remotes("unix:/tmp/a,b.sock,tcp:10.0.0.1:6641", "--ovn-nb") == [
        "unix:/tmp/a,b.sock", "tcp:10.0.0.1:6641"]


@pytest.mark.parametrize("bad", ["tcp:10.0.0.1:6641,", "tcp:10.0.0.1:6641,,tcp:10.0.0.2:6641",
                                 "tcp:10.0.0.1:6641,udp:10.0.0.2:6641", "tcp:10.0.0.1:6641,tcp:10.0.0.2"])
def test_a_bad_member_is_a_config_error_naming_it(bad: str) -> None:
    with pytest.raises(ConfigError, match="--ovn-nb: .* is not an OVSDB address"):
        split_remotes(bad, "--ovn-nb")


def test_probe_of_a_list_needs_one_live_member(tmp_path) -> None:
    path = str(tmp_path / "live.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(4)
        probe(f"unix:{tmp_path}/dead1.sock,unix:{path},unix:{tmp_path}/dead2.sock", "NB", timeout=2)
    with pytest.raises(ConnectionFailed) as err:
        probe(f"unix:{tmp_path}/dead1.sock,unix:{tmp_path}/dead2.sock", "NB", timeout=2)
    assert str(err.value) == (f"cannot reach the NB at any of unix:{tmp_path}/dead1.sock,unix:{tmp_path}"
                              f"/dead2.sock (unix:{tmp_path}/dead1.sock: No such file or directory; "
                              f"unix:{tmp_path}/dead2.sock: No such file or directory)")
