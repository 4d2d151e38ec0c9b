"""etc/systemd: the daemons' units do what systemd will do with them. There is no systemd in
the test environment, so each unit's start is played the way systemd plays a Type=forking
service: its Environment= and EnvironmentFile= (the shipped /etc/default file), $VARIABLES
expanded in ExecStart, the command run until it returns, then the main PID read from PIDFile=,
`ovs-appctl` against it, and SIGTERM (systemd's stop) with the unit's TimeoutStopSec.
Only the directories move into the test's: /run/openvswitch and /var/log/openvswitch."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox.kubeapi import KubeApiServer

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "etc" / "systemd"
BIN = os.path.dirname(sys.executable)


def read_unit(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNITS / name)
    return unit


def read_default(name: str) -> dict[str, str]:
    out = {}
    for line in (UNITS / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = shlex.split(value)[0] if value.strip('"') else ""
    return out


def moved(text: str, tmp: Path) -> str:
    return text.replace("/run/openvswitch", str(tmp)).replace("/var/log/openvswitch", str(tmp))


def exec_start(unit: configparser.ConfigParser, env: dict[str, str]) -> list[str]:
    words: list[str] = []
    for word in shlex.split(unit["Service"]["ExecStart"]):
        m = re.fullmatch(r"\$(\w+)", word)
        words.extend(env.get(m[1], "").split() if m else [word])
    assert "/" not in words[0]       # found in systemd's search path; install.sh makes it absolute
    return [os.path.join(BIN, words[0]), *words[1:]]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            return next(line.split()[1] for line in f if line.startswith("State:")) != "Z"
    except (OSError, StopIteration):
        return False


@pytest.mark.parametrize("name", ["ovn-k8s-watcher", "ovn-k8s-gateway-helper", "ovn-docker-driver"])
def test_units_are_forking_with_a_pidfile_and_restart_on_failure(name: str) -> None:
    unit = read_unit(f"{name}.service")
    service = unit["Service"]
    assert service["Type"] == "forking"
    assert service["PIDFile"] == f"/run/openvswitch/{name}.pid"
    assert "OVS_RUNDIR=/run/openvswitch" in service["Environment"]
    assert service["Restart"] == "on-failure"
    assert service["EnvironmentFile"] == f"-/etc/default/{name}"
    assert (UNITS / f"{name}.default").exists()
    words = shlex.split(service["ExecStart"])
    assert words[0] == name and {"--detach", "--pidfile", "--log-file"} <= set(words)
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_watcher_unit_starts_reports_and_stops_as_systemd_would_run_it(tmp_path: Path) -> None:
    unit = read_unit("ovn-k8s-watcher.service")
    service = unit["Service"]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OVN_K8S_", "OVS_")) and k != "KUBECONFIG"}
    env.update(dict(w.split("=", 1) for w in shlex.split(moved(service["Environment"], tmp_path))))
    env.update(read_default("ovn-k8s-watcher.default"))
    with KubeApiServer() as kube:
        # What an operator puts in /etc/default/ovn-k8s-watcher.
        env.update(OVN_K8S_CONFIG="/dev/null", OVN_K8S_OVN_NB=f"unix:{tmp_path}/nb.sock",
                   OVN_K8S_K8S_API_SERVER=kube.url, OVN_K8S_OVS_DB=f"unix:{tmp_path}/no.sock")
        start = subprocess.run(exec_start(unit, env), env=env, capture_output=True, text=True,
                               timeout=60, check=False)
        assert start.returncode == 0, start.stderr
        main_pid = int(Path(moved(service["PIDFile"], tmp_path)).read_text())
        try:
            assert alive(main_pid)
            status = subprocess.run(["ovs-appctl", "-t", "ovn-k8s-watcher", "status"], env=env,
                                    capture_output=True, text=True, timeout=10, check=False)
            assert status.returncode == 0 and "synced: no" in status.stdout, status
            os.kill(main_pid, signal.SIGTERM)
            deadline = time.monotonic() + float(service["TimeoutStopSec"])
            while alive(main_pid):
                assert time.monotonic() < deadline, "not stopped within TimeoutStopSec"
                time.sleep(0.05)
            assert not Path(moved(service["PIDFile"], tmp_path)).exists()
            assert "SIGTERM: stopping" in (tmp_path / "ovn-k8s-watcher.log").read_text()
        finally:
            if alive(main_pid):
                os.kill(main_pid, signal.SIGKILL)


def test_the_gateway_helper_unit_fails_clearly_until_configured(tmp_path: Path) -> None:
    unit = read_unit("ovn-k8s-gateway-helper.service")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OVN_K8S_", "OVS_"))}
    env.update(dict(w.split("=", 1) for w in shlex.split(moved(unit["Service"]["Environment"],
                                                               tmp_path))))
    env.update(read_default("ovn-k8s-gateway-helper.default"), OVN_K8S_CONFIG="/dev/null")
    start = subprocess.run(exec_start(unit, env), env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert start.returncode == 2
    assert "the following arguments are required: --physical-bridge, --physical-interface" \
        in start.stderr


def test_the_docker_driver_unit_fails_clearly_without_an_ovs_database(tmp_path: Path) -> None:
    unit = read_unit("ovn-docker-driver.service")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OVN_K8S_", "OVS_"))}
    env.update(dict(w.split("=", 1) for w in shlex.split(moved(unit["Service"]["Environment"],
                                                               tmp_path))))
    env.update(read_default("ovn-docker-driver.default"), OVN_K8S_CONFIG="/dev/null",
               OVN_K8S_OVS_DB=f"unix:{tmp_path}/no.sock")
    start = subprocess.run(exec_start(unit, env), env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert start.returncode == 1
    lines = start.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ovn-docker-driver: error:"), start.stderr
    assert not (tmp_path / "ovn-docker-driver.pid").exists()
