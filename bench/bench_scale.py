"""How the search's costs grow (issue 24): fit, whole-space scoring and the active search as
functions of the number of injection points, the drive length, the values per point and the
fault durations, with candidates/s and peak RSS for each, and each cost's growth exponent
(the slope of log cost over log size).

    python bench/bench_scale.py            # the full sweep (several minutes)
    python bench/bench_scale.py --quick    # a small sweep (a few minutes on 2 cores)

Axes (every other setting at its default; lead_brake):

- points: an agent with 4, 16 or 64 declared points (quick: 4, 8, 16; perception readings of the
  speed, averaged by its planner, plus its cruise speed and the three standard outputs; the 3-TBN
  structure derived from them), generated into a temporary file;
- drive length: the scenario's duration 20, 60, 180 s (``model_copy(update={"duration": ...})``);
- values per point: 3, 5, 9 values in each point's grid;
- durations: (1,), (1, 5), (1, 5, 20) steps.

Each measurement runs in its own process, so its peak RSS is its own. "active" is
:func:`drivefi.search.active.active_search` (training runs, the fit, scoring and the refit
rounds); "refit" is its mean refit round.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

AGENT = '''
import carla

from drivefi.inject import declare, inject
from drivefi.stacks.agent.loader import AutonomousAgent

N = {n}
for i in range(N):
    declare(f"perception.speed{{i}}", lo=0.0, hi=40.0, unit="m/s", doc="a speed reading")
declare("planning.cruise", lo=0.0, hi=40.0, unit="m/s", doc="speed the agent holds")


class Many(AutonomousAgent):
    """A cruise controller reading the speed through N points (their mean)."""

    def setup(self, path_to_conf_file):
        self.integral = 0.0

    def sensors(self):
        return [{{"type": "sensor.speedometer", "id": "speed"}},
                {{"type": "drivefi.observation", "id": "truth"}}]

    def run_step(self, input_data, timestamp):
        speed = input_data["speed"][1]["speed"]
        truth = input_data["truth"][1]
        v = sum(inject(f"perception.speed{{i}}", speed) for i in range(N)) / N
        ahead = [o["ds"] for o in truth["objects"] if o["ds"] > 0 and abs(o["dd"]) < 2.0]
        gap = min(ahead) if ahead else 200.0
        cruise = truth["set_speed"] if gap > 40.0 else max(0.0, (gap - 10.0) / 3.0)
        err = inject("planning.cruise", cruise) - v
        self.integral = max(min(self.integral + err * truth["dt"], 5.0), -5.0)
        a = 0.8 * err + 0.1 * self.integral
        return carla.VehicleControl(throttle=min(max(a / 3.5, 0.0), 1.0), steer=0.0,
                                    brake=min(max(-a / 9.5, 0.0), 1.0))
'''


def measure(cfg: dict) -> dict:
    """One measurement (in this process): fit, scoring and (optionally) the active search."""
    import resource

    from drivefi.run.golden import golden_of
    from drivefi.run.testbed import Testbed
    from drivefi.search import score_space, value_grid
    from drivefi.search.active import ActiveOptions, active_search
    from drivefi.search.training import structure_for, training_set
    from drivefi.tbn import fit_model
    from drivefi.world.scenario import load_scenario

    sc = load_scenario(cfg.get("scenario", "lead_brake"))
    if cfg.get("duration"):
        sc = sc.model_copy(update={"duration": float(cfg["duration"])})
    tb = Testbed.of(cfg["agent"]) if cfg.get("agent") else Testbed()
    st = structure_for(tb)
    golden = golden_of(tb, sc, sc.seed)[0]
    runs, durations = cfg["runs"], tuple(cfg["durations"])
    values = None
    if cfg.get("values"):
        values = {p: value_grid(st, p, cfg["values"]) for p in st.points}
    out: dict = {"points": len(st.points), "steps": sc.steps}
    t = time.perf_counter()
    ts = training_set(sc, runs, 0, golden, st, tb)
    out["train_s"] = time.perf_counter() - t
    t = time.perf_counter()
    model = fit_model(ts, seed=0)
    out["fit_s"] = time.perf_counter() - t
    t = time.perf_counter()
    c = score_space(sc, model, golden, durations=durations, values=values)
    out["score_s"] = time.perf_counter() - t
    out["candidates"] = len(c)
    out["cand_per_s"] = len(c) / out["score_s"]
    if cfg.get("active"):
        o = ActiveOptions(training_runs=runs, rounds=cfg["rounds"], durations=durations)
        t = time.perf_counter()
        res = active_search(sc, golden, st, o, tb)
        out["active_s"] = time.perf_counter() - t
        fits = [r.fit_s for r in res.rounds]
        out["first_fit_s"] = fits[0]
        out["refit_s"] = float(np.mean(fits[1:])) if len(fits) > 1 else float("nan")
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_one(cfg: dict) -> dict:
    """``measure`` in a fresh process (its own peak RSS)."""
    res = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise SystemExit(f"bench_scale: {cfg} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def exponent(xs, ys) -> float:
    """Slope of log y over log x (least squares)."""
    x, y = np.log(np.asarray(xs, float)), np.log(np.maximum(np.asarray(ys, float), 1e-9))
    return float(np.polyfit(x, y, 1)[0]) if len(x) > 1 else float("nan")


COSTS = ("fit_s", "score_s", "active_s", "refit_s")


def sweep(name: str, size_key: str, cfgs: list[dict]) -> None:
    rows = [run_one(c) for c in cfgs]
    print(f"\n== {name} ==")
    head = (
        f"{size_key:>10s} {'points':>6s} {'steps':>6s} {'cands':>8s} {'fit s':>7s} "
        f"{'score s':>8s} {'cand/s':>9s} {'active s':>9s} {'refit s':>8s} {'RSS MB':>7s}"
    )
    print(head)
    sizes = []
    for c, r in zip(cfgs, rows, strict=True):
        size = r["candidates"] if size_key == "candidates" else r.get(size_key, c.get(size_key))
        sizes.append(size)
        print(
            f"{size:>10} {r['points']:>6d} {r['steps']:>6d} {r['candidates']:>8d} "
            f"{r['fit_s']:>7.2f} {r['score_s']:>8.2f} {r['cand_per_s']:>9.0f} "
            f"{r.get('active_s', float('nan')):>9.2f} {r.get('refit_s', float('nan')):>8.2f} "
            f"{r['peak_rss_mb']:>7.0f}"
        )
    exps = ", ".join(
        f"{k} ~ {size_key}^{exponent(sizes, [r[k] for r in rows]):.2f}"
        for k in (*COSTS, "peak_rss_mb")
        if all(k in r and np.isfinite(r[k]) for r in rows)
    )
    print(f"growth: {exps}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small sweep (a few minutes)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(measure(json.loads(a.one))))
        return
    q = a.quick
    runs = 60 if q else 300
    base = {"runs": runs, "durations": [1, 5, 20], "rounds": 1 if q else 3}
    tmp = Path(tempfile.mkdtemp(prefix="drivefi_bench_scale_"))
    t0 = time.perf_counter()
    agents = []
    for n in (4, 8, 16) if q else (4, 16, 64):
        f = tmp / f"many{n}.py"
        f.write_text(AGENT.format(n=n))
        agents.append(f"{f}:Many")
    print(f"bench_scale ({'quick' if q else 'full'}): lead_brake, {runs} training runs")
    sweep(
        "injection points (generated agent)",
        "points",
        [{**base, "agent": ag, "active": True} for ag in agents],
    )
    sweep(
        "drive length [s] (reference stack)",
        "duration",
        [{**base, "duration": d, "active": True} for d in ((20, 60) if q else (20, 60, 180))],
    )
    sweep(
        "values per point (reference stack)",
        "values",
        [{**base, "values": v} for v in ((3, 5) if q else (3, 5, 9))],
    )
    sweep(
        "durations (reference stack)",
        "candidates",
        [{**base, "durations": d} for d in (([1], [1, 5]) if q else ([1], [1, 5], [1, 5, 20]))],
    )
    print(f"\nbench_scale: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
