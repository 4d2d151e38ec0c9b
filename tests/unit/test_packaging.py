"""The installed executables start our code directly (pyproject.toml, PEP 660 editable install).

A `setup.py develop` install wraps every script in code that imports pkg_resources first,
~100 ms per start; the CNI plugin pays that once per pod (docs/performance.md, "CNI").
"""

from __future__ import annotations

import ast
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _scripts() -> list[str]:
    tree = ast.parse(open(os.path.join(REPO, "setup.py"), encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "scripts":
            return [os.path.basename(elt.value) for elt in node.value.elts]
    raise AssertionError("setup.py has no scripts=")


@pytest.mark.parametrize("name", _scripts())
def test_installed_script_runs_our_code_without_a_pkg_resources_wrapper(name):
    installed = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(installed):
        pytest.fail(f"{installed} is missing: run scripts/install.sh (pip install -e .)")
    text = open(installed, encoding="utf-8").read()
    assert "pkg_resources" not in text and "EASY-INSTALL" not in text, installed
    body = open(os.path.join(REPO, "bin", name), encoding="utf-8").read()
    # The same program, only the #! differs (after editing bin/, re-run scripts/install.sh).
    assert text.split("\n", 1)[1] == body.split("\n", 1)[1], f"{installed} is not a copy of bin/{name}"
