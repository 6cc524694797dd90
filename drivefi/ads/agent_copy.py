"""Snapshots of user agents: deep copies taken during the golden run, restored per faulty run.

``copy.deepcopy`` cannot copy CARLA's client-side values (Boost.Python objects), so they are
registered here: value types (``Location``, ``Rotation``, ``Transform``, ``Vector3D``,
``VehicleControl``, ...) are rebuilt from their fields; map handles (``carla.Map``,
``carla.Waypoint``, read-only views of the road) are shared, not copied. The simulator stand-ins
an agent holds (:mod:`drivefi.carla_api`) are never copied either: a restored agent gets the
stand-ins of the run it is restored into. An agent may instead define ``get_state()`` and
``set_state(state)``: DriveFI then copies only what ``get_state`` returns (a deep copy of it) and
hands it to ``set_state`` on a fresh copy of the agent as it was after ``setup``.
"""

from __future__ import annotations

import copy
import copyreg
from dataclasses import dataclass, field

_REGISTERED = False


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

    def fields(*names):
        return lambda o: (_rebuild, (type(o), {n: getattr(o, n) for n in names}))

    values = {
        "Location": ("x", "y", "z"),
        "Vector3D": ("x", "y", "z"),
        "Vector2D": ("x", "y"),
        "Rotation": ("pitch", "yaw", "roll"),
        "GeoLocation": ("latitude", "longitude", "altitude"),
        "VehicleControl": (
            "throttle",
            "steer",
            "brake",
            "hand_brake",
            "reverse",
            "manual_gear_shift",
            "gear",
        ),
    }
    for name, attrs in values.items():
        cls = getattr(carla, name, None)
        if cls is not None:
            copyreg.pickle(cls, fields(*attrs))
    copyreg.pickle(carla.Transform, lambda t: (carla.Transform, (t.location, t.rotation)))
    copyreg.pickle(carla.BoundingBox, lambda b: (_bbox, (b.location, b.extent, b.rotation)))
    for name in ("Map", "Waypoint", "Landmark", "Junction"):
        cls = getattr(carla, name, None)
        if cls is not None:
            copy._deepcopy_dispatch[cls] = copy._deepcopy_atomic  # read-only map handles


def _rebuild(cls, values: dict):
    obj = cls()
    for k, v in values.items():
        setattr(obj, k, v)
    return obj


def _bbox(location, extent, rotation):
    import carla

    b = carla.BoundingBox(location, extent)
    b.rotation = rotation
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
            )
        shared = {id(h): h for hs in self.handles for h in hs}
        agents = []
        try:
            for i in pick:
                agents.append(save(self.agents[i], shared, self.hooks))
        except Exception as err:  # any agent that cannot be copied: runs start at step 0
            return AgentState(
                [None] * len(pick), [], True, f"{type(err).__name__}: {err}", self.hooks
            )
        return AgentState(agents, [self.handles[i] for i in pick], True, None, self.hooks)

    @classmethod
    def stack(cls, states: list[AgentState]) -> AgentState:
        error = next((s.error for s in states if s.error is not None), None)
        return AgentState(
            [a for s in states for a in s.agents],
            [h for s in states for h in s.handles],
            True,
            error,
            any(s.hooks for s in states),
        )


def save(agent, shared: dict, hooks: bool):
    """A frozen copy of ``agent`` (or of its ``get_state()``) that shares ``shared`` objects."""
    register_carla_types()
    memo = dict(shared)
    if hooks:
        return copy.deepcopy(agent.get_state(), memo)
    return copy.deepcopy(agent, memo)


def load(frozen, old_handles, new_handles, pristine, hooks: bool):
    """A live agent from a frozen copy: the stand-ins it held are swapped for ``new_handles``."""
    register_carla_types()
    memo = {id(o): n for o, n in zip(old_handles, new_handles, strict=True)}
    if hooks:
        agent = copy.deepcopy(pristine, dict(memo))
        agent.set_state(copy.deepcopy(frozen, memo))
        return agent
    return copy.deepcopy(frozen, memo)
