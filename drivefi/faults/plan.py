"""Fault plans: ordered lists of faults as CSV files a person can read and edit.

The first line is a comment naming the scenario the plan was made for (``# drivefi plan
scenario=NAME steps=N``); then a header and one fault a row with the columns
point, model, value, bit, start, duration, seed. Extra columns (a search's predicted delta and
probability) are kept and ignored by the campaign. Plans are validated on load: a bad row gets one
message naming the file, the row and the field. A UTF-8 byte-order mark is accepted (and dropped);
a plan must hold at least one fault, and every fault must end by the plan's last step.

Generated plans are checked before anything is written: values finite and inside each point's
range, durations 1..steps, seeds 0 <= seed < 2^63, and at most ``MAX_FAULTS`` faults.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drivefi.core import Fault, InjectionPoint
from drivefi.errors import InputError
from drivefi.faults import ANY_POINT, MODELS
from drivefi.stacks.reference import POINTS_BY_NAME
from drivefi.util.atomic import atomic_path
from drivefi.util.seeds import SEED_MAX, check_seed
from drivefi.util.text_input import read_text
from drivefi.world.scenario import MAX_STEPS

COLUMNS = ["point", "model", "value", "bit", "start", "duration", "seed"]


def faults_frame(faults: list[Fault]):
    """``faults`` as a pandas DataFrame, one row each, the plan's COLUMNS."""
    import pandas as pd

    return pd.DataFrame([f.as_row() for f in faults], columns=COLUMNS)


MAX_FAULTS = 5_000_000  # a plan held in memory and stored row by row in the results database


@dataclass
class Plan:
    scenario: str
    steps: int
    faults: list[Fault]
    extra: dict[str, list[str]] = field(default_factory=dict)  # extra columns, by name
    source: str = "plan"  # the file it was read from, for messages

    def digest(self) -> str:
        """Hash of the faults (not of comments or extra columns): identifies a campaign's plan."""
        h = hashlib.sha256(self.scenario.encode())
        for f in self.faults:
            h.update(repr(tuple(f.as_row().values())).encode())
        return h.hexdigest()[:16]

    def check_scenario(self, scenario) -> None:
        """Refuse a plan made for another scenario (name or step count) or with a fault past its end."""
        src = self.source
        if self.scenario != scenario.name:
            raise InputError(
                f"{src}: plan was made for scenario '{self.scenario}', not '{scenario.name}': make a plan for this scenario"
            )
        if self.steps and self.steps != scenario.steps:
            raise InputError(
                f"{src}: plan was made for {self.steps} steps; scenario '{scenario.name}' has {scenario.steps}"
            )
        late = [i for i, f in enumerate(self.faults) if f.start + f.duration > scenario.steps]
        if late:
            f = self.faults[late[0]]
            raise InputError(
                f"{src}: row {late[0] + 1}: fault (start {f.start}, duration {f.duration}) ends after "
                f"step {scenario.steps}, the end of '{scenario.name}'"
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


class _AnyPoint(dict):
    """Points by name that also holds every other name (as a point with an unbounded range)."""

    def __contains__(self, name) -> bool:
        return True

    def __missing__(self, name):
        return InjectionPoint(name, -math.inf, math.inf, "", "")


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
    _check_exhaustive(scenario, points, values, durations, stride, known)
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
    _check_random(scenario, count, m, seed, points, _known(stack_points))
    if model not in ("1-random", "m-random", "bitflip"):
        raise InputError(f"--model: expected 1-random, m-random or bitflip, got '{model}'")
    if m < 1 or m > scenario.steps:
        raise InputError(f"--m: expected 1..{scenario.steps}, got {m}")
    if model == "m-random" and points:
        raise InputError(
            "--points: an m-random fault draws a new point of the whole stack at every step; "
            "use 1-random or bitflip for chosen points"
        )
    known = _known(stack_points)
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


def _check_points(points, what: str = "--points", known: dict | None = None) -> None:
    known = known or POINTS_BY_NAME
    if points is None:
        return
    if not points:
        raise InputError(f"{what}: expected at least one injection point")
    for p in points:
        if p not in known:
            raise InputError(f"{what}: unknown injection point '{p}'; known: {', '.join(known)}")


def _check_exhaustive(scenario, points, values, durations, stride, known=None) -> None:
    """Arguments of :func:`exhaustive`, checked before any fault is made."""
    known = known or POINTS_BY_NAME
    _check_points(points, known=known)
    steps = scenario.steps
    durations = list(durations)
    if not durations:
        raise InputError("--durations: expected at least one duration")
    for m in durations:
        if isinstance(m, bool) or not isinstance(m, int | np.integer) or not 1 <= m <= steps:
            raise InputError(
                f"--durations: expected whole numbers 1..{steps} (the steps of '{scenario.name}'), got {m}"
            )
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= steps:
        raise InputError(f"--stride: expected 1..{steps}, got {stride}")
    pts = points or list(known)
    n_values = 0
    for p in pts:
        vals = (values or {}).get(p)
        if vals is None:
            n_values += 5
            continue
        if not len(vals):
            raise InputError(f"--values: expected at least one value for {p}")
        lo, hi, unit = known[p].lo, known[p].hi, known[p].unit
        for v in vals:
            if (
                not isinstance(v, int | float | np.number)
                or not math.isfinite(v)
                or not lo <= v <= hi
            ):
                raise InputError(f"--values: expected {lo:g}..{hi:g} {unit} for {p}, got {v}")
        n_values += len(vals)
    n = sum(len(range(0, steps - m + 1, stride)) for m in durations) * n_values
    if n > MAX_FAULTS:
        raise InputError(
            f"exhaustive plan would hold {n:,} faults; expected at most {MAX_FAULTS:,} "
            "(use --stride, fewer --values, --points or --durations)"
        )


def _check_random(scenario, count, m, seed, points, known=None) -> None:
    """Arguments of :func:`random_plan`, checked before any fault is drawn."""
    _check_points(points, known=known)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_FAULTS:
        raise InputError(f"--count: expected 1..{MAX_FAULTS:,}, got {count}")
    if isinstance(m, bool) or not isinstance(m, int):
        raise InputError(f"--m: expected a whole number, got {m!r}")
    check_seed(seed, "--seed")


def write_plan(plan: Plan, path: str | Path, what: str = "plan") -> Path:
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
    with atomic_path(path, what) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return Path(path)


def _int(src, row, name, text, lo=None, hi=None) -> int:
    try:
        if not text.strip().lstrip("+-").isdigit():
            raise ValueError(text)
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
    seed = _int(src, row, "seed", r.get("seed") or "0", 0, SEED_MAX)
    if steps is not None and start + duration > steps:
        raise InputError(
            f"{src}: row {row}, field 'duration': fault (start {start}, duration {duration}) "
            f"ends after step {steps}, the plan's last step"
        )
    if model in ("1-fixed", "1-random") and duration != 1:
        raise InputError(
            f"{src}: row {row}, field 'duration': {model} lasts one step, got {duration}"
        )
    value, bit = None, None
    if model != "bitflip" and r["bit"].strip():
        raise InputError(
            f"{src}: row {row}, field 'bit': only bitflip faults take a bit; expected it empty for {model}, got '{r['bit']}'"
        )
    if model in ("bitflip", "m-random") and r["value"].strip():
        raise InputError(
            f"{src}: row {row}, field 'value': {model} faults take no value; expected it empty, got '{r['value']}'"
        )
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


def _header(path: Path, first: str) -> tuple[str, int]:
    meta = dict(kv.split("=", 1) for kv in first[1:].split() if "=" in kv)
    scenario, steps = meta.get("scenario", ""), meta.get("steps", "")
    if not scenario:
        raise InputError(f"{path}: missing first line '# drivefi plan scenario=NAME steps=N'")
    if not steps.isdigit() or not 1 <= int(steps) <= MAX_STEPS:
        raise InputError(
            f"{path}: first line, field 'steps': expected a whole number 1..{MAX_STEPS}, got '{steps}'"
        )
    return scenario, int(steps)


def read_plan(path: str | Path, points: list | None = None, any_points: bool = False) -> Plan:
    """Load and validate a plan CSV; raise :class:`InputError` naming file, row and field.

    ``points`` are the injection points of the ADS under test (default: the reference ADS's).
    ``any_points`` accepts every point name (values unchecked against a range): for readers that
    only match a plan against campaigns which checked it when they ran (the report)."""
    known = _known(points)
    if any_points:
        known = _AnyPoint(known)
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected a plan CSV file")
    if not path.is_file():
        raise InputError(f"{path}: plan file not found")
    text = read_text(path, "plan", "a plan CSV")
    lines = text.splitlines()
    if not lines or not lines[0].startswith("#"):
        raise InputError(f"{path}: missing first line '# drivefi plan scenario=NAME steps=N'")
    scenario, steps = _header(path, lines[0])
    lines = lines[1:]
    reader = csv.DictReader(lines)
    try:
        fieldnames = [c.strip() for c in reader.fieldnames or []]
    except csv.Error as err:
        raise InputError(f"{path}: header: malformed CSV ({err})") from None
    reader.fieldnames = fieldnames
    missing = [c for c in COLUMNS if c not in fieldnames]
    if missing:
        raise InputError(
            f"{path}: header lacks column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}"
        )
    dup = [c for i, c in enumerate(fieldnames) if c in fieldnames[:i]]
    if dup:
        raise InputError(f"{path}: header: column '{dup[0]}' appears twice")
    extra_cols = [c for c in fieldnames if c not in COLUMNS]
    faults, extra = [], {c: [] for c in extra_cols}
    i = 0
    try:
        for i, r in enumerate(reader, start=1):
            if None in r or any(r[c] is None for c in COLUMNS):
                raise InputError(f"{path}: row {i}: expected {len(fieldnames)} fields")
            faults.append(_row_fault(path, i, r, steps, known))
            for c in extra_cols:
                extra[c].append(r[c])
            if i > MAX_FAULTS:
                raise InputError(f"{path}: more than {MAX_FAULTS:,} faults")
    except csv.Error as err:
        raise InputError(f"{path}: row {i + 1}: malformed CSV ({err})") from None
    if not faults:
        raise InputError(f"{path}: plan holds no faults; expected at least one row")
    return Plan(scenario, steps, faults, extra, str(path))
