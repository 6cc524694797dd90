"""A CARLA server made of ``unittest.mock.create_autospec`` fakes, for tests and dry runs.

:class:`FakeCarla` hands out autospec'd ``carla.Client`` / ``World`` / actor objects (so a call the
real API does not have fails), backed by real client-side values: ``carla.Map`` parsed from the
OpenDRIVE the bridge generates, ``carla.WorldSettings``, ``carla.Transform``, ``carla.command.*``.
Vehicles with physics move by the embedded vehicle model (:func:`drivefi.vehicle.step_vehicle`) in
the frame of the road the map was written from, so a closed loop through the CARLA bridge behaves
like the embedded world. Collision and lane-invasion sensors fire on box overlap and lane changes;
other sensors deliver a small data object per frame. Failures are scripted: a time-out, server
error, crash or Ctrl-C at a chosen tick (``fail_at``) or wherever ``fail_hook`` says, a server
that is down (until a file appears), a version mismatch, late sensor events, another client
that ticks.

Use: ``fake = FakeCarla(scenario)`` then ``make_carla_bridge(scenario, client_factory=fake.client)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np

from drivefi.bridges.carla.opendrive import from_carla, to_carla, write_opendrive
from drivefi.bridges.embedded import obb_overlap
from drivefi.road import RoadGeometry
from drivefi.scenario import Road, Scenario, Segment, VehicleParams
from drivefi.vehicle import Actuation, acceleration, step_vehicle

TIMEOUT_MSG = "time-out of {ms}ms while waiting for the simulator, make sure the simulator is ready and connected to {addr}"
SIZES = {"vehicle": (4.6, 1.9), "walker": (0.5, 0.5), "static": (1.0, 1.0), "sensor": (0.0, 0.0)}


def frenet(road: RoadGeometry, x: float, y: float) -> tuple[float, float, float]:
    """(s, d, road heading) of point (x, y) on a road of lines and arcs (exact)."""
    best = None
    n = len(road.s0)
    ends = [*road.s0[1:], road.length]
    for i in range(n):
        x0, y0, h, k = road.x0[i], road.y0[i], road.th0[i], road.kappa[i]
        dx, dy = x - x0, y - y0
        u, v = dx * math.cos(h) + dy * math.sin(h), -dx * math.sin(h) + dy * math.cos(h)
        if abs(k) < 1e-12:
            cl, d = u, v
        else:
            a, b = k * u, 1.0 - k * v
            cl, d = math.atan2(a, b) / k, (1.0 - math.hypot(a, b)) / k
        s = road.s0[i] + cl
        lo = -math.inf if i == 0 else road.s0[i] - 1e-9
        hi = math.inf if i == n - 1 else ends[i] + 1e-9
        if lo <= s <= hi and (best is None or abs(d) < abs(best[1])):
            best = (s, d, h + k * cl)
    if best is None:  # pragma: no cover - between segments of a kinked road
        raise ValueError("point projects onto no road segment")
    return best


@dataclass
class _Body:
    """Physics state of one fake vehicle (arrays of shape (1,), as the embedded world keeps them)."""

    s: np.ndarray
    d: np.ndarray
    psi: np.ndarray
    v: np.ndarray = field(default_factory=lambda: np.zeros(1))
    phi: np.ndarray = field(default_factory=lambda: np.zeros(1))
    a: np.ndarray = field(default_factory=lambda: np.zeros(1))
    thr: np.ndarray = field(default_factory=lambda: np.zeros(1))
    brk: np.ndarray = field(default_factory=lambda: np.zeros(1))


class _Actor:
    """One fake actor's server-side record and its autospec'd client object."""

    def __init__(self, server: FakeCarla, aid: int, bp, transform, parent=None):
        import carla

        self.server, self.id, self.type_id = server, aid, bp.id
        self.attributes = dict(bp._attrs)
        self.family = bp.id.split(".")[0]
        self.parent = parent
        self.rel = transform if parent is not None else None
        self.transform = transform
        self.velocity = carla.Vector3D()
        self.accel = carla.Vector3D()
        self.physics = self.family == "vehicle"
        self.alive = True
        self.control = carla.VehicleControl()
        self.controls: list = []  # (frame it acts on, carla.VehicleControl)
        self.listener = None
        self.body: _Body | None = None
        self.wheel_angle = 0.0
        self.physics_control = carla.VehiclePhysicsControl()
        self.physics_control.wheels = [
            carla.WheelPhysicsControl(max_steer_angle=70.0) for _ in range(2)
        ] + [carla.WheelPhysicsControl(max_steer_angle=0.0) for _ in range(2)]
        if bp.id == server.ego_blueprint:
            length, width = server.ego_size
        else:
            length, width = SIZES.get(self.family, (1.0, 1.0))
        self.size = (length, width)
        spec = {"vehicle": carla.Vehicle, "walker": carla.Walker, "sensor": carla.Sensor}.get(
            self.family, carla.Actor
        )
        m = mock.create_autospec(spec, instance=True)
        m.id, m.type_id, m.attributes = aid, bp.id, self.attributes
        m.bounding_box = carla.BoundingBox(
            carla.Location(0, 0, 0.7), carla.Vector3D(length / 2, width / 2, 0.7)
        )
        m.get_transform.side_effect = server._rpc(lambda: self.world_transform())
        m.get_location.side_effect = server._rpc(lambda: self.world_transform().location)
        m.set_transform.side_effect = server._rpc(self.set_transform)
        m.get_velocity.side_effect = server._rpc(lambda: self.velocity)
        m.get_acceleration.side_effect = server._rpc(lambda: self.accel)
        m.get_angular_velocity.side_effect = server._rpc(lambda: carla.Vector3D())
        m.set_target_velocity.side_effect = server._rpc(self.set_velocity)
        m.set_simulate_physics.side_effect = server._rpc(self.set_physics)
        m.destroy.side_effect = server._rpc(lambda: server._destroy(self.id))
        m.is_alive = True
        if self.family == "vehicle":
            m.apply_control.side_effect = server._rpc(self.set_control)
            m.get_control.side_effect = server._rpc(lambda: self.control)
            m.get_physics_control.side_effect = server._rpc(lambda: self.physics_control)
            m.apply_physics_control.side_effect = server._rpc(self.set_physics_control)
            m.get_wheel_steer_angle.side_effect = server._rpc(lambda where: self.wheel_angle)
        if self.family == "sensor":
            m.listen.side_effect = server._rpc(self.listen)
            m.stop.side_effect = server._rpc(self.stop)
            m.is_listening = False
        self.mock = m
        if self.physics and parent is None:
            self.body = _Body(np.zeros(1), np.zeros(1), np.zeros(1))
            self._body_from_transform()

    # server-side behaviour
    def world_transform(self):
        if self.parent is None:
            return self.transform
        p = self.server.actors[self.parent].world_transform()
        return p  # sensors sit on their parent (their offset does not matter to the fake)

    def set_transform(self, tf) -> None:
        self.transform = tf
        if self.body is not None:
            self._body_from_transform()

    def _body_from_transform(self) -> None:
        x, y, th = from_carla(self.transform)
        s, d, h = frenet(self.server.road, x, y)
        b = self.body
        b.s[:], b.d[:], b.psi[:] = s, d, (th - h + math.pi) % (2 * math.pi) - math.pi

    def set_velocity(self, vec) -> None:
        self.velocity = vec
        if self.body is not None:
            # starting speed: the embedded world's equilibrium (throttle that holds it, lane steering)
            srv, b = self.server, self.body
            v = math.hypot(vec.x, vec.y)
            p = srv.vehicle
            need = p.rolling * (v > 0) + p.drag * v * v
            b.v[:] = v
            b.thr[:] = np.clip(need / (p.accel_max * max(1 - v / p.v_max, 1e-6)), 0, 1)
            b.brk[:] = 0.0
            kap = srv.road.curvature(b.s)
            b.phi[:] = np.arctan(p.wheelbase * kap / (1.0 - kap * b.d))
            b.a[:] = acceleration(b.v, b.thr, b.brk, p)
            self._publish()

    def set_physics(self, on: bool) -> None:
        self.physics = bool(on)
        if not on:
            self.body = None

    def set_control(self, ctrl) -> None:
        self.control = ctrl
        self.controls.append((self.server.frame + 1, ctrl))  # applied on the next tick

    def set_physics_control(self, pc) -> None:
        self.physics_control = pc

    def listen(self, cb) -> None:
        self.listener = cb
        self.mock.is_listening = True

    def stop(self) -> None:
        self.listener = None
        self.mock.is_listening = False

    def phi_max(self) -> float:
        return math.radians(self.physics_control.wheels[0].max_steer_angle)

    def advance(self, dt: float) -> None:
        if self.body is None:
            return
        srv, b, c = self.server, self.body, self.control
        p = srv.vehicle.model_copy(update={"phi_max": self.phi_max()})
        act = Actuation(np.array([c.throttle]), np.array([c.brake]), np.array([-c.steer]))
        step_vehicle(b, act, p, srv.road, dt)
        self._publish()

    def _publish(self) -> None:
        import carla

        b, road = self.body, self.server.road
        x, y, h = (float(v[0]) for v in road.pose(b.s, b.d))
        th = h + float(b.psi[0])
        z = self.transform.location.z
        self.transform = to_carla(x, y, th, z)
        v, a = float(b.v[0]), float(b.a[0])
        self.velocity = carla.Vector3D(v * math.cos(th), -v * math.sin(th), 0.0)
        self.accel = carla.Vector3D(a * math.cos(th), -a * math.sin(th), 0.0)
        self.wheel_angle = -math.degrees(float(b.phi[0]))

    def box(self):
        x, y, th = from_carla(self.world_transform())
        return x, y, th, self.size[0] / 2, self.size[1] / 2


class FakeCarla:
    """A fake CARLA server; ``client`` is the factory to hand the bridge (see module docstring)."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        roads: list[Road] = (),
        towns: dict[str, Road] | None = None,
        server_version: str | None = None,
        down: bool = False,
        revive_file: str | Path | None = None,
        fail_at: int | None = None,
        fail_kind: str = "timeout",
        late_events: bool = False,
        foreign_tick_at: int | None = None,
        fail_hook=None,
        ego_blueprint: str = "vehicle.lincoln.mkz_2020",
    ):
        import carla

        self.client_version = carla.Client("127.0.0.1", 2000).get_client_version()
        self.server_version = server_version or self.client_version
        self.vehicle = scenario.ego.vehicle if scenario is not None else VehicleParams()
        self.ego_size = (self.vehicle.length, self.vehicle.width)
        self.ego_blueprint = ego_blueprint
        self.known: dict[str, RoadGeometry] = {}
        for r in [*(roads or []), *([scenario.road] if scenario is not None else [])]:
            self.known[write_opendrive(r, name=scenario.name if scenario else "drivefi").xodr] = (
                RoadGeometry.from_road(r)
            )
            self.known[write_opendrive(r).xodr] = RoadGeometry.from_road(r)
        self.towns = dict(towns or {})
        self.revive_file = Path(revive_file) if revive_file else None
        self.fail_at, self.fail_kind = fail_at, fail_kind
        self.late_events = late_events
        self.foreign_tick_at = foreign_tick_at
        self.fail_hook = (
            fail_hook  # fail_hook(fake) -> None | "timeout" | "error" | "crash", per tick
        )
        self.runs = 0  # times the world was switched to synchronous mode
        self.run_ticks = 0  # ticks since then
        # server state
        self._boot()
        self.down = down
        self.settings_log: list = []
        self.tm_sync_log: list[bool] = []
        self.tm_seeds: list[int] = []
        self.ticks = 0
        self.destroyed: list[int] = []
        self.spawned: list[int] = []
        self.history: dict[int, _Actor] = {}  # every actor ever spawned, destroyed or not
        self.generated = 0
        self.loaded: list[str] = []
        self.timeouts: list[float] = []
        self._next_id = 100
        self._pending: list = []
        self._contacts: set = set()
        self.clients: list = []
        self.world = self._make_world()
        self.tm = mock.create_autospec(carla.TrafficManager, instance=True)
        self.tm.set_synchronous_mode.side_effect = self._rpc(self.tm_sync_log.append)
        self.tm.set_random_device_seed.side_effect = self._rpc(self.tm_seeds.append)

    # -- plumbing -------------------------------------------------------------------------------
    def _check(self) -> None:
        if self.down and self.revive_file is not None and self.revive_file.exists():
            self._boot()  # a restarted server: fresh world, default settings and map
        if self.down:
            raise RuntimeError(
                TIMEOUT_MSG.format(ms=int(self.timeout * 1000), addr="127.0.0.1:2000")
            )

    def _boot(self) -> None:
        import carla

        start = Road(lanes=2, segments=[Segment(length=200.0)])
        self._load_map(
            "Carla/Maps/Town10HD_Opt", write_opendrive(start).xodr, RoadGeometry.from_road(start)
        )
        self.settings = carla.WorldSettings()
        self.actors: dict[int, _Actor] = {}
        self.frame = 4000
        self.down = False

    @property
    def timeout(self) -> float:
        return self.timeouts[-1] if self.timeouts else 5.0

    def _rpc(self, fn):
        def call(*a, **kw):
            self._check()
            return fn(*a, **kw)

        return call

    def _load_map(self, name: str, xodr: str, road: RoadGeometry) -> None:
        import carla

        self.map = carla.Map(name, xodr)
        self.road = road

    # -- client ---------------------------------------------------------------------------------
    def client(self, host: str = "127.0.0.1", port: int = 2000, worker_threads: int = 0):
        """The client factory (``carla.Client``'s signature)."""
        import carla

        c = mock.create_autospec(carla.Client, instance=True)
        c.get_client_version.return_value = self.client_version
        c.get_server_version.side_effect = self._rpc(lambda: self.server_version)
        c.set_timeout.side_effect = self.timeouts.append
        c.get_world.side_effect = self._rpc(lambda: self.world)
        c.generate_opendrive_world.side_effect = self._rpc(self._generate)
        c.load_world.side_effect = self._rpc(self._load_town)
        c.get_available_maps.side_effect = self._rpc(
            lambda: [f"/Game/Carla/Maps/{t}" for t in self.towns]
        )
        c.get_trafficmanager.side_effect = self._rpc(lambda port=8000: self.tm)
        c.apply_batch.side_effect = self._rpc(self._batch)
        c.apply_batch_sync.side_effect = self._rpc(self._batch_sync)
        self.clients.append((host, port, c))
        return c

    def _generate(self, xodr, params=None, reset_settings=True):
        import carla

        if xodr not in self.known:
            raise RuntimeError(
                "fake CARLA: OpenDRIVE of an unknown road (register it with roads=[...])"
            )
        self._load_map("OpenDriveMap", xodr, self.known[xodr])
        self.generated += 1
        self._clear_world(reset_settings)
        if reset_settings:
            self.settings = carla.WorldSettings()

    def _load_town(self, name, reset_settings=True, map_layers=None):
        import carla

        if name not in self.towns:
            raise RuntimeError(f"map '{name}' not found")
        road = self.towns[name]
        self._load_map(
            f"Carla/Maps/{name}",
            write_opendrive(road, name=name).xodr,
            RoadGeometry.from_road(road),
        )
        self.loaded.append(name)
        self._clear_world(reset_settings)
        if reset_settings:
            self.settings = carla.WorldSettings()

    def _clear_world(self, _reset) -> None:
        for aid in list(self.actors):
            self._destroy(aid)

    def _batch(self, cmds, do_tick=False):
        import carla

        out = []
        for cmd in cmds:
            a = self.actors.get(cmd.actor_id)
            ok = a is not None and a.alive
            if isinstance(cmd, carla.command.DestroyActor):
                ok = self._destroy(cmd.actor_id)
            elif not ok:
                pass
            elif isinstance(cmd, carla.command.ApplyTransform):
                a.set_transform(cmd.transform)
            elif isinstance(cmd, carla.command.ApplyVehicleControl):
                a.set_control(cmd.control)
            elif isinstance(cmd, carla.command.ApplyTargetVelocity):
                a.set_velocity(cmd.velocity)
            else:  # pragma: no cover - commands the bridge does not send
                raise TypeError(f"the fake server does not apply {type(cmd).__name__} commands")
            out.append(
                SimpleNamespace(actor_id=cmd.actor_id, error="" if ok else "actor not found")
            )
        if do_tick:
            self._tick()
        return out

    def _batch_sync(self, cmds, do_tick=False):
        return self._batch(cmds, do_tick)

    # -- world ----------------------------------------------------------------------------------
    def _make_world(self):
        import carla

        w = mock.create_autospec(carla.World, instance=True)
        w.id = 1
        w.get_settings.side_effect = self._rpc(lambda: _copy(self.settings))
        w.apply_settings.side_effect = self._rpc(self._apply_settings)
        w.get_map.side_effect = self._rpc(lambda: self.map)
        w.get_blueprint_library.side_effect = self._rpc(self._library)
        w.try_spawn_actor.side_effect = self._rpc(self._try_spawn)
        w.spawn_actor.side_effect = self._rpc(self._spawn)
        w.tick.side_effect = self._rpc(self._tick)
        w.get_actor.side_effect = self._rpc(
            lambda aid: self.actors[aid].mock if aid in self.actors else None
        )
        return w

    def _apply_settings(self, s) -> int:
        if s.synchronous_mode and not self.settings.synchronous_mode:
            self.runs += 1
            self.run_ticks = 0
        self.settings = _copy(s)
        self.settings_log.append(_copy(s))
        return self.frame

    def _library(self):
        import carla

        lib = mock.create_autospec(carla.BlueprintLibrary, instance=True)
        known = ("vehicle.", "walker.", "static.", "sensor.")

        def bp(name):
            b = mock.create_autospec(carla.ActorBlueprint, instance=True)
            b.id = name
            b._attrs = {}
            b.has_attribute.return_value = True
            b.set_attribute.side_effect = lambda k, v: b._attrs.__setitem__(k, v)
            return b

        def find(name):
            if not name.startswith(known):
                raise IndexError(f"blueprint '{name}' not found")
            return bp(name)

        lib.find.side_effect = find
        lib.filter.side_effect = lambda pat: [bp(pat.replace("*", "generic"))]
        return lib

    def _try_spawn(self, bp, transform, attach_to=None, attachment_type=None):
        if attach_to is None and bp.id.startswith(("vehicle.", "walker.")):
            x, y, th = from_carla(transform)
            for a in self.actors.values():
                if a.alive and a.parent is None and a.family in ("vehicle", "walker"):
                    ax, ay, ath, ahl, ahw = a.box()
                    if obb_overlap(x, y, th, 0.5, 0.5, ax, ay, ath, ahl, ahw):
                        return None
        aid = self._next_id
        self._next_id += 1
        parent = attach_to.id if attach_to is not None else None
        actor = _Actor(self, aid, bp, transform, parent)
        self.actors[aid] = actor
        self.history[aid] = actor
        self.spawned.append(aid)
        return actor.mock

    def _spawn(self, bp, transform, attach_to=None, attachment_type=None):
        m = self._try_spawn(bp, transform, attach_to)
        if m is None:
            raise RuntimeError("Spawn failed because of collision at spawn position")
        return m

    def _destroy(self, aid: int) -> bool:
        a = self.actors.get(aid)
        if a is None or not a.alive:
            return False
        a.alive = False
        a.mock.is_alive = False
        a.listener = None
        self.destroyed.append(aid)
        del self.actors[aid]
        return True

    def _tick(self, seconds: float = 10.0) -> int:
        self.ticks += 1
        self.run_ticks += 1
        kind = self.fail_kind if self.fail_at is not None and self.ticks == self.fail_at else None
        if kind is None and self.fail_hook is not None:
            kind = self.fail_hook(self)
        if kind is not None:
            if kind == "timeout":
                raise RuntimeError(
                    TIMEOUT_MSG.format(ms=int(seconds * 1000), addr="127.0.0.1:2000")
                )
            if kind == "crash":
                self.down = True
                self._check()
            if kind == "interrupt":
                raise KeyboardInterrupt
            raise RuntimeError("rpc::rpc_error during call in function tick")
        if self.foreign_tick_at is not None and self.ticks == self.foreign_tick_at:
            self.frame += 1  # somebody else ticked in between
        dt = self.settings.fixed_delta_seconds or 0.05
        self.frame += 1
        pending, self._pending = self._pending, []
        for cb, ev in pending:  # late sensor events of the previous frame
            cb(ev)
        for a in list(self.actors.values()):
            if a.physics and a.family == "vehicle":
                a.advance(dt)
        self._sensors(dt)
        return self.frame

    def _sensors(self, dt: float) -> None:
        import carla

        for s in list(self.actors.values()):
            if s.family != "sensor" or s.listener is None:
                continue
            parent = self.actors.get(s.parent)
            if parent is None:
                continue
            if s.type_id == "sensor.other.collision":
                px, py, pth, phl, phw = parent.box()
                for o in list(self.actors.values()):
                    if o is parent or o.family == "sensor" or not o.alive:
                        continue
                    ox, oy, oth, ohl, ohw = o.box()
                    if obb_overlap(px, py, pth, phl, phw, ox, oy, oth, ohl, ohw):
                        ev = mock.create_autospec(carla.CollisionEvent, instance=True)
                        ev.frame, ev.actor, ev.other_actor = self.frame, parent.mock, o.mock
                        self._deliver(s, ev)
            elif s.type_id == "sensor.other.lane_invasion":
                if parent.body is None:
                    continue
                lane = math.floor(float(parent.body.d[0]) / self._lane_width())
                last = getattr(s, "_lane", lane)
                s._lane = lane
                if lane != last:
                    ev = mock.create_autospec(carla.LaneInvasionEvent, instance=True)
                    ev.frame, ev.actor = self.frame, parent.mock
                    ev.crossed_lane_markings = [SimpleNamespace(type="Broken")]
                    self._deliver(s, ev)
            else:
                loc = parent.world_transform().location
                geo = self.map.transform_to_geolocation(loc)
                data = SimpleNamespace(
                    frame=self.frame,
                    timestamp=self.frame * dt,
                    type_id=s.type_id,
                    latitude=geo.latitude,
                    longitude=geo.longitude,
                    altitude=geo.altitude,
                )
                s.listener(data)

    def _lane_width(self) -> float:
        wp = self.map.get_waypoint_xodr(0, -1, 1.0)
        return float(wp.lane_width) if wp is not None else 3.5

    def _deliver(self, sensor: _Actor, ev) -> None:
        if self.late_events:
            self._pending.append((sensor.listener, ev))
        else:
            sensor.listener(ev)

    # -- what tests look at ------------------------------------------------------------------------
    @property
    def alive(self) -> list[int]:
        return [aid for aid, a in self.actors.items() if a.alive]

    def ego(self) -> _Actor | None:
        """The last vehicle spawned with role_name 'hero' (alive or destroyed)."""
        heroes = [a for a in self.history.values() if a.attributes.get("role_name") == "hero"]
        return heroes[-1] if heroes else None


def _copy(s):
    from drivefi.bridges.carla.bridge import _copy_settings

    return _copy_settings(s)
