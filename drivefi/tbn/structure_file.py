"""Structure files (``models/*.yaml``): load and check them, build a :class:`Structure`, and derive
a default one for any stack from its list of injection points.

A file names the slices, the world's exogenous nodes, the ego kinematics with their lagged
parents, feature nodes (registered transforms), the stack's points in module order with their
parents, and the vehicle interface's applied actuation. A parent is ``name`` (same slice),
``name@1`` or ``name@2`` (one or two slices back). Every error names the file, the line and the
node or edge: an unknown node or transform, a cycle within a slice, a backward edge (a point fed
at the same step by a later module), a lag outside 0..2.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from drivefi.errors import InputError
from drivefi.tbn.structure import (
    APPLIED,
    KEEPS_FORCED,
    MODULE_RANK,
    STATE,
    WORLD,
    Structure,
    Var,
    module_of,
    module_rank,
)
from drivefi.tbn.transforms import INF, REGISTRY, gate_step
from drivefi.util.resources import bundled_dir

MODELS_DIR = bundled_dir("models")
FORMAT = "drivefi-3tbn-structure"
LAG_PREFIX = "lag."
MISSES = ".misses"
NAT = "nat:"
# structures defined in Python (the white-box oracle registers itself here when imported)
PY_STRUCTURES: dict[str, Structure] = {}


@dataclass(frozen=True)
class PointSpec:
    """An injection point as the stack declares it."""

    name: str
    lo: float
    hi: float
    unit: str = ""


# -- reading YAML with line numbers -----------------------------------------------------------------
def _plain(n: yaml.Node, lines: dict, path: tuple = ()):
    """Python value of a composed YAML node; ``lines[path]`` = 1-based line of each value."""
    lines[path] = n.start_mark.line + 1
    if isinstance(n, yaml.MappingNode):
        out = {}
        for k, v in n.value:
            key = (
                yaml.safe_load(yaml.serialize(k)) if not isinstance(k, yaml.ScalarNode) else k.value
            )
            lines[(*path, key, "@key")] = k.start_mark.line + 1
            out[key] = _plain(v, lines, (*path, key))
        return out
    if isinstance(n, yaml.SequenceNode):
        return [_plain(v, lines, (*path, i)) for i, v in enumerate(n.value)]
    return yaml.safe_load(yaml.serialize(n))


def read_file(path: str | Path) -> tuple[dict, dict]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: structure file not found")
    try:
        root = yaml.compose(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise InputError(f"{path}{line}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if root is None:
        raise InputError(f"{path}: empty structure file")
    lines: dict = {}
    doc = _plain(root, lines)
    if not isinstance(doc, dict):
        raise InputError(f"{path}:1: a structure file is a mapping (structure, world, points, ...)")
    return doc, lines


# -- parents -------------------------------------------------------------------------------------
def parse_parent(text, where: str) -> tuple[str, int]:
    if not isinstance(text, str) or not text:
        raise InputError(f"{where}: a parent is 'name', 'name@1' or 'name@2', got {text!r}")
    base, sep, lag = text.partition("@")
    if not sep:
        return base, 0
    if lag not in ("1", "2"):
        raise InputError(
            f"{where}: parent '{text}': lag must be 1 or 2 (the 3-TBN has three slices; "
            "nothing may come from a later slice)"
        )
    return base, int(lag)


# -- building ------------------------------------------------------------------------------------
def _input_value(name: str, lag: int, cur, prev):
    return cur[name] if lag == 0 else prev[name]


def _bind(name: str, tname: str, inputs, params: dict):
    t = REGISTRY[tname]
    if tname == "gate":
        src, lag = inputs[0]
        last: list = []  # (x, value, misses one step back, result) of the latest step

        def gate(cur, prev, c):
            # the gate's value and its misses are two nodes of one step: computed once for both
            x, g, n = _input_value(src, lag, cur, prev), prev[name], prev[name + MISSES]
            if last and last[0] is x and last[1] is g and last[2] is n:
                return last[3]
            out = gate_step(x, g, n, params["width"], params["coast"])
            last[:] = (x, g, n, out)
            return out

        return (
            lambda cur, prev, c: gate(cur, prev, c)[0],
            lambda cur, prev, c: gate(cur, prev, c)[1],
        )

    def fn(cur, prev, c):
        xs = [_input_value(n, lag, cur, prev) for n, lag in inputs]
        own = prev.get(name) if t.recursive else None
        return t.fn(xs, own, c, params)

    return (fn,)


def _lag_fn(src: str, natural: bool):
    if natural:  # a point's own past: the module's natural output, not a forced value
        return lambda cur, prev, c: prev.get(NAT + src, prev[src])
    return lambda cur, prev, c: prev[src]


def _initial(tname: str):
    if tname in ("gate", "rate_limit", "lag"):
        return lambda cur, c: np.full(np.shape(cur["v"]), np.nan)
    return lambda cur, c: np.zeros(np.shape(cur["v"]))


@dataclass
class _Node:
    name: str
    kind: str
    parents: list[tuple[str, int]]
    line: int
    order: int
    transform: str | None = None
    args: dict | None = None
    edge_lines: list[int] | None = None


def build(
    doc: dict, source: str = "<structure>", params: dict | None = None, lines=None
) -> Structure:
    """Check a structure file's content and build the :class:`Structure` (``params``: learned
    transform parameters by node, e.g. a gate's width)."""
    lines = lines or {}
    params = params or {}

    def at(*path) -> str:
        ln = lines.get(tuple(path))
        return f"{source}:{ln}" if ln else source

    def need(key, typ, what):
        if key not in doc:
            raise InputError(f"{source}: missing '{key}' ({what})")
        if not isinstance(doc[key], typ):
            raise InputError(f"{at(key)}: '{key}' must be {what}")
        return doc[key]

    if doc.get("format", FORMAT) != FORMAT:
        raise InputError(f"{at('format')}: format must be '{FORMAT}', got {doc.get('format')!r}")
    if int(doc.get("slices", 3)) != 3:
        raise InputError(f"{at('slices')}: slices must be 3 (k-1, k, k+1)")
    world = need("world", list, "a list of exogenous node names")
    kin = need("kinematics", dict, "a mapping: state node -> parents")
    feats = doc.get("features") or {}
    if not isinstance(feats, dict):
        raise InputError(f"{at('features')}: 'features' must be a mapping: node -> transform")
    pts = need("points", list, "a list of injection points in module order")
    act = doc.get("actuation") or {}
    if not isinstance(act, dict):
        raise InputError(f"{at('actuation')}: 'actuation' must be a mapping")

    nodes: dict[str, _Node] = {}
    order = 0

    def add(name, kind, parents, line_path, **kw):
        nonlocal order
        if not isinstance(name, str) or not name:
            raise InputError(f"{at(*line_path)}: node name must be a non-empty string")
        if name in nodes:
            raise InputError(f"{at(*line_path)}: node '{name}' declared twice")
        nodes[name] = _Node(name, kind, parents, lines.get(tuple(line_path), 0), order, **kw)
        order += 1

    def parents_of(lst, path):
        if lst is None:
            return []
        if not isinstance(lst, list):
            raise InputError(f"{at(*path)}: parents must be a list")
        return [parse_parent(p, at(*path, i)) for i, p in enumerate(lst)]

    for i, w in enumerate(world):
        add(w, "exo", [], ("world", i))
    for s in STATE:
        if s not in kin:
            raise InputError(f"{at('kinematics')}: kinematics must list '{s}' (traces record it)")
    for s, ps in kin.items():
        if s not in STATE:
            raise InputError(
                f"{at('kinematics', s, '@key')}: unknown kinematic node '{s}'; traces record "
                f"{', '.join(STATE)}"
            )
        add(s, "state", parents_of(ps, ("kinematics", s)), ("kinematics", s, "@key"))
    point_specs: dict[str, tuple[float, float]] = {}
    point_names = []
    for i, p in enumerate(pts):
        if not isinstance(p, dict) or "name" not in p:
            raise InputError(
                f"{at('points', i)}: a point is a mapping with 'name', 'range', 'parents'"
            )
        name = p["name"]
        rng = p.get("range")
        if (
            not isinstance(rng, list)
            or len(rng) != 2
            or not all(isinstance(x, (int, float)) for x in rng)
            or not rng[0] < rng[1]
        ):
            raise InputError(
                f"{at('points', i, 'range')}: point '{name}': range must be [lo, hi], lo < hi"
            )
        point_specs[name] = (float(rng[0]), float(rng[1]))
        point_names.append(name)
        add(name, "point", parents_of(p.get("parents"), ("points", i, "parents")), ("points", i))
        nodes[name].edge_lines = [
            lines.get(("points", i, "parents", j), nodes[name].line)
            for j in range(len(nodes[name].parents))
        ]
    for name, spec in feats.items():
        path = ("features", name)
        if not isinstance(spec, dict) or "transform" not in spec:
            raise InputError(f"{at(*path)}: feature '{name}' needs 'transform' and 'inputs'")
        tname = spec["transform"]
        if tname not in REGISTRY:
            raise InputError(
                f"{at(*path, 'transform')}: feature '{name}': unknown transform '{tname}'; "
                f"known: {', '.join(REGISTRY)}"
            )
        t = REGISTRY[tname]
        ins = parents_of(spec.get("inputs"), (*path, "inputs"))
        if "*" not in t.inputs and len(ins) != len(t.inputs):
            raise InputError(
                f"{at(*path, 'inputs')}: feature '{name}': transform '{tname}' takes "
                f"{len(t.inputs)} input(s) ({', '.join(t.inputs)}), got {len(ins)}"
            )
        args = spec.get("args") or {}
        bad = [a for a in args if a not in t.fixed]
        if bad:
            raise InputError(
                f"{at(*path, 'args')}: feature '{name}': '{tname}' has no argument '{bad[0]}'"
            )
        add(name, "feature", ins, path, transform=tname, args=dict(args))
    for name, spec in act.items():
        path = ("actuation", name)
        if not isinstance(spec, dict) or "point" not in spec:
            raise InputError(
                f"{at(*path)}: actuation '{name}' needs 'point' (the command it applies)"
            )
        rng = spec.get("range", [0.0, 1.0])
        add(
            name, "applied", [(spec["point"], 0)], path, transform="actuator_guard",
            args={"lo": float(rng[0]), "hi": float(rng[1])},
        )  # fmt: skip

    # lag-2 parents become lag(x)@1: a feature holding x one step back
    for n in list(nodes.values()):
        new = []
        for p, lag in n.parents:
            if lag == 2:
                ln = LAG_PREFIX + p
                if ln not in nodes:
                    nodes[ln] = _Node(ln, "feature", [(p, 1)], n.line, -1, "lag", {})
                new.append((ln, 1))
            else:
                new.append((p, lag))
        n.parents = new
    # unknown nodes
    for n in nodes.values():
        for j, (p, lag) in enumerate(n.parents):
            if p not in nodes:
                ln = n.edge_lines[j] if n.edge_lines and j < len(n.edge_lines) else n.line
                raise InputError(
                    f"{source}:{ln}: edge {p}{'@' + str(lag) if lag else ''} -> {n.name}: "
                    f"unknown node '{p}'"
                )
    # backward edges: a point fed at the same step by a later module's point
    dep: dict[str, set[str]] = {}

    def points_feeding(name, seen=()):
        if name in dep:
            return dep[name]
        out: set[str] = set()
        for p, lag in nodes[name].parents:
            if lag or p in seen:
                continue
            if nodes[p].kind == "point":
                out.add(p)
            else:
                out |= points_feeding(p, (*seen, name))
        dep[name] = out
        return out

    last_rank = -1
    for name in point_names:
        r = module_rank(name)
        if r is None:
            raise InputError(
                f"{source}:{nodes[name].line}: point '{name}': module '{module_of(name)}' is none of "
                f"{', '.join(MODULE_RANK)}"
            )
        if r < last_rank:
            raise InputError(
                f"{source}:{nodes[name].line}: point '{name}' is out of module order "
                "(perception/localization -> tracking/prediction -> planning/behaviour -> control)"
            )
        last_rank = r
    for name in point_names:
        for q in points_feeding(name):
            if q != name and module_rank(q) > module_rank(name):
                n = nodes[name]
                ln = n.line
                for j, (p, lag) in enumerate(n.parents):
                    if lag == 0 and (p == q or q in dep.get(p, set())) and n.edge_lines:
                        ln = n.edge_lines[j]
                        break
                raise InputError(
                    f"{source}:{ln}: backward edge {q} -> {name}: a "
                    f"{module_of(q)} output cannot feed {module_of(name)} within the same step"
                )
    # topological order within a slice (ties: declaration order), cycles named
    indeg = {n: 0 for n in nodes}
    kids: dict[str, list[str]] = {n: [] for n in nodes}
    for n in nodes.values():
        for p, lag in n.parents:
            if lag == 0:
                indeg[n.name] += 1
                kids[p].append(n.name)
    heap = [(nodes[n].order, n) for n, d in indeg.items() if d == 0]
    heapq.heapify(heap)
    topo = []
    while heap:
        _, n = heapq.heappop(heap)
        topo.append(n)
        for k in kids[n]:
            indeg[k] -= 1
            if indeg[k] == 0:
                heapq.heappush(heap, (nodes[k].order, k))
    if len(topo) < len(nodes):
        left = sorted((n for n in nodes if indeg[n] > 0), key=lambda n: nodes[n].line)
        cyc = _cycle(left, nodes)
        first = nodes[cyc[0]]
        raise InputError(
            f"{source}:{first.line}: cycle within a slice: {' -> '.join([*cyc, cyc[0]])} "
            "(give one of these edges a lag, e.g. name@1)"
        )

    # variables and feature functions
    vars_, fns, init = [], {}, {}
    pset = tuple(point_names)
    for name in topo:
        n = nodes[name]
        if n.kind == "feature" and n.transform == "gate":
            mis = name + MISSES
            ps = (*n.parents, (name, 1), (mis, 1))
            f_val, f_mis = _bind(name, "gate", n.parents, _params(name, "gate", n.args, params))
            vars_.append(Var(mis, "feature", ps, pset))
            vars_.append(Var(name, "feature", ps, pset))
            fns[mis], fns[name] = f_mis, f_val
            init[mis] = lambda cur, c: np.zeros(np.shape(cur["v"]))
            init[name] = _initial("gate")
            continue
        if n.kind == "feature" and n.transform == "lag":
            src = n.parents[0][0]
            vars_.append(Var(name, "feature", ((src, 1),), pset))
            kept = params.get(src, {}).get(KEEPS_FORCED, 0.0)
            fns[name] = _lag_fn(src, src in pset and not kept)
            init[name] = _initial("lag")
            continue
        ps = tuple(n.parents)
        if n.kind == "applied":
            ps = (*ps, (name, 1))
        if n.kind == "feature" and REGISTRY[n.transform].recursive:
            ps = (*ps, (name, 1))
        ps = tuple(dict.fromkeys(ps))
        vars_.append(Var(name, n.kind, ps, pset))
        if n.transform is not None:
            (fns[name],) = _bind(
                name, n.transform, n.parents, _params(name, n.transform, n.args, params)
            )
            init[name] = _initial(n.transform)
    applied = {name: spec["point"] for name, spec in act.items()}
    st = Structure(
        vars=tuple(vars_),
        features=fns,
        points=pset,
        initial=init,
        state=STATE,
        exo=tuple(world),
        applied=applied,
        name=str(doc.get("structure", Path(source).stem)),
        stack=str(doc.get("stack", "")),
        oracle=bool(doc.get("oracle", False)),
        source=source,
        doc=doc,
        params={k: dict(v) for k, v in params.items()},
        ranges=point_specs,
    )
    try:
        st.check()
    except ValueError as err:
        raise InputError(f"{source}: {err}") from None
    return st


def _params(name, tname, args, learned):
    p = dict(REGISTRY[tname].defaults)
    p.update(args or {})
    p.update(learned.get(name, {}))
    return p


def _cycle(left: list[str], nodes: dict) -> list[str]:
    """One cycle among the nodes left by the topological sort."""
    rem = set(left)
    start = left[0]
    path, seen = [start], {start: 0}
    cur = start
    while True:
        nxt = next(p for p, lag in nodes[cur].parents if lag == 0 and p in rem)
        if nxt in seen:
            cyc = path[seen[nxt] :]
            return cyc[::-1]
        seen[nxt] = len(path)
        path.append(nxt)
        cur = nxt


def load_structure(path: str | Path) -> Structure:
    """Read, check and build a structure file (InputError naming file and line)."""
    if str(path) in PY_STRUCTURES:
        return PY_STRUCTURES[str(path)]
    path = Path(path)
    if not path.suffix and not path.exists():
        path = MODELS_DIR / f"{path}.yaml"
    doc, lines = read_file(path)
    return build(doc, str(path), lines=lines)


def default_structure() -> Structure:
    """The reference stack's black-box structure, ``models/reference.yaml``."""
    return load_structure(MODELS_DIR / "reference.yaml")


def check_points(st: Structure, points: Sequence[str], stack: str = "the stack") -> None:
    """Refuse a stack whose points differ from the structure's."""
    extra = [p for p in points if p not in st.points]
    if extra:
        raise InputError(
            f"{st.source}: {stack} has injection point(s) {', '.join(extra)} that the structure "
            f"'{st.name}' does not name; derive one with `drivefi structure` or add them"
        )
    missing = [p for p in st.points if p not in points]
    if missing:
        raise InputError(
            f"{st.source}: structure '{st.name}' names point(s) {', '.join(missing)} that {stack} "
            "does not have"
        )


# -- the default structure for any stack ---------------------------------------------------------
KINEMATICS = {
    "x": ["x@1", "vcos_th@1"],
    "y": ["y@1", "vsin_th@1"],
    "theta": ["theta@1", "vtan@1"],
    "v": ["v@1", "a@1"],
    "phi": ["phi@1", "dphi@1"],
    "a": ["a@1", "push@1", "brake@1", "v2@1", "v@1"],
    "s": ["s@1", "sdot@1"],
    "lane_offset": ["lane_offset@1", "vsin@1"],
    "heading_error": ["heading_error@1", "vtan@1", "ksdot@1"],
}
KIN_FEATURES = {
    "vcos_th": {"transform": "v_cos", "inputs": ["v", "theta"]},
    "vsin_th": {"transform": "v_sin", "inputs": ["v", "theta"]},
    "vtan": {"transform": "v_tan", "inputs": ["v", "phi"]},
    "vsin": {"transform": "v_sin", "inputs": ["v", "heading_error"]},
    "sdot": {
        "transform": "road_speed",
        "inputs": ["v", "heading_error", "lane_offset", "curvature"],
    },
    "ksdot": {
        "transform": "road_turn",
        "inputs": ["v", "heading_error", "lane_offset", "curvature"],
    },
    "v2": {"transform": "square", "inputs": ["v"]},
    "gap": {"transform": "gap", "inputs": ["lead_s", "lead_off", "s", "lane_offset", "curvature"]},
}
ACT_FEATURES = {
    "dphi": {"transform": "steer_increment", "inputs": ["steer", "phi", "v"]},
    "push": {"transform": "throttle_push", "inputs": ["throttle", "v"]},
}
SENSED = ["gap", "lead_v", "v", "lane_offset", "heading_error", "curvature"]


def derive(points: Sequence[PointSpec], stack: str) -> dict:
    """A default black-box structure for a stack from its points (name, range, module prefix):

    - every point reads what the stack senses directly (the world and kinematics: an agent reads
      its observation, not only the points upstream of it) and its own past;
    - perception/localization points are seen downstream through a learned plausibility ``gate``
      (width inf = none);
    - tracking/prediction points also read the gated perception;
    - planning points read the gated perception, ``sqrt_pos`` of distances, tracking outputs;
      control sees them through a learned ``rate_limit``;
    - control points read all of that at lags 0 and 1, and their own past at lags 1 and 2
      (integrators, filters). A control point the stack declares is computed inside it, before
      its output: the standard outputs (``control.throttle``, ``brake``, ``steer``, corrupted on
      the command the stack returns) read every declared control point, and never each other.
    """
    byrank: dict[int, list[PointSpec]] = {}
    for p in points:
        r = module_rank(p.name)
        if r is None:
            raise InputError(
                f"stack '{stack}': cannot place point '{p.name}': module '{module_of(p.name)}' is "
                f"none of {', '.join(MODULE_RANK)}; write a structure file for it"
            )
        byrank.setdefault(r, []).append(p)
    names = {p.name for p in points}
    outputs = set(APPLIED.values())
    for pt in outputs:
        if pt not in names:
            raise InputError(f"stack '{stack}': every stack has '{pt}'; it is missing")
    # within a module, the stack's own points come before its outputs (a stable sort)
    for r in byrank:
        byrank[r].sort(key=lambda p: p.name in outputs)
    feats = dict(KIN_FEATURES)
    seen, slow = [], []
    for p in byrank.get(0, []):
        g = "seen." + p.name
        feats[g] = {"transform": "gate", "inputs": [p.name]}
        seen.append(g)
        if p.unit == "m" and p.lo >= 0:
            feats["sqrt." + p.name] = {"transform": "sqrt_pos", "inputs": [g]}
            slow.append("sqrt." + p.name)
    tracked = [p.name for p in byrank.get(1, [])]
    planned = []
    for p in byrank.get(2, []):
        f = "limited." + p.name
        feats[f] = {"transform": "rate_limit", "inputs": [p.name]}
        planned.append(f)
    inner = [p.name for p in byrank.get(3, []) if p.name not in outputs]
    out_pts = []
    for r in sorted(byrank):
        for p in byrank[r]:
            if r == 0:
                ps = [*SENSED, f"{p.name}@1"]
            elif r == 1:
                ps = [*SENSED, *seen, f"{p.name}@1"]
            elif r == 2:
                ps = [*SENSED, *seen, *slow, *tracked, f"{p.name}@1"]
            else:
                inp = [*seen, *tracked, *planned]
                mine = inner if p.name in outputs else inner[: inner.index(p.name)]
                ps = [*SENSED, *inp, *(f"{x}@1" for x in inp), *mine, *(f"{x}@1" for x in mine),
                      f"{p.name}@1", f"{p.name}@2"]  # fmt: skip
            out_pts.append(
                {"name": p.name, "range": [float(p.lo), float(p.hi)], "unit": p.unit, "parents": ps}
            )
    feats.update(ACT_FEATURES)
    return {
        "format": FORMAT,
        "structure": f"{stack} (derived)",
        "stack": stack,
        "oracle": False,
        "slices": 3,
        "world": list(WORLD),
        "kinematics": KINEMATICS,
        "features": feats,
        "points": out_pts,
        "actuation": {
            "throttle": {"point": "control.throttle", "range": [0.0, 1.0]},
            "brake": {"point": "control.brake", "range": [0.0, 1.0]},
            "steer": {"point": "control.steer", "range": [-1.0, 1.0]},
        },
    }


HEADER = """\
# DriveFI 3-TBN structure file (docs/tbn.md, "Structure files").
# Slices k-1, k, k+1. A parent is `name` (same slice), `name@1` or `name@2` (1 or 2 slices back).
# world: exogenous nodes from the scenario (road curvature; nearest in-lane object ahead: its
#   position lead_s, half extent lead_off, speed lead_v). kinematics: the ego state and lane frame.
# features: registered transforms (`drivefi structure --library` lists them); learned parameters
#   (a gate's width, a rate limit) are chosen by the fit from the stack's training runs.
# points: the stack's injection points in module order
#   (perception/localization -> tracking/prediction -> planning/behaviour -> control).
# actuation: the vehicle interface (clamp, non-finite -> last valid) applied to the commands.
"""


def dump(doc: dict) -> str:
    """YAML text of a structure (flow style for short lists)."""

    class D(yaml.SafeDumper):
        pass

    def lst(d, data):
        flow = all(not isinstance(x, (dict, list)) for x in data)
        return d.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)

    def dct(d, data):
        flow = (
            all(
                not isinstance(x, (dict, list)) or (isinstance(x, list) and len(x) <= 2)
                for x in data.values()
            )
            and len(data) <= 3
        )
        return d.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)

    D.add_representer(list, lst)
    D.add_representer(dict, dct)
    return HEADER + yaml.dump(doc, Dumper=D, sort_keys=False, width=100)


def write_structure(doc: dict, path: str | Path) -> Path:
    from drivefi.util.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(dump(doc))
    return Path(path)


def learned_grid_names(st: Structure) -> list[tuple[str, str]]:
    """(node, transform) of the feature nodes whose parameters the fit learns."""
    out = []
    for name, spec in (st.doc.get("features") or {}).items():
        t = REGISTRY.get(spec.get("transform"))
        if t and t.learned:
            out.append((name, t.name))
    return out


__all__ = [
    "INF",
    "MODELS_DIR",
    "PointSpec",
    "build",
    "check_points",
    "default_structure",
    "derive",
    "dump",
    "load_structure",
    "write_structure",
]


def with_params(st: Structure, params: dict[str, dict[str, float]]) -> Structure:
    """The same structure with (learned) transform parameters set."""
    return build(st.doc, st.source, params)
