"""Faulty runs per second of user agents against the reference ADS, on the same exhaustive plan.

For each stack (the reference ADS, every agent under examples/agents/, the test fixtures' agents
when there is no example yet): an exhaustive plan of the scenario over all the stack's points
(start stride, durations 1,5,20; the same start steps, durations and grid sizes for every stack),
run as a campaign on the embedded simulator in this process. Each agent's faulty runs start from
deep copies of the agent taken during its golden run, lock-step with the vectorised world, and
stop once they rejoin the golden run (drivefi.rejoin). The reference is timed first and again
last (the machine's speed drifts); ratios are against the mean of the two (the target is >= 1/5).

Per agent, also: its rate with rejoining off (DRIVEFI_REJOIN=0: every run to the scenario's end),
the agent steps a faulty run simulated on average, the agent's own ``run_step`` timed alone on its
golden run's inputs, and the bound those two put on any campaign of it: the runs/s it would reach
if the simulator, the safety potential and DriveFI's agent path cost nothing.

    python bench/bench_agents.py [--scenario lead_brake] [--stride 10] [--durations 1,5,20]
                                 [--limit N] [--workers 1]
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

from drivefi.campaign.batch import golden_for
from drivefi.campaign.executor import LocalExecutor
from drivefi.campaign.runner import run_campaign
from drivefi.plan import Plan, exhaustive
from drivefi.rejoin import SWITCH
from drivefi.scenario import load_scenario
from drivefi.simulate import Simulation
from drivefi.stack import load_stack

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
    (``stack``, an unused :class:`drivefi.ads.agent.AgentStack`) steps through the inputs of its
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
        s = run_campaign(sc, plan, db, ex, progress=False, agent=spec)
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
    ap.add_argument("--agents", default=None, help="comma-separated specs (default: examples)")
    args = ap.parse_args()
    sc = load_scenario(args.scenario)
    durations = [int(x) for x in args.durations.split(",")]
    specs = [None, *(args.agents.split(",") if args.agents else agent_specs())]
    ex = LocalExecutor(args.workers)
    head = (
        f"{'stack':24s} {'points':>6s} {'faults':>7s} {'runs/s':>8s} {'vs ref':>7s} "
        f"{'no rejoin':>9s} {'steps/run':>9s} {'own us':>7s} {'bound':>7s}  runs start from"
    )
    print(f"exhaustive plan of {sc.name}: stride {args.stride}, durations {args.durations}")
    print(head)
    print("-" * len(head))
    rows, ref_rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n, spec in enumerate([*specs, None]):  # the reference again last: the machine drifts
            stack = load_stack(spec, sc)
            plan = exhaustive(sc, None, None, durations, args.stride, stack_points=stack.points)
            if args.limit and len(plan.faults) > args.limit:
                step = len(plan.faults) / args.limit
                plan = Plan(
                    plan.scenario,
                    plan.steps,
                    [plan.faults[int(i * step)] for i in range(args.limit)],
                )
            golden_for(sc, sc.seed, spec)  # golden run (and the agent's snapshots), once
            db = Path(tmp) / f"{n}.db"
            s, rate, calls = timed_campaign(sc, plan, db, ex, spec, stack, rejoin=True)
            if spec is None:
                ref_rates.append(rate)
                if n:
                    break
                print(f"{'reference ADS':24s} {len(stack.points):6d} {s.planned:7d} {rate:8.1f}")
                continue
            _, plain, _ = timed_campaign(
                sc, plan, Path(tmp) / f"{n}-plain.db", ex, spec, stack, False
            )
            own = own_step_us(stack, sc)
            per_run = calls / s.planned if calls >= 0 else float("nan")
            rows.append(
                (spec, len(stack.points), s.planned, rate, plain, per_run, own, s.runs_start)
            )
        ref = sum(ref_rates) / len(ref_rates)
        print(f"{'reference ADS, again':24s} {'':6s} {'':7s} {ref_rates[-1]:8.1f}")
        print(f"(ratios against the mean of the two reference rates, {ref:.1f} runs/s)")
        for spec, points, faults, rate, plain, per_run, own, start in rows:
            name = Path(spec.split(":")[0]).stem + (":" + spec.split(":")[1] if ":" in spec else "")
            print(
                f"{name:24s} {points:6d} {faults:7d} {rate:8.1f} {rate / ref:6.2f}x {plain:9.1f} "
                f"{per_run:9.1f} {own:7.1f} {1e6 / (own * per_run):7.1f}  {start}",
                flush=True,
            )


if __name__ == "__main__":
    main()
