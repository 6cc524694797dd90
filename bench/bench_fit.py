"""Held-out one-step prediction error of the 3-TBN on every bundled scenario.

For each scenario: golden run + 300 random-fault runs, 20 % of the runs held out, MLE fit; prints
the held-out RMSE and maximum error of the next-step v, theta, phi, x, y (and lane offset), and
the fit time. These are the figures the README quotes.

    python bench/bench_fit.py
"""

from __future__ import annotations

import time

from drivefi.run.golden import record_golden
from drivefi.search.training import training_set
from drivefi.tbn import fit_model
from drivefi.world.scenario import bundled_names, load_scenario

VARS = ["v", "theta", "phi", "x", "y", "lane_offset"]


def main() -> None:
    head = f"{'scenario':20s} {'rows':>7s} {'fit s':>6s} " + " ".join(
        f"{v + ' rmse':>16s}" for v in VARS
    )
    print(head)
    print("-" * len(head))
    worst = {v: 0.0 for v in VARS}
    for name in bundled_names():
        sc = load_scenario(name)
        golden = record_golden(sc)
        ts = training_set(sc, runs=300, seed=0, golden=golden)
        t = time.perf_counter()
        model = fit_model(ts, "mle", holdout=0.2, seed=0)
        el = time.perf_counter() - t
        h = model.holdout
        cells = []
        for v in VARS:
            rmse = h[v]["rmse"] if v in h else float("nan")
            worst[v] = max(worst[v], h[v]["max"] if v in h else 0.0)
            cells.append(f"{rmse:16.3g}")
        print(f"{name:20s} {len(ts.slices):7d} {el:6.1f} " + " ".join(cells), flush=True)
    print(
        "largest held-out one-step error over all scenarios: "
        + ", ".join(f"{v} {e:.3g}" for v, e in worst.items())
    )


if __name__ == "__main__":
    main()
