"""Failure modes (cases), drivefi.search.modes: one definition the search, pipeline, bench and
report share; the pipeline's --json and its report.html print the same figures."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drivefi.search.modes import (
    case_ids,
    count_cases,
    duration_class,
    fault_kind,
    phase,
    summarise_cases,
)

ROOT = Path(__file__).resolve().parents[1]


def _faults(rows) -> pd.DataFrame:
    cols = ["point", "model", "value", "bit", "seed", "start", "duration", "outcome",
            "min_delta_lon", "min_delta_lat"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def test_case_is_point_value_duration_class_and_phase():
    df = _faults([
        ("control.steer", "m-fixed", 1.0, None, 0, 100, 20, "hazard", 5.0, -1.0),  # 5.0 s, 1 s
        ("control.steer", "m-fixed", 1.0, None, 0, 119, 11, "hazard", 5.0, -2.0),  # same case
        ("control.steer", "m-fixed", 1.0, None, 0, 110, 20, "accident", 5.0, -0.5),  # same case
        ("control.steer", "m-fixed", 1.0, None, 0, 120, 20, "hazard", 5.0, -1.0),  # next phase
        ("control.steer", "m-fixed", 1.0, None, 0, 100, 10, "hazard", 5.0, -1.0),  # short
        ("control.steer", "m-fixed", 1.0, None, 0, 100, 1, "hazard", 5.0, -1.0),  # transient
        ("control.steer", "m-fixed", -1.0, None, 0, 105, 20, "hazard", 5.0, -1.0),  # other value
        ("control.throttle", "m-fixed", 1.0, None, 0, 100, 20, "hazard", 5.0, -1.0),  # other point
        ("control.steer", "bitflip", 0.0, 30, 0, 100, 1, "hazard", 5.0, -1.0),  # a bit
        ("control.steer", "bitflip", 0.0, 29, 0, 100, 1, "hazard", 5.0, -1.0),  # another bit
        ("control.steer", "m-random", np.nan, None, 7, 100, 5, "hazard", 5.0, -1.0),
    ])  # fmt: skip
    ids = case_ids(df, dt=0.05)
    assert ids[0] == ids[1] == ids[2]  # the outcome is not part of the key
    assert len(set(ids)) == 9 == count_cases(df, dt=0.05)
    assert list(duration_class(df, 0.05))[:6] == ["sustained"] * 4 + ["short", "transient"]
    assert list(phase(df, 0.05))[:4] == [5, 5, 5, 6]
    assert list(fault_kind(df))[8:] == ["bit 30", "bit 29", "seed 7"]
    # a fault's case does not depend on the other faults: any subset or order counts alike
    perm = np.random.default_rng(0).permutation(len(df))
    back = case_ids(df.iloc[perm], dt=0.05)[np.argsort(perm)]  # in df's order again
    assert np.array_equal(ids[:, None] == ids[None, :], back[:, None] == back[None, :])
    assert count_cases(df.iloc[:3], dt=0.05) == 1 and count_cases(df.iloc[3:], dt=0.05) == 8
    # the rows' own dt column when no dt is given (the report's campaigns)
    assert np.array_equal(case_ids(df.assign(dt=0.05)), ids)


def test_summary_most_severe_first_with_representative():
    df = _faults([
        ("control.steer", "m-fixed", 1.0, None, 0, 100, 20, "hazard", 5.0, -2.0),
        ("control.steer", "m-fixed", 1.0, None, 0, 110, 15, "accident", 5.0, -0.5),
        ("planning.target_speed", "m-fixed", 40.0, None, 0, 10, 20, "hazard", -3.0, 2.0),
    ])  # fmt: skip
    s = summarise_cases(df, dt=0.05)
    assert list(s["case"]) == [1, 2] and list(s["count"]) == [2, 1]
    first = s.iloc[0]
    assert first["outcome"] == "accident" and first["rep"] == 1 and first["worst"] == -2.0
    assert (first["duration_class"], first["phase"]) == ("sustained", 5)
    assert (first["t_first"], first["t_last"]) == pytest.approx((5.0, 5.5))
    assert (first["dur_min"], first["dur_max"]) == pytest.approx((0.75, 1.0))
    assert summarise_cases(df.iloc[:0]).empty and count_cases(df.iloc[:0]) == 0


def test_vectorised_matches_a_loop():
    rng = np.random.default_rng(1)
    n = 2000
    df = _faults({
        "point": rng.choice(["a", "b", "c"], n), "model": "m-fixed",
        "value": rng.choice([0.0, 0.5, 1.0], n), "bit": None, "seed": 0,
        "start": rng.integers(0, 400, n), "duration": rng.choice([1, 5, 10, 11, 20], n),
        "outcome": "hazard", "min_delta_lon": 1.0, "min_delta_lat": -1.0,
    })  # fmt: skip
    naive = set()
    for p, v, k, m in zip(df["point"], df["value"], df["start"], df["duration"], strict=True):
        cls = "transient" if m == 1 else "short" if m * 0.05 <= 0.5 + 1e-9 else "sustained"
        naive.add((p, v, cls, int(k * 0.05 + 1e-9)))
    assert count_cases(df, dt=0.05) == len(naive)


def test_bench_counts_truth_cases(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    sys.modules.pop("bench_blackbox", None)
    import bench_blackbox as bb

    crit = {("control.steer", 1.0, 10, 5), ("control.steer", 1.0, 15, 5),
            ("control.steer", 1.0, 40, 5), ("control.steer", 0.5, 10, 5)}  # fmt: skip
    cases = bb.truth_cases(crit, 0.05)  # phases 0, 0, 2: two cases of 1.0, one of 0.5
    assert len(set(cases.values())) == 3
    assert bb.cases_reached(cases, {("control.steer", 1.0, 15, 5), ("x", 0.0, 0, 1)}) == 1


def test_pipeline_json_and_report_agree(tmp_path, capsys):
    """The pipeline's --json and its report.html show the same speed-ups and case counts, and
    the report counts each campaign's cases as the pipeline does."""
    from drivefi.cli import main

    out = tmp_path / "p"
    rc = main(["pipeline", "lead_brake", "--out", str(out), "--budget", "20", "--training-runs", "40",
               "--durations", "5", "--workers", "1", "--rounds", "1", "--json"])  # fmt: skip
    s = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert s["found_critical"] > 0 and 0 < s["search_cases"] <= s["found_critical"]
    assert s["validation_cases"] <= s["search_cases"]
    assert s["random_cases"] <= s["random_hazards"]
    assert s["cases_per_run"] == pytest.approx(s["search_cases"] / s["simulated_runs"])
    html = (out / "report.html").read_text()
    m = re.search(
        r"Speed-up of the search in all: (\S+) in critical faults, (\S+) in distinct cases"
        r"</b> per simulated run: (\d+) critical faults in (\d+) distinct cases from (\d+) "
        r"simulated runs.*?\((\d+) cases in (\d+) injections\)",
        html,
    )
    assert m, "the report shows the pipeline's speed-ups"

    def fmt(x):
        return "∞" if x is None else f"{x:.1f}x"

    assert m.group(1) == fmt(s["speedup"]) and m.group(2) == fmt(s["case_speedup"])
    assert [int(g) for g in m.groups()[2:]] == [s["found_critical"], s["search_cases"],
                                               s["simulated_runs"], s["random_cases"],
                                               s["random_injected"]]  # fmt: skip
    if s["speedup_validation"] is not None:
        assert f"Speed-up of the search in validation: {s['speedup_validation']:.1f}x" in html
    # the report, from the database alone, counts each campaign's cases the same way
    rc = main(["report", str(out / "results.db"), "--out", str(tmp_path / "r.html"), "--json"])
    r = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert r["search_campaign_cases"] == s["validation_cases"]
    assert r["random_campaign_cases"] == s["random_cases"]
