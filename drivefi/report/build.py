"""The report of a results database: what to act on first, then the evidence.

Sections: summary; search vs random fault injection; distinct critical cases with the command that
replays each; timelines of the most severe cases (faulty run against the golden run); heat map of
critical faults over injection point x start time; the search's predictions against outcomes;
per-campaign details. Times are in seconds (step x dt).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from drivefi import __version__
from drivefi.campaign.replay import (
    command_for,
    db_command_for,
    fault_from_row,
    kept_trace,
    replay_many,
)
from drivefi.errors import InputError
from drivefi.faults.plan import Plan
from drivefi.report import page as H
from drivefi.report import plots, sections
from drivefi.report.data import (
    PREDICTED,
    CampaignData,
    drawn_of,
    group_cases,
    load_campaigns,
    read_plans,
    stack_short,
    step_ranges,
)
from drivefi.report.evidence import evidence_section
from drivefi.report.plan_cases import plan_cases, plan_frame, plan_section
from drivefi.search.modes import PHASE_SECONDS, SHORT_SECONDS, count_cases, critical_faults
from drivefi.util.atomic import check_output, write_text

if TYPE_CHECKING:
    from drivefi.world.scenario import Scenario

TOP_CASES = 6  # cases shown with timelines


def _replay_cmd(c: CampaignData, r, out: str) -> str:
    seed = c.info["seed"]
    default = c.scenario.seed if c.scenario is not None else None
    cmd = command_for(c.info["scenario"], fault_from_row(r), None if seed == default else seed, out)
    return (
        cmd
        if c.replay_agent is None
        else cmd.replace(" --point", f" --agent {c.replay_agent} --point", 1).replace(
            " --model m-random", f" --agent {c.replay_agent} --model m-random", 1
        )
    )


def _db_cmd(db: Path, c: CampaignData, idx: int) -> str:
    """HTML of the command that replays a stored fault (campaigns DriveFI re-runs exactly)."""
    if not c.has_replay_commands:
        return ""
    return H.code(db_command_for(db, c.id, idx))


def _drew(c: CampaignData, row) -> str:
    """HTML of what an m-random fault drew, under its ``* = seed N``; empty for other models."""
    got = c.drawn(row)
    return f'<br><span class="muted">drew: {H.esc(got)}</span>' if got else ""


def _finite(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _speed(x) -> str:
    """A speed-up as the CLI prints it (one decimal), or ∞ when random FI found none."""
    return "∞" if x is None else f"{x:.1f}x"


def _secs(x) -> str:
    return "–" if x is None or pd.isna(x) else f"{x:.2f} s"


def _fmt_range(a: float, b: float, unit: str = "s") -> str:
    return f"{a:.2f} {unit}" if abs(a - b) < 1e-9 else f"{a:.2f}–{b:.2f} {unit}"


def ranges_text(ranges: list[list[int]], dt: float) -> str:
    """Step ranges as the page says them: ``steps 120-180 (6.00-9.00 s), 200 (10.00 s)``."""
    parts = [
        f"{a} ({a * dt:.2f} s)" if a == b else f"{a}-{b} ({a * dt:.2f}-{b * dt:.2f} s)"
        for a, b in ranges
    ]
    return ("step " if len(ranges) == 1 and ranges[0][0] == ranges[0][1] else "steps ") + ", ".join(
        parts
    )


def _first(golden: pd.DataFrame, flag: str) -> int | None:
    hits = np.flatnonzero(golden[flag].to_numpy(bool))
    return int(hits[0]) if len(hits) else None


def _crashes(u: dict) -> list[str]:
    dt = u["dt"]
    return [f"{name} at step {u[key]} ({u[key] * dt:.2f} s)"
            for name, key in (("collision", "collision_step"), ("road departure", "departure_step"))
            if u[key] is not None]  # fmt: skip


def unsafe_golden_text(u: dict) -> str:
    """One line for stderr: an unsafe golden run (an entry of the summary's ``unsafe_golden``)."""
    camps = ", ".join(str(i) for i in u["campaigns"])
    return (
        f"warning: the golden run of {u['scenario']} (seed {u['seed']}, {u['sim']}, "
        f"{stack_short(u['stack'])}; campaign {camps}) is unsafe with no fault: hazard at "
        + "; ".join([ranges_text(u["hazard_steps"], u["dt"]), *_crashes(u)])
    )


def _unsafe_html(u: dict) -> str:
    """The announcement of an unsafe golden run: where it is hazardous with no fault at all."""
    crash = _crashes(u)
    camps = ", ".join(str(i) for i in u["campaigns"])
    return (
        '<div class="alarm"><b>Unsafe golden run: with no fault injected, the stack under test '
        f"is hazardous in {H.esc(u['scenario'])} at {ranges_text(u['hazard_steps'], u['dt'])}"
        + (f"; {', then '.join(crash)}" if crash else "")
        + f".</b><br>Seed {u['seed']}, {H.esc(u['sim'])} simulator, {H.esc(stack_short(u['stack']))}"
        f"; campaign{'s' if len(u['campaigns']) > 1 else ''} {camps}. A fault that starts there "
        "is never counted critical (the golden run is already unsafe): fix the stack's "
        "fault-free drive first.</div>"
    )


def _golden_said(c: CampaignData) -> str:
    """Where the timeline's golden run (grey) comes from, or that it has none."""
    if c.golden_source is None:
        return "<b>No golden run</b> (see the note at the top)."
    return f"Golden run (grey): {H.esc(c.golden_source)}."


def _stack_line(c: CampaignData) -> str:
    """The stack under test as the page's header names it: an agent by file, class and SHA-256
    (and whether its file is still that one; read, never run), else DriveFI's own stack."""
    head, sep, digest = c.stack.rpartition(" sha256=")
    if not sep:
        return f"<p class='meta'>stack under test: {H.esc(c.stack)} (DriveFI's own)</p>"
    path, _, cls = head.rpartition(":")
    from drivefi.stacks.agent.loader import file_hash

    try:
        now = file_hash(Path(path))
        state = (
            "the file is unchanged since the campaign" if now == digest
            else f"the file has changed since the campaign (now SHA-256 {now[:12]}…)"
        )  # fmt: skip
    except OSError:
        state = "the file is no longer there"
    conf = (c.settings or {}).get("agent_config")
    return (
        f"<p class='meta stack'>stack under test: {H.esc(c.stack)}<br>agent class "
        f"<b>{H.esc(cls)}</b> &middot; file <code>{H.esc(path)}</code> &middot; SHA-256 "
        f"<code>{H.esc(digest)}</code>"
        + (f" &middot; config <code>{H.esc(conf)}</code>" if conf else "")
        + f" &middot; {state} (the report reads it, never runs it)</p>"
    )


def _n_cases(n: int) -> str:
    return f"{n} case" if n == 1 else f"{n} cases"


def _kpi(cls: str, big: str, text: str) -> str:
    return f'<div class="kpi {cls}"><b>{big}</b><span>{text}</span></div>'


class Report:
    """Builds the page from the database's campaigns.

    ``plan``: the search's plan (path, plan) shown as cases; ``evidence``: what the search does
    not know (the pipeline's ``unreached_points`` and ``groups``)."""

    def __init__(
        self,
        db: Path,
        camps: list[CampaignData],
        top: int = TOP_CASES,
        search_cost: dict | None = None,
        plan: tuple[Path, Plan] | None = None,
        evidence: dict | None = None,
    ):
        self.db, self.camps, self.top = db, camps, top
        self.search_cost = search_cost
        self.plan, self.evidence = plan, evidence
        self.by_id = {c.id: c for c in camps}
        self.cases = group_cases(camps)
        self.notes: list[str] = []  # the report's own; each campaign's are in its notes
        self.timelines: dict[int, str] = {}  # case number -> HTML of its timeline

    # --- comparison ----------------------------------------------------------------------------

    def roles(self) -> tuple[CampaignData | None, CampaignData | None]:
        """The search and random campaigns to compare (same scenario, seed and simulator)."""
        search = [c for c in self.camps if c.label == "search"]
        random = [c for c in self.camps if c.label == "random"]
        for s in reversed(search):
            for r in reversed(random):
                key = ("scenario", "seed", "sim")
                if all(s.info[k] == r.info[k] for k in key):
                    return s, r
        return (search[-1] if search else None), (random[-1] if random else None)

    def comparison(self) -> tuple[str, dict]:
        s, r = self.roles()
        if s is None and r is None:
            return (
                "<p>No campaign is labelled as the search or the random baseline (campaigns run "
                "by <code>drivefi pipeline</code> are; others can be labelled with "
                "<code>drivefi campaign run --label</code>).</p>",
                {},
            )
        rows, figs = [], {}
        for c in (s, r):
            if c is None:
                continue
            ok = c.ok
            ncases = count_cases(critical_faults(c.outcomes), dt=c.dt)  # this campaign's
            tth = ok.loc[ok["critical"] == 1, "time_to_hazard"]
            rows.append({
                "role": H.role(c.label, c.title), "injected": len(ok),
                "critical": int(ok["critical"].sum()),
                "accidents": int((ok["critical"].astype(bool) & (ok["outcome"] == "accident")).sum()),
                "rate": f"{c.rate():.3f}" if c.rate() is not None else "–",
                "cases": ncases,
                "tth": f"{tth.median():.2f} s" if len(tth) else "–",
                "errors": len(c.failed),
            })  # fmt: skip
            figs[c.label] = c
        speed = None
        same = (
            s is not None
            and r is not None
            and all(s.info[k] == r.info[k] for k in ("scenario", "seed", "sim"))
        )  # a speed-up compares like with like only
        if same and s.rate() is not None and r.rate() is not None:
            speed = s.rate() / r.rate() if r.rate() > 0 else np.inf
        cost = self.search_cost or {}
        if same and "speedup_validation" in cost:  # the pipeline's own figure (same data)
            sv = cost["speedup_validation"]
            speed = np.inf if sv is None and cost.get("hazards_per_injection_search") else sv
        if cost.get("simulated_runs"):  # the search in all, as the pipeline counted it
            rows.append({
                "role": "Bayesian search in all (training, rounds, validation)",
                "injected": cost["simulated_runs"], "critical": cost["found_critical"],
                "accidents": "–", "rate": f"{cost['found_critical'] / cost['simulated_runs']:.3f}",
                "cases": cost.get("search_cases", "–"), "tth": "–", "errors": "–",
            })  # fmt: skip
        cols = [("role", "campaign"), ("injected", "faults injected"),
                ("critical", "critical faults"), ("accidents", "of which accidents"),
                ("rate", "critical per injection"), ("cases", "distinct cases found"),
                ("tth", "median time to hazard"), ("errors", "failed runs")]  # fmt: skip
        out = H.table(rows, cols, raw={"role"})
        if speed is not None:
            text = (
                f"{speed:.1f}x" if np.isfinite(speed)
                else f"∞ (random injection found no critical fault in {len(r.ok)})"
            )  # fmt: skip
            out += (
                f"<p><b>Speed-up of the search in validation: {text}</b> more critical faults per "
                f"injection than random fault injection drawn from the same candidate space at "
                f"the same budget.</p>"
            )
        out += self.speedup_in_all()
        if s is not None and r is not None and not self.cases.empty:
            found = self.cases["by_label"]
            only = self.cases["case"][found.map(lambda d: r.label in d and s.label not in d)]
            if len(only):
                out += (
                    f"<p>Cases only the random baseline found (none of the search's injected "
                    f"faults fell in them): {len(only)} of {len(self.cases)}: "
                    + ", ".join(f"case {int(n)}" for n in only)
                    + "."
                    + self.in_search_plan(s, r, only)
                    + "</p>"
                )
        panels = [(c.title, c.label, c.ok) for c in (s, r) if c is not None]
        if any((p[2]["critical"] == 1).any() for p in panels):
            out += "<h3>Time from fault start to first hazard</h3>" + H.img(
                plots.png(plots.time_to_hazard(panels)), "time to hazard histogram"
            )
        return out, {"search": s, "random": r, "speedup": speed}

    def speedup_in_all(self) -> str:
        """The pipeline's headline: every run the search simulated against random FI, in faults
        and in distinct cases (the figures ``drivefi pipeline`` prints, passed as they are)."""
        cost = self.search_cost or {}
        if not cost.get("simulated_runs"):
            return ""
        sp, csp = _speed(cost.get("speedup")), _speed(cost.get("case_speedup"))
        return (
            f"<p><b>Speed-up of the search in all: {sp} in critical faults, {csp} in distinct "
            f"cases</b> per simulated run: {cost['found_critical']} critical faults in "
            f"{cost.get('search_cases', '–')} distinct cases from {cost['simulated_runs']} "
            f"simulated runs (training, active-refit rounds, validation: "
            f"{cost['found_critical'] / cost['simulated_runs']:.3f} faults and "
            f"{cost.get('cases_per_run', 0):.3f} cases per run) against random FI's "
            f"{cost.get('hazards_per_injection_random', 0):.4f} critical faults and "
            f"{cost.get('random_cases_per_injection', 0):.4f} cases per injection "
            f"({cost.get('random_cases', '–')} cases in {cost.get('random_injected', '–')} "
            f"injections).</p>"
        )

    # --- cases ---------------------------------------------------------------------------------

    def case_rows(self) -> list[dict]:
        rows = []
        for _, k in self.cases.iterrows():
            c = self.by_id[k["rep_cid"]]
            found = ", ".join(f"{lab} {n}" for lab, n in sorted(k["by_label"].items()))
            n = int(k["case"])
            name = f"case{n}"
            link = f'<a href="#{name}">{n}</a>' if n in self.timelines else str(n)
            rows.append({
                "case": link, "outcome": H.badge(k["outcome"]),
                "what": H.esc(f"{k['point']} = {k['kind']}") + _drew(c, k["rep"]),
                "length": _fmt_range(k["dur_min"], k["dur_max"]),
                "starts": _fmt_range(k["t_first"], k["t_last"]),
                "count": f"{k['count']} ({found})",
                "tth": k["tth_min"], "lon": k["min_delta_lon"], "lat": k["min_delta_lat"],
                "_after": '<span class="muted">replay:</span> ' + H.code(_replay_cmd(c, k["rep"], f"{name}.parquet"))
                if c.has_replay_commands else "",
            })  # fmt: skip
        return rows

    def no_critical(self) -> str:
        """What to say when no critical fault was found: masked, or runs that failed."""
        ran = sum(len(c.ok) for c in self.camps)
        failed = sum(len(c.failed) for c in self.camps)
        if not failed:
            return "<p>No critical fault found: every injected fault was masked.</p>"
        link = "<a href='#failed'>failed runs</a>"
        if not ran:
            return f"<p><b>No fault ran to the end: all {failed} runs failed</b> (see {link}).</p>"
        return (
            f"<p>No critical fault among the {ran} runs that ran to the end; <b>{failed} runs "
            f"failed</b> and say nothing about their faults (see {link}).</p>"
        )

    def cases_section(self) -> str:
        if self.cases.empty:
            return self.no_critical()
        n_faults = int(self.cases["count"].sum())
        cols = [("case", "case"), ("outcome", "outcome"), ("what", "fault (point = value)"),
                ("length", "fault length"), ("starts", "fault starts"),
                ("count", "faults (by campaign)"), ("tth", "earliest time to hazard [s]"),
                ("lon", "worst delta_lon [m]"), ("lat", "worst delta_lat [m]")]  # fmt: skip
        return (
            f"<p>{n_faults} critical faults fall into <b>{len(self.cases)} distinct cases</b>: "
            "same injection point and corrupted value (or bit), same duration class (one step, "
            f"up to {SHORT_SECONDS:g} s, longer) and same {PHASE_SECONDS:g}-second phase of the "
            "drive; a case's outcome is its most severe fault's. Most severe first (accidents, "
            "then the smallest margin). Each command "
            "re-runs the case's most severe fault on the embedded simulator and writes its trace "
            "and a plot against the golden run.</p>"
            + H.table(self.case_rows(), cols, raw={"case", "outcome", "what"})
        )

    # --- timelines -----------------------------------------------------------------------------

    def build_timelines(self) -> None:
        """Replay (or read the kept trace of) the most severe fault of each top case."""
        if self.cases.empty:
            return
        top = self.cases.head(self.top)
        by_run: dict[tuple, list] = {}
        for _, k in top.iterrows():
            c = self.by_id[k["rep_cid"]]
            by_run.setdefault((c.id,), []).append(k)
        for (cid,), ks in by_run.items():
            c = self.by_id[cid]
            if c.scenario is None:
                continue
            # only a stack DriveFI can re-run exactly is replayed; others from their kept traces
            if c.replayable:
                faults = [fault_from_row(k["rep"]) for k in ks]
                reps = replay_many(c.scenario, faults, c.info["seed"], c.testbed)
                for k, rp in zip(ks, reps, strict=True):
                    golden = c.golden if c.golden is not None else rp.golden
                    self._timeline(k, c, rp.trace.frame, golden, rp.outcome)
                continue
            for k in ks:
                path = kept_trace(self.db, cid, int(k["rep_idx"]))
                if path is None:
                    self.notes.append(
                        f"case {k['case']}: campaign {cid} ran on {c.info['sim']} without kept "
                        "traces (--keep-traces hazards), so its timeline cannot be shown "
                        f"(stack {c.stack})"
                    )
                    continue
                from drivefi.run.trace import read_trace

                frame = read_trace(path).frame
                self._timeline(k, c, frame, c.golden, k["rep"].to_dict(), kept=path)

    def _timeline(self, k, c: CampaignData, faulty, golden, outcome, kept=None) -> None:
        r = k["rep"]
        f = fault_from_row(r)
        dt = c.dt
        n = int(k["case"])
        tth = outcome.get("first_hazard_step")
        stored = r
        same = all(
            np.isclose(float(outcome[m]), float(stored[m]), rtol=0, atol=1e-9)
            for m in ("min_delta_lon", "min_delta_lat")
        )
        title = (
            f"Case {n}: {f.point} = {k['kind']} for {f.duration * dt:.2f} s from "
            f"{f.start * dt:.2f} s → {k['outcome']}"
        )
        acc = plots.accident_of(outcome)
        fig = plots.timeline(faulty, golden, f.as_row(), dt, "", tth, acc)
        acc_text = "" if acc is None else f" {acc[0]} at {acc[1] * dt:.2f} s;"
        src = (
            f"kept trace {H.esc(kept)}" if kept is not None
            else "replayed on the embedded simulator"
            + ("" if same else " (<b>differs from the stored outcome</b>)")
        )  # fmt: skip
        members = k["members"].copy()
        members["start [s]"] = members["start"] * dt
        members["length [s]"] = members["duration"] * dt
        mrows = [{
            "campaign": f"{self.by_id[int(m['cid'])].label or ''} {int(m['cid'])}",
            "fault": int(m["idx"]), "model": m["model"], "start": m["start [s]"],
            "length": m["length [s]"], "outcome": H.badge(m["outcome"]),
            "tth": m["time_to_hazard"], "lon": m["min_delta_lon"], "lat": m["min_delta_lat"],
            "replay": _db_cmd(self.db, self.by_id[int(m["cid"])], int(m["idx"])),
        } for _, m in members.sort_values("start").iterrows()]  # fmt: skip
        mcols = [("campaign", "campaign"), ("fault", "fault #"), ("model", "model"),
                 ("start", "start [s]"), ("length", "length [s]"), ("outcome", "outcome"),
                 ("tth", "time to hazard [s]"), ("lon", "min delta_lon [m]"),
                 ("lat", "min delta_lat [m]"), ("replay", "replay")]  # fmt: skip
        tth_s = r["time_to_hazard"]
        self.timelines[n] = (
            f'<div class="case" id="case{n}"><h3>{H.esc(title)}</h3>'
            f"<p>{k['count']} critical fault(s) starting {_fmt_range(k['t_first'], k['t_last'])}; "
            f"shown: fault #{int(r['idx'])} of campaign {int(r['cid'])} ({src}): first hazard "
            f"{_secs(tth_s)} after the fault started;{acc_text} worst "
            f"delta_lon {r['min_delta_lon']:.2f} m, delta_lat {r['min_delta_lat']:.2f} m. "
            f"{_golden_said(c)}</p>"
            + H.img(plots.png(fig), f"timeline of case {n}")
            + (H.cmd(_replay_cmd(c, r, f"case{n}.parquet")) if kept is None else "")
            + f"<details><summary>all {len(mrows)} faults of this case</summary>"
            + H.table(mrows, mcols, raw={"outcome", "replay"})
            + "</details></div>"
        )

    def in_search_plan(self, s: CampaignData, r: CampaignData, cases) -> str:
        """How many of the random-only ``cases`` the search's plan predicted (beyond what it
        validated): a fault of the case is in the plan file its predictions came from."""
        plan = s.plan
        if plan is None:
            return ""
        keys = {(f.point, round(float(f.value), 9), f.start, f.duration)
                for f in plan.faults if f.value is not None}  # fmt: skip
        faults = r.outcomes.set_index("idx")
        hit = 0
        for n in cases:
            k = self.cases.loc[self.cases["case"] == n].iloc[0]
            rows = faults.loc[k["members"]["idx"].to_numpy()]
            hit += any(
                (k["point"], round(float(v), 9), int(st), int(d)) in keys
                for v, st, d in zip(rows["value"], rows["start"], rows["duration"], strict=True)
                if pd.notna(v)
            )
        return (
            f" The search's plan ({len(plan.faults)} faults predicted critical or confirmed in its "
            f"rounds; it validated the first {len(s.ok)}) holds a fault of {hit} of them."
        )

    # --- the golden run ------------------------------------------------------------------------

    def unsafe_goldens(self) -> list[dict]:
        """Golden runs (no fault injected) that are hazardous somewhere, one per scenario, seed,
        simulator and stack, with the campaigns that ran on them and their hazard step ranges."""
        out: dict[tuple, dict] = {}
        for c in self.camps:
            steps = c.unsafe_steps()
            if not len(steps):
                continue
            key = (c.info["scenario"], c.info["seed"], c.info["sim"], c.stack)
            if key not in out:
                g = c.golden
                out[key] = {
                    "scenario": key[0], "seed": key[1], "sim": key[2], "stack": key[3],
                    "campaigns": [], "hazard_steps": step_ranges(steps),
                    "collision_step": _first(g, "collision"),
                    "departure_step": _first(g, "departure"), "dt": c.dt,
                }  # fmt: skip
            out[key]["campaigns"].append(c.id)
        return list(out.values())

    # --- the search's plan and what the search does not know -----------------------------------

    @cached_property
    def plan_dt(self) -> float | None:
        """The step length of the plan's scenario (a campaign's, else the bundled scenario's)."""
        name = self.plan[1].scenario
        for c in self.camps:
            if c.info["scenario"] == name and c.dt is not None:
                return c.dt
        from drivefi.world.scenario import load_scenario

        try:
            return load_scenario(name).dt
        except InputError:
            self.notes.append(
                f"scenario '{name}' of the search's plan not found: its cases are grouped with "
                "steps taken as 0.05 s and shown in steps"
            )
            return None

    @cached_property
    def plan_campaign(self) -> CampaignData | None:
        """The campaign that validated the plan: it injected the plan's top faults (plan hash)."""
        path = self.plan[0]
        runs = [c for c in self.camps if c.plan_file is not None and c.plan_file == path]
        return runs[-1] if runs else None

    @cached_property
    def plan_cases(self) -> pd.DataFrame | None:
        """The plan as cases (:func:`drivefi.report.plan_cases.plan_cases`), or None."""
        if self.plan is None:
            return None
        c = self.plan_campaign
        return plan_cases(self.plan[1], self.plan_dt, None if c is None else c.ok)

    def plan_html(self) -> str:
        c = self.plan_campaign
        specs = None if c is None else c.point_specs
        return plan_section(*self.plan, self.plan_dt, self.plan_cases,
                            lambda r: drawn_of(r, specs))  # fmt: skip

    def rounds_cases(self) -> int | None:
        """Cases of the faults the active-refit rounds confirmed (the plan's rows with
        confirmed_in_rounds = 1), or None without a plan that says."""
        if self.plan is None or "confirmed_in_rounds" not in self.plan[1].extra:
            return None
        f = plan_frame(self.plan[1])
        return count_cases(f[f["in_rounds"]], dt=self.plan_dt)

    # --- page ----------------------------------------------------------------------------------

    def case_kpis(self, comp: dict) -> list[str]:
        """The summary's lead: distinct cases found by the search and by random FI, per simulated
        run, and the speed-up in cases; the pipeline's own figures when it gave them, else the
        labelled campaigns' (per injection); then the plan's cases and the unresolved groups."""
        cost = self.search_cost or {}
        kpis = []
        if "search_cases" in cost and cost.get("simulated_runs"):
            r = self.rounds_cases()
            parts = [f"{cost['validation_cases']} in validation"]
            if r is not None:
                parts.insert(0, f"{r} in the active-refit rounds")
            kpis += [
                _kpi("search", _n_cases(cost["search_cases"]),
                     f"found by the Bayesian search in {cost['simulated_runs']} simulated runs "
                     f"(training, rounds, validation): {cost['cases_per_run']:.3f} per run; "
                     f"{', '.join(parts)} (a case found by both counts once)"),
                _kpi("random", _n_cases(cost["random_cases"]),
                     f"found by random FI in {cost['random_injected']} runs: "
                     f"{cost['random_cases_per_injection']:.3f} per run"),
                _kpi("speed", f"{_speed(cost.get('case_speedup'))}",
                     "speed-up in distinct cases per simulated run, search / random FI"),
            ]  # fmt: skip
        else:
            s, r = comp.get("search"), comp.get("random")
            per = {}
            for c in (s, r):
                if c is not None and len(c.ok):
                    n = count_cases(critical_faults(c.outcomes), dt=c.dt)
                    per[c.label] = n / len(c.ok)
                    short = {"search": "the Bayesian search", "random": "random FI"}[c.label]
                    kpis.append(_kpi(c.label, _n_cases(n),
                                     f"found by {short} (campaign {c.id}) in {len(c.ok)} "
                                     f"injections: {per[c.label]:.3f} per injection"))  # fmt: skip
            if comp.get("speedup") is not None and len(per) == 2:
                sp = per["search"] / per["random"] if per["random"] > 0 else None
                kpis.append(_kpi("speed", _speed(sp), "speed-up in distinct cases per injection "
                                 "in validation, search / random FI"))  # fmt: skip
        pc = self.plan_cases
        if pc is not None and len(pc):
            conf = int(((pc["rounds"] > 0) | (pc["validated_critical"] > 0)).sum())
            kpis.append(_kpi("", _n_cases(len(pc)),
                             f"in <a href='#plan'>the search's plan</a> ({len(self.plan[1].faults)}"
                             f" faults); a simulated run confirmed {conf}"))  # fmt: skip
        if self.evidence is not None:
            groups = self.evidence.get("groups") or []
            n_bad = sum(g["unresolved"] for g in groups)
            n_un = len(self.evidence.get("unreached_points") or {})
            kpis.append(_kpi("", f"{n_bad:,} / {len(groups):,}",
                             "groups (point × duration × phase) <a href='#evidence'>the search "
                             f"could not resolve</a>; {n_un} unreached point(s)"))  # fmt: skip
        return kpis

    def fault_kpis(self, comp: dict) -> list[str]:
        """The summary's figures in critical faults (next to the cases)."""
        s, r, speed = comp.get("search"), comp.get("random"), comp.get("speedup")
        kpis = []
        for c in (s, r):
            if c is not None and c.rate() is not None:
                short = {"search": "Bayesian search", "random": "random FI"}.get(c.label, c.label)
                kpis.append(_kpi(c.label, f"{int(c.ok['critical'].sum())} / {len(c.ok)}",
                                 f"critical / injected: {H.esc(short)} (campaign {c.id})"))  # fmt: skip
        if speed is not None:
            txt = f"{speed:.1f}x" if np.isfinite(speed) else "∞"
            kpis.append(_kpi("speed", txt, "critical faults per injection in validation, "
                             "search / random"))  # fmt: skip
        cost = self.search_cost
        if cost and cost.get("simulated_runs"):
            per_run = cost["found_critical"] / cost["simulated_runs"]
            sp = cost.get("speedup")
            vs = f"{sp:.1f}x random" if sp is not None else "random found none"
            kpis.append(_kpi("speed", vs, f"the search in all: {cost['found_critical']} critical "
                             f"faults in {cost['simulated_runs']} simulated runs (training, "
                             f"active-refit rounds, validation), {per_run:.3f} per run"))  # fmt: skip
        ncrit = 0 if self.cases.empty else int(self.cases["count"].sum())
        kpis.append(_kpi("", str(len(self.cases)),
                         f"distinct critical cases in the database ({ncrit} faults)"))  # fmt: skip
        return kpis

    def summary(self, comp: dict, unsafe: list[dict] = ()) -> str:
        items = []
        for _, k in self.cases.head(3).iterrows():
            n = int(k["case"])
            ref = f'<a href="#case{n}">case {n}</a>' if n in self.timelines else f"case {n}"
            items.append(
                f"<li>{ref}: {H.badge(k['outcome'])} <b>{H.esc(k['point'])} = "
                f"{H.esc(k['kind'])}</b>{_drew(self.by_id[k['rep_cid']], k['rep'])} for "
                f"{_fmt_range(k['dur_min'], k['dur_max'])}, starting "
                f"{_fmt_range(k['t_first'], k['t_last'])}: first hazard after "
                f"{_secs(k['tth_min'])}, worst delta_lon {k['min_delta_lon']:.2f} m / delta_lat "
                f"{k['min_delta_lat']:.2f} m ({k['count']} faults)</li>"
            )
        if not self.cases.empty:
            by_point = self.cases.groupby("point")["count"].sum().sort_values(ascending=False)
            pts = ", ".join(f"{H.esc(p)} ({n})" for p, n in by_point.head(3).items())
            items.append(f"<li>Injection points with the most critical faults: {pts}.</li>")
        act = "<ul>" + "".join(items) + "</ul>" if items else self.no_critical()
        cases = self.case_kpis(comp)
        return (
            '<section class="summary"><h2 style="border:0;margin-top:.2em">What to act on</h2>'
            + "".join(_unsafe_html(u) for u in unsafe)
            + (
                "<p class='kpi-head'>In distinct cases (failure modes: point, value, duration "
                "class, phase)</p>"
                f'<div class="kpis cases">{"".join(cases)}</div>'
                if cases
                else ""
            )
            + "<p class='kpi-head'>In critical faults</p>"
            + f'<div class="kpis">{"".join(self.fault_kpis(comp))}</div>'
            "<p>Most severe distinct cases (the timelines below show each against the golden "
            "run; the cases table gives the command that replays it):</p>" + act + "</section>"
        )

    def html(self) -> tuple[str, dict]:
        self.build_timelines()
        comp_html, comp = self.comparison()
        scen = sorted({c.info["scenario"] for c in self.camps})
        lead = ""
        if self.plan is not None:
            lead += "<h2 id='plan'>The search's plan as cases</h2>" + self.plan_html()
        if self.evidence is not None:
            lead += evidence_section(self.evidence.get("unreached_points") or {},
                                     self.evidence.get("groups") or [])  # fmt: skip
        nav = (
            "<nav>"
            + ("<a href='#plan'>plan as cases</a>" if self.plan is not None else "")
            + ("<a href='#evidence'>what the search does not know</a>" if self.evidence else "")
            + "<a href='#compare'>search vs random</a><a href='#cases'>cases</a>"
            "<a href='#timelines'>timelines</a><a href='#heatmap'>heat map</a>"
            "<a href='#calibration'>predicted vs observed</a><a href='#details'>details</a></nav>"
        )
        unsafe = self.unsafe_goldens()  # resolves every campaign's golden run (and its notes)
        all_notes = [n for c in self.camps for n in c.notes] + self.notes
        notes = "".join(f'<p class="note">{H.esc(n)}</p>' for n in dict.fromkeys(all_notes))
        body = (
            f"<h1>DriveFI report: {H.esc(', '.join(scen) or 'no campaigns')}</h1>"
            f"<p class='meta'>{H.esc(self.db)} &middot; DriveFI {__version__} &middot; "
            f"{len(self.camps)} campaign(s) &middot; times in seconds from the scenario start</p>"
            + "".join(dict.fromkeys(_stack_line(c) for c in self.camps))
            + nav + notes + self.summary(comp, unsafe) + lead
            + "<h2 id='compare'>Search vs random fault injection</h2>" + comp_html
            + "<h2 id='cases'>Distinct critical cases</h2>" + self.cases_section()
            + "<h2 id='timelines'>Timelines of the most severe cases</h2>"
            + (
                "<p>Each case's most severe fault (red) against the golden run (grey); the "
                "shaded band is the fault window, the dashed line the first hazard (delta ≤ 0).</p>"
                + "".join(self.timelines[n] for n in sorted(self.timelines))
                if self.timelines else "<p>No timelines (no critical case could be shown).</p>"
            )
            + "<h2 id='heatmap'>Where faults are critical: injection point × start time</h2>"
            + sections.heatmap_section(self.camps)
            + "<h2 id='calibration'>Predicted vs observed</h2>" + sections.calibration_section(self.camps)
            + "<h2 id='details'>Campaign details</h2>" + sections.details_section(self.camps, self.db)
            + sections.failed_section(self.camps, self.db)
        )  # fmt: skip
        s, r = comp.get("search"), comp.get("random")
        summary = {
            "search_campaign": None if s is None else s.id,
            "random_campaign": None if r is None else r.id,
            "speedup_validation": _finite(comp.get("speedup")),
            "cases": len(self.cases),
            "search_campaign_cases": None
            if s is None
            else count_cases(critical_faults(s.outcomes), dt=s.dt),
            "random_campaign_cases": None
            if r is None
            else count_cases(critical_faults(r.outcomes), dt=r.dt),
            "timelines": len(self.timelines),
            "plan_cases": None if self.plan_cases is None else len(self.plan_cases),
            "unsafe_golden": unsafe,
        }  # fmt: skip
        cost = self.search_cost or {}
        # per simulated run (the pipeline's headline) when the pipeline passed its figures, else
        # the only speed-up a database alone gives: per injection in validation
        summary["speedup"] = cost["speedup"] if "speedup" in cost else summary["speedup_validation"]
        for k in (
            "search_cases",
            "random_cases",
            "case_speedup",
            "found_critical",
            "simulated_runs",
        ):
            if k in cost:
                summary[k] = cost[k]
        return H.page("DriveFI report", body), summary


def build_report(
    db: str | Path,
    out: str | Path,
    plans: list[str | Path] | None = None,
    scenario_files: list[str | Path | Scenario] | None = None,
    top: int = TOP_CASES,
    search_cost: dict | None = None,
    evidence: dict | None = None,
) -> dict:
    """Write the HTML report of ``db`` to ``out``; return the summary figures it shows.

    ``search_cost``: the pipeline's comparison figures (:func:`drivefi.pipeline.figures`: its
    runs outside the database, training and active-refit rounds, count in the search's cost; its
    cases found by the search and by random FI), shown as they are.
    ``evidence``: what the search does not know, the pipeline's ``unreached_points`` and
    ``groups`` (:mod:`drivefi.search.evidence`); its section is shown only when given.

    ``plans``: plan files whose predictions (p_hazard, predicted_delta) belong to a campaign of the
    database (matched by plan hash); by default the plan CSVs next to the database. The search's
    plan (its campaign's, else the first with predictions) is shown as cases.
    ``scenario_files``: scenario YAMLs (or loaded scenarios) for campaigns whose scenario is not
    bundled, or is a changed copy of a bundled one (they win over the bundled of the same name).
    """
    db, out = Path(db), Path(out)
    check_output(out, "--out")
    if plans is None:
        plans = sorted(db.parent.glob("*.csv")) if db.is_file() else []
        plans = [p for p in plans if _looks_like_plan(p)]
    plan_objs = read_plans(plans)
    camps = load_campaigns(db, plan_objs, scenario_files)
    rep = Report(db, camps, top, search_cost, search_plan(camps, plan_objs), evidence)
    text, extra = rep.html()
    write_text(out, text, "--out")
    return {"db": str(db), "report": str(out), "campaigns": [c.info for c in camps], **extra}


def search_plan(camps: list[CampaignData], plans: list[tuple[Path, Plan]]):
    """The search's plan (path, plan): the one the last search campaign validated, else the
    first plan with the search's predictions; None when there is none."""
    for c in reversed(camps):
        if c.label == "search" and c.plan is not None:
            return c.plan_file, c.plan
    return next(((p, pl) for p, pl in plans if all(k in pl.extra for k in PREDICTED)), None)


def _looks_like_plan(path: Path) -> bool:
    try:
        with path.open() as fh:
            return fh.readline().startswith("# drivefi plan")
    except OSError:
        return False
