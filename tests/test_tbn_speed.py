"""The fit's and the search's fast paths (issue 24) give the same bits as the plain ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from drivefi.run.golden import golden_of
from drivefi.run.testbed import Testbed
from drivefi.search.training import (
    point_specs,
    random_faults,
    simulate_faults,
    structure_for,
    training_set,
)
from drivefi.tbn import fit_model, from_traces
from drivefi.tbn.dataset import _assemble, restructure_reusing
from drivefi.tbn.family import fit_arrays, fit_family
from drivefi.tbn.fit import Refit
from drivefi.tbn.learn import _recurse, _recurse_grid
from drivefi.world.safety import StopParams, d_stop, d_stop_distinct
from drivefi.world.scenario import load_scenario


@pytest.fixture(scope="module")
def sets():
    sc = load_scenario("lead_brake")
    tb = Testbed()
    st = structure_for(tb)
    golden = golden_of(tb, sc, sc.seed)[0]
    ts = training_set(sc, 40, 0, golden, st, tb)
    traces = simulate_faults(sc, random_faults(sc, 20, 5, point_specs(tb)), tb)
    more = from_traces(traces, [f"r{i}" for i in range(len(traces))], sc, st)
    return ts, more


def _all_runs(ts, more):
    raw = [(n, dict(c)) for n, c in [*ts.raw, *more.raw]]
    return _assemble(raw, [*ts.sources, *more.sources], ts.structure, ts.contexts)


def test_extend_keeps_the_old_runs_slices_bit_for_bit(sets):
    ts, more = sets
    fast = ts.extend(more)
    slow = _all_runs(ts, more)
    pd.testing.assert_frame_equal(fast.slices, slow.slices, check_exact=True)
    assert fast.sources == slow.sources and fast.contexts == slow.contexts


def test_refit_reusing_features_is_the_same_fit(sets):
    ts, more = sets
    reuse = Refit()
    fit_model(ts, seed=0, reuse=reuse)
    ext = ts.extend(more)
    a = fit_model(ext, seed=0, reuse=reuse)
    b = fit_model(ext, seed=0)
    assert a.structure.params == b.structure.params
    for part in ("transition", "initial"):
        for k, c in getattr(a, part).items():
            d = getattr(b, part)[k]
            assert np.array_equal(c.beta, d.beta) and c.sigma == d.sigma, (part, k)
    # the reused set is the recomputed one
    st = a.structure
    fast = restructure_reusing(ext, st, ts.restructure(st))
    pd.testing.assert_frame_equal(fast.slices, ext.restructure(st).slices, check_exact=True)


def test_fit_arrays_is_pgmpys_fit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4))
    y = x @ [0.3, -1.0, 2.0, 0.0] + rng.normal(size=500)
    z = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "d": x[:, 3], "y": y})
    beta, sigma = fit_family(z, "y", ["a", "b", "c", "d"])
    beta2, sigma2 = fit_arrays(x, y)
    assert np.array_equal(beta, beta2) and sigma == sigma2


def test_recurse_grid_matches_one_value_at_a_time():
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(size=(7, 50)), axis=1)
    x[2, 10:13] = 40.0  # a jump a gate holds out
    x[3, 30:] = np.nan
    grids = {
        "gate": [{"width": w, "coast": c} for w in (np.inf, 0.5, 2.0) for c in (5.0, np.inf)],
        "rate_limit": [{"up": u, "down": d} for u in (np.inf, 1.0) for d in (np.inf, 3.0)],
    }
    for tname, grid in grids.items():
        for g, m in zip(grid, _recurse_grid(tname, x, grid, 0.05), strict=True):
            assert np.array_equal(m, _recurse(tname, x, g, 0.05), equal_nan=True), (tname, g)


def test_d_stop_of_distinct_states_is_d_stop():
    sc = load_scenario("lead_brake")
    p = StopParams.of(sc.ego.vehicle)
    rng = np.random.default_rng(2)
    n = 400
    v = rng.choice([0.0, 5.0, 20.0, 31.5], n)
    phi = rng.choice([0.0, -0.0, 0.05, -0.3], n)
    psi = rng.choice([0.0, 0.01], n)
    e = rng.choice([0.0, 0.4], n)
    args = (
        v.reshape(20, 20),
        phi.reshape(20, 20),
        psi.reshape(20, 20),
        e.reshape(20, 20),
        0.0,
        0.0,
    )
    for a, b in zip(d_stop_distinct(*args, p), d_stop(*args, p), strict=True):
        assert a.shape == b.shape and np.array_equal(a, b)
