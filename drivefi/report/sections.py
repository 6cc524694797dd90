"""Report sections that read campaigns only: heat map, calibration, per-campaign details."""

from __future__ import annotations

import numpy as np
import pandas as pd

from drivefi.report import page as H
from drivefi.report import plots
from drivefi.report.data import CampaignData, stack_short


def heatmap_section(camps: list[CampaignData]) -> str:
    """Critical faults over injection point x start time, per scenario, seed, simulator and stack
    under test. The golden run's margin strip is the campaigns' own golden run
    (:attr:`CampaignData.golden`: stored with the campaign, or re-run for DriveFI's own stack);
    a stack is never stood in for by another's golden run."""
    out = []
    groups: dict[tuple, list[CampaignData]] = {}
    for c in camps:
        if len(c.ok):
            key = (c.info["scenario"], c.info["seed"], c.info["sim"], c.stack)
            groups.setdefault(key, []).append(c)
    for (scen, seed, sim, stack), cs in groups.items():
        sc = cs[0].scenario
        if sc is None:
            continue
        points = cs[0].points
        extra = sorted({p for c in cs for p in c.ok["point"].unique()} - set(points) - {"*"})
        src = next((c for c in cs if c.golden is not None), None)
        golden = None if src is None else src.golden
        panels = [(f"{c.title}: critical faults by injection point and start time", c.ok)
                  for c in cs]  # fmt: skip
        fig = plots.heatmap(panels, points + extra, sc.duration, golden, sc.dt)
        who = f", {stack_short(stack)}"
        out.append(
            f"<h3>{H.esc(scen)} ({H.esc(sim)}, seed {seed}{H.esc(who)})</h3>"
            + (f"<p class='muted'>Golden margin strip: {H.esc(src.golden_source)}.</p>"
               if src is not None else "<p class='note'>No golden margin strip: campaign(s) "
               f"{', '.join(str(c.id) for c in cs)} kept no golden run, and the report does not "
               "run this stack.</p>")
            + H.img(plots.png(fig), f"heat map of critical faults, {scen}")
        )  # fmt: skip
    if not out:
        return "<p>No outcomes to map.</p>"
    return (
        "<p>Red cells: critical faults injected at that point with a start time in that bin "
        "(darker: more). Grey dots: faults injected there, none critical. Empty: nothing "
        "injected. The strip on top is the golden run's margin: the stack is most exposed "
        "where it is smallest.</p>" + "".join(out)
    )


def calibration_section(camps: list[CampaignData]) -> str:
    """Each search campaign's predictions (from its plan file) against the outcomes."""
    out = []
    for c in camps:
        if not c.has_predictions or not len(c.ok):
            continue
        ok = c.ok[c.ok["p_hazard"].notna()]
        bins = np.array([0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0 + 1e-9])
        idx = np.clip(np.digitize(ok["p_hazard"], bins) - 1, 0, len(bins) - 2)
        hz = ok["outcome"].isin(["hazard", "accident"])
        rows = []
        for i in range(len(bins) - 1):
            m = idx == i
            if m.any():
                rows.append({
                    "bin": f"{bins[i]:.2f}–{min(bins[i + 1], 1.0):.2f}", "n": int(m.sum()),
                    "pred": f"{ok['p_hazard'][m].mean():.3f}",
                    "obs": f"{hz[m].mean():.3f}",
                    "crit": int(ok["critical"][m].sum()),
                })  # fmt: skip
        pdl = ok["predicted_delta"]
        worst = ok[["min_delta_lon", "min_delta_lat"]].min(axis=1)
        agree = ((pdl <= 0) == hz).mean()
        cols = [("bin", "predicted P(hazard)"), ("n", "faults"), ("pred", "mean predicted"),
                ("obs", "observed hazard rate"), ("crit", "critical")]  # fmt: skip
        out.append(
            f"<h3>{H.role(c.label, c.title)}</h3>"
            f"<p>Predictions from <code>{H.esc(c.plan_file)}</code>. The sign of the predicted "
            f"delta agrees with the observed outcome for {agree:.1%} of the {len(ok)} faults; "
            f"median |predicted − observed min delta| = "
            f"{np.nanmedian(np.abs(pdl - worst)):.2f} m.</p>"
            + H.table(rows, cols)
            + H.img(plots.png(plots.calibration(c.ok, bins)), "calibration plot")
        )
    if not out:
        return (
            "<p>No campaign of this database ran a search plan with predictions (give the "
            "plan file with <code>--plan</code> to compare).</p>"
        )
    return (
        "<p>Only faults the search predicted critical (P(hazard) ≥ its threshold) are injected, "
        "so the bins start there; a well-calibrated search has observed rates close to the "
        "predicted ones.</p>" + "".join(out)
    )


def details_section(camps: list[CampaignData], db) -> str:
    """Every campaign: summary row, critical faults by point and model, margins, worst faults."""
    from drivefi.campaign.replay import db_command_for
    from drivefi.campaign.store import SUMMARY_COLUMNS

    out = []
    rows = [{**c.info, "role": H.role(c.label, c.label or "–")} for c in camps]
    cols = [("id", "id"), ("role", "role")] + [(k, k) for k in SUMMARY_COLUMNS if k != "id"]
    out.append(H.table(rows, cols, raw={"role"}))
    for c in camps:
        out.append(f"<h3>{H.role(c.label, c.title)} {H.esc(c.info['scenario'])}</h3>")
        if not len(c.ok):
            out.append("<p>No outcomes yet.</p>")
            continue
        piv = c.ok.pivot_table(index="point", columns="model", values="critical",
                               aggfunc="sum", fill_value=0)  # fmt: skip
        out.append("<p>Critical faults by point and fault model:</p>" + piv.to_html())
        out.append(H.img(plots.png(plots.margins(c.outcomes)), "margins after each fault"))
        worst = c.ok[c.ok["critical"] == 1].copy()
        worst["w"] = worst[["min_delta_lon", "min_delta_lat"]].min(axis=1)
        worst = worst.sort_values("w").head(15)
        wrows = [{
            "fault": int(r["idx"]), "point": r["point"], "model": r["model"],
            "value": "–" if pd.isna(r["value"]) else f"{r['value']:g}",
            "start": r["t_start"], "length": r["t_end"] - r["t_start"],
            "outcome": H.badge(r["outcome"]), "tth": r["time_to_hazard"],
            "lon": r["min_delta_lon"], "lat": r["min_delta_lat"],
            "drawn": c.drawn(r),
            "replay": H.code(db_command_for(db, c.id, int(r["idx"])))
            if c.has_replay_commands else "",
        } for _, r in worst.iterrows()]  # fmt: skip
        drew = [("drawn", "drawn (m-random)")] if any(r["drawn"] for r in wrows) else []
        if wrows:
            out.append(
                "<p>Most severe critical faults:</p>"
                + H.table(
                    wrows,
                    [
                        ("fault", "fault #"),
                        ("point", "point"),
                        ("model", "model"),
                        ("value", "value"),
                        *drew,
                        ("start", "start [s]"),
                        ("length", "length [s]"),
                        ("outcome", "outcome"),
                        ("tth", "time to hazard [s]"),
                        ("lon", "min delta_lon [m]"),
                        ("lat", "min delta_lat [m]"),
                        ("replay", "replay"),
                    ],
                    raw={"outcome", "replay"},
                )
            )
        out.append(random_drawn(c))
    return "".join(out)


RANDOM_SHOWN = 20  # m-random faults listed with what they drew, per campaign


def random_drawn(c: CampaignData) -> str:
    """What the campaign's m-random faults drew (their plan rows say ``*``): the first
    :data:`RANDOM_SHOWN`, critical ones first; empty for a campaign without any."""
    rnd = c.ok[c.ok["model"] == "m-random"]
    if not len(rnd):
        return ""
    rnd = rnd.sort_values(["critical", "idx"], ascending=[False, True]).head(RANDOM_SHOWN)
    rows = [{"fault": int(r["idx"]), "seed": int(r["seed"]), "start": r["t_start"],
             "length": r["t_end"] - r["t_start"], "outcome": H.badge(r["outcome"]),
             "drawn": c.drawn(r)} for _, r in rnd.iterrows()]  # fmt: skip
    n = int((c.ok["model"] == "m-random").sum())
    cols = [("fault", "fault #"), ("seed", "seed"), ("start", "start [s]"),
            ("length", "length [s]"), ("outcome", "outcome"),
            ("drawn", "drawn: point value (step k), first steps")]  # fmt: skip
    return (
        f"<details><summary>what its m-random faults drew ({len(rows)} of {n}, critical "
        "first)</summary><p class='muted'>An m-random fault draws a point and a value at each "
        "step from its seed; these are the draws, from the point ranges stored with the "
        "campaign.</p>" + H.table(rows, cols, raw={"outcome"}) + "</details>"
    )


def failed_section(camps: list[CampaignData], db) -> str:
    """Runs that failed (the stack under the fault, or the simulator), grouped by reason with
    their count and first faults; nothing when every run completed."""
    from drivefi.campaign.store import failed_what

    rows = []
    for c in camps:
        err = c.failed.assign(what=failed_what(c.failed))
        for (what, reason), g in err.groupby(
            [err["what"], err["error"].fillna("(no reason stored)")], sort=False
        ):
            first = ", ".join(f"#{int(i)}" for i in g["idx"].head(5))
            more = f" and {len(g) - 5} more" if len(g) > 5 else ""
            rows.append({"campaign": c.title, "what": what, "runs": len(g),
                         "faults": first + more, "reason": str(reason)})  # fmt: skip
    if not rows:
        return ""
    cols = [("campaign", "campaign"), ("what", "failed"), ("runs", "failed runs"),
            ("faults", "faults"), ("reason", "reason (last attempt)")]  # fmt: skip
    return (
        "<h2 id='failed'>Failed runs</h2><p>These runs did not reach the end of the scenario, so "
        "their faults are neither masked nor critical. <b>stack</b>: the stack under test failed "
        "under the fault (it raised, timed out or commanded a non-finite control): a finding in "
        "its own right. <b>simulator</b>: the simulator failed on every attempt. Every one: "
        + H.code(f"drivefi campaign errors --db {db}")
        + "</p>"
        + H.table(sorted(rows, key=lambda r: -r["runs"]), cols)
    )
