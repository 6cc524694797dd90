"""Snapshots of user agents: deep copies taken during the golden run, restored per faulty run.

``copy.deepcopy`` cannot copy CARLA's client-side values (Boost.Python objects), so they are
registered with it here: value types (``Location``, ``Rotation``, ``Transform``, ``Vector3D``,
``VehicleControl``, ...) are rebuilt from their fields; map handles (``carla.Map``,
``carla.Waypoint``, read-only views of the road) are shared, not copied. The simulator stand-ins
an agent holds (:mod:`drivefi.stacks.agent.carla_api`) are never copied either: a restored agent gets the
stand-ins of the run it is restored into. The entries of the global plan handed to
``set_global_plan`` (gps dicts, ``carla.Transform`` objects and their tuples) are shared by every
copy, as read-only data; the plan's lists are copied. An agent may instead define ``get_state()`` and
``set_state(state)``: DriveFI then copies only what ``get_state`` returns (a deep copy of it) and
hands it to ``set_state`` on a fresh copy of the agent as it was after ``setup``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

_REGISTERED = False

# CARLA's client-side value types and their fields (constructor order): what a copy rebuilds and
# what :mod:`drivefi.stacks.agent.equal` compares
CARLA_VALUES = {
    "Location": ("x", "y", "z"),
    "Vector3D": ("x", "y", "z"),
    "Vector2D": ("x", "y"),
    "Rotation": ("pitch", "yaw", "roll"),
    "Transform": ("location", "rotation"),
    "GeoLocation": ("latitude", "longitude", "altitude"),
    "VehicleControl": (
        "throttle", "steer", "brake", "hand_brake", "reverse", "manual_gear_shift", "gear"
    ),
    "BoundingBox": ("location", "extent", "rotation"),  # rotation set after construction
}  # fmt: skip


def register_carla_types() -> None:
    """Teach ``copy.deepcopy`` CARLA's client-side types (idempotent; no-op without carla)."""
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True
    try:
        import carla
    except ImportError:  # pragma: no cover - agents without carla never hold its objects
        return

    d = copy._deepcopy_dispatch
    for name, fields in CARLA_VALUES.items():
        if name != "BoundingBox":  # rebuilt from its fields, in the constructor's order
            d[getattr(carla, name)] = _rebuild(getattr(carla, name), fields)
    d[carla.BoundingBox] = _bbox
    for name in ("Map", "Waypoint", "Landmark", "Junction"):
        cls = getattr(carla, name, None)
        if cls is not None:
            d[cls] = copy._deepcopy_atomic  # read-only map handles


def _rebuild(cls, fields):
    return lambda o, memo: cls(*(copy.deepcopy(getattr(o, f), memo) for f in fields))


def _bbox(o, memo):
    import carla

    b = carla.BoundingBox(
        carla.Location(o.location.x, o.location.y, o.location.z),
        carla.Vector3D(o.extent.x, o.extent.y, o.extent.z),
    )
    b.rotation = carla.Rotation(o.rotation.pitch, o.rotation.yaw, o.rotation.roll)
    return b


@dataclass
class AgentState:
    """Agents of a batch of runs (one per run) as the stack's snapshot.

    A *live* state is the stack's own agents: :meth:`take` deep-copies them into a *frozen*
    state (their state at this step). A frozen state's :meth:`take` selects without copying;
    the stack copies again when it restores from it, so a snapshot can be restored many times.
    ``handles[i]`` are the stand-in objects agent i may hold (shared, never copied).
    """

    agents: list
    handles: list = field(default_factory=list)
    frozen: bool = True
    error: str | None = None  # why the agent cannot be copied (runs then start at step 0)
    hooks: bool = False  # agents copied through get_state()/set_state()
    shared: dict = field(default_factory=dict)  # id -> object shared by every copy (read-only)

    @property
    def n(self) -> int:
        return len(self.agents)

    @property
    def copyable(self) -> bool:
        return self.error is None

    def take(self, idx) -> AgentState:
        if isinstance(idx, slice):
            pick = list(range(*idx.indices(len(self.agents))))
        else:
            pick = [int(i) for i in (idx.tolist() if hasattr(idx, "tolist") else idx)]
        if self.frozen or self.error is not None:
            return AgentState(
                [self.agents[i] for i in pick] if self.error is None else [None] * len(pick),
                [self.handles[i] for i in pick] if self.handles else [],
                True,
                self.error,
                self.hooks,
                self.shared,
            )
        shared = dict(self.shared)
        shared.update((id(h), h) for i in pick for h in self.handles[i])
        agents = []
        try:
            for i in pick:
                agents.append(save(self.agents[i], shared, self.hooks))
        except Exception as err:  # any agent that cannot be copied: runs start at step 0
            return AgentState(
                [None] * len(pick), [], True, f"{type(err).__name__}: {err}", self.hooks
            )
        handles = [self.handles[i] for i in pick]
        return AgentState(agents, handles, True, None, self.hooks, self.shared)

    @classmethod
    def stack(cls, states: list[AgentState]) -> AgentState:
        error = next((s.error for s in states if s.error is not None), None)
        shared = {}
        for s in states:
            shared.update(s.shared)
        return AgentState(
            [a for s in states for a in s.agents],
            [h for s in states for h in s.handles],
            True,
            error,
            any(s.hooks for s in states),
            shared,
        )


def save(agent, shared: dict, hooks: bool):
    """A frozen copy of ``agent`` (or of its ``get_state()``) that shares ``shared`` objects."""
    register_carla_types()
    memo = dict(shared)
    if hooks:
        return copy.deepcopy(agent.get_state(), memo)
    return copy.deepcopy(agent, memo)


def load(frozen, old_handles, new_handles, fresh, hooks: bool, shared: dict | None = None):
    """A live agent from a frozen copy: the stand-ins it held are swapped for ``new_handles``
    (``fresh()``: a new agent as after ``setup``, for agents with ``set_state``)."""
    register_carla_types()
    memo = dict(shared or {})
    memo.update((id(o), n) for o, n in zip(old_handles, new_handles, strict=True))
    if hooks:
        agent = fresh()
        agent.set_state(copy.deepcopy(frozen, memo))
        return agent
    return copy.deepcopy(frozen, memo)
