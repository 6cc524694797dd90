"""What every bridge hands the ADS: one observation per step, in the lane frame of the ego's lane."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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

    @property
    def n(self) -> int:
        return len(self.k)
