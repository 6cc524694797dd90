"""Shared fixtures: golden runs are recorded once per test session and reused."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The fakes (tests/drivefi_fakes: a fake CARLA server and a pool of them) are imported by name in
# worker processes too (process pools, Ray actors): they inherit this search path.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (_TESTS, os.environ.get("PYTHONPATH", "")) if p
)

from drivefi.run.golden import Golden, record_golden  # noqa: E402
from drivefi.world.scenario import load_scenario  # noqa: E402


class GoldenCache:
    """Golden run (trace + per-step snapshots) of a bundled scenario, recorded on first use."""

    def __init__(self) -> None:
        self._runs: dict[str, Golden] = {}

    def __call__(self, name: str) -> Golden:
        if name not in self._runs:
            self._runs[name] = record_golden(load_scenario(name))
        return self._runs[name]


@pytest.fixture(scope="session")
def golden_run() -> GoldenCache:
    return GoldenCache()
