"""3-TBN fitting: parameter recovery (mle, bayes), model files, the `fit` command, and fidelity
of do() predictions against the simulator."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer

from drivefi.errors import InputError
from drivefi.tbn.dataset import FAULT_PREFIX, TrainingSet
from drivefi.tbn.fit import fit_model
from drivefi.tbn.model_io import FORMAT_VERSION, load_model, save_model, to_json
from drivefi.tbn.structure import Structure, Var, _p

POINTS = ("control.steer",)

# a known linear-Gaussian 3-TBN: (intercept, {parent: weight}, sigma), raw units
TRUE = {
    "a": (0.5, {("a", 1): 0.8, ("u", 0): 0.3}, 0.2),
    "b": (-1.0, {("a", 0): 0.6, ("b", 1): -0.4}, 0.5),
    "c": (2.0, {("b", 0): 1.5, ("c", 1): 0.2, ("a", 1): -0.7}, 0.1),
}
SYN = Structure(
    (
        Var("u", "exo"),
        Var("a", "state", _p("a@1", "u")),
        Var("b", "state", _p("a", "b@1")),
        Var("c", "state", _p("b", "c@1", "a@1")),
    ),
    features={},
    points=(),
)


def synthetic(runs: int = 30, steps: int = 120, seed: int = 0) -> TrainingSet:
    rng = np.random.default_rng(seed)
    frames = []
    for r in range(runs):
        x = {n: np.zeros(steps) for n in ("u", "a", "b", "c")}
        x["u"] = rng.normal(0, 1, steps)
        for t in range(steps):
            for n, (b0, w, s) in TRUE.items():
                val = b0 + rng.normal(0, s)
                for (p, lag), wi in w.items():
                    val += wi * (x[p][t - lag] if t - lag >= 0 else 0.0)
                x[n][t] = val
        df = pd.DataFrame(x)
        df["k"], df["run"] = np.arange(steps), r
        for p in POINTS:
            df[FAULT_PREFIX + p] = False
        frames.append(df)
    return TrainingSet(pd.concat(frames, ignore_index=True), ["synthetic"], {}, ["synthetic"])


def check_recovery(model, tol_w: float, tol_s: float) -> None:
    for n, (b0, w, s) in TRUE.items():
        b, weights, sigma = model.raw_cpd(n)
        got = dict(zip(model.transition[n].parents, weights, strict=True))
        for key, wi in w.items():
            assert abs(got[key] - wi) < tol_w, (n, key, got[key], wi)
        assert abs(b - b0) < 3 * tol_w, (n, b, b0)
        assert abs(sigma / s - 1) < tol_s, (n, sigma, s)


def test_mle_recovers_known_parameters():
    """Tolerance: 0.03 on each weight, 0.09 on intercepts, 5% on noise sd (3,600 windows)."""
    model = fit_model(synthetic(), "mle", holdout=0.0, structure=SYN)
    check_recovery(model, 0.03, 0.05)


@pytest.mark.slow
def test_bayes_recovers_known_parameters():
    """Posterior means within the same tolerances; the posterior sd is stored and small."""
    model = fit_model(
        synthetic(runs=20, steps=100), "bayes", holdout=0.0, structure=SYN, draws=150, tune=200
    )
    check_recovery(model, 0.05, 0.08)
    d = model.transition["c"].draws
    assert d["beta"].shape == (150, 4) and d["sigma"].shape == (150,)
    assert np.all(d["beta"].std(axis=0) < 0.05)


# -- real traces ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lead(golden_run):
    from drivefi.search.training import simulate_training
    from drivefi.world.scenario import load_scenario

    sc = load_scenario("lead_brake")
    g = golden_run("lead_brake")
    traces = simulate_training(sc, runs=60, seed=2, golden=g)
    return sc, g, traces


@pytest.fixture(scope="module")
def trace_files(lead, tmp_path_factory):
    from drivefi.run.trace import write_trace

    d = tmp_path_factory.mktemp("traces")
    return [str(write_trace(t, d / f"run{i:03d}.parquet")) for i, t in enumerate(lead[2])]


@pytest.fixture(scope="module")
def model(lead):
    from drivefi.tbn.dataset import from_traces

    return fit_model(from_traces(lead[2], scenario=lead[0]), "mle", holdout=0.2)


def run_cli(args):
    from drivefi.cli import main

    return main(args)


def test_fit_command_reports_holdout_error(trace_files, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert run_cli(["fit", *trace_files, "--out", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["scenarios"] == ["lead_brake"] and rep["runs"] == len(trace_files)
    for v in ("v", "theta", "phi", "x", "y"):
        assert rep["holdout_error"][v]["rmse"] < 1e-6  # kinematics given the applied actuation
    assert rep["holdout_error"]["control.steer"]["rmse"] < 0.2
    m = load_model(out)
    assert m.method == "mle" and m.holdout["windows"] > 0


def test_model_file_roundtrip(model, tmp_path):
    p = save_model(model, tmp_path / "m.json")
    m2 = load_model(p)
    assert to_json(m2) == json.loads(p.read_text())
    for n in model.transition:
        np.testing.assert_allclose(m2.transition[n].beta, model.transition[n].beta)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: "{ not json", "not a JSON model file"),
        (lambda d: json.dumps({**d, "version": FORMAT_VERSION + 1}), "refit it"),
        (lambda d: json.dumps({"format": "something else"}), "not a DriveFI 3-TBN model file"),
        (lambda d: json.dumps({**d, "transition": {}}), r"transition\.\S+: missing or malformed"),
        (
            lambda d: json.dumps({**d, "scaling": {**d["scaling"], "v": {"mean": "fast"}}}),
            r"scaling\.v\.mean: missing or malformed",
        ),
    ],
)
def test_bad_model_files_are_refused(model, tmp_path, mutate, message):
    p = tmp_path / "bad.json"
    p.write_text(mutate(to_json(model)))
    with pytest.raises(InputError, match=message):
        load_model(p)


def _write(frame, meta, path):
    from drivefi.run.trace import Trace, write_trace

    return str(write_trace(Trace(frame, meta), path))


def test_fit_bad_traces_exit_2(lead, tmp_path, capsys):
    g = lead[1].trace
    missing = _write(g.frame.drop(columns=["control.steer"]), g.meta, tmp_path / "missing.parquet")
    nan = g.frame.copy()
    nan.loc[57, "v"] = np.nan
    nanp = _write(nan, g.meta, tmp_path / "nan.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    for path, msg in (
        (missing, "names point(s) control.steer"),
        (nanp, "'v' at step 57"),
        (str(junk), "not a readable"),
    ):
        assert run_cli(["fit", path, "--out", str(tmp_path / "m.json")]) == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err and len(err.strip().splitlines()) <= 3, err
    assert run_cli(["fit", nanp, "--out", str(tmp_path / "m.json"), "--method", "gibbs"]) == 2


def test_register_adds_fit_command():
    from drivefi.cli.fit import register

    app = typer.Typer()
    register(app)
    assert [c.name for c in app.registered_commands] == ["fit", "structure"]


# -- fidelity under faults -------------------------------------------------------------------------
@pytest.mark.parametrize("point", ["control.steer", "control.throttle", "control.brake"])
def test_one_step_under_forced_actuation_matches_simulator(model, lead, point):
    """Stated error: one step after a forced actuation, |error| < 1e-6 on v, phi, heading error,
    lane offset and s (the kinematics are exact given the applied actuation); over a 5-step fault,
    < 0.05 m / 0.05 m/s on lane offset, s and v (golden-anchored rollout)."""
    from drivefi.core import Fault
    from drivefi.search.training import fidelity
    from drivefi.stacks.reference import POINTS_BY_NAME

    sc, g, _ = lead
    p = POINTS_BY_NAME[point]
    rng = np.random.default_rng(3)
    faults = [
        Fault(point, "m-fixed", float([p.lo, p.hi][i % 2]), None, int(rng.integers(5, 390)), 5, 0)
        for i in range(60)
    ]
    r = fidelity(model, sc, g, faults, horizon=5)
    for v in ("v", "phi", "heading_error", "lane_offset", "s"):
        assert r["max"][v][0] < 1e-6, (v, r["max"][v][0])
    for v in ("lane_offset", "s", "v"):
        assert r["max"][v][-1] < 0.05, (v, r["max"][v])


def test_bayes_model_predictions_integrate_over_draws(model, lead):
    """Posterior draws (faked around the MLE here) widen the predictive covariance."""
    from drivefi.tbn.evidence import GoldenWindows
    from drivefi.tbn.hazard import SafetyModel, score_faults
    from drivefi.tbn.predict import PosteriorPredictor, Predictor

    sc, g, _ = lead
    rng = np.random.default_rng(0)
    for c in model.transition.values():
        c.draws = {
            "beta": c.beta + rng.normal(0, 1e-3, (8, len(c.beta))),
            "sigma": np.full(8, c.sigma),
        }
    try:
        gw = GoldenWindows(g.trace, sc, model.structure)
        pp = PosteriorPredictor(model, gw.context, draws=8)
        k = np.array([50, 90])
        prev, cur = gw.window(k)
        ro = pp.rollout(prev, cur, gw.exo_seq(k, 6), {"control.steer": 0.5}, 3)
        ro1 = Predictor(model, gw.context).rollout(
            prev, cur, gw.exo_seq(k, 6), {"control.steer": 0.5}, 3
        )
        assert ro.cov.shape == (2, 6, 5, 5)
        assert np.all(ro.cov[:, -1, 1, 1] >= ro1.cov[-1, 1, 1])
        np.testing.assert_allclose(ro.mean["lane_offset"], ro1.mean["lane_offset"], atol=0.05)
        sc_ = score_faults(pp, gw, SafetyModel(sc), k, "control.steer", 0.5, 3)
        assert sc_.p_hazard.shape == (2,)
    finally:
        for c in model.transition.values():
            c.draws = None
