"""What every bridge hands the ADS: one observation per step, in the lane frame of the ego's lane."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from drivefi.safety import SafetyPotential
from drivefi.vehicle import Actuation

PREVIEW = np.arange(10.0, 130.0, 10.0)  # distances of the lane-curvature preview [m]


@dataclass(frozen=True)
class Observation:
    """Ground-truth world at a step, arrays over runs (N,) and objects (N, A).

    Lane geometry is relative to the ego's lane: ``lane_offset`` is the ego centre's offset from
    the lane centre (left positive), ``heading_error`` its heading minus the lane's. Objects are
    given in the same frame: ``obj_ds`` along the lane from the ego centre, ``obj_dd`` across it
    from the ego lane's centre.
    """

    k: np.ndarray  # step index per run
    t: np.ndarray  # time [s]
    s: np.ndarray  # progress along the route [m]
    x: np.ndarray
    y: np.ndarray
    theta: np.ndarray
    v: np.ndarray
    phi: np.ndarray
    a: np.ndarray
    lane_offset: np.ndarray
    heading_error: np.ndarray
    curvature: np.ndarray  # of the ego's lane [1/m]
    lane_width: np.ndarray
    obj_ds: np.ndarray
    obj_dd: np.ndarray
    obj_vlon: np.ndarray
    obj_vlat: np.ndarray
    obj_psi: np.ndarray
    obj_len: np.ndarray
    obj_wid: np.ndarray
    obj_kind: np.ndarray
    # largest |curvature| of the ego's lane within PREVIEW[j] metres ahead, (N, len(PREVIEW));
    # None where a bridge gives no preview
    curvature_ahead: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.k)


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
