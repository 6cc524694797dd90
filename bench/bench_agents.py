"""Faulty runs per second of user agents against the reference ADS, on the same exhaustive plan.

For each stack (the reference ADS, every agent under examples/agents/, the test fixtures' agents
when there is no example yet): an exhaustive plan of the scenario over all the stack's points
(start stride, durations 1,5,20; the same start steps, durations and grid sizes for every stack),
run as a campaign on the embedded simulator in this process. Each agent's faulty runs start from
deep copies of the agent taken during its golden run, lock-step with the vectorised world, and
stop once they rejoin the golden run (drivefi.run.rejoin). After a warm-up campaign, the stacks are
timed in interleaved rounds (reference, every agent, reference, every agent, ..., reference):
this machine's speed drifts by tens of per cent within minutes, so each agent's rate is compared
with the mean of the reference rates timed just before and just after it, and the medians over
the rounds are printed with the range of the ratios (the target is >= 1/5).

Per agent, also: its rate with rejoining off (DRIVEFI_REJOIN=0: every run to the scenario's end),
the agent steps a faulty run simulated on average, the agent's own ``run_step`` timed alone on its
golden run's inputs, and the bound those two put on any campaign of it: the runs/s it would reach
if the simulator, the safety potential and DriveFI's agent path cost nothing.

    python bench/bench_agents.py [--scenario lead_brake] [--stride 10] [--durations 1,5,20]
                                 [--limit N] [--workers 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from itertools import count
from pathlib import Path

from drivefi.campaign.executor import LocalExecutor
from drivefi.campaign.runner import run_campaign
from drivefi.faults.plan import Plan, exhaustive
from drivefi.run.golden import golden_of
from drivefi.run.rejoin import SWITCH
from drivefi.run.simulate import Simulation
from drivefi.run.testbed import Testbed
from drivefi.stacks import load_stack
from drivefi.world.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent


def agent_specs() -> list[str]:
    """Every example agent (FILE, via its get_entry_point), else the test fixtures' agents."""
    examples = sorted((ROOT / "examples" / "agents").glob("*.py"))
    specs = [str(p) for p in examples if "def get_entry_point" in p.read_text()]
    if specs:
        return specs
    fix = ROOT / "tests" / "fixtures"
    return [f"{fix / 'leaderboard_agent.py'}:GroundTruthOnly", str(fix / "carla_style_agent.py")]


def own_step_us(stack, sc) -> float:
    """The agent's own ``run_step`` [us a step], timed alone: a copy of the set-up agent
    (``stack``, an unused :class:`drivefi.stacks.agent.adapter.AgentStack`) steps through the inputs of its
    golden run, outside any campaign (``drivefi.inject`` inactive)."""
    inputs, step = [], stack.cls.run_step
    stack.cls.run_step = lambda self, data, t: (inputs.append((data, t)), step(self, data, t))[1]
    try:
        Simulation(sc, ads=stack).run(1)
    finally:
        stack.cls.run_step = step
    best = float("inf")
    for _ in range(3):
        agent = copy.deepcopy(stack._pristine, dict(stack.shared))
        t0 = time.perf_counter()
        for data, t in inputs:
            agent.run_step(data, t)
        best = min(best, (time.perf_counter() - t0) / len(inputs))
    return best * 1e6


def timed_campaign(sc, plan, db: Path, ex, spec, stack, rejoin: bool) -> tuple[object, float, int]:
    """(summary, faulty runs/s, the agent's ``run_step`` calls: -1 when not counted here)."""
    os.environ[SWITCH] = "1" if rejoin else "0"
    calls = [0]
    cls = stack.cls if spec and ex.workers == 1 else None
    if cls is not None:
        step = cls.run_step

        def counted(self, data, t):
            calls[0] += 1
            return step(self, data, t)

        cls.run_step = counted
    try:
        t0 = time.perf_counter()
        s = run_campaign(sc, plan, db, ex, progress=False, testbed=Testbed.of(spec))
        rate = s.planned / (time.perf_counter() - t0)
    finally:
        os.environ.pop(SWITCH)
        if cls is not None:
            cls.run_step = step
    return s, rate, calls[0] if cls is not None else -1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="lead_brake")
    ap.add_argument("--stride", type=int, default=10)
    ap.add_argument("--durations", default="1,5,20")
    ap.add_argument(
        "--limit", type=int, default=None, help="at most N faults per stack (even spread)"
    )
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--agents", default=None, help="comma-separated specs (default: examples)")
    args = ap.parse_args()
    sc = load_scenario(args.scenario)
    durations = [int(x) for x in args.durations.split(",")]
    specs = [None, *(args.agents.split(",") if args.agents else agent_specs())]
    ex = LocalExecutor(args.workers)
    stacks, plans = {}, {}
    for spec in specs:
        stacks[spec] = stack = load_stack(spec, sc)
        plan = exhaustive(sc, None, None, durations, args.stride, stack_points=stack.points)
        if args.limit and len(plan.faults) > args.limit:
            step = len(plan.faults) / args.limit
            plan = Plan(
                plan.scenario, plan.steps, [plan.faults[int(i * step)] for i in range(args.limit)]
            )
        plans[spec] = plan
    print(
        f"exhaustive plan of {sc.name}: stride {args.stride}, durations {args.durations}; "
        f"{args.workers} worker(s), {args.rounds} rounds"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp, dbs = Path(tmp), count()

        def timed(spec, rejoin=True):
            golden_of(Testbed.of(spec), sc, sc.seed)  # golden run (and the agent's snapshots), once
            db = tmp / f"{next(dbs)}.db"
            return timed_campaign(sc, plans[spec], db, ex, spec, stacks[spec], rejoin)

        warm = Plan(plans[None].scenario, plans[None].steps, plans[None].faults[:200])
        run_campaign(sc, warm, tmp / "warm.db", ex, progress=False)  # imports, caches
        # rounds: reference, every agent, ..., reference; each agent's rate is compared with
        # the mean of the reference rates timed just before and just after it (the machine drifts)
        refs = [timed(None)[1]]
        rates: dict[str, list[float]] = {spec: [] for spec in specs[1:]}
        ratios: dict[str, list[float]] = {spec: [] for spec in specs[1:]}
        last = {}
        for _ in range(args.rounds):
            got = {}
            for spec in specs[1:]:
                s, got[spec], calls = timed(spec)
                last[spec] = (s, calls)
            refs.append(timed(None)[1])
            for spec, rate in got.items():
                rates[spec].append(rate)
                ratios[spec].append(rate / statistics.fmean(refs[-2:]))
        head = (
            f"{'stack':24s} {'points':>6s} {'faults':>7s} {'runs/s':>8s} {'vs ref':>7s} "
            f"{'range':>11s} {'no rejoin':>9s} {'steps/run':>9s} {'own us':>7s} {'bound':>7s}"
            "  runs start from"
        )
        print(head)
        print("-" * len(head))
        ref = statistics.median(refs)
        print(
            f"{'reference ADS':24s} {len(stacks[None].points):6d} {len(plans[None].faults):7d} "
            f"{ref:8.1f}  (median of {len(refs)}: {min(refs):.0f}-{max(refs):.0f})"
        )
        for spec in specs[1:]:
            (s, calls), stack = last[spec], stacks[spec]
            _, plain, _ = timed(spec, rejoin=False)
            own = own_step_us(stack, sc)
            per_run = calls / s.planned if calls >= 0 else float("nan")
            name = Path(spec.split(":")[0]).stem + (":" + spec.split(":")[1] if ":" in spec else "")
            r = ratios[spec]
            print(
                f"{name:24s} {len(stack.points):6d} {s.planned:7d} "
                f"{statistics.median(rates[spec]):8.1f} {statistics.median(r):6.2f}x "
                f"{min(r):5.2f}-{max(r):.2f}x {plain:9.1f} {per_run:9.1f} {own:7.1f} "
                f"{1e6 / (own * per_run):7.1f}  {s.runs_start}",
                flush=True,
            )
        print(
            "runs/s: median over the rounds; vs ref: median of the rounds' ratios, each against "
            "the reference timed just before and after; range: their least and greatest"
        )


if __name__ == "__main__":
    main()
