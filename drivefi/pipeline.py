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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drivefi.campaign.executor import LocalExecutor
from drivefi.campaign.runner import run_campaign
from drivefi.campaign.traces import campaign_traces
from drivefi.core import Fault
from drivefi.faults.plan import Plan, default_values, fault_model_for, write_plan
from drivefi.run.golden import record_golden
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
    hazards_per_injection_search: float = 0.0
    hazards_per_injection_random: float = 0.0
    critical_per_run: float = 0.0  # found_critical / simulated_runs
    speedup: float | None = None  # critical_per_run / random FI's hazards per injection
    structure: str = ""
    simulated_share: float = 0.0  # simulated_runs / space
    rounds: list = field(default_factory=list)  # per active-refit round
    golden: dict = field(default_factory=dict)  # the golden run's summary (min deltas, ...)
    stage_seconds: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def random_baseline(
    scenario: Scenario, count: int, durations, seed: int = 0, points: list | None = None
) -> Plan:
    """Faults drawn uniformly from the search's candidate space (step x point x value x duration);
    ``points``: the stack under test's (default: the reference ADS's)."""
    from drivefi.stacks.reference import INJECTION_POINTS

    points = list(points or INJECTION_POINTS)
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


def record_golden_on(sim: str, scenario: Scenario, bridge_options: dict | None, executor, agent):
    """The stack under test's golden run on ``sim`` (CARLA: the given server, or a pool's first)
    as a trace."""
    from drivefi.bridges.carla.bridge import make_carla_bridge
    from drivefi.run.carla import record_golden_carla
    from drivefi.stacks import load_stack

    opts = dict(bridge_options or {})
    servers = getattr(executor, "servers", None)
    if servers and "port" not in opts:
        opts.update(host=servers[0].host, port=servers[0].port)
    bridge = make_carla_bridge(scenario, **opts)
    return record_golden_carla(scenario, bridge, load_stack(agent, scenario, None, bridge=bridge))


def run_pipeline(
    scenario: Scenario,
    out: str | Path,
    budget: int = 300,
    training_runs: int = 300,
    durations: tuple[int, ...] = (1, 5, 20),
    workers: int = 2,
    seed: int = 0,
    progress: bool = True,
    log=print,
    sim: str = "embedded",
    bridge_options: dict | None = None,
    executor=None,
    agent: str | None = None,
    structure: str | None = None,
    rounds: int = 3,
    budget_share: float = 0.10,
    on_progress: Progress = silent,
    train_sim: str | None = None,
) -> PipelineSummary:
    """Run the main job. With ``sim="carla"`` every run is the stack under test on CARLA: the
    golden run, the training runs and the rounds' injections (campaigns labelled ``training``,
    ``round N`` in the results store, their traces kept for the fit) and the validation and
    random-FI campaigns. ``train_sim="embedded"`` (an explicit choice, never a fallback) learns
    and searches on the embedded simulator instead and only validates on CARLA: hours of
    server time saved, at the price of a model of the stack on the embedded world.
    ``executor`` (default: local processes, ``workers``) runs the campaigns; a Ray executor also
    runs the embedded training runs, spread over its cluster.

    ``agent``: the stack under test (``None``/``"reference"`` or ``FILE.py[:CLASS]``); every run
    of the job (golden, training, validation, random baseline) is that stack's."""
    from drivefi.errors import InputError
    from drivefi.search import to_plan
    from drivefi.search.active import active_search
    from drivefi.search.training import structure_for
    from drivefi.stacks import is_reference, load_stack
    from drivefi.tbn import save_model

    out = Path(out)
    train_sim = train_sim or sim
    if train_sim not in ("embedded", sim):
        raise InputError(f"--train-sim: expected embedded or {sim}, got '{train_sim}'")
    out.mkdir(parents=True, exist_ok=True)
    s = PipelineSummary(scenario.name, str(out))
    times = s.stage_seconds

    def stage(name):
        log(f"[{name}]")
        return time.perf_counter()

    agent = None if is_reference(agent) else agent
    stack = load_stack(agent, scenario, seed=None)
    ex = executor or LocalExecutor(workers)
    db = out / "results.db"
    t = stage(f"golden run ({train_sim})")
    simulate = None
    if train_sim == "embedded":
        golden = record_golden(scenario, stack=stack)
        golden_trace = golden.trace
    else:  # the stack under test on that simulator for every run the search learns from
        golden = golden_trace = record_golden_on(train_sim, scenario, bridge_options, ex, agent)

        def simulate(faults, label):
            return campaign_traces(scenario, faults, db, label, ex, train_sim, bridge_options,
                                   agent, progress)  # fmt: skip

    write_trace(golden_trace, out / "golden.parquet")
    s.golden = golden_trace.summary()
    times["golden"] = time.perf_counter() - t

    st = structure_for(agent, structure)
    s.structure = f"{st.name} ({st.source})" + (" [ORACLE]" if st.oracle else "")
    t = stage(
        f"training ({training_runs} random-fault runs), fit ({st.name}), search in {rounds} "
        f"active-refit round(s) within {100 * budget_share:g} % of the space"
    )
    res = active_search(scenario, golden, st, budget_share, training_runs, rounds, seed,
                        tuple(durations), log=log, agent=agent,
                        map_chunks=getattr(executor, "map_chunks", None),
                        progress=on_progress, simulate=simulate)  # fmt: skip
    finished(on_progress)
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
    keep = "none" if sim == "embedded" and is_reference(agent) else "hazards"
    # validation injects predictions no round has injected: its precision is the model's, not a
    # re-run of faults the rounds already confirmed
    top = Plan(plan.scenario, plan.steps, plan.faults[: min(budget, len(fresh))])
    s.injected = len(top.faults)
    if s.injected:
        t = stage(f"validate: inject the top {s.injected} predicted faults")
        v = run_campaign(
            scenario, top, db, ex, progress=progress, sim=sim, bridge_options=bridge_options,
            keep_traces=keep, label="search", agent=agent,
        )  # fmt: skip
        times["validate"] = time.perf_counter() - t
        s.confirmed_hazards, s.confirmed_accidents = v.hazard + v.accident, v.accident
        s.precision = v.critical / s.injected
        s.hazards_per_injection_search = v.critical / s.injected
    n_random = max(s.injected, 1) if budget else 0
    t = stage(f"random FI baseline: {n_random} faults from the same space")
    base = random_baseline(scenario, n_random, list(durations), seed, stack.points)
    write_plan(base, out / "random_plan.csv")
    r = run_campaign(
        scenario, base, db, ex, progress=progress, sim=sim, bridge_options=bridge_options,
        keep_traces=keep, label="random", agent=agent,
    )  # fmt: skip
    times["random"] = time.perf_counter() - t
    s.random_injected, s.random_hazards, s.random_accidents = n_random, r.critical, r.accident
    s.hazards_per_injection_random = r.critical / n_random
    # the search's cost is every run it simulated: training, rounds and validation
    s.simulated_runs = res.training_runs + int(res.injected.sum()) + s.injected
    s.simulated_share = s.simulated_runs / max(len(c), 1)
    s.found_critical = s.confirmed_in_rounds + s.confirmed_hazards
    s.critical_per_run = s.found_critical / max(s.simulated_runs, 1)
    if s.hazards_per_injection_random > 0:
        s.speedup = s.critical_per_run / s.hazards_per_injection_random
    from drivefi.report import build_report

    cost = {"simulated_runs": s.simulated_runs, "found_critical": s.found_critical}
    build_report(db, out / "report.html", plans=[out / "search_plan.csv"], search_cost=cost)
    times["total"] = sum(times.values())
    return s
