"""Shared fixtures: golden runs are recorded once per test session and reused."""

from __future__ import annotations

import pytest

from drivefi.recorder import Golden, record_golden
from drivefi.scenario import load_scenario


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
