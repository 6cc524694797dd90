"""Faulty runs as a campaign whose traces are kept: how the pipeline gets training and
active-refit runs on a simulator without snapshots (CARLA).

Each call is one campaign of the results store (labelled ``training``, ``round 1``, ...), so the
runs are retried, spread over the executor (a CARLA server pool too), resumed after an interrupt
(same plan, same campaign) and listed in the report with every other campaign.
"""

from __future__ import annotations

from pathlib import Path

from drivefi.campaign.outcome import STACK_FAILURE
from drivefi.campaign.runner import run_campaign, trace_dir_of
from drivefi.core import Fault
from drivefi.faults.plan import Plan
from drivefi.run.testbed import Testbed


def campaign_traces(
    scenario,
    faults: list[Fault],
    db: str | Path,
    label: str,
    executor=None,
    testbed: Testbed | None = None,
    progress: bool = True,
) -> list:
    """The trace of each fault's run (from step 0), or None where the run failed (the simulator
    gave up, or the stack raised: that trace stops being the stack's)."""
    from drivefi.run.trace import read_trace

    if not faults:
        return []
    plan = Plan(scenario.name, scenario.steps, faults)
    s = run_campaign(scenario, plan, db, executor, testbed, keep_traces="all", progress=progress,
                     label=label)  # fmt: skip
    folder = Path(trace_dir_of(db))
    out = []
    for i in range(len(faults)):
        path = folder / f"c{s.campaign_id}_{i:07d}.parquet"
        tr = read_trace(path) if path.is_file() else None
        outcome = (tr.meta.get("fault") or {}).get("outcome") if tr is not None else None
        failed = outcome in (None, STACK_FAILURE)
        out.append(None if failed else tr)
    return out
