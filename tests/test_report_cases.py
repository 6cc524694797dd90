"""The report leads with cases (issue 21 item 6) and shows what random faults drew (issue 22).

A small pipeline on lead_brake: its report's summary leads with the cases the search and random
FI found (the pipeline's own --json figures), shows the search's plan as cases (the rows are
:func:`drivefi.search.modes.summarise_cases` of the plan) and says what the search does not
know, built by ``build_report`` (no patching of the written page). An m-random campaign's export
and report show the points and values its faults drew (:func:`drivefi.faults.random_sequence`).
"""

from __future__ import annotations

import contextlib
import csv
import html
import io
import json
import re
import sqlite3
from collections import Counter

import numpy as np
import pytest

from drivefi.campaign.runner import run_campaign
from drivefi.cli import main
from drivefi.faults import random_sequence
from drivefi.faults.plan import random_plan, read_plan
from drivefi.report import build_report
from drivefi.search.modes import case_ids, count_cases, summarise_cases
from drivefi.stacks.reference import INJECTION_POINTS
from drivefi.world.scenario import load_scenario

SC = load_scenario("lead_brake")


def cli(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    assert rc == 0, (argv, out.getvalue())
    return out.getvalue()


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def table_rows(fragment: str) -> list[list[str]]:
    """The data rows of every table in ``fragment``, as lists of cell texts."""
    rows = re.findall(r"<tr>(.*?)</tr>", fragment, flags=re.S)
    return [[text_of(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.S)]
            for r in rows if "<td" in r]  # fmt: skip


def between(page: str, start: str, end: str) -> str:
    a = page.index(start)
    return page[a : page.index(end, a)]


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    """A small pipeline's folder, its summary as --json prints it, and its report."""
    from drivefi.cli.options import emit_json
    from drivefi.pipeline import run_pipeline

    out = tmp_path_factory.mktemp("pipe")
    s = run_pipeline(SC, out, budget=10, training_runs=20, durations=(5,), workers=1, rounds=1,
                     budget_share=0.02, progress=False, log=lambda *a: None)  # fmt: skip
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        emit_json(s.as_dict())
    return out, json.loads(text.getvalue()), (out / "report.html").read_text()


def plan_frame(path):
    import pandas as pd

    plan = read_plan(path)
    df = pd.DataFrame([f.as_row() for f in plan.faults])
    df["p_hazard"] = pd.to_numeric(pd.Series(plan.extra["p_hazard"]))
    df["rounds"] = [x == "1" for x in plan.extra["confirmed_in_rounds"]]
    return df


def test_the_summary_leads_with_the_pipelines_cases(pipe):
    out, s, page = pipe
    summary = between(page, '<section class="summary">', "</section>")
    cases, faults = summary.index('class="kpis cases"'), summary.index('class="kpis"')
    assert cases < faults  # cases first, the fault figures next to them
    lead = text_of(summary[cases:faults])
    assert s["search_cases"] > 0 and s["simulated_runs"] > 0
    assert re.search(rf"\b{s['search_cases']} cases? found by the Bayesian search", lead)
    assert f"{s['validation_cases']} in validation" in lead
    assert f"in {s['simulated_runs']} simulated runs" in lead
    assert f"{s['cases_per_run']:.3f} per run" in lead
    assert re.search(rf"\b{s['random_cases']} cases? found by random FI in "
                     rf"{s['random_injected']} runs", lead)  # fmt: skip
    assert f"{s['random_cases_per_injection']:.3f} per run" in lead
    sp = s["case_speedup"]
    assert ("∞" if sp is None else f"{sp:.1f}x") + " speed-up in distinct cases" in lead
    # the rounds' share, from the plan's confirmed_in_rounds rows (what the pipeline counted)
    df = plan_frame(out / "search_plan.csv")
    rounds = count_cases(df[df["rounds"]], dt=SC.dt)
    assert 0 < rounds <= s["search_cases"]
    assert f"{rounds} in the active-refit rounds" in lead
    # the unresolved groups and the fault figures are still there
    assert f"{s['unresolved_groups']:,} / {len(s['groups']):,} groups" in lead
    rest = text_of(summary[faults:])
    assert f"the search in all: {s['found_critical']} critical faults" in rest


def test_the_plan_as_cases_is_summarise_cases_of_the_plan(pipe):
    out, s, page = pipe
    section = between(page, "id='plan'", "id='evidence'")
    rows = table_rows(section)
    df = plan_frame(out / "search_plan.csv")
    # every case the search found (rounds, validation) is a case of its plan that a run confirmed
    assert f"A simulated run confirmed {s['search_cases']} of them" in text_of(section)
    want = summarise_cases(df, dt=SC.dt)
    got = Counter((r[1], r[2].split(" (")[0], r[3], int(r[4])) for r in rows)
    assert got == Counter(
        (f"{k.point} = {k.kind}", k.duration_class, f"{k.phase:g}–{k.phase + 1:g} s", k.count)
        for k in want.itertuples()
    )
    # the top 30 in the table, the rest under a <details>
    first = section[: section.find("<details>")] if "<details>" in section else section
    assert len(table_rows(first)) == min(30, len(want))
    # each row's fault is the case's most likely one; confirmed as the rounds and db say
    ids = case_ids(df, dt=SC.dt)
    from drivefi.campaign.store import ResultsStore

    store = ResultsStore(out / "results.db")
    val = store.outcomes(1)
    store.close()
    crit = dict(zip(val["idx"], val["critical"], strict=True))
    checked = 0
    for r in rows:
        row = int(re.match(r"row (\d+):", r[5])[1]) - 1
        members = np.flatnonzero(ids == ids[row])
        assert df["p_hazard"][row] == df["p_hazard"][members].max()
        assert len(members) == int(r[4])
        in_rounds = int(df["rounds"][members].sum())
        ran = [m for m in members if m in crit]
        assert ("yes" if in_rounds or any(crit[m] == 1 for m in ran) else
                "not simulated" if not ran else "no") in r[7]  # fmt: skip
        if ran:
            n_crit = sum(int(crit[m] == 1) for m in ran)
            assert f"{n_crit} of {len(ran)} in validation" in r[7]
            checked += 1
    assert checked and f"P(hazard) {df['p_hazard'].max():.2f}" in rows[0][6]


def test_what_the_search_does_not_know_is_built_not_patched(pipe, tmp_path):
    from drivefi.pipeline import PipelineSummary, figures
    from drivefi.report import evidence
    from drivefi.report.evidence import evidence_section

    out, s, page = pipe
    assert not hasattr(evidence, "add_evidence")
    section = evidence_section(s["unreached_points"], s["groups"])
    assert section in page
    # where build_report puts it: after the plan, before the comparison (not before </main>)
    assert page.index("id='plan'") < page.index(section) < page.index("id='compare'")
    assert f"{len(s['groups']):,} groups" in text_of(section)
    # the pipeline gave build_report the data; without it, no such section
    kw = {"plans": [out / "search_plan.csv"], "search_cost": figures(PipelineSummary(**s))}
    build_report(out / "results.db", tmp_path / "without.html", top=0, **kw)
    assert "What the search does not know" not in (tmp_path / "without.html").read_text()


def drawn_triples(text: str) -> list[tuple[str, str, int]]:
    return [(p, v, int(k)) for p, v, k in
            re.findall(r"([\w.]+) (-?[\d.e+-]+)(?: [^ (,]+)? \(k=(\d+)\)", text)]  # fmt: skip


def expected_triples(seed: int, m: int, start: int, shown: int = 3):
    idx, val = random_sequence(seed, m, list(INJECTION_POINTS))
    return [(INJECTION_POINTS[j].name, f"{v:.3g}", start + i)
            for i, (j, v) in enumerate(zip(idx[:shown], val[:shown], strict=True))]  # fmt: skip


@pytest.fixture(scope="module")
def random_db(tmp_path_factory):
    d = tmp_path_factory.mktemp("mrandom")
    plan = random_plan(SC, "m-random", 12, m=20, seed=5)
    db = d / "r.db"
    run_campaign(SC, plan, db, progress=False, label="m-random")
    return d, db, plan


def export_rows(db, path) -> list[dict]:
    cli(["campaign", "export", "--db", str(db), "--csv", str(path)])
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_random_faults_show_what_they_drew(random_db, tmp_path):
    d, db, plan = random_db
    rows = export_rows(db, tmp_path / "x.csv")
    assert len(rows) == len(plan.faults)
    for r, f in zip(rows, plan.faults, strict=True):
        assert r["point"] == "*" and int(r["seed"]) == f.seed
        assert drawn_triples(r["drawn"]) == expected_triples(f.seed, 20, f.start)
        assert r["drawn"].endswith(", ... 20 steps")
    # and it is what the stack was given: the point's value at step k in the faulty run's trace
    from drivefi.run.faulty import run_faults

    frame = run_faults(SC, [plan.faults[0]], traces=True).trace(0).frame
    for p, v, k in drawn_triples(rows[0]["drawn"]):
        assert f"{frame[p].iloc[k]:.3g}" == v
    # the report: every m-random fault that ran, with what it drew
    build_report(db, d / "report.html", top=0)
    page = (d / "report.html").read_text()
    listing = text_of(between(page, "what its m-random faults drew", "</details>"))
    assert all(r["drawn"] in listing for r in rows)
    # a critical m-random fault names its draws in the cases table and the summary: a copy of
    # the store where fault 3 is recorded critical (the report reads outcomes, top=0 replays none)
    hit = tmp_path / "hit.db"
    hit.write_bytes(db.read_bytes())
    con = sqlite3.connect(hit)
    con.execute(
        "UPDATE outcomes SET outcome='hazard', critical=1, min_delta_lon=-0.5, "
        "first_hazard_step=? WHERE idx=3",
        (plan.faults[3].start + 5,),
    )
    con.commit()
    con.close()
    build_report(hit, tmp_path / "hit.html", top=0)
    page = (tmp_path / "hit.html").read_text()
    cases = between(page, "id='cases'", "id='timelines'")
    assert "drew: " + html.escape(rows[3]["drawn"]) in cases
    assert page.count("drew: " + html.escape(rows[3]["drawn"])) >= 2  # and in the summary


def test_a_store_without_point_specs_says_not_stored(random_db, tmp_path):
    db = random_db[1]
    old = tmp_path / "old.db"
    old.write_bytes(db.read_bytes())
    con = sqlite3.connect(old)
    (raw,) = con.execute("SELECT settings FROM campaigns").fetchone()
    settings = json.loads(raw)
    assert [p[0] for p in settings.pop("point_specs")] == [p.name for p in INJECTION_POINTS]
    con.execute("UPDATE campaigns SET settings=?", (json.dumps(settings),))
    con.commit()
    con.close()
    rows = export_rows(old, tmp_path / "x.csv")
    assert {r["drawn"] for r in rows} == {"not stored"}
    build_report(old, tmp_path / "r.html", top=0)
    assert "not stored" in text_of((tmp_path / "r.html").read_text())
