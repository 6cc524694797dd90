"""Maximum-likelihood fit of the 3-TBN's CPDs with pgmpy, on windows of consecutive steps.

Parameters are shared across time: one transition CPD per variable is fitted on every pair of
consecutive steps of every run (slices 1 and 2 of the 3-TBN use it), and an initial CPD (lag-0
parents only) on single steps for slice 0. The structure's learned transform parameters (gates,
rate limits) are chosen first (:mod:`drivefi.tbn.learn`). Variables are standardised. Each CPD is
fitted by pgmpy's :class:`LinearGaussianMLE` on its own family and rows: rows where its value was
forced by a fault are left out, and so are rows where it sits at a saturation (a bound that at
least 0.5% of its values sit exactly on, such as throttle 0 or the cruise speed), which the model
applies as a clip.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from drivefi.errors import InputError
from drivefi.tbn.dataset import FAULT_PREFIX, TrainingSet, restructure_reusing
from drivefi.tbn.evaluate import one_step_error
from drivefi.tbn.family import SIGMA_FLOOR, fit_arrays, fit_family
from drivefi.tbn.learn import learn_params
from drivefi.tbn.model import CPD, TBNModel
from drivefi.tbn.structure import Context, Structure, node
from drivefi.tbn.structure_file import with_params
from drivefi.tbn.threads import one_blas_thread
from drivefi.util.progress import Progress, silent

SAT_FRACTION = 0.005
CLIPPED_KINDS = ("state", "point", "ctrl")
NONNEG_STATE = ("v",)  # the only kinematic saturation: speed stops at 0


def scaling(slices: pd.DataFrame, structure: Structure) -> tuple[dict, dict]:
    mean, std = {}, {}
    for n in structure.names:
        col = slices[n].to_numpy(float)
        col = col[np.isfinite(col)]
        mean[n] = float(col.mean()) if col.size else 0.0
        sd = float(col.std()) if col.size else 1.0
        std[n] = sd if sd > 1e-9 * max(1.0, abs(mean[n])) else 1.0
    return mean, std


def saturations(slices: pd.DataFrame, structure: Structure) -> dict:
    """Bounds that a variable's unforced values pile up on (clips of the stack or the physics)."""
    out = {}
    for v in structure.vars:
        if v.kind not in CLIPPED_KINDS or (v.kind == "state" and v.name not in NONNEG_STATE):
            continue
        col = slices[v.name].to_numpy(float)
        if v.name in structure.points:
            col = col[~slices[FAULT_PREFIX + v.name].to_numpy(bool)]
        col = col[np.isfinite(col)]
        if col.size < 20:
            continue
        lo, hi = float(col.min()), float(col.max())
        need = max(5, SAT_FRACTION * col.size)
        sat_lo = lo if np.sum(col == lo) >= need else None
        sat_hi = hi if np.sum(col == hi) >= need and hi > lo else None
        if sat_lo is not None or sat_hi is not None:
            out[v.name] = (sat_lo, sat_hi)
    return out


def _rows(data: pd.DataFrame, target: str, parents: list[str], sat, faulted: str | None):
    y = data[target].to_numpy(float)
    ok = np.isfinite(y)
    for p in parents:
        ok &= np.isfinite(data[p].to_numpy(float))
    if faulted is not None and faulted in data:
        ok &= ~data[faulted].to_numpy(bool)
    if sat is not None:
        lo, hi = sat
        if lo is not None:
            ok &= y != lo
        if hi is not None:
            ok &= y != hi
    return ok


def _standard(data: pd.DataFrame, col: str, mean: float, std: float, ok: np.ndarray):
    """A column's standardised values on rows ``ok`` (as :func:`family_data` computes them)."""
    return (data[col].to_numpy(float)[ok] - mean) / std


def family_data(data: pd.DataFrame, model_mean, model_std, var, parents, t_var, t_par):
    """Standardised columns for one family: target column name and parent column names."""
    cols = {node(var, t_var): (data[node(var, t_var)] - model_mean[var]) / model_std[var]}
    names = []
    for p, lag in parents:
        c = node(p, t_par - lag)
        cols[c] = (data[c] - model_mean[p]) / model_std[p]
        names.append(c)
    return pd.DataFrame(cols), node(var, t_var), names


def fit_cpds(
    data: pd.DataFrame,
    mean: dict,
    std: dict,
    sat: dict,
    structure: Structure,
    first_slice: bool,
    fitter=None,
) -> dict[str, CPD]:
    """Fit every non-exogenous variable's CPD on ``data`` (windows, or slices for slice 0)."""
    t = 0 if first_slice else 1
    out = {}
    for v in structure.vars:
        parents = structure.parents(v.name, first_slice)
        if v.kind == "exo":
            parents = ()
        target = node(v.name, t)
        pcols = [node(p, t - lag) for p, lag in parents]
        faulted = node(FAULT_PREFIX + v.name, t) if v.name in structure.points else None
        ok = _rows(data, target, pcols, sat.get(v.name), faulted)
        if not first_slice and v.memory and not structure.keeps_forced(v.name):
            # the module's own past output must be natural
            ok &= ~data[node(FAULT_PREFIX + v.name, 0)].to_numpy(bool)
        n_ok = int(ok.sum())
        if fitter is None and n_ok >= len(pcols) + 3 and len(set(pcols)) == len(pcols):
            # the usual case, on arrays (the same numbers as fit_family on the frame below)
            y = _standard(data, target, mean[v.name], std[v.name], ok)
            x = np.empty((n_ok, len(pcols)), order="F")
            for j, ((p, _), c) in enumerate(zip(parents, pcols, strict=True)):
                x[:, j] = _standard(data, c, mean[p], std[p], ok)
            beta, sigma = fit_arrays(x, y)
            out[v.name] = CPD(v.name, parents, beta, max(sigma, SIGMA_FLOOR), n_ok)
            continue
        z, target, pcols = family_data(data, mean, std, v.name, parents, t, t)
        zf = z[ok]
        if len(zf) < len(pcols) + 3:
            mu = float(zf[target].mean()) if len(zf) else 0.0
            out[v.name] = CPD(v.name, parents, np.r_[mu, np.zeros(len(pcols))], 1.0, len(zf))
            continue
        if fitter is None:
            beta, sigma = fit_family(zf, target, pcols)
            out[v.name] = CPD(v.name, parents, beta, max(sigma, SIGMA_FLOOR), len(zf))
        else:
            out[v.name] = fitter(v.name, parents, zf, target, pcols)
    return out


@dataclass
class Refit:
    """What one fit leaves for the next fit of the same runs plus new ones: the training set
    with the learned parameters' features (see :func:`fit_model`'s ``reuse``)."""

    base: Structure | None = None
    restructured: TrainingSet | None = None


def split_runs(ts: TrainingSet, holdout: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks over slice rows: (train, held out). Runs are held out whole."""
    runs = ts.slices["run"].to_numpy()
    ids = np.unique(runs)
    if holdout <= 0 or len(ids) < 2:
        return np.ones(len(runs), bool), np.zeros(len(runs), bool)
    rng = np.random.default_rng([seed, 0x401D])
    n_out = min(max(1, round(holdout * len(ids))), len(ids) - 1)
    out_ids = rng.choice(ids, n_out, replace=False)
    test = np.isin(runs, out_ids)
    return ~test, test


def fit_model(
    ts: TrainingSet,
    method: str = "mle",
    holdout: float = 0.2,
    seed: int = 0,
    structure: Structure | None = None,
    learn: bool = True,
    progress: Progress = silent,
    reuse: Refit | None = None,
    **bayes_opts,
) -> TBNModel:
    """Fit the 3-TBN on a training set (its structure unless one is given); hold out whole runs
    for the one-step error. ``reuse`` (one :class:`Refit` passed to every fit of a growing
    training set, as the active search's rounds do) keeps the runs' features under the learned
    parameters, so a refit whose parameters did not change computes only the new runs'. Its
    dense algebra runs on one BLAS thread (:mod:`drivefi.tbn.threads`)."""
    with one_blas_thread():
        return _fit_model(ts, method, holdout, seed, structure, learn, progress, reuse, bayes_opts)


def _fit_model(ts, method, holdout, seed, structure, learn, progress, reuse, bayes_opts):
    """:func:`fit_model`'s work."""
    if method not in ("mle", "bayes"):
        raise InputError(f"fit: --method must be 'mle' or 'bayes', got '{method}'")
    structure = structure or ts.structure
    if ts.structure is not structure and ts.raw is not None:
        ts = ts.restructure(structure)
    train, test = split_runs(ts, holdout, seed)
    if int(train.sum()) < 50:
        raise InputError(
            f"fit: only {int(train.sum())} training rows; record more or longer traces"
        )
    if learn and ts.raw is not None:
        ctx = Context.of(next(iter(ts.contexts.values())))
        params = learn_params(ts, structure, ctx.dt, progress)
        if params:
            base = structure
            structure = with_params(structure, params)
            done = reuse.restructured if reuse is not None and reuse.base is base else None
            ts = restructure_reusing(ts, structure, done)
            if reuse is not None:
                reuse.base, reuse.restructured = base, ts
    sl_train = ts.slices[train]
    mean, std = scaling(sl_train, structure)
    sat = saturations(sl_train, structure)
    win = ts.windows(structure)
    win_train = win[np.isin(win["run"], np.unique(sl_train["run"]))]
    slice0 = sl_train.rename(columns={c: f"{c}_0" for c in sl_train.columns})
    fitter = None
    if method == "bayes":
        from drivefi.tbn.bayes import BayesFitter

        fitter = BayesFitter(seed=seed, structure=structure, **bayes_opts)
    progress(f"fitting the CPDs ({method})", 0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trans = fit_cpds(win_train, mean, std, sat, structure, False, fitter)
        init = fit_cpds(slice0, mean, std, sat, structure, True, None)
    progress(f"fitting the CPDs ({method})", 1, 1)
    model = TBNModel(
        method=method,
        mean=mean,
        std=std,
        transition=trans,
        initial=init,
        saturation=sat,
        contexts=ts.contexts,
        structure=structure,
    )
    summary = ts.summary()
    summary["train_rows"] = int(train.sum())
    summary["holdout_rows"] = int(test.sum())
    summary["windows"] = len(win_train)
    model.summary = summary
    if test.any():
        model.holdout = one_step_error(model, win[~np.isin(win["run"], np.unique(sl_train["run"]))])
    return model
