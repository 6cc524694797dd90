"""Faulty runs per second of user agents against the reference ADS, on the same exhaustive plan.

For each stack (the reference ADS, every agent under examples/agents/, the test fixtures' agents
when there is no example yet): an exhaustive plan of the scenario over all the stack's points
(start stride, durations 1,5,20; the same start steps, durations and grid sizes for every stack),
run as a campaign on the embedded simulator in this process. Each agent's faulty runs start from
deep copies of the agent taken during its golden run, lock-step with the vectorised world, and
stops once it rejoins the golden run (drivefi.rejoin). Prints a table with each stack's rate and
its ratio to the reference's (the target is >= 1/5); for agents, also the rate with rejoining
switched off (DRIVEFI_REJOIN=0: every run to the scenario's end), measured right after.

    python bench/bench_agents.py [--scenario lead_brake] [--stride 10] [--durations 1,5,20]
                                 [--limit N] [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from drivefi.campaign.executor import LocalExecutor
from drivefi.campaign.runner import run_campaign
from drivefi.plan import Plan, exhaustive
from drivefi.rejoin import SWITCH
from drivefi.scenario import load_scenario
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
        f"{'stack':24s} {'points':>6s} {'faults':>7s} {'golden s':>8s} {'runs/s':>8s} "
        f"{'vs ref':>7s} {'no rejoin':>9s}  runs start from"
    )
    print(f"exhaustive plan of {sc.name}: stride {args.stride}, durations {args.durations}")
    print(head)
    print("-" * len(head))
    ref_rate = None
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            t0 = time.perf_counter()
            stack = load_stack(spec, sc)
            plan = exhaustive(sc, None, None, durations, args.stride, stack_points=stack.points)
            if args.limit and len(plan.faults) > args.limit:
                step = len(plan.faults) / args.limit
                plan = Plan(
                    plan.scenario,
                    plan.steps,
                    [plan.faults[int(i * step)] for i in range(args.limit)],
                )
            from drivefi.campaign.batch import golden_for

            golden_for(sc, sc.seed, spec)  # golden run (and the agent's snapshots), once
            t_golden = time.perf_counter() - t0
            rates = []
            for switch in ("1", "0") if spec else ("1",):
                os.environ[SWITCH] = switch
                db = Path(tmp) / f"{len(plan.faults)}_{abs(hash(spec))}_{switch}.db"
                t1 = time.perf_counter()
                s = run_campaign(sc, plan, db, ex, progress=False, agent=spec)
                rates.append(s.planned / (time.perf_counter() - t1))
            os.environ.pop(SWITCH)
            rate = rates[0]
            ref_rate = ref_rate or rate
            plain = f"{rates[1]:9.1f}" if len(rates) > 1 else f"{'-':>9s}"
            name = (
                "reference ADS"
                if spec is None
                else Path(spec.split(":")[0]).stem
                + (":" + spec.split(":")[1] if ":" in spec else "")
            )
            print(
                f"{name:24s} {len(stack.points):6d} {s.planned:7d} {t_golden:8.2f} {rate:8.1f} "
                f"{rate / ref_rate:6.2f}x {plain}  {s.runs_start}",
                flush=True,
            )


if __name__ == "__main__":
    main()
