"""3-TBN benchmark: fit time on 100,000 rows, do() query throughput, fully scored candidates/s.

Prints one table; targets (DESIGN/issue 4): >= 1,000,000 BN queries/s and >= 200,000 fully
scored candidates/s (one-step prediction + Runge-Kutta delta + P(hazard)) on a 2-core machine.
"""

from __future__ import annotations

import time

import numpy as np


def best_of(fn, repeat: int = 3) -> float:
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    from drivefi.run.golden import record_golden
    from drivefi.search.training import training_set
    from drivefi.tbn.evidence import GoldenWindows
    from drivefi.tbn.fit import fit_model
    from drivefi.tbn.hazard import SafetyModel
    from drivefi.tbn.predict import Predictor
    from drivefi.tbn.structure import SAFETY_STATE, STATE
    from drivefi.world.scenario import load_scenario

    sc = load_scenario("lead_brake")
    golden = record_golden(sc)
    t = time.perf_counter()
    ts = training_set(sc, runs=520, seed=0, golden=golden)
    t_sim = time.perf_counter() - t
    rows = len(ts.slices)
    t = time.perf_counter()
    model = fit_model(ts, "mle", holdout=0.0)
    t_fit = time.perf_counter() - t

    gw = GoldenWindows(golden.trace, sc, model.structure)
    pred = Predictor(model, gw.context)
    safety = SafetyModel(sc)
    q = 200_000
    rng = np.random.default_rng(0)
    k = rng.integers(2, sc.steps - 2, q)
    prev, cur = gw.window(k)
    exo = gw.exo(k + 1)
    out = {}
    for point in (
        "control.steer",
        "control.throttle",
        "planning.target_speed",
        "perception.obstacle_distance",
    ):
        vals = rng.uniform(0, 1, q)
        pred.predict(prev, cur, exo, {point: vals}, STATE)  # compile once
        dt = best_of(lambda p=point, v=vals: pred.predict(prev, cur, exo, {p: v}, STATE))
        out[point] = q / dt

    qs = 100_000
    ks = k[:qs]
    prev_s, cur_s = gw.window(ks)
    exo_s = gw.exo(ks + 1)
    vals = rng.uniform(-1, 1, qs)

    def score(gradient: bool):
        mean, _ = pred.predict(prev_s, cur_s, exo_s, {"control.steer": vals}, STATE)
        cov = pred.one_step_cov(("control.steer",), SAFETY_STATE)
        return safety.probability(ks + 1, mean, cov, gradient)

    score(True)
    t_score = best_of(lambda: score(True), 2)
    t_score0 = best_of(lambda: score(False), 2)

    print("3-TBN benchmark (lead_brake)")
    print(f"  training runs simulated     {ts.runs} runs, {rows:,} rows in {t_sim:.2f} s")
    print(f"  MLE fit (pgmpy)             {t_fit:.2f} s on {rows:,} rows")
    for p, r in out.items():
        print(f"  BN queries/s, do({p:28s}) {r:>12,.0f}")
    print(f"  scored candidates/s (delta + P(hazard), linearised)  {qs / t_score:>12,.0f}")
    print(f"  scored candidates/s (delta only, step P)             {qs / t_score0:>12,.0f}")
    print("  targets: >= 1,000,000 queries/s, >= 200,000 scored candidates/s")


if __name__ == "__main__":
    main()
