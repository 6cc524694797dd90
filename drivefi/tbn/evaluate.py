"""Held-out one-step error of a fitted model, and windows of a golden trace as evidence."""

from __future__ import annotations

import numpy as np
import pandas as pd

from drivefi.tbn.model import TBNModel
from drivefi.tbn.structure import STATE

REPORTED = ("v", "theta", "phi", "x", "y", "s", "lane_offset", "heading_error", "a")


def slices_of(win: pd.DataFrame, names, t: int) -> dict[str, np.ndarray]:
    return {n: win[f"{n}_{t}"].to_numpy(float) for n in names}


def one_step_error(model: TBNModel, win: pd.DataFrame, predictor=None) -> dict:
    """RMSE and max |error| of the kinematics one step ahead, on windows (k-1, k) -> k+1 built
    from consecutive pairs: the state at k is predicted from the full slice at k-1."""
    from drivefi.tbn.predict import Predictor

    if len(win) == 0:
        return {}
    pred = predictor or Predictor(model)
    names = model.structure.names
    prev = slices_of(win, names, 0)
    cur = dict(prev)  # the lag-1 parents of the state at k are all in slice k-1
    exo = {e: win[f"{e}_1"].to_numpy(float) for e in model.structure.exo}
    nxt = pred.step(cur, prev, exo, only=STATE)
    # the stack's outputs at k from the true slice k and the past
    nat = {p: win[f"faulted.{p}_1"].to_numpy(bool) for p in model.structure.points}
    cur1 = slices_of(win, names, 1)
    stack = [p for p in (*model.structure.points, "u_lon") if p in pred.ops]
    for p in stack:
        nxt[p] = pred._eval(pred.ops[p], cur1, prev)
    out = {"windows": len(win)}
    for v in (*REPORTED, *stack):
        truth = win[f"{v}_1"].to_numpy(float)
        keep = np.isfinite(truth) & np.isfinite(nxt[v]) & ~nat.get(v, np.zeros(len(truth), bool))
        err = (nxt[v] - truth)[keep]
        if v in ("theta", "heading_error"):
            err = (err + np.pi) % (2 * np.pi) - np.pi
        out[v] = {"rmse": float(np.sqrt(np.mean(err**2))), "max": float(np.max(np.abs(err)))}
    return out
