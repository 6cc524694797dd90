"""Recorder: golden runs and their traces (Parquet, one row per step, metadata in the schema)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from drivefi import __version__
from drivefi.atomic import atomic_path
from drivefi.errors import InputError
from drivefi.scenario import Scenario
from drivefi.simulate import Simulation, Snapshot, SnapshotRecorder, TraceRecorder

META_KEY = b"drivefi"


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


def trace_frame(rec: TraceRecorder, run: int = 0) -> pd.DataFrame:
    cols = {"k": np.arange(rec.steps)}
    cols.update({c: a[run] for c, a in rec.cols.items()})
    return pd.DataFrame(cols)


def trace_meta(
    scenario: Scenario, seed: int, fault: dict | None = None, stack: str = "reference"
) -> dict:
    """Trace metadata; ``stack`` is the stack's identity (:func:`drivefi.stack.stack_identity`)."""
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


@dataclass
class Golden:
    trace: Trace
    snapshots: Snapshot  # world+ADS state at every step (leading axis: step)


def record_golden(
    scenario: Scenario, seed: int | None = None, stack=None, snapshots: bool = True
) -> Golden:
    """Run the scenario fault-free and keep its trace and (``snapshots``) a snapshot at every step.

    ``stack``: the stack under test, a spec (``None``/``"reference"``, ``FILE.py[:CLASS]``) or a
    :class:`drivefi.stack.Stack`. A stack that fails during the golden run raises
    :class:`drivefi.ads.agent_loader.AgentStepError` naming the step."""
    from drivefi.stack import identity_of, load_stack, stack_errors

    seed = scenario.seed if seed is None else seed
    ads = stack if stack is not None and not isinstance(stack, str) else None
    ads = ads or load_stack(stack, scenario, seed)
    sim = Simulation(scenario, seed, ads=ads)
    rec = TraceRecorder(1, sim.steps, sim.points)
    snaps = SnapshotRecorder() if snapshots else None
    sim.run(1, recorders=[rec], snapshots=snaps)
    errors = stack_errors(sim.ads)
    if errors:
        from drivefi.ads.agent_loader import AgentStepError

        raise AgentStepError(f"golden run of {scenario.name}: {errors[0][1]}")
    meta = trace_meta(scenario, sim.seed, stack=identity_of(sim.ads))
    return Golden(Trace(trace_frame(rec), meta), snaps.snapshot() if snaps else None)


def record_runs(
    scenario: Scenario,
    faults: list,
    seed: int | None = None,
    stack=None,
    golden: Golden | None = None,
    lead: int = 0,
) -> list[Trace]:
    """Faulty runs of the stack under test as full traces (training data for the 3-TBN).

    All runs go in one lock-step batch, each started from the golden run's snapshot ``lead``
    steps before its fault (from step 0 when the stack cannot be copied); rows before that are
    the golden run's. ``stack``: a spec or a :class:`drivefi.stack.Stack`; ``golden``: its golden
    run (recorded when not given). A run whose stack raised is left out (its trace would stop
    being the stack's)."""
    from drivefi.faults import FaultInjector
    from drivefi.stack import identity_of, load_stack, stack_errors

    seed = scenario.seed if seed is None else seed
    ads = stack if stack is not None and not isinstance(stack, str) else None
    ads = ads or load_stack(stack, scenario, seed)
    golden = golden or record_golden(scenario, seed, ads)
    if not faults:
        return []
    sim = Simulation(scenario, seed, ads=ads)
    n = len(faults)
    rec = TraceRecorder(n, sim.steps, sim.points)
    starts = np.array([max(f.start - lead, 0) for f in faults])
    copyable = getattr(golden.snapshots.ads, "error", None) is None
    snap = golden.snapshots.take(starts) if copyable else None
    sim.run(n, snapshot=snap, injector=FaultInjector(faults, ads.points), recorders=[rec])
    failed = stack_errors(sim.ads)
    g = golden.trace.frame
    out = []
    for i, f in enumerate(faults):
        if i in failed:
            continue
        frame = pd.concat([g.iloc[: starts[i]], trace_frame(rec, i).iloc[starts[i] :]])
        meta = trace_meta(scenario, seed, f.as_row(), identity_of(ads))
        out.append(Trace(frame.reset_index(drop=True), meta))
    return out


def write_trace(trace: Trace, path: str | Path) -> Path:
    table = pa.Table.from_pandas(trace.frame, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), META_KEY: json.dumps(trace.meta)}
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_trace(path: str | Path) -> Trace:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: trace file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(f"{path}: not a readable Parquet trace ({err})") from None
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise InputError(f"{path}: Parquet file has no DriveFI metadata (not a DriveFI trace)")
    return Trace(table.to_pandas(), json.loads(raw))
