"""What every bridge hands the ADS: one observation per step, in the lane frame of the ego's lane."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from drivefi.core import Actuation, Observation
from drivefi.world.safety import SafetyPotential


class Bridge(Protocol):
    """The contract between the closed loop and a simulator (runs are arrays over N)."""

    name: str

    def reset(self, scenario, seed: int | None = None, n: int = 1) -> Observation: ...

    def step(self, act: Actuation) -> Observation:
        """Apply the (guarded) actuation and advance one step."""

    def guarded(self, act: Actuation) -> Actuation:
        """What the vehicle interface would apply for ``act`` now (clamped, non-finite replaced)."""

    def safety(self) -> SafetyPotential:
        """Safety potential of every run at the current step."""

    def accidents(self) -> tuple[np.ndarray, np.ndarray]:
        """(collided, departed) so far, bool arrays over runs."""

    def close(self) -> None: ...
