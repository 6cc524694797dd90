"""The search's plan as cases: the faults it predicts critical (and those its rounds confirmed),
grouped into failure modes (:func:`drivefi.search.modes.summarise_cases`), each with its most
likely fault, its predicted outcome and whether a simulated run confirmed it.

A plan row has no outcome: what the plan predicts is its ``p_hazard`` and ``predicted_delta``
(the search's columns). A case is confirmed by the active-refit rounds (its plan rows with
``confirmed_in_rounds`` = 1) or by the validation campaign (the top of the plan, injected: its
fault ``idx`` is the plan row).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from drivefi.faults.plan import Plan, faults_frame
from drivefi.report import page as H
from drivefi.search.modes import PHASE_SECONDS, case_ids, summarise_cases

SHOWN = 30  # cases in the table; the rest under a <details>


def plan_frame(plan: Plan) -> pd.DataFrame:
    """The plan's faults, one row each (``row``: 0-based plan row), with its predictions (NaN
    where the plan has none) and ``in_rounds`` (confirmed critical by an active-refit round)."""
    df = faults_frame(plan.faults)
    df["row"] = np.arange(len(df))
    for c in ("p_hazard", "predicted_delta"):
        vals = plan.extra.get(c, [""] * len(df))
        df[c] = pd.to_numeric(pd.Series(vals, index=df.index), errors="coerce")
    rounds = plan.extra.get("confirmed_in_rounds", [""] * len(df))
    df["in_rounds"] = [str(x).strip() == "1" for x in rounds]
    return df


def plan_cases(plan: Plan, dt: float | None, validated: pd.DataFrame | None) -> pd.DataFrame:
    """One row per case of the plan (:func:`summarise_cases` of its faults), most likely first.

    Adds: ``likely`` (plan row of the case's most likely fault: highest P(hazard), then the most
    negative predicted delta, then the earliest in the plan), its ``p_hazard`` and
    ``predicted_delta``, the case's most negative ``min_predicted``, ``rounds`` (its faults the
    rounds confirmed), ``validated`` / ``validated_critical`` (its faults the validation injected
    and ran to the end, ``validated``: that campaign's outcomes, ``idx`` = plan row)."""
    df = plan_frame(plan)
    cases = summarise_cases(df, dt=dt)
    if cases.empty:
        return cases
    df["_id"] = case_ids(df, dt=dt)
    if validated is not None and len(validated):
        v = validated.set_index("idx")
        ran = df["row"].isin(v.index).to_numpy()
        df["_val"] = ran
        crit = v["critical"].reindex(df["row"]).fillna(0).to_numpy(float)
        df["_crit"] = ran & (crit == 1)
    else:
        df["_val"] = df["_crit"] = False
    order = np.lexsort((df["row"], df["predicted_delta"].fillna(np.inf),
                        -df["p_hazard"].fillna(-1)))  # fmt: skip
    g = df.iloc[order].groupby("_id", sort=False)
    best = g.head(1).set_index("_id")
    ids = cases["id"].to_numpy()
    cases = cases.assign(
        likely=best["row"].reindex(ids).to_numpy(),
        p_hazard=best["p_hazard"].reindex(ids).to_numpy(),
        predicted_delta=best["predicted_delta"].reindex(ids).to_numpy(),
        min_predicted=g["predicted_delta"].min().reindex(ids).to_numpy(),
        rounds=g["in_rounds"].sum().reindex(ids).to_numpy(int),
        validated=g["_val"].sum().reindex(ids).to_numpy(int),
        validated_critical=g["_crit"].sum().reindex(ids).to_numpy(int),
    )
    key = np.lexsort((-cases["count"].to_numpy(), cases["min_predicted"].fillna(np.inf),
                      -cases["p_hazard"].fillna(-1)))  # fmt: skip
    cases = cases.iloc[key].reset_index(drop=True)
    cases["case"] = np.arange(1, len(cases) + 1)
    return cases


def _confirmed(k) -> str:
    """Whether a simulated run confirmed the case: by the rounds, by the validation, or neither."""
    said = []
    if k["rounds"]:
        said.append(f"{k['rounds']} in the rounds")
    if k["validated"]:
        said.append(f"{k['validated_critical']} of {k['validated']} in validation")
    if not said:
        return "not simulated"
    yes = k["rounds"] or k["validated_critical"]
    return ("yes: " if yes else "no: ") + ", ".join(said)


def _predicted(k, has_predictions: bool) -> str:
    if not has_predictions or pd.isna(k["p_hazard"]):
        return "predicted critical"
    return f"P(hazard) {k['p_hazard']:.2f}, delta {k['predicted_delta']:.2f} m"


def _when(r, dt: float | None) -> str:
    """When the plan row ``r`` starts and how long it lasts (seconds with ``dt``, else steps)."""
    if dt is None:
        return f"from step {r['start']} for {r['duration']} steps"
    return f"from {r['start'] * dt:.2f} s for {r['duration'] * dt:.2f} s"


def _span(a: float, b: float, unit: str) -> str:
    return f"{a:.2f} {unit}" if abs(a - b) < 1e-9 else f"{a:.2f}–{b:.2f} {unit}"


def plan_rows(cases: pd.DataFrame, plan: Plan, dt: float | None, drawn) -> list[dict]:
    """The table's rows; ``drawn(fault_row)``: what an m-random fault drew (empty otherwise)."""
    faults = plan_frame(plan)
    has = "p_hazard" in plan.extra
    unit = "steps" if dt is None else "s"
    rows = []
    for _, k in cases.iterrows():
        r = faults.iloc[int(k["likely"])]
        got = drawn(r)
        rows.append({
            "case": int(k["case"]), "what": f"{k['point']} = {k['kind']}",
            "duration": f"{k['duration_class']} ({_span(k['dur_min'], k['dur_max'], unit)})",
            "phase": f"{k['phase'] * PHASE_SECONDS:g}–{(k['phase'] + 1) * PHASE_SECONDS:g} s",
            "count": int(k["count"]),
            "likely": f"row {int(k['likely']) + 1}: {_when(r, dt)}"
            + (f"; drew {got}" if got else ""),
            "predicted": _predicted(k, has),
            "confirmed": _confirmed(k),
        })  # fmt: skip
    return rows


COLS = [("case", "#"), ("what", "fault (point = value)"), ("duration", "duration"),
        ("phase", "phase"), ("count", "plan faults"), ("likely", "most likely fault (plan row)"),
        ("predicted", "predicted"), ("confirmed", "confirmed by a simulated run")]  # fmt: skip


def plan_section(path: Path, plan: Plan, dt: float | None, cases: pd.DataFrame, drawn) -> str:
    """The section's HTML: the plan's ``cases`` (:func:`plan_cases`), the first :data:`SHOWN` in
    a table, the rest under a <details>; ``drawn`` as :func:`plan_rows` takes it."""
    if cases.empty:
        return f"<p>The search's plan <code>{H.esc(path)}</code> holds no fault.</p>"
    rows = plan_rows(cases, plan, dt, drawn)
    n_conf = int(((cases["rounds"] > 0) | (cases["validated_critical"] > 0)).sum())
    n_sim = int(((cases["rounds"] > 0) | (cases["validated"] > 0)).sum())
    out = (
        f"<p>The plan <code>{H.esc(path)}</code> ({len(plan.faults):,} faults the search "
        f"predicts critical or its rounds confirmed) falls into <b>{len(cases)} cases</b> (same "
        "point and value, duration class and phase as below). A simulated run confirmed "
        f"<b>{n_conf}</b> of them ({n_sim} simulated); the others are predictions no run has "
        "checked. Most likely first: the case's most likely fault (highest predicted "
        "P(hazard), then the smallest predicted delta) with its prediction; its plan row counts "
        "the plan's faults from 1.</p>" + f"<div class='nowrap'>{H.table(rows[:SHOWN], COLS)}</div>"
    )
    if len(rows) > SHOWN:
        out += (
            f"<details><summary>the other {len(rows) - SHOWN} cases of the plan</summary>"
            + f"<div class='nowrap'>{H.table(rows[SHOWN:], COLS)}</div></details>"
        )
    return out
