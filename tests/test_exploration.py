"""The search's exploration and case-coverage order on small hand-made candidate spaces."""

from __future__ import annotations

import numpy as np

from drivefi.core import Fault
from drivefi.search import Candidates
from drivefi.search.active import case_order, doubtful, neighbours
from drivefi.search.evidence import explore

DT = 0.05  # 20 steps a second: phase = start // 20


def space(
    points=("a.x", "b.y"), values=(-1.0, 0.0, 1.0), starts=range(0, 60), durations=(1, 5, 20)
):
    """Every (point, value, start, duration) combination, P(hazard) 0 and delta 10 m."""
    p, v, k, d = (a.ravel() for a in np.meshgrid(np.array(points, object), values, starts, durations,
                                                  indexing="ij"))  # fmt: skip
    n = len(p)
    return Candidates(p.astype(object), np.where(d > 1, "m-fixed", "1-fixed").astype(object),
                      v.astype(float), np.full(n, -1), k.astype(np.int64), d.astype(np.int64),
                      np.zeros(n), np.full(n, 10.0))  # fmt: skip


def idx(c, point, value, start, duration):
    hit = np.flatnonzero((c.point == point) & (c.value == value) & (c.start == start)
                         & (c.duration == duration))  # fmt: skip
    assert len(hit) == 1
    return int(hit[0])


def test_explore_probes_like_a_critical_run_the_plan_holds_nothing_near():
    c = space()
    hit = Fault("a.x", "m-fixed", 0.8, None, 21, 40, 0)  # longer than any candidate (20)
    worst = idx(c, "a.x", 0.0, 35, 20)
    c.delta[worst] = -5.0  # the model's smallest margin in the run's window
    done: set = set()
    got = explore(c, DT, [hit], np.zeros(0, np.int64), done)
    assert len(got) and set(c.point[got]) == {"a.x"} and set(c.duration[got]) == {20}
    assert worst in got and set(c.value[got[got != worst]]) == {1.0}  # 0.8: nearest and beyond
    starts = set(c.start[got].tolist())
    assert {21, 41} <= starts  # across the run's window: 21 .. 21 + 40 - 20
    assert explore(c, DT, [hit], np.zeros(0, np.int64), done).size == 0  # explored once
    # the plan holds a fault of the same point and duration class overlapping it: nothing to do
    planned = np.array([idx(c, "a.x", -1.0, 30, 20)])
    assert explore(c, DT, [hit], planned, set()).size == 0
    # ... but one of another point does not count
    planned = np.array([idx(c, "b.y", 1.0, 30, 20)])
    assert explore(c, DT, [hit], planned, set()).size > 0


def test_neighbours_follow_a_find_in_start_and_value():
    c = space()
    i = idx(c, "b.y", 0.0, 30, 5)
    got = neighbours(c, np.array([i]), 100)
    same = (c.point[got] == "b.y") & (c.duration[got] == 5)
    assert same.all() and i not in got
    along = got[c.value[got] == 0.0]
    assert sorted(c.start[along].tolist()) == [24, 25, 26, 27, 28, 29, 31, 32, 33, 34, 35, 36]
    across = got[c.value[got] != 0.0]
    assert set(c.start[across].tolist()) == {30} and set(c.value[across]) == {-1.0, 1.0}
    assert len(neighbours(c, np.array([i]), 4)) == 4  # capped, nearest first
    assert set(c.start[neighbours(c, np.array([i]), 4)].tolist()) <= {29, 30, 31}


def test_doubtful_groups_get_their_most_likely_candidate_once():
    c = space()
    p = np.zeros(len(c))
    a, b = idx(c, "a.x", 1.0, 3, 1), idx(c, "a.x", -1.0, 5, 1)  # one group (transient, phase 0)
    p[a], p[b] = 0.3, 0.45
    far = idx(c, "b.y", 1.0, 45, 20)
    p[far] = 0.25
    sure = idx(c, "b.y", 1.0, 10, 20)
    p[sure] = 0.9  # called critical: not doubtful
    injected = np.zeros(len(c), bool)
    got = doubtful(c, p, injected, DT, 10)
    assert sorted(got.tolist()) == sorted([b, far])
    injected[idx(c, "b.y", 0.0, 50, 20)] = True  # a run in far's group: it has evidence
    assert doubtful(c, p, injected, DT, 10).tolist() == [b]


def test_case_order_gives_every_case_its_representative_first():
    c = space(points=("a.x",), values=(0.0, 1.0), starts=range(0, 40), durations=(5,))
    # case A: value 1, phase 0 (ten members); case B: value 0, phase 1 (two members)
    a = np.flatnonzero((c.value == 1.0) & (c.start < 10))
    b = np.flatnonzero((c.value == 0.0) & (c.start >= 20) & (c.start < 22))
    c.p_hazard[a] = np.linspace(0.99, 0.9, len(a))
    c.p_hazard[b] = [0.6, 0.7]
    fresh = np.concatenate([a, b])
    order = case_order(c, fresh, np.zeros(0, np.int64), c.p_hazard, DT)
    assert order[0] == a[0] and order[1] == b[1]  # each case's most likely, before any second
    assert set(order[:2].tolist()) | set(order[2:].tolist()) == set(fresh.tolist())
    # a case some confirmed fault already holds comes after the unconfirmed cases' ranks
    order = case_order(c, fresh, np.array([a[5]]), c.p_hazard, DT)
    assert order[0] == b[1] and order[1] == a[0]
