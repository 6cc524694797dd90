"""What the report shows, as tables: campaigns with their role, outcomes in seconds, predictions
kept from the search's plan, and critical faults grouped into distinct cases."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from drivefi.campaign.runner import golden_trace_path
from drivefi.campaign.store import ResultsStore
from drivefi.errors import DriveFIError, InputError
from drivefi.faults import drawn_text
from drivefi.faults.plan import Plan, read_plan
from drivefi.run.testbed import Testbed
from drivefi.search.modes import case_ids, critical_faults, fault_kind, severity_order
from drivefi.stacks import stored_stack
from drivefi.world.scenario import Scenario, load_scenario

PREDICTED = ("p_hazard", "predicted_delta")  # the search plan's extra columns


@dataclass
class CampaignData:
    """One campaign of the database and everything the report derives from it."""

    info: dict  # id, scenario, sim, seed, planned, done, masked, hazard, accident, critical, ...
    settings: dict
    outcomes: pd.DataFrame  # one row per planned fault, with times in seconds
    scenario: Scenario | None  # None when the scenario file could not be found
    plan_file: Path | None = None  # the plan file the predictions come from
    plan: Plan | None = None  # that plan, as read
    notes: list[str] = field(default_factory=list)
    db: Path | None = None  # the results database it belongs to (for its stored golden run)

    @property
    def id(self) -> int:
        return int(self.info["id"])

    @property
    def label(self) -> str:
        """The campaign's role: ``search``, ``random``, or what its settings say (else empty)."""
        return str(self.settings.get("label") or ("search" if self.plan_file else ""))

    @property
    def title(self) -> str:
        role = {"search": "Bayesian search", "random": "random FI baseline"}.get(
            self.label, self.label or "campaign"
        )
        return f"{role} (campaign {self.id})"

    @property
    def dt(self) -> float | None:
        return None if self.scenario is None else self.scenario.dt

    @property
    def has_predictions(self) -> bool:
        return "p_hazard" in self.outcomes.columns

    @cached_property
    def ok(self) -> pd.DataFrame:
        """The runs that ran to the end (masked, hazard, accident; a campaign's outcomes are
        final once loaded)."""
        o = self.outcomes
        return o[(o["status"] == "ok") & (o["outcome"] != "stack_failure")]

    @cached_property
    def failed(self) -> pd.DataFrame:
        """The runs that did not: the stack failed under the fault, or the simulator gave up."""
        o = self.outcomes
        return o[(o["status"] == "error") | (o["outcome"] == "stack_failure")]

    @property
    def stack(self) -> str:
        return str((self.settings or {}).get("stack", "reference"))

    @cached_property
    def testbed(self) -> Testbed | None:
        """The testbed that re-runs its faults exactly (``drivefi replay``), or None: a stack
        DriveFI cannot re-run as it ran is shown from its kept traces, never stood in for (see
        :attr:`drivefi.run.testbed.Testbed.replay_spec`)."""
        spec = (self.settings or {}).get("replay")
        return Testbed.from_replay_spec(spec) if spec and self.scenario is not None else None

    @property
    def replayable(self) -> bool:
        """The report itself re-runs its faults (DriveFI's own stack on the embedded simulator)."""
        return self.testbed is not None

    @cached_property
    def replay_agent(self) -> str | None:
        """The agent (``FILE:CLASS``) whose faults ``drivefi replay --agent`` re-runs exactly: an
        agent's campaign on the embedded simulator whose file is unchanged since (the report shows
        the commands; it never runs the agent itself)."""
        st = self.settings or {}
        if self.scenario is None or st.get("agent") is None or st.get("rerun_on") is None:
            return None
        try:
            return stored_stack(str(st.get("stack")), st["agent"]).agent
        except DriveFIError:
            return None

    @property
    def has_replay_commands(self) -> bool:
        """``drivefi replay`` re-runs its faults exactly (the reference, or an unchanged agent)."""
        return self.replayable or self.replay_agent is not None

    @cached_property
    def _golden(self) -> tuple[pd.DataFrame | None, str | None]:
        if self.scenario is None:  # a note says the scenario is missing
            return None, None
        if self.db is not None:
            path = golden_trace_path(self.db, self.id)
            if path.is_file():
                try:
                    return self._stored_golden(path), f"stored with the campaign ({path})"
                except InputError as err:
                    self.notes.append(
                        f"campaign {self.id}: its stored golden run is not used: {err}"
                    )
        if self.testbed is not None:  # a campaign of DriveFI's own stack from an older store
            from drivefi.run.golden import golden_of

            g = golden_of(self.testbed, self.scenario, int(self.info["seed"]))[0]
            return (
                g.trace.frame,
                f"re-run by the report on the {self.testbed.simulator.name} simulator",
            )
        self.notes.append(
            f"campaign {self.id} kept no golden run (a store from before DriveFI kept it, or a "
            f"simulator without snapshots) and the report does not run its stack ({self.stack}): "
            "its timelines and heat map have no golden run, and an unsafe golden run would go "
            "unseen"
        )
        return None, None

    def _stored_golden(self, path: Path) -> pd.DataFrame:
        """The golden trace the campaign stored, checked to be this campaign's (scenario, seed,
        stack): a folder left by another store of the same name is refused, naming the field."""
        from drivefi.run.trace import check_golden, read_trace

        tr = read_trace(path)
        check_golden(tr, self.scenario, path)
        want = {"seed": self.info["seed"], "stack": self.stack, "campaign": self.id}
        for key, value in want.items():
            if tr.meta.get(key) != value:
                raise InputError(
                    f"{path}: metadata field '{key}' is {tr.meta.get(key)!r}, the campaign's is "
                    f"{value!r} (a trace of another store)"
                )
        return tr.frame

    @property
    def golden(self) -> pd.DataFrame | None:
        """The golden run's trace: the one the campaign stored (any stack), else re-run where
        DriveFI re-runs the campaign's stack exactly (its own stack, a store from before golden
        runs were kept); None otherwise, with a note: the report never runs a user's agent."""
        return self._golden[0]

    @property
    def golden_source(self) -> str | None:
        """Where :attr:`golden` comes from, as the page says it."""
        return self._golden[1]

    def unsafe_steps(self) -> np.ndarray:
        """The steps where the golden run (no fault at all) is hazardous; empty when unknown."""
        g = self.golden
        return np.array([], int) if g is None else np.flatnonzero(g["hazard"].to_numpy(bool))

    @property
    def points(self) -> list[str]:
        """The stack's injection points, as the campaign stored them."""
        return list((self.settings or {}).get("points") or [])

    @property
    def point_specs(self) -> list | None:
        """The stack's points with their ranges (name, lo, hi, unit) as the campaign stored them;
        None for a campaign stored before DriveFI kept them."""
        return (self.settings or {}).get("point_specs")

    def drawn(self, row) -> str:
        """What an m-random fault (a row of :attr:`outcomes`) drew; empty for other models."""
        return drawn_of(row, self.point_specs)

    def rate(self) -> float | None:
        """Critical faults per injected fault (None before any outcome)."""
        n = len(self.ok)
        return float(self.ok["critical"].sum()) / n if n else None


def step_ranges(steps) -> list[list[int]]:
    """Sorted steps as [first, last] ranges of consecutive steps."""
    out: list[list[int]] = []
    for k in map(int, steps):
        if out and k == out[-1][1] + 1:
            out[-1][1] = k
        else:
            out.append([k, k])
    return out


def drawn_of(row, specs: list | None) -> str:
    """What the fault ``row`` (point, model, seed, start, duration) drew when it is an m-random
    fault (:func:`drivefi.faults.drawn_text` from its campaign's ``specs``); empty otherwise."""
    if row["model"] != "m-random" or pd.isna(row["seed"]):
        return ""
    return drawn_text(int(row["seed"]), int(row["duration"]), int(row["start"]), specs)


def drawn_column(outcomes: pd.DataFrame, settings: dict[int, dict]) -> pd.Series:
    """Per fault of ``outcomes`` (rows of one or more campaigns, column ``campaign``): what an
    m-random fault drew, from its campaign's stored point specs (``settings`` by campaign id);
    empty for other models."""
    out = pd.Series("", index=outcomes.index, dtype=object)
    sel = (outcomes["model"] == "m-random").to_numpy()
    if sel.any():
        rnd = outcomes.loc[sel, ["campaign", "model", "seed", "start", "duration"]]
        out[sel] = [drawn_of(r, settings.get(int(r["campaign"]), {}).get("point_specs"))
                    for r in rnd.to_dict("records")]  # fmt: skip
    return out


def stack_short(identity: str) -> str:
    """A stack as a sentence names it: ``agent Cruiser (my_agent.py)``, ``stack reference``."""
    head, sep, _ = identity.rpartition(" sha256=")
    if not sep:
        return f"stack {identity}"
    path, _, cls = head.rpartition(":")
    return f"agent {cls} ({Path(path).name})"


def campaign_settings(store: ResultsStore) -> dict[int, dict]:
    """Each campaign's stored settings, by id (unreadable settings: empty)."""
    out = {}
    for cid, raw in store.db.execute("SELECT id, settings FROM campaigns"):
        try:
            out[cid] = json.loads(raw or "{}")
        except json.JSONDecodeError:
            out[cid] = {}
    return out


def _scenario(name: str, files: dict[str, Scenario], notes: list[str]) -> Scenario | None:
    if name in files:
        return files[name]
    try:
        return load_scenario(name)
    except InputError as err:
        notes.append(
            f"scenario '{name}' not found ({err}); times are shown in steps and faults are not "
            "replayed: give the scenario file to the report (--scenario FILE)"
        )
        return None


def with_times(df: pd.DataFrame, dt: float | None) -> pd.DataFrame:
    """Add t_start, t_end and time_to_hazard [s] (step x dt; steps when dt is unknown)."""
    df = df.copy()
    scale = 1.0 if dt is None else dt
    df["t_start"] = df["start"] * scale
    df["t_end"] = (df["start"] + df["duration"]) * scale
    fh = df["first_hazard_step"]
    df["time_to_hazard"] = np.where(fh.notna() & (fh >= 0), (fh - df["start"]) * scale, np.nan)
    return df


def _attach_predictions(
    df: pd.DataFrame, info: dict, plans: list[tuple[Path, Plan]]
) -> tuple[Path, Plan] | None:
    """Join p_hazard / predicted_delta of the plan this campaign ran (matched by the plan hash of
    its first ``planned`` faults: a pipeline injects the top of its search plan)."""
    n = int(info["planned"])
    for path, plan in plans:
        if not all(c in plan.extra for c in PREDICTED) or len(plan.faults) < n:
            continue
        head = Plan(plan.scenario, plan.steps, plan.faults[:n])
        if head.scenario == info["scenario"] and head.digest() == info["plan_hash"]:
            for c in PREDICTED:
                vals = pd.to_numeric(pd.Series(plan.extra[c][:n]), errors="coerce").to_numpy()
                df[c] = vals[df["idx"].to_numpy()]
            return path, plan
    return None


def read_plans(paths) -> list[tuple[Path, Plan]]:
    """Plans that may hold a campaign's predictions; unreadable files are an input error. Point
    names are not checked against a stack: a plan only counts for a campaign whose stored plan
    hash it matches, and that campaign checked them against its stack when it ran."""
    return [(Path(p), read_plan(p, any_points=True)) for p in paths or []]


def load_campaigns(
    db: str | Path, plans=None, scenario_files: list[str | Path | Scenario] | None = None
) -> list[CampaignData]:
    """Every campaign of ``db`` with its outcomes (times in seconds) and any predictions
    (``plans``: plan files, or plans already read by :func:`read_plans`)."""
    db = Path(db)
    if not db.is_file():
        raise InputError(f"{db}: results database not found")
    files = {}
    for f in scenario_files or []:  # a file, or a Scenario already loaded (the pipeline's own)
        sc = f if isinstance(f, Scenario) else load_scenario(f)
        files[sc.name] = sc
    plans = list(plans or [])
    plan_objs = plans if plans and isinstance(plans[0], tuple) else read_plans(plans)
    store = ResultsStore(db)
    try:
        settings = campaign_settings(store)
        out = []
        for info in store.campaigns():
            notes: list[str] = []
            sc = _scenario(info["scenario"], files, notes)
            df = with_times(store.outcomes(info["id"]), None if sc is None else sc.dt)
            pred = _attach_predictions(df, info, plan_objs)
            out.append(CampaignData(info, settings.get(info["id"], {}), df, sc, *(pred or ()),
                                    notes=notes, db=db))  # fmt: skip
    finally:
        store.close()
    return out


# --- distinct cases --------------------------------------------------------------------------
# The definition of a case lives in drivefi.search.modes (shared with the pipeline and the bench).

CONTEXT = ("scenario", "cseed", "sim")  # a case never spans two scenarios, seeds or simulators


def case_rows(camps: list[CampaignData]) -> pd.DataFrame:
    """The critical faults of ``camps``, one row each, with their campaign's label, id,
    scenario, seed, simulator and dt."""
    frames = []
    for c in camps:
        crit = critical_faults(c.outcomes)
        if crit.empty:
            continue
        frames.append(crit.assign(label=c.label or f"campaign {c.id}", cid=c.id,
                                  scenario=c.info["scenario"], sim=c.info["sim"],
                                  cseed=c.info["seed"], dt=c.dt))  # fmt: skip
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def group_cases(camps: list[CampaignData]) -> pd.DataFrame:
    """Critical faults grouped into distinct cases (:mod:`drivefi.search.modes`), most severe
    first.

    One case: same scenario, seed and simulator, same injection point and corrupted value (or bit,
    or m-random seed), same duration class and same phase of the drive; its outcome is its most
    severe member's. Each case keeps its count (per campaign role), its start-time range, the
    earliest time to hazard, the worst margins, and its most severe fault (the one to replay
    first).
    """
    df = case_rows(camps)
    if df.empty:
        return pd.DataFrame()
    df["kind"] = fault_kind(df)
    df["worst"] = df[["min_delta_lon", "min_delta_lat"]].min(axis=1)
    df["case_id"] = case_ids(df, CONTEXT)
    df = df.iloc[severity_order(df)]  # each case's first member is its most severe
    out = pd.DataFrame([_case(g) for _, g in df.groupby("case_id", sort=False)])
    out.insert(0, "case", np.arange(1, len(out) + 1))
    return out.reset_index(drop=True)


MEMBER_COLUMNS = ["cid", "idx", "label", "model", "start", "duration", "outcome", "time_to_hazard",
                  "min_delta_lon", "min_delta_lat"]  # fmt: skip


def _case(g: pd.DataFrame) -> dict:
    rep = g.iloc[0]
    scale = 1.0 if pd.isna(rep["dt"]) or rep["dt"] is None else rep["dt"]
    by_label = g.groupby("label").size().to_dict()
    return {
        "scenario": rep["scenario"],
        "sim": rep["sim"],
        "point": rep["point"],
        "model": ", ".join(sorted(g["model"].unique())),
        "kind": rep["kind"],
        "outcome": rep["outcome"],
        "count": len(g),
        "by_label": by_label,
        "t_first": float(g["start"].min() * scale),
        "t_last": float(g["start"].max() * scale),
        "dur_min": float(g["duration"].min() * scale),
        "dur_max": float(g["duration"].max() * scale),
        "tth_min": float(g["time_to_hazard"].min()),
        "min_delta_lon": float(g["min_delta_lon"].min()),
        "min_delta_lat": float(g["min_delta_lat"].min()),
        "worst": float(g["worst"].min()),
        "rep_cid": int(rep["cid"]),
        "rep_idx": int(rep["idx"]),
        "rep": rep,
        "members": g.sort_values(["start", "cid", "idx"])[MEMBER_COLUMNS].copy(),
    }
