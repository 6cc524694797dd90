"""CARLA's Python API for agents, on any simulator: the ego vehicle, world and map.

Agents written against CARLA (``vehicle.get_transform()``, ``get_velocity()``,
``world.get_map().get_waypoint(...)``, ...) reach the simulator through
:class:`CarlaDataProvider`, as Leaderboard agents do through scenario_runner's::

    try:
        from srunner.scenariomanager.carla_data_provider import CarlaDataProvider
    except ImportError:
        from drivefi.stacks.agent.carla_api import CarlaDataProvider

    vehicle = CarlaDataProvider.get_hero_actor()   # inside run_step (as on the Leaderboard)
    wp = CarlaDataProvider.get_map().get_waypoint(vehicle.get_location())

On the CARLA bridge these are the server's own objects. On the embedded simulator they are
stand-ins: :class:`EgoVehicle` and :class:`World` read the run's ground truth (CARLA's left-handed
frame and units: metres, degrees, m/s), and the map is a real ``carla.Map`` built from the
scenario's generated OpenDRIVE, so ``get_waypoint`` returns real ``carla.Waypoint`` objects.
Each run of a batch has its own stand-ins; they are what the provider returns while that run's
agent steps.
"""

from __future__ import annotations

import contextvars
import fnmatch
import math
from types import SimpleNamespace

_CURRENT: contextvars.ContextVar = contextvars.ContextVar("drivefi_carla_api", default=None)


class EgoVehicle:
    """The ego of one embedded run as a ``carla.Vehicle`` stand-in (role ``hero``)."""

    type_id = "vehicle.drivefi.ego"
    is_alive = True

    def __init__(self, view, run: int, world: World | None = None):
        self._view, self._run, self._world = view, run, world
        self.id = 1 + run
        self.attributes = {"role_name": "hero"}
        import carla

        vp = view.scenario.ego.vehicle
        self.bounding_box = carla.BoundingBox(
            carla.Location(0.0, 0.0, 0.75), carla.Vector3D(vp.length / 2, vp.width / 2, 0.75)
        )

    def __deepcopy__(self, memo):  # stand-ins are swapped per run, never copied
        return self

    def _pose(self):
        return self._view.pose(self._run)

    def get_location(self):
        import carla

        x, y, _ = self._pose()
        return carla.Location(x, y, 0.0)

    def get_transform(self):
        import carla

        x, y, yaw = self._pose()
        return carla.Transform(carla.Location(x, y, 0.0), carla.Rotation(0.0, yaw, 0.0))

    def get_velocity(self):
        """Ground-truth velocity [m/s] in the world frame (a fault on localization.speed does not
        change it, as on CARLA)."""
        import carla

        _, _, yaw = self._pose()
        v = self._view.value("v", self._run)
        r = math.radians(yaw)
        return carla.Vector3D(v * math.cos(r), v * math.sin(r), 0.0)

    def get_acceleration(self):
        import carla

        _, _, yaw = self._pose()
        a = self._view.value("a", self._run)
        r = math.radians(yaw)
        return carla.Vector3D(a * math.cos(r), a * math.sin(r), 0.0)

    def get_angular_velocity(self):
        """[deg/s] about z, clockwise positive (CARLA's convention)."""
        import carla

        v, phi = self._view.value("v", self._run), self._view.value("phi", self._run)
        wb = self._view.scenario.ego.vehicle.wheelbase
        return carla.Vector3D(0.0, 0.0, -math.degrees(v * math.tan(phi) / wb))

    def get_control(self):
        """The control the vehicle applied last step (after the vehicle interface's guard)."""
        import carla

        thr, brk, steer = self._view.applied(self._run)
        return carla.VehicleControl(throttle=thr, steer=-steer, brake=brk)

    def get_speed_limit(self) -> float:
        """[km/h] as CARLA reports it (the scenario's limit: its set speed)."""
        return 3.6 * self._view.constants["speed_limit"]

    def get_world(self):
        return self._world

    def __repr__(self) -> str:
        return f"EgoVehicle(run={self._run})"


class Actor:
    """Another road user of an embedded run (read-only ``carla.Actor`` stand-in)."""

    is_alive = True

    def __init__(self, view, run: int, index: int, kind: str, length: float, width: float):
        import carla

        self._view, self._run, self._i = view, run, index
        self.id = 1000 + index
        self.type_id = {
            "pedestrian": "walker.pedestrian.drivefi",
            "static": "static.prop.drivefi",
        }.get(kind, "vehicle.drivefi.actor")
        self.attributes = {"role_name": f"drivefi_actor_{index}"}
        self.bounding_box = carla.BoundingBox(
            carla.Location(0.0, 0.0, 0.75), carla.Vector3D(length / 2, width / 2, 0.75)
        )

    def __deepcopy__(self, memo):
        return self

    def get_transform(self):
        import carla

        x, y, yaw, _ = self._view.actor_pose(self._run, self._i)
        return carla.Transform(carla.Location(x, y, 0.0), carla.Rotation(0.0, yaw, 0.0))

    def get_location(self):
        return self.get_transform().location

    def get_velocity(self):
        import carla

        _, _, yaw, v = self._view.actor_pose(self._run, self._i)
        r = math.radians(yaw)
        return carla.Vector3D(v * math.cos(r), v * math.sin(r), 0.0)


class ActorList(list):
    """``carla.ActorList``: a list with ``filter(pattern)`` and ``find(id)``."""

    def filter(self, pattern: str) -> ActorList:
        return ActorList(a for a in self if fnmatch.fnmatch(a.type_id, pattern))

    def find(self, actor_id: int):
        return next((a for a in self if a.id == actor_id), None)


class World:
    """The embedded world of one run as a ``carla.World`` stand-in."""

    def __init__(self, view, run: int):
        self._view, self._run = view, run
        self.hero = EgoVehicle(view, run, self)
        sc = view.scenario
        self._others = [Actor(view, run, i, a.kind, *a.size) for i, a in enumerate(sc.actors)]

    def __deepcopy__(self, memo):
        return self

    def get_map(self):
        return self._view.map

    def get_actors(self, ids=None) -> ActorList:
        out = ActorList([self.hero, *self._others])
        return out if ids is None else ActorList(a for a in out if a.id in set(ids))

    def get_settings(self):
        return SimpleNamespace(
            synchronous_mode=True,
            fixed_delta_seconds=self._view.scenario.dt,
            no_rendering_mode=True,
        )

    def get_snapshot(self):
        k = self._view.value("k", self._run)
        dt = self._view.scenario.dt
        ts = SimpleNamespace(frame=int(k), elapsed_seconds=k * dt, delta_seconds=dt)
        return SimpleNamespace(frame=int(k), timestamp=ts)


class CarlaDataProvider:
    """scenario_runner's ``CarlaDataProvider`` accessors for the run whose agent is stepping."""

    @staticmethod
    def _current():
        get = _CURRENT.get()  # set by the agent wrapper while a run steps
        cur = None if get is None else get()
        if cur is None:
            raise RuntimeError(
                "CarlaDataProvider: no run is active (the ego exists from the agent's first run_step)"
            )
        return cur

    @classmethod
    def get_hero_actor(cls):
        return cls._current()[0]

    @classmethod
    def get_world(cls):
        return cls._current()[1]

    @classmethod
    def get_map(cls, world=None):
        return cls._current()[2]

    @classmethod
    def get_client(cls):
        return None

    @staticmethod
    def get_velocity(actor) -> float:
        """Speed [m/s] of ``actor`` (scenario_runner returns the norm too)."""
        v = actor.get_velocity()
        return math.sqrt(v.x * v.x + v.y * v.y + v.z * v.z)

    @staticmethod
    def get_location(actor):
        return actor.get_location()

    @staticmethod
    def get_transform(actor):
        return actor.get_transform()

    @classmethod
    def is_sync_mode(cls) -> bool:
        return True
