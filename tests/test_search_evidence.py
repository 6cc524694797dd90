"""What the search does not know (drivefi.search.evidence): points whose faults never reach the
stack are found from the training runs, reported and never planned; the evidence per group adds
up to the runs the search simulated; recording the training runs changes no plan.

Small configurations on lead_brake cut to 10 s (200 steps), as tests/test_pinned_pipeline.py.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from drivefi.cli import main
from drivefi.world.scenario import load_scenario, resolve_path

FIXTURES = Path(__file__).parent / "fixtures"
AGENT = str(FIXTURES / "ground_truth_speed_agent.py")
SHORT = load_scenario("lead_brake").model_copy(update={"duration": 10.0})


def cli(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    assert rc == 0, (argv, out.getvalue())
    return out.getvalue()


def plan_points(path: Path) -> set[str]:
    with open(path, newline="") as f:
        return {r["point"] for r in csv.DictReader(x for x in f if not x.startswith("#"))}


@pytest.fixture(scope="module")
def short_yaml(tmp_path_factory) -> Path:
    text, n = re.subn(
        r"(?m)^duration: .*$", "duration: 10.0", resolve_path("lead_brake").read_text()
    )
    assert n == 1
    path = tmp_path_factory.mktemp("scenario") / "lead_brake_10s.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def agent_run(tmp_path_factory) -> tuple[Path, dict, list[str]]:
    """The pipeline on an agent that takes its speed from ground truth (get_velocity()): its
    folder, its --json summary and its log lines."""
    from drivefi.cli.options import emit_json
    from drivefi.pipeline import PipelineOptions, run_pipeline
    from drivefi.run.testbed import Testbed

    d = tmp_path_factory.mktemp("agent")
    o = PipelineOptions(budget=20, training_runs=20, durations=(5,), workers=1, rounds=0)
    log: list[str] = []
    s = run_pipeline(SHORT, d, Testbed.of(AGENT), o, progress=False, log=log.append)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        emit_json(s.as_dict())
    return d, json.loads(out.getvalue()), log


@pytest.fixture(scope="module")
def reference_run(short_yaml, tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("reference")
    s = json.loads(cli(["pipeline", str(short_yaml), "--out", str(d), "--budget", "20",
                        "--training-runs", "30", "--durations", "5", "--workers", "1",
                        "--rounds", "1", "--json"]))  # fmt: skip
    return d, s


def test_a_point_the_agent_never_reads_is_unreached_and_never_planned(agent_run):
    d, s, log = agent_run
    # the agent reads its speed from get_velocity(): localization.speed never reaches it
    assert list(s["unreached_points"]) == ["localization.speed"]
    # every run that injected it showed it: its training runs and the probes (3 starts x 2 ends)
    assert s["probe_runs"] == 6
    train = sum(g["training_runs"] for g in s["groups"] if g["point"] == "localization.speed")
    assert s["unreached_points"]["localization.speed"] == train + 6
    assert s["simulated_runs"] == 20 + 6 + sum(r["injected"] for r in s["rounds"]) + s["injected"]
    # left out of the scored space (the other 3 points x 5 values x 196 start steps) and of both
    # plans
    assert s["candidates_scored"] == 3 * 5 * (SHORT.steps - 5 + 1)
    planned = plan_points(d / "search_plan.csv")
    assert planned and planned <= {"control.throttle", "control.brake", "control.steer"}
    assert "localization.speed" not in plan_points(d / "random_plan.csv")
    assert all(not g["in_space"] for g in s["groups"] if g["point"] == "localization.speed")
    # named in the log, the report and the command line's summary
    assert any("point localization.speed" in line and "never planned" in line for line in log)
    html = (d / "report.html").read_text()
    assert "What the search does not know" in html and "localization.speed" in html


def test_the_summary_names_the_unreached_point(agent_run):
    from drivefi.cli.options import console
    from drivefi.cli.pipeline import _print_evidence
    from drivefi.pipeline import PipelineSummary

    s = PipelineSummary(**agent_run[1])
    assert s.unreached_points
    with console.capture() as cap:
        _print_evidence(s)
    text = " ".join(cap.get().split())
    assert "unreached point localization.speed: no fault of" in text
    assert "left out of the search space, never planned" in text
    assert f"{len(s.groups):,} groups" in text and f"{s.unresolved_groups:,} unresolved" in text


def test_every_point_of_the_reference_stack_is_reached(reference_run):
    _, s = reference_run
    assert s["unreached_points"] == {} and s["probe_runs"] == 0
    assert s["candidates_scored"] == 9 * 5 * (SHORT.steps - 5 + 1)


def test_group_evidence_adds_up_to_the_runs(reference_run):
    _, s = reference_run
    g = s["groups"]
    keys = [(x["point"], x["duration_class"], x["phase"]) for x in g]
    assert len(keys) == len(set(keys)) == len(g) > 0
    total = lambda k: sum(x[k] for x in g)  # noqa: E731
    assert total("training_runs") == 30
    assert total("round_runs") == sum(r["injected"] for r in s["rounds"])
    assert total("runs") == total("training_runs") + total("round_runs")
    assert total("candidates") == s["candidates_scored"]
    assert total("predicted_critical") == s["predicted_critical"]
    assert total("validated") == s["injected"]
    assert total("confirmed") == s["found_critical"]
    assert s["unresolved_groups"] == sum(x["unresolved"] for x in g)
    for x in g:
        assert x["critical"] <= x["runs"]
        if x["runs"]:
            assert x["observed_share"] == pytest.approx(x["critical"] / x["runs"])
            assert 0.0 <= x["predicted_share"] <= 1.0
        assert x["unresolved"] == bool(x["why"])


def test_recording_the_training_runs_changes_no_plan(reference_run):
    """The pipeline's plan (its search inside a watch) is the plan of the same active search
    without one: a stack whose points all reach it loses no candidate and no score."""
    from drivefi.run.golden import golden_of
    from drivefi.run.testbed import Testbed
    from drivefi.search.active import ActiveOptions, active_search
    from drivefi.search.training import structure_for

    d, s = reference_run
    tb = Testbed()
    golden = golden_of(tb, SHORT, SHORT.seed)[0]
    res = active_search(SHORT, golden, structure_for(tb), ActiveOptions(0.10, 30, 1, 0, (5,)), tb)
    c, plan = res.candidates, res.plan
    order = np.concatenate([plan[res.outcome[plan] < 0], plan[res.outcome[plan] == 1]])
    want = [(str(c.point[i]), float(c.value[i]), int(c.start[i]), int(c.duration[i]),
             f"{c.p_hazard[i]:.6g}") for i in order]  # fmt: skip
    with open(d / "search_plan.csv", newline="") as f:
        rows = list(csv.DictReader(x for x in f if not x.startswith("#")))
    got = [(r["point"], float(r["value"]), int(r["start"]), int(r["duration"]), r["p_hazard"])
           for r in rows]  # fmt: skip
    assert len(got) == s["predicted_critical"] > 0
    assert got == want
