"""Source-level injection points in your own code: ``drivefi.inject("name", value)``.

Call :func:`inject` on a value your module computes, and DriveFI can corrupt it::

    import drivefi

    drivefi.declare("planner.lead_gap", lo=0.0, hi=150.0, unit="m")   # at import or in setup()

    def plan(...):
        gap = drivefi.inject("planner.lead_gap", measured_gap)       # corrupted when a fault is on
        ...

While DriveFI runs your agent (``--agent FILE:CLASS``), every ``inject`` goes through the active
injector: a fault on that point replaces or flips the value on its steps, and the value the stack
saw is recorded in the trace. Outside a DriveFI run (no injector active) ``inject`` returns the
value unchanged, so the calls can stay in production code.

A point should be declared before the run starts (at module import or in the agent's ``setup``),
with its physical range, so that fault plans can name it and random plans can draw values for it;
``inject(name, value, lo=, hi=)`` declares it on first use too. Values are scalars (returned as a
float) or arrays with the run axis first.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Declared:
    name: str
    lo: float
    hi: float
    unit: str = ""
    doc: str = ""


_DECLARED: dict[str, Declared] = {}
_CAPTURES: list[set[str]] = []
_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("drivefi_injector", default=None)


def declare(
    name: str, lo: float = -math.inf, hi: float = math.inf, unit: str = "", doc: str = ""
) -> Declared:
    """Declare an injection point (idempotent; a later call with a range updates it)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("an injection point needs a non-empty name, e.g. 'planner.lead_gap'")
    old = _DECLARED.get(name)
    if old is not None and math.isinf(lo) and math.isinf(hi):
        for names in _CAPTURES:
            names.add(name)
        return old
    if lo > hi:
        raise ValueError(f"injection point {name!r}: lo {lo} > hi {hi}")
    d = Declared(
        name,
        float(lo),
        float(hi),
        unit or (old.unit if old else ""),
        doc or (old.doc if old else ""),
    )
    _DECLARED[name] = d
    for names in _CAPTURES:
        names.add(name)
    return d


def declared() -> dict[str, Declared]:
    """Every point declared in this process so far."""
    return dict(_DECLARED)


def inject(
    name: str,
    value,
    *,
    lo: float | None = None,
    hi: float | None = None,
    unit: str = "",
    doc: str = "",
):
    """``value``, or its corruption when a fault on point ``name`` is active now.

    Scalars come back as a float; arrays keep their shape (leading axis: runs).
    """
    ctx = _ACTIVE.get()
    if ctx is not None and type(value) is float and lo is None and hi is None:
        run = ctx[2]
        entry = None if run is None else run.points.get(name)
        if entry is not None:  # a declared point inside one run of an agent: the hot path
            seen, hot = entry
            i = run.run
            if i in hot:
                value = run.corrupt(name, value)
            seen[i] = value
            return value
    if name not in _DECLARED or lo is not None or hi is not None:
        declare(name, -math.inf if lo is None else lo, math.inf if hi is None else hi, unit, doc)
    if ctx is None:
        return value
    injector, k, run = ctx
    if run is not None:  # inside one run of a user agent: one value per run
        if isinstance(value, float | int) and not isinstance(value, bool):
            return run.scalar(name, float(value))
        arr = np.asarray(value, dtype=float)
        if arr.size != 1:
            raise ValueError(
                f"drivefi.inject({name!r}): an agent's point takes one value, got shape {arr.shape}"
            )
        out = run.scalar(name, float(arr.reshape(-1)[0]))
        return out if arr.ndim == 0 else np.full(arr.shape, out)
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        out = injector.apply(name, np.full(np.shape(k), float(arr)), k)
        return float(np.asarray(out).reshape(-1)[0])
    return injector.apply(name, arr, k)


@contextlib.contextmanager
def active(injector, k):
    """Route :func:`inject` calls to ``injector`` at steps ``k`` (arrays (N,)) inside the block."""
    token = _ACTIVE.set(_context(injector, k))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


@contextlib.contextmanager
def capture():
    """Collect the names of the points declared (or re-declared) inside the block."""
    names: set[str] = set()
    _CAPTURES.append(names)
    try:
        yield names
    finally:
        _CAPTURES.remove(names)


def current():
    """(injector, k) of the active run, or None."""
    ctx = _ACTIVE.get()
    return None if ctx is None else ctx[:2]


def _context(injector, k) -> tuple:
    """What :func:`inject` reads: (injector, k, the injector again when it serves one run of a
    user agent at a time, else None). A per-run injector has ``run`` (the run stepping now),
    ``points`` (declared point -> (values the runs saw, runs whose fault is on now)),
    ``corrupt(point, value)`` and ``scalar(point, value)`` (:class:`drivefi.stacks.agent.adapter._RunInjector`)."""
    return (injector, np.asarray(k), injector if hasattr(injector, "points") else None)
