"""Learned transform parameters: a plausibility gate's width and coast, a rate limit's rates, and
whether a module keeps a value a fault forced on its output as its own past.

Each is chosen from a grid by how well the node's consumers (the CPDs that read it) fit the
training runs: the runs where a fault was injected upstream show whether a module took a jump of
its input at once (no gate), held it out (a gate), or followed it at a bounded rate. One pass in
slice order, each node with the others at their current values; least squares (numpy) per grid
value, the sum of the consumers' standardised residuals decides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from drivefi.tbn.dataset import FAULT_PREFIX, TrainingSet
from drivefi.tbn.family import lstsq_sse, moments_sse
from drivefi.tbn.structure import KEEPS_FORCED, Structure
from drivefi.tbn.structure_file import MISSES, learned_grid_names
from drivefi.tbn.transforms import INF, REGISTRY, gate_step
from drivefi.util.progress import Progress, silent

COASTS = (5.0, 10.0, 20.0, 40.0, INF)
WIDTH_FACTORS = (2.0, 4.0, 8.0, 16.0)
RATE_FACTORS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
DEAD_ZONE_QUANTILES = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)  # of |x|, natural values
MAX_ROWS = 40_000  # windows used to choose parameters (a seeded sample of larger sets)


def _matrix(
    slices: pd.DataFrame, col: str, pos: tuple[np.ndarray, np.ndarray], shape
) -> np.ndarray:
    m = np.full(shape, np.nan)
    m[pos] = slices[col].to_numpy(float)
    return m


def _recurse(tname: str, x: np.ndarray, p: dict, dt: float) -> np.ndarray:
    """The transform stepped along runs: x (R, T) -> (R, T)."""
    if not REGISTRY[tname].recursive:  # stateless: the whole matrix at once
        return REGISTRY[tname].fn([x], None, None, p)
    r, t = x.shape
    out = np.full((r, t), np.nan)
    g, n = np.full(r, np.nan), np.zeros(r)
    for j in range(t):
        xj = x[:, j]
        if tname == "gate":
            g, n = gate_step(xj, g, n, p["width"], p["coast"])
            g = np.where(np.isfinite(xj), g, np.nan) if j == 0 else g
        else:  # rate_limit
            prev = np.where(np.isfinite(g), g, xj)
            g = np.where(
                np.isfinite(xj), np.clip(xj, prev - p["down"] * dt, prev + p["up"] * dt), prev
            )
        out[:, j] = g
    return out


GRID_CELLS = 4_000_000  # matrix cells stepped at once by _recurse_grid


def _recurse_grid(tname: str, x: np.ndarray, grid: list[dict], dt: float):
    """``_recurse(tname, x, g, dt)`` for each ``g`` of ``grid``, in order: a recursive
    transform is stepped for a block of grid values at once (the runs' matrix stacked once per
    value, each row with its value's parameters), which gives the same numbers elementwise."""
    if not REGISTRY[tname].recursive:
        for g in grid:
            yield _recurse(tname, x, g, dt)
        return
    r, t = x.shape
    per = max(1, GRID_CELLS // max(1, r * t))
    for b in range(0, len(grid), per):
        block = grid[b : b + per]
        p = {k: np.repeat([float(g[k]) for g in block], r) for k in block[0]}
        out = _recurse(tname, np.tile(x, (len(block), 1)), p, dt)
        for i in range(len(block)):
            yield out[i * r : (i + 1) * r]


def learn_params(
    ts: TrainingSet, st: Structure, dt: float, progress: Progress = silent
) -> dict[str, dict[str, float]]:
    """Learned parameters by node (a structure's gate, rate_limit and dead_zone features): each
    by a grid search, the value whose consumers' least-squares fit is best."""
    todo = learned_grid_names(st)
    sl = ts.slices
    runs = sl["run"].to_numpy()
    ids, rix = np.unique(runs, return_inverse=True)
    start = np.full(len(ids), len(sl))
    np.minimum.at(start, rix, np.arange(len(sl)))
    tix = np.arange(len(sl)) - start[rix]
    shape = (len(ids), int(tix.max()) + 1)
    pos = (rix, tix)
    # windows: rows i1 (step k) with i0 = i1 - 1 in the same run
    i1 = np.flatnonzero(tix > 0)
    if len(i1) > MAX_ROWS:
        i1 = np.sort(np.random.default_rng(0).choice(i1, MAX_ROWS, replace=False))
    i0 = i1 - 1
    params = memory_params(sl, st, pos, shape)
    designs: dict[str, _Design] = {}  # per consumer, shared by the nodes it reads
    for done, (name, tname) in enumerate(todo):
        progress("learning gates and rate limits", done, len(todo))
        src = st.by_name[name].parents[0][0]
        x = _matrix(sl, src, pos, shape)
        nat = (
            ~sl[FAULT_PREFIX + src].to_numpy(bool)
            if FAULT_PREFIX + src in sl
            else np.ones(len(sl), bool)
        )
        xs = sl[src].to_numpy(float)
        dx = np.abs(xs[i1] - xs[i0])[nat[i1] & nat[i0]]
        dx = dx[np.isfinite(dx)]
        q = float(np.quantile(dx, 0.999)) if dx.size else 1.0
        q = max(q, 1e-6)
        if tname == "gate":
            grid = [{"width": INF, "coast": INF}] + [
                {"width": f * q, "coast": c} for f in WIDTH_FACTORS for c in COASTS
            ]
        elif tname == "dead_zone":
            ax = np.abs(xs[nat])
            ax = ax[np.isfinite(ax)]
            widths = np.unique(np.quantile(ax, DEAD_ZONE_QUANTILES)) if ax.size else []
            grid = [{"width": 0.0}] + [{"width": float(w)} for w in widths if w > 0]
        else:
            rates = [INF, *(f * q / dt for f in RATE_FACTORS)]
            grid = [{"up": u, "down": d} for u in rates for d in rates]
        consumers = _consumers(st, name)
        if not consumers:
            params[name] = dict(grid[0])
            continue
        fams = _families(sl, st, consumers, name, i0, i1, designs)
        best, best_sse = grid[0], np.inf
        seen = set()  # the node's values on the windows under the grid values scored so far
        for g, m in zip(grid, _recurse_grid(tname, x, grid, dt), strict=True):
            col = m[pos]
            key = col[i0].tobytes() + col[i1].tobytes()  # all that _score reads of col
            if key in seen and np.isfinite(best_sse):
                # the same values as an earlier grid value: the same residual, which did not
                # beat (or set) the best by the margin then and cannot now
                continue
            seen.add(key)
            sse = _score(fams, col, i0, i1, sl, st)
            if not np.isfinite(best_sse) or sse < best_sse * (1 - 1e-6):
                best, best_sse = g, sse
        params[name] = dict(best)
    progress("learning gates and rate limits", len(todo), len(todo))
    return params


def memory_params(sl: pd.DataFrame, st: Structure, pos, shape) -> dict[str, dict[str, float]]:
    """Per point with a memory edge (its own past as a parent): does its module keep a forced
    value? At the first step after each fault window, the point's output is compared with its
    last natural output before the window: a module that keeps the forced value (a controller
    starting from its last command) moves from there towards the forced value by more than two
    typical natural steps, however fast it then returns; one that keeps its own computed
    output stays where it was or, when the vehicle reacted to the fault, corrects against it.
    Windows whose forced value is within ten typical (median) natural steps of the last output
    tell nothing and are left out; with fewer than 5 telling windows the module keeps its
    natural output (the default)."""
    out = {}
    for p in st.points:
        if not st.by_name[p].memory or FAULT_PREFIX + p not in sl:
            continue
        x = _matrix(sl, p, pos, shape)
        forced = _matrix(sl, FAULT_PREFIX + p, pos, shape) > 0
        nat = np.where(forced, np.nan, x)
        last = pd.DataFrame(nat).ffill(axis=1).to_numpy()
        r, t = np.nonzero(forced[:, :-1] & ~forced[:, 1:] & np.isfinite(x[:, 1:]))
        f_val, before, after = x[r, t], last[r, t], x[r, t + 1]
        step = np.abs(np.diff(nat, axis=1))
        step = step[np.isfinite(step)]
        tol = max(10.0 * float(np.median(step)) if step.size else 0.0, 1e-9)
        ok = np.isfinite(f_val) & np.isfinite(before) & (np.abs(f_val - before) > tol)
        if ok.sum() < 5:
            continue
        moved = (after - before)[ok]
        toward = np.sign(moved) == np.sign((f_val - before)[ok])
        keeps = toward & (np.abs(moved) > 0.2 * tol)  # beyond two typical natural steps
        out[p] = {KEEPS_FORCED: float(keeps.mean() > 0.5)}
    return out


def _consumers(st: Structure, name: str) -> list[tuple[str, str | None]]:
    """CPD nodes that read ``name`` (directly, or through one stateless feature)."""
    out = []
    for v in st.vars:
        if v.name in (name, name + MISSES):
            continue
        if any(p == name for p, _ in v.parents):
            if v.kind in ("point", "state", "ctrl"):
                out.append((v.name, None))
            elif v.kind == "feature" and not REGISTRY_RECURSIVE(st, v.name):
                for w in st.vars:
                    if w.kind in ("point", "state", "ctrl") and any(
                        p == v.name for p, _ in w.parents
                    ):
                        out.append((w.name, v.name))
    return out


def REGISTRY_RECURSIVE(st: Structure, name: str) -> bool:
    spec = (st.doc.get("features") or {}).get(name) or {}
    t = REGISTRY.get(spec.get("transform"))
    return bool(t and t.recursive)


@dataclass
class _Design:
    """One consumer's least squares on the windows, built once for every learned node it reads:
    its target, the rows usable whatever the node (target finite and not forced), the count of
    non-finite design columns per row, and over ``rows`` (usable, every column finite, not
    saturated) the centred design [X, y] with every column at the training set's values and its
    moment matrix. A grid value whose rows are ``rows`` needs only its own columns' products."""

    y: np.ndarray
    ok: np.ndarray
    bad: np.ndarray
    rows: np.ndarray
    A: np.ndarray
    M: np.ndarray
    sd: float


def _design_matrix(sl, v, i0, i1) -> np.ndarray:
    """A consumer's design matrix on the windows with every column at the training set's values."""
    X = np.empty((len(i1), len(v.parents)))
    for j, (p, lag) in enumerate(v.parents):
        X[:, j] = _column(sl, p, i1 if lag == 0 else i0)
    return X


def _column(sl, name: str, idx: np.ndarray) -> np.ndarray:
    """A slice column on rows ``idx``; NaN where the training set lacks it (a learned node's own
    column, which the grid fills in)."""
    if name not in sl:
        return np.full(len(idx), np.nan)
    return sl[name].to_numpy(float)[idx]


def _design(sl, st, cons, i0, i1) -> _Design:
    v = st.by_name[cons]
    y = sl[cons].to_numpy(float)[i1]
    ok = np.isfinite(y)
    if FAULT_PREFIX + cons in sl:
        ok &= ~sl[FAULT_PREFIX + cons].to_numpy(bool)[i1]
    X = _design_matrix(sl, v, i0, i1)
    bad = np.sum(~np.isfinite(X), axis=1)
    rows = _unsaturated(y, ok & (bad == 0))
    A = np.empty((int(rows.sum()), X.shape[1] + 1))
    A[:, :-1], A[:, -1] = X[rows], y[rows]
    if len(A):
        A -= A.mean(axis=0)
    sd = float(np.std(y[rows])) if rows.any() else 1.0
    return _Design(y, ok, bad, rows, A, A.T @ A, sd or 1.0)


def _families(sl, st, consumers, name, i0, i1, designs: dict) -> list[tuple]:
    """Per consumer of ``name``: its :class:`_Design` (from ``designs``, built on first use) and
    the columns that depend on ``name``'s parameters, as (column index, lag rows, feature
    transform or None), with the rows usable whatever those parameters."""
    out = []
    for cons, via in consumers:
        v = st.by_name[cons]
        d = designs.get(cons)
        if d is None:
            d = designs[cons] = _design(sl, st, cons, i0, i1)
        varying = []
        for j, (p, lag) in enumerate(v.parents):
            idx = i1 if lag == 0 else i0
            if p == name:
                varying.append((j, idx, None))
            elif via is not None and p == via:
                varying.append((j, idx, REGISTRY[st.doc["features"][via]["transform"]]))
        fixed_bad = d.bad.copy()  # non-finite columns per row, the varying ones left out
        for j, idx, _ in varying:
            p, lag = v.parents[j]
            fixed_bad -= ~np.isfinite(_column(sl, p, idx))
        out.append((cons, d, d.ok & (fixed_bad == 0), varying))
    return out


def _unsaturated(y: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``ok`` without the rows where y sits on a bound that at least 0.5 % of its rows (5 at
    least) sit on: a saturated output says nothing of its inputs."""
    ok = ok.copy()
    if ok.any():
        yy = y[ok]
        need = max(5, 0.005 * len(yy))
        for b in (yy.min(), yy.max()):
            if np.sum(yy == b) >= need:
                ok &= y != b
    return ok


def _score(fams, col, i0, i1, sl=None, st=None) -> float:
    """Sum of the consumers' standardised least-squares residuals with ``col`` (the node's
    values on every slice row under one grid point) filled in. Where the usable rows are the
    design's own, the moment matrix is the design's with the varying columns' rows and columns
    replaced (their products with the others: one pass over the rows, not a new fit)."""
    total = 0.0
    for cons, d, base_ok, varying in fams:
        ok = base_ok.copy()
        cols = []
        for _, idx, t in varying:
            c = col[idx] if t is None else t.fn([col[idx]], None, None, t.defaults)
            ok &= np.isfinite(c)
            cols.append(c)
        ok = _unsaturated(d.y, ok)
        k = d.A.shape[1] - 1
        n = int(ok.sum())
        if n < k + 3:
            continue
        if np.array_equal(ok, d.rows):
            js = [j for j, _, _ in varying]
            V = np.column_stack([c[ok] for c in cols])
            V -= V.mean(axis=0)
            cross = V.T @ d.A
            M = d.M.copy()
            M[js, :] = cross
            M[:, js] = cross.T
            M[np.ix_(js, js)] = V.T @ V
            sse, sd = moments_sse(M, n), d.sd
        else:  # other rows (a varying column non-finite, another saturation): a fit of its own
            X = _design_matrix(sl, st.by_name[cons], i0, i1)
            for (j, _, _), c in zip(varying, cols, strict=True):
                X[:, j] = c
            sse, sd = lstsq_sse(X[ok], d.y[ok]), float(np.std(d.y[ok])) or 1.0
        total += sse / sd**2
    return total
