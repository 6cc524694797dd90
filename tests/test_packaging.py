"""A wheel built from the project installs into a fresh venv and runs from there, data included."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import drivefi

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml needs tomllib or tomli")

ROOT = Path(drivefi.__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCENARIOS = sorted(p.stem for p in (ROOT / "scenarios").glob("*.yaml"))


def test_every_package_is_listed():
    """pyproject lists packages by hand (to map the data folders): none of drivefi/ is left out."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "drivefi").rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)


def test_extras_install_only_where_wheels_exist():
    extras = PYPROJECT["project"]["optional-dependencies"]
    carla = extras["carla"][0]
    assert 'sys_platform == "linux" and platform_machine == "x86_64"' in carla
    assert 'sys_platform == "win32" and platform_machine == "AMD64"' in carla
    assert 'python_version < "3.13"' in carla
    assert "sys_platform" in extras["ray"][0]


def _build_wheel(tmp: Path) -> Path:
    """Build from a copy of the project (the checkout stays clean), with a probe model file."""
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("drivefi", "scenarios", "models"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
    (src / "models").mkdir(exist_ok=True)
    (src / "models" / "probe.json").write_text("{}\n")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", str(src), "-w", str(tmp / "dist")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = (tmp / "dist").glob("drivefi-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    """A new venv with only the wheel installed; its dependencies come from this interpreter's
    site-packages through a .pth line (nothing is downloaded)."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    # .pth lines only extend sys.path: the shared site-packages' own .pth files (an editable
    # install of this checkout) are not processed, so drivefi can only come from the wheel.
    Path(purelib, "shared-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
         "--quiet", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return venv


@pytest.mark.slow
def test_wheel_installs_and_runs_from_a_fresh_venv(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for s in SCENARIOS:
        assert f"drivefi/scenarios/{s}.yaml" in names
    assert "drivefi/models/probe.json" in names

    venv = _fresh_venv(tmp_path, wheel)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    cwd = tmp_path / "elsewhere"  # the checkout is neither the cwd nor on the path
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    where = run(bindir / "python", "-c", "import drivefi, drivefi.util.resources as r; "
                "print(drivefi.__file__); print(r.bundled_dir('models'))")  # fmt: skip
    assert where.returncode == 0, where.stderr
    pkg, models = where.stdout.split()
    assert Path(pkg).is_relative_to(venv), pkg
    assert (Path(models) / "probe.json").is_file()

    version = run(bindir / "drivefi", "--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"drivefi {PYPROJECT['project']['version']}"

    listed = run(bindir / "drivefi", "scenarios", "--json")
    assert listed.returncode == 0, listed.stderr
    assert re.findall(r'"name": "([a-z_]+)"', listed.stdout) == SCENARIOS
    assert len(SCENARIOS) == 6

    out = tmp_path / "pipe"
    pipe = run(bindir / "drivefi", "pipeline", "lead_brake", "--out", out, "--budget", "5",
               "--training-runs", "10", "--durations", "1", "--workers", "1", "--json",
               timeout=600)  # fmt: skip
    assert pipe.returncode == 0, pipe.stderr[-2000:]
    assert "Traceback" not in pipe.stderr
    for artefact in ("golden.parquet", "model.json", "results.db", "report.html"):
        assert (out / artefact).is_file(), artefact
