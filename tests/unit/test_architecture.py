"""docs/architecture.md's package table, enforced: every module's imports against its row.

The table is the single statement of the rules; this test reads it (see the doc for how a row
applies). Imports are read with `ast` from every module of ovn_k8s, watcher, gateway_helper
and sandbox and from bin/*, function-level (lazy) imports included, so a rule cannot be
dodged by importing late; relative imports are resolved.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("ovn_k8s", "watcher", "gateway_helper", "sandbox")
DOC = os.path.join(REPO, "docs", "architecture.md")
HEADER = "| unit | owns | may import | must not import |"


@dataclass(frozen=True)
class Unit:
    name: str
    may: tuple[str, ...]
    must_not: tuple[str, ...]


def load_units() -> dict[str, Unit]:
    lines = open(DOC, encoding="utf-8").read().splitlines()
    start = lines.index(HEADER) + 2
    units: dict[str, Unit] = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 4, f"docs/architecture.md: a row needs 4 cells: {line}"
        (name,) = re.findall(r"`([^`]+)`", cells[0])
        units[name] = Unit(name, tuple(re.findall(r"`([^`]+)`", cells[2])),
                           tuple(re.findall(r"`([^`]+)`", cells[3])))
    return units


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def unit_of(module: str, units: dict[str, Unit]) -> Unit | None:
    matches = [u for n, u in units.items() if within(module, n)]
    return max(matches, key=lambda u: len(u.name)) if matches else None


def project_modules() -> dict[str, str]:
    """module name -> file, for every module of our packages and every bin/ script."""
    out = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(REPO, package)):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, f), REPO)[:-3].replace(os.sep, ".")
                    out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = \
                        os.path.join(folder, f)
    for package in PACKAGES:       # a top-level package's docstring-only __init__: no row needed
        init = out.get(package)
        if init and not any(isinstance(n, (ast.Import, ast.ImportFrom))
                            for n in ast.walk(ast.parse(open(init, encoding="utf-8").read()))):
            del out[package]
    for script in os.listdir(os.path.join(REPO, "bin")):
        out[f"bin.{script}"] = os.path.join(REPO, "bin", script)
    return out


def imports_of(module: str, path: str, modules: dict[str, str]) -> Iterator[str]:
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            if base == "__future__":
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield full if full in modules else base


MODULES = project_modules()
UNITS = load_units()


def test_every_module_is_covered_by_a_row() -> None:
    missing = sorted(m for m in MODULES if unit_of(m, UNITS) is None)
    assert not missing, f"docs/architecture.md has no row for: {missing}"


def test_the_rows_name_real_modules() -> None:
    named = {n for u in UNITS.values() for n in (u.name, *u.may, *u.must_not) if n.split(".")[0] in
             (*PACKAGES, "bin")}
    unknown = sorted(n for n in named if not any(within(m, n) for m in MODULES))
    assert not unknown, f"docs/architecture.md names modules that do not exist: {unknown}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_table(module: str) -> None:
    unit = unit_of(module, UNITS)
    assert unit is not None
    broken = []
    for name in sorted(set(imports_of(module, MODULES[module], MODULES))):
        if any(within(name, banned) for banned in unit.must_not):
            broken.append(f"{name} (banned)")
        elif name.split(".")[0] in PACKAGES:
            if within(name, unit.name) or any(within(name, ok) for ok in unit.may):
                continue
            broken.append(f"{name} (not in 'may import')")
    assert not broken, f"{module} ({unit.name}) breaks docs/architecture.md: {broken}"


def test_no_import_cycles() -> None:
    graph = {m: {i for i in imports_of(m, p, MODULES) if i in MODULES and i != m}
             for m, p in MODULES.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = iter(range(sys.maxsize))

    def visit(v: str) -> None:          # Tarjan's strongly connected components
        index[v] = low[v] = next(counter)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_rules_catch_a_breach(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The checker itself: an ovn_k8s module importing the sandbox or ovsdbapp is refused."""
    fake = tmp_path / "m.py"
    fake.write_text("from sandbox.lab import cluster\nimport ovsdbapp\nfrom ovn_k8s import errors\n")
    unit = unit_of("ovn_k8s.cni.x", UNITS)
    assert unit is not None and unit.name == "ovn_k8s.cni"
    found = set(imports_of("ovn_k8s.cni.x", str(fake), MODULES))
    assert found == {"sandbox.lab.cluster", "ovsdbapp", "ovn_k8s.errors"}
    assert not any(within("sandbox.lab.cluster", ok) for ok in unit.may)
    assert any(within("ovsdbapp", banned) for banned in unit.must_not)
