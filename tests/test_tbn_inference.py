"""3-TBN inference: the compiled closed form against pgmpy and NUTS, and the do() predictor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from drivefi.search.twin import TWIN as STRUCTURE
from drivefi.tbn.lg import LinearGaussianTBN
from drivefi.tbn.model import CPD, TBNModel
from drivefi.tbn.predict import Predictor
from drivefi.tbn.structure import STATE, node

# the white-box oracle's structure: the closed-form inference is checked on its graph (the
# black-box structure goes through the same code)
EXO, POINTS = STRUCTURE.exo, STRUCTURE.points


def random_model(seed: int = 0) -> TBNModel:
    """The real structure with random, well-conditioned CPDs (standardised units)."""
    rng = np.random.default_rng(seed)
    names = STRUCTURE.names

    def cpds(first: bool):
        out = {}
        for v in STRUCTURE.vars:
            par = () if v.kind == "exo" else STRUCTURE.parents(v.name, first)
            w = rng.normal(0, 0.5 / np.sqrt(max(len(par), 1)), len(par))
            out[v.name] = CPD(
                v.name, par, np.r_[rng.normal(0, 0.3), w], float(rng.uniform(0.3, 1.0)), 100
            )
        return out

    mean = {n: float(rng.normal(0, 5)) for n in names}
    std = {n: float(rng.uniform(0.5, 3)) for n in names}
    ctx = {"dt": 0.05, "wheelbase": 2.9, "phi_max": 0.6, "steer_rate": 0.5, "v_max": 50.0}
    ctx |= {"accel_max": 3.5, "brake_max": 9.5, "a_lat_max": 2.0, "lane_c": 1.75}
    return TBNModel(
        "mle", mean, std, cpds(False), cpds(True), {}, {"synthetic": ctx}, structure=STRUCTURE
    )


class UnroundedLGBN:
    """pgmpy's predict_probability with its 8-decimal rounding of the joint Gaussian turned off
    (fitted kinematics have CPD variances far below 1e-8)."""

    @staticmethod
    def wrap(net):
        cls = type(net)

        class Net(cls):
            def to_joint_gaussian(self):
                import networkx as nx

                order = list(nx.topological_sort(self))
                ix = {v: i for i, v in enumerate(order)}
                n = len(order)
                B, om, mu = np.zeros((n, n)), np.zeros((n, n)), {}
                for v in order:
                    c = self.get_cpds(v)
                    mu[v] = c.beta[0] + sum(
                        b * mu[e] for b, e in zip(c.beta[1:], c.evidence, strict=True)
                    )
                    for b, e in zip(c.beta[1:], c.evidence, strict=True):
                        B[ix[e], ix[v]] = b
                    om[ix[v], ix[v]] = c.std**2
                inv = np.linalg.inv(np.eye(n) - B)
                return np.array([mu[v] for v in order]), inv.T @ om @ inv

        net.__class__ = Net
        return net


def search_pattern(point: str):
    """Evidence of a search query: slice 0, slice 1 but the point's descendants, slice 2's exo."""
    lat = set(STRUCTURE.descendants([point]))
    ev = [node(n, 0) for n in STRUCTURE.names]
    ev += [node(n, 1) for n in STRUCTURE.names if n not in lat and n != point]
    ev += [node(e, 2) for e in EXO]
    targets = [node(n, 1) for n in STRUCTURE.names if n in lat] + [
        node(n, 2) for n in STRUCTURE.names if n not in EXO
    ]
    return tuple(ev), tuple(targets), (node(point, 1),)


def pgmpy_answer(lg: LinearGaussianTBN, ev, targets, do, z_in, unrounded=False):
    net = lg.to_pgmpy(cut=do)
    if unrounded:
        net = UnroundedLGBN.wrap(net)
    df = pd.DataFrame(z_in, columns=[*ev, *do])
    names, mu, cov = net.predict_probability(df)
    order = [names.index(t) for t in targets]
    return mu[:, order], cov[np.ix_(order, order)]


def _close(a, b, rtol=1e-6):
    scale = np.maximum(np.abs(b), np.abs(b).max() * 1e-6)
    assert np.all(np.abs(a - b) <= rtol * scale), float(np.max(np.abs(a - b) / scale))


@pytest.mark.parametrize(
    "point", ["control.steer", "perception.obstacle_distance", "planning.target_speed"]
)
def test_closed_form_equals_pgmpy_on_cut_graph(point):
    lg = LinearGaussianTBN(random_model(1))
    ev, targets, do = search_pattern(point)
    rng = np.random.default_rng(2)
    z = rng.normal(0, 1, (7, len(ev) + len(do)))
    f = lg.compile(ev, targets, do, raw=False)
    mu_ref, cov_ref = pgmpy_answer(lg, ev, targets, do, z, unrounded=True)
    _close(f.mean(z), mu_ref)
    _close(f.cov, cov_ref)
    # stock pgmpy rounds the joint Gaussian to 8 decimals: equal to that precision
    mu_st, cov_st = pgmpy_answer(lg, ev, targets, do, z)
    np.testing.assert_allclose(f.mean(z), mu_st, atol=2e-5)
    np.testing.assert_allclose(f.cov, cov_st, atol=2e-5)


def test_closed_form_non_ancestral_evidence_uses_precision():
    """Evidence downstream of latent nodes (slice 2 partly observed, slice 1 partly hidden)."""
    lg = LinearGaussianTBN(random_model(3))
    rng = np.random.default_rng(4)
    hidden1 = {node(n, 1) for n in ("v", "a", "control.throttle", "u_lon")}
    ev = tuple(n for n in lg.nodes if (n.endswith("_0") or n.endswith("_1")) and n not in hidden1)
    ev += (node("v", 2), node("perception.lane_offset", 2))
    do = (node("control.steer", 1),)
    ev = tuple(e for e in ev if e not in do)
    targets = (*sorted(hidden1), node("x", 2), node("phi", 2))
    z = rng.normal(0, 1, (5, len(ev) + 1))
    f = lg.compile(ev, targets, do, raw=False)
    mu_ref, cov_ref = pgmpy_answer(lg, ev, targets, do, z, unrounded=True)
    _close(f.mean(z), mu_ref)
    _close(f.cov, cov_ref)


def test_closed_form_equals_pgmpy_on_fitted_model(small_model):
    """The fitted weights; CPD noise floored at 0.05 (standardised) for this comparison only: the
    fitted kinematics are near-deterministic (sigma ~ 1e-7), which leaves pgmpy's joint covariance
    too ill-conditioned for its solve (the compiled form runs the structural model forward)."""
    lg = LinearGaussianTBN(small_model)
    lg.sigma = np.maximum(lg.sigma, 0.05)
    ev, targets, do = search_pattern("control.brake")
    rng = np.random.default_rng(5)
    z = rng.normal(0, 1, (4, len(ev) + len(do)))
    f = lg.compile(ev, targets, do, raw=False)
    mu_ref, cov_ref = pgmpy_answer(lg, ev, targets, do, z, unrounded=True)
    _close(f.mean(z), mu_ref)
    _close(f.cov, cov_ref)


def test_predictor_equals_closed_form_where_linear(small_model, lead_windows):
    """With do() on an actuation point, features recomputed and given as evidence, the predictor's
    next-step kinematics are the linear-Gaussian closed form (raw units)."""
    pred = Predictor(small_model, lead_windows.context)
    k = np.arange(20, 380, 7)
    prev, cur = lead_windows.window(k)
    exo = lead_windows.exo(k + 1)
    vals = np.linspace(0.0, 1.0, len(k))
    mean, cov = pred.predict(prev, cur, exo, {"control.throttle": vals})
    cur2 = pred.intervene(prev, cur, {"control.throttle": vals})
    ev = {node(n, 0): prev[n] for n in STRUCTURE.names}
    ev |= {node(n, 1): cur2[n] for n in STRUCTURE.names if n != "control.throttle"}
    ev |= {node(e, 2): exo[e] for e in EXO}
    targets = tuple(node(s, 2) for s in STATE)
    mu, _ = pred.lg.query(ev, targets, {node("control.throttle", 1): vals})
    for i, s in enumerate(STATE):
        lo = small_model.saturation.get(s, (None, None))[0]
        ref = mu[:, i] if lo is None else np.maximum(mu[:, i], lo)
        np.testing.assert_allclose(mean[s], ref, rtol=1e-9, atol=1e-9 * small_model.std[s])
    assert cov.shape == (len(STATE), len(STATE))
    assert np.all(np.linalg.eigvalsh(cov) > -1e-12)


def test_compiled_maps_are_cached(small_model):
    pred = Predictor(small_model)
    a = pred.one_step_cov(("control.steer",), STATE)
    n = pred.lg._compile.cache_info().currsize
    b = pred.one_step_cov(("control.steer",), STATE)
    assert pred.lg._compile.cache_info().currsize == n
    np.testing.assert_array_equal(a, b)


def test_rollout_shapes_and_covariance_growth(small_model, lead_windows):
    pred = Predictor(small_model, lead_windows.context)
    k = np.array([50, 120, 200])
    prev, cur = lead_windows.window(k)
    ro = pred.rollout(prev, cur, lead_windows.exo_seq(k, 12), {"control.steer": 0.5}, duration=5)
    assert ro.mean["lane_offset"].shape == (3, 12)
    assert ro.cov.shape == (12, 5, 5)
    var_d = ro.cov[:, 1, 1]
    assert np.all(np.diff(var_d) >= -1e-15)  # uncertainty of the offset does not shrink


@pytest.mark.slow
def test_nuts_posterior_agrees_with_closed_form():
    """NUTS over the latent nodes of a search query (random well-conditioned CPDs, one evidence
    row) reproduces the closed-form posterior means and standard deviations within MC error."""
    import pymc as pm

    model = random_model(7)
    lg = LinearGaussianTBN(model)
    point = "planning.target_speed"
    ev, _, do = search_pattern(point)
    targets = (node("v", 2), node("control.throttle", 2), node("u_lon", 1), node("phi", 2))
    rng = np.random.default_rng(8)
    z_in = rng.normal(0, 1, len(ev) + 1)
    f = lg.compile(ev, targets, do, raw=False)
    mu_cf, sd_cf = f.mean(z_in[None])[0], np.sqrt(np.diag(f.cov))
    given = dict(zip((*ev, *do), z_in, strict=True))
    lat_all = [n for n in lg.nodes if n not in given]
    with pm.Model():
        val = dict(given)
        for n in lat_all:  # topological order: parents are already defined
            i = lg.index[n]
            par = np.flatnonzero(lg.B[i])
            mu = lg.b[i] + sum(lg.B[i, j] * val[lg.nodes[j]] for j in par)
            val[n] = pm.Normal(n.replace(".", "__"), mu, lg.sigma[i])
        idata = pm.sample(800, tune=600, chains=2, cores=1, random_seed=3, progressbar=False)
    post = idata.posterior
    for t, m0, s0 in zip(targets, mu_cf, sd_cf, strict=True):
        x = post[t.replace(".", "__")].values.ravel()
        se = s0 / np.sqrt(len(x) / 4)  # generous effective sample size
        assert abs(x.mean() - m0) < 4 * se + 1e-3, (t, x.mean(), m0)
        assert abs(x.std() - s0) < 0.1 * s0, (t, x.std(), s0)


def test_points_are_do_able(small_model, lead_windows):
    pred = Predictor(small_model, lead_windows.context)
    k = np.array([100, 101])
    prev, cur = lead_windows.window(k)
    for p in POINTS:
        mean, _ = pred.predict(prev, cur, lead_windows.exo(k + 1), {p: np.array([0.0, 1.0])})
        assert all(np.all(np.isfinite(m)) for m in mean.values()), p
    with pytest.raises(ValueError):
        pred.predict(prev, cur, lead_windows.exo(k + 1), {"v": 1.0})


@pytest.fixture(scope="module")
def lead_data(golden_run):
    from drivefi.search.training import training_set
    from drivefi.tbn.evidence import GoldenWindows
    from drivefi.world.scenario import load_scenario

    sc = load_scenario("lead_brake")
    g = golden_run("lead_brake")
    ts = training_set(sc, runs=60, seed=1, golden=g, structure=STRUCTURE)
    return sc, g, ts, GoldenWindows(g.trace, sc, STRUCTURE)


@pytest.fixture(scope="module")
def small_model(lead_data):
    from drivefi.tbn.fit import fit_model

    return fit_model(lead_data[2], "mle", holdout=0.2)


@pytest.fixture(scope="module")
def lead_windows(lead_data):
    return lead_data[3]


def test_score_faults_flags_a_steering_fault(small_model, lead_windows, lead_data):
    """A strong steering fault at speed is scored hazardous; a no-op throttle fault is not."""
    from drivefi.tbn.hazard import SafetyModel, score_faults

    sc = lead_data[0]
    pred = Predictor(small_model, lead_windows.context)
    safety = SafetyModel(sc)
    k = np.array([40, 60, 80])
    hot = score_faults(pred, lead_windows, safety, k, "control.steer", 1.0, duration=20)
    assert np.all(hot.p_hazard > 0.5) and np.all(hot.delta < 0)
    same = lead_windows.at(k)["control.throttle"]
    cold = score_faults(pred, lead_windows, safety, k, "control.throttle", same, duration=1)
    assert np.all(cold.p_hazard < 0.5) and np.all(cold.delta > 0)
    assert hot.step.shape == (3,) and np.all((hot.step >= 1) & (hot.step <= 40))


def test_model_of_another_scenario_is_refused(small_model):
    from drivefi.errors import InputError
    from drivefi.tbn.model_io import check_scenario

    check_scenario(small_model, "lead_brake")
    with pytest.raises(InputError, match="fitted on lead_brake, not on scenario 'highway'"):
        check_scenario(small_model, "highway", "m.json")


def test_counterfactual_rollout_without_fault_reproduces_golden(small_model, lead_windows):
    """Abduction: with the golden run's residuals and no fault, the rollout is the golden run."""
    pred = Predictor(small_model, lead_windows.context)
    k = np.array([30, 90, 150])
    h = 25
    ro = pred.rollout(
        *lead_windows.window(k), lead_windows.exo_seq(k, h), {}, 0, golden=(lead_windows, k)
    )
    gold = lead_windows.seq(k, h, ro.vars)
    for v in ro.vars:
        assert np.allclose(ro.mean[v], gold[v], atol=1e-6), v


def test_tracker_features_replay_the_stack(small_model, lead_data):
    """The recursive features are the reference ADS's trackers and speed reference: the steer
    command is (nearly) a linear function of them, so its CPD is near-deterministic."""
    from drivefi.tbn.structure import Context

    ctx = Context.from_meta(lead_data[1].trace.meta)
    gw = lead_data[3]
    ref, tgt = gw.cols["ref"], gw.cols["planning.target_speed"]
    assert np.allclose(ref[1:], np.minimum(tgt[1:], ref[:-1] + 2.0 * ctx.dt))
    assert small_model.raw_cpd("control.steer")[2] < 0.01
    # fault runs start from the golden snapshot's stack state (in their metadata): the speed
    # controller's command is then exactly linear in the reference, speed estimate and integral
    assert small_model.raw_cpd("u_lon")[2] < 1e-3
    assert small_model.raw_cpd("planning.target_speed")[2] < 1e-3
    gw = lead_data[3]
    est, meas = gw.cols["lane_est"], gw.cols["perception.lane_offset"]
    assert np.nanmax(np.abs(est - meas)) < 0.1  # golden: the tracker follows the measurement


def test_gated_perception_faults_are_not_hazards(small_model, lead_windows, lead_data):
    """A lane-offset or heading reading far outside the lane tracker's gate is coasted through
    (for up to 30 steps), so a 20-step fault of it is scored safe; a speed target that jumps up
    only raises the controller's reference at 2 m/s^2."""
    from drivefi.tbn.hazard import SafetyModel, score_faults

    pred = Predictor(small_model, lead_windows.context)
    safety = SafetyModel(lead_data[0])
    k = np.array([40, 60, 80])
    for p, val in (("perception.lane_offset", 2.0), ("perception.heading_error", -0.5)):
        sc = score_faults(pred, lead_windows, safety, k, p, val, duration=20)
        assert np.all(sc.p_hazard < 0.5), p
    ro = pred.rollout(
        *lead_windows.window(k), lead_windows.exo_seq(k, 20),
        {"planning.target_speed": 40.0}, 20, keep=("v",), golden=(lead_windows, k),
    )  # fmt: skip
    gold = lead_windows.seq(k, 20, ("v",))["v"]
    assert np.all(ro.mean["v"] - gold < 2.5)
