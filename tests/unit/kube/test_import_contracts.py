"""The CNI plugin imports ovn_k8s.kube.rest once per pod ADD/DEL: it must stay light (V11).

Checked in a fresh interpreter, since this test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("kubernetes", "ovsdbapp", "yaml")


def _loaded_after(statement: str) -> set[str]:
    code = (f"import json, sys\n{statement}\n"
            f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("module", ["ovn_k8s.kube.rest", "ovn_k8s.kube.lite", "ovn_k8s.kube.params",
                                    "ovn_k8s.kube.errors",
                                    "ovn_k8s.kube.watch", "ovn_k8s.kube.workqueue",
                                    "ovn_k8s.kube.auth"])
def test_kube_modules_do_not_import_heavy_packages(module):
    assert _loaded_after(f"import {module}") == set()


def test_the_check_itself_can_fail():
    assert _loaded_after("import yaml") == {"yaml"}


def test_yaml_is_loaded_only_when_a_kubeconfig_is_read(tmp_path):
    cfg = tmp_path / "config"
    cfg.write_text("apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                   "contexts: [{name: c, context: {cluster: c}}]\n"
                   "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n")
    assert _loaded_after(f"from ovn_k8s.kube import auth; auth.from_kubeconfig({str(cfg)!r})") \
        == {"yaml"}
