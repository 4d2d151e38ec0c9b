"""Where the real control plane's binaries come from (envtest's KUBEBUILDER_ASSETS, else the
repository's .k8s-assets) and the one-line reason given when they cannot be used; and the
pytest plugin that reports marked tests NOT RUN without them, or fails them under CI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from sandbox import control_plane
from sandbox.control_plane import CONTROL_PLANE_BINARIES, DEFAULT_ASSETS, find_assets, missing_binaries, not_run_reason

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _assets(tmp_path, names=CONTROL_PLANE_BINARIES, mode=0o755):
    for name in names:
        path = tmp_path / name
        path.write_text("#!/bin/sh\n")
        path.chmod(mode)
    return tmp_path


def test_the_variable_wins_even_over_an_existing_default(tmp_path):
    assert find_assets({"KUBEBUILDER_ASSETS": str(tmp_path)}) == tmp_path
    expected = DEFAULT_ASSETS if DEFAULT_ASSETS.is_dir() else None
    assert find_assets({}) == expected
    assert find_assets({"KUBEBUILDER_ASSETS": ""}) == expected


def test_complete_assets_have_no_reason(tmp_path):
    env = {"KUBEBUILDER_ASSETS": str(_assets(tmp_path))}
    assert missing_binaries(tmp_path) == []
    assert not_run_reason(env=env) is None


def test_missing_and_non_executable_binaries_are_named(tmp_path):
    _assets(tmp_path, ["etcd", "kube-apiserver"])
    _assets(tmp_path, ["kube-scheduler"], mode=0o644)
    env = {"KUBEBUILDER_ASSETS": str(tmp_path)}
    assert missing_binaries(tmp_path) == ["kube-controller-manager", "kube-scheduler"]
    reason = not_run_reason(env=env)
    assert reason == (f"KUBEBUILDER_ASSETS={tmp_path} lacks kube-controller-manager, "
                      "kube-scheduler (missing or not executable)")
    # envtest's own minimum is enough when that is all a caller needs.
    assert not_run_reason(["etcd", "kube-apiserver"], env=env) is None


def test_a_variable_naming_no_directory_says_so(tmp_path):
    absent = tmp_path / "absent"
    assert not_run_reason(env={"KUBEBUILDER_ASSETS": str(absent)}) == \
        f"KUBEBUILDER_ASSETS={absent} is not a directory"


def test_no_assets_at_all_says_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setattr(control_plane, "DEFAULT_ASSETS", tmp_path / "absent")
    reason = not_run_reason(env={})
    assert reason is not None
    assert "KUBEBUILDER_ASSETS is unset" in reason and "scripts/install.sh" in reason


def _run_marked_test(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ("tests.real_control_plane",)\n')
    (tmp_path / "test_marked.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.mark.realk8s
        def test_needs_it(control_plane):
            pass

        def test_plain():
            pass
    """))
    full_env = {**os.environ, "PYTHONPATH": REPO, **env}
    full_env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
         "markers=realk8s: x", *args, str(tmp_path)],
        capture_output=True, text=True, env=full_env, cwd=tmp_path, timeout=120, check=False)


def test_without_assets_marked_tests_are_reported_not_run(tmp_path):
    empty = tmp_path / "empty-assets"
    empty.mkdir()
    tests = tmp_path / "t"
    tests.mkdir()
    proc = _run_marked_test(tests, KUBEBUILDER_ASSETS=str(empty), CI="")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (f"NOT RUN: real control plane: KUBEBUILDER_ASSETS={empty} lacks etcd, "
            "kube-apiserver, kube-controller-manager, kube-scheduler") in proc.stdout
    assert "1 passed, 1 deselected" in proc.stdout


def test_under_ci_missing_assets_fail_the_marked_tests(tmp_path):
    empty = tmp_path / "empty-assets"
    empty.mkdir()
    tests = tmp_path / "t"
    tests.mkdir()
    proc = _run_marked_test(tests, KUBEBUILDER_ASSETS=str(empty), CI="true")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "real control plane needed (realk8s)" in proc.stdout
    assert "1 passed, 1 error" in proc.stdout
    assert "NOT RUN" not in proc.stdout


def test_not_run_is_reported_under_pytest_xdist_too(tmp_path):
    # scripts/test.sh runs the suite on two xdist workers: the workers deselect, the
    # controller prints the summary.
    empty = tmp_path / "empty-assets"
    empty.mkdir()
    tests = tmp_path / "t"
    tests.mkdir()
    proc = _run_marked_test(tests, "-n", "2", KUBEBUILDER_ASSETS=str(empty), CI="")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"NOT RUN: real control plane: KUBEBUILDER_ASSETS={empty} lacks etcd" in proc.stdout
    assert "1 passed" in proc.stdout
