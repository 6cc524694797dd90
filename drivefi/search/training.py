"""Training runs of the stack under test for the 3-TBN: its golden run plus fault-injected runs.

Fault-injected runs are what teach the model how the stack reacts, so the random faults are spread
evenly over the stack's points, over each point's range (its ends 30 % of the time) and over
durations; each run starts from the golden run's snapshot two steps before its fault, and all runs
of a batch are simulated at once.
"""

from __future__ import annotations

import numpy as np

from drivefi.core import Fault
from drivefi.tbn.structure_file import PointSpec

DURATIONS = (1, 2, 5, 10, 20, 40)
# drivefi.stacks.reference.ADSState fields recorded in a training trace's metadata (the white-box oracle
# replays the stack's state from them; the black-box model ignores them)
ADS_FIELDS = (
    "integral",
    "offset",
    "heading",
    "coast",
    "gap",
    "ospeed",
    "ocoast",
    "speed",
    "scoast",
    "ref",
)


def stack_points(agent: str | None = None) -> list[PointSpec]:
    """The injection points of the stack under test (name, range, unit): the reference ADS's or
    an agent's (its standard points and every point it declares)."""
    from drivefi.stacks import stack_points as points_of

    return [PointSpec(p.name, p.lo, p.hi, p.unit) for p in points_of(agent)]


def random_faults(
    scenario, runs: int, seed: int = 0, points: list[PointSpec] | None = None, durations=DURATIONS
) -> list[Fault]:
    """``runs`` single-point m-fixed faults, stratified: points and durations in turn (shuffled),
    value a range end 30 % of the time else uniform, start uniform over the run."""
    points = points or stack_points()
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


def simulate_faults(scenario, faults: list[Fault], golden, agent: str | None = None) -> list:
    """Traces of the given faults, batched, each started from the golden snapshot two steps before
    its fault."""
    from drivefi.stacks import is_reference

    if not is_reference(agent):  # the agent's own runs, from its golden snapshots
        from drivefi.run.golden import record_runs

        return record_runs(scenario, faults, stack=agent, golden=golden, lead=2)
    from drivefi.faults import FaultInjector
    from drivefi.run.golden import trace_frame
    from drivefi.run.simulate import Simulation, TraceRecorder
    from drivefi.run.trace import Trace, trace_meta
    from drivefi.stacks.reference import INJECTION_POINTS

    if not faults:
        return []
    sim = Simulation(scenario)
    n = len(faults)
    rec = TraceRecorder(n, sim.steps, sim.points)
    starts = np.array([max(f.start - 2, 0) for f in faults])
    sim.run(
        n,
        snapshot=golden.snapshots.take(starts),
        injector=FaultInjector(faults, INJECTION_POINTS),
        recorders=[rec],
    )
    ads = golden.snapshots.ads
    out = []
    for i, f in enumerate(faults):
        meta = trace_meta(scenario, sim.seed, f.as_row())
        meta["ads_state"] = {a: float(getattr(ads, a)[starts[i]]) for a in ADS_FIELDS}
        out.append(Trace(trace_frame(rec, i), meta))
    return out


def simulate_training(
    scenario, runs: int = 200, seed: int = 0, golden=None, agent=None, map_chunks=None
) -> list:
    """Golden trace plus ``runs`` random-fault traces of the stack under test. ``map_chunks(fn,
    scenario, faults, golden, agent)`` (e.g. a Ray executor's) may spread the runs over workers; it
    returns ``fn``'s trace lists in the order of ``faults`` (runs are independent, so any split
    gives the same traces)."""
    from drivefi.run.golden import record_golden

    points = stack_points(agent)
    golden = golden or record_golden(scenario, stack=agent)
    faults = random_faults(scenario, runs, seed, points)
    if map_chunks is None or not faults:
        return [golden.trace, *simulate_faults(scenario, faults, golden, agent)]
    traces = [golden.trace]
    for part in map_chunks(simulate_faults, scenario, faults, golden, agent):
        traces += part
    return traces


def training_set(
    scenario, runs: int = 200, seed: int = 0, golden=None, structure=None, agent=None,
    map_chunks=None,
):  # fmt: skip
    """What the pipeline calls: a scenario's golden run plus ``runs`` random-fault runs."""
    from drivefi.tbn.dataset import from_traces

    traces = simulate_training(scenario, runs, seed, golden, agent, map_chunks)
    src = [f"{scenario.name}:golden"] + [f"{scenario.name}:fault{i}" for i in range(runs)]
    return from_traces(traces, src, scenario, structure)


def fidelity(
    model,
    scenario,
    golden,
    faults: list,
    horizon: int = 40,
    predictor=None,
    anchor: bool = True,
) -> dict:
    """Rollout predictions vs the simulator for single-point faults (m-fixed Fault objects with
    the same point): per step j, RMSE of the safety state, and hazard agreement over the horizon.
    Returns {'rmse': {var: (H,)}, 'hazard': {...}} (simulated from the golden run's snapshots)."""
    from drivefi.faults import FaultInjector
    from drivefi.run.simulate import Simulation, TraceRecorder
    from drivefi.stacks.reference import INJECTION_POINTS
    from drivefi.tbn.evidence import GoldenWindows
    from drivefi.tbn.hazard import SafetyModel, score_rollout
    from drivefi.tbn.predict import Predictor
    from drivefi.tbn.structure import SAFETY_STATE

    gw = GoldenWindows(golden.trace, scenario, model.structure)
    pred = predictor or Predictor(model, gw.context)
    n = len(faults)
    sim = Simulation(scenario)
    rec = TraceRecorder(n, sim.steps, sim.points)
    k = np.array([f.start for f in faults])
    sim.run(
        n,
        snapshot=golden.snapshots.take(k),
        injector=FaultInjector(faults, INJECTION_POINTS),
        recorders=[rec],
    )
    point = faults[0].point
    vals = np.array([f.value for f in faults])
    dur = np.array([f.duration for f in faults])
    prev, cur = gw.window(k)
    anc = gw.seq(k, horizon, SAFETY_STATE) if anchor else None
    ro = pred.rollout(prev, cur, gw.exo_seq(k, horizon), {point: vals}, dur, anchor=anc)
    steps = np.minimum(k[:, None] + np.arange(1, horizon + 1)[None, :], sim.steps - 1)
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


def structure_for(agent: str | None = None, spec: str | None = None):
    """The 3-TBN structure for the stack under test: ``spec`` a structure file (or a name in
    ``models/``), ``twin`` the white-box oracle (reference stack only), or by default the stack's
    own file in ``models/`` (``reference.yaml``) or one derived from its points. A structure that
    does not name every point of the stack is refused."""
    from drivefi.errors import InputError
    from drivefi.tbn.structure_file import MODELS_DIR, check_points, derive, load_structure

    pts = stack_points(agent)
    stack = agent or "reference"
    if spec == "twin":
        if stack != "reference":
            raise InputError(
                "--structure twin: the white-box oracle replicates the reference stack only"
            )
        import drivefi.search.twin  # noqa: F401  (registers the oracle)

        st = load_structure("twin")
    elif spec:
        st = load_structure(spec)
    elif stack == "reference" and (MODELS_DIR / "reference.yaml").is_file():
        st = load_structure(MODELS_DIR / "reference.yaml")
    else:
        from drivefi.tbn.structure_file import build

        st = build(derive(pts, stack), f"<structure derived from {stack}'s points>")
    check_points(st, [p.name for p in pts], f"stack '{stack}'")
    return st
