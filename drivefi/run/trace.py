"""The trace format: one row per step of a run (Parquet), its columns and its metadata.

Nothing here runs a simulator: reading, writing and checking a trace imports no bridge and no
stack (the 3-TBN reads traces of stacks it does not know)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from drivefi import __version__
from drivefi.errors import InputError
from drivefi.util.atomic import atomic_path
from drivefi.util.seeds import check_seed
from drivefi.world.scenario import MAX_STEPS, Scenario

META_KEY = b"drivefi"

TRACE_STATE = ["x", "y", "theta", "v", "phi", "a"]
TRACE_LANE = ["s", "lane_offset", "heading_error", "curvature"]
TRACE_ACT = ["throttle", "brake", "steer"]
TRACE_SAFETY = ["d_stop_lon", "d_stop_lat", "d_safe_lon", "d_safe_lat", "delta_lon", "delta_lat"]


@dataclass
class Trace:
    """A recorded run: one row per step, and what it was recorded from."""

    frame: pd.DataFrame
    meta: dict

    def summary(self) -> dict:
        f = self.frame
        i, j = int(f["delta_lon"].idxmin()), int(f["delta_lat"].idxmin())
        return {
            "scenario": self.meta.get("scenario"),
            "seed": self.meta.get("seed"),
            "duration_s": float(len(f) * self.meta.get("dt", 0.0)),
            "steps": len(f),
            "min_delta_lon": float(f["delta_lon"].iloc[i]),
            "min_delta_lon_t": float(f["t"].iloc[i]),
            "min_delta_lat": float(f["delta_lat"].iloc[j]),
            "min_delta_lat_t": float(f["t"].iloc[j]),
            "hazard_steps": int(f["hazard"].sum()),
            "collision": bool(f["collision"].any()),
            "departure": bool(f["departure"].any()),
        }


def trace_meta(
    scenario: Scenario, seed: int, fault: dict | None = None, stack: str = "reference"
) -> dict:
    """Trace metadata; ``stack`` is the stack's identity (:func:`drivefi.stacks.stack_identity`)."""
    return {
        "scenario": scenario.name,
        "seed": seed,
        "dt": scenario.dt,
        "steps": scenario.steps,
        "vehicle": scenario.ego.vehicle.model_dump(),
        "ego_lane": scenario.ego.lane,
        "lane_width": scenario.road.lane_width,
        "fault": fault,
        "stack": stack,
        "version": __version__,
    }


def write_trace(trace: Trace, path: str | Path, what: str = "trace") -> Path:
    table = pa.Table.from_pandas(trace.frame, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), META_KEY: json.dumps(trace.meta)}
    )
    with atomic_path(path, what) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


BASE_COLUMNS = ["k", "t", *TRACE_STATE, *TRACE_LANE, *TRACE_ACT, *TRACE_SAFETY]
FLAG_COLUMNS = ["hazard", "collision", "departure", "fault_active"]
META_FIELDS = ("scenario", "seed", "dt", "steps", "vehicle")


def _meta(raw: bytes, path: Path) -> dict:
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        raise InputError(f"{path}: DriveFI metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise InputError(
            f"{path}: DriveFI metadata: expected a JSON object, got {type(meta).__name__}"
        )
    missing = [k for k in META_FIELDS if k not in meta]
    if missing:
        raise InputError(f"{path}: DriveFI metadata lacks field(s) {', '.join(missing)}")
    if not isinstance(meta["scenario"], str) or not meta["scenario"]:
        raise InputError(
            f"{path}: metadata field 'scenario': expected a scenario name, got {meta['scenario']!r}"
        )
    check_seed(meta["seed"], f"{path}: metadata field 'seed'")
    dt = meta["dt"]
    if isinstance(dt, bool) or not isinstance(dt, int | float) or not 0 < dt <= 1:
        raise InputError(f"{path}: metadata field 'dt': expected 0 < dt <= 1 s, got {dt!r}")
    steps = meta["steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise InputError(
            f"{path}: metadata field 'steps': expected a whole number 1..{MAX_STEPS}, got {steps!r}"
        )
    if not isinstance(meta["vehicle"], dict):
        raise InputError(f"{path}: metadata field 'vehicle': expected an object of parameters")
    if meta.get("fault") is not None and not isinstance(meta["fault"], dict):
        raise InputError(f"{path}: metadata field 'fault': expected an object or null")
    return meta


def check_frame(frame: pd.DataFrame, meta: dict, path: str | Path) -> None:
    """Columns, types and step index of a trace: one row per step k = 0..steps-1, t = k * dt."""
    missing = [c for c in BASE_COLUMNS + FLAG_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: trace lacks column(s) {', '.join(missing)}")
    if frame.columns.duplicated().any():
        dup = frame.columns[frame.columns.duplicated()][0]
        raise InputError(f"{path}: column '{dup}' appears twice")
    for c in frame.columns:
        if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])):
            raise InputError(f"{path}: column '{c}': expected numbers, got {frame[c].dtype}")
    steps = meta["steps"]
    if len(frame) != steps:
        raise InputError(
            f"{path}: {len(frame)} rows but its metadata says {steps} steps (a cut or padded trace)"
        )
    k = frame["k"].to_numpy()
    if not pd.api.types.is_integer_dtype(frame["k"]) or not np.array_equal(k, np.arange(steps)):
        bad = int(np.argmax(k != np.arange(steps))) if len(k) == steps else 0
        raise InputError(
            f"{path}: column 'k': expected steps 0..{steps - 1} in order, "
            f"row {bad} has {k[bad]!r} (a gap, a repeat or out of order)"
        )
    t = frame["t"].to_numpy(float)
    rec = np.isfinite(t)
    if np.isinf(t).any() or not np.allclose(t[rec], k[rec] * meta["dt"], rtol=1e-9, atol=1e-6):
        bad = int(np.argmax(~np.isclose(t, k * meta["dt"], rtol=1e-9, atol=1e-6) & ~np.isnan(t)))
        raise InputError(
            f"{path}: column 't' at step {bad}: expected k * dt = {bad * meta['dt']:g} s, got {t[bad]:g}"
        )


def read_trace(path: str | Path) -> Trace:
    """Read and validate a trace (metadata, columns, one row per step); :class:`InputError` if bad."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected a Parquet trace file")
    if not path.is_file():
        raise InputError(f"{path}: trace file not found")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable Parquet trace ({_first_line(err)})") from None
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise InputError(f"{path}: Parquet file has no DriveFI metadata (not a DriveFI trace)")
    meta = _meta(raw, path)
    try:
        frame = pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable Parquet trace ({_first_line(err)})") from None
    check_frame(frame, meta, path)
    return Trace(frame, meta)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def check_golden(
    trace: Trace, scenario: Scenario, source: str | Path, points: list[str] | None = None
) -> None:
    """A golden trace must be the fault-free run of this scenario: same name, dt, steps and
    vehicle, every row recorded with finite values (``points``: the columns the caller needs)."""
    m = trace.meta
    if m["scenario"] != scenario.name:
        raise InputError(
            f"{source}: golden trace of scenario '{m['scenario']}', not '{scenario.name}'"
        )
    if m["steps"] != scenario.steps or abs(m["dt"] - scenario.dt) > 1e-12:
        raise InputError(
            f"{source}: golden trace has {m['steps']} steps of {m['dt']:g} s; "
            f"scenario '{scenario.name}' has {scenario.steps} steps of {scenario.dt:g} s"
        )
    if m.get("fault"):
        raise InputError(f"{source}: a faulty run's trace; expected the golden (fault-free) run")
    vp = scenario.ego.vehicle.model_dump()
    diff = [k for k, v in vp.items() if m["vehicle"].get(k) != v]
    if diff:
        raise InputError(
            f"{source}: metadata field 'vehicle.{diff[0]}': golden run recorded with "
            f"{m['vehicle'].get(diff[0])!r}, scenario '{scenario.name}' has {vp[diff[0]]!r}"
        )
    missing = [p for p in points or [] if p not in trace.frame.columns]
    if missing:
        raise InputError(f"{source}: trace lacks injection point column(s) {', '.join(missing)}")
    cols = [c for c in BASE_COLUMNS if c != "k"] + list(points or [])
    vals = trace.frame[cols].to_numpy(float)
    bad = ~np.isfinite(vals)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(
            f"{source}: column '{cols[col]}' at step {row}: expected a finite number in a "
            f"golden run, got {vals[row, col]}"
        )
