"""Injection points and the injector hook every ADS module output passes through.

Injection is source-level (SLI): each module declares its outputs that a fault may corrupt, with
their physical range, and calls ``injector.apply(point, value, k)`` on them. The plain
:class:`Injector` corrupts nothing; :class:`drivefi.faults.FaultInjector` holds the active faults.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InjectionPoint:
    name: str  # "module.output"
    lo: float  # physical range, used for value grids and random values
    hi: float
    unit: str
    doc: str

    @property
    def module(self) -> str:
        return self.name.split(".", 1)[0]


class Injector:
    """The no-fault hook: passes values through and remembers what the stack saw at each point."""

    def __init__(self) -> None:
        self.seen: dict[str, np.ndarray] = {}

    def apply(self, point: str, value: np.ndarray, k: np.ndarray) -> np.ndarray:
        out = self.corrupt(point, np.asarray(value, dtype=float), k)
        self.seen[point] = out
        return out

    def corrupt(self, point: str, value: np.ndarray, k: np.ndarray) -> np.ndarray:
        return value

    def active(self, k: np.ndarray) -> np.ndarray:
        """Which runs have a fault active at their step k."""
        return np.zeros(np.shape(k), bool)
