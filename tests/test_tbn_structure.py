"""Structure files: the shipped and derived structures load; a bad file is one line naming file,
line and node or edge (exit 2); a stack with a point the structure does not name is refused; model
files are validated field by field; nothing under drivefi/tbn/ imports the reference stack."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

from drivefi.errors import InputError
from drivefi.tbn.structure_file import (
    MODELS_DIR,
    PointSpec,
    check_points,
    derive,
    dump,
    load_structure,
)

REF = MODELS_DIR / "reference.yaml"


def run_cli(args):
    from drivefi.cli import main

    return main(args)


def test_reference_structure_loads_in_module_order():
    st = load_structure(REF)
    assert not st.oracle and st.stack == "reference"
    assert st.points[0].startswith("perception.") and st.points[-1] == "control.steer"
    idx = st.index
    assert idx["planning.target_speed"] < idx["control.throttle"] < idx["throttle"]
    # lag-2 parents become lag features: control.throttle@2 is lag.control.throttle@1
    assert ("lag.control.throttle", 1) in st.by_name["control.throttle"].parents
    assert st.by_name["lag.control.throttle"].parents == (("control.throttle", 1),)
    assert "seen.perception.lane_offset.misses" in idx


def test_derived_structure_roundtrips(tmp_path):
    pts = [
        PointSpec("perception.gap", 0, 100, "m"),
        PointSpec("prediction.lead_accel", -8, 4, "m/s^2"),
        PointSpec("behaviour.mode", 0, 2),
        PointSpec("control.throttle", 0, 1),
        PointSpec("control.brake", 0, 1),
        PointSpec("control.steer", -1, 1),
        PointSpec("localization.speed", 0, 40, "m/s"),
    ]
    doc = derive(pts, "my_agent")
    p = tmp_path / "agent.yaml"
    p.write_text(dump(doc))
    st = load_structure(p)
    assert st.points[:2] == ("perception.gap", "localization.speed")  # module order
    assert st.points.index("behaviour.mode") < st.points.index("control.brake")
    with pytest.raises(InputError, match="module 'mystery' is none of"):
        derive([*pts, PointSpec("mystery.x", 0, 1)], "a")
    # every point reads the observation (an agent reads it, not only the points upstream of it)
    for name in st.points:
        assert ("lane_offset", 0) in st.by_name[name].parents, name


def test_derived_structure_puts_a_stacks_own_control_points_before_its_outputs(tmp_path):
    """A control point the stack declares is computed inside it: the standard outputs (corrupted
    on the returned command) read it, and not each other."""
    pts = [
        PointSpec("control.throttle", 0, 1),
        PointSpec("control.brake", 0, 1),
        PointSpec("control.steer", -1, 1),
        PointSpec("localization.speed", 0, 40, "m/s"),
        PointSpec("control.wheel_angle", -0.6, 0.6, "rad"),
        PointSpec("control.accel", -8, 4, "m/s^2"),
    ]
    p = tmp_path / "agent.yaml"
    p.write_text(dump(derive(pts, "my_agent")))
    st = load_structure(p)
    assert st.points[1:3] == ("control.wheel_angle", "control.accel")  # declared order
    assert st.points[3:] == ("control.throttle", "control.brake", "control.steer")
    accel = {q for q, lag in st.by_name["control.accel"].parents if lag == 0}
    assert "control.wheel_angle" in accel
    for out in ("control.throttle", "control.brake", "control.steer"):
        ps = {q for q, lag in st.by_name[out].parents if lag == 0}
        assert {"control.wheel_angle", "control.accel"} <= ps, out
        assert not ps & {"control.throttle", "control.brake", "control.steer"} - {out}, out


@pytest.mark.parametrize(("keeps", "gain"), [(True, 0.9), (True, 0.15), (False, 0.9)])
def test_memory_learns_whether_a_module_keeps_a_forced_value(keeps, gain):
    """A module that starts each step from its last output (forced or not) is told apart from one
    that keeps the output it computed, from the steps right after the faults of training runs,
    also when it moves most of the way back in one step (gain 0.15)."""
    import pandas as pd

    from drivefi.tbn.dataset import FAULT_PREFIX
    from drivefi.tbn.learn import memory_params
    from drivefi.tbn.structure import KEEPS_FORCED, Structure, Var, _p

    rng = np.random.default_rng(1)
    frames = []
    for r in range(30):
        n = 120
        e = rng.normal(0, 0.02, n)
        k, m = int(rng.integers(5, 100)), int(rng.integers(1, 10))
        forced = np.zeros(n, bool)
        forced[k : k + m] = True
        val = rng.choice([-0.5, 0.5])
        u, mem = np.empty(n), 0.0
        for t in range(n):  # u_t = gain u_{t-1} + e_t
            out = gain * mem + e[t]
            u[t] = val if forced[t] else out
            mem = u[t] if keeps else out
        frames.append(
            pd.DataFrame({"u": u, "k": np.arange(n), "run": r, FAULT_PREFIX + "u": forced})
        )
    sl = pd.concat(frames, ignore_index=True)
    st = Structure((Var("u", "point", _p("u@1"), ("u",)),), {}, ("u",))
    rix, tix = sl["run"].to_numpy(), sl["k"].to_numpy()
    got = memory_params(sl, st, (rix, tix), (30, 120))
    assert got == {"u": {KEEPS_FORCED: float(keeps)}}


BAD = {
    "cycle": (
        lambda t: t.replace("  v: [v@1, a@1]", "  v: [v@1, a@1, vsin]"),
        r"cycle within a slice: .*v",
    ),
    "unknown node": (
        lambda t: t.replace("  v: [v@1, a@1]", "  v: [v@1, a@1, warp_drive@1]"),
        r"edge warp_drive@1 -> v: unknown node 'warp_drive'",
    ),
    "unknown transform": (
        lambda t: t.replace("{transform: square, inputs: [v]}", "{transform: cube, inputs: [v]}"),
        r"feature 'v2': unknown transform 'cube'",
    ),
    "backward edge": (
        lambda t: t.replace(
            "  parents: [gap, lead_v, v, lane_offset, heading_error, curvature, perception.obstacle_speed@1]",
            "  parents: [gap, lead_v, v, lane_offset, heading_error, curvature, control.steer]",
        ),
        r"backward edge control.steer -> perception.obstacle_speed",
    ),
    "lag 3": (
        lambda t: t.replace("  v: [v@1, a@1]", "  v: [v@3, a@1]"),
        r"lag must be 1 or 2",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_structure_file_is_exit_2_naming_the_line(case, tmp_path, capsys):
    edit, pattern = BAD[case]
    text = REF.read_text()
    bad = edit(text)
    assert bad != text, case
    p = tmp_path / "bad.yaml"
    p.write_text(bad)
    changed = next(
        i + 1
        for i, (a, b) in enumerate(zip(text.splitlines(), bad.splitlines(), strict=False))
        if a != b
    )
    with pytest.raises(InputError, match=pattern):
        load_structure(p)
    assert (
        run_cli(
            ["fit", "nothing.parquet", "--out", str(tmp_path / "m.json"), "--structure", str(p)]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) <= 3, err
    m = re.search(r"bad\.yaml:(\d+)", err.replace("\n", ""))
    assert m, err
    if case != "cycle":  # a cycle is named at one of its nodes
        assert int(m.group(1)) == changed, (err, changed)


def test_stack_with_a_point_the_structure_does_not_name_is_refused(tmp_path):
    from drivefi.search.training import point_specs as stack_points

    st = load_structure(REF)
    pts = [p.name for p in stack_points()]
    check_points(st, pts)
    with pytest.raises(InputError, match=r"perception\.gap.*does not name"):
        check_points(st, [*pts, "perception.gap"], "stack 'my_agent'")
    with pytest.raises(InputError, match=r"names point\(s\) control\.steer"):
        check_points(st, [p for p in pts if p != "control.steer"])


def test_structure_command_writes_a_valid_file(tmp_path, capsys):
    out = tmp_path / "s.yaml"
    assert run_cli(["structure", "--out", str(out)]) == 0
    st = load_structure(out)
    assert len(st.points) == 9
    assert run_cli(["structure", "--library"]) == 0
    assert "gate" in capsys.readouterr().out
    assert run_cli(["structure", "--agent", "/nonexistent.py:Nope"]) == 2


# -- model files ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_json():
    from drivefi.search.training import training_set
    from drivefi.tbn import fit_model
    from drivefi.tbn.model_io import to_json
    from drivefi.world.scenario import load_scenario

    sc = load_scenario("lead_brake")
    m = fit_model(training_set(sc, runs=20, seed=0), holdout=0.0, learn=False)
    return to_json(m)


def _set(d, path, value):
    d = json.loads(json.dumps(d))
    x = d
    for k in path[:-1]:
        x = x[k]
    x[path[-1]] = value
    return d


@pytest.mark.parametrize(
    "path, value, field",
    [
        (("transition", "control.steer", "beta", 1), float("nan"), "transition.control.steer.beta"),
        (("transition", "v", "sigma"), 0.0, "transition.v.sigma"),
        (("transition", "v", "sigma"), -1.0, "transition.v.sigma"),
        (("scaling", "v", "std"), 0.0, "scaling.v.std"),
        (("saturation", "control.throttle"), [1.0, 0.0], "saturation.control.throttle"),
        (("stack",), "my_agent", None),
    ],
)
def test_bad_model_file_is_one_line_naming_the_field(
    model_json, tmp_path, capsys, path, value, field
):
    from drivefi.tbn.model_io import check_stack, load_model

    p = tmp_path / "m.json"
    d = _set(model_json, path, value)
    if path == ("stack",):  # a model genuinely fitted for another stack: its own hash
        from drivefi.tbn.model_io import structure_hash

        d["structure"]["file"]["stack"] = value
        d["structure_sha256"] = structure_hash(d["structure"]["file"])
    p.write_text(json.dumps(d).replace("NaN", "NaN"))
    if field is None:
        m = load_model(p)
        with pytest.raises(InputError, match="model is of stack 'my_agent', not of 'reference'"):
            check_stack(m, "reference", None, str(p))
        return
    with pytest.raises(InputError, match=re.escape(field)):
        load_model(p)
    before = p.read_bytes()
    code = run_cli(["search", "lead_brake", "--model", str(p), "--out", str(tmp_path / "p.csv")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert field in err and str(p) in err, err  # the file and the field
    assert p.read_bytes() == before and sorted(tmp_path.iterdir()) == [p]  # nothing written


def test_model_of_another_scenario_is_exit_2(model_json, tmp_path, capsys):
    p = tmp_path / "m.json"
    p.write_text(json.dumps(model_json))
    assert run_cli(["search", "highway", "--model", str(p), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not on scenario 'highway'" in err and str(p) in err and len(err.splitlines()) == 1
    assert sorted(tmp_path.iterdir()) == [p]


# -- black box -----------------------------------------------------------------------------------
def test_nothing_under_tbn_imports_the_reference_stack():
    root = Path(__file__).resolve().parent.parent / "drivefi" / "tbn"
    for f in root.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for n in names:
                assert not n.startswith(("drivefi.stacks", "drivefi.search.twin")), (
                    f.name,
                    n,
                )


def test_gate_learns_to_hold_out_implausible_readings():
    """A consumer that ignores jumps of its input (a gated filter) teaches the gate a finite width;
    one that follows every reading leaves it open (inf)."""
    import pandas as pd

    from drivefi.tbn.dataset import FAULT_PREFIX
    from drivefi.tbn.learn import learn_params
    from drivefi.tbn.structure import Structure, Var, _p
    from drivefi.tbn.structure_file import _bind, gate_step

    rng = np.random.default_rng(0)
    frames = []
    for follow in (False, True):
        rows = []
        for r in range(40):
            n = 200
            truth = np.cumsum(rng.normal(0, 0.01, n))
            x = truth + rng.normal(0, 0.01, n)
            forced = np.zeros(n, bool)
            k, m = rng.integers(10, 150), rng.integers(5, 30)
            x[k : k + m] = rng.choice([-2.0, 2.0])
            forced[k : k + m] = True
            g, c = np.full(1, np.nan), np.zeros(1)
            y = np.empty(n)
            for t in range(n):
                if follow:
                    y[t] = 0.8 * x[t]
                else:
                    g, c = gate_step(np.array([x[t]]), g, c, 0.2, np.inf)
                    y[t] = 0.8 * g[0]
                y[t] += rng.normal(0, 0.005)
            rows.append(pd.DataFrame({"x": x, "y": y, "k": np.arange(n), "run": r, "v": 0.0,
                                      FAULT_PREFIX + "x": forced}))  # fmt: skip
        frames.append(pd.concat(rows, ignore_index=True))
    doc = {"features": {"seen.x": {"transform": "gate", "inputs": ["x"]}}}
    val, mis = _bind("seen.x", "gate", [("x", 0)], {"width": np.inf, "coast": np.inf})
    ps = _p("x", "seen.x@1", "seen.x.misses@1")
    st = Structure(
        (Var("x", "point", _p()), Var("seen.x.misses", "feature", ps), Var("seen.x", "feature", ps),
         Var("y", "point", _p("seen.x"))),
        {"seen.x": val, "seen.x.misses": mis}, ("x", "y"), doc=doc,
    )  # fmt: skip
    from drivefi.tbn.dataset import TrainingSet

    gated = learn_params(TrainingSet(frames[0], ["s"], {}, ["s"], st), st, 0.05)["seen.x"]
    open_ = learn_params(TrainingSet(frames[1], ["s"], {}, ["s"], st), st, 0.05)["seen.x"]
    assert np.isfinite(gated["width"]) and gated["width"] < 2.0, gated
    assert open_["width"] == np.inf, open_


def test_dead_zone_width_is_learned_from_data():
    """A module that ignores inputs smaller than 0.3 teaches its dead_zone feature a width near
    0.3; one that passes every input on leaves it at 0 (no dead zone)."""
    import pandas as pd

    from drivefi.tbn.dataset import TrainingSet
    from drivefi.tbn.learn import learn_params
    from drivefi.tbn.structure import Structure, Var, _p
    from drivefi.tbn.structure_file import _bind

    rng = np.random.default_rng(1)
    widths = {}
    for true_w in (0.3, 0.0):
        rows = []
        for r in range(30):
            x = rng.uniform(-1.0, 1.0, 200)
            y = 0.8 * np.sign(x) * np.maximum(np.abs(x) - true_w, 0.0) + rng.normal(0, 0.005, 200)
            rows.append(pd.DataFrame({"x": x, "y": y, "k": np.arange(200), "run": r, "v": 0.0}))
        frame = pd.concat(rows, ignore_index=True)
        doc = {"features": {"dz.x": {"transform": "dead_zone", "inputs": ["x"]}}}
        (fn,) = _bind("dz.x", "dead_zone", [("x", 0)], {"width": 0.0})
        st = Structure(
            (Var("x", "point", _p()), Var("dz.x", "feature", _p("x")),
             Var("y", "point", _p("dz.x"))),
            {"dz.x": fn}, ("x", "y"), doc=doc,
        )  # fmt: skip
        widths[true_w] = learn_params(TrainingSet(frame, ["s"], {}, ["s"], st), st, 0.05)["dz.x"]
    assert widths[0.3]["width"] == pytest.approx(0.3, abs=0.03), widths
    assert widths[0.0]["width"] == 0.0, widths
