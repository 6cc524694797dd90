"""The report of a user's agent has everything the reference stack's has, without running the
agent: the golden run its campaign stored (timelines' golden line, the heat map's margin strip),
the stack named by file, class and SHA-256, and an unsafe golden run announced with its hazard
steps (on the page and in the summary ``--json`` prints)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from drivefi.campaign.runner import golden_trace_path, run_campaign
from drivefi.cli import main
from drivefi.core import Fault
from drivefi.faults.plan import Plan
from drivefi.report import build_report, plots
from drivefi.run.testbed import Testbed
from drivefi.run.trace import read_trace
from drivefi.stacks import stack_identity
from drivefi.world.scenario import load_scenario

SC = load_scenario("lead_brake")
FIX = Path(__file__).parent / "fixtures"
STEER = [
    Fault("control.steer", "m-fixed", v, None, k, 20, 0) for v in (1.0, -1.0) for k in (40, 80)
]


def _campaign(folder: Path, agent: str | None, faults: list[Fault], **kw) -> Path:
    db = folder / "r.db"
    s = run_campaign(SC, Plan(SC.name, SC.steps, faults), db, progress=False,
                     testbed=Testbed.of(agent), batch_size=len(faults), **kw)  # fmt: skip
    assert s.error == 0 and s.stack_failure == 0
    return db


def _copy(src: Path, dst: Path) -> Path:
    """A copy of a results store and its traces folder (a test may then change either)."""
    shutil.copy(src, dst / src.name)
    shutil.copytree(src.with_suffix(".traces"), dst / src.with_suffix(".traces").name)
    return dst / src.name


@pytest.fixture(scope="module")
def cruiser(tmp_path_factory):
    """A campaign of a copy of the Cruiser agent (hazards kept), its identity and golden run."""
    d = tmp_path_factory.mktemp("agent")
    agent = d / "my_agent.py"
    shutil.copy(FIX / "special_agents.py", agent)
    spec = f"{agent}:Cruiser"
    identity = stack_identity(spec)
    db = _campaign(d, spec, STEER, keep_traces="hazards")
    agent.unlink()  # the report cannot run the agent: its file is gone
    return db, identity


@pytest.fixture(scope="module")
def never_brakes(tmp_path_factory):
    """A campaign of an agent that collides with no fault: one fault before its hazard, one in it."""
    d = tmp_path_factory.mktemp("unsafe")
    faults = [Fault("control.steer", "m-fixed", 1.0, None, k, 20, 0) for k in (40, 170)]
    return _campaign(d, f"{FIX / 'unsafe_agent.py'}:NeverBrakes", faults)


class Spy:
    """Wraps the plot functions: what golden frame each figure got, and what it drew."""

    def __init__(self, monkeypatch):
        self.timelines, self.heatmaps = [], []
        timeline, heatmap = plots.timeline, plots.heatmap

        def spy_timeline(faulty, golden, *args, **kw):
            fig = timeline(faulty, golden, *args, **kw)
            labels = [ln.get_label() for ln in fig.axes[0].lines]
            self.timelines.append((golden, labels))
            return fig

        def spy_heatmap(panels, points, duration_s, golden=None, *args, **kw):
            fig = heatmap(panels, points, duration_s, golden, *args, **kw)
            legend = fig.axes[0].get_legend()
            texts = [t.get_text() for t in legend.get_texts()] if legend else []
            self.heatmaps.append((golden, texts))
            return fig

        monkeypatch.setattr(plots, "timeline", spy_timeline)
        monkeypatch.setattr(plots, "heatmap", spy_heatmap)


def _no_simulation(monkeypatch):
    """Any run of a stack (a golden run, a replay) during the report fails the test."""
    import drivefi.run.golden as golden
    import drivefi.run.simulate as simulate

    def refuse(*args, **kw):
        raise AssertionError("the report ran a simulation")

    monkeypatch.setattr(golden, "golden_of", refuse)
    monkeypatch.setattr(golden, "record_golden", refuse)
    monkeypatch.setattr(simulate.Simulation, "run", refuse)


def _ranges(steps) -> list[list[int]]:
    out = []
    for k in steps:
        if out and k == out[-1][1] + 1:
            out[-1][1] = int(k)
        else:
            out.append([int(k), int(k)])
    return out


def test_an_agents_report_draws_its_stored_golden_run_without_running_it(
    cruiser, tmp_path, monkeypatch
):
    db, identity = cruiser
    stored = read_trace(golden_trace_path(db, 1))
    assert stored.meta["stack"] == identity and stored.meta["campaign"] == 1
    assert not stored.meta["fault"] and len(stored.frame) == SC.steps
    spy = Spy(monkeypatch)
    _no_simulation(monkeypatch)
    s = build_report(db, tmp_path / "r.html", top=2)
    page = (tmp_path / "r.html").read_text()
    # both timelines (from kept traces) and the heat map drew the stored golden run
    assert s["timelines"] == 2 and len(spy.timelines) == 2 and len(spy.heatmaps) == 1
    want = stored.frame["delta_lon"].to_numpy()
    for golden, labels in spy.timelines:
        assert np.array_equal(golden["delta_lon"].to_numpy(), want) and "golden run" in labels
    golden, legend = spy.heatmaps[0]
    assert np.array_equal(golden["delta_lat"].to_numpy(), stored.frame["delta_lat"].to_numpy())
    assert "delta_lon" in legend and "golden run unsafe" not in legend
    assert page.count("Golden run (grey): stored with the campaign") == 2
    assert "Golden margin strip: stored with the campaign" in page
    assert "No golden margin strip" not in page and "kept no golden run" not in page
    # the stack named by file, class and hash; its file read, not run (here: gone)
    path, _, digest = identity.rpartition(":Cruiser sha256=")
    assert f"stack under test: {identity}" in page and "agent class <b>Cruiser</b>" in page
    assert f"file <code>{path}</code>" in page and f"SHA-256 <code>{digest}</code>" in page
    assert "the file is no longer there" in page
    assert s["unsafe_golden"] == [] and "Unsafe golden run" not in page


def test_an_unsafe_golden_run_is_announced_with_its_hazard_steps(
    never_brakes, tmp_path, monkeypatch, capsys
):
    """On the page's summary, in ``drivefi report --json`` and on its stderr."""
    db = never_brakes
    spy = Spy(monkeypatch)
    golden = read_trace(golden_trace_path(db, 1)).frame
    hazard = np.flatnonzero(golden["hazard"].to_numpy())
    assert len(hazard), "the fixture agent's golden run should be unsafe"
    ranges = _ranges(hazard)
    rc = main(["report", str(db), "--out", str(tmp_path / "r.html"), "--top", "0", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0
    page = (tmp_path / "r.html").read_text()
    (u,) = json.loads(out)["unsafe_golden"]
    assert u["hazard_steps"] == ranges and u["campaigns"] == [1] and u["scenario"] == SC.name
    assert u["stack"] == stack_identity(f"{FIX / 'unsafe_agent.py'}:NeverBrakes")
    crash = int(np.flatnonzero(golden["collision"].to_numpy())[0])
    assert u["collision_step"] == crash
    dt = SC.dt
    said = ", ".join(f"{a}-{b} ({a * dt:.2f}-{b * dt:.2f} s)" if a < b else f"{a} ({a * dt:.2f} s)"
                     for a, b in ranges)  # fmt: skip
    assert f"warning: the golden run of {SC.name}" in err and f"hazard at steps {said}" in err
    summary = page[page.index('<section class="summary">') : page.index("</section>")]
    assert "Unsafe golden run" in summary and f"at steps {said}" in summary
    assert f"collision at step {crash} ({crash * dt:.2f} s)" in summary
    ((drawn, legend),) = spy.heatmaps  # the heat map's golden strip shades it
    assert drawn is not None and "golden run unsafe" in legend
    # as the announcement says: the fault starting inside the hazard is not critical
    assert ranges[0][0] <= 170 <= ranges[-1][1]
    from drivefi.campaign.store import ResultsStore

    store = ResultsStore(db)
    crit = store.outcomes(1).set_index("start")["critical"]
    store.close()
    assert crit[40] == 1 and crit[170] == 0


def test_an_old_agent_store_without_its_golden_run_says_so(cruiser, tmp_path, monkeypatch):
    db = _copy(cruiser[0], tmp_path)
    golden_trace_path(db, 1).unlink()  # as a store from before golden runs were kept
    spy = Spy(monkeypatch)
    _no_simulation(monkeypatch)
    s = build_report(db, tmp_path / "r.html", top=1)
    page = (tmp_path / "r.html").read_text()
    assert s["timelines"] == 1 and spy.timelines[0][0] is None and spy.heatmaps[0][0] is None
    assert "campaign 1 kept no golden run" in page and "No golden margin strip" in page
    assert "<b>No golden run</b>" in page


def test_a_golden_trace_of_another_stack_is_refused_by_name(
    cruiser, never_brakes, tmp_path, monkeypatch
):
    """A traces folder left by another store of the same name: its golden run is not drawn."""
    db = _copy(cruiser[0], tmp_path)
    shutil.copy(golden_trace_path(never_brakes, 1), golden_trace_path(db, 1))
    spy = Spy(monkeypatch)
    _no_simulation(monkeypatch)
    s = build_report(db, tmp_path / "r.html", top=0)
    page = (tmp_path / "r.html").read_text()
    assert spy.heatmaps[0][0] is None and s["unsafe_golden"] == []
    assert (
        "its stored golden run is not used" in page and "metadata field &#x27;stack&#x27;" in page
    )


def test_the_reference_report_uses_the_stored_golden_run_and_re_runs_it_for_old_stores(
    tmp_path, monkeypatch
):
    db = _campaign(tmp_path, None, STEER[:2])
    assert golden_trace_path(db, 1).is_file()
    with monkeypatch.context() as m:
        spy = Spy(m)
        _no_simulation(m)
        build_report(db, tmp_path / "a.html", top=0)
    stored = read_trace(golden_trace_path(db, 1)).frame
    assert np.array_equal(
        spy.heatmaps[0][0]["delta_lon"].to_numpy(), stored["delta_lon"].to_numpy()
    )
    assert "Golden margin strip: stored with the campaign" in (tmp_path / "a.html").read_text()
    golden_trace_path(db, 1).unlink()  # an older store: DriveFI re-runs its own stack's golden run
    spy = Spy(monkeypatch)
    build_report(db, tmp_path / "b.html", top=0)
    assert np.array_equal(
        spy.heatmaps[0][0]["delta_lon"].to_numpy(), stored["delta_lon"].to_numpy()
    )
    assert "Golden margin strip: re-run by the report" in (tmp_path / "b.html").read_text()


def test_a_golden_run_that_cannot_be_kept_is_a_warning_not_a_failed_campaign(tmp_path, caplog):
    (tmp_path / "r.traces").write_text("a file where the folder would be")
    with caplog.at_level(logging.WARNING, "drivefi.campaign"):
        db = _campaign(tmp_path, None, STEER[:1])
    assert "campaign 1: golden run's trace not kept" in caplog.text
    build_report(db, tmp_path / "r.html", top=0)
    assert "Golden margin strip: re-run by the report" in (tmp_path / "r.html").read_text()
