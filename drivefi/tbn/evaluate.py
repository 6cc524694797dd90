"""Held-out one-step error of a fitted model, and windows of a golden trace as evidence."""

from __future__ import annotations

import numpy as np
import pandas as pd

from drivefi.tbn.model import TBNModel
from drivefi.tbn.structure import EXO, STATE

REPORTED = ("v", "theta", "phi", "x", "y", "s", "lane_offset", "heading_error", "a")
STACK = ("planning.target_speed", "u_lon", "control.throttle", "control.brake", "control.steer")


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
    exo = {e: win[f"{e}_1"].to_numpy(float) for e in EXO}
    nxt = pred.step(cur, prev, exo, only=STATE)
    # the stack's outputs at k from the true slice k and the past
    nat = {p: win[f"faulted.{p}_1"].to_numpy(bool) for p in STACK if f"faulted.{p}_1" in win}
    cur1 = slices_of(win, names, 1)
    for p in STACK:
        nxt[p] = pred._eval(pred.ops[p], cur1, prev)
    out = {"windows": len(win)}
    for v in (*REPORTED, *STACK):
        truth = win[f"{v}_1"].to_numpy(float)
        keep = np.isfinite(truth) & np.isfinite(nxt[v]) & ~nat.get(v, np.zeros(len(truth), bool))
        err = (nxt[v] - truth)[keep]
        if v in ("theta", "heading_error"):
            err = (err + np.pi) % (2 * np.pi) - np.pi
        out[v] = {"rmse": float(np.sqrt(np.mean(err**2))), "max": float(np.max(np.abs(err)))}
    return out


def fidelity(
    model: TBNModel,
    scenario,
    golden,
    faults: list,
    horizon: int = 40,
    predictor=None,
    anchor: bool = True,
) -> dict:
    """Rollout predictions vs the simulator for single-point faults (m-fixed Fault objects with
    the same point): per step j, RMSE of the safety state, and hazard agreement over the horizon.
    Returns {'rmse': {var: (H,)}, 'hazard': {...}} (simulated from the golden run's snapshots)."""
    from drivefi.ads import INJECTION_POINTS
    from drivefi.faults import FaultInjector
    from drivefi.simulate import Simulation, TraceRecorder
    from drivefi.tbn.evidence import GoldenWindows
    from drivefi.tbn.hazard import SafetyModel, score_rollout
    from drivefi.tbn.predict import Predictor
    from drivefi.tbn.structure import SAFETY_STATE

    pred = predictor or Predictor(model, GoldenWindows(golden.trace, scenario).context)
    gw = GoldenWindows(golden.trace, scenario)
    n = len(faults)
    sim = Simulation(scenario)
    rec = TraceRecorder(n, sim.steps, sim.points)
    k = np.array([f.start for f in faults])
    sim.run(
        n,
        snapshot=golden.snapshots.take(k),
        injector=FaultInjector(faults, INJECTION_POINTS),
        recorders=[rec],
    )
    point = faults[0].point
    vals = np.array([f.value for f in faults])
    dur = np.array([f.duration for f in faults])
    prev, cur = gw.window(k)
    anc = gw.seq(k, horizon, SAFETY_STATE) if anchor else None
    ro = pred.rollout(prev, cur, gw.exo_seq(k, horizon), {point: vals}, dur, anchor=anc)
    steps = np.minimum(k[:, None] + np.arange(1, horizon + 1)[None, :], sim.steps - 1)
    rows = np.arange(n)[:, None]
    out: dict = {"rmse": {}, "max": {}}
    for v in SAFETY_STATE:
        truth = rec.cols[v][rows, steps]
        err = ro.mean[v] - truth
        out["rmse"][v] = np.sqrt(np.nanmean(err**2, axis=0))
        out["max"][v] = np.nanmax(np.abs(err), axis=0)
    sm = SafetyModel(scenario)
    sc = score_rollout(sm, k, ro)
    haz = rec.cols["hazard"][rows, steps].any(axis=1)
    pred_h = sc.p_hazard >= 0.5
    out["hazard"] = {
        "simulated": int(haz.sum()),
        "predicted": int(pred_h.sum()),
        "agree": float(np.mean(haz == pred_h)),
        "tp": int((haz & pred_h).sum()),
        "fp": int((~haz & pred_h).sum()),
        "fn": int((haz & ~pred_h).sum()),
    }
    return out
