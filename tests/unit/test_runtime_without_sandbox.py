"""The runtime (ovn_k8s, watcher, gateway_helper) runs on a node without the sandbox.

In a fresh interpreter where `sandbox` cannot be imported (its sys.modules entry is None,
which makes every import of it fail), every runtime module imports. The import-rule test
(test_architecture.py) says the same statically; this proves it at run time, lazy imports
and import side effects included.
"""

from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNTIME = ("ovn_k8s", "watcher", "gateway_helper")


def runtime_modules() -> list[str]:
    out = []
    for package in RUNTIME:
        for folder, _, files in os.walk(os.path.join(REPO, package)):
            for f in sorted(files):
                if f.endswith(".py") and f != "__main__.py":
                    rel = os.path.relpath(os.path.join(folder, f), REPO)[:-3].replace(os.sep, ".")
                    out.append(rel.removesuffix(".__init__"))
    return sorted(out)


def test_every_runtime_module_imports_without_the_sandbox() -> None:
    modules = runtime_modules()
    code = ("import importlib, sys\n"
            "sys.modules['sandbox'] = None\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "assert not any(m == 'sandbox' or m.startswith('sandbox.') for m in sys.modules if sys.modules[m])\n"
            "print(len(sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert len(modules) > 50
