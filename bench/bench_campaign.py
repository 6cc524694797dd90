"""Ground truth: exhaustive 1-fixed and m-fixed (m = 5, 20) sweeps of every bundled scenario, and
random FI (1-random, m-random, bitflip; 1,000 runs each) as the baseline the search must beat.

Prints, per scenario and fault model: faults, hazards, accidents, critical faults (count and
fraction of the space) and throughput in faulty runs per second. Results databases are kept in
out/bench/ so the search benchmark can compare against them.

    python bench/bench_campaign.py [--workers 2] [--scenarios a,b] [--out out/bench]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from drivefi.campaign.executor import LocalExecutor
from drivefi.campaign.runner import run_campaign
from drivefi.faults.plan import exhaustive, random_plan, write_plan
from drivefi.world.scenario import bundled_names, load_scenario

SWEEPS = [("1-fixed", 1), ("m-fixed m=5", 5), ("m-fixed m=20", 20)]
RANDOM = [("1-random", 1), ("m-random m=5", 5), ("bitflip", 1)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scenarios", default=",".join(bundled_names()))
    ap.add_argument("--out", default="out/bench")
    ap.add_argument("--random-count", type=int, default=1000)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ex = LocalExecutor(args.workers)
    rows = []
    head = f"{'scenario':20s} {'fault model':14s} {'faults':>8s} {'hazard':>7s} {'accident':>8s} {'critical':>8s} {'crit %':>7s} {'runs/s':>8s}"
    print(head)
    print("-" * len(head))
    total_runs, total_time = 0, 0.0
    for name in args.scenarios.split(","):
        sc = load_scenario(name)
        plans = [(label, exhaustive(sc, durations=[m])) for label, m in SWEEPS]
        plans += [
            (label, random_plan(sc, label.split()[0], args.random_count, m, seed=7))
            for label, m in RANDOM
        ]
        for label, plan in plans:
            tag = label.replace(" ", "").replace("=", "")
            db = out / f"{name}.{tag}.db"
            db.unlink(missing_ok=True)
            write_plan(plan, out / f"{name}.{tag}.csv")
            t0 = time.perf_counter()
            s = run_campaign(sc, plan, db, ex, progress=False)
            el = time.perf_counter() - t0
            total_runs += s.planned
            total_time += el
            row = {
                "scenario": name, "model": label, "faults": s.planned, "hazard": s.hazard,
                "accident": s.accident, "critical": s.critical, "runs_per_s": s.planned / el,
            }  # fmt: skip
            rows.append(row)
            print(
                f"{name:20s} {label:14s} {s.planned:8d} {s.hazard:7d} {s.accident:8d} {s.critical:8d} "
                f"{100 * s.critical / s.planned:6.2f}% {s.planned / el:8.0f}",
                flush=True,
            )
    print("-" * len(head))
    print(
        f"overall: {total_runs} faulty runs in {total_time:.1f} s = {total_runs / total_time:.0f} runs/s ({args.workers} workers)"
    )
    (out / "ground_truth.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
