"""Usage errors of every kind: one line on stderr, exit 2, never a traceback."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import drivefi
from drivefi.cli import build_app, main

# (argv, a phrase the error line must contain); none of these runs a simulation
USAGE_ERRORS = [
    (["--bogus"], "No such option: --bogus"),
    (["nope"], "No such command 'nope'"),
    (["record"], "Missing argument"),
    (["record", "lead_brake", "--seed", "abc"], "--seed"),
    (["record", "lead_brake", "--seed"], "--seed"),
    (["record", "lead_brake", "--colour", "red"], "No such option: --colour"),
    (["pipeline", "lead_brake", "--out", "x", "--workers", "0"], "--workers"),
    (["pipeline", "lead_brake", "--out", "x", "--budget", "-3"], "--budget"),
    (["pipeline", "lead_brake"], "Missing option '--out'"),
    (["campaign", "status"], "Missing option '--db'"),
    (["campaign", "run", "lead_brake", "p.csv", "--db", "r.db", "--workers", "zero"], "--workers"),
    (["plan", "random", "lead_brake", "--count", "3", "--out", "p.csv"], "--model"),
    (["plan", "random", "lead_brake", "--model", "1-random", "--count", "0", "--out", "p"], "--count"),
    (["plan", "nope"], "No such command 'nope'"),
    (["fit", "--out", "m.json"], "Missing argument"),
    (["fit", "a.parquet", "--out", "m.json", "--holdout", "2"], "--holdout"),
    (["search", "lead_brake", "--model", "m.json", "--out", "p.csv", "--min-prob", "x"], "--min-prob"),
    (["scenarios", "extra"], "unexpected extra argument"),
]  # fmt: skip

# bad choice values: checked by the command, the same one-line contract
BAD_CHOICES = [
    (["record", "lead_brake", "--sim", "gazebo"], "--sim: expected embedded or carla"),
    (["plan", "random", "lead_brake", "--model", "2-random", "--count", "2", "--out", "p.csv"], "--model"),
    (["pipeline", "lead_brake", "--out", "o", "--durations", "1,x"], "--durations"),
    (["pipeline", "lead_brake", "--out", "o", "--sim", "carla", "--workers", "2"], "--workers 2: one CARLA server"),
]  # fmt: skip


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(("argv", "phrase"), USAGE_ERRORS, ids=lambda a: " ".join(a))
def test_usage_error_is_one_line_exit_2(argv, phrase, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    cap = capsys.readouterr()
    line = _one_line(cap.err)
    assert phrase.lower() in line.lower(), line
    assert "--help" in line  # says where to look
    assert cap.out == ""


@pytest.mark.parametrize(("argv", "phrase"), BAD_CHOICES, ids=lambda a: " ".join(a))
def test_bad_choice_is_one_line_exit_2(argv, phrase, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert phrase in _one_line(capsys.readouterr().err)
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("argv", [[], ["plan"], ["campaign"]], ids=["drivefi", "plan", "campaign"])
def test_missing_command_shows_help_and_exits_2(argv, capsys):
    assert main(argv) == 2
    cap = capsys.readouterr()
    assert "Usage:" in cap.out + cap.err
    assert "Traceback" not in cap.out + cap.err
    assert "missing command" in cap.err


def test_version(capsys):
    assert main(["--version"]) == 0
    cap = capsys.readouterr()
    assert cap.out == f"drivefi {drivefi.__version__}\n"
    assert cap.err == ""


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("scenarios", "record", "plan", "campaign", "report", "fit", "search", "pipeline"):
        assert cmd in out


@pytest.mark.parametrize(
    "argv", [["--workers"], ["pipeline", "lead_brake", "--out", "o", "--seed", "abc"], []]
)
def test_real_process_usage_errors(argv, tmp_path):
    """Through ``python -m drivefi``: the exit code and stderr a shell sees."""
    r = subprocess.run(
        [sys.executable, "-m", "drivefi", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(Path(drivefi.__file__).parents[1]), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1, r.stderr


def test_errors_caught_are_the_ones_typer_raises():
    """The handler catches the exception classes of the click that typer actually runs on."""
    import drivefi.cli as cli

    cmd = typer.main.get_command(build_app())
    click_core = sys.modules[type(cmd).__mro__[1].__module__]
    assert issubclass(cli.UsageError, cli.ClickException)
    assert (
        sys.modules[cli.ClickException.__module__].__name__.rsplit(".", 1)[0]
        == (click_core.__name__.rsplit(".", 1)[0])
    )


def test_cli_is_on_top_of_the_import_graph():
    """No library module imports the command line."""
    root = Path(drivefi.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if root / "cli" in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n == "drivefi.cli" or n.startswith("drivefi.cli.") for n in names):
                offenders.append(str(path.relative_to(root)))
    assert offenders == [] or offenders == ["__main__.py"], offenders


def test_no_import_circles_between_modules():
    """No drivefi module imports (at the top or inside a function) one that imports it back."""
    import graphlib

    root = Path(drivefi.__file__).parent
    mods = {}
    for path in root.rglob("*.py"):
        parts = ["drivefi", *path.relative_to(root).with_suffix("").parts]
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def module_of(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for t in filter(None, map(module_of, names)):
                if t != m and not m.startswith(t + "."):  # a package's own __init__ is no circle
                    graph[m].add(t)
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the circle


def test_json_output_is_strict_json(capsys):
    """Infinities and NaN (e.g. a gate of unbounded width) come out as null, never `Infinity`."""
    import json

    import numpy as np

    from drivefi.cli.options import emit_json

    emit_json({"a": float("inf"), "b": [np.float64("nan"), 1.5], "c": {"d": -np.inf}, "e": 2})
    out = capsys.readouterr().out
    assert json.loads(out, parse_constant=lambda c: pytest.fail(c)) == {
        "a": None, "b": [None, 1.5], "c": {"d": None}, "e": 2,
    }  # fmt: skip
