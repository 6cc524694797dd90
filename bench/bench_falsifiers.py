"""DriveFI's search against VerifAI's falsifiers and random FI, scored against exhaustive truth.

Per stack x scenario, every method gets the same simulated-run budget (the DriveFI pipeline's own
total: training runs + the active-refit rounds' injections + its validation of up to --validate
fresh predictions) over the same fault grid: the search's candidate space (drivefi.search
FaultSpace: each point's value grid x durations x start steps where the golden run is safe, every
--stride-th for the example agents, as bench/bench_blackbox.py does). Methods:

* ``pipeline``: drivefi.search.active's rounds, then the plan's fresh predictions validated by
  injection; its confirmed faults are the rounds' critical ones and the validated critical ones.
* ``random``: random FI, faults drawn uniformly from the grid without replacement.
* ``mab``, ``halton``, ``ce``, ``vrandom``: VerifAI's multi-armed-bandit, Halton, cross-entropy
  and random samplers (``verifai.samplers.FeatureSampler``) over a ``verifai.features``
  FeatureSpace of the fault: point, value (index into the point's grid) and duration
  Categorical, start a Box in [0, 1) mapped onto the duration's start steps (so the Halton
  sequence and the bandit's buckets act on the start; Halton draws the categorical features at
  random, as VerifAI does for any non-continuous domain). The falsifier minimises
  rho = min(delta_lon, delta_lat) over the faulty run (VerifAI's default threshold 0: rho < 0 is
  a counterexample). Samples are drawn --batch at a time and their feedback given after the batch
  ran, so that the embedded simulator runs a batch at once; within a batch the bandit therefore
  sees no new feedback. Every sample is a run, repeats included, as in VerifAI's own loop.

Every run goes through DriveFI's campaign machinery (drivefi.campaign.batch.run_batch: the
campaign's outcome rows, its ``critical`` column). The truth is the exhaustive sweeps
(bench/sweeps.py for the reference stack; bench_blackbox.agent_sweeps for agents); each run's
outcome is checked against it (``mismatch``: should be 0).

Printed per method: runs; critical runs (repeats included: what a falsifier's own count says);
distinct critical faults; distinct cases (drivefi.search.modes) and the truth's; modes (point x
duration x outcome, outcomes from the truth) hit and the truth's; critical faults and cases per
100 runs. Stochastic methods (random FI, VerifAI) are averaged over --seeds.

VerifAI pins old packages, so it lives in a venv of its own: ``make bench-falsifiers`` creates
.venv-falsifiers and runs this script there (ARGS="--quick" for the smoke test).

    python bench/bench_falsifiers.py [--quick] [--stacks reference,examples/agents/fsm_agent.py]
        [--scenarios lead_brake] [--methods pipeline,random,mab,halton,ce] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

METHODS = ("pipeline", "random", "mab", "halton", "ce", "vrandom")
VERIFAI = {"mab": "multiArmedBandit", "halton": "halton", "ce": "crossEntropy",
           "vrandom": "random"}  # fmt: skip
SWEEPS = (("1-fixed", 1), ("m-fixedm5", 5), ("m-fixedm20", 20))  # the truth's databases
AGENT = "examples/agents/fsm_agent.py"
MISSING = (
    "bench_falsifiers: verifai is not installed here: run `make bench-falsifiers` (it installs "
    "bench/requirements-falsifiers.txt in .venv-falsifiers), or leave out --methods {}"
)


def need_verifai(methods: list[str]) -> None:
    """Exit 2 with one line when a VerifAI method is asked for and verifai cannot be imported."""
    wanted = [m for m in methods if m in VERIFAI]
    if not wanted:
        return
    try:
        import verifai.features
        import verifai.samplers  # noqa: F401
    except ImportError:
        print(MISSING.format(",".join(wanted)), file=sys.stderr)
        sys.exit(2)


@dataclass
class Truth:
    """The exhaustive sweeps on the grid: each fault (point, value, start, duration) where the
    golden run is safe -> its outcome; the critical ones -> their case."""

    outcome: dict  # key -> "masked" | "hazard" | "accident" | ...
    critical: set
    cases: dict  # critical key -> case id

    def modes(self, keys) -> set:
        """The (point, duration, outcome) modes of the critical faults ``keys``."""
        return {(k[0], k[3], self.outcome[k]) for k in keys if k in self.critical}

    def case_count(self, keys) -> int:
        return len({self.cases[k] for k in keys if k in self.cases})


def load_truth(out: Path, prefix: str, stride: int, dt: float) -> Truth:
    """The sweep databases out/<prefix>.<tag>.db, start steps on ``stride``, golden-safe only."""
    from bench_blackbox import truth_cases

    outcome, crit = {}, set()
    for tag, dur in SWEEPS:
        db = out / f"{prefix}.{tag}.db"
        if not db.is_file():
            raise SystemExit(f"bench_falsifiers: truth database {db} is missing")
        con = sqlite3.connect(db)
        rows = con.execute(
            "SELECT f.point, f.value, f.start, o.outcome, o.critical, o.golden_safe FROM faults f "
            "JOIN outcomes o USING (campaign, idx)"
        ).fetchall()
        con.close()
        for p, v, k, o, c, safe in rows:
            if k % stride or not safe:
                continue
            key = (p, round(v, 9), k, dur)
            outcome[key] = o
            if c:
                crit.add(key)
    return Truth(outcome, crit, truth_cases(crit, dt))


@dataclass
class Grid:
    """The fault grid every method draws from: DriveFI's FaultSpace on the golden run."""

    points: list[str]
    values: dict[str, list[float]]
    durations: tuple[int, ...]
    starts: dict[int, np.ndarray]  # duration -> golden-safe start steps on the stride

    def key(self, point: str, vi: int, start: int, dur: int) -> tuple:
        return (point, round(float(self.values[point][vi]), 9), int(start), int(dur))

    def keys(self) -> list[tuple]:
        return [self.key(p, vi, k, d) for d in self.durations for k in self.starts[d]
                for p in self.points for vi in range(len(self.values[p]))]  # fmt: skip


def fault_grid(scenario, golden, structure, durations, stride: int) -> Grid:
    """The search's candidate space (drivefi.search.score_space's grid), as lists."""
    from drivefi.search import FaultSpace, value_grid

    space = FaultSpace(durations=tuple(durations), stride=stride)
    points = list(space.points or structure.points)
    values = {p: list((space.values or {}).get(p) or value_grid(structure, p)) for p in points}
    frame = golden.trace.frame
    safe = (frame["delta_lon"].to_numpy() > 0) & (frame["delta_lat"].to_numpy() > 0)
    starts = {}
    for d in space.durations:
        ks = np.flatnonzero(safe[: scenario.steps - d + 1])
        starts[d] = ks[ks % space.stride == 0] if space.stride > 1 else ks
    return Grid(points, values, tuple(space.durations), starts)


def to_fault(key: tuple):
    from drivefi.core import Fault
    from drivefi.faults.plan import fault_model_for

    p, v, k, d = key
    return Fault(p, fault_model_for(d), float(v), None, int(k), int(d), 0)


@dataclass
class Tally:
    """What one method ran and found."""

    method: str
    seed: int | None = None
    runs: int = 0
    critical_runs: int = 0  # runs whose outcome row says critical, repeats included
    found: set = field(default_factory=set)  # distinct critical faults
    mismatch: int = 0  # runs whose critical flag differs from the truth's
    seconds: float = 0.0

    def add(self, keys: list[tuple], rows: list[dict], truth: Truth) -> None:
        for key, row in zip(keys, rows, strict=True):
            self.runs += 1
            crit = bool(row["critical"])
            self.critical_runs += crit
            if crit:
                self.found.add(key)
            self.mismatch += crit != (key in truth.critical)

    def row(self, truth: Truth) -> dict:
        cases = truth.case_count(self.found)
        per = 100 / max(self.runs, 1)
        return dict(method=self.method, seed=self.seed, runs=self.runs,
                    critical_runs=self.critical_runs, critical_faults=len(self.found),
                    cases=cases, modes=len(truth.modes(self.found)),
                    critical_per_100=len(self.found) * per, cases_per_100=cases * per,
                    mismatch=self.mismatch, seconds=self.seconds)  # fmt: skip


class Runner:
    """Runs faults on a testbed through the campaign's batch function (outcome rows)."""

    def __init__(self, scenario, testbed):
        from drivefi.campaign.context import BatchContext

        self.ctx = BatchContext(scenario, scenario.seed, testbed)

    def run(self, keys: list[tuple]) -> list[dict]:
        from drivefi.campaign.batch import run_batch

        rows = run_batch(self.ctx, list(enumerate(to_fault(k) for k in keys)))
        bad = [r for r in rows if r["status"] != "ok"]
        if bad:
            raise SystemExit(f"bench_falsifiers: {len(bad)} run(s) failed: {bad[0]['error']}")
        return rows


def run_pipeline(sc, golden, st, testbed, opts, validate: int, truth: Truth, runner: Runner):
    """DriveFI's active-refit search, then up to ``validate`` fresh predictions injected."""
    from drivefi.search.active import active_search

    t0 = time.perf_counter()
    res = active_search(sc, golden, st, opts, testbed)
    c = res.candidates
    tally = Tally("pipeline")
    key = [(c.point[i], round(float(c.value[i]), 9), int(c.start[i]), int(c.duration[i]))
           for i in range(len(c))]  # fmt: skip
    # training runs count as runs; their random faults are off the grid and not counted as found
    tally.runs = res.training_runs + int(res.injected.sum())
    for i in np.flatnonzero(res.injected):
        tally.mismatch += bool(res.outcome[i] == 1) != (key[i] in truth.critical)
        if res.outcome[i] == 1:
            tally.critical_runs += 1
            tally.found.add(key[i])
    fresh = [key[i] for i in res.plan if res.outcome[i] < 0][:validate]
    for j in range(0, len(fresh), 500):
        tally.add(fresh[j : j + 500], runner.run(fresh[j : j + 500]), truth)
    tally.seconds = time.perf_counter() - t0
    return tally, {key[i] for i in range(len(c))}


def run_random(grid: Grid, budget: int, seed: int, truth: Truth, runner: Runner) -> Tally:
    """Random FI: ``budget`` faults drawn uniformly from the grid without replacement."""
    t0 = time.perf_counter()
    keys = grid.keys()
    rng = np.random.default_rng([seed, 0xFA15])
    pick = [keys[i] for i in rng.choice(len(keys), min(budget, len(keys)), replace=False)]
    tally = Tally("random", seed)
    for j in range(0, len(pick), 500):
        tally.add(pick[j : j + 500], runner.run(pick[j : j + 500]), truth)
    tally.seconds = time.perf_counter() - t0
    return tally


def feature_space(grid: Grid):
    """The fault as a VerifAI FeatureSpace: point, value index, duration Categorical; start a
    Box in [0, 1) (mapped onto the duration's start steps by :func:`sample_key`)."""
    from verifai.features import Box, Categorical, Feature, FeatureSpace

    sizes = {len(v) for v in grid.values.values()}
    if len(sizes) != 1:
        raise SystemExit(f"bench_falsifiers: value grids differ in length across points: {sizes}")
    return FeatureSpace({
        "point": Feature(Categorical(*grid.points)),
        "value": Feature(Categorical(*range(sizes.pop()))),
        "duration": Feature(Categorical(*grid.durations)),
        "start": Feature(Box((0, 1))),
    })  # fmt: skip


def sample_key(grid: Grid, s) -> tuple:
    """A VerifAI sample -> the grid's fault key."""
    starts = grid.starts[int(s.duration)]
    u = float(s.start[0])
    k = starts[min(int(u * len(starts)), len(starts) - 1)]
    return grid.key(s.point, int(s.value), int(k), int(s.duration))


def make_sampler(method: str, space, buckets: int):
    """VerifAI's own sampler for ``method`` (its default parameters; the bandit's and
    cross-entropy's continuous buckets: ``buckets``)."""
    from verifai.samplers import FeatureSampler
    from verifai.samplers.feature_sampler import default_sampler_params

    name = VERIFAI[method]
    if method in ("mab", "ce"):
        params = default_sampler_params(method)
        params.cont.buckets = buckets
        return getattr(FeatureSampler, f"{name}SamplerFor")(space, params)
    return getattr(FeatureSampler, f"{name}SamplerFor")(space)


@dataclass(frozen=True)
class FalsifierRun:
    """One VerifAI falsification: which sampler, how many runs, batched how."""

    method: str
    budget: int
    batch: int
    seed: int
    buckets: int


def run_falsifier(fr: FalsifierRun, grid: Grid, truth: Truth, runner: Runner) -> Tally:
    """``fr.budget`` VerifAI samples, ``fr.batch`` at a time, each given rho =
    min(min_delta_lon, min_delta_lat) of its run as feedback after its batch ran."""
    import random

    random.seed(fr.seed)  # VerifAI draws from the global generators
    np.random.seed(fr.seed)  # noqa: NPY002
    sampler = make_sampler(fr.method, feature_space(grid), fr.buckets)
    tally = Tally(fr.method, fr.seed)
    t0 = time.perf_counter()
    while tally.runs < fr.budget:
        drawn = [sampler.getSample() for _ in range(min(fr.batch, fr.budget - tally.runs))]
        keys = [sample_key(grid, s) for s, _ in drawn]
        rows = runner.run(keys)
        for (s, info), row in zip(drawn, rows, strict=True):
            sampler.update(s, info, min(row["min_delta_lon"], row["min_delta_lat"]))
        tally.add(keys, rows, truth)
    tally.seconds = time.perf_counter() - t0
    return tally


def mean_row(rows: list[dict]) -> dict:
    """The mean of ``rows`` (one method over seeds); counts as floats."""
    out = dict(rows[0])
    for k, v in rows[0].items():
        if isinstance(v, int | float) and k != "seed" and not isinstance(v, bool):
            out[k] = float(np.mean([r[k] for r in rows]))
    out["seeds"] = len(rows)
    return out


HEAD = (
    f"{'stack':10s} {'scenario':11s} {'method':9s} {'runs':>5s} {'crit runs':>9s} "
    f"{'crit flt':>8s} {'cases':>7s} {'modes':>7s} {'flt/100':>7s} {'case/100':>8s} "
    f"{'mism':>4s} {'sec':>6s}"
)


def show(label: str, name: str, r: dict, n_cases: int, n_modes: int) -> None:
    print(
        f"{label:10s} {name:11s} {r['method']:9s} {r['runs']:5.0f} {r['critical_runs']:9.1f} "
        f"{r['critical_faults']:8.1f} {r['cases']:3.0f}/{n_cases:<3d} {r['modes']:3.0f}/{n_modes:<3d} "
        f"{r['critical_per_100']:7.2f} {r['cases_per_100']:8.2f} {r['mismatch']:4.0f} "
        f"{r['seconds']:6.1f}",
        flush=True,
    )


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/bench", help="sweep databases and results")
    ap.add_argument("--scenarios", default="lead_brake", help="comma-separated")
    ap.add_argument("--stacks", default=f"reference,{AGENT}", help="comma-separated")
    ap.add_argument("--methods", default=None,
                    help=f"comma-separated, of {', '.join(METHODS)} (default: all but vrandom, "
                    "--quick: pipeline,random,mab,halton; the pipeline always runs: its runs "
                    "are the budget)")  # fmt: skip
    ap.add_argument("--seeds", default="0,1,2", help="of random FI and VerifAI, averaged")
    ap.add_argument("--batch", type=int, default=20, help="VerifAI samples per simulated batch")
    ap.add_argument("--buckets", type=int, default=5,
                    help="VerifAI bandit / cross-entropy buckets of the start (its default: 5)")  # fmt: skip
    ap.add_argument("--training-runs", type=int, default=300, help="reference stack")
    ap.add_argument("--agent-training-runs", type=int, default=150)
    ap.add_argument("--agent-stride", type=int, default=5, help="agents' start-step stride")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=0.10, help="the search's share of the space")
    ap.add_argument("--validate", type=int, default=300,
                    help="fresh predictions the pipeline validates")  # fmt: skip
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 seed, fewer training runs and rounds, agent stride 10")  # fmt: skip
    ap.add_argument("--json", default="falsifiers.json", help="results file name (in --out)")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.rounds, args.validate = "0", 1, 100
        args.training_runs, args.agent_training_runs = 100, 60
        args.agent_stride = max(args.agent_stride, 10)
    quick = "pipeline,random,mab,halton"
    args.methods = (
        args.methods or (quick if args.quick else "pipeline,random,mab,halton,ce")
    ).split(",")
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        ap.error(f"--methods: unknown {', '.join(unknown)}; known: {', '.join(METHODS)}")
    if args.batch < 1:
        ap.error("--batch: expected >= 1")
    if args.agent_stride % 5:
        ap.error("--agent-stride: expected a multiple of 5 (the agents' sweeps are on stride 5)")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        ap.error(f"--seeds: expected comma-separated integers, got '{args.seeds}'")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    need_verifai(args.methods)
    from bench_blackbox import agent_sweeps
    from sweeps import ensure_sweeps

    from drivefi.run.golden import record_golden
    from drivefi.run.testbed import Testbed
    from drivefi.search.active import ActiveOptions
    from drivefi.search.training import structure_for
    from drivefi.world.scenario import load_scenario

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stacks = args.stacks.split(",")
    if "reference" in stacks:  # the reference stack's truth is bench_campaign.py's sweeps
        ensure_sweeps(out, args.scenarios)
    print(f"budget: the pipeline's own runs; stochastic methods: mean of seeds {args.seeds}; "
          f"VerifAI batch {args.batch}, start buckets {args.buckets}")  # fmt: skip
    print(HEAD)
    print("-" * len(HEAD), flush=True)
    results = []
    for stack in stacks:
        own = stack == "reference"
        label = "reference" if own else Path(stack.split(":")[0]).stem
        testbed = Testbed.of(None if own else stack)
        st = structure_for(testbed)
        stride = 1 if own else args.agent_stride
        for name in args.scenarios.split(","):
            sc = load_scenario(name)
            prefix = name if own else agent_sweeps(out, stack, name, 5)
            truth = load_truth(out, prefix, stride, sc.dt)
            golden = record_golden(sc, testbed=testbed)
            grid = fault_grid(sc, golden, st, ActiveOptions().durations, stride)
            n_cases, n_modes = len(set(truth.cases.values())), len(truth.modes(truth.critical))
            runner = Runner(sc, testbed)
            n_train = args.training_runs if own else args.agent_training_runs
            opts = ActiveOptions(args.budget, n_train, args.rounds, stride=stride)
            pipe, space = run_pipeline(sc, golden, st, testbed, opts, args.validate, truth, runner)
            grid_keys = set(grid.keys())
            if grid_keys != space or not grid_keys <= set(truth.outcome):
                raise SystemExit(
                    f"bench_falsifiers: {label} {name}: the grid ({len(grid_keys)} faults) is not "
                    f"the search's space ({len(space)}) within the truth's ({len(truth.outcome)})"
                )
            budget = pipe.runs
            rows = [pipe.row(truth)]
            show(label, name, rows[0], n_cases, n_modes)
            for m in [m for m in args.methods if m != "pipeline"]:
                per_seed = []
                for seed in args.seeds:
                    if m == "random":
                        t = run_random(grid, budget, seed, truth, runner)
                    else:
                        fr = FalsifierRun(m, budget, args.batch, seed, args.buckets)
                        t = run_falsifier(fr, grid, truth, runner)
                    per_seed.append(t.row(truth))
                rows.append(mean_row(per_seed) | {"per_seed": per_seed})
                show(label, name, rows[-1], n_cases, n_modes)
            results.append(dict(stack=label, scenario=name, space=len(grid_keys),
                                truth_critical=len(truth.critical), truth_cases=n_cases,
                                truth_modes=n_modes, budget=budget, methods=rows))  # fmt: skip
            print(f"{'':10s} {name:11s} truth: {len(grid_keys)} faults, {len(truth.critical)} "
                  f"critical ({100 * len(truth.critical) / len(grid_keys):.2f} %), {n_cases} "
                  f"cases, {n_modes} modes", flush=True)  # fmt: skip
            (out / args.json).write_text(json.dumps(results, indent=1, default=float))
    print(
        "crit runs: runs whose outcome was critical, repeats included; crit flt: distinct critical "
        "faults; cases: distinct cases (drivefi.search.modes) / the truth's; modes: point x "
        "duration x outcome / the truth's; mism: runs whose outcome disagrees with the truth"
    )


if __name__ == "__main__":
    main()
