"""Replay one fault: its faulty run next to the golden run, step by step.

The embedded simulator is deterministic and a faulty run starts from the golden run's snapshot at
the fault's first step, so a replay is the campaign's own run again (same outcome, same min deltas,
bit for bit) in milliseconds. The report and ``drivefi replay`` both call :func:`replay`. Faults of
campaigns that ran on another simulator are shown from their kept traces (:func:`kept_trace`);
they are never re-run on the embedded simulator in their place.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from drivefi.core import Fault, InjectionPoint
from drivefi.errors import InputError
from drivefi.faults import ANY_POINT, MODELS
from drivefi.run.testbed import Testbed
from drivefi.run.trace import Trace
from drivefi.world.scenario import Scenario


@dataclass
class Replay:
    """A faulty run and the golden run it departs from (frames aligned on the step index k)."""

    fault: Fault
    golden: pd.DataFrame
    trace: Trace  # golden rows before the fault's first step, the faulty run's rows from there
    outcome: dict  # the outcome row a campaign stores for this fault
    dt: float


def check_fault(scenario: Scenario, fault: Fault, points: list[InjectionPoint]) -> None:
    """Refuse a fault the scenario or the stack (its ``points``) cannot take, naming the option
    at fault."""
    known = {p.name: p for p in points}
    if fault.model not in MODELS:
        raise InputError(f"--model: expected one of {', '.join(MODELS)}, got '{fault.model}'")
    if fault.model != "m-random" and fault.point not in known:
        raise InputError(
            f"--point: unknown injection point '{fault.point}'; known: {', '.join(known)}"
        )
    if fault.duration < 1 or (fault.model in ("1-fixed", "1-random") and fault.duration != 1):
        need = "1" if fault.model in ("1-fixed", "1-random") else ">= 1"
        raise InputError(f"--duration: {fault.model} expects {need} step(s), got {fault.duration}")
    if fault.start < 0 or fault.start + fault.duration > scenario.steps:
        raise InputError(
            f"--start/--duration: the fault must end by step {scenario.steps}, the end of "
            f"'{scenario.name}'; got steps {fault.start}..{fault.start + fault.duration - 1}"
        )
    if fault.model == "bitflip":
        if fault.bit is None or not 0 <= fault.bit <= 31:
            raise InputError(f"--bit: bitflip expects a bit 0..31, got {fault.bit}")
    elif fault.model != "m-random":
        p = known[fault.point]
        if fault.value is None or not math.isfinite(fault.value) or not p.lo <= fault.value <= p.hi:
            raise InputError(
                f"--value: expected {p.lo:g}..{p.hi:g} {p.unit} for {fault.point}, got {fault.value}"
            )


def replay(
    scenario: Scenario, fault: Fault, seed: int | None = None, testbed: Testbed | None = None
) -> Replay:
    """Re-run ``fault`` on ``testbed`` (default: the reference ADS, embedded) as its campaign ran
    it: from the golden run's state at its first step where the simulator has snapshots."""
    return replay_many(scenario, [fault], seed, testbed)[0]


def replay_many(
    scenario: Scenario, faults: list[Fault], seed: int | None = None, testbed: Testbed | None = None
) -> list[Replay]:
    """Re-run several faults in one batch (as a campaign runs them): one result each."""
    from drivefi.campaign.batch import attempt
    from drivefi.campaign.context import BatchContext

    testbed = testbed or Testbed()
    seed = scenario.seed if seed is None else seed
    points = testbed.points()
    for f in faults:
        check_fault(scenario, f, points)
    if not faults:
        return []
    ctx = BatchContext(scenario, seed, testbed, keep_traces="all")
    rows, runs = attempt(ctx, list(enumerate(faults)))
    g = runs.golden.trace.frame
    result = []
    for j, (f, row) in enumerate(zip(faults, rows, strict=True)):
        row.pop("idx", None)
        trace = runs.trace(j)
        trace.meta["fault"] = {**f.as_row(), "outcome": row["outcome"]}
        result.append(Replay(f, g, trace, row, scenario.dt))
    return result


def time_to_hazard(outcome: dict, fault: Fault, dt: float) -> float | None:
    """Seconds from the fault's first step to the first hazard step (None when masked)."""
    k = outcome.get("first_hazard_step")
    if k is None or k < 0:
        return None
    return (k - fault.start) * dt


@dataclass
class StoredFault:
    """A fault as a results database holds it, with its campaign."""

    campaign: dict  # id, scenario, seed, sim, settings
    index: int
    fault: Fault
    outcome: dict


def stored_fault(db: str | Path, index: int, campaign: int | None = None) -> StoredFault:
    """Fault ``index`` (its row in the campaign's plan, from 0) of ``campaign`` in ``db``.

    ``campaign`` may be left out when the database holds one campaign."""
    from drivefi.campaign.store import ResultsStore

    db = Path(db)
    if not db.is_file():
        raise InputError(f"{db}: results database not found")
    store = ResultsStore(db)
    try:
        camps = {
            r[0]: {"id": r[0], "scenario": r[1], "seed": r[2], "sim": r[3], "settings": r[4]}
            for r in store.db.execute("SELECT id, scenario, seed, sim, settings FROM campaigns")
        }
        if campaign is None:
            if len(camps) != 1:
                ids = ", ".join(str(c) for c in camps) or "none"
                raise InputError(
                    f"{db}: holds {len(camps)} campaigns ({ids}); choose one with --campaign"
                )
            campaign = next(iter(camps))
        if campaign not in camps:
            raise InputError(
                f"--campaign: {db} has no campaign {campaign}; it has {', '.join(map(str, camps))}"
            )
        df = store.outcomes(campaign)
    finally:
        store.close()
    row = df[df["idx"] == index]
    if row.empty:
        raise InputError(f"--fault: campaign {campaign} has faults 0..{len(df) - 1}, got {index}")
    r = row.iloc[0]
    fault = fault_from_row(r)
    c = camps[campaign]
    c["settings"] = json.loads(c["settings"] or "{}")
    outcome = {k: (None if pd.isna(r[k]) else r[k]) for k in df.columns}
    return StoredFault(c, index, fault, outcome)


def kept_trace(db: str | Path, campaign: int, index: int) -> Path | None:
    """The faulty run's trace a campaign kept (``--keep-traces``), if it exists."""
    path = Path(str(Path(db).with_suffix("")) + ".traces") / f"c{campaign}_{index:07d}.parquet"
    return path if path.is_file() else None


def fault_from_row(r) -> Fault:
    """The fault of a stored outcome row (the results store's fault columns)."""
    return Fault(
        str(r["point"]),
        str(r["model"]),
        None if pd.isna(r["value"]) else float(r["value"]),
        None if pd.isna(r["bit"]) else int(r["bit"]),
        int(r["start"]),
        int(r["duration"]),
        int(r["seed"]),
    )


def fault_of(point: str, model: str, value, bit, start: int, duration: int, seed: int = 0) -> Fault:
    """A fault from command-line parts (m-random takes no point: it draws its own)."""
    return Fault(
        ANY_POINT if model == "m-random" else point, model, value, bit, start, duration, seed
    )


def _num(x: float) -> str:
    """Shortest text that reads back as exactly ``x``."""
    s = repr(float(x))
    return s[:-2] if s.endswith(".0") else s


def command_for(
    scenario: str,
    fault: Fault,
    seed: int | None = None,
    out: str = "replay.parquet",
    agent: str | None = None,
) -> str:
    """The ``drivefi replay`` command line that re-runs ``fault`` (``seed`` only when it is not
    the scenario's own; ``agent``: the stack, when it is not the reference ADS)."""
    parts = ["drivefi replay", scenario] + (["--agent", agent] if agent else [])
    if fault.model != "m-random":
        parts += ["--point", fault.point]
    parts += ["--model", fault.model]
    if fault.model == "bitflip":
        parts += ["--bit", str(fault.bit)]
    elif fault.model != "m-random":
        parts += ["--value", _num(float(fault.value))]
    parts += ["--start", str(fault.start), "--duration", str(fault.duration)]
    if fault.model == "m-random":
        parts += ["--fault-seed", str(fault.seed)]
    if seed is not None:
        parts += ["--seed", str(seed)]
    parts += ["--out", out]
    return " ".join(parts)


def db_command_for(db: str | Path, campaign: int, index: int, out: str | None = None) -> str:
    """The ``drivefi replay`` command line for fault ``index`` of ``campaign`` stored in ``db``."""
    out = out or f"c{campaign}_f{index}.parquet"
    return f"drivefi replay --db {db} --campaign {campaign} --fault {index} --out {out}"
