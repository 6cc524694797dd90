"""Training data for the 3-TBN: slice columns from traces and windows of consecutive steps.

Every trace row becomes one slice: the trace's kinematics, injection points and applied actuation,
the world's exogenous inputs (road curvature; the nearest in-lane object ahead, from the scenario's
scripted actors) and the structure's features. ``faulted.<point>`` marks rows whose point value was
forced by a fault, so that point's CPD is not fitted on them. The runs themselves (golden and
fault-injected runs of the stack under test) come from :mod:`drivefi.search.training` or from files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from drivefi.errors import InputError
from drivefi.tbn.structure import NO_LEAD, STATE, Context, Structure
from drivefi.world.road import lateral_extent

FAULT_PREFIX = "faulted."
INIT_PREFIX = "init."  # the stack's state before a trace's first step (from its metadata)
NAT = "nat:"


def trace_needs(st: Structure) -> tuple[str, ...]:
    return ("k", *STATE, "curvature", *st.applied, *st.points)


class LeadTable:
    """The nearest object ahead in the ego's lane (the world as the scenario scripts it)."""

    def __init__(self, scenario):
        from drivefi.bridges.embedded import EmbeddedBridge

        self.bridge = EmbeddedBridge(scenario)
        self.half_len = 0.5 * scenario.ego.vehicle.length
        self.half_w = 0.5 * scenario.road.lane_width
        self.lane = self.bridge.lane  # the ego lane's frame

    def at(self, k: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
        """lead_s (object centre along the road), lead_off (ego half length + object half extent)
        and lead_v at steps k for an ego at s; with nothing ahead, lead_s = s + NO_LEAD."""
        k = np.asarray(k, np.int64)
        s = np.asarray(s, float)
        if self.bridge.actors.count == 0:
            return {"lead_s": s + NO_LEAD, "lead_off": np.zeros_like(s), "lead_v": np.zeros_like(s)}
        obj = self.bridge.actors_at(k)
        ds = obj.s - s[:, None]
        o_lat = lateral_extent(0.5 * obj.length, 0.5 * obj.width, obj.psi)
        o_lon = lateral_extent(0.5 * obj.width, 0.5 * obj.length, obj.psi)
        gap = ds - self.half_len - o_lon
        inl = (np.abs(self.lane.from_ref(obj.d)) < self.half_w + o_lat) & (ds > 0) & (gap < NO_LEAD)
        gaps = np.where(inl, gap, np.inf)
        j = np.argmin(gaps, axis=1)
        rows = np.arange(len(k))
        seen = np.isfinite(gaps[rows, j])
        return {
            "lead_s": np.where(seen, obj.s[rows, j], s + NO_LEAD),
            "lead_off": np.where(seen, self.half_len + o_lon[rows, j], 0.0),
            "lead_v": np.where(seen, obj.v_lon[rows, j], 0.0),
        }


def fault_point(meta: dict, points) -> str | None:
    """The injection point a trace's fault forced ('*' when unknown or several)."""
    f = meta.get("fault")
    if not f:
        return None
    if isinstance(f, dict):
        p = f.get("point")
        return p if p in points else "*"
    return "*"


def check_frame(frame: pd.DataFrame, source: str, st: Structure) -> pd.DataFrame:
    """Validate a trace frame; returns its recorded rows (leading unrecorded rows dropped)."""
    missing = [c for c in trace_needs(st) if c not in frame.columns]
    if missing:
        pts = [c for c in missing if c in st.points]
        if pts:
            raise InputError(
                f"{source}: the structure '{st.name}' ({st.source}) names point(s) "
                f"{', '.join(pts)} that this trace's stack does not record; use the stack's own "
                "structure (drivefi structure --agent ...)"
            )
        raise InputError(f"{source}: missing column(s) {', '.join(missing)} needed by the 3-TBN")
    kin = frame[[*STATE, "curvature"]].to_numpy(float)
    recorded = np.isfinite(kin).any(axis=1)
    if not recorded.any():
        raise InputError(f"{source}: no recorded rows (every kinematic value is NaN)")
    first = int(np.argmax(recorded))
    last = len(recorded) - int(np.argmax(recorded[::-1]))
    f = frame.iloc[first:last].reset_index(drop=True)
    need = [*STATE, "curvature", *st.applied]
    bad = ~np.isfinite(f[need].to_numpy(float))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputError(
            f"{source}: NaN or infinite '{need[c]}' at step {int(f['k'].iloc[r])} "
            f"(a trace needs finite kinematics and actuation on every recorded step)"
        )
    if len(f) < 3:
        raise InputError(f"{source}: only {len(f)} recorded steps; the 3-TBN needs at least 3")
    return f


def slice_frame(frame, meta: dict, scenario, source: str, st: Structure) -> pd.DataFrame:
    """One row per step with every slice variable, 'k', and ``faulted.<point>`` flags."""
    cols = _raw_slice(frame, meta, scenario, source, st)
    add_features([cols], Context.from_meta(meta), st)
    return pd.DataFrame(cols)


def _raw_slice(frame, meta: dict, scenario, source: str, st: Structure) -> dict[str, np.ndarray]:
    """A trace's observed slice columns (no features yet)."""
    f = check_frame(frame, source, st)
    ctx = Context.from_meta(meta)
    cols: dict[str, np.ndarray] = {"k": f["k"].to_numpy(np.int64)}
    for c in (*STATE, "curvature", *st.applied, *st.points):
        cols[c] = f[c].to_numpy(float)
    if scenario is None:
        scenario = scenario_of(meta, source)
    cols.update(LeadTable(scenario).at(cols["k"], cols["s"]))
    active = f["fault_active"].to_numpy(bool) if "fault_active" in f else np.zeros(len(f), bool)
    which = fault_point(meta, st.points)
    for p in st.points:
        cols[FAULT_PREFIX + p] = active & (which in (p, "*"))
    for field, val in (meta.get("ads_state") or {}).items():
        if field in st.init_state:
            cols[INIT_PREFIX + st.init_state[field]] = np.full(len(f), float(val))
    for name, fn in st.observed.items():
        cols[name] = fn(cols, ctx)
    return cols


def add_features(runs: list[dict[str, np.ndarray]], ctx: Context, st: Structure) -> None:
    """Compute the derived features of runs of consecutive steps (in place). Recursive features
    (filters, gates, lags) are stepped along the runs, all runs at once."""
    feats = [v for v in st.vars if v.kind == "feature"]
    rec = [v for v in feats if any(lag == 1 for _, lag in v.parents)]
    rec_names = {v.name for v in rec}
    dep = set(rec_names)  # features computed from recursive ones
    for v in feats:
        if any(lag == 0 and p in dep for p, lag in v.parents):
            dep.add(v.name)

    def plain(names):
        for cols in runs:
            prev = _Rolled(cols)
            for v in feats:
                if v.name in names:
                    cols[v.name] = st.features[v.name](cols, prev, ctx)

    plain({v.name for v in feats if v.name not in dep})
    if rec:
        names = dict.fromkeys(n for c in runs for n in c if np.asarray(c[n]).dtype.kind in "fb")
        inputs = [n for n in names if n not in dep]
        n = max(len(c["k"]) for c in runs)
        data = {}
        for name in inputs:
            m = np.full((len(runs), n), np.nan)
            for i, c in enumerate(runs):
                if name in c:
                    m[i, : len(c[name])] = c[name]
            data[name] = m
        out = {v.name: np.full((len(runs), n), np.nan) for v in rec}
        cur = {name: m[:, 0] for name, m in data.items()}
        prev = {}
        for v in rec:  # the stack's state before the first step: recorded, else the initial one
            given = cur.get(INIT_PREFIX + v.name)
            init = st.initial[v.name](cur, ctx)
            prev[v.name] = init if given is None else np.where(np.isfinite(given), given, init)
        for p in st.points:  # nothing is known of a point before the first step
            prev[p] = np.full(len(runs), np.nan)
        for t in range(n):
            cur = {name: m[:, t] for name, m in data.items()}
            for p in st.points:  # a point's natural output: unknown where a fault forced it
                forced = cur.get(FAULT_PREFIX + p)
                if forced is not None and p in cur:
                    cur[NAT + p] = np.where(forced > 0, np.nan, cur[p])
            for v in rec:  # (a point's lag feature reads it, or the forced value it kept)
                cur[v.name] = st.features[v.name](cur, prev, ctx)
                out[v.name][:, t] = cur[v.name]
            prev = cur
        for i, c in enumerate(runs):
            for name, m in out.items():
                c[name] = m[i, : len(c["k"])]
    plain(dep - rec_names)


class _Rolled(Mapping):
    """Every column of ``cols`` (as it is now) shifted by one step, ``np.roll(a, 1)``, rolled
    only when a feature reads it."""

    def __init__(self, cols: dict[str, np.ndarray]):
        self._cols = dict(cols)
        self._done: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        out = self._done.get(name)
        if out is None:
            out = self._done[name] = np.roll(self._cols[name], 1)
        return out

    def __iter__(self):
        return iter(self._cols)

    def __len__(self) -> int:
        return len(self._cols)

    def __contains__(self, name) -> bool:
        return name in self._cols


def scenario_of(meta: dict, source: str = "<trace>"):
    from drivefi.world.scenario import load_scenario

    name = meta.get("scenario")
    if not name:
        raise InputError(f"{source}: trace metadata names no scenario")
    try:
        return load_scenario(name)
    except InputError:
        raise InputError(
            f"{source}: scenario '{name}' of this trace is not a bundled scenario; "
            "the 3-TBN needs its actors"
        ) from None


def windows(slices: pd.DataFrame, st: Structure) -> pd.DataFrame:
    """Consecutive-step pairs: columns ``<var>_0`` (step k-1) and ``<var>_1`` (step k)."""
    names = [*st.names, *(FAULT_PREFIX + p for p in st.points)]
    a, b = slices.iloc[:-1].reset_index(drop=True), slices.iloc[1:].reset_index(drop=True)
    ok = (b["k"].to_numpy() - a["k"].to_numpy()) == 1
    if "run" in slices:
        ok &= a["run"].to_numpy() == b["run"].to_numpy()
    out = {f"{n}_0": a[n].to_numpy()[ok] for n in names}
    out.update({f"{n}_1": b[n].to_numpy()[ok] for n in names})
    out["k_1"] = b["k"].to_numpy()[ok]
    if "run" in slices:
        out["run"] = b["run"].to_numpy()[ok]
    return pd.DataFrame(out)


@dataclass
class TrainingSet:
    """Slice rows of several runs (column 'run'), their windows and a summary."""

    slices: pd.DataFrame
    scenarios: list[str]
    contexts: dict[str, dict]
    sources: list[str]
    structure: Structure | None = None
    raw: list | None = None  # (scenario name, raw columns) per run, for refitting with new params

    @property
    def runs(self) -> int:
        return int(self.slices["run"].nunique())

    def windows(self, st: Structure | None = None) -> pd.DataFrame:
        return windows(self.slices, st or self.structure)

    def summary(self) -> dict:
        s = self.slices
        fcols = [c for c in s.columns if c.startswith(FAULT_PREFIX)]
        faulted = s[fcols].any(axis=1) if fcols else np.zeros(len(s), bool)
        return {
            "scenarios": self.scenarios,
            "runs": self.runs,
            "rows": len(s),
            "faulted_rows": int(np.sum(faulted)),
            "sources": self.sources[:20] + (["..."] if len(self.sources) > 20 else []),
        }

    def restructure(self, st: Structure) -> TrainingSet:
        """The same runs with the features of another structure (e.g. new learned parameters)."""
        return _assemble(
            [(n, {k: v for k, v in c.items()}) for n, c in self.raw],
            self.sources,
            st,
            self.contexts,
        )

    def extend(self, other: TrainingSet) -> TrainingSet:
        """This set plus another's runs (same structure). The runs already here keep their
        slices (features are computed run by run, so they do not change); only when the other
        set was built differently (another structure or context) is everything recomputed."""
        fast = _concat_sets(self, other)
        if fast is not None:
            return fast
        return _assemble(
            [(n, dict(c)) for n, c in [*self.raw, *other.raw]],
            [*self.sources, *other.sources],
            self.structure,
            {**self.contexts, **other.contexts},
        )


def _assemble(raw, sources, st: Structure, ctxs: dict) -> TrainingSet:
    names: list[str] = []
    for i, (name, cols) in enumerate(raw):
        cols["run"] = np.full(len(cols["k"]), i)
        if name not in names:
            names.append(name)
    keep = {"k", "run", *STATE, "curvature", *st.exo, *st.applied, *st.points, *st.observed}
    base = [
        (n, {k: v for k, v in c.items() if k in keep or k.startswith((FAULT_PREFIX, INIT_PREFIX))})
        for n, c in raw
    ]
    feat = [(n, dict(c)) for n, c in base]
    for name in names:  # features of each scenario's runs, batched
        add_features([c for n, c in feat if n == name], Context.of(ctxs[name]), st)
    return TrainingSet(_frame([c for _, c in feat]), names, ctxs, list(sources), st, base)


def _frame(runs: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """The runs' columns stacked in one frame: ``pd.concat`` of one frame per run, built at
    once where every run has the same columns of the same dtypes (the usual case)."""
    first = runs[0] if runs else {}
    keys = list(first)
    same = all(
        list(c) == keys
        and all(np.ndim(c[k]) == 1 and np.asarray(c[k]).dtype == np.asarray(first[k]).dtype
                for k in keys)
        for c in runs
    )  # fmt: skip
    if not runs or not same:
        return pd.concat([pd.DataFrame(c) for c in runs], ignore_index=True)
    return pd.DataFrame({k: np.concatenate([np.asarray(c[k]) for c in runs]) for k in keys})


def restructure_reusing(ts: TrainingSet, st: Structure, done: TrainingSet | None) -> TrainingSet:
    """``ts.restructure(st)``, reusing ``done`` (an earlier ``restructure`` with a structure of
    the same content, of the first runs of ``ts``): only the runs it lacks get their features
    computed. Falls back to recomputing every run when ``done`` is not such a set."""
    n = len(done.raw) if done is not None and done.raw is not None else 0
    if (
        n == 0
        or ts.raw is None
        or n > len(ts.raw)
        or done.structure.doc != st.doc
        or done.structure.params != st.params
        or done.structure.source != st.source
        or any(done.contexts.get(k) != c for k, c in ts.contexts.items() if k in done.contexts)
        or done.sources != ts.sources[:n]
        or not all(_same_run(a, b) for a, b in zip(done.raw, ts.raw[:n], strict=True))
    ):
        return ts.restructure(st)
    if n == len(ts.raw):
        return TrainingSet(done.slices, done.scenarios, ts.contexts, ts.sources, st, done.raw)
    new = _assemble([(name, dict(c)) for name, c in ts.raw[n:]], ts.sources[n:], st, ts.contexts)
    fast = _concat_sets(done, new, same_structure=False)
    if fast is None:
        return ts.restructure(st)
    fast.structure = st
    return fast


def _same_run(a: tuple[str, dict], b: tuple[str, dict]) -> bool:
    """The same run's raw columns (the very arrays; its run number aside)."""
    (na, ca), (nb, cb) = a, b
    keys = [k for k in ca if k != "run"]
    return na == nb and keys == [k for k in cb if k != "run"] and all(ca[k] is cb[k] for k in keys)


def _concat_sets(a: TrainingSet, b: TrainingSet, same_structure: bool = True) -> TrainingSet | None:
    """``a`` extended by ``b`` without recomputing ``a``'s features (None when that would not
    give what :func:`_assemble` of all the runs gives)."""
    if a.raw is None or b.raw is None:
        return None
    if same_structure and a.structure is not b.structure:
        return None
    if list(a.slices.columns) != list(b.slices.columns) or list(a.slices.dtypes) != list(
        b.slices.dtypes
    ):
        return None
    for name in b.contexts:
        if name in a.contexts and a.contexts[name] != b.contexts[name]:
            return None  # the merged context would change a's features
    n = len(a.raw)
    raw = list(a.raw)
    for i, (name, cols) in enumerate(b.raw):
        c = dict(cols)
        c["run"] = np.full(len(c["k"]), n + i)
        raw.append((name, c))
    names = list(a.scenarios) + [s for s in b.scenarios if s not in a.scenarios]
    bs = b.slices.copy()
    bs["run"] = bs["run"].to_numpy() + n
    slices = pd.concat([a.slices, bs], ignore_index=True)
    return TrainingSet(
        slices, names, {**a.contexts, **b.contexts}, [*a.sources, *b.sources], a.structure, raw
    )


def from_traces(
    traces: list, sources=None, scenario=None, st: Structure | None = None
) -> TrainingSet:
    """Build a training set from :class:`drivefi.run.trace.Trace` objects."""
    from drivefi.tbn.structure_file import default_structure

    st = st or default_structure()
    sources = sources or [f"<trace {i}>" for i in range(len(traces))]
    ctxs: dict[str, dict] = {}
    raw: list[tuple[str, dict]] = []
    cache: dict[str, object] = {}
    for tr, src in zip(traces, sources, strict=True):
        sc = scenario
        name = tr.meta.get("scenario")
        if sc is None:
            sc = cache.get(name) or scenario_of(tr.meta, src)
            cache[name] = sc
        try:
            cols = _raw_slice(tr.frame, tr.meta, sc, src, st)
            ctx = Context.from_meta(tr.meta)
        except KeyError as err:
            raise InputError(f"{src}: trace metadata lacks {err}") from None
        raw.append((name, cols))
        ctxs.setdefault(name, ctx.as_dict())
    return _assemble(raw, list(sources), st, ctxs)


def read_traces(paths: list[str | Path], st: Structure | None = None) -> TrainingSet:
    """Read Parquet traces (golden or faulty) into a training set."""
    from drivefi.run.trace import read_trace

    if not paths:
        raise InputError("fit: give at least one trace file")
    traces = [read_trace(p) for p in paths]
    return from_traces(traces, [str(p) for p in paths], st=st)
