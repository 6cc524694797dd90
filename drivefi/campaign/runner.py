"""Campaign runner: plan -> batches -> executor -> results store, resumable at any point."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
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

from drivefi.campaign.context import BatchContext
from drivefi.campaign.executor import Executor, LocalExecutor
from drivefi.campaign.lease import Lease
from drivefi.campaign.store import LEASE_S, ResultsStore
from drivefi.errors import InputError
from drivefi.faults.plan import Plan
from drivefi.run.testbed import Testbed
from drivefi.util.atomic import remove_stray_temps
from drivefi.util.seeds import check_seed
from drivefi.world.scenario import Scenario

STORE_WAIT_S = 10.0  # how long a store write waits for another campaign's (then exit 2)

log = logging.getLogger("drivefi.campaign")


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
    stack_failure: int = 0  # runs whose stack failed (raised, timed out, non-finite command)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def batches_of(items: list, size: int) -> list[list]:
    """Sort by fault start step so a batch's runs start close together, then cut in ``size``."""
    items = sorted(items, key=lambda it: (it[1].start, it[0]))
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass(frozen=True)
class CampaignOptions:
    """How a campaign runs (everything but what and where)."""

    seed: int | None = None  # default: the scenario's
    keep_traces: str = "none"  # none | hazards | all
    batch_size: int | None = None  # default: from the plan, the workers and the simulator
    progress: bool = True
    retries: int = 2  # attempts after a simulator failure
    lease: float = LEASE_S  # seconds a claim lives without its campaign's heartbeat
    poll: float = 0.5  # seconds between looks at faults other campaigns run
    label: str | None = None  # the campaign's role (search, random, training, ...) for the report


def run_campaign(
    scenario: Scenario,
    plan: Plan,
    db: str | Path,
    executor: Executor | None = None,
    testbed: Testbed | None = None,
    options: CampaignOptions | None = None,
    **overrides,
) -> CampaignSummary:
    """Run every fault of ``plan`` not yet stored in ``db`` on ``testbed`` (default: the
    reference ADS on the embedded simulator); outcomes are committed batch by batch.

    ``options`` (or its fields as keywords, e.g. ``progress=False``) say how. Faults are claimed
    from the store batch by batch, so campaigns started on one store share the remaining work;
    when nothing is left to claim, the campaign waits for the faults that others run (taking them
    over if those campaigns die) and returns once every fault has an outcome. The executor is
    started (a Ray cluster joined, a server pool checked) before the store is created, so a bad
    executor setup leaves no file behind.
    """
    opts = replace(options or CampaignOptions(), **overrides)
    testbed = testbed or Testbed()
    plan.check_scenario(scenario)
    opts = replace(opts, seed=scenario.seed if opts.seed is None else opts.seed)
    check_plan_points(plan, testbed)
    check_seed(opts.seed)
    for i, f in enumerate(plan.faults):
        if f.seed is not None:
            check_seed(f.seed, f"plan row {i + 1}, field 'seed'")
    own_executor = executor is None
    executor = executor or LocalExecutor(1)
    trace_dir = trace_dir_of(db) if opts.keep_traces != "none" else None
    start = getattr(executor, "start", None)
    with _sigterm_exits():
        try:
            if start is not None:
                start()
            ctx = BatchContext(scenario, opts.seed, testbed, opts.keep_traces, trace_dir,
                               retries=opts.retries)  # fmt: skip
            return _run(ctx, plan, db, executor, opts)
        finally:
            if own_executor and hasattr(executor, "close"):
                executor.close()


def trace_dir_of(db: str | Path) -> str:
    """The folder of a results store's kept traces (``<db>.traces``)."""
    path = Path(str(Path(db).with_suffix("")) + ".traces")
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: is a file, expected the folder for --keep-traces traces")
    return str(path)


def golden_trace_path(db: str | Path, campaign_id: int) -> Path:
    """Where a campaign's golden-run trace is kept: ``<db>.traces/golden/c<id>.parquet`` (beside
    the kept faulty-run traces, in a folder of its own so that they stay alone in theirs)."""
    return Path(str(Path(db).with_suffix("")) + ".traces") / "golden" / f"c{campaign_id}.parquet"


def store_golden(trace, db: str | Path, campaign_id: int) -> Path | None:
    """Keep the campaign's golden-run trace (already recorded: it costs one small file) so that
    the report draws it for any stack without running that stack again. A folder that cannot be
    written is a warning, not an error: the campaign's outcomes do not need the file."""
    from drivefi.run.trace import Trace, write_trace

    path = golden_trace_path(db, campaign_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stray_temps(path.parent)  # of a campaign killed while writing it
        write_trace(Trace(trace.frame, {**trace.meta, "campaign": campaign_id}), path,
                    "golden trace")  # fmt: skip
    except (OSError, InputError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        log.warning(
            "campaign %d: golden run's trace not kept in %s (%s): the report will lack it",
            campaign_id, path.parent, reason,
        )  # fmt: skip
        return None
    return path


@contextmanager
def _sigterm_exits():
    """SIGTERM ends the campaign like Ctrl-C (claims given back, workers stopped), not abruptly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.getsignal(signal.SIGTERM)
    if old is not signal.SIG_DFL:
        yield
        return

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _run(ctx: BatchContext, plan: Plan, db, executor, opts: CampaignOptions) -> CampaignSummary:
    scenario, testbed = ctx.scenario, ctx.testbed
    identity = testbed.stack.identity
    runs_start = "golden snapshots"
    g = None  # the golden run, where this process records it (a simulator with snapshots)
    if not testbed.simulator.snapshots:
        runs_start = "step 0 (no snapshots on this simulator)"
    else:
        from drivefi.campaign.batch import golden

        g = golden(ctx)
        if not g.copyable:
            runs_start = f"step 0 (the agent cannot be copied: {g.why_not_copyable})"
    # campaigns may share a store: a write waits up to STORE_WAIT_S for another's to finish
    store = ResultsStore(db, write=True, timeout=STORE_WAIT_S)
    lease = Lease(db, opts.lease)
    try:
        settings = {"keep_traces": ctx.keep_traces, "executor": executor.name, "bridge": {
            k: v for k, v in testbed.simulator.options.items()
            if isinstance(v, str | int | float | bool | None)
        }, "stack": identity, "replay": testbed.replay_spec, "agent": testbed.stack.absolute,
            "agent_config": testbed.stack.conf,
            # a simulator with snapshots re-runs a stored fault exactly (drivefi replay)
            "rerun_on": testbed.simulator.name if testbed.simulator.snapshots else None,
            "points": [p.name for p in testbed.points()],
            # the ranges m-random faults draw from, to show what they drew (export, report)
            "point_specs": [[p.name, p.lo, p.hi, p.unit] for p in testbed.points()]}  # fmt: skip
        if opts.label:
            settings["label"] = opts.label
        camp = store.open_campaign(scenario.name, plan.digest(), ctx.seed, testbed.simulator.name,
                                   plan.faults, settings)  # fmt: skip
        _check_same_stack(store, camp.id, identity, db)
        if g is not None:
            store_golden(g.trace, db, camp.id)
        since = time.time()
        lease.start(store)
        if ctx.trace_dir is not None:
            try:
                Path(ctx.trace_dir).mkdir(parents=True, exist_ok=True)
                remove_stray_temps(ctx.trace_dir)  # of a campaign killed while writing a trace
            except OSError as err:
                raise InputError(
                    f"{ctx.trace_dir}: cannot create ({err.strerror or err})"
                ) from None
        ctx = replace(ctx, campaign_id=camp.id)
        n_open = store.open_count(camp, since)
        workers = getattr(executor, "workers", 1)
        batch_size = opts.batch_size
        if batch_size is None:  # a run of its own per fault where the simulator has no snapshots
            cap = 256 if ctx.keep_traces != "none" else 2048
            cap = cap if testbed.simulator.snapshots else 1
            batch_size = max(1, min(cap, math.ceil(n_open / (4 * workers)) if n_open else 1))

        def claimed():
            while True:
                idxs = store.claim(camp, lease.owner, batch_size, since, lease.lease)
                if not idxs:
                    return
                yield [(i, plan.faults[i]) for i in idxs]

        def finished() -> int:
            c = store.campaigns(camp.id)[0]
            return c["done"] + c["error"]

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
            *columns, console=Console(stderr=True), disable=not opts.progress, transient=False
        ) as bar:
            task = bar.add_task(
                f"campaign {scenario.name}", total=camp.total, completed=finished(), rate=0.0
            )
            show = getattr(executor, "show_status", None)
            if show is not None:
                show(bar)
            while True:
                for rows in executor.run(ctx, claimed()):
                    store.write(camp, rows, lease.owner)
                    ran += len(rows)
                    el = time.perf_counter() - t0
                    bar.update(task, completed=finished(), rate=ran / el if el > 0 else 0.0)
                if store.open_count(camp, since) == 0:
                    break
                time.sleep(
                    opts.poll
                )  # the rest is claimed by other campaigns: wait, or take it over
                bar.update(task, completed=finished())
        wall = time.perf_counter() - t0
        stats = store.campaigns(camp.id)[0]
        return CampaignSummary(
            camp.id, scenario.name, camp.total, ran, stats["done"], stats["masked"], stats["hazard"],
            stats["accident"], stats["error"], stats["critical"], wall, ran / wall if wall > 0 else 0.0,
            identity, runs_start, stats["stack_failure"],
        )  # fmt: skip
    finally:
        lease.stop(store)
        store.close()


def _check_same_stack(store: ResultsStore, campaign_id: int, identity: str, db) -> None:
    """A resumed campaign must test the stack it was started with (else exit 2, naming both)."""
    import json

    row = store.db.execute("SELECT settings FROM campaigns WHERE id=?", (campaign_id,)).fetchone()
    stored = json.loads(row[0] or "{}").get("stack", "reference") if row else identity
    if stored != identity:
        raise InputError(
            f"{db}: campaign {campaign_id} was run with stack '{stored}', not '{identity}': "
            "use the same --agent to resume, or another --db"
        )


def check_plan_points(plan: Plan, testbed: Testbed) -> None:
    """Every fault names a point of the stack under test (else exit 2, naming the row)."""
    from drivefi.faults import ANY_POINT

    known = [p.name for p in testbed.points()]
    for i, f in enumerate(plan.faults):
        if f.point != ANY_POINT and f.point not in known:
            raise InputError(
                f"plan row {i + 1}: injection point '{f.point}' is not a point of "
                f"{testbed.stack.label}; "
                f"known: {', '.join(known)}"
            )
