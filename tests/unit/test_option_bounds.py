"""Numbers out of an option's range are one error line from config.resolve, whichever layer
(flag, environment, config file) gave them: every command, daemon and plugin checks the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovn_k8s import config
from ovn_k8s.errors import ConfigError


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("mtu", "-5", "--mtu: -5 is out of range (68..65535)"),
    ("mtu", "0", "--mtu: 0 is out of range"),
    ("mtu", "99999999", "--mtu: 99999999 is out of range"),
    ("timeout", "-1", "--timeout: -1 is out of range"),
    ("timeout", "0", "--timeout: 0 is out of range"),
    ("timeout", "nan", "--timeout: nan is out of range"),
    ("timeout", "inf", "--timeout: inf is out of range"),
])
def test_out_of_range_is_refused(name: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.resolve({name: raw}, (name,), env={})
    assert str(err.value).startswith(message)
    with pytest.raises(ConfigError):
        config.resolve({}, (name,), env={config.OPTIONS[name].env: raw})


def test_the_config_file_is_checked_too(tmp_path: Path) -> None:
    conf = tmp_path / "ovn_k8s.conf"
    conf.write_text("[default]\nmtu = 70000\n")
    with pytest.raises(ConfigError, match="--mtu: 70000 is out of range"):
        config.resolve({"config": str(conf)}, ("mtu",), env={})


@pytest.mark.parametrize(("name", "raw", "value"), [
    ("mtu", "68", 68), ("mtu", "65535", 65535), ("timeout", "0.5", 0.5), ("timeout", "86400", 86400.0),
])
def test_the_bounds_are_inclusive(name: str, raw: str, value: float) -> None:
    assert getattr(config.resolve({name: raw}, (name,), env={}), name) == value


def test_a_bad_number_is_reported_before_the_local_ovs_is_opened() -> None:
    """ovn-k8s-overlay checks every option that does not come from the OVS before opening it:
    the bad --mtu is the one error line, not the unreachable OVS behind it."""
    import os
    import subprocess
    import sys

    exe = os.path.join(os.path.dirname(sys.executable), "ovn-k8s-overlay")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVN_K8S_")}
    proc = subprocess.run([exe, "minion-init", "--node-name=a", "--cluster-ip-subnet=10.244.0.0/16",
                           "--minion-switch-subnet=10.244.1.0/24", "--mtu", "99999999",
                           "--ovs-db=unix:/nonexistent/db.sock", "--ovn-nb=unix:/nonexistent/nb.sock"],
                          capture_output=True, text=True, env={**env, "OVN_K8S_CONFIG": "/dev/null"},
                          timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "ovn-k8s-overlay: error: --mtu: 99999999 is out of range (68..65535)"]


def test_every_numeric_option_has_a_range() -> None:
    """A new number without bounds would reach the code unchecked (issue 12: every option is
    range-checked with one error line)."""
    numeric = {name for name, opt in config.OPTIONS.items() if opt.type in (int, float)}
    assert numeric and all(config.OPTIONS[name].bounds for name in numeric), \
        sorted(n for n in numeric if not config.OPTIONS[n].bounds)


@pytest.mark.parametrize(("exe", "args", "message"), [
    ("ovn-k8s-watcher", ["--pod-batch-size", "0"], "--pod-batch-size: 0 is out of range (1..100000)"),
    ("ovn-k8s-watcher", ["--resync-interval", "-2"], "--resync-interval: -2 is out of range (0..604800)"),
    ("ovn-k8s-gateway-helper", ["--physical-bridge=b", "--physical-interface=e", "--conntrack-zone",
                                "70000"], "--conntrack-zone: 70000 is out of range (0..65535)"),
])
def test_the_daemons_refuse_a_bad_number_before_they_start(exe: str, args: list[str], message: str) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("OVN_K8S_")}
    nb = ["--ovn-nb=unix:/nonexistent/nb.sock"] if exe == "ovn-k8s-watcher" else []
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), exe), *args, *nb,
                           "--ovs-db=unix:/nonexistent/db.sock"],
                          capture_output=True, text=True, env={**env, "OVN_K8S_CONFIG": "/dev/null"},
                          timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"{exe}: error: {message}"]
