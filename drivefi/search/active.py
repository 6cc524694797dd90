"""Active refit: the search spends its simulator budget in rounds.

Round 0 fits the black-box 3-TBN on the golden run and random-fault training runs and scores the
whole candidate space. Each round then injects a sample of the candidates the model calls critical
(stratified over each (point, duration) group and its predicted safety margin) plus, later, the
candidates whose calibrated P(hazard) is least certain; their traces join the training data, the
model is refitted (its learned gates and rate limits see how the stack reacted), the space is
re-scored, and P(hazard) is recalibrated per (point, duration) group on every injected outcome
(a logistic regression on the model's predicted margin). The final plan is every injected fault
that proved critical plus every uninjected candidate with calibrated P(hazard) >= 0.5; validating
those is counted in the budget too.

The plan is ordered for coverage of failure modes (:mod:`drivefi.search.modes`), not for the count
of faults: its uninjected members come case by case (:func:`case_order`), so a validation of its
top N confirms as many distinct predicted cases as N allows, the cases no round confirmed first,
instead of N near-duplicates of the few most certain ones. Each round also explores the groups
(point x duration class x phase) where a training run was critical but the plan holds nothing
(:func:`drivefi.search.evidence.explore`): a failure the model does not represent is injected,
not planned around.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from drivefi.run.testbed import Testbed
from drivefi.util.progress import Progress, finished, prefixed, silent


@dataclass
class RoundStats:
    round: int
    injected: int  # this round
    simulated: int  # cumulative, training runs included
    predicted: int  # plan size after this round
    fit_s: float
    search_s: float
    confirmed: int  # injected faults found critical so far
    precision: float | None = None  # against ground truth, when given
    recall: float | None = None


@dataclass
class ActiveResult:
    candidates: object  # drivefi.search.Candidates (last scoring)
    p_cal: np.ndarray  # calibrated P(hazard) per candidate
    injected: np.ndarray  # bool per candidate
    outcome: np.ndarray  # 1 critical, 0 masked, -1 not injected
    plan: np.ndarray  # indices of the final plan (critical first)
    rounds: list[RoundStats] = field(default_factory=list)
    training_runs: int = 0
    model: object = None
    fit_seconds: float = 0.0
    search_seconds: float = 0.0
    sim_seconds: float = 0.0  # simulating the training runs and the rounds' injections

    @property
    def simulated(self) -> int:
        """Training runs + injected + plan members still to validate."""
        todo = int(np.sum(self.outcome[self.plan] < 0))
        return self.training_runs + int(self.injected.sum()) + todo


def label_traces(traces, faults) -> np.ndarray:
    """1 where a faulty run reached a hazard or an accident from its fault's step on."""
    out = np.zeros(len(traces), np.int8)
    for i, (tr, f) in enumerate(zip(traces, faults, strict=True)):
        fr = tr.frame
        after = fr["k"].to_numpy() >= f.start
        bad = np.zeros(len(fr), bool)
        for col in ("hazard", "collision", "departure"):
            if col in fr:
                bad |= fr[col].to_numpy(bool)
        out[i] = bool(np.any(bad & after))
    return out


def _logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> np.ndarray:
    """Weights of a logistic regression (Newton, L2 on the slopes); x (n, d) with a 1-column."""
    w = np.zeros(x.shape[1])
    reg = np.full(x.shape[1], l2)
    reg[0] = 1e-6
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        g = x.T @ (p - y) + reg * w
        h = (x * (p * (1 - p))[:, None]).T @ x + np.diag(reg)
        step = np.linalg.solve(h, g)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w


def _features(c, idx) -> np.ndarray:
    """Calibration features: the model's predicted margin (signed log) and P(hazard)."""
    d = np.clip(c.delta[idx], -1e3, 1e3)
    return np.column_stack([np.ones(len(idx)), np.sign(d) * np.log1p(np.abs(d)), c.p_hazard[idx]])


def calibrate(c, injected: np.ndarray, outcome: np.ndarray, min_labels: int = 8) -> np.ndarray:
    """Calibrated P(hazard) per candidate: per (point, duration) group, a logistic regression of
    the injected outcomes on the model's margin; the model's own P where a group has too few
    injected faults or only one outcome (then that outcome's rate where it has enough)."""
    p = c.p_hazard.copy()
    key = np.char.add(c.point.astype(str), np.char.mod("|%d", c.duration))
    for g in np.unique(key):
        # only the candidates the model calls critical are sampled, so only they are recalibrated
        # (a regression fitted there says nothing of the model's negatives)
        idx = np.flatnonzero((key == g) & ((c.p_hazard >= 0.5) | injected))
        lab = idx[injected[idx]]
        if len(lab) < min_labels:
            continue
        y = outcome[lab].astype(float)
        if y.min() == y.max():  # one outcome only: the rate with a Beta(1, 1) prior
            rate = (y.sum() + 1) / (len(y) + 2)
            p[idx] = np.minimum(c.p_hazard[idx], rate)
            continue
        w = _logistic(_features(c, lab), y)
        z = _features(c, idx) @ w
        p[idx] = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
    return p


def candidate_cases(c, idx: np.ndarray, dt: float) -> np.ndarray:
    """The failure-mode case (:func:`drivefi.search.modes.case_ids`) of candidates ``idx``: ids
    comparable within one call."""
    from drivefi.search.modes import case_ids

    if len(idx) == 0:
        return np.zeros(0, np.int64)
    return case_ids(c.frame(idx), dt=dt)


def case_order(c, fresh: np.ndarray, confirmed: np.ndarray, p: np.ndarray, dt: float) -> np.ndarray:
    """``fresh`` (uninjected plan members) ordered for case coverage: every predicted case's most
    likely member (calibrated P(hazard) ``p``, then the smallest predicted margin) before any
    case's second, and within a rank the cases none of ``confirmed`` (faults already proved
    critical) belongs to first, then by P(hazard)."""
    if len(fresh) == 0:
        return fresh
    cases = candidate_cases(c, np.concatenate([fresh, confirmed]), dt)
    cid, known = cases[: len(fresh)], np.isin(cases[: len(fresh)], cases[len(fresh) :])
    by_p = np.lexsort((c.delta[fresh], -p[fresh], cid))  # within a case: most likely first
    rank = np.empty(len(fresh), np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(cid[by_p])) + 1]
    sizes = np.diff(np.r_[starts, len(fresh)])
    rank[by_p] = np.arange(len(fresh)) - np.repeat(starts, sizes)
    return fresh[np.lexsort((c.delta[fresh], -p[fresh], known, rank))]


def _stratified(c, pool: np.ndarray, n: int, rng) -> np.ndarray:
    """``n`` candidates of ``pool`` spread over (point, duration) groups and predicted margin."""
    if n <= 0 or len(pool) == 0:
        return np.zeros(0, np.int64)
    if n >= len(pool):
        return pool
    key = np.char.add(c.point[pool].astype(str), np.char.mod("|%d", c.duration[pool]))
    groups = np.unique(key)
    share = max(1, n // len(groups))
    out = []
    for g in groups:
        members = pool[key == g]
        members = members[np.argsort(c.delta[members], kind="stable")]
        take = min(len(members), share)
        pick = np.unique(np.linspace(0, len(members) - 1, take).round().astype(int))
        out.append(members[pick])
    sel = np.concatenate(out)
    if len(sel) < n:  # the rest at random
        rest = np.setdiff1d(pool, sel)
        sel = np.concatenate([sel, rng.choice(rest, min(n - len(sel), len(rest)), replace=False)])
    return sel[:n]


@dataclass(frozen=True)
class ActiveOptions:
    """How much the active search may simulate, and how."""

    budget: float = 0.10  # share of the candidate space simulated in all (training included)
    training_runs: int = 300
    rounds: int = 3
    seed: int = 0
    durations: tuple[int, ...] = (1, 5, 20)
    stride: int = 1  # candidate start steps: every stride-th step


def active_search(
    scenario,
    golden,
    structure,
    options: ActiveOptions | None = None,
    testbed: Testbed | None = None,
    simulate: Callable[[list, str], list] | None = None,
    map_chunks=None,
    truth: set | None = None,
    log: Callable[[str], None] = lambda s: None,
    progress: Progress = silent,
) -> ActiveResult:
    """Fit, score, inject, refit, re-score in ``options.rounds``; ``options.budget`` is the share
    of the candidate space that may be simulated in all (training runs included). ``truth`` (a
    set of (point, value, start, duration) critical faults) only adds precision and recall per
    round.

    Runs are the stack under test's on ``testbed``, from the golden run's snapshots. Where the
    simulator has none, ``simulate(faults, label)`` runs the training runs and the rounds'
    injections (e.g. CARLA campaigns, :func:`drivefi.campaign.traces.campaign_traces`): one trace
    per fault, None where a run failed (that fault stays uninjected); ``golden`` is then that
    simulator's golden trace. ``map_chunks`` (a Ray executor's) spreads the training runs."""
    from drivefi.search.evidence import watching

    testbed = testbed or Testbed()
    with watching(exact=testbed.simulator.snapshots):
        return _active_search(scenario, golden, structure, options, testbed, simulate,
                              map_chunks, truth, log, progress)  # fmt: skip


def _active_search(scenario, golden, structure, options, testbed, simulate, map_chunks, truth,
                   log, progress) -> ActiveResult:  # fmt: skip
    from drivefi.search import candidate_faults, score_space
    from drivefi.search.evidence import critical_runs, explore
    from drivefi.search.training import simulate_faults, training_set
    from drivefi.tbn import fit_model, from_traces
    from drivefi.tbn.fit import Refit

    o = options or ActiveOptions()
    budget, training_runs, rounds, seed = o.budget, o.training_runs, o.rounds, o.seed
    durations, stride = o.durations, o.stride
    elsewhere = simulate

    def simulate(faults, label):
        if elsewhere is None:
            return simulate_faults(scenario, faults, testbed)
        finished(progress)  # the campaign draws its own progress
        return elsewhere(faults, label)

    rng = np.random.default_rng([seed, 0xAC7])
    t0 = time.perf_counter()
    what = f"round 0: simulating {training_runs} training runs"
    progress(what, 0, training_runs)
    if getattr(golden, "snapshots", None) is not None:  # embedded: runs from golden snapshots
        ts = training_set(scenario, training_runs, seed, golden, structure, testbed, map_chunks)
    else:
        ts = _training_elsewhere(scenario, o, golden, structure, testbed, simulate)
    progress(what, training_runs, training_runs)
    sim_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    reuse = Refit()  # the rounds' refits compute only the new runs' features
    model = fit_model(ts, seed=seed, progress=prefixed(progress, "round 0: "), reuse=reuse)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    c = score_space(scenario, model, golden, durations=durations, stride=stride,
                    progress=prefixed(progress, "round 0: "))  # fmt: skip
    search_s = time.perf_counter() - t0
    n = len(c)
    cap = int(budget * n)
    injected = np.zeros(n, bool)
    explored_any = np.zeros(n, bool)  # injected by exploration: not a sample of the positives
    outcome = np.full(n, -1, np.int8)
    p_cal = c.p_hazard.copy()
    res = ActiveResult(c, p_cal, injected, outcome, np.zeros(0, np.int64), [], training_runs, model)
    res.fit_seconds, res.search_seconds, res.sim_seconds = fit_s, search_s, sim_s

    # round 0's positives: later rounds only prune them, except in the groups exploration
    # opened (a critical run there the model had not predicted)
    first = c.p_hazard >= 0.5

    def plan_of(p):
        # the faults the rounds confirmed first (by P(hazard), predicted delta), then the
        # uninjected predictions case by case
        known = np.flatnonzero(outcome == 1)
        known = known[np.lexsort((c.delta[known], -p[known]))]
        fresh = np.flatnonzero((p >= 0.5) & first & (outcome < 0))
        return np.concatenate([known, case_order(c, fresh, known, p, scenario.dt)])

    def record(r, k, fs, ss):
        plan = plan_of(p_cal)
        res.plan = plan
        st = RoundStats(r, k, res.simulated, len(plan), fs, ss, int((outcome == 1).sum()))
        if truth is not None:
            key = {
                (c.point[i], round(float(c.value[i]), 9), int(c.start[i]), int(c.duration[i]))
                for i in plan
            }
            tp = len(key & truth)
            st.precision = tp / len(key) if key else float("nan")
            st.recall = tp / len(truth) if truth else float("nan")
        res.rounds.append(st)
        log(
            f"round {r}: injected {k}, simulated so far {res.training_runs + int(injected.sum())}, "
            f"with the plan's {st.simulated - res.training_runs - int(injected.sum())} still to "
            f"validate {st.simulated} ({100 * st.simulated / n:.1f} % of {n}), plan {len(plan)}, "
            f"confirmed {st.confirmed}"
            + (
                f", precision {st.precision:.3f}, recall {st.recall:.3f}"
                if truth is not None
                else ""
            )
        )

    record(0, 0, fit_s, search_s)
    explored: set = set()  # groups already explored
    frontier = np.zeros(0, np.int64)  # explored candidates that proved critical last round
    for r in range(1, rounds + 1):
        spent = training_runs + int(injected.sum())
        plan = res.plan  # as the last round left it
        todo = plan[outcome[plan] < 0]
        room = cap - spent - len(todo)
        if r == 1:  # a calibration sample of every group the model calls critical
            want = max(0, min(len(todo) // 4, (cap - spent) // 3))
            pick = _stratified(c, todo, want, rng)
        else:  # the least certain candidates, near P = 0.5
            pool = np.flatnonzero((outcome < 0) & first & (p_cal >= 0.15) & (p_cal <= 0.85))
            pool = pool[np.argsort(np.abs(p_cal[pool] - 0.5), kind="stable")]
            pick = pool[: max(0, min(len(pool), room // 2, max(len(todo) // 4, 50)))]
        probe = explore(c, scenario.dt, critical_runs(), plan, explored)
        probe = np.union1d(probe, neighbours(c, frontier, max(room // 2, 50)))
        if r == 1:  # groups the model half-suspects but never called critical
            probe = np.union1d(probe, doubtful(c, p_cal, injected, scenario.dt, max(room // 4, 25)))
        probe = probe[~injected[probe]]
        pick = np.concatenate([pick, np.setdiff1d(probe, pick)]).astype(np.int64)
        if len(probe):
            log(f"round {r}: exploring {len(probe)} candidates where a run was critical and the "
                "model had predicted nothing")  # fmt: skip
        if len(pick) == 0:
            break
        t1 = time.perf_counter()
        faults = candidate_faults(c, pick)
        progress(f"round {r}: injecting {len(faults)} faults", 0, len(faults))
        traces = simulate(faults, f"round {r}")
        progress(f"round {r}: injecting {len(faults)} faults", len(faults), len(faults))
        ran = [j for j, tr in enumerate(traces) if tr is not None]  # failed runs stay uninjected
        pick, faults, traces = pick[ran], [faults[j] for j in ran], [traces[j] for j in ran]
        frontier = np.zeros(0, np.int64)
        if not ran:
            log(f"round {r}: every run failed; the model stays as it was")
            continue
        outcome[pick] = label_traces(traces, faults)
        injected[pick] = True
        explored_any[np.intersect1d(pick, probe)] = True
        if len(probe):
            found = np.intersect1d(pick, probe)
            found = found[outcome[found] == 1]
            log(f"round {r}: {len(found)} of the explored candidates critical")
            first |= _opened(c, found, scenario.dt)
            frontier = found  # the next round explores around them
        res.sim_seconds += time.perf_counter() - t1
        t1 = time.perf_counter()
        src = [f"{scenario.name}:round{r}-{i}" for i in range(len(traces))]
        ts = ts.extend(from_traces(traces, src, scenario, ts.structure))
        model = fit_model(ts, seed=seed, progress=prefixed(progress, f"round {r}: "), reuse=reuse)
        fs = time.perf_counter() - t1
        t1 = time.perf_counter()
        c2 = score_space(scenario, model, golden, durations=durations, stride=stride,
                         progress=prefixed(progress, f"round {r}: "))  # fmt: skip
        c.p_hazard, c.delta = c2.p_hazard, c2.delta
        # calibration learns how far to trust the model's positives: exploration's runs, drawn
        # where it predicted nothing, are no sample of them
        p_cal[:] = calibrate(c, injected & ~explored_any, outcome)
        ss = time.perf_counter() - t1
        res.fit_seconds += fs
        res.search_seconds += ss
        res.model = model
        record(r, len(pick), fs, ss)
    return res


DOUBT = (0.2, 0.5)  # a group whose most likely candidate has P(hazard) in this range: doubtful


def doubtful(c, p: np.ndarray, injected: np.ndarray, dt: float, cap: int) -> np.ndarray:
    """The most likely candidate of each group (point x duration class x phase) no run has
    touched whose P(hazard) ``p`` is in DOUBT: the model half-suspects a failure there but never
    called it critical, so no round would look; at most ``cap``, most likely first."""
    k = _group_names(c, dt)
    cand = np.flatnonzero((p >= DOUBT[0]) & (p < DOUBT[1]))
    if len(cand) == 0 or cap <= 0:
        return np.zeros(0, np.int64)
    cand = cand[~np.isin(k[cand], k[injected])]
    cand = cand[np.lexsort((c.delta[cand], -p[cand]))]
    _, first = np.unique(k[cand], return_index=True)
    best = cand[np.sort(first)]
    return np.sort(best[:cap]).astype(np.int64)


def _group_names(c, dt: float) -> np.ndarray:
    """Each candidate's group (point x duration class x phase) as one string."""
    from drivefi.search.modes import group_keys

    k = group_keys(c.frame(), dt)
    return (k["point"] + "|" + k["duration_class"] + "|" + k["phase"].astype(str)).to_numpy()


NEIGHBOUR_STEPS = 6  # explored around a critical find: starts up to this many steps away


def neighbours(c, found: np.ndarray, cap: int) -> np.ndarray:
    """Candidates next to ``found`` (explored candidates that proved critical where the model
    had predicted nothing): the same point, value and duration starting up to NEIGHBOUR_STEPS
    steps earlier or later, and the same fault with the next grid value on either side; at most
    ``cap``, nearest first. Round after round this follows a failure mode the model does not
    represent to its edges, so the plan holds the mode, not one fault of it."""
    if len(found) == 0 or cap <= 0:
        return np.zeros(0, np.int64)
    out, dist = [], []
    for i in found:
        same = (c.point == c.point[i]) & (c.duration == c.duration[i])
        gap = np.abs(c.start - c.start[i])
        near_t = np.flatnonzero(
            same & (c.value == c.value[i]) & (gap > 0) & (gap <= NEIGHBOUR_STEPS)
        )
        at = np.flatnonzero(same & (gap == 0))
        grid = np.unique(c.value[at].astype(float))
        j = int(np.searchsorted(grid, float(c.value[i])))
        side = [grid[k] for k in (j - 1, j + 1) if 0 <= k < len(grid)]
        near_v = at[np.isin(c.value[at].astype(float), side)]
        out += [near_t, near_v]
        dist += [gap[near_t], np.zeros(len(near_v), np.int64)]
    idx, d = np.concatenate(out), np.concatenate(dist)
    order = np.lexsort((idx, d))
    idx = idx[order][np.sort(np.unique(idx[order], return_index=True)[1])]
    return np.sort(idx[:cap]).astype(np.int64)


def _opened(c, found: np.ndarray, dt: float) -> np.ndarray:
    """Candidates in the groups (point x duration class x phase) of ``found``: explored
    candidates that proved critical. The model's later predictions there may join the plan."""
    if len(found) == 0:
        return np.zeros(len(c), bool)
    names = _group_names(c, dt)
    return np.isin(names, names[found])


def _training_elsewhere(scenario, o: ActiveOptions, golden, structure, testbed, simulate):
    """The training set from runs ``simulate`` makes (each from step 0): the golden trace plus
    the random-fault runs that did not fail."""
    from drivefi.search.training import point_specs, random_faults
    from drivefi.tbn import from_traces

    runs = o.training_runs
    faults = random_faults(scenario, runs, o.seed, point_specs(testbed))
    kept = [(i, tr) for i, tr in enumerate(simulate(faults, "training")) if tr is not None]
    if not kept:
        from drivefi.errors import SimulatorError

        raise SimulatorError(f"training: every one of the {runs} training runs failed")
    traces = [getattr(golden, "trace", golden)] + [tr for _, tr in kept]
    src = [f"{scenario.name}:golden"] + [f"{scenario.name}:fault{i}" for i, _ in kept]
    return from_traces(traces, src, scenario, structure)
