"""Fault models do exactly what they say, at exactly the steps they say; batches equal single runs."""

from __future__ import annotations

import numpy as np
import pytest

from drivefi.core import Fault
from drivefi.faults import FaultInjector, flip_bit, random_sequence
from drivefi.run.golden import record_golden
from drivefi.run.simulate import Simulation, TraceRecorder
from drivefi.stacks.reference import INJECTION_POINTS
from drivefi.world.scenario import load_scenario

SC = load_scenario("lead_brake")
POINTS = [p.name for p in INJECTION_POINTS]


@pytest.fixture(scope="module")
def golden():
    return record_golden(SC)


def run(faults, snapshot_from=None, golden=None):
    sim = Simulation(SC)
    rec = TraceRecorder(len(faults), sim.steps, sim.points)
    snap = None
    if snapshot_from is not None:
        snap = golden.snapshots.take(np.asarray(snapshot_from))
    sim.run(
        len(faults), snapshot=snap, injector=FaultInjector(faults, sim.ads.points), recorders=[rec]
    )
    return rec


def window_mask(start, dur, steps=SC.steps):
    m = np.zeros(steps, bool)
    m[start : start + dur] = True
    return m


@pytest.mark.parametrize("model,dur", [("1-fixed", 1), ("m-fixed", 7)])
def test_fixed_values_exactly_in_window(golden, model, dur):
    # a fault on the last module output (control.throttle) does not change its own clean value
    # at the fault steps, so the trace shows the constant inside the window and the golden value
    # before it; after the window the clean value is the stack's (not the constant).
    start = 100
    f = Fault("control.throttle", model, 0.9, None, start, dur)
    rec = run([f])
    seen = rec.cols["control.throttle"][0]
    win = window_mask(start, dur)
    assert np.all(seen[win] == 0.9)
    g = golden.trace.frame["control.throttle"].to_numpy()
    np.testing.assert_array_equal(seen[:start], g[:start])
    assert np.all(seen[start + dur : start + dur + 3] != 0.9)
    assert np.array_equal(rec.cols["fault_active"][0], win)


def test_bitflip_sign_exponent_mantissa():
    x = np.array([1.5, -2.0, 3.0])
    np.testing.assert_array_equal(flip_bit(x, 31), -x)  # sign
    assert flip_bit(np.array([1.0]), 23)[0] == 0.5  # lowest exponent bit: 2^0 -> 2^-1
    assert flip_bit(np.array([1.0]), 30)[0] == np.inf  # top exponent bit of 1.0 -> all ones
    assert flip_bit(np.array([1.0]), 22)[0] == 1.5  # top mantissa bit
    assert flip_bit(np.array([1.0]), 0)[0] == np.float32(1.0) + np.float32(2**-23)
    assert np.isnan(flip_bit(np.array([1.5]), 30)[0])  # non-zero mantissa + all-ones exponent: NaN
    # flipping twice restores the float32 value
    y = np.array([12.345])
    assert flip_bit(flip_bit(y, 7), 7)[0] == np.float32(12.345)


def test_bitflip_in_trace_and_nan_survives(golden):
    start, dur = 60, 3
    f = Fault("localization.speed", "bitflip", None, 29, start, dur)
    rec = run([f])
    seen = rec.cols["localization.speed"][0]
    clean = golden.trace.frame["localization.speed"].to_numpy()
    # inside the window: the flipped float32 of the clean value computed by the run at that step
    # (identical to golden's at the first fault step, since nothing differed before)
    assert seen[start] == flip_bit(np.array([clean[start]]), 29)[0]
    assert np.abs(seen[start : start + dur]).min() > 1e18  # an exponent bit: ~20 m/s becomes ~1e20
    np.testing.assert_array_equal(seen[:start], clean[:start])
    # the run went on to the end without crashing, applied actuation always finite and in range
    for c in ("throttle", "brake"):
        a = rec.cols[c][0]
        assert np.isfinite(a).all() and (a >= 0).all() and (a <= 1).all()


def test_m_random_follows_its_seed(golden):
    start, dur, seed = 150, 6, 1234
    f = Fault("*", "m-random", None, None, start, dur, seed)
    rec = run([f])
    idx, vals = random_sequence(seed, dur, INJECTION_POINTS)
    for j in range(dur):
        name = POINTS[idx[j]]
        assert rec.cols[name][0, start + j] == vals[j], (j, name)
    assert np.array_equal(rec.cols["fault_active"][0], window_mask(start, dur))


def test_one_random_is_a_one_step_constant():
    f = Fault("planning.target_speed", "1-random", 33.0, None, 80, 1)
    rec = run([f])
    seen = rec.cols["planning.target_speed"][0]
    assert seen[80] == 33.0 and seen[79] != 33.0 and seen[81] != 33.0


def test_snapshot_start_equals_run_from_zero(golden):
    faults = [
        Fault("control.steer", "m-fixed", 0.5, None, 120, 10),
        Fault("perception.obstacle_distance", "1-fixed", 150.0, None, 200, 1),
        Fault("control.brake", "bitflip", None, 29, 230, 4),
        Fault("*", "m-random", None, None, 90, 5, 7),
    ]
    for f in faults:
        a = run([f])
        b = run([f], snapshot_from=[f.start], golden=golden)
        for c, arr in a.cols.items():
            np.testing.assert_array_equal(
                arr[0, f.start :], b.cols[c][0, f.start :], err_msg=f"{f} {c}"
            )


def test_batch_equals_runs_one_at_a_time(golden):
    rng = np.random.default_rng(3)
    faults = []
    for _ in range(12):
        p = INJECTION_POINTS[int(rng.integers(len(INJECTION_POINTS)))]
        k = int(rng.integers(0, 380))
        faults.append(
            Fault(
                p.name, "m-fixed", float(rng.uniform(p.lo, p.hi)), None, k, int(rng.integers(1, 20))
            )
        )
    faults.append(Fault("control.steer", "bitflip", None, 31, 50, 2))
    starts = [f.start for f in faults]
    batch = run(faults, snapshot_from=starts, golden=golden)
    for i, f in enumerate(faults):
        one = run([f], snapshot_from=[f.start], golden=golden)
        for c, arr in one.cols.items():
            np.testing.assert_array_equal(
                arr[0, f.start :], batch.cols[c][i, f.start :], err_msg=f"{i} {c}"
            )
