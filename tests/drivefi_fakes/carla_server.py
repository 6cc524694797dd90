"""A fake CARLA server for tests and dry runs, built to fail where the real one would.

:class:`FakeCarla` hands out ``unittest.mock.create_autospec`` fakes of the server-side objects.
carla's compiled methods have no Python signatures, so the fakes are specced from the classes
below, whose methods carry the argument names and defaults of the carla 0.9.16 Python API
reference: a wrong arity, an unknown keyword or a method the API does not have fails. Behind them:

* real client-side values: ``carla.Map`` parsed from OpenDRIVE (the road the bridge generates, or
  a real town map loaded from an ``.xodr`` file, e.g. the test fixtures), ``carla.WorldSettings``,
  ``carla.Transform``, ``carla.command.*``;
* blueprints with the attributes CARLA's blueprints have (``has_attribute`` answers from that
  list; ``set_attribute`` of an unknown attribute raises ``IndexError``, as carla does);
* **vehicle physics that is not DriveFI's**: a dynamic bicycle in the world plane with linear,
  saturating tyres (slip angles, friction limit), a powertrain and brake with their own lags and
  maps, and CARLA's steering: the front wheels turn ``steer * max_steer_angle * steering_curve(speed)``
  (the default curve reduces steering at speed) at a finite rate. A test through the bridge sees
  behaviour, not an echo of the embedded model. A velocity set before a vehicle's first tick is
  lost (its physics body does not exist yet), ``enable_constant_velocity`` holds one;
* kinematic actors (physics off) report the velocity last set with ``set_target_velocity``;
* sensor data shaped like carla's (``raw_data`` buffers of the documented layouts, ``width``,
  ``height``, ``channels``, ``get_point_count``, ``get_detection_count``, GNSS and IMU fields),
  computed from the blueprint attributes (image size, lidar and radar range);
* collision and lane-invasion sensors firing on box overlap and on a change of map lane.

Failures are scripted: a time-out, server error, crash or Ctrl-C at a chosen tick (``fail_at``)
or wherever ``fail_hook`` says, a server that is down (until a file appears), a version mismatch,
late sensor events, another client that ticks.

Use: ``fake = FakeCarla(scenario)`` then ``make_carla_bridge(scenario, client_factory=fake.client)``;
a town: ``FakeCarla(scenario, towns={"Town01": "tests/fixtures/Town01.xodr"})``.
"""

from __future__ import annotations

import fnmatch
import math
import struct
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np

from drivefi.bridges.embedded import obb_overlap
from drivefi.world.opendrive import from_carla, scenario_opendrive, to_carla, write_opendrive
from drivefi.world.scenario import Road, Scenario, Segment, VehicleParams

TIMEOUT_MSG = "time-out of {ms}ms while waiting for the simulator, make sure the simulator is ready and connected to {addr}"
SIZES = {"vehicle": (4.6, 1.9), "walker": (0.5, 0.5), "static": (1.0, 1.0), "sensor": (0.0, 0.0)}
ALL = object()  # stands for carla.MapLayer.All / carla.AttachmentType.Rigid defaults


# -- the 0.9.16 API surface the fakes are specced from ------------------------------------------------
class ClientAPI:
    def __init__(self, host="127.0.0.1", port=2000, worker_threads=0): ...
    def set_timeout(self, seconds): ...
    def get_client_version(self): ...
    def get_server_version(self): ...
    def get_world(self): ...
    def get_available_maps(self): ...
    def load_world(self, map_name, reset_settings=True, map_layers=ALL): ...
    def load_world_if_different(self, map_name, reset_settings=True, map_layers=ALL): ...
    def reload_world(self, reset_settings=True): ...
    def generate_opendrive_world(self, opendrive, parameters=None, reset_settings=True): ...
    def apply_batch(self, commands): ...
    def apply_batch_sync(self, commands, do_tick=False): ...
    def get_trafficmanager(self, client_connection=8000): ...


class WorldAPI:
    id = 0

    def get_settings(self): ...
    def apply_settings(self, world_settings): ...
    def get_map(self): ...
    def get_blueprint_library(self): ...
    def get_snapshot(self): ...
    def get_actor(self, actor_id): ...
    def get_actors(self, actor_ids=None): ...
    def get_spectator(self): ...
    def tick(self, seconds=10.0): ...
    def wait_for_tick(self, seconds=10.0): ...
    def try_spawn_actor(self, blueprint, transform, attach_to=None, attachment=ALL): ...
    def spawn_actor(self, blueprint, transform, attach_to=None, attachment=ALL): ...


class ActorAPI:
    id = 0
    type_id = ""
    attributes: dict | None = None
    is_alive = True
    parent = None
    bounding_box = None

    def destroy(self): ...
    def get_transform(self): ...
    def get_location(self): ...
    def get_velocity(self): ...
    def get_acceleration(self): ...
    def get_angular_velocity(self): ...
    def get_world(self): ...
    def set_transform(self, transform): ...
    def set_location(self, location): ...
    def set_target_velocity(self, velocity): ...
    def set_target_angular_velocity(self, angular_velocity): ...
    def enable_constant_velocity(self, velocity): ...
    def disable_constant_velocity(self): ...
    def set_simulate_physics(self, enabled=True): ...
    def set_enable_gravity(self, enabled): ...
    def add_impulse(self, impulse): ...


class VehicleAPI(ActorAPI):
    def apply_control(self, control): ...
    def get_control(self): ...
    def apply_physics_control(self, physics_control): ...
    def get_physics_control(self): ...
    def get_wheel_steer_angle(self, wheel_location): ...
    def set_autopilot(self, enabled=True, port=8000): ...
    def get_speed_limit(self): ...


class SensorAPI(ActorAPI):
    def listen(self, callback): ...
    def stop(self): ...
    def is_listening(self): ...


class BlueprintAPI:
    id = ""
    tags: list | None = None

    def has_attribute(self, id): ...
    def has_tag(self, tag): ...
    def match_tags(self, wildcard_pattern): ...
    def get_attribute(self, id): ...
    def set_attribute(self, id, value): ...


class BlueprintLibraryAPI:
    def find(self, id): ...
    def filter(self, wildcard_pattern): ...
    def filter_by_attribute(self, name, value): ...


class TrafficManagerAPI:
    def set_synchronous_mode(self, mode=True): ...
    def set_random_device_seed(self, value): ...
    def get_port(self): ...


# the attributes of CARLA 0.9.16's blueprints, by id pattern (first match)
_SENSOR = "role_name sensor_tick "
_LIDAR = _SENSOR + "channels range points_per_second rotation_frequency upper_fov lower_fov "
_LIDAR += "horizontal_fov "
ATTRIBUTES = [
    (p, set(names.split()))
    for p, names in (
        (
            "vehicle.*",
            "role_name color number_of_wheels generation object_type base_type "
            "special_type sticky_control terramechanics has_dynamic_doors has_lights",
        ),
        ("walker.*", "role_name is_invincible speed generation gender age can_use_wheelchair"),
        ("static.*", "role_name size"),
        (
            "sensor.camera.*",
            _SENSOR + "image_size_x image_size_y fov lens_k gamma "
            "motion_blur_intensity bloom_intensity",
        ),
        ("sensor.lidar.ray_cast_semantic", _LIDAR),
        (
            "sensor.lidar.ray_cast",
            _LIDAR + "atmosphere_attenuation_rate dropoff_general_rate "
            "dropoff_intensity_limit dropoff_zero_intensity noise_stddev",
        ),
        ("sensor.other.radar", _SENSOR + "horizontal_fov vertical_fov points_per_second range"),
        (
            "sensor.other.gnss",
            _SENSOR + "noise_alt_bias noise_alt_stddev noise_lat_bias "
            "noise_lat_stddev noise_lon_bias noise_lon_stddev noise_seed",
        ),
        (
            "sensor.other.imu",
            _SENSOR + "noise_accel_stddev_x noise_accel_stddev_y "
            "noise_accel_stddev_z noise_gyro_bias_x noise_gyro_bias_y noise_gyro_bias_z "
            "noise_gyro_stddev_x noise_gyro_stddev_y noise_gyro_stddev_z noise_seed",
        ),
        ("sensor.other.*", "role_name"),
    )
]
DEFAULTS = {
    "image_size_x": "800", "image_size_y": "600", "fov": "90", "range": "10.0", "channels": "32",
    "horizontal_fov": "30", "vertical_fov": "30", "points_per_second": "56000",
}  # fmt: skip
DEFAULT_STEERING_CURVE = ((0.0, 1.0), (20.0, 0.9), (60.0, 0.8), (120.0, 0.7))  # km/h -> factor


def attributes_of(bp_id: str) -> set[str]:
    for pattern, names in ATTRIBUTES:
        if fnmatch.fnmatchcase(bp_id, pattern):
            return names
    return {"role_name"}


# -- sensor data shaped like carla's --------------------------------------------------------------------
class _Measurement(SimpleNamespace):
    """frame, timestamp, transform and the type's fields (carla.SensorData)."""


def _image(frame, ts, tf, w: int, h: int, fov: float):
    px = np.zeros((h, w, 4), np.uint8)
    px[..., 0] = np.arange(w, dtype=np.uint32)[None, :] % 256  # B: column
    px[..., 1] = np.arange(h, dtype=np.uint32)[:, None] % 256  # G: row
    px[..., 2] = frame % 256
    px[..., 3] = 255
    return _Measurement(frame=frame, timestamp=ts, transform=tf, width=w, height=h, fov=fov,
                        raw_data=px.tobytes())  # fmt: skip


# -- vehicle physics (not DriveFI's) -------------------------------------------------------------------
class Dynamics:
    """A dynamic bicycle in the world plane (right-handed x, y, yaw), see the module docstring."""

    mass, iz, mu, g = 1850.0, 3200.0, 0.9, 9.81
    c_front, c_rear = 100000.0, 96000.0  # cornering stiffness per axle [N/rad]: mild understeer
    tau_drive, tau_brake = 0.25, 0.06  # powertrain and brake lags [s]
    drive_max, brake_max, v_top = 4.2, 9.0, 60.0  # [m/s^2], [m/s^2], [m/s]
    steer_speed = 6.0  # front-wheel rate of the steering rack [rad/s]

    def __init__(self, x, y, yaw, wheelbase: float):
        self.x, self.y, self.yaw = x, y, yaw
        self.vx = self.vy = self.r = 0.0
        self.delta = 0.0
        self.drive = self.brake = 0.0
        self.lf, self.lr = 0.45 * wheelbase, 0.55 * wheelbase
        self.constant: float | None = None  # enable_constant_velocity's forward speed
        self.ax = 0.0

    def step(self, dt: float, thr: float, brk: float, wheel_target: float, n: int = 5):
        h = dt / n
        m, L = self.mass, self.lf + self.lr
        v0x = self.vx * math.cos(self.yaw) - self.vy * math.sin(self.yaw)
        v0y = self.vx * math.sin(self.yaw) + self.vy * math.cos(self.yaw)
        for _ in range(n):
            self.drive += (1 - math.exp(-h / self.tau_drive)) * (thr - self.drive)
            self.brake += (1 - math.exp(-h / self.tau_brake)) * (brk - self.brake)
            step = self.steer_speed * h
            self.delta += min(max(wheel_target - self.delta, -step), step)
            v = self.vx
            fx = m * (self.drive * self.drive_max * max(1 - v / self.v_top, 0.0))
            fx -= m * (
                self.brake * self.brake_max * (v > 0.01) + 0.12 * (v > 0.01) + 3.5e-4 * v * v
            )
            if self.vx > 1.5:
                af = self.delta - math.atan2(self.vy + self.lf * self.r, self.vx)
                ar = -math.atan2(self.vy - self.lr * self.r, self.vx)
                ff = self.mu * m * self.g * self.lr / L
                fr = self.mu * m * self.g * self.lf / L
                fyf = max(min(self.c_front * af, ff), -ff)
                fyr = max(min(self.c_rear * ar, fr), -fr)
                ax = (fx - fyf * math.sin(self.delta)) / m + self.vy * self.r
                vy_dot = (fyf * math.cos(self.delta) + fyr) / m - self.vx * self.r
                r_dot = (self.lf * fyf * math.cos(self.delta) - self.lr * fyr) / self.iz
                self.vy += h * vy_dot
                self.r += h * r_dot
            else:  # slow: no slip
                ax = fx / m
                self.vy = 0.0
                self.r = self.vx * math.tan(self.delta) / L
            self.vx = max(self.vx + h * ax, 0.0)
            if self.constant is not None:
                self.vx, self.vy = self.constant, 0.0
                self.r = self.vx * math.tan(self.delta) / L
            c, s = math.cos(self.yaw), math.sin(self.yaw)
            self.x += h * (self.vx * c - self.vy * s)
            self.y += h * (self.vx * s + self.vy * c)
            self.yaw += h * self.r
        v1x = self.vx * math.cos(self.yaw) - self.vy * math.sin(self.yaw)
        v1y = self.vx * math.sin(self.yaw) + self.vy * math.cos(self.yaw)
        self.acc = ((v1x - v0x) / dt, (v1y - v0y) / dt)

    def world_velocity(self) -> tuple[float, float]:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return self.vx * c - self.vy * s, self.vx * s + self.vy * c

    def set_world_velocity(self, vx: float, vy: float) -> None:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        self.vx, self.vy = vx * c + vy * s, -vx * s + vy * c


def steering_factor(curve, speed_kmh: float) -> float:
    pts = [(float(p.x), float(p.y)) for p in curve] or [(0.0, 1.0)]
    xs, ys = zip(*pts, strict=True)
    return float(np.interp(speed_kmh, xs, ys))


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
        self.born = server.frame  # a physics body exists from the next tick on
        self.control = carla.VehicleControl()
        self.controls: list = []  # (frame it acts on, carla.VehicleControl)
        self.listener = None
        self.body: Dynamics | None = None
        self.wheel_angle = 0.0
        pc = carla.VehiclePhysicsControl()
        pc.wheels = [carla.WheelPhysicsControl(max_steer_angle=70.0) for _ in range(2)] + [
            carla.WheelPhysicsControl(max_steer_angle=0.0) for _ in range(2)
        ]
        pc.steering_curve = [carla.Vector2D(x, y) for x, y in DEFAULT_STEERING_CURVE]
        self.physics_control = pc
        if bp.id == server.ego_blueprint:
            length, width = server.ego_size
        else:
            length, width = SIZES.get(self.family, (1.0, 1.0))
        self.size = (length, width)
        spec = {"vehicle": VehicleAPI, "sensor": SensorAPI}.get(self.family, ActorAPI)
        m = mock.create_autospec(spec, instance=True)
        m.id, m.type_id, m.attributes = aid, bp.id, self.attributes
        m.bounding_box = carla.BoundingBox(
            carla.Location(0, 0, 0.7), carla.Vector3D(length / 2, width / 2, 0.7)
        )
        rpc = server._rpc
        m.get_transform.side_effect = rpc(lambda: self.world_transform())
        m.get_location.side_effect = rpc(lambda: self.world_transform().location)
        m.set_transform.side_effect = rpc(self.set_transform)
        m.get_velocity.side_effect = rpc(lambda: self.velocity)
        m.get_acceleration.side_effect = rpc(lambda: self.accel)
        m.get_angular_velocity.side_effect = rpc(self.angular_velocity)
        m.set_target_velocity.side_effect = rpc(self.set_velocity)
        m.enable_constant_velocity.side_effect = rpc(self.enable_constant)
        m.disable_constant_velocity.side_effect = rpc(self.disable_constant)
        m.set_simulate_physics.side_effect = rpc(self.set_physics)
        m.destroy.side_effect = rpc(lambda: server._destroy(self.id))
        m.is_alive = True
        if self.family == "vehicle":
            m.apply_control.side_effect = rpc(self.set_control)
            m.get_control.side_effect = rpc(lambda: self.control)
            m.get_physics_control.side_effect = rpc(lambda: self.physics_control)
            m.apply_physics_control.side_effect = rpc(self.set_physics_control)
            m.get_wheel_steer_angle.side_effect = rpc(lambda wheel_location: self.wheel_angle)
        if self.family == "sensor":
            m.listen.side_effect = rpc(self.listen)
            m.stop.side_effect = rpc(self.stop)
            m.is_listening.side_effect = lambda: self.listener is not None
        self.mock = m
        if self.physics and parent is None:
            x, y, th = from_carla(transform)
            self.body = Dynamics(x, y, th, server.vehicle.wheelbase)

    # server-side behaviour
    def world_transform(self):
        if self.parent is None:
            return self.transform
        return self.server.actors[self.parent].world_transform()  # sensors ride on their parent

    def set_transform(self, tf) -> None:
        self.transform = tf
        if self.body is not None:
            x, y, th = from_carla(tf)
            self.body.x, self.body.y, self.body.yaw = x, y, th

    def set_velocity(self, vec) -> None:
        if self.body is None:
            self.velocity = vec  # kinematic: reported as set
        elif self.server.frame > self.born:  # before its first tick there is no body: lost
            self.body.set_world_velocity(float(vec.x), -float(vec.y))
            self._publish()

    def enable_constant(self, vec) -> None:
        if self.body is not None:
            self.body.constant = float(vec.x)

    def disable_constant(self) -> None:
        if self.body is not None:
            self.body.constant = None

    def angular_velocity(self):
        import carla

        r = self.body.r if self.body is not None else 0.0
        return carla.Vector3D(0.0, 0.0, -math.degrees(r))

    def set_physics(self, enabled=True) -> None:
        self.physics = bool(enabled)
        if not enabled:
            self.body = None

    def set_control(self, ctrl) -> None:
        self.control = ctrl
        self.controls.append((self.server.frame + 1, ctrl))  # applied on the next tick

    def set_physics_control(self, pc) -> None:
        self.physics_control = pc

    def listen(self, cb) -> None:
        self.listener = cb

    def stop(self) -> None:
        self.listener = None

    def advance(self, dt: float) -> None:
        if self.body is None:
            return
        b, c, pc = self.body, self.control, self.physics_control
        wheel_max = math.radians(pc.wheels[0].max_steer_angle)
        factor = steering_factor(pc.steering_curve, 3.6 * math.hypot(*b.world_velocity()))
        # CARLA steer is right-positive; the body's angles are left-positive
        b.step(dt, c.throttle, c.brake, -c.steer * wheel_max * factor)
        self._publish()

    def _publish(self) -> None:
        import carla

        b = self.body
        z = self.transform.location.z
        self.transform = to_carla(b.x, b.y, b.yaw, z)
        vx, vy = b.world_velocity()
        self.velocity = carla.Vector3D(vx, -vy, 0.0)
        ax, ay = getattr(b, "acc", (0.0, 0.0))
        self.accel = carla.Vector3D(ax, -ay, 0.0)
        self.wheel_angle = -math.degrees(b.delta)

    def box(self):
        x, y, th = from_carla(self.world_transform())
        return x, y, th, self.size[0] / 2, self.size[1] / 2


class FakeCarla:
    """A fake CARLA server; ``client`` is the factory to hand the bridge (see module docstring).

    ``towns`` maps a town name to a :class:`Road` (written as OpenDRIVE), an ``.xodr`` path or
    OpenDRIVE text (a real town map)."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        roads: list[Road] = (),
        towns: dict[str, Road | str | Path] | None = None,
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
        self.known: set[str] = set()
        for r in [*(roads or []), *([scenario.road] if scenario is not None else [])]:
            self.known.add(write_opendrive(r, name=scenario.name if scenario else "drivefi").xodr)
            self.known.add(write_opendrive(r).xodr)
        if scenario is not None:
            self.known.add(scenario_opendrive(scenario).xodr)
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
        self.frame = 4000
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
        self.clients: list = []
        self.world = self._make_world()
        self.tm = mock.create_autospec(TrafficManagerAPI, instance=True)
        self.tm.set_synchronous_mode.side_effect = self._rpc(
            lambda mode=True: self.tm_sync_log.append(mode)
        )
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
        self._load_map("Carla/Maps/Town10HD_Opt", write_opendrive(start).xodr)
        self.settings = carla.WorldSettings()
        self.actors: dict[int, _Actor] = {}
        self.down = False

    @property
    def timeout(self) -> float:
        return self.timeouts[-1] if self.timeouts else 5.0

    def _rpc(self, fn):
        def call(*a, **kw):
            self._check()
            return fn(*a, **kw)

        return call

    def _load_map(self, name: str, xodr: str) -> None:
        import carla

        self.map = carla.Map(name.split("/")[-1], xodr)
        self.map_name = name

    def town_xodr(self, name: str) -> str:
        src = self.towns[name]
        if isinstance(src, Road):
            return write_opendrive(src, name=name).xodr
        text = str(src)
        if text.lstrip().startswith("<"):
            return text
        return Path(text).read_text()

    # -- client ---------------------------------------------------------------------------------
    def client(self, host: str = "127.0.0.1", port: int = 2000, worker_threads: int = 0):
        """The client factory (``carla.Client``'s signature)."""
        c = mock.create_autospec(ClientAPI, instance=True)
        c.get_client_version.return_value = self.client_version
        c.get_server_version.side_effect = self._rpc(lambda: self.server_version)
        c.set_timeout.side_effect = self.timeouts.append
        c.get_world.side_effect = self._rpc(lambda: self.world)
        c.generate_opendrive_world.side_effect = self._rpc(self._generate)
        c.load_world.side_effect = self._rpc(self._load_town)
        c.load_world_if_different.side_effect = self._rpc(self._load_town_if_different)
        c.get_available_maps.side_effect = self._rpc(
            lambda: [f"/Game/Carla/Maps/{t}" for t in self.towns]
        )
        c.get_trafficmanager.side_effect = self._rpc(lambda client_connection=8000: self.tm)
        c.apply_batch.side_effect = self._rpc(self._batch)
        c.apply_batch_sync.side_effect = self._rpc(self._batch_sync)
        self.clients.append((host, port, c))
        return c

    def _generate(self, opendrive, parameters=None, reset_settings=True):
        import carla

        if opendrive not in self.known:
            raise RuntimeError(
                "fake CARLA: OpenDRIVE of an unknown road (register it with roads=[...])"
            )
        self._load_map("OpenDriveMap", opendrive)
        self.generated += 1
        self._clear_world()
        if reset_settings:
            self.settings = carla.WorldSettings()
        return self.world

    def _load_town(self, map_name, reset_settings=True, map_layers=ALL):
        import carla

        name = str(map_name).split("/")[-1]
        if name not in self.towns:
            raise RuntimeError(f"map '{map_name}' not found")
        self._load_map(f"Carla/Maps/{name}", self.town_xodr(name))
        self.loaded.append(name)
        self._clear_world()
        if reset_settings:
            self.settings = carla.WorldSettings()
        return self.world

    def _load_town_if_different(self, map_name, reset_settings=True, map_layers=ALL):
        if self.map_name.split("/")[-1] == str(map_name).split("/")[-1]:
            return None
        return self._load_town(map_name, reset_settings, map_layers)

    def _clear_world(self) -> None:
        for aid in list(self.actors):
            self._destroy(aid)

    def _batch(self, commands, do_tick=False):
        import carla

        out = []
        for cmd in commands:
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

    def _batch_sync(self, commands, do_tick=False):
        return self._batch(commands, do_tick)

    # -- world ----------------------------------------------------------------------------------
    def _make_world(self):
        w = mock.create_autospec(WorldAPI, instance=True)
        w.id = 1
        w.get_settings.side_effect = self._rpc(lambda: _copy(self.settings))
        w.apply_settings.side_effect = self._rpc(self._apply_settings)
        w.get_map.side_effect = self._rpc(lambda: self.map)
        w.get_blueprint_library.side_effect = self._rpc(self._library)
        w.try_spawn_actor.side_effect = self._rpc(self._try_spawn)
        w.spawn_actor.side_effect = self._rpc(self._spawn)
        w.tick.side_effect = self._rpc(self._tick)
        w.get_actor.side_effect = self._rpc(
            lambda actor_id: self.actors[actor_id].mock if actor_id in self.actors else None
        )
        return w

    def _apply_settings(self, world_settings) -> int:
        s = world_settings
        if s.synchronous_mode and not self.settings.synchronous_mode:
            self.runs += 1
            self.run_ticks = 0
        self.settings = _copy(s)
        self.settings_log.append(_copy(s))
        return self.frame

    def _library(self):
        lib = mock.create_autospec(BlueprintLibraryAPI, instance=True)
        known = ("vehicle.", "walker.", "static.", "sensor.")

        def bp(name):
            b = mock.create_autospec(BlueprintAPI, instance=True)
            b.id = name
            b._attrs = {}
            names = attributes_of(name)
            b.has_attribute.side_effect = lambda id: id in names

            def set_attribute(id, value):
                if id not in names:
                    raise IndexError(f"blueprint '{name}' has no attribute '{id}'")
                if not isinstance(value, str):
                    raise TypeError("set_attribute takes a str value")
                b._attrs[id] = value

            b.set_attribute.side_effect = set_attribute
            return b

        def find(id):
            if not id.startswith(known):
                raise IndexError(f"blueprint '{id}' not found")
            return bp(id)

        lib.find.side_effect = find
        lib.filter.side_effect = lambda wildcard_pattern: [
            bp(wildcard_pattern.replace("*", "generic"))
        ]
        return lib

    def _try_spawn(self, blueprint, transform, attach_to=None, attachment=ALL):
        if attach_to is None and blueprint.id.startswith(("vehicle.", "walker.")):
            x, y, th = from_carla(transform)
            for a in self.actors.values():
                if a.alive and a.parent is None and a.family in ("vehicle", "walker"):
                    ax, ay, ath, ahl, ahw = a.box()
                    if obb_overlap(x, y, th, 0.5, 0.5, ax, ay, ath, ahl, ahw):
                        return None
        aid = self._next_id
        self._next_id += 1
        parent = attach_to.id if attach_to is not None else None
        actor = _Actor(self, aid, blueprint, transform, parent)
        self.actors[aid] = actor
        self.history[aid] = actor
        self.spawned.append(aid)
        return actor.mock

    def _spawn(self, blueprint, transform, attach_to=None, attachment=ALL):
        m = self._try_spawn(blueprint, transform, attach_to)
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

    # -- sensors ----------------------------------------------------------------------------------
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
                        ev = SimpleNamespace(
                            frame=self.frame, actor=parent.mock, other_actor=o.mock
                        )
                        self._deliver(s, ev)
            elif s.type_id == "sensor.other.lane_invasion":
                wp = self.map.get_waypoint(parent.world_transform().location)
                lane = (wp.road_id, wp.lane_id) if wp is not None else None
                last = getattr(s, "_lane", lane)
                s._lane = lane
                if lane is not None and last is not None and lane[1] != last[1]:
                    ev = SimpleNamespace(frame=self.frame, actor=parent.mock)
                    ev.crossed_lane_markings = [SimpleNamespace(type=carla.LaneMarkingType.Broken)]
                    self._deliver(s, ev)
            else:
                s.listener(self.measure(s, parent, dt))

    def _attr(self, s: _Actor, name: str) -> str:
        return s.attributes.get(name, DEFAULTS.get(name, "0"))

    def measure(self, s: _Actor, parent: _Actor, dt: float):
        """One frame of sensor ``s``'s data, shaped like carla's (see the module docstring)."""
        import carla

        ts, tf = self.frame * dt, s.world_transform()
        t = s.type_id
        if t.startswith("sensor.camera."):
            w, h = int(self._attr(s, "image_size_x")), int(self._attr(s, "image_size_y"))
            return _image(self.frame, ts, tf, w, h, float(self._attr(s, "fov")))
        if t.startswith("sensor.lidar.") or t == "sensor.other.radar":
            rng = float(self._attr(s, "range"))
            hits = self._targets(s, parent, rng)
            if t == "sensor.other.radar":
                raw = b"".join(struct.pack("<4f", v, az, alt, d) for d, az, alt, v, _ in hits)
                return _Measurement(frame=self.frame, timestamp=ts, transform=tf, raw_data=raw,
                                    get_detection_count=lambda n=len(hits): n)  # fmt: skip
            if t == "sensor.lidar.ray_cast_semantic":
                raw = b"".join(
                    struct.pack("<4f2I", x, y, z, 1.0, oid, 14) for (x, y, z), oid in _xyz(hits)
                )
            else:
                raw = b"".join(struct.pack("<4f", x, y, z, 0.9) for (x, y, z), _ in _xyz(hits))
            ch = int(self._attr(s, "channels"))
            counts = [len(hits) if c == 0 else 0 for c in range(ch)]
            return _Measurement(frame=self.frame, timestamp=ts, transform=tf, raw_data=raw,
                                channels=ch, horizontal_angle=0.0,
                                get_point_count=lambda c, counts=counts: counts[c])  # fmt: skip
        if t == "sensor.other.gnss":
            geo = self.map.transform_to_geolocation(tf.location)
            return _Measurement(frame=self.frame, timestamp=ts, transform=tf,
                                latitude=geo.latitude, longitude=geo.longitude,
                                altitude=geo.altitude)  # fmt: skip
        if t == "sensor.other.imu":
            acc, yaw = parent.accel, math.radians(tf.rotation.yaw)
            c, s_ = math.cos(yaw), math.sin(yaw)
            ax, ay = acc.x * c + acc.y * s_, -acc.x * s_ + acc.y * c
            gz = -parent.angular_velocity().z
            return _Measurement(frame=self.frame, timestamp=ts, transform=tf,
                                accelerometer=carla.Vector3D(ax, ay, 9.81),
                                gyroscope=carla.Vector3D(0.0, 0.0, math.radians(gz)),
                                compass=(yaw + math.pi / 2) % (2 * math.pi))  # fmt: skip
        return _Measurement(frame=self.frame, timestamp=ts, transform=tf)

    def _targets(self, s: _Actor, parent: _Actor, rng: float):
        """(depth, azimuth, altitude, relative speed, id) of every other actor within ``rng`` of
        sensor ``s``, in the sensor's frame (CARLA's: x forward, y right)."""
        tf = parent.world_transform()
        loc, yaw = tf.location, math.radians(tf.rotation.yaw)
        off = s.rel.location if s.rel is not None else None
        sx = loc.x + (off.x * math.cos(yaw) - off.y * math.sin(yaw) if off else 0.0)
        sy = loc.y + (off.x * math.sin(yaw) + off.y * math.cos(yaw) if off else 0.0)
        out = []
        for o in self.actors.values():
            if o is parent or o.family == "sensor" or not o.alive:
                continue
            ol = o.world_transform().location
            dx, dy = ol.x - sx, ol.y - sy
            depth = math.hypot(dx, dy)
            if depth > rng:
                continue
            az = math.atan2(dy, dx) - yaw
            az = (az + math.pi) % (2 * math.pi) - math.pi
            ux, uy = dx / max(depth, 1e-9), dy / max(depth, 1e-9)
            rel = (o.velocity.x - parent.velocity.x) * ux + (o.velocity.y - parent.velocity.y) * uy
            out.append((depth, az, 0.0, rel, o.id))
        return out

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


def _xyz(hits):
    for depth, az, _alt, _v, oid in hits:
        yield (depth * math.cos(az), depth * math.sin(az), 0.0), oid


def _copy(s):
    from drivefi.bridges.carla.bridge import _copy_settings

    return _copy_settings(s)
