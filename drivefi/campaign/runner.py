"""Campaign runner: plan -> batches -> executor -> results store, resumable at any point."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from drivefi.campaign.batch import BatchContext
from drivefi.campaign.executor import Executor, LocalExecutor
from drivefi.campaign.store import ResultsStore
from drivefi.plan import Plan
from drivefi.scenario import Scenario


@dataclass
class CampaignSummary:
    campaign_id: int
    scenario: str
    planned: int
    ran_now: int
    done: int
    masked: int
    hazard: int
    accident: int
    error: int
    critical: int
    wall_s: float
    runs_per_s: float
    stack: str = "reference"  # the stack under test's identity
    runs_start: str = "golden snapshots"  # or "step 0 (...)" when the agent cannot be copied

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def batches_of(items: list, size: int) -> list[list]:
    """Sort by fault start step so a batch's runs start close together, then cut in ``size``."""
    items = sorted(items, key=lambda it: (it[1].start, it[0]))
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_campaign(
    scenario: Scenario,
    plan: Plan,
    db: str | Path,
    executor: Executor | None = None,
    seed: int | None = None,
    sim: str = "embedded",
    keep_traces: str = "none",
    batch_size: int | None = None,
    progress: bool = True,
    bridge_options: dict | None = None,
    retries: int = 2,
    agent: str | None = None,
) -> CampaignSummary:
    """Run every fault of ``plan`` not yet stored in ``db``; outcomes are committed batch by batch."""
    from drivefi.stack import is_reference, stack_identity

    plan.check_scenario(scenario)
    seed = scenario.seed if seed is None else seed
    agent = None if is_reference(agent) else agent
    identity = stack_identity(agent)
    check_plan_points(plan, agent)
    runs_start = (
        "golden snapshots" if sim == "embedded" else "step 0 (no snapshots on this simulator)"
    )
    if agent is not None and sim == "embedded":
        from drivefi.campaign.batch import golden_for, starts_from_snapshots

        ok, why = starts_from_snapshots(golden_for(scenario, seed, agent))
        if not ok:
            runs_start = f"step 0 (the agent cannot be copied: {why})"
    executor = executor or LocalExecutor(1)
    store = ResultsStore(db)
    try:
        settings = {
            "keep_traces": keep_traces,
            "executor": executor.name,
            "bridge": bridge_options or {},
            "stack": identity,
        }
        camp = store.open_campaign(scenario.name, plan.digest(), seed, sim, plan.faults, settings)
        _check_same_stack(store, camp.id, identity, db)
        done = store.done(camp)
        pending = [(i, f) for i, f in enumerate(plan.faults) if i not in done]
        trace_dir = None
        if keep_traces != "none":
            trace_dir = str(Path(db).with_suffix("")) + ".traces"
            Path(trace_dir).mkdir(parents=True, exist_ok=True)
        ctx = BatchContext(
            scenario,
            seed,
            sim,
            keep_traces,
            trace_dir,
            camp.id,
            bridge_options or {},
            retries,
            agent,
        )
        workers = getattr(executor, "workers", 1)
        if batch_size is None:
            cap = 1 if sim != "embedded" else (256 if keep_traces != "none" else 2048)
            batch_size = max(1, min(cap, math.ceil(len(pending) / (4 * workers)) if pending else 1))
        t0 = time.perf_counter()
        ran = 0
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>8.0f} runs/s"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        with Progress(
            *columns, console=Console(stderr=True), disable=not progress, transient=False
        ) as bar:
            task = bar.add_task(
                f"campaign {scenario.name}", total=camp.total, completed=len(done), rate=0.0
            )
            for rows in executor.run(ctx, batches_of(pending, batch_size)):
                store.write(camp, rows)
                ran += len(rows)
                el = time.perf_counter() - t0
                bar.update(task, advance=len(rows), rate=ran / el if el > 0 else 0.0)
        wall = time.perf_counter() - t0
        stats = next(c for c in store.campaigns() if c["id"] == camp.id)
        return CampaignSummary(
            camp.id, scenario.name, camp.total, ran, stats["done"], stats["masked"], stats["hazard"],
            stats["accident"], stats["error"], stats["critical"], wall, ran / wall if wall > 0 else 0.0,
            identity, runs_start,
        )  # fmt: skip
    finally:
        store.close()


def _check_same_stack(store: ResultsStore, campaign_id: int, identity: str, db) -> None:
    """A resumed campaign must test the stack it was started with (else exit 2, naming both)."""
    import json

    from drivefi.errors import InputError

    row = store.db.execute("SELECT settings FROM campaigns WHERE id=?", (campaign_id,)).fetchone()
    stored = json.loads(row[0] or "{}").get("stack", "reference") if row else identity
    if stored != identity:
        raise InputError(
            f"{db}: campaign {campaign_id} was run with stack '{stored}', not '{identity}': "
            "use the same --agent to resume, or another --db"
        )


def check_plan_points(plan: Plan, agent: str | None) -> None:
    """Every fault names a point of the stack under test (else exit 2, naming the row)."""
    from drivefi.errors import InputError
    from drivefi.faults import ANY_POINT
    from drivefi.stack import stack_points

    known = [p.name for p in stack_points(agent)]
    for i, f in enumerate(plan.faults):
        if f.point != ANY_POINT and f.point not in known:
            who = "the reference ADS" if agent is None else f"agent {agent}"
            raise InputError(
                f"plan row {i + 1}: injection point '{f.point}' is not a point of {who}; "
                f"known: {', '.join(known)}"
            )
