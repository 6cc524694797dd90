"""Bayesian search vs exhaustive ground truth vs random FI at the same budget, every scenario.

Needs the ground-truth databases of bench/bench_campaign.py (out/bench/*.db); runs that first if
they are missing. For each scenario: golden run, 300 random-fault training runs, MLE fit, one
search over 1-fixed and m-fixed (m = 5, 20) candidates; the plan (P(hazard) >= 0.5) is matched to
ground truth (injecting a fault on the embedded bridge gives exactly its ground-truth outcome, by
determinism). Random FI's hazards per injection at any budget is, in expectation, the sweep's
critical fraction. Each scenario gets a row per sweep and one for its whole space (the three
sweeps together), on which the targets are judged.

    python bench/bench_search.py [--out out/bench] [--scenarios a,b]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path

import numpy as np
from sweeps import ensure_sweeps

from drivefi.run.golden import record_golden
from drivefi.search import score_space
from drivefi.search.training import training_set
from drivefi.tbn import fit_model
from drivefi.world.scenario import bundled_names, load_scenario

SWEEPS = [
    ("1-fixed", "1-fixed", 1),
    ("m-fixed m=5", "m-fixedm5", 5),
    ("m-fixed m=20", "m-fixedm20", 20),
]


def ground_truth(db: Path) -> tuple[int, set]:
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT f.point, f.value, f.start, o.critical FROM faults f JOIN outcomes o USING (campaign, idx)"
    ).fetchall()
    return len(rows), {(p, round(v, 9), k) for p, v, k, c in rows if c}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out/bench")
    ap.add_argument("--scenarios", default=",".join(bundled_names()))
    ap.add_argument("--training-runs", type=int, default=300)
    ap.add_argument("--min-prob", type=float, default=0.5)
    args = ap.parse_args()
    out = Path(args.out)
    names = args.scenarios.split(",")
    ensure_sweeps(out, args.scenarios)
    head = (
        f"{'scenario':20s} {'model':13s} {'space':>6s} {'critical':>8s} {'planned':>7s} {'found':>6s} "
        f"{'precision':>9s} {'recall':>6s} {'haz/inj':>8s} {'random':>8s} {'speed-up':>8s} {'simulated':>9s}"
    )
    print(head)
    print("-" * len(head))
    rows = []
    for name in names:
        sc = load_scenario(name)
        t0 = time.perf_counter()
        golden = record_golden(sc)
        model = fit_model(training_set(sc, runs=args.training_runs, seed=0, golden=golden), seed=0)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        cand = score_space(sc, model, golden, durations=(1, 5, 20))
        t_search = time.perf_counter() - t0
        tot = {"space": 0, "crit": set(), "pred": set()}
        for label, tag, dur in [*SWEEPS, ("all three", None, None)]:
            if tag is None:  # the scenario's whole space: the three sweeps together
                space, crit, pred = tot["space"], tot["crit"], tot["pred"]
            else:
                space, crit = ground_truth(out / f"{name}.{tag}.db")
                sel = np.flatnonzero((cand.duration == dur) & (cand.p_hazard >= args.min_prob))
                pred = {
                    (cand.point[i], round(float(cand.value[i]), 9), int(cand.start[i])) for i in sel
                }
                tot["space"] += space
                tot["crit"] |= {(*c, dur) for c in crit}
                tot["pred"] |= {(*p, dur) for p in pred}
            found = len(pred & crit)
            precision = found / len(pred) if pred else float("nan")
            recall = found / len(crit) if crit else float("nan")
            hpi = found / len(pred) if pred else 0.0
            rnd = len(crit) / space
            speed = hpi / rnd if rnd > 0 else float("inf") if hpi > 0 else float("nan")
            row = dict(scenario=name, model=label, space=space, critical=len(crit), planned=len(pred), found=found,
                       precision=precision, recall=recall, hazards_per_injection=hpi, random=rnd,
                       speedup=speed, simulated=len(pred) / space, fit_s=t_fit, search_s=t_search,
                       scored=len(cand), scored_per_s=len(cand) / t_search)  # fmt: skip
            rows.append(row)
            print(
                f"{name:20s} {label:13s} {space:6d} {len(crit):8d} {len(pred):7d} {found:6d} {precision:9.3f} "
                f"{recall:6.3f} {hpi:8.3f} {rnd:8.4f} {speed:8.1f} {100 * len(pred) / space:8.2f}%",
                flush=True,
            )
        print(f"{'':20s} (fit {t_fit:.1f} s; {len(cand):,} candidates scored in {t_search:.1f} s)")
    print(
        "targets per scenario (all three sweeps): precision >= 0.9, recall >= 0.9, >= 20x random's "
        "hazards per injection, <= 5% of the space simulated"
    )
    (out / "search_vs_ground_truth.json").write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
