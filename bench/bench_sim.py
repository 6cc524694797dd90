"""Embedded-simulator benchmark: batch throughput, and each bundled scenario's golden margins.

    python bench/bench_sim.py [--sizes 1,100,1000,10000]

Throughput is complete 20-s scenario runs (reference ADS in the loop) per second of wall time,
for N runs in lock-step on numpy arrays: without recorders (the bare closed loop) and with
per-step safety labelling (the safety potential of every run at every step, summarised by an
OutcomeRecorder: min deltas, first hazard, collision and departure steps), which is what an
exhaustive campaign pays. Each figure is the best of a few repeats for small N. The second table
is each bundled scenario's golden run: how close it gets to its safety boundary (the README
quotes both tables).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from drivefi.run.golden import record_golden
from drivefi.run.simulate import OutcomeRecorder, Simulation
from drivefi.world.scenario import bundled_names, load_scenario

SCENARIOS = ["highway", "lead_brake"]  # a 3-lane curved road with 3 actors; a straight road


def timed_run(scenario, n: int, labelled: bool) -> float:
    sim = Simulation(scenario)
    recorders = [OutcomeRecorder(n)] if labelled else []
    t0 = time.perf_counter()
    sim.run(n, recorders=recorders)
    return time.perf_counter() - t0


def throughput(scenario, n: int, labelled: bool) -> float:
    """Runs per second at batch size n (best of 3 below N = 10,000)."""
    repeats = 3 if n < 10_000 else 1
    return n / min(timed_run(scenario, n, labelled) for _ in range(repeats))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="1,100,1000,10000", help="comma-separated batch sizes N")
    sizes = [int(x) for x in ap.parse_args().sizes.split(",")]

    print("DriveFI embedded simulator benchmark")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, {platform.machine()}"
    )
    print()
    print("Throughput: complete scenario runs per second (N runs in lock-step)")
    head = (
        f"{'scenario':<12} {'length':>7} {'N':>7} {'no recorders':>14} {'with safety labels':>20}"
    )
    print(head)
    print("-" * len(head))
    best = (0.0, "", 0, "")
    for name in SCENARIOS:
        sc = load_scenario(name)
        timed_run(sc, 10, True)  # warm-up (imports, first allocations)
        for n in sizes:
            bare = throughput(sc, n, labelled=False)
            labelled = throughput(sc, n, labelled=True)
            print(
                f"{name:<12} {sc.duration:>6g}s {n:>7,} {bare:>14,.0f} {labelled:>20,.0f}",
                flush=True,
            )
            best = max(best, (bare, name, n, "no recorders"), (labelled, name, n, "safety labels"))
    print(f"best: {best[0]:,.0f} runs/s ({best[1]}, N = {best[2]:,}, {best[3]})")
    print()

    print("Golden runs: closest approach to the safety boundary (delta = d_safe - d_stop)")
    head = (
        f"{'scenario':<20} {'steps':>5} {'min delta_lon':>14} {'at t':>6} "
        f"{'min delta_lat':>14} {'at t':>6} {'hazard':>6} {'accident':>8}"
    )
    print(head)
    print("-" * len(head))
    for name in bundled_names():
        s = record_golden(load_scenario(name)).trace.summary()
        accident = "yes" if s["collision"] or s["departure"] else "no"
        print(
            f"{name:<20} {s['steps']:>5} {s['min_delta_lon']:>12.2f} m {s['min_delta_lon_t']:>5.2f}s "
            f"{s['min_delta_lat']:>12.2f} m {s['min_delta_lat_t']:>5.2f}s "
            f"{'yes' if s['hazard_steps'] else 'no':>6} {accident:>8}",
            flush=True,
        )


if __name__ == "__main__":
    main()
