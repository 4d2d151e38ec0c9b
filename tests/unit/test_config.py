"""Precedence: flag > environment > config file > OVS external_ids > default."""

import re
from pathlib import Path

import pytest

from ovn_k8s import config
from ovn_k8s.errors import ConfigError

NAMES = ("ovn_nb", "mtu", "nb_cacert", "k8s_api_server", "timeout")


def write_conf(tmp_path: Path, text: str) -> str:
    path = tmp_path / "ovn_k8s.conf"
    path.write_text(text)
    return str(path)


def test_each_layer_wins_over_the_next(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "[default]\novn_nb = tcp:1.1.1.1:6641\nmtu = 1300\n"
                                "ca_cert = /file/ca.pem\n")
    ovs = {"ovn-nb": "tcp:2.2.2.2:6641", "k8s-api-server": "10.0.0.1:8080"}
    cfg = config.resolve({"config": conf, "ovn_nb": "unix:/flag.sock"}, NAMES,
                         env={"OVN_K8S_MTU": "1200"}, ovs_external_ids=lambda: ovs)
    assert cfg.ovn_nb == "unix:/flag.sock" and cfg.sources["ovn_nb"] == "flag"
    assert cfg.mtu == 1200 and cfg.sources["mtu"] == "env"
    assert cfg.nb_cacert == "/file/ca.pem" and cfg.sources["nb_cacert"] == "file"
    # host:port from OVS means plain http, as the original tools read it
    assert cfg.k8s_api_server == "http://10.0.0.1:8080" and cfg.sources["k8s_api_server"] == "ovs"
    assert cfg.timeout == 30.0 and cfg.sources["timeout"] == "default"


def test_file_beats_ovs_and_ovs_is_read_lazily(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "[default]\novn_nb = tcp:1.1.1.1:6641\n")
    calls = []

    def ovs() -> dict[str, str]:
        calls.append(1)
        return {"ovn-nb": "tcp:2.2.2.2:6641"}

    cfg = config.resolve({"config": conf}, ("ovn_nb", "mtu"), env={}, ovs_external_ids=ovs)
    assert cfg.ovn_nb == "tcp:1.1.1.1:6641"
    assert calls == []  # nothing needed the OVS layer
    cfg = config.resolve({"config": conf}, ("ovn_nb", "k8s_api_server"), env={},
                         ovs_external_ids=ovs)
    assert calls == [1]


def test_default_config_file_may_be_missing_but_a_named_one_may_not(tmp_path: Path) -> None:
    cfg = config.resolve({}, ("mtu",), env={})
    assert cfg.mtu == 1400
    with pytest.raises(ConfigError, match="does not exist"):
        config.resolve({"config": str(tmp_path / "nope.conf")}, ("mtu",), env={})


def test_bad_values_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--mtu: 'big' is not a valid int"):
        config.resolve({"mtu": "big"}, ("mtu",), env={})
    conf = write_conf(tmp_path, "not an ini file")
    with pytest.raises(ConfigError, match="not valid INI"):
        config.resolve({"config": conf}, ("mtu",), env={})


def test_every_original_key_is_read_and_the_rest_refused_in_one_line(tmp_path: Path) -> None:
    # The original tools' keys (etc/ovn_k8s.conf of the Python era) all have a reader.
    original = {"mtu": "1400", "conntrack_zone": "64000", "ovn_mode": "overlay",
                "unix_socket": "/var/run/openvswitch/ovnnb_db.sock", "cni_conf_path": "/etc/cni/net.d",
                "cni_link_path": "/opt/cni/bin/", "cni_plugin": "ovn-k8s-cni-overlay",
                "private_key": "/k", "certificate": "/c", "ca_cert": "/ca",
                "k8s_ca_certificate": "/etc/openvswitch/k8s-ca.crt", "rundir": "/r", "logdir": "/l"}
    conf = write_conf(tmp_path, "[default]\n" + "".join(f"{k} = {v}\n" for k, v in original.items()))
    cfg = config.resolve({"config": conf}, ("mtu", "conntrack_zone", "unix_socket", "cni_conf_dir",
                                            "cni_bin_dir", "nb_privkey", "rundir", "logdir"), env={})
    assert (cfg.mtu, cfg.conntrack_zone, cfg.rundir, cfg.logdir) == (1400, 64000, "/r", "/l")
    assert cfg.unix_socket == "/var/run/openvswitch/ovnnb_db.sock" and cfg.nb_privkey == "/k"
    for text, message in [
        ("[default]\nlog_path = /var/log/x.log\n", "log_path is not supported: the CNI plugin's log"),
        ("[default]\nmtuu = 1400\n", "unknown key 'mtuu' in [default]"),
        ("[default]\novn_mode = underlay\n", "ovn_mode = 'underlay': OVN mode not supported"),
        ("[default]\nmtu = 1400\n[kubernetes]\napiserver = x\n", "section [kubernetes] is not read"),
    ]:
        conf = write_conf(tmp_path, text)
        with pytest.raises(ConfigError, match=re.escape(message)):
            config.resolve({"config": conf}, ("mtu",), env={})
