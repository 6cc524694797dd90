"""The package reads like the data flow: layers import downward only, choices are made once.

Checked from the source (``docs/design.md`` shows the layers): no import circle between
drivefi's folders; no simulator name compared with a string below the CLI; no reference-vs-agent
branch outside the stack package; no function below the CLI with more than 10 parameters; the
trace format imports no simulator and no stack."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "drivefi"
SIMULATORS = {"embedded", "carla"}


def sources() -> list[tuple[str, Path, ast.Module]]:
    out = []
    for f in sorted(PKG.rglob("*.py")):
        mod = ".".join(f.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")
        out.append((mod, f, ast.parse(f.read_text(), str(f))))
    return out


def unit(mod: str) -> str:
    """The folder (or top-level module) a module belongs to: drivefi.X."""
    return ".".join(mod.split(".")[:2])


def imported(mod: str, path: Path, node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
            base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
        return [base] + [f"{base}.{a.name}" for a in node.names]
    return []


def below_cli(path: Path) -> bool:
    return path.relative_to(PKG).parts[0] != "cli"


def test_no_import_circle_between_folders():
    known = {m for m, _, _ in sources()}
    graph: dict[str, set[str]] = defaultdict(set)
    for mod, path, tree in sources():
        for node in ast.walk(tree):
            for name in imported(mod, path, node):
                while name not in known and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name.startswith("drivefi") and unit(name) != unit(mod):
                    graph[unit(mod)].add(unit(name))
    # drivefi itself (its __version__ and the drivefi.inject re-export) sits at the bottom
    graph.pop("drivefi", None)
    state: dict[str, int] = {}

    def visit(u: str, path: list[str]) -> None:
        state[u] = 1
        for v in sorted(graph.get(u, ())):
            assert state.get(v) != 1, f"import circle: {' -> '.join([*path, u, v])}"
            if v not in state:
                visit(v, [*path, u])
        state[u] = 2

    for u in sorted(graph):
        if u not in state:
            visit(u, [])


def _names_a_simulator(node: ast.Compare) -> bool:
    """``x == "carla"``, ``x != "embedded"``, ``x in ("embedded", ...)`` (a key looked up in a
    mapping, ``"carla" in data``, is not a choice of simulator)."""
    lefts = (node.left, *node.comparators[:-1])
    for op, left, right in zip(node.ops, lefts, node.comparators, strict=True):
        if isinstance(op, ast.Eq | ast.NotEq):
            sides = (left, right)
        elif isinstance(op, ast.In | ast.NotIn) and isinstance(
            right, ast.Tuple | ast.List | ast.Set
        ):
            sides = tuple(right.elts)
        else:
            continue
        if any(isinstance(c, ast.Constant) and c.value in SIMULATORS for c in sides):
            return True
    return False


def test_no_simulator_name_compared_below_the_cli():
    hits = []
    for _, path, tree in sources():
        if not below_cli(path):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and _names_a_simulator(node):
                hits.append(f"{path.relative_to(PKG)}:{node.lineno}")
    assert not hits, f"simulator names compared below the CLI: {hits}"


def test_no_reference_vs_agent_branch_outside_the_stack_package():
    hits = []
    for _, path, tree in sources():
        rel = path.relative_to(PKG)
        if rel.parts[0] in ("stacks", "cli"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name | ast.Attribute):
                name = node.id if isinstance(node, ast.Name) else node.attr
                if name == "is_reference":
                    hits.append(f"{rel}:{node.lineno} is_reference")
            if isinstance(node, ast.Compare):
                for side in (node.left, *node.comparators):
                    if isinstance(side, ast.Constant) and side.value == "reference":
                        hits.append(f"{rel}:{node.lineno} == 'reference'")
    assert not hits, f"reference-vs-agent branches outside drivefi/stacks: {hits}"


def test_no_function_below_the_cli_takes_more_than_10_parameters():
    hits = []
    for _, path, tree in sources():
        if not below_cli(path):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                a = node.args
                names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
                n = len(names) + bool(a.vararg) + bool(a.kwarg) - (names[:1] in (["self"], ["cls"]))
                if n > 10:
                    hits.append(f"{path.relative_to(PKG)}:{node.lineno} {node.name} ({n})")
    assert not hits, f"functions with more than 10 parameters: {hits}"


@pytest.mark.parametrize("module", ["drivefi.run.trace", "drivefi.core"])
def test_low_layers_load_no_simulator_and_no_stack(module):
    """Reading a trace (the 3-TBN reads traces of stacks it does not know) loads neither."""
    code = (
        f"import sys, {module}; "
        "print(','.join(m for m in sys.modules if m.startswith(('drivefi.stacks', "
        "'drivefi.bridges', 'drivefi.run.simulate', 'unittest'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", out.stdout


def test_core_imports_no_other_part_of_drivefi():
    tree = ast.parse((PKG / "core.py").read_text())
    names = [n for node in ast.walk(tree) for n in imported("drivefi.core", PKG / "core.py", node)]
    assert not [n for n in names if n.startswith("drivefi")], names


def test_the_wheel_carries_no_test_fakes():
    """The fake CARLA server (which imports unittest.mock) lives with the tests."""
    assert not list(PKG.rglob("testing.py")) and not list(PKG.rglob("fake_servers.py"))
    for _, path, tree in sources():
        for node in ast.walk(tree):
            for name in imported("", path, node) if not getattr(node, "level", 0) else []:
                assert not name.startswith("unittest"), f"{path.relative_to(PKG)} imports {name}"
