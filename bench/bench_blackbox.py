"""The black-box 3-TBN against exhaustive ground truth: every stack x every bundled scenario.

Stacks: the reference stack treated as a black box (its structure is models/reference.yaml: its
points and module order, nothing of its code) and every agent under examples/agents/ (a default
structure derived from its points). Ground truth: the exhaustive 1-fixed and m-fixed (m = 5, 20)
sweeps (bench/bench_campaign.py's databases for the reference stack, stride 1; agents: a start-step
stride of 5, the search on the same grid). The search spends its budget in active-refit rounds
(drivefi.search.active): training runs, fit, score, inject, refit, re-score. Per stack x scenario it prints
precision, recall and F1 of the final plan, the space's critical share, the simulator runs spent
by the search (training + round injections), by the pipeline in all (+ its validation of up to
--validate fresh predictions) and with the whole rest of the plan validated, as shares of the space, hazards per injection against random FI at the same number of runs, fit,
search and simulation seconds, candidates scored per second (round 0), and which points and
durations the misses and false alarms are. In distinct cases (failure modes,
drivefi.search.modes): the truth's cases, the cases the final plan holds a critical fault of, and
the cases the pipeline reaches (the rounds' confirmed faults + its validation of up to --validate
fresh predictions).

    python bench/bench_blackbox.py [--out out/bench] [--scenarios a,b] [--stacks reference,...]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path

from sweeps import ensure_sweeps

from drivefi.run.golden import record_golden
from drivefi.run.testbed import Testbed
from drivefi.search.modes import case_ids
from drivefi.world.scenario import bundled_names, load_scenario

SWEEPS = [("1-fixed", 1), ("m-fixedm5", 5), ("m-fixedm20", 20)]
TARGET = (
    "targets per stack x scenario: precision >= 0.95, recall >= 0.90, <= 10 % of the space "
    "simulated in all\n(crit %: the space's critical share; srch %: training runs + round injections; "
    "run %: those + the pipeline's validation of up to --validate fresh predictions, i.e. every "
    "run the tool makes;\nsim %: srch % + validating the whole rest of the plan, which alone "
    "needs about recall x crit %)\n(cases: the truth's distinct cases, drivefi.search.modes; "
    "plan c: those the plan holds a critical fault of; run c: those the pipeline reaches, the "
    "rounds' confirmed faults + its validation)"
)


def agent_sweeps(out: Path, agent: str, name: str, stride: int = 5) -> str:
    """Exhaustive sweeps of an agent on a scenario (start-step stride ``stride``), kept in
    out/<agent>.<scenario>.<tag>.db; returns the database prefix."""
    from drivefi.campaign.executor import LocalExecutor
    from drivefi.campaign.runner import run_campaign
    from drivefi.faults.plan import exhaustive
    from drivefi.stacks import stack_points

    label = Path(agent.split(":")[0]).stem
    prefix = f"{label}.{name}"
    sc = load_scenario(name)
    for tag, dur in SWEEPS:
        db = out / f"{prefix}.{tag}.db"  # a campaign resumes: an interrupted sweep is completed
        plan = exhaustive(sc, durations=[dur], stride=stride, stack_points=stack_points(agent))
        run_campaign(sc, plan, db, LocalExecutor(2), progress=False, testbed=Testbed.of(agent))
    return prefix


def ground_truth(out: Path, name: str, stride: int = 1) -> tuple[int, set]:
    """(space, critical faults as (point, value, start, duration)) from the sweep databases
    (``name``: a scenario, or an agent's database prefix)."""
    space, crit = 0, set()
    for tag, dur in SWEEPS:
        con = sqlite3.connect(out / f"{name}.{tag}.db")
        rows = con.execute(
            "SELECT f.point, f.value, f.start, o.critical, o.golden_safe FROM faults f "
            "JOIN outcomes o USING (campaign, idx)"
        ).fetchall()
        for p, v, k, c, safe in rows:
            if k % stride:
                continue
            space += int(bool(safe))  # the search's space: faults at steps where the golden is safe
            if c:
                crit.add((p, round(v, 9), k, dur))
    return space, crit


def truth_cases(crit: set, dt: float) -> dict:
    """Each critical fault of the truth ((point, value, start, duration), value faults) -> its
    case id (drivefi.search.modes: same point, value, duration class and phase of the drive)."""
    import pandas as pd

    faults = sorted(crit)
    df = pd.DataFrame(faults, columns=["point", "value", "start", "duration"])
    df["model"], df["bit"], df["seed"] = "m-fixed", None, 0
    return dict(zip(faults, case_ids(df, dt=dt).tolist(), strict=True))


def fault_key(c, i: int) -> tuple:
    """Candidate ``i`` of ``c`` as the truth names a fault: (point, value, start, duration)."""
    return (c.point[i], round(float(c.value[i]), 9), int(c.start[i]), int(c.duration[i]))


def cases_reached(cases: dict, found: set) -> int:
    """How many of the truth's cases hold at least one fault of ``found``."""
    return len({cases[f] for f in found if f in cases})


def breakdown(found: set, other: set) -> str:
    """The (point, duration) groups of ``found - other``, largest first (the misses or the false
    alarms of a plan), as 'point/duration: count' text."""
    groups: dict[tuple[str, int], int] = {}
    for p, _v, _k, d in found - other:
        groups[(p, d)] = groups.get((p, d), 0) + 1
    top = sorted(groups.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{p}/{d}: {n}" for (p, d), n in top[:4]) or "none"


def stacks(root: Path) -> list[str]:
    """The reference stack and every example agent (FILE.py[:CLASS] as their folder has them)."""
    out = ["reference"]
    agents = root / "examples" / "agents"
    if agents.is_dir():
        out += [str(p) for p in sorted(agents.glob("*.py")) if not p.name.startswith("_")]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out/bench")
    ap.add_argument("--scenarios", default=",".join(bundled_names()))
    ap.add_argument("--stacks", default=None, help="comma-separated (default: all discovered)")
    ap.add_argument("--training-runs", type=int, default=300, help="reference stack (stride 1)")
    ap.add_argument(
        "--agent-training-runs",
        type=int,
        default=150,
        help="example agents (their space is 5x smaller: stride 5)",
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=0.10)
    ap.add_argument(
        "--validate", type=int, default=300, help="fresh predictions the pipeline validates"
    )
    ap.add_argument("--json", default="blackbox.json", help="results file name (in --out)")
    args = ap.parse_args()
    out = Path(args.out)
    names = args.scenarios.split(",")
    todo = args.stacks.split(",") if args.stacks else stacks(Path.cwd())
    if "reference" in todo:  # only the reference stack's truth is bench_campaign.py's sweeps
        ensure_sweeps(out, args.scenarios)
    from drivefi.search.active import ActiveOptions, active_search
    from drivefi.search.training import structure_for

    head = (
        f"{'stack':12s} {'scenario':20s} {'space':>6s} {'crit':>5s} {'plan':>5s} {'prec':>6s} "
        f"{'recall':>6s} {'F1':>5s} {'crit %':>6s} {'srch %':>6s} {'run %':>6s} {'sim %':>6s} {'haz/inj':>7s} {'random':>7s} {'fit s':>6s} "
        f"{'search s':>8s} {'sim s':>6s} {'cand/s':>8s} {'cases':>5s} {'plan c':>6s} {'run c':>5s}"
    )
    print(head)
    print("-" * len(head), flush=True)
    rows, notes = [], []
    for stack in todo:
        label = "reference" if stack == "reference" else Path(stack.split(":")[0]).stem
        try:
            testbed = Testbed.of(stack)
            st = structure_for(testbed)
        except Exception as err:
            print(f"{label:12s} (not measured: {err})", flush=True)
            continue
        stride = 1 if stack == "reference" else 5
        for name in names:
            sc = load_scenario(name)
            gt = name if stack == "reference" else agent_sweeps(out, stack, name, stride)
            space, crit = ground_truth(out, gt, stride)
            golden = record_golden(sc, testbed=testbed)
            t0 = time.perf_counter()
            n_train = args.training_runs if stack == "reference" else args.agent_training_runs
            opts = ActiveOptions(args.budget, n_train, args.rounds, stride=stride)
            res = active_search(sc, golden, st, opts, testbed, truth=crit,
                                log=lambda m: print(f"{'':12s} {m}", flush=True))  # fmt: skip
            wall = time.perf_counter() - t0
            c = res.candidates
            plan = {
                (c.point[i], round(float(c.value[i]), 9), int(c.start[i]), int(c.duration[i]))
                for i in res.plan
            }
            tp = len(plan & crit)
            prec = tp / len(plan) if plan else float("nan")
            rec = tp / len(crit) if crit else float("nan")
            f1 = 2 * prec * rec / (prec + rec) if plan and crit and prec + rec > 0 else float("nan")
            sim = res.simulated
            searched = res.training_runs + int(res.injected.sum())  # the search's own runs
            runs = searched + min(sim - searched, args.validate)  # what the pipeline simulates
            hpi = tp / sim if sim else 0.0  # every critical fault found, per simulator run spent
            rnd = len(crit) / space if space else 0.0  # random FI's expectation at any budget
            cases = truth_cases(crit, sc.dt)
            n_cases = len(set(cases.values()))
            plan_cases = cases_reached(cases, plan)  # the plan holds a critical fault of them
            pos = [i for i in res.plan if res.outcome[i] < 0][: args.validate]  # validated
            confirmed = {fault_key(c, i) for i in res.plan if res.outcome[i] == 1}
            validated = {fault_key(c, i) for i in pos} & crit
            run_cases = cases_reached(cases, confirmed | validated)
            r0 = res.rounds[0]
            rate = len(c) / r0.search_s if r0.search_s > 0 else 0.0
            row = dict(stack=label, scenario=name, space=len(c), critical=len(crit), plan=len(plan),
                       found=tp, precision=prec, recall=rec, f1=f1, simulated=sim,
                       simulated_share=sim / len(c), search_share=searched / len(c), pipeline_share=runs / len(c), hazards_per_injection=hpi, random=rnd,
                       fit_s=res.fit_seconds, search_s=res.search_seconds,
                       sim_s=res.sim_seconds, wall_s=wall, training_runs=n_train,
                       scored_per_s=rate, rounds=[r.__dict__ for r in res.rounds],
                       learned=res.model.structure.params, truth_cases=n_cases,
                       plan_cases=plan_cases, pipeline_cases=run_cases)  # fmt: skip
            rows.append(row)
            (out / args.json).write_text(json.dumps(rows, indent=1, default=float))  # so far
            notes.append(f"{label} {name}: missed {breakdown(crit, plan)}; "
                         f"false alarms {breakdown(plan, crit)}")  # fmt: skip
            print(
                f"{label:12s} {name:20s} {len(c):6d} {len(crit):5d} {len(plan):5d} {prec:6.3f} "
                f"{rec:6.3f} {f1:5.3f} {100 * len(crit) / len(c):6.2f} {100 * searched / len(c):6.2f} "
                f"{100 * runs / len(c):6.2f} "
                f"{100 * sim / len(c):6.2f} {hpi:7.3f} {rnd:7.4f} "
                f"{res.fit_seconds:6.1f} {res.search_seconds:8.1f} {res.sim_seconds:6.1f} "
                f"{rate:8.0f} {n_cases:5d} {plan_cases:6d} {run_cases:5d}",
                flush=True,
            )
    print(TARGET)
    print("\nmisses and false alarms by point/duration (steps):")
    print("\n".join(notes))
    (out / args.json).write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
