"""ovn-k8s-watcher without servers: flags, where the API server comes from, the pidfile, and
the Prometheus text the metrics endpoint serves."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from ovn_k8s import config
from ovn_k8s.errors import ConfigError
from watcher import daemon
from watcher.metrics import Counter, Gauge, Histogram, WatcherMetrics


def _cfg(**values):
    return config.resolve(values, daemon.OPTIONS, env={"OVN_K8S_CONFIG": "/dev/null"},
                          ovs_external_ids=lambda: {})


def test_help_documents_every_flag():
    out = subprocess.run([sys.executable, "-m", "watcher", "--help"], capture_output=True,
                         text=True, check=True, cwd=os.path.dirname(os.path.dirname(
                             os.path.dirname(os.path.abspath(__file__))))).stdout
    for name in daemon.OPTIONS:
        assert config.OPTIONS[name].flag in out, name
    for action in daemon.build_parser()._actions:
        assert action.help, action.option_strings


def test_kubeconfig_wins_over_the_ovs_api_server(tmp_path):
    kc = tmp_path / "kc"
    kc.write_text("apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                  "contexts: [{name: c, context: {cluster: c}}]\n"
                  "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:7'}}]\n")
    cfg = _cfg(kubeconfig=str(kc), k8s_api_server="10.0.0.1:8080")
    assert daemon.kube_params(cfg, environ={}).server == "http://127.0.0.1:7"
    # $KUBECONFIG too
    cfg = _cfg(k8s_api_server="10.0.0.1:8080")
    assert daemon.kube_params(cfg, environ={"KUBECONFIG": str(kc)}).server == \
        "http://127.0.0.1:7"


def test_ovs_style_settings(tmp_path):
    cfg = _cfg(k8s_api_server="10.0.0.1:8080", k8s_api_token="t0k")
    params = daemon.kube_params(cfg, environ={})
    assert params.server == "http://10.0.0.1:8080" and params.token == "t0k"


def test_ovs_style_https_writes_the_ca_certificate(tmp_path):
    pem = "-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----"
    ca = tmp_path / "k8s-ca.crt"
    cfg = _cfg(k8s_api_server="https://10.0.0.1:6443", k8s_ca_certificate=str(ca),
               k8s_ca_certificate_data=pem)
    params = daemon.kube_params(cfg, environ={})
    assert params.ca_file == str(ca)
    assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----\nAAAA\n")


def test_no_api_server_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="no Kubernetes API server"):
        daemon.kube_params(_cfg(), environ={})


def test_missing_kubeconfig_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        daemon.kube_params(_cfg(kubeconfig=str(tmp_path / "nope")), environ={})


def test_prometheus_text():
    c = Counter("x_total", "things", ("kind",))
    c.inc(kind="a")
    c.inc(2, kind="a")
    c.inc(kind='b"q')
    g = Gauge("g", "a gauge")
    g.set(1.5)
    h = Histogram("lat_seconds", "latency", buckets=(0.1, 1.0))
    for v in (0.05, 0.5, 0.5, 7):
        h.observe(v)
    text = "\n".join(m.header()[1] + "\n" + "\n".join(m.samples()) for m in (c, g, h))
    assert 'x_total{kind="a"} 3' in text
    assert 'x_total{kind="b\\"q"} 1' in text
    assert "g 1.5" in text
    assert 'lat_seconds_bucket{le="0.1"} 1' in text
    assert 'lat_seconds_bucket{le="1"} 3' in text
    assert 'lat_seconds_bucket{le="+Inf"} 4' in text
    assert "lat_seconds_count 4" in text
    assert "lat_seconds_sum 8.05" in text
    with pytest.raises(ValueError):
        c.inc(other="x")


def test_every_watcher_metric_renders_with_help_and_type():
    m = WatcherMetrics()
    m.events.inc(resource="pods", type="ADDED")
    text = m.render()
    names = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
    assert ("ovnk8s_watcher_events_total", "counter") in names
    assert ("ovnk8s_watcher_reconcile_duration_seconds", "histogram") in names
    assert ("ovnk8s_watcher_nb_transactions_total", "counter") in names
    assert len(names) == len(m.all())
    assert all(re.match(r"^[a-z][a-z0-9_]*$", n) for n, _ in names)


def test_home_kubeconfig_comes_after_the_ovs_style_server(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "contexts: [{name: c, context: {cluster: c}}]\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n")
    monkeypatch.setenv("HOME", str(home))
    assert daemon.kube_params(_cfg(k8s_api_server="10.0.0.1:8080"), environ={}).server == \
        "http://10.0.0.1:8080"
    assert daemon.kube_params(_cfg(), environ={}).server == "http://127.0.0.1:9"


def test_the_original_unix_socket_key_is_the_watchers_nb_unless_ovn_nb_is_given(tmp_path):
    conf = tmp_path / "ovn_k8s.conf"
    conf.write_text("[default]\nunix_socket = /run/ovn/ovnnb_db.sock\n")
    args = daemon.build_parser().parse_args(["--config", str(conf), "--ovs-db",
                                             f"unix:{tmp_path}/none.sock"])
    assert daemon.resolve(args).ovn_nb == "unix:/run/ovn/ovnnb_db.sock"
    args = daemon.build_parser().parse_args(["--config", str(conf), "--ovs-db",
                                             f"unix:{tmp_path}/none.sock", "--ovn-nb", "tcp:127.0.0.1:6641"])
    assert daemon.resolve(args).ovn_nb == "tcp:127.0.0.1:6641"
