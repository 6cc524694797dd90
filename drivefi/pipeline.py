"""The main job: golden run -> training runs -> 3-TBN fit -> search in active-refit rounds ->
validate -> random baseline.

Every artefact goes to the output folder: the golden trace, the model, the search's plan, the
random baseline's plan and one results database holding both campaigns. Each stage's wall time is
reported. The summary compares the search with random fault injection drawn uniformly from the
same candidate space: per injection in validation (predictions no round injected), and per run
over everything the search simulated (training runs, rounds, validation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from drivefi.bridges.base import Simulator
from drivefi.campaign.executor import LocalExecutor
from drivefi.campaign.runner import run_campaign
from drivefi.campaign.traces import campaign_traces
from drivefi.core import Fault
from drivefi.faults.plan import Plan, default_values, fault_model_for, faults_frame, write_plan
from drivefi.run.golden import golden_of, record_golden
from drivefi.run.testbed import Testbed
from drivefi.run.trace import write_trace
from drivefi.util.progress import Progress, finished, silent
from drivefi.world.scenario import Scenario


@dataclass
class PipelineSummary:
    scenario: str
    out: str
    candidates_scored: int = 0
    predicted_critical: int = 0
    injected: int = 0
    confirmed_hazards: int = 0  # in the validation campaign
    confirmed_accidents: int = 0
    precision: float | None = None  # of the validated predictions (faults no round injected)
    confirmed_in_rounds: int = 0  # critical faults the active-refit rounds injected
    found_critical: int = 0  # rounds + validation: every critical fault the search simulated
    simulated_runs: int = 0  # training + round injections + validation
    random_injected: int = 0
    random_hazards: int = 0
    random_accidents: int = 0
    stack_failures: int = 0  # validation runs whose stack failed under its fault
    random_stack_failures: int = 0
    hazards_per_injection_search: float = 0.0
    hazards_per_injection_random: float = 0.0
    critical_per_run: float = 0.0  # found_critical / simulated_runs
    speedup: float | None = None  # critical_per_run / random FI's hazards per injection
    speedup_validation: float | None = None  # per injection: validation / random FI
    # the same in distinct cases (failure modes, drivefi.search.modes)
    search_cases: int = 0  # rounds + validation: cases of every critical fault the search simulated
    validation_cases: int = 0  # cases of the validation campaign's critical faults
    random_cases: int = 0
    cases_per_run: float = 0.0  # search_cases / simulated_runs
    random_cases_per_injection: float = 0.0  # random_cases / random_injected
    case_speedup: float | None = None  # cases_per_run / random_cases_per_injection
    structure: str = ""
    simulated_share: float = 0.0  # simulated_runs / space
    rounds: list = field(default_factory=list)  # per active-refit round
    # points whose faults never changed the stack's commands -> runs that showed it (training and
    # probes); left out of the space the search scored (drivefi.search.evidence)
    unreached_points: dict = field(default_factory=dict)
    probe_runs: int = 0  # runs probing points no training run reached (in simulated_runs)
    groups: list = field(default_factory=list)  # the model's evidence per point x duration x phase
    unresolved_groups: int = 0
    golden: dict = field(default_factory=dict)  # the golden run's summary (min deltas, ...)
    stage_seconds: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


# the figures the pipeline hands the report, so both print the same numbers
REPORT_FIGURES = ("simulated_runs", "found_critical", "injected", "random_injected",
                  "hazards_per_injection_search", "hazards_per_injection_random",
                  "critical_per_run", "speedup", "speedup_validation", "search_cases",
                  "validation_cases", "random_cases", "cases_per_run",
                  "random_cases_per_injection", "case_speedup")  # fmt: skip


def figures(s: PipelineSummary) -> dict:
    """The summary's comparison figures (faults and cases), as the report shows them."""
    return {k: getattr(s, k) for k in REPORT_FIGURES}


def count_cases(
    s: PipelineSummary,
    db: Path,
    round_faults: list,
    search_id: int | None,
    random_id: int,
    dt: float,
) -> None:
    """Fill ``s``'s case figures: the rounds' critical faults (``round_faults``) and the
    validation campaign's (``search_id``) together, the random baseline's (``random_id``) apart,
    grouped by :mod:`drivefi.search.modes`."""
    import pandas as pd

    from drivefi.campaign.store import ResultsStore
    from drivefi.search.modes import count_cases as n_cases
    from drivefi.search.modes import critical_faults

    store = ResultsStore(db)
    try:
        val = critical_faults(store.outcomes(search_id)) if search_id is not None else None
        rnd = critical_faults(store.outcomes(random_id))
    finally:
        store.close()
    cols = ["point", "model", "value", "bit", "seed", "start", "duration"]
    parts = [faults_frame(round_faults)[cols]]
    if val is not None:
        parts.append(val[cols])
        s.validation_cases = n_cases(val, dt=dt)
    parts = [p for p in parts if len(p)]
    s.search_cases = n_cases(pd.concat(parts, ignore_index=True), dt=dt) if parts else 0
    s.random_cases = n_cases(rnd, dt=dt)
    s.cases_per_run = s.search_cases / max(s.simulated_runs, 1)
    s.random_cases_per_injection = s.random_cases / max(s.random_injected, 1)
    if s.random_cases_per_injection > 0:
        s.case_speedup = s.cases_per_run / s.random_cases_per_injection


def evidence_groups(scenario: Scenario, res, seen, db: Path, validation: tuple, golden) -> list:
    """The model's evidence per group (:func:`drivefi.search.evidence.group_evidence`) from the
    active search's result ``res``, its training runs (``seen``, a watch) and the validation
    (its faults and campaign id in ``db``, None when nothing was validated)."""
    import pandas as pd

    from drivefi.campaign.store import ResultsStore
    from drivefi.search import score_fault_list
    from drivefi.search.evidence import SearchEvidence, group_evidence
    from drivefi.search.modes import critical_faults

    faults, campaign = validation
    crit = pd.DataFrame(columns=["point", "start", "duration"])
    if campaign is not None:
        store = ResultsStore(db)
        try:
            crit = critical_faults(store.outcomes(campaign))
        finally:
            store.close()
    train = [f for f, _, _ in seen.training]
    e = SearchEvidence(seen.training, score_fault_list(scenario, res.model, golden, train),
                       res.candidates, res.injected, res.outcome, res.p_cal, res.plan, faults,
                       crit)  # fmt: skip
    return group_evidence(e, scenario.dt, seen.unreached)


def random_baseline(
    scenario: Scenario, count: int, durations, seed: int = 0, points: list | None = None
) -> Plan:
    """Faults drawn uniformly from the search's candidate space (step x point x value x duration);
    ``points``: the stack under test's (default: the reference ADS's)."""
    points = list(points or Testbed().points())
    known = {p.name: p for p in points}
    rng = np.random.default_rng([seed, 0x5241])
    faults = []
    for _ in range(count):
        m = int(rng.choice(durations))
        p = points[int(rng.integers(len(points)))]
        v = float(rng.choice(default_values(p.name, known=known)))
        faults.append(
            Fault(
                p.name, fault_model_for(m), v, None, int(rng.integers(0, scenario.steps - m + 1)), m
            )
        )
    return Plan(scenario.name, scenario.steps, faults)


@dataclass(frozen=True)
class PipelineOptions:
    """What the main job spends and how (everything but what and where)."""

    budget: int = 300  # predicted faults validated by injection
    training_runs: int = 300
    durations: tuple[int, ...] = (1, 5, 20)
    workers: int = 2  # local processes (when no executor is given)
    seed: int = 0  # of the training faults, the rounds and the random baseline
    structure: str | None = None  # 3-TBN structure file; default: the stack's own or derived
    rounds: int = 3
    budget_share: float = 0.10  # share of the space the search may simulate in all
    # where the search learns the stack: None (the testbed's simulator) or another one, chosen
    # explicitly (e.g. the embedded simulator while validating on CARLA), never as a fallback
    train_on: Simulator | None = None
    overwrite: bool = False  # start over in an output folder that holds another job's run


ARTEFACTS = ("golden.parquet", "model.json", "search_plan.csv", "random_plan.csv", "results.db",
             "results.db-wal", "results.db-shm", "results.traces", "report.html")  # fmt: skip


def claim_out(out: Path, scenario: Scenario, testbed: Testbed, overwrite: bool) -> None:
    """Refuse (exit 2) an output folder holding another scenario's or another stack's run, before
    anything there changes; with ``overwrite``, remove that run's artefacts first. A folder of the
    same scenario and stack is the same job again (its campaigns resume)."""
    import shutil

    from drivefi.errors import InputError
    from drivefi.run.trace import read_trace

    golden = out / "golden.parquet"
    if not golden.is_file():
        return
    try:
        meta = read_trace(golden).meta
        held = (meta["scenario"], meta.get("stack", "reference"))
    except InputError:
        held = ("?", "?")
    mine = (scenario.name, testbed.stack.identity)
    if held == mine:
        return
    if not overwrite:
        raise InputError(
            f"{out}: holds the run of scenario '{held[0]}' with stack '{held[1]}'; this job is "
            f"'{mine[0]}' with '{mine[1]}': give another --out, or --overwrite to start over"
        )
    for name in ARTEFACTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _learning_testbed(testbed: Testbed, train_on: Simulator | None, executor) -> Testbed:
    """The testbed the search learns on; on a pool of servers, the pool's first server."""
    tb = testbed.on(train_on) if train_on is not None else testbed
    servers = getattr(executor, "servers", None)
    if servers and not tb.simulator.snapshots and "port" not in tb.simulator.options:
        tb = tb.on(tb.simulator.with_options(host=servers[0].host, port=servers[0].port))
    return tb


def _ranges(steps: list[int]) -> str:
    """Steps as ranges: 3-7, 12."""
    out, start = [], steps[0]
    for a, b in zip(steps, [*steps[1:], None], strict=True):
        if b != a + 1:
            out.append(f"{start}-{a}" if a > start else f"{a}")
            start = b
    return ", ".join(out)


def run_pipeline(
    scenario: Scenario,
    out: str | Path,
    testbed: Testbed | None = None,
    options: PipelineOptions | None = None,
    executor=None,
    progress: bool = True,
    log=print,
    on_progress: Progress = silent,
    **overrides,
) -> PipelineSummary:
    """Run the main job on ``testbed`` (default: the reference ADS on the embedded simulator):
    every run of the job (golden, training, validation, random baseline) is its stack's, on its
    simulator. On a simulator without snapshots (CARLA) the training runs and the rounds'
    injections are campaigns labelled ``training``, ``round N`` in the results store, their
    traces kept for the fit. ``options.train_on`` (an explicit choice, never a fallback) learns
    and searches on another simulator (the embedded one) and only validates on the testbed's:
    hours of server time saved, at the price of a model of the stack on the embedded world.
    ``executor`` (default: local processes, ``options.workers``) runs the campaigns; a Ray
    executor also runs the embedded training runs, spread over its cluster. ``options`` may be
    given as its fields too (``budget=20``)."""
    from drivefi.search import to_plan
    from drivefi.search.active import ActiveOptions, active_search
    from drivefi.search.evidence import note_training, watch
    from drivefi.search.training import point_specs, structure_for
    from drivefi.tbn import save_model

    o = replace(options or PipelineOptions(), **overrides)
    testbed = testbed or Testbed()
    out = Path(out)
    claim_out(out, scenario, testbed, o.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    s = PipelineSummary(scenario.name, str(out))
    times = s.stage_seconds

    def stage(name):
        log(f"[{name}]")
        return time.perf_counter()

    ex = executor or LocalExecutor(o.workers)
    db = out / "results.db"
    learn = _learning_testbed(testbed, o.train_on, ex)
    t = stage(f"golden run ({learn.simulator.name})")
    simulate = None
    if learn.simulator.snapshots:
        golden = golden_of(learn, scenario, scenario.seed)[0]
        golden_trace = golden.trace
    else:  # the stack under test on that simulator for every run the search learns from
        golden = golden_trace = record_golden(scenario, testbed=learn).trace

        def simulate(faults, label):  # campaigns on the learning simulator (a pool: all of it)
            tb = testbed if o.train_on is None else testbed.on(o.train_on)
            traces = campaign_traces(scenario, faults, db, label, ex, tb, progress)
            if label == "training":  # what reached the stack; probes where nothing did
                note_training(scenario, point_specs(learn), faults, traces, golden,
                              lambda fs: campaign_traces(scenario, fs, db, "probes", ex, tb,
                                                         progress))  # fmt: skip
            return traces

    write_trace(golden_trace, out / "golden.parquet")
    s.golden = golden_trace.summary()
    unsafe = np.flatnonzero(golden_trace.frame["hazard"].to_numpy()).tolist()
    s.golden["hazard_step_list"] = unsafe
    if unsafe:  # a stack that fails with no fault: no fault injected there can be critical
        log(
            f"warning: the golden run of {scenario.name} is unsafe at {len(unsafe)} step(s) "
            f"(k = {_ranges(unsafe)}): the stack fails with no fault; the search looks only at "
            "faults injected where it is safe"
        )
    times["golden"] = time.perf_counter() - t

    st = structure_for(learn, o.structure)
    s.structure = f"{st.name} ({st.source})" + (" [ORACLE]" if st.oracle else "")
    t = stage(
        f"training ({o.training_runs} random-fault runs), fit ({st.name}), search in "
        f"{o.rounds} active-refit round(s) within {100 * o.budget_share:g} % of the space"
    )
    ao = ActiveOptions(o.budget_share, o.training_runs, o.rounds, o.seed, tuple(o.durations))
    with watch(exact=learn.simulator.snapshots) as seen:  # bit for bit where deterministic
        res = active_search(scenario, golden, st, ao, learn, simulate,
                            getattr(executor, "map_chunks", None), log=log,
                            progress=on_progress)  # fmt: skip
    finished(on_progress)
    s.unreached_points, s.probe_runs = seen.unreached, len(seen.probes)
    for name, runs in s.unreached_points.items():
        log(
            f"warning: point {name}: no fault of {runs} run(s) injected there (training and "
            "probes with its range's ends) changed the stack's commands: the stack never reads "
            "it; left out of the search space, never planned"
        )
    save_model(res.model, out / "model.json")
    c = res.candidates
    # the plan: predictions no round injected first (the validation takes its top), then the
    # faults the rounds already confirmed (column confirmed_in_rounds)
    fresh = res.plan[res.outcome[res.plan] < 0]
    known = res.plan[res.outcome[res.plan] == 1]
    plan = to_plan(scenario, c, np.concatenate([fresh, known]))
    plan.extra["confirmed_in_rounds"] = [""] * len(fresh) + ["1"] * len(known)
    write_plan(plan, out / "search_plan.csv")
    s.candidates_scored, s.predicted_critical = len(c), len(res.plan)
    s.confirmed_in_rounds = int(np.sum(res.outcome == 1))
    s.rounds = [r.__dict__ for r in res.rounds]
    times["training"] = res.sim_seconds  # simulating the training runs and the rounds' injections
    times["fit"] = res.fit_seconds
    times["search"] = res.search_seconds

    # the embedded simulator replays any fault in milliseconds; another simulator's faulty runs
    # are kept (hazards) so the report can show their timelines
    keep = testbed.keeps_traces
    # validation injects predictions no round has injected: its precision is the model's, not a
    # re-run of faults the rounds already confirmed
    top = Plan(plan.scenario, plan.steps, plan.faults[: min(o.budget, len(fresh))])
    s.injected = len(top.faults)
    if s.injected:
        t = stage(f"validate: inject the top {s.injected} predicted faults")
        v = run_campaign(scenario, top, db, ex, testbed, progress=progress, keep_traces=keep,
                         label="search")  # fmt: skip
        times["validate"] = time.perf_counter() - t
        s.confirmed_hazards, s.confirmed_accidents = v.hazard + v.accident, v.accident
        s.stack_failures = v.stack_failure
        s.precision = v.critical / s.injected
        s.hazards_per_injection_search = v.critical / s.injected
    n_random = max(s.injected, 1) if o.budget else 0
    t = stage(f"random FI baseline: {n_random} faults from the same space")
    space = [p for p in testbed.points() if p.name not in s.unreached_points]
    base = random_baseline(scenario, n_random, list(o.durations), o.seed, space)
    write_plan(base, out / "random_plan.csv")
    r = run_campaign(scenario, base, db, ex, testbed, progress=progress, keep_traces=keep,
                     label="random")  # fmt: skip
    times["random"] = time.perf_counter() - t
    s.random_injected, s.random_hazards, s.random_accidents = n_random, r.critical, r.accident
    s.random_stack_failures = r.stack_failure
    s.hazards_per_injection_random = r.critical / n_random
    # the search's cost is every run it simulated: training, rounds and validation
    s.simulated_runs = res.training_runs + s.probe_runs + int(res.injected.sum()) + s.injected
    s.simulated_share = s.simulated_runs / max(len(c), 1)
    s.found_critical = s.confirmed_in_rounds + s.confirmed_hazards
    s.critical_per_run = s.found_critical / max(s.simulated_runs, 1)
    if s.hazards_per_injection_random > 0:
        s.speedup = s.critical_per_run / s.hazards_per_injection_random
        if s.injected:
            s.speedup_validation = s.hazards_per_injection_search / s.hazards_per_injection_random
    known_faults = plan.faults[len(fresh) :]  # the rounds' critical faults (not in the database)
    count_cases(s, db, known_faults, v.campaign_id if s.injected else None, r.campaign_id,
                scenario.dt)  # fmt: skip
    s.groups = evidence_groups(scenario, res, seen, db, (top.faults, v.campaign_id if s.injected
                                                         else None), golden)  # fmt: skip
    s.unresolved_groups = sum(g["unresolved"] for g in s.groups)
    from drivefi.report import build_report

    # the scenario as the job ran it (a user's file, or a changed copy of a bundled one)
    build_report(db, out / "report.html", plans=[out / "search_plan.csv"], scenario_files=[scenario],
                 search_cost=figures(s),
                 evidence={"unreached_points": s.unreached_points, "groups": s.groups})  # fmt: skip
    times["total"] = sum(times.values())
    return s
