"""Core types every layer shares: what a stack sees, what it may be corrupted at, what it commands.

This module is the bottom of DriveFI's layers (see ``docs/design.md``): every other part may
import it, and it imports no other part. It holds the contracts between the world, the stacks
under test and the bridges:

- :class:`Observation`: the world at a step, as a bridge hands it to a stack;
- :class:`Actuation`: what a stack asks of the vehicle;
- :class:`InjectionPoint` and :class:`Injector`: the named outputs a fault may corrupt, and the
  hook they pass through;
- :class:`Fault`: one fault of a plan;
- :class:`Stack`: what the closed loop needs from a stack under test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

PREVIEW = np.arange(10.0, 130.0, 10.0)  # distances of the lane-curvature preview [m]


@dataclass(frozen=True)
class Observation:
    """Ground-truth world at a step, arrays over runs (N,) and objects (N, A).

    Lane geometry is relative to the ego's lane: ``lane_offset`` is the ego centre's offset from
    the lane centre (left positive), ``heading_error`` its heading minus the lane's. Objects are
    given in the same frame: ``obj_ds`` along the lane from the ego centre, ``obj_dd`` across it
    from the ego lane's centre.
    """

    k: np.ndarray  # step index per run
    t: np.ndarray  # time [s]
    s: np.ndarray  # progress along the route [m]
    x: np.ndarray
    y: np.ndarray
    theta: np.ndarray
    v: np.ndarray
    phi: np.ndarray
    a: np.ndarray
    lane_offset: np.ndarray
    heading_error: np.ndarray
    curvature: np.ndarray  # of the ego's lane [1/m]
    lane_width: np.ndarray
    obj_ds: np.ndarray
    obj_dd: np.ndarray
    obj_vlon: np.ndarray
    obj_vlat: np.ndarray
    obj_psi: np.ndarray
    obj_len: np.ndarray
    obj_wid: np.ndarray
    obj_kind: np.ndarray
    # largest |curvature| of the ego's lane within PREVIEW[j] metres ahead, (N, len(PREVIEW));
    # None where a bridge gives no preview
    curvature_ahead: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.k)


@dataclass(frozen=True)
class Actuation:
    """What the ADS asks of the vehicle: throttle [0,1], brake [0,1], steer [-1,1]; arrays (N,)."""

    throttle: np.ndarray
    brake: np.ndarray
    steer: np.ndarray


@dataclass(frozen=True)
class InjectionPoint:
    """A named module output that a fault may corrupt, with its physical range."""

    name: str  # "module.output"
    lo: float  # physical range, used for value grids and random values
    hi: float
    unit: str
    doc: str

    @property
    def module(self) -> str:
        return self.name.split(".", 1)[0]


class Injector:
    """The no-fault hook: passes values through and remembers what the stack saw at each point.

    Injection is source-level (SLI): each module declares its outputs that a fault may corrupt and
    calls ``injector.apply(point, value, k)`` on them; :class:`drivefi.faults.FaultInjector`
    holds the active faults."""

    def __init__(self) -> None:
        self.seen: dict[str, np.ndarray] = {}

    def apply(self, point: str, value: np.ndarray, k: np.ndarray) -> np.ndarray:
        out = self.corrupt(point, np.asarray(value, dtype=float), k)
        self.seen[point] = out
        return out

    def corrupt(self, point: str, value: np.ndarray, k: np.ndarray) -> np.ndarray:
        return value

    def active(self, k: np.ndarray) -> np.ndarray:
        """Which runs have a fault active at their step k."""
        return np.zeros(np.shape(k), bool)


@dataclass(frozen=True)
class Fault:
    """(injection point, fault model, value or bit, start step k, duration m, seed); see
    :mod:`drivefi.faults` for the fault models."""

    point: str
    model: str
    value: float | None
    bit: int | None
    start: int
    duration: int
    seed: int = 0

    def as_row(self) -> dict:
        return asdict(self)

    @property
    def end(self) -> int:
        """First step after the fault."""
        return self.start + self.duration


class StackState(Protocol):
    """A snapshot of a batch of runs' stack state (leading axis: runs)."""

    def take(self, idx) -> StackState: ...


class Stack(Protocol):
    """What the closed loop needs from a stack under test (batch-capable: arrays over N runs)."""

    points: list[InjectionPoint]
    injector: Injector
    errors: dict[int, tuple[int, str]]  # run -> (step, message) of runs whose stack failed

    def reset(self, n: int = 1) -> None: ...

    def step(self, obs: Observation) -> Actuation: ...

    @property
    def state(self) -> StackState: ...

    def restore(self, state: StackState) -> None: ...
