"""Critical-fault search end to end: search -> campaign -> precision; model checks; pipeline."""

from __future__ import annotations

import json

import pytest

from drivefi.campaign.runner import run_campaign
from drivefi.cli import main
from drivefi.faults.plan import read_plan, write_plan
from drivefi.run.golden import record_golden
from drivefi.run.trace import write_trace
from drivefi.search import search
from drivefi.search.training import training_set
from drivefi.tbn import fit_model, save_model
from drivefi.world.scenario import load_scenario

SC = load_scenario("lead_brake")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    d = tmp_path_factory.mktemp("search")
    golden = record_golden(SC)
    model = fit_model(training_set(SC, runs=80, seed=0, golden=golden), seed=0)
    save_model(model, d / "model.json")
    write_trace(golden.trace, d / "golden.parquet")
    return d, golden, model


def test_search_then_campaign_confirms(fitted, tmp_path):
    _, golden, model = fitted
    res = search(SC, model, golden, top=40, min_prob=0.5, points=["control.steer"], durations=(5,))
    assert res.candidates > 1000 and 0 < len(res.plan.faults) <= 40
    p = [float(x) for x in res.plan.extra["p_hazard"]]
    assert p == sorted(p, reverse=True) and min(p) >= 0.5
    path = write_plan(res.plan, tmp_path / "plan.csv")
    plan = read_plan(path)  # the extra columns survive and are ignored by the campaign
    assert set(plan.extra) == {"p_hazard", "predicted_delta"}
    s = run_campaign(SC, plan, tmp_path / "r.db", progress=False)
    precision = s.critical / s.planned
    # stuck steering at speed is what the linear 3-TBN predicts best (see docs/tbn.md). This is
    # the round-0 model alone (80 training runs, no active-refit rounds), whose precision the
    # README puts at 0.80-0.99; measured, deterministically: all 40 top predictions of the
    # 5-step space are hazards (36 of 40 when 1-step faults were scored too, though not asked
    # for). The pipeline's 1.000 (after the rounds) is pinned in tests/test_pinned_pipeline.py.
    assert (s.planned, s.critical) == (40, 40) and precision == 1.0, (s.planned, s.critical)


def test_search_is_reproducible(fitted):
    _, golden, model = fitted
    a = search(
        SC, model, golden, top=50, points=["control.brake", "control.steer"], durations=(1, 5)
    )
    b = search(
        SC, model, golden, top=50, points=["control.brake", "control.steer"], durations=(1, 5)
    )
    assert a.plan.faults == b.plan.faults and a.plan.extra == b.plan.extra


def test_model_for_another_scenario_is_refused(fitted, tmp_path, capsys):
    d, _, _ = fitted
    rc = main(
        ["search", "cut_in", "--model", str(d / "model.json"), "--out", str(tmp_path / "p.csv")]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "lead_brake" in err and "cut_in" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "content", ['{"format": "drivefi-3tbn", "version": 999}', "{not json", '{"a": 1}']
)
def test_incompatible_model_file_is_refused(tmp_path, capsys, content):
    bad = tmp_path / "m.json"
    bad.write_text(content)
    rc = main(["search", "lead_brake", "--model", str(bad), "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and str(bad) in err and len(err.strip().splitlines()) == 1


def test_search_cli_json(fitted, tmp_path, capsys):
    d, _, _ = fitted
    out = tmp_path / "p.csv"
    rc = main(["search", "lead_brake", "--model", str(d / "model.json"), "--golden", str(d / "golden.parquet"),
               "--points", "control.steer", "--durations", "5", "--top", "10", "--out", str(out), "--json"])  # fmt: skip
    info = json.loads(capsys.readouterr().out)
    assert rc == 0 and info["written"] == 10 and len(read_plan(out).faults) == 10


def test_pipeline_small(tmp_path, capsys):
    rc = main(["pipeline", "lead_brake", "--out", str(tmp_path), "--budget", "20", "--training-runs", "40",
               "--durations", "5", "--workers", "1", "--rounds", "1", "--json"])  # fmt: skip
    s = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert "[ORACLE]" not in s["structure"] and s["structure"].startswith("reference")
    assert [r["round"] for r in s["rounds"]] == [0, 1] and 0 < s["simulated_share"] <= 0.10
    assert s["injected"] == min(20, s["predicted_critical"]) and s["random_injected"] == max(
        s["injected"], 1
    )
    for f in (
        "golden.parquet",
        "model.json",
        "search_plan.csv",
        "random_plan.csv",
        "results.db",
        "report.html",
    ):
        assert (tmp_path / f).is_file()
    assert set(s["stage_seconds"]) >= {"golden", "training", "fit", "search", "random", "total"}


def test_candidates_include_step_0(fitted):
    from drivefi.search import score_space

    _, golden, model = fitted
    c = score_space(SC, model, golden, points=["control.steer"], durations=(1,))
    assert c.start.min() == 0 and len(c) == 5 * SC.steps


def test_calibration_learns_each_group_from_injected_outcomes():
    """A group whose injected faults all proved masked drops below 0.5; a group whose outcomes
    follow the predicted margin keeps the faults the margin says are critical."""
    import numpy as np

    from drivefi.search import Candidates
    from drivefi.search.active import calibrate

    rng = np.random.default_rng(0)
    n = 400
    point = np.array(["perception.x"] * 200 + ["control.steer"] * 200, object)
    delta = np.r_[rng.uniform(-5, -0.1, 200), rng.uniform(-5, 5, 200)]
    c = Candidates(point, np.full(n, "m-fixed", object), np.zeros(n), np.full(n, -1),
                   np.arange(n), np.full(n, 20), (delta <= 0).astype(float), delta)  # fmt: skip
    injected = np.zeros(n, bool)
    injected[::5] = True
    outcome = np.full(n, -1, np.int8)
    outcome[:200][injected[:200]] = 0  # the stack gated this point: never critical
    steer = np.arange(200, 400)
    outcome[steer[injected[steer]]] = (delta[steer[injected[steer]]] < -1.0).astype(np.int8)
    p = calibrate(c, injected, outcome)
    assert np.all(p[:200] < 0.5)
    s = steer[~injected[steer]]
    assert np.mean((p[s] >= 0.5) == (delta[s] < -1.0)) > 0.9
