"""One module for netlink, one for the local Open_vSwitch DB, and the contract of the one speed
measure that touches another library's import machinery (`ovn_k8s.netlink._pyroute2`).

The import rules are checked on the source (every module of the shipped packages); the pyroute2
measure in fresh interpreters, since this test process may have imported pyroute2 already.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ovn_k8s import netlink

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("ovn_k8s", "watcher", "gateway_helper", "sandbox")


def _modules() -> Iterator[tuple[str, set[str]]]:
    """(path relative to the repo, top-level-and-dotted names it imports) of every module."""
    for package in PACKAGES:
        for root, _, files in os.walk(os.path.join(REPO, package)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(root, name)
                tree = ast.parse(open(path, encoding="utf-8").read(), path)
                names: set[str] = set()
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        names.update(alias.name for alias in node.names)
                    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                        names.add(node.module)
                yield os.path.relpath(path, REPO), names


def _importers(top: str) -> set[str]:
    return {path for path, names in _modules() if any(n == top or n.startswith(top + ".") for n in names)}


def test_only_ovn_k8s_netlink_imports_pyroute2() -> None:
    assert _importers("pyroute2") == {"ovn_k8s/netlink.py"}


def test_only_local_ovsdb_and_the_nb_package_import_python_ovs() -> None:
    # ... and ovs_daemon: the daemons' pidfile, detach, vlog and ovs-appctl socket are python-ovs's;
    # ovsdb_remote: the bounded get_schema round trip both OVSDB clients open with.
    assert {p for p in _importers("ovs") if not p.startswith("ovn_k8s/nb/")
            and p not in ("ovn_k8s/ovs_daemon.py", "ovn_k8s/ovsdb_remote.py")} == {"ovn_k8s/local_ovsdb.py"}


def test_the_checks_find_imports() -> None:
    assert "ovn_k8s/local_ovsdb.py" in _importers("ovn_k8s.ovsdb_remote")


# -- the pyroute2 import measure (netlink._pyroute2's NOTE) --------------------------------------


def test_installed_pyroute2_is_the_version_the_measure_was_taken_with() -> None:
    """If this fails, pyroute2 changed: measure the import again (bench/cni_bench.py prints it),
    then update PYROUTE2_MEASURED and the pin in setup.py, or drop the measure."""
    assert netlink.pyroute2_version() == importlib.metadata.version("pyroute2") == netlink.PYROUTE2_MEASURED


def test_setup_py_pins_that_version() -> None:
    tree = ast.parse(open(os.path.join(REPO, "setup.py"), encoding="utf-8").read())
    requires = next(node.value for node in ast.walk(tree)
                    if isinstance(node, ast.keyword) and node.arg == "install_requires")
    assert isinstance(requires, ast.List)
    pins = [elt.value for elt in requires.elts if isinstance(elt, ast.Constant) and "pyroute2" in elt.value]
    assert pins == [f"pyroute2=={netlink.PYROUTE2_MEASURED}"]


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_parts_load_without_the_whole_library() -> None:
    out = _run("import sys\n"
               "from ovn_k8s import netlink\n"
               "parts = netlink._pyroute2()\n"
               "print(sorted(vars(parts)), 'pyroute2.ndb' in sys.modules, 'pyroute2.ipdb' in sys.modules)\n")
    assert out == "['IPRoute', 'NetlinkError'] False False"


def test_pyroute2_stays_whole_for_other_users_after_netlink_loaded_its_parts() -> None:
    out = _run("from ovn_k8s import netlink\n"
               "parts = netlink._pyroute2()\n"
               "import pyroute2, pyroute2.ethtool\n"
               "from pyroute2 import IPRoute, NDB\n"
               "assert IPRoute is parts.IPRoute and pyroute2.NetlinkError is parts.NetlinkError\n"
               "assert pyroute2.ethtool.Ethtool\n"
               "print(pyroute2.__version__, NDB.__name__)\n")
    assert out == f"{netlink.PYROUTE2_MEASURED} NDB"


def test_another_pyroute2_version_gets_the_plain_import() -> None:
    out = _run("import sys\n"
               "from ovn_k8s import netlink\n"
               "netlink.PYROUTE2_MEASURED = '0.0.0'\n"
               "parts = netlink._pyroute2()\n"
               "import pyroute2\n"
               "print('pyroute2.ndb' in sys.modules, pyroute2.IPRoute is parts.IPRoute)\n")
    assert out == "True True"


@pytest.mark.parametrize("module", ["ovn_k8s.netlink", "ovn_k8s.local_ovsdb"])
def test_importing_the_modules_loads_no_pyroute2_and_no_ovsdbapp(module: str) -> None:
    out = _run(f"import sys\nimport {module}\n"
               "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyroute2', 'ovsdbapp', 'kubernetes'}),\n"
               "      'ovn_k8s.nb.connection' in sys.modules)\n")
    assert out == "[] False"  # the NB engine is never loaded for the local OVS (~4 ms of imports)
