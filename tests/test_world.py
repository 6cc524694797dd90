"""Embedded world and reference ADS: golden runs, a steering fault through the injector hook,
determinism and snapshots, the vehicle interface, collisions and road geometry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from drivefi.bridges.embedded import EmbeddedBridge, obb_overlap
from drivefi.core import Actuation, Injector
from drivefi.run.golden import record_golden
from drivefi.run.simulate import OutcomeRecorder, Simulation, TraceRecorder
from drivefi.world.road import RoadGeometry
from drivefi.world.scenario import Road, Segment, bundled_names, load_scenario
from drivefi.world.vehicle import guard

SCENARIOS = bundled_names()


class Forced(Injector):
    """Forces one injection point to a value on steps [start, start + duration)."""

    def __init__(self, point: str, value: float, start: int, duration: int):
        super().__init__()
        self.point, self.value, self.start, self.duration = point, value, start, duration

    def active(self, k):
        return (k >= self.start) & (k < self.start + self.duration)

    def corrupt(self, point, value, k):
        if point != self.point:
            return value
        return np.where(self.active(k), self.value, value)


def run_traced(scenario, n=1, **kw):
    """Run a Simulation with a TraceRecorder and an OutcomeRecorder; return both."""
    sim = Simulation(scenario)
    tr = TraceRecorder(n, sim.steps, sim.points)
    oc = OutcomeRecorder(n)
    sim.run(n, recorders=[tr, oc], **kw)
    return tr, oc


def assert_rows_equal(cols: dict, row: int, frame: pd.DataFrame, start: int = 0) -> None:
    """Trace-recorder row ``row`` equals the frame bit for bit from step ``start`` on (NaN = NaN)."""
    for c, arr in cols.items():
        got, want = arr[row, start:], frame[c].to_numpy()[start:]
        assert np.array_equal(got, want, equal_nan=True), f"column {c} differs from step {start}"


# --- golden runs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCENARIOS)
def test_golden_run_is_safe_but_near_the_boundary(golden_run, name):
    f = golden_run(name).trace.frame
    assert len(f) == load_scenario(name).steps
    assert not f["collision"].any() and not f["departure"].any()
    assert not f["hazard"].any()
    assert (f["delta_lon"] > 0).all(), f"min delta_lon {f['delta_lon'].min():.3f} m"
    assert (f["delta_lat"] > 0).all(), f"min delta_lat {f['delta_lat'].min():.3f} m"
    for c in ("x", "y", "v", "d_stop_lon", "d_safe_lon", "delta_lon", "delta_lat"):
        assert np.isfinite(f[c]).all(), c
    # close enough to the boundary that faults can matter: within 10 m longitudinally (a fraction
    # of a second of driving) and within a lane's spare width (< 1 m) laterally
    assert f["delta_lon"].min() < 10.0
    assert f["delta_lat"].min() < 1.0
    assert not f["fault_active"].any()


def test_bundled_scenarios_cover_the_issue():
    wanted = {
        "lead_brake",
        "stopped_vehicle",
        "cut_in",
        "pedestrian_crossing",
        "curved_following",
        "highway",
    }
    assert wanted <= set(SCENARIOS)


# --- a realistic steering fault through the injector hook ------------------------------------------


def test_stuck_steering_at_20_mps_is_a_hazard(golden_run):
    """control.steer stuck at 0.5 for 0.5 s (10 steps at dt = 0.05) from t = 1 s at 20 m/s."""
    sc = load_scenario("lead_brake")
    ref = golden_run("lead_brake").trace.frame
    start, dur = 20, 10
    assert sc.dt == 0.05 and 19.0 < ref["v"][start] < 21.0
    tr, oc = run_traced(sc, injector=Forced("control.steer", 0.5, start, dur))
    f = tr.cols
    window = np.zeros(sc.steps, bool)
    window[start : start + dur] = True
    assert np.array_equal(f["fault_active"][0], window)
    assert np.all(f["control.steer"][0, window] == 0.5)  # what the stack saw, after the hook
    assert np.all(f["steer"][0, window] == 0.5)  # what the vehicle interface applied
    # before the fault the run is the golden run, bit for bit
    for c in ("x", "y", "v", "phi", "delta_lat", "control.steer"):
        assert np.array_equal(f[c][0, :start], ref[c].to_numpy()[:start]), c
    dlat = f["delta_lat"][0]
    assert dlat.min() <= 0, f"min delta_lat {dlat.min():.3f} m: the fault was not flagged"
    assert oc.first_hazard[0] >= start and oc.min_delta_lat[0] == dlat.min()
    assert not f["hazard"][0, :start].any()


def test_one_step_steering_glitch_is_masked(golden_run):
    """Control for the test above: the same value for one step (0.05 s) stays safe, so the hazard
    above comes from the fault's duration, not from a hair-trigger safety potential."""
    sc = load_scenario("lead_brake")
    tr, oc = run_traced(sc, injector=Forced("control.steer", 0.5, 20, 1))
    assert tr.cols["steer"][0, 20] == 0.5
    assert oc.first_hazard[0] == -1 and oc.min_delta_lat[0] > 0
    assert not np.array_equal(tr.cols["x"][0], golden_run("lead_brake").trace.frame["x"].to_numpy())


def test_accidents_are_detected():
    """Full throttle, no brake into the stopped car: a collision; hard steering: road departure."""
    sc = load_scenario("stopped_vehicle")

    class NoBrakes(Injector):
        def corrupt(self, point, value, k):
            return {
                "control.throttle": np.ones_like(value),
                "control.brake": np.zeros_like(value),
            }.get(point, value)

        def active(self, k):
            return np.ones(np.shape(k), bool)

    tr, oc = run_traced(sc, injector=NoBrakes())
    k = oc.collision_step[0]
    assert k > 0 and tr.cols["collision"][0, k] and not tr.cols["collision"][0, k - 1]
    assert oc.first_hazard[0] < k  # the safety potential warned before the crash
    assert tr.cols["collision"][0, k:].all()  # the flag is sticky

    tr, oc = run_traced(sc, injector=Forced("control.steer", 1.0, 20, sc.steps))
    assert oc.departure_step[0] > 20 and oc.first_hazard[0] < oc.departure_step[0]
    assert oc.collision_step[0] == -1


# --- determinism and snapshots -------------------------------------------------------------------


def test_same_seed_same_trace(golden_run):
    sc = load_scenario("cut_in")
    a = golden_run("cut_in").trace
    b = record_golden(sc).trace
    pd.testing.assert_frame_equal(a.frame, b.frame, check_exact=True)
    assert a.meta == b.meta
    # the seed drives the sensor noise: another seed gives another trace
    c = record_golden(sc, seed=sc.seed + 1).trace
    assert not np.array_equal(a.frame["perception.lane_offset"], c.frame["perception.lane_offset"])
    assert c.meta["seed"] == sc.seed + 1


@pytest.mark.parametrize("name", ["lead_brake", "curved_following", "highway"])
def test_resume_from_snapshot_equals_uninterrupted_run(golden_run, name):
    g = golden_run(name)
    sc = load_scenario(name)
    ref = g.trace.frame
    # one run resumed mid-drive
    k = 137
    sim = Simulation(sc)
    tr = TraceRecorder(1, sim.steps, sim.points)
    sim.run(1, snapshot=g.snapshots.take([k]), recorders=[tr])
    assert_rows_equal(tr.cols, 0, ref, start=k)
    assert not tr.filled[0, :k].any() and tr.filled[0, k:].all()
    # many runs resumed at different steps (first, last, repeated) in one lock-step batch, which
    # is what a campaign does
    ks = np.array([5, sc.steps - 1, 0, 250, 250, 77, 1])
    sim = Simulation(sc)
    tr = TraceRecorder(len(ks), sim.steps, sim.points)
    sim.run(len(ks), snapshot=g.snapshots.take(ks), recorders=[tr])
    for row, k in enumerate(ks):
        assert_rows_equal(tr.cols, row, ref, start=int(k))
        assert not tr.filled[row, :k].any()


def test_faulty_run_resumed_at_fault_step_equals_full_faulty_run(golden_run):
    """A campaign starts a faulty run from the golden snapshot at its first fault step."""
    sc = load_scenario("lead_brake")
    g = golden_run("lead_brake")
    full, _ = run_traced(sc, injector=Forced("control.steer", 0.5, 20, 10))
    sim = Simulation(sc)
    tr = TraceRecorder(1, sim.steps, sim.points)
    sim.run(
        1,
        snapshot=g.snapshots.take([20]),
        injector=Forced("control.steer", 0.5, 20, 10),
        recorders=[tr],
    )
    for c in tr.cols:
        assert np.array_equal(tr.cols[c][0, 20:], full.cols[c][0, 20:], equal_nan=True), c


@pytest.mark.parametrize("name", ["pedestrian_crossing", "highway"])
def test_batch_of_identical_runs_equals_single_run(golden_run, name):
    ref = golden_run(name).trace.frame
    tr, oc = run_traced(load_scenario(name), n=7)
    for row in range(7):
        assert_rows_equal(tr.cols, row, ref)
    assert np.all(oc.min_delta_lon == ref["delta_lon"].min())
    assert np.all(oc.min_delta_lat == ref["delta_lat"].min())


# --- the vehicle interface -----------------------------------------------------------------------


def test_guard_replaces_non_finite_and_clamps():
    last = Actuation(
        np.array([0.3, 0.3, 0.3, 0.3]), np.array([0.1, 0.1, 0.1, 0.1]), np.array([-0.2] * 4)
    )
    cmd = Actuation(
        np.array([np.nan, 1.7, 0.5, -np.inf]),
        np.array([np.inf, -0.4, 0.0, 2.0]),
        np.array([-np.inf, np.nan, -3.0, 0.25]),
    )
    out = guard(cmd, last)
    np.testing.assert_array_equal(out.throttle, [0.3, 1.0, 0.5, 0.3])
    np.testing.assert_array_equal(out.brake, [0.1, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(out.steer, [-0.2, -0.2, -1.0, 0.25])
    # valid in-range commands pass through unchanged
    ok = Actuation(np.array([0.0, 1.0]), np.array([0.5, 0.0]), np.array([-1.0, 0.7]))
    back = guard(ok, Actuation(np.zeros(2), np.zeros(2), np.zeros(2)))
    for a, b in zip(
        (back.throttle, back.brake, back.steer), (ok.throttle, ok.brake, ok.steer), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_bridge_survives_corrupted_commands():
    sc = load_scenario("lead_brake")
    br = EmbeddedBridge(sc)
    br.reset(sc, sc.seed, n=3)
    good = Actuation(np.full(3, 0.2), np.zeros(3), np.full(3, 0.05))
    br.step(good)
    bad = Actuation(
        np.array([np.nan, np.inf, 5.0]),
        np.array([np.nan, -1.0, np.nan]),
        np.array([np.inf, np.nan, -9.0]),
    )
    obs = br.step(bad)
    st = br.state
    np.testing.assert_array_equal(st.last_throttle, [0.2, 0.2, 1.0])
    np.testing.assert_array_equal(st.last_brake, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(st.last_steer, [0.05, 0.05, -1.0])
    for _ in range(20):
        obs = br.step(bad)
    for name in ("x", "y", "theta", "v", "phi", "a"):
        assert np.isfinite(getattr(obs, name)).all(), name


def test_nan_commands_through_the_stack_keep_the_last_valid_one(golden_run):
    sc = load_scenario("lead_brake")
    ref = golden_run("lead_brake").trace.frame
    tr, _ = run_traced(sc, injector=Forced("control.throttle", np.nan, 50, 10))
    f = tr.cols
    assert np.isnan(f["control.throttle"][0, 50:60]).all()  # the stack saw NaN ...
    assert np.all(f["throttle"][0, 50:60] == ref["throttle"][49])  # ... the car kept the last one
    for c in ("x", "v", "delta_lon", "delta_lat"):
        assert np.isfinite(f[c][0]).all(), c


# --- oriented bounding boxes -----------------------------------------------------------------------


def corners(x, y, th, hl, hw):
    c, s = np.cos(th), np.sin(th)
    return [
        (x + c * u - s * w, y + s * u + c * w)
        for u, w in ((hl, hw), (-hl, hw), (-hl, -hw), (hl, -hw))
    ]


def clip_area(p, q):
    """Area of the intersection of convex counter-clockwise polygons (Sutherland-Hodgman)."""
    out = p
    for i in range(len(q)):
        (ax, ay), (bx, by) = q[i], q[(i + 1) % len(q)]
        inp, out = out, []
        if not inp:
            break

        def side(pt, ax=ax, ay=ay, bx=bx, by=by):
            return (bx - ax) * (pt[1] - ay) - (by - ay) * (pt[0] - ax)

        for j in range(len(inp)):
            cur, prev = inp[j], inp[j - 1]
            sc, sp = side(cur), side(prev)
            if sc >= 0:
                if sp < 0:
                    t = sp / (sp - sc)
                    out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
                out.append(cur)
            elif sp >= 0:
                t = sp / (sp - sc)
                out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
    if len(out) < 3:
        return 0.0
    return 0.5 * abs(
        sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(out, out[1:] + out[:1], strict=True))
    )


def test_obb_overlap_hand_cases():
    r2 = np.sqrt(2.0)
    cases = [
        # (box1, box2, overlap): box = (x, y, theta, half length, half width)
        ((0, 0, 0, 2, 1), (0, 0, 0, 2, 1), True),  # same place
        ((0, 0, 0, 2, 1), (3.9, 0, 0, 2, 1), True),  # nose to tail, 0.1 m overlap
        ((0, 0, 0, 2, 1), (4.1, 0, 0, 2, 1), False),  # 0.1 m gap
        ((0, 0, 0, 2, 1), (0, 1.95, 0, 2, 1), True),  # side by side, touching into
        ((0, 0, 0, 2, 1), (0, 2.05, 0, 2, 1), False),
        # square vs. a square turned 45 deg: its corner reaches sqrt(2) toward the first one
        ((0, 0, 0, 1, 1), (1 + r2 - 0.01, 0, np.pi / 4, 1, 1), True),
        ((0, 0, 0, 1, 1), (1 + r2 + 0.01, 0, np.pi / 4, 1, 1), False),
        # two long thin parallel boxes on a diagonal: their axis-aligned hulls overlap, but they
        # are separated across their own axis (offset 1.1 > 0.5 + 0.5)
        ((0, 0, np.pi / 4, 3, 0.5), (-1.1 / r2, 1.1 / r2, np.pi / 4, 3, 0.5), False),
        ((0, 0, np.pi / 4, 3, 0.5), (-0.9 / r2, 0.9 / r2, np.pi / 4, 3, 0.5), True),
        # crossing at right angles, centre of one beyond the other's end: separated
        ((0, 0, 0, 2, 0.5), (2.6, 0, np.pi / 2, 2, 0.5), False),
        ((0, 0, 0, 2, 0.5), (2.4, 0, np.pi / 2, 2, 0.5), True),
        # a car and a pedestrian just off its front corner, where only box 2's axes separate
        ((0, 0, 0, 2.35, 0.95), (2.35 + 0.3, 0.95 + 0.3, np.pi / 4, 0.25, 0.25), False),
        ((0, 0, 0, 2.35, 0.95), (2.35 + 0.15, 0.95 + 0.15, np.pi / 4, 0.25, 0.25), True),
    ]
    for b1, b2, want in cases:
        got = bool(obb_overlap(*b1, *b2))
        assert got == want, (b1, b2)
        assert bool(obb_overlap(*b2, *b1)) == want  # symmetric
        # a common rigid motion (rotation + translation) does not change the answer
        rot, tx, ty = 0.7, 5.0, -3.0
        c, s = np.cos(rot), np.sin(rot)

        def move(b, c=c, s=s, rot=rot, tx=tx, ty=ty):
            return (c * b[0] - s * b[1] + tx, s * b[0] + c * b[1] + ty, b[2] + rot, b[3], b[4])

        assert bool(obb_overlap(*move(b1), *move(b2))) == want


def test_obb_overlap_matches_polygon_clipping():
    """Random rotated boxes, one vectorised call, against the area of the clipped polygons; pairs
    that only touch (within 1 mm) are left out."""
    rng = np.random.default_rng(11)
    n = 600
    x2, y2 = rng.uniform(-5, 5, n), rng.uniform(-5, 5, n)
    th1, th2 = rng.uniform(-np.pi, np.pi, n), rng.uniform(-np.pi, np.pi, n)
    hl1, hw1, hl2, hw2 = (
        rng.uniform(0.2, 3, n),
        rng.uniform(0.2, 1.2, n),
        rng.uniform(0.2, 3, n),
        rng.uniform(0.2, 1.2, n),
    )
    got = obb_overlap(0.0, 0.0, th1, hl1, hw1, x2, y2, th2, hl2, hw2)
    assert got.shape == (n,)
    checked = {True: 0, False: 0}
    for i in range(n):
        grow = clip_area(
            corners(0, 0, th1[i], hl1[i] + 1e-3, hw1[i] + 1e-3),
            corners(x2[i], y2[i], th2[i], hl2[i] + 1e-3, hw2[i] + 1e-3),
        )
        shrink = clip_area(
            corners(0, 0, th1[i], hl1[i] - 1e-3, hw1[i] - 1e-3),
            corners(x2[i], y2[i], th2[i], hl2[i] - 1e-3, hw2[i] - 1e-3),
        )
        if shrink > 0:
            assert got[i], i
            checked[True] += 1
        elif grow == 0:
            assert not got[i], i
            checked[False] += 1
    assert checked[True] > 100 and checked[False] > 100
    # broadcasting as the world uses it: runs (N, 1) against actors (A,)
    grid = obb_overlap(
        x2[:5, None],
        y2[:5, None],
        th1[:5, None],
        2.35,
        0.95,
        x2[None, :7],
        y2[None, :7],
        th2[:7],
        2.3,
        0.95,
    )
    assert grid.shape == (5, 7)
    for i in range(5):
        for j in range(7):
            assert grid[i, j] == bool(
                obb_overlap(x2[i], y2[i], th1[i], 2.35, 0.95, x2[j], y2[j], th2[j], 2.3, 0.95)
            )


# --- road geometry ---------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0.01, -0.02, 1e-9])
def test_pose_on_a_single_arc_is_a_circle(k):
    road = RoadGeometry.from_road(
        Road(lanes=3, lane_width=3.5, segments=[Segment(length=150, curvature=k)])
    )
    s = np.linspace(0, 150, 31)
    for d in (0.0, 1.75, 7.0):
        x, y, th = road.pose(s, d)
        # reference line: centre (0, 1/k), point (sin(ks)/k, (1 - cos(ks))/k), heading ks;
        # a point d to the left is d closer to the centre (written stably for small k)
        xr = s * np.sinc(k * s / np.pi)
        yr = 2 * np.sin(0.5 * k * s) ** 2 / k
        np.testing.assert_allclose(th, k * s, rtol=0, atol=1e-12)
        np.testing.assert_allclose(x, xr - d * np.sin(k * s), rtol=0, atol=1e-9)
        np.testing.assert_allclose(y, yr + d * np.cos(k * s), rtol=0, atol=1e-9)
        if abs(k) > 1e-6:
            np.testing.assert_allclose(np.hypot(x, y - 1 / k), abs(1 / k - d), rtol=1e-12)


def test_pose_across_segments():
    """Straight, left arc, straight (the curved_following road): continuous, exact on each piece."""
    k = 0.00667
    road = RoadGeometry.from_road(
        Road(
            lanes=2,
            lane_width=3.5,
            segments=[Segment(length=80), Segment(length=250, curvature=k), Segment(length=300)],
        )
    )
    assert road.length == 630 and road.width == 7.0
    np.testing.assert_array_equal(
        road.curvature(np.array([0, 79.9, 80, 200, 329.9, 330, 700])), [0, 0, k, k, k, 0, 0]
    )
    x, y, th = road.pose(np.array([40.0]))
    np.testing.assert_allclose([x[0], y[0], th[0]], [40, 0, 0], atol=1e-12)
    # end of the bend: 80 m straight, then a 250 m arc of radius 1/k
    a = 250 * k
    xe, ye = 80 + np.sin(a) / k, (1 - np.cos(a)) / k
    x, y, th = road.pose(np.array([330.0, 430.0, 700.0]))
    np.testing.assert_allclose(th, a, atol=1e-12)
    np.testing.assert_allclose(x, xe + np.array([0, 100, 370]) * np.cos(a), atol=1e-9)
    np.testing.assert_allclose(
        y, ye + np.array([0, 100, 370]) * np.sin(a), atol=1e-9
    )  # past the end: extended
    # continuity at the segment joins, and arc length along the reference line and a lane centre
    s = np.linspace(0, 630, 6301)
    for d, scale in ((0.0, 1.0), (1.75, None)):
        x, y, _ = road.pose(s, d)
        step = np.hypot(np.diff(x), np.diff(y))
        kap = road.curvature(s[:-1] + 0.05)
        want = 0.1 * (1 - kap * d) if scale is None else 0.1
        np.testing.assert_allclose(step, want, rtol=1e-6)


def test_lane_centres_and_observation():
    road = RoadGeometry.from_road(Road(lanes=3, lane_width=3.75, segments=[Segment(length=100)]))
    np.testing.assert_allclose(road.lane_center(np.arange(3)), [1.875, 5.625, 9.375])
    assert road.width == 11.25
    sc = load_scenario("highway")  # ego in lane 1 of 3
    br = EmbeddedBridge(sc)
    obs = br.reset(sc, sc.seed, n=2)
    np.testing.assert_array_equal(obs.lane_offset, 0.0)
    np.testing.assert_array_equal(obs.heading_error, 0.0)
    x, y, _ = br.road.pose(np.full(2, sc.ego.s), br.road.lane_center(sc.ego.lane))
    np.testing.assert_allclose(obs.x, x)
    np.testing.assert_allclose(obs.y, y)
    # the lead vehicle in the ego's lane: straight ahead, same lateral position
    j = 0
    assert sc.actors[j].lane == sc.ego.lane
    np.testing.assert_allclose(obs.obj_ds[:, j], sc.actors[j].s - sc.ego.s)
    np.testing.assert_allclose(obs.obj_dd[:, j], 0.0, atol=1e-12)
