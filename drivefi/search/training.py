"""Training runs of the stack under test for the 3-TBN: its golden run plus fault-injected runs.

Fault-injected runs are what teach the model how the stack reacts, so the random faults are spread
evenly over the stack's points, over each point's range (its ends 30 % of the time) and over
durations; each run starts from the golden run's snapshot two steps before its fault, and all runs
of a batch are simulated at once.
"""

from __future__ import annotations

import numpy as np

from drivefi.core import Fault
from drivefi.run.faulty import record_runs, run_faults
from drivefi.run.golden import golden_of
from drivefi.run.testbed import Testbed
from drivefi.tbn.structure_file import PointSpec

DURATIONS = (1, 2, 5, 10, 20, 40)


def point_specs(testbed: Testbed | None = None) -> list[PointSpec]:
    """The injection points of the stack under test (name, range, unit)."""
    return [PointSpec(p.name, p.lo, p.hi, p.unit) for p in (testbed or Testbed()).points()]


def random_faults(
    scenario, runs: int, seed: int = 0, points: list[PointSpec] | None = None, durations=DURATIONS
) -> list[Fault]:
    """``runs`` single-point m-fixed faults, stratified: points and durations in turn (shuffled),
    value a range end 30 % of the time else uniform, start uniform over the run."""
    points = points or point_specs()
    rng = np.random.default_rng([seed, 0x7B1])
    pi = rng.permutation(np.arange(runs) % len(points))
    di = rng.permutation(np.arange(runs) % len(durations))
    out = []
    for i in range(runs):
        p = points[pi[i]]
        dur = int(durations[di[i]])
        u = rng.random()
        value = p.lo if u < 0.15 else p.hi if u < 0.3 else p.lo + rng.random() * (p.hi - p.lo)
        start = int(rng.integers(0, max(scenario.steps - dur, 1)))
        out.append(
            Fault(p.name, "m-fixed" if dur > 1 else "1-fixed", float(value), None, start, dur, 0)
        )
    return out


def simulate_faults(scenario, faults: list[Fault], testbed: Testbed | None = None) -> list:
    """Traces of the given faults, batched, each started from the golden snapshot two steps before
    its fault (:func:`drivefi.run.faulty.record_runs`): one per fault, None where the stack
    failed."""
    return record_runs(scenario, faults, testbed, lead=2)


def simulate_training(
    scenario, runs: int = 200, seed: int = 0, golden=None, testbed: Testbed | None = None,
    map_chunks=None,
) -> list:  # fmt: skip
    """Golden trace plus ``runs`` random-fault traces of the stack under test (None where the stack
    failed under the fault). ``map_chunks(fn, scenario, faults, testbed)`` (e.g. a Ray
    executor's) may spread the runs over workers; it returns ``fn``'s trace lists in the order of
    ``faults`` (runs are independent, so any split gives the same traces)."""
    testbed = testbed or Testbed()
    golden = golden or golden_of(testbed, scenario, scenario.seed)[0]
    faults = random_faults(scenario, runs, seed, point_specs(testbed))
    return [golden.trace, *_simulate(scenario, faults, testbed, map_chunks)]


def _simulate(scenario, faults: list[Fault], testbed: Testbed, map_chunks=None) -> list:
    """Traces of ``faults`` (None where the stack failed), spread by ``map_chunks`` if given."""
    if map_chunks is None or not faults:
        return simulate_faults(scenario, faults, testbed)
    traces = []
    for part in map_chunks(simulate_faults, scenario, faults, testbed):
        traces += part
    return traces


def training_set(
    scenario, runs: int = 200, seed: int = 0, golden=None, structure=None,
    testbed: Testbed | None = None, map_chunks=None,
):  # fmt: skip
    """What the pipeline calls: a scenario's golden run plus ``runs`` random-fault runs. Inside a
    :func:`drivefi.search.evidence.watch` the runs are recorded there (and the points none of
    them reached probed)."""
    from drivefi.search.evidence import note_training
    from drivefi.tbn.dataset import from_traces

    testbed = testbed or Testbed()
    golden = golden or golden_of(testbed, scenario, scenario.seed)[0]
    pts = point_specs(testbed)
    faults = random_faults(scenario, runs, seed, pts)
    traces = [golden.trace, *_simulate(scenario, faults, testbed, map_chunks)]
    note_training(scenario, pts, faults, traces[1:], golden,
                  lambda fs: simulate_faults(scenario, fs, testbed))  # fmt: skip
    src = [f"{scenario.name}:golden"] + [f"{scenario.name}:fault{i}" for i in range(runs)]
    kept = [(tr, s) for tr, s in zip(traces, src, strict=True) if tr is not None]
    if len(kept) < 2:
        from drivefi.errors import InputError

        raise InputError(f"training: the stack failed in every one of the {runs} training runs")
    return from_traces([t for t, _ in kept], [s for _, s in kept], scenario, structure)


def fidelity(
    model,
    scenario,
    golden,
    faults: list,
    horizon: int = 40,
    predictor=None,
    anchor: bool = True,
    testbed: Testbed | None = None,
) -> dict:
    """Rollout predictions vs the simulator for single-point faults (m-fixed Fault objects with
    the same point): per step j, RMSE of the safety state, and hazard agreement over the horizon.
    Returns {'rmse': {var: (H,)}, 'hazard': {...}} (simulated from the golden run's snapshots)."""
    from drivefi.tbn.evidence import GoldenWindows
    from drivefi.tbn.hazard import SafetyModel, score_rollout
    from drivefi.tbn.predict import Predictor
    from drivefi.tbn.structure import SAFETY_STATE

    gw = GoldenWindows(golden.trace, scenario, model.structure)
    pred = predictor or Predictor(model, gw.context)
    n = len(faults)
    rec = run_faults(scenario, faults, testbed, traces=True).traces
    k = np.array([f.start for f in faults])
    point = faults[0].point
    vals = np.array([f.value for f in faults])
    dur = np.array([f.duration for f in faults])
    prev, cur = gw.window(k)
    anc = gw.seq(k, horizon, SAFETY_STATE) if anchor else None
    ro = pred.rollout(prev, cur, gw.exo_seq(k, horizon), {point: vals}, dur, anchor=anc)
    steps = np.minimum(k[:, None] + np.arange(1, horizon + 1)[None, :], scenario.steps - 1)
    rows = np.arange(n)[:, None]
    out: dict = {"rmse": {}, "max": {}}
    for v in SAFETY_STATE:
        truth = rec.cols[v][rows, steps]
        err = ro.mean[v] - truth
        out["rmse"][v] = np.sqrt(np.nanmean(err**2, axis=0))
        out["max"][v] = np.nanmax(np.abs(err), axis=0)
    sm = SafetyModel(scenario)
    sc = score_rollout(sm, k, ro)
    haz = rec.cols["hazard"][rows, steps].any(axis=1)
    pred_h = sc.p_hazard >= 0.5
    out["hazard"] = {
        "simulated": int(haz.sum()),
        "predicted": int(pred_h.sum()),
        "agree": float(np.mean(haz == pred_h)),
        "tp": int((haz & pred_h).sum()),
        "fp": int((~haz & pred_h).sum()),
        "fn": int((haz & ~pred_h).sum()),
    }
    return out


def structure_for(testbed: Testbed | None = None, spec: str | None = None):
    """The 3-TBN structure for the stack under test: ``spec`` a structure file (or a name in
    ``models/``), ``twin`` the white-box oracle (the bundled stack only), or by default the
    stack's own file in ``models/`` or one derived from its points. A structure that does not
    name every point of the stack is refused."""
    from drivefi.errors import InputError
    from drivefi.tbn.structure_file import build, check_points, derive, load_structure

    testbed = testbed or Testbed()
    pts = point_specs(testbed)
    name = testbed.stack.structure_name
    own = testbed.stack.own_structure
    if spec == "twin":
        if not testbed.stack.has_oracle:
            raise InputError(
                "--structure twin: the white-box oracle replicates the reference stack only"
            )
        import drivefi.search.twin  # noqa: F401  (registers the oracle)

        st = load_structure("twin")
    elif spec:
        st = load_structure(spec)
    elif own is not None:
        st = load_structure(own)
    else:
        st = build(derive(pts, name), f"<structure derived from {name}'s points>")
    check_points(st, [p.name for p in pts], f"stack '{name}'")
    return st
