"""Fault plans: ordered lists of faults as CSV files a person can read and edit.

The first line is a comment naming the scenario the plan was made for (``# drivefi plan
scenario=NAME steps=N``); then a header and one fault a row with the columns
point, model, value, bit, start, duration, seed. Extra columns (a search's predicted delta and
probability) are kept and ignored by the campaign. Plans are validated on load: a bad row gets one
message naming the file, the row and the field.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drivefi.ads import POINTS_BY_NAME
from drivefi.atomic import atomic_path
from drivefi.errors import InputError
from drivefi.faults import ANY_POINT, MODELS, Fault

COLUMNS = ["point", "model", "value", "bit", "start", "duration", "seed"]


@dataclass
class Plan:
    scenario: str
    steps: int
    faults: list[Fault]
    extra: dict[str, list[str]] = field(default_factory=dict)  # extra columns, by name

    def digest(self) -> str:
        """Hash of the faults (not of comments or extra columns): identifies a campaign's plan."""
        h = hashlib.sha256(self.scenario.encode())
        for f in self.faults:
            h.update(repr(tuple(f.as_row().values())).encode())
        return h.hexdigest()[:16]

    def check_scenario(self, scenario) -> None:
        if self.scenario != scenario.name:
            raise InputError(
                f"plan was made for scenario '{self.scenario}', not '{scenario.name}': make a plan for this scenario"
            )
        late = [i for i, f in enumerate(self.faults) if f.start + f.duration > scenario.steps]
        if late:
            raise InputError(
                f"plan row {late[0] + 1}: fault ends after step {scenario.steps}, the end of '{scenario.name}'"
            )


def default_values(point: str, count: int = 5, known: dict | None = None) -> list[float]:
    """The default value grid of a point: both range ends and evenly spaced interior values
    (``known``: the stack's points by name, default the reference ADS's)."""
    p = (known or POINTS_BY_NAME)[point]
    if not (math.isfinite(p.lo) and math.isfinite(p.hi)):
        raise InputError(
            f"injection point '{point}' has no finite range ({p.lo:g}..{p.hi:g}): declare it with "
            "lo= and hi=, or give --values"
        )
    return [float(v) for v in np.linspace(p.lo, p.hi, count)]


def _known(points) -> dict:
    """The stack's points by name (``points``: InjectionPoint objects; default the reference's)."""
    return {p.name: p for p in points} if points else POINTS_BY_NAME


def fault_model_for(duration: int) -> str:
    return "1-fixed" if duration == 1 else "m-fixed"


def exhaustive(
    scenario,
    points: list[str] | None = None,
    values: dict[str, list[float]] | None = None,
    durations: list[int] = (1,),
    stride: int = 1,
    stack_points: list | None = None,
) -> Plan:
    """Every start step x point x value x duration (faults that would run past the end are left out).

    ``stack_points``: the stack under test's points (default: the reference ADS's); value grids
    come from each point's declared range."""
    known = _known(stack_points)
    points = points or list(known)
    for p in points:
        if p not in known:
            raise InputError(f"unknown injection point '{p}'; known: {', '.join(known)}")
    faults = []
    for m in durations:
        if m < 1:
            raise InputError(f"durations: expected whole numbers >= 1, got {m}")
        for k in range(0, scenario.steps - m + 1, stride):
            for p in points:
                for v in (values or {}).get(p) or default_values(p, known=known):
                    faults.append(Fault(p, fault_model_for(m), float(v), None, k, m, 0))
    return Plan(scenario.name, scenario.steps, faults)


def random_plan(
    scenario,
    model: str,
    count: int,
    m: int = 1,
    seed: int = 0,
    points: list[str] | None = None,
    stack_points: list | None = None,
) -> Plan:
    """Random faults: uniform start step, point, value (or bit); seeded, so reproducible.

    ``stack_points``: the stack under test's points (default: the reference ADS's)."""
    if model not in ("1-random", "m-random", "bitflip"):
        raise InputError(f"--model: expected 1-random, m-random or bitflip, got '{model}'")
    if m < 1 or m > scenario.steps:
        raise InputError(f"--m: expected 1..{scenario.steps}, got {m}")
    known = _known(stack_points)
    for p in points or ():
        if p not in known:
            raise InputError(f"--points: unknown injection point '{p}'; known: {', '.join(known)}")
    pts = [known[p] for p in points] if points else list(known.values())
    if model == "1-random":
        for p in pts:
            default_values(p.name, known=known)  # a value draw needs a finite range
    rng = np.random.default_rng([seed, 0x504C])
    dur = 1 if model == "1-random" else m
    faults = []
    for _ in range(count):
        k = int(rng.integers(0, scenario.steps - dur + 1))
        fseed = int(rng.integers(0, 2**31))
        if model == "m-random":
            faults.append(Fault(ANY_POINT, model, None, None, k, dur, fseed))
            continue
        p = pts[int(rng.integers(len(pts)))]
        if model == "bitflip":
            faults.append(Fault(p.name, model, None, int(rng.integers(32)), k, dur, fseed))
        else:
            faults.append(
                Fault(p.name, model, float(p.lo + rng.random() * (p.hi - p.lo)), None, k, 1, fseed)
            )
    return Plan(scenario.name, scenario.steps, faults)


def write_plan(plan: Plan, path: str | Path) -> Path:
    buf = io.StringIO()
    buf.write(f"# drivefi plan scenario={plan.scenario} steps={plan.steps}\n")
    extra = list(plan.extra)
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS + extra)
    for i, f in enumerate(plan.faults):
        row = [
            f.point,
            f.model,
            "" if f.value is None else repr(float(f.value)),
            "" if f.bit is None else f.bit,
            f.start,
            f.duration,
            f.seed,
        ]
        w.writerow(row + [plan.extra[c][i] for c in extra])
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())
    return Path(path)


def _int(src, row, name, text, lo=None, hi=None) -> int:
    try:
        v = int(text)
    except ValueError:
        raise InputError(
            f"{src}: row {row}, field '{name}': expected a whole number, got '{text}'"
        ) from None
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise InputError(f"{src}: row {row}, field '{name}': expected {rng}, got {v}")
    return v


def _row_fault(src, row, r: dict, steps: int | None, known: dict) -> Fault:
    point, model = r["point"].strip(), r["model"].strip()
    if model not in MODELS:
        raise InputError(
            f"{src}: row {row}, field 'model': expected one of {', '.join(MODELS)}, got '{model}'"
        )
    if model == "m-random":
        if point not in (ANY_POINT, ""):
            raise InputError(
                f"{src}: row {row}, field 'point': m-random draws its points, expected '*'"
            )
        point = ANY_POINT
    elif point not in known:
        raise InputError(
            f"{src}: row {row}, field 'point': unknown injection point '{point}'; known: {', '.join(known)}"
        )
    start = _int(src, row, "start", r["start"], 0, None if steps is None else steps - 1)
    duration = _int(src, row, "duration", r["duration"], 1, None if steps is None else steps)
    seed = _int(src, row, "seed", r.get("seed") or "0", 0)
    if model in ("1-fixed", "1-random") and duration != 1:
        raise InputError(
            f"{src}: row {row}, field 'duration': {model} lasts one step, got {duration}"
        )
    value, bit = None, None
    if model == "bitflip":
        bit = _int(src, row, "bit", r["bit"], 0, 31)
    elif model != "m-random":
        try:
            value = float(r["value"])
        except ValueError:
            raise InputError(
                f"{src}: row {row}, field 'value': expected a number, got '{r['value']}'"
            ) from None
        p = known[point]
        if not math.isfinite(value) or not p.lo <= value <= p.hi:
            raise InputError(
                f"{src}: row {row}, field 'value': expected {p.lo:g}..{p.hi:g} {p.unit} for {point}, got {value}"
            )
    return Fault(point, model, value, bit, start, duration, seed)


def read_plan(path: str | Path, points: list | None = None) -> Plan:
    """Load and validate a plan CSV; raise :class:`InputError` naming file, row and field.

    ``points`` are the injection points of the ADS under test (default: the reference ADS's)."""
    known = _known(points)
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: plan file not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read plan ({err})") from None
    lines = text.splitlines()
    scenario, steps = "", None
    if lines and lines[0].startswith("#"):
        meta = dict(kv.split("=", 1) for kv in lines[0][1:].split() if "=" in kv)
        scenario = meta.get("scenario", "")
        steps = int(meta["steps"]) if meta.get("steps", "").isdigit() else None
        lines = lines[1:]
    if not scenario:
        raise InputError(f"{path}: missing first line '# drivefi plan scenario=NAME steps=N'")
    reader = csv.DictReader(lines)
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(
            f"{path}: header lacks column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}"
        )
    extra_cols = [c for c in reader.fieldnames if c not in COLUMNS]
    faults, extra = [], {c: [] for c in extra_cols}
    for i, r in enumerate(reader, start=1):
        if None in r or any(r[c] is None for c in COLUMNS):
            raise InputError(f"{path}: row {i}: expected {len(reader.fieldnames)} fields")
        faults.append(_row_fault(path, i, r, steps, known))
        for c in extra_cols:
            extra[c].append(r[c])
    return Plan(scenario, steps or 0, faults, extra)
