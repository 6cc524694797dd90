"""Evidence for do() queries from a golden run: the window (k-1, k) and the exogenous inputs of
later steps, gathered for arrays of steps k at once."""

from __future__ import annotations

import numpy as np

from drivefi.tbn.dataset import slice_frame
from drivefi.tbn.structure import Context, Structure


class GoldenWindows:
    """Slices of a golden trace, indexed by step; ``window(k)`` gives (prev, cur) dicts (Q,)."""

    def __init__(self, trace, scenario, structure: Structure):
        sl = slice_frame(
            trace.frame, trace.meta, scenario, f"golden run of {scenario.name}", structure
        )
        ctx = Context.from_meta(trace.meta)
        if "u_lon" in sl:  # (the oracle's) controller command where throttle/brake saturate
            u = ctx.accel_max * sl["control.throttle"] - ctx.brake_max * sl["control.brake"]
            sl["u_lon"] = sl["u_lon"].fillna(u)
        self.exo_names = tuple(structure.exo)
        self.context = ctx
        self.k = sl["k"].to_numpy(np.int64)
        if not np.array_equal(self.k, np.arange(self.k[0], self.k[0] + len(self.k))):
            raise ValueError("golden trace steps are not consecutive")
        self.k0 = int(self.k[0])
        self.steps = int(self.k[-1]) + 1
        self.cols = {n: sl[n].to_numpy(float) for n in structure.names}
        self.frame = sl

    def at(self, k) -> dict[str, np.ndarray]:
        i = np.clip(np.asarray(k, np.int64) - self.k0, 0, len(self.k) - 1)
        return {n: c[i] for n, c in self.cols.items()}

    def window(self, k) -> tuple[dict, dict]:
        """Slices at k-1 and k (k >= 1)."""
        k = np.asarray(k, np.int64)
        return self.at(k - 1), self.at(k)

    def exo(self, k) -> dict[str, np.ndarray]:
        i = np.clip(np.asarray(k, np.int64) - self.k0, 0, len(self.k) - 1)
        return {e: self.cols[e][i] for e in self.exo_names}

    def exo_seq(self, k, horizon: int) -> list[dict[str, np.ndarray]]:
        """Exogenous inputs of steps k+1..k+horizon (clamped to the last step)."""
        k = np.asarray(k, np.int64)
        return [self.exo(k + j) for j in range(1, horizon + 1)]

    def seq(self, k, horizon: int, names) -> dict[str, np.ndarray]:
        """Golden values of ``names`` at steps k+1..k+horizon, (Q, horizon) each."""
        k = np.asarray(k, np.int64)
        i = np.clip(k[:, None] + np.arange(1, horizon + 1)[None, :] - self.k0, 0, len(self.k) - 1)
        return {n: self.cols[n][i] for n in names}
