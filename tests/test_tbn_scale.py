"""The 3-TBN's paths for many points (issue 24) give the bits of the plain ones: batched CPDs,
the covariance after a fault, the learned parameters' moment updates, one BLAS thread."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from drivefi.run.golden import golden_of
from drivefi.run.testbed import Testbed
from drivefi.search import value_grid
from drivefi.search.training import structure_for, training_set
from drivefi.tbn import GoldenWindows, SafetyModel, fit_model, score_faults
from drivefi.tbn import learn as learn_mod
from drivefi.tbn.predict import Predictor, _Batch
from drivefi.tbn.structure import Context, node
from drivefi.tbn.threads import one_blas_thread
from drivefi.world.scenario import load_scenario

AGENT = '''
import carla

from drivefi.inject import declare, inject
from drivefi.stacks.agent.loader import AutonomousAgent

for i in range(6):
    declare(f"perception.speed{i}", lo=0.0, hi=40.0, unit="m/s", doc="a speed reading")
declare("planning.cruise", lo=0.0, hi=40.0, unit="m/s", doc="speed the agent holds")


class Many(AutonomousAgent):
    """A cruise controller reading the speed through six points (their mean)."""

    def setup(self, path_to_conf_file):
        pass

    def sensors(self):
        return [{"type": "sensor.speedometer", "id": "speed"},
                {"type": "drivefi.observation", "id": "truth"}]

    def run_step(self, input_data, timestamp):
        speed = input_data["speed"][1]["speed"]
        truth = input_data["truth"][1]
        v = sum(inject(f"perception.speed{i}", speed) for i in range(6)) / 6
        ahead = [o["ds"] for o in truth["objects"] if o["ds"] > 0 and abs(o["dd"]) < 2.0]
        gap = min(ahead) if ahead else 200.0
        cruise = truth["set_speed"] if gap > 40.0 else max(0.0, (gap - 10.0) / 3.0)
        a = 0.8 * (inject("planning.cruise", cruise) - v)
        return carla.VehicleControl(throttle=min(max(a / 3.5, 0.0), 1.0), steer=0.0,
                                    brake=min(max(-a / 9.5, 0.0), 1.0))
'''


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    f = tmp_path_factory.mktemp("agent") / "many.py"
    f.write_text(AGENT)
    tb = Testbed.of(f"{f}:Many")
    sc = load_scenario("lead_brake").model_copy(update={"duration": 10.0})
    st = structure_for(tb)
    golden = golden_of(tb, sc, sc.seed)[0]
    ts = training_set(sc, 30, 0, golden, st, tb)
    model = fit_model(ts, seed=0)
    return sc, golden, ts, model


def _plain(pred: Predictor) -> Predictor:
    """The same predictor evaluating one CPD at a time."""
    slow = Predictor(pred.model, pred.ctx)
    slow._batches = [slow.ops[v.name] for v in slow.st.vars if v.kind != "exo"]
    return slow


def test_batched_cpds_score_the_same_bits(fitted):
    sc, golden, _, model = fitted
    gw = GoldenWindows(golden.trace, sc, model.structure)
    fast = Predictor(model, gw.context)
    assert any(isinstance(b, _Batch) and len(b.ops) >= 6 for b in fast._batches)
    slow, safety = _plain(fast), SafetyModel(sc)
    ks = np.arange(1, sc.steps - 30, 3)
    for p in ("perception.speed2", "planning.cruise", "control.throttle"):
        grid = np.asarray(value_grid(model.structure, p))
        k, v = np.repeat(ks, len(grid)), np.tile(grid, len(ks))
        for dur in (1, 5):
            a = score_faults(fast, gw, safety, k, p, v, dur, horizon=dur + 20)
            b = score_faults(slow, gw, safety, k, p, v, dur, horizon=dur + 20)
            for f in ("delta_lon", "delta_lat", "p_hazard", "step"):
                assert np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True), (p, dur, f)


def _joint_rollout_cov(pred: Predictor, do, m, h, keep):
    """The covariance propagated with the window's joint covariance at every step."""
    lg, st = pred.lg, pred.st
    names, nv = st.names, len(st.names)
    idx1 = [lg.index[node(n, 1)] for n in names]
    idx2 = [lg.index[node(n, 2)] for n in names]
    exo = {st.index[e] for e in st.exo}
    B = lg.B
    M2 = np.linalg.inv(np.eye(nv) - B[np.ix_(idx2, idx2)])
    T = M2 @ B[np.ix_(idx2, idx1)]
    sig2 = np.array([0.0 if i in exo else lg.sigma[j] for i, j in enumerate(idx2)])
    Q2 = (M2 * sig2**2) @ M2.T
    lat = st.descendants(do)
    d_i, l_i = [st.index[d] for d in do], [st.index[x] for x in lat]
    Bm = B[np.ix_(idx1, idx1)].copy()
    Bp = B[np.ix_(idx1, [lg.index[node(n, 0)] for n in names])]
    Sw = np.zeros((2 * nv, 2 * nv))
    res = np.zeros((h, len(keep), len(keep)))
    kk = [st.index[x] for x in keep]
    s = np.array([pred.model.std[x] for x in keep])
    for j in range(h):
        if j < m:
            R = np.hstack([np.zeros((nv, nv)), np.eye(nv)])
            R[d_i] = 0.0
            Ml = np.linalg.inv(np.eye(len(l_i)) - Bm[np.ix_(l_i, l_i)])
            keep_i = [i for i in range(nv) if i not in l_i]
            rows = Ml @ np.hstack([Bp[l_i], np.zeros((len(l_i), nv))])
            rows[:, nv + np.array(keep_i)] += Ml @ Bm[np.ix_(l_i, keep_i)]
            R[l_i] = rows
            noise = np.zeros((nv, nv))
            sl = np.array([lg.sigma[idx1[i]] for i in l_i])
            noise[np.ix_(l_i, l_i)] = (Ml * sl**2) @ Ml.T
            C1 = R @ Sw @ R.T + noise
            X01 = Sw[:nv] @ R.T
            Sw = np.block([[Sw[:nv, :nv], X01], [X01.T, C1]])
        C1 = Sw[nv:, nv:]
        C2 = T @ C1 @ T.T + Q2
        X12 = C1 @ T.T
        Sw = np.block([[C1, X12], [X12.T, C2]])
        res[j] = s[:, None] * C2[np.ix_(kk, kk)] * s[None, :]
    return res


def test_rollout_covariance_after_the_fault_is_the_same(fitted):
    _, _, _, model = fitted
    pred = Predictor(model)
    keep = ("s", "lane_offset", "heading_error", "v", "phi")
    for p in ("perception.speed0", "planning.cruise", "control.brake"):
        for m in (1, 3):
            got = pred.rollout_cov((p,), m, m + 12, keep)
            want = _joint_rollout_cov(pred, (p,), m, m + 12, keep)
            assert np.array_equal(got, want), (p, m)


def test_learned_parameters_moment_updates_match_plain_fits(fitted, monkeypatch):
    _, _, ts, _ = fitted
    st = ts.structure
    dt = Context.of(next(iter(ts.contexts.values()))).dt
    fast_calls = []
    sse = learn_mod.moments_sse
    monkeypatch.setattr(learn_mod, "moments_sse", lambda M, n: fast_calls.append(n) or sse(M, n))
    fast = learn_mod.learn_params(ts, st, dt)
    assert fast_calls, "the moment update never ran"
    design = learn_mod._design

    def no_rows(*a):  # every grid value fitted on its own
        d = design(*a)
        return dataclasses.replace(d, rows=np.zeros_like(d.rows))

    monkeypatch.setattr(learn_mod, "_design", no_rows)
    fast_calls.clear()
    plain = learn_mod.learn_params(ts, st, dt)
    assert not fast_calls
    assert fast == plain
    assert any(k.startswith("seen.") for k in fast)


def test_one_blas_thread_is_restored():
    from threadpoolctl import threadpool_info

    def blas():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas()
    with one_blas_thread():
        assert all(n == 1 for n in blas())
    assert blas() == before
