"""The CARLA bridge: a scenario run on a CARLA server, behind the same contract as the embedded one.

One run (N = 1) at a time, from step 0:

* **reset** connects (cached per server; version-checked), captures the world's settings, loads
  the world (the scenario road as generated OpenDRIVE, or a named town with
  ``load_world_if_different``; settings kept), switches it to synchronous mode with the scenario's
  fixed step, samples the ego's route through the map's waypoints (:class:`RouteFrame`), spawns the
  ego (role ``hero``; steering matched to ``phi_max``) held at its initial speed through the first
  tick, the scripted actors (kinematic: no physics, carrying their velocity), a collision and a
  lane-invasion sensor and any sensors the user's agent asked for (translated as the Leaderboard
  does, :mod:`.sensors`), and ticks once: that frame is step 0. No Traffic Manager is created
  unless something asks for one (:meth:`CarlaBridge.traffic_manager`).
* **step** passes the command through the vehicle interface (:class:`drivefi.world.vehicle.VehicleInterface`:
  the same guard, actuator lag and steering limits as the embedded world) and sends its output as a
  ``carla.VehicleControl`` (DriveFI steer is left positive, CARLA's right positive), moves every
  scripted actor to its closed-form pose of the next step (:mod:`drivefi.world.actors`) in the same
  batch, ticks (a time-out is a failed run) and checks that the frame advanced by exactly one
  (else another client is ticking the server).
* the **observation** is the embedded one, measured: ego transform, velocity, acceleration and
  front-wheel angle from the server, lane offset / heading error / curvature / width / road edges
  through the waypoint lane frame, objects in that frame; sensor events are matched to frames.
* **accidents**: collision = the bounding boxes overlap (the embedded definition) or the collision
  sensor reported one for a frame up to now; departure = the ego's box crosses a road edge.
* on every exit path (end of the scenario, ``close()``, any exception in reset or step, interpreter
  exit) the world's settings as captured before the run and the Traffic Manager mode are restored and every actor we spawned is
  destroyed. A time-out or server error raises :class:`SimulatorError` with the reason and marks the
  server's session broken, so the next run reconnects (restarting the server with the user's command
  after a time-out).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import math
import threading
import weakref
from contextlib import contextmanager

import numpy as np

from drivefi.bridges.carla.connection import Session, connect, mark_broken
from drivefi.bridges.carla.observe import observation_safety, wrap
from drivefi.bridges.carla.route import (
    LanePoint,
    RouteFrame,
    RouteTargets,
    edges_for,
    road_edges,
    walk,
)
from drivefi.bridges.carla.settings import (
    BLUEPRINT_FALLBACK,
    CarlaConfig,
    CarlaPlacement,
    placement_of,
)
from drivefi.bridges.embedded import obb_overlap
from drivefi.core import PREVIEW, Actuation, Observation
from drivefi.errors import DriveFIError, InputError, SimulatorError
from drivefi.stacks.agent.sensors import blueprint_attributes, sensor_pose
from drivefi.world.actors import ActorSet, ActorStates
from drivefi.world.opendrive import OpenDrive, from_carla, scenario_opendrive, to_carla
from drivefi.world.road import (
    RoadGeometry,
    lane_steer,
    lateral_extent,
    offset_curvature,
    offset_scale,
)
from drivefi.world.safety import SafetyPotential
from drivefi.world.scenario import Scenario
from drivefi.world.vehicle import ActuatorState, VehicleInterface, equilibrium_throttle

log = logging.getLogger("drivefi.carla")

KIND_CODES = {"vehicle": 0, "pedestrian": 1, "static": 2}
ACTOR_Z = {"vehicle": 0.05, "pedestrian": 0.95, "static": 0.05}  # kinematic actors' height [m]
PSEUDO_SENSORS = {"sensor.speedometer", "sensor.opendrive_map", "drivefi.observation"}

_LIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _teardown_all() -> None:  # pragma: no cover - interpreter exit
    for b in list(_LIVE):
        b._teardown()


def equilibrium(vp, v0: float) -> float:
    """Throttle that holds speed v0 (the embedded world's starting actuator state)."""
    return float(equilibrium_throttle(v0, vp))


def _copy_settings(s):
    import carla

    new = carla.WorldSettings()
    for name in (
        "synchronous_mode", "no_rendering_mode", "fixed_delta_seconds", "substepping",
        "max_substep_delta_time", "max_substeps", "max_culling_distance", "deterministic_ragdolls",
        "tile_stream_distance", "actor_active_distance", "spectator_as_ego",
    ):  # fmt: skip
        if hasattr(s, name) and getattr(s, name) is not None:
            setattr(new, name, getattr(s, name))
    return new


class CarlaBridge:
    """Bridge contract on a CARLA server; see the module docstring."""

    name = "carla"

    def __init__(
        self,
        scenario: Scenario,
        config: CarlaConfig | None = None,
        placement: CarlaPlacement | None = None,
        client_factory=None,
        sensors=(),
        auto_close: bool = True,
    ):
        self.config = config or CarlaConfig()
        self.client_factory = client_factory
        if isinstance(placement, dict):
            placement = CarlaPlacement.model_validate(placement)
        self._given_placement = placement
        self.placement = None
        self.sensor_specs: list[dict] = list(sensors)
        self.auto_close = auto_close
        self.session: Session | None = None
        self.world = None
        self.map = None
        self.route: RouteFrame | None = None
        self.active = False
        self.failure: str | None = None
        self.teardown_errors: list[str] = []
        self.events: list[tuple] = []  # (kind, frame, detail) from the sensors
        self._ego = None
        self._actors: list = []  # scripted actors, scenario order
        self._sensors: list = []
        self._agent_sensors: dict[str, object] = {}
        self._sensor_data: dict[str, tuple] = {}
        self._cond = threading.Condition()
        self._original_settings = None
        self._tm = None
        self._seed = 0
        self.applied = None  # the vehicle interface's output of the last step
        self._held = False  # the ego held at its starting speed (until the first tick)
        self.frame: int | None = None
        self.frame0: int | None = None
        self.k = 0
        self._obs: Observation | None = None
        self._set_scenario(scenario)

    # -- scenario -----------------------------------------------------------------------------
    def _set_scenario(self, scenario: Scenario) -> None:
        if scenario.dt > 0.1:
            raise InputError(
                f"scenario {scenario.name}: dt {scenario.dt} > 0.1 s; CARLA's physics needs dt <= 0.1"
            )
        self.scenario = scenario
        given = self._given_placement
        self.placement = given if given is not None else placement_of(scenario)
        self.dt = float(scenario.dt)
        self.steps = scenario.steps
        self.vp = scenario.ego.vehicle
        self.town = self.placement.town if self.placement else None
        self.opendrive: OpenDrive | None = None
        if self.town is None:
            self.opendrive = scenario_opendrive(scenario)
        self.lane_c = (scenario.ego.lane + 0.5) * scenario.road.lane_width
        self.ref_offset = self.lane_c  # the reference line (s) lies this far right of the lane
        self.interface = VehicleInterface(self.vp, self.dt)
        self.geometry = RoadGeometry.from_road(scenario.road)

    @property
    def xodr(self) -> str | None:
        """The OpenDRIVE of the current map (generated road, or the town's once loaded)."""
        if self.opendrive is not None:
            return self.opendrive.xodr
        return self.map.to_opendrive() if self.map is not None else None

    def request_sensors(self, specs) -> None:
        """Sensors an agent wants (Leaderboard dicts); spawned on the ego at the next reset."""
        self.sensor_specs = [s for s in specs if s["type"] not in PSEUDO_SENSORS]

    # -- contract -----------------------------------------------------------------------------
    def reset(
        self, scenario: Scenario | None = None, seed: int | None = None, n: int = 1
    ) -> Observation:
        if n != 1:
            raise ValueError("the CARLA bridge runs one run at a time (n=1)")
        if scenario is not None and scenario is not self.scenario:
            self._set_scenario(scenario)
        seed = self.scenario.seed if seed is None else int(seed)
        if self.active:
            self._teardown()
        self.failure = None
        self.teardown_errors = []
        with self._failing("reset"):
            self._start(seed)
        return self._obs

    @contextmanager
    def _failing(self, where: str):
        """Turn an error inside a run into a SimulatorError naming ``where`` (settings restored,
        actors destroyed by ``_fail``); on an interrupt, clean up and let it through."""
        try:
            yield
        except Exception as e:
            err = self._fail(e, where)
            if err is e:
                raise
            raise err from e
        except BaseException:
            self._teardown()
            raise

    def step(self, act: Actuation) -> Observation:
        if not self.active:
            why = f" (it failed: {self.failure})" if self.failure else ""
            raise SimulatorError(f"the CARLA run is not active{why}; reset the bridge first")
        with self._failing(f"step {self.k}"):
            import carla

            st = self._iface
            st.v = self._obs.v.copy()
            applied = self.interface.apply(act, st)
            self.interface.commit(st, applied)
            self.applied = applied
            ctrl = carla.VehicleControl(
                throttle=float(applied.throttle[0]),
                steer=float(-applied.steer[0]),
                brake=float(applied.brake[0]),
            )
            cmds = [carla.command.ApplyVehicleControl(self._ego.id, ctrl)]
            cmds += self._actor_commands(self.k + 1)
            self.session.client.apply_batch(cmds)
            self._tick()
            self.k += 1
            self._observe()
            if self.auto_close and self.k >= self.steps:
                self._teardown()
        return self._obs

    def guarded(self, act: Actuation) -> Actuation:
        return self.interface.guard(act, self._iface)

    def safety(self) -> SafetyPotential:
        return observation_safety(self._obs, self.vp, self._amax)

    def accidents(self) -> tuple[np.ndarray, np.ndarray]:
        return self._collided.copy(), self._departed.copy()

    def run_meta(self) -> dict:
        """What a trace of a run on this bridge records of it (server, version, town, step)."""
        sess = getattr(self, "session", None)
        return {
            "sim": self.name,
            "carla": {
                "address": self.config.address,
                "server_version": getattr(sess, "server_version", None),
                "town": self.town,
                "dt": self.dt,
            },
        }

    def close(self) -> None:
        """Restore the server and destroy our actors (idempotent); the connection stays cached."""
        self._teardown()

    def restore(self, state):
        """CARLA has no snapshots: every run starts from step 0 (refused as a usage error)."""
        raise InputError("snapshots need the embedded bridge; CARLA runs start from step 0")

    def __enter__(self) -> CarlaBridge:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def traffic_manager(self):
        """The server's Traffic Manager, switched to synchronous mode with the run's seed; created
        only when something asks for it (and set back to asynchronous at the end of the run)."""
        if self._tm is None:
            if not self.active:
                raise SimulatorError("the Traffic Manager is available only during a run")
            tm = self.session.client.get_trafficmanager(self.config.traffic_manager_port)
            tm.set_synchronous_mode(True)
            tm.set_random_device_seed(self._seed)
            self._tm = tm
        return self._tm

    def sensor_data(self) -> dict[str, tuple]:
        """The agent sensors' data of the current frame: {id: (frame, raw carla data)}."""
        return dict(self._sensor_data)

    @property
    def observation(self) -> Observation | None:
        return self._obs

    @property
    def hero(self):
        """The ego actor of the current run (what ``CarlaDataProvider.get_hero_actor()`` returns)."""
        return self._ego

    # -- start --------------------------------------------------------------------------------
    def _start(self, seed: int) -> None:
        import carla

        cfg = self.config
        self.session = connect(cfg, self.client_factory)
        client = self.session.client
        # the user's settings, captured before a map load or anything else can change them
        self.world = client.get_world()
        self._original_settings = self.world.get_settings()
        self.active = True  # from here on, clean-up restores these settings
        _LIVE.add(self)
        self.world = self._load_world(client)
        self.map = self.session.map
        world = self.world
        self._apply_sync(world)
        self._seed = int(seed)

        self.route = self._route()
        scenario = self._placed_scenario()
        self._setup_actors(scenario)

        lib = world.get_blueprint_library()
        e = self.scenario.ego
        v0 = float(e.speed)
        bp = self._blueprint(
            lib, (self.placement and self.placement.ego_blueprint) or cfg.ego_blueprint, "vehicle"
        )
        if bp.has_attribute("role_name"):
            bp.set_attribute("role_name", "hero")
        x, y, h, z = (float(a) for a in self.route.pose(e.s - v0 * self.dt, 0.0))
        self._ego = self._spawn(world, bp, x, y, h, z, cfg.spawn_z, "the ego")
        if cfg.match_steering:
            self._match_steering(self._ego)
        x0, y0, _, _ = self.route.pose(e.s, 0.0)  # the lane's curvature where step 0 starts
        k0 = self.route.project(float(x0), float(y0)).curvature
        steer0 = float(lane_steer(self.vp.wheelbase, k0) / self.vp.phi_max)
        thr0 = equilibrium(self.vp, v0)
        self._iface = ActuatorState.start(thr0, steer0, v0, self.vp)
        self.applied = None
        # the starting speed, held through the first tick: a constant velocity (the vehicle's own
        # frame) until step 0's frame, then the vehicle is released to its physics
        self._ego.enable_constant_velocity(carla.Vector3D(v0, 0.0, 0.0))
        self._held = True
        self._ego.apply_control(carla.VehicleControl(throttle=thr0, steer=-steer0, brake=0.0))

        for i, a in enumerate(scenario.actors):
            chosen = None
            if self.placement and i < len(self.placement.actors):
                chosen = self.placement.actors[i].blueprint
            abp = self._blueprint(lib, chosen or cfg.blueprints.get(a.kind, ""), a.kind)
            if abp.has_attribute("role_name"):
                abp.set_attribute("role_name", f"drivefi_actor_{i}")
            ax, ay, ah, az = self._actor_pose(i, 0)
            actor = self._spawn(world, abp, ax, ay, ah, az, 0.0, f"actor {i} ({a.kind})")
            self._actors.append(actor)
            actor.set_simulate_physics(False)

        self.events = []
        self._collided = np.zeros(1, bool)
        self._departed = np.zeros(1, bool)
        self._hints: dict[int, float] = {-1: float(e.s)}
        self._hints.update({i: float(s_) for i, s_ in enumerate(self._table.s[0])})
        self._spawn_sensors(world, lib)
        self.frame = None
        client.apply_batch(self._actor_commands(0))
        self._tick()
        self._ego.disable_constant_velocity()
        self._held = False
        th = from_carla(self._ego.get_transform())[2]
        self._ego.set_target_velocity(carla.Vector3D(v0 * math.cos(th), -v0 * math.sin(th), 0.0))
        self.frame0 = self.frame
        self.k = 0
        self._observe()

    def _load_world(self, client):
        """The world with the scenario's map: a town by name (``load_world_if_different``), or
        the scenario road's OpenDRIVE generated once per server (kept while the server has it).
        Loads keep the world's settings (the bridge applies its own and restores the user's)."""
        import carla

        sess = self.session
        if self.town is not None:
            key = ("town", self.town)
            if sess.map_key != key:
                log.info("loading %s on %s (if not loaded)", self.town, self.config.address)
                try:
                    client.load_world_if_different(self.town, reset_settings=False)
                except RuntimeError as err:
                    if "time-out" in str(err):
                        raise
                    maps = ", ".join(m.split("/")[-1] for m in client.get_available_maps())
                    raise InputError(
                        f"CARLA cannot load town {self.town!r} ({err}); available: {maps}"
                    ) from None
                world = client.get_world()
                sess.map, sess.map_key, sess.routes = world.get_map(), key, {}
            return client.get_world()
        od = self.opendrive
        key = ("xodr", hashlib.sha1(od.xodr.encode()).hexdigest())
        world = client.get_world()
        if sess.map_key != key:
            current = world.get_map()
            if hashlib.sha1(current.to_opendrive().encode()).hexdigest() != key[1]:
                log.info(
                    "generating the OpenDRIVE world of %s on %s",
                    self.scenario.name,
                    self.config.address,
                )
                params = carla.OpendriveGenerationParameters(
                    vertex_distance=self.config.vertex_distance,
                    max_road_length=500.0,
                    wall_height=0.0,
                    additional_width=0.6,
                    smooth_junctions=True,
                    enable_mesh_visibility=True,
                )
                client.generate_opendrive_world(od.xodr, params, reset_settings=False)
                world = client.get_world()
                current = world.get_map()
            sess.map, sess.map_key, sess.routes = current, key, {}
        return world

    def _apply_sync(self, world) -> None:
        s = _copy_settings(self._original_settings)
        s.synchronous_mode = True
        s.fixed_delta_seconds = self.dt
        if self.config.no_rendering:
            s.no_rendering_mode = True
        # physics sub-steps must cover the step: dt <= max_substep_delta_time * max_substeps
        if s.substepping and s.max_substep_delta_time * s.max_substeps < self.dt:
            s.max_substeps = min(16, math.ceil(self.dt / s.max_substep_delta_time))
            s.max_substep_delta_time = max(s.max_substep_delta_time, self.dt / s.max_substeps)
        world.apply_settings(s)

    def _route(self) -> RouteFrame:
        """The ego lane's centre through the map's waypoints, as a lane frame whose reference line
        lies ``ref_offset`` to its right (cached per server and map)."""
        cfg, sc, m = self.config, self.scenario, self.session.map
        step = cfg.route_step
        if self.town is None:
            od = self.opendrive
            key = ("xodr-lane", sc.ego.lane, step)
            if key not in self.session.routes:
                wp = m.get_waypoint_xodr(od.road_id, od.lane_id(sc.ego.lane), 0.0)
                if wp is None:
                    raise SimulatorError(
                        f"the server's map has no lane {od.lane_id(sc.ego.lane)} on road 0"
                    )
                wps = walk(wp, step, od.length + 2 * step, forward=True)
                self.session.routes[key] = RouteFrame.from_waypoints(
                    wps, road_edges, ref_offset=self.ref_offset, s_start=wps[0].s - od.lead_in
                )
            return self.session.routes[key]
        place = self.placement.ego
        ahead = max(sc.ego.speed, sc.ego.cruise_speed) * sc.duration * 1.5 + 150.0
        ahead = max(ahead, max((a.s - sc.ego.s for a in sc.actors), default=0.0) + 100.0)
        behind = self.placement.route_behind + max((sc.ego.s - a.s for a in sc.actors), default=0.0)
        route = tuple(self.placement.route)
        key = ("town-lane", place, route, step, round(ahead), round(behind), self.ref_offset)
        if key not in self.session.routes:
            wp = m.get_waypoint_xodr(place.road_id, place.lane_id, place.s)
            if wp is None:
                raise InputError(
                    f"scenario {sc.name}: carla.ego: {self.town} has no lane road_id={place.road_id} "
                    f"lane_id={place.lane_id} at s={place.s}"
                )
            targets = RouteTargets(m, route, self.town)
            back = walk(wp, step, behind, forward=False)
            fwd = walk(wp, step, ahead, forward=True, targets=targets)
            if targets.items:
                i, road, lane = targets.items[0]
                raise InputError(
                    f"scenario {sc.name}: carla.route.{i}: the route from the ego's lane never "
                    f"reaches road {road} lane {lane} within {ahead:.0f} m"
                )
            wps = back[::-1] + fwd[1:]
            frame = RouteFrame.from_waypoints(wps, edges_for(m), ref_offset=self.ref_offset)
            self.session.routes[key] = frame.shifted(sc.ego.s - frame.s[len(back) - 1])
        return self.session.routes[key]

    def _placed_scenario(self) -> Scenario:
        """The scenario with road/lane/s-placed actors moved to where they project on the route."""
        pl = self.placement
        if pl is None or not any(a.place for a in pl.actors):
            return self.scenario
        actors = list(self.scenario.actors)
        for i, ap in enumerate(pl.actors):
            place = ap.place
            if place is None:
                continue
            wp = self.session.map.get_waypoint_xodr(place.road_id, place.lane_id, place.s)
            if wp is None:
                raise InputError(
                    f"scenario {self.scenario.name}: carla.actors.{i}: {self.town} has no lane "
                    f"road_id={place.road_id} lane_id={place.lane_id} at s={place.s}"
                )
            x, y, _ = from_carla(wp.transform)
            p = self.route.project(x, y)
            actors[i] = actors[i].model_copy(
                update={"s": p.s, "lane": None, "d": self.route.to_ref(p.offset)}
            )
        return self.scenario.model_copy(update={"actors": actors})

    def _setup_actors(self, scenario: Scenario) -> None:
        self.actor_set = ActorSet(scenario, self.geometry)
        n = self.actor_set.count
        tab = self.actor_set.at(np.arange(self.steps + 2) * self.dt)
        self._table = tab
        self._amax = self.actor_set.a_max.copy()
        self._kinds = [a.kind for a in scenario.actors]
        if n:
            x, y, h, z = self.route.pose(tab.s, self.route.from_ref(tab.d))
            self._poses = (x, y, h + tab.psi, z)
        else:
            self._poses = None

    def _actor_pose(self, i: int, k: int):
        k = min(k, self.steps + 1)
        x, y, h, z = (p[k, i] for p in self._poses)
        return float(x), float(y), float(h), float(z) + ACTOR_Z[self._kinds[i]]

    def _actor_commands(self, k: int) -> list:
        """Scripted actors to their poses of step k, carrying their velocity (world frame), so
        sensors and other vehicles see them move although they are kinematic."""
        import carla

        cmds = []
        kk = min(k, self.steps + 1)
        tab = self._table
        for i, actor in enumerate(self._actors):
            x, y, h, z = self._actor_pose(i, k)
            hl = h - float(tab.psi[kk, i])  # the lane's heading there
            vl, vt = float(tab.v_lon[kk, i]), float(tab.v_lat[kk, i])
            vx = vl * math.cos(hl) - vt * math.sin(hl)
            vy = vl * math.sin(hl) + vt * math.cos(hl)
            cmds.append(carla.command.ApplyTransform(actor.id, to_carla(x, y, h, z)))
            cmds.append(carla.command.ApplyTargetVelocity(actor.id, carla.Vector3D(vx, -vy, 0.0)))
        return cmds

    def _blueprint(self, lib, name: str, kind: str):
        try:
            return lib.find(name)
        except (IndexError, RuntimeError, KeyError):
            found = list(lib.filter(BLUEPRINT_FALLBACK.get(kind, "vehicle.*")))
            if not found:
                raise SimulatorError(
                    f"the server has no blueprint {name!r} and no {kind} blueprint at all"
                ) from None
            log.warning("blueprint %s not found; using %s", name, found[0].id)
            return found[0]

    def _spawn(self, world, bp, x, y, h, z, dz0, what: str):
        for dz in (dz0, dz0 + 0.3, dz0 + 0.8):
            actor = world.try_spawn_actor(bp, to_carla(x, y, h, z + dz))
            if actor is not None:
                return actor
        raise SimulatorError(
            f"could not spawn {what} at x={x:.1f} y={y:.1f} (the place is occupied or off the map)"
        )

    def _match_steering(self, ego) -> None:
        """steer = 1 turns the front wheels by phi_max at every speed: their max steer angle is
        phi_max and the steering curve (CARLA's speed-dependent steer reduction) is flat."""
        import carla

        pc = ego.get_physics_control()
        wheels = list(pc.wheels)
        if len(wheels) < 2:
            return
        for wh in wheels[:2]:
            wh.max_steer_angle = math.degrees(self.vp.phi_max)
        pc.wheels = wheels
        pc.steering_curve = [carla.Vector2D(0.0, 1.0), carla.Vector2D(500.0, 1.0)]
        ego.apply_physics_control(pc)

    def _spawn_sensors(self, world, lib) -> None:
        import carla

        ref = weakref.ref(self)

        def on_collision(ev):
            b = ref()
            if b is not None:
                other = getattr(ev, "other_actor", None)
                b.events.append(("collision", int(ev.frame), getattr(other, "type_id", "?")))

        def on_invasion(ev):
            b = ref()
            if b is not None:
                marks = [
                    str(getattr(m, "type", m))
                    for m in (getattr(ev, "crossed_lane_markings", None) or [])
                ]
                b.events.append(("lane_invasion", int(ev.frame), marks))

        for type_id, cb in (
            ("sensor.other.collision", on_collision),
            ("sensor.other.lane_invasion", on_invasion),
        ):
            s = world.spawn_actor(lib.find(type_id), carla.Transform(), attach_to=self._ego)
            self._sensors.append(s)
            s.listen(cb)
        self._agent_sensors = {}
        self._sensor_data = {}
        for spec in self.sensor_specs:
            bp = lib.find(spec["type"])
            for k_, v in blueprint_attributes(spec).items():
                if bp.has_attribute(k_):
                    bp.set_attribute(k_, v)
            (lx, ly, lz), (pitch, yaw, roll) = sensor_pose(spec)
            tf = carla.Transform(
                carla.Location(x=lx, y=ly, z=lz), carla.Rotation(pitch=pitch, yaw=yaw, roll=roll)
            )
            s = world.spawn_actor(bp, tf, attach_to=self._ego)
            self._sensors.append(s)
            self._agent_sensors[spec["id"]] = s
            s.listen(self._data_callback(spec["id"]))

    def _data_callback(self, sid: str):
        ref = weakref.ref(self)

        def cb(data):
            b = ref()
            if b is None:
                return
            with b._cond:
                b._sensor_data[sid] = (int(data.frame), data)
                b._cond.notify_all()

        return cb

    # -- stepping -----------------------------------------------------------------------------
    def _tick(self) -> None:
        frame = int(self.world.tick(self.config.timeout))
        if self.frame is not None and frame != self.frame + 1:
            raise SimulatorError(
                f"the server's frame went from {self.frame} to {frame}: another client is ticking "
                f"the server at {self.config.address}; run one DriveFI process per server"
            )
        self.frame = frame
        if self._agent_sensors:
            self._await_sensors(frame)

    def _await_sensors(self, frame: int) -> None:
        def ready():
            return all(self._sensor_data.get(sid, (-1,))[0] >= frame for sid in self._agent_sensors)

        with self._cond:
            if not self._cond.wait_for(ready, timeout=self.config.timeout):
                late = [
                    sid
                    for sid in self._agent_sensors
                    if self._sensor_data.get(sid, (-1,))[0] < frame
                ]
                raise SimulatorError(
                    f"sensor(s) {', '.join(late)} sent no data for frame {frame} within {self.config.timeout:g} s"
                )

    def _measure(self, actor):
        tf = actor.get_transform()
        x, y, th = from_carla(tf)
        return x, y, th

    def _project(self, key: int, x: float, y: float) -> LanePoint:
        """Project one tracked body (-1: the ego, i: actor i) near where it was last."""
        p = self.route.project(x, y, self._hints.get(key))
        self._hints[key] = p.s
        return p

    def _front_wheel_angle(self, ego) -> float:
        """Road-wheel angle phi (left positive) from the front wheels, in radians."""
        import carla

        try:
            fl = ego.get_wheel_steer_angle(carla.VehicleWheelLocation.FL_Wheel)
            fr = ego.get_wheel_steer_angle(carla.VehicleWheelLocation.FR_Wheel)
            return -math.radians(0.5 * (float(fl) + float(fr)))
        except (RuntimeError, AttributeError):
            w = ego.get_angular_velocity()  # deg/s about z, left-handed
            v = max(float(np.hypot(*ego_v(ego))), 0.1)
            return math.atan(self.vp.wheelbase * -math.radians(float(w.z)) / v)

    def _observe(self) -> None:
        ego, k = self._ego, self.k
        x, y, th = self._measure(ego)
        vel, acc = ego.get_velocity(), ego.get_acceleration()
        c, s_ = math.cos(th), math.sin(th)
        v = max(float(vel.x) * c - float(vel.y) * s_, 0.0)
        a = float(acc.x) * c - float(acc.y) * s_
        phi = self._front_wheel_angle(ego)
        p = self._project(-1, x, y)
        psi = float(wrap(th - p.heading))
        n_act = len(self._actors)
        ds, dd, vlon, vlat, opsi = (np.zeros((1, n_act)) for _ in range(5))
        boxes = []
        kk = min(k, self.steps + 1)
        tab: ActorStates = self._table
        # along the lane, as the embedded world measures it: the s gap scaled to the ego's lateral
        # position with the ego's curvature (s runs along the road's reference line, which sits
        # ref_offset to the right of the ego lane's centre, on a generated road and on a town);
        # the reference line's curvature is mapped back from the lane centre's
        kref = offset_curvature(p.curvature, -self.ref_offset)
        scale = offset_scale(kref, self.ref_offset + p.offset)
        for i, actor in enumerate(self._actors):
            ox, oy, oth = self._measure(actor)
            q = self._project(i, ox, oy)
            ds[0, i] = (q.s - p.s) * scale
            dd[0, i] = q.offset
            opsi[0, i] = float(wrap(oth - q.heading))
            vlon[0, i] = tab.v_lon[kk, i]
            vlat[0, i] = tab.v_lat[kk, i]
            boxes.append((ox, oy, oth))
        length, width = self.actor_set.length, self.actor_set.width
        one = np.ones(1)
        self._obs = Observation(
            k=np.array([k]),
            t=np.array([k * self.dt]),
            s=np.array([p.s]),
            x=np.array([x]),
            y=np.array([y]),
            theta=np.array([th]),
            v=np.array([v]),
            phi=np.array([phi]),
            a=np.array([a]),
            lane_offset=np.array([p.offset]),
            heading_error=np.array([psi]),
            curvature=np.array([p.curvature]),
            lane_width=one * p.width,
            obj_ds=ds,
            obj_dd=dd,
            obj_vlon=vlon,
            obj_vlat=vlat,
            obj_psi=opsi,
            obj_len=np.broadcast_to(length, (1, n_act)),
            obj_wid=np.broadcast_to(width, (1, n_act)),
            obj_kind=np.broadcast_to(self.actor_set.kind, (1, n_act)),
            curvature_ahead=np.array([[self.route.max_curvature_ahead(p.s, d) for d in PREVIEW]]),
        )
        self.lane_point = p
        # accidents: the embedded definitions, plus what the collision sensor reported so far
        hl, hw = 0.5 * self.vp.length, 0.5 * self.vp.width
        ext = float(lateral_extent(hl, hw, psi))
        if p.offset - ext < p.right or p.offset + ext > p.left:
            self._departed[:] = True
        if boxes:
            bx = np.array(boxes)
            hit = obb_overlap(
                x, y, th, hl, hw, bx[:, 0], bx[:, 1], bx[:, 2], 0.5 * length, 0.5 * width
            )
            if np.any(hit):
                self._collided[:] = True
        if any(e[0] == "collision" and e[1] <= self.frame for e in list(self.events)):
            self._collided[:] = True

    # -- failure and cleanup --------------------------------------------------------------------
    def _fail(self, e: BaseException, where: str) -> BaseException:
        """Tear down after an exception; returns the exception to raise: a SimulatorError with the
        reason for server errors and time-outs, anything else unchanged."""
        msg = str(e)
        timeout = isinstance(e, TimeoutError) or "time-out" in msg or "timed out" in msg
        server_side = isinstance(e, SimulatorError) or (
            isinstance(e, (RuntimeError, OSError))
            and not isinstance(e, (NotImplementedError, RecursionError))
        )
        addr = self.config.address
        out: BaseException = e
        if isinstance(e, DriveFIError):
            reason = msg
        elif server_side:
            if timeout:
                reason = f"CARLA {where} timed out after {self.config.timeout:g} s on {addr}: {msg}"
            else:
                reason = f"CARLA server error at {where} on {addr}: {msg}"
            out = SimulatorError(reason)
        else:
            reason = f"{type(e).__name__} at {where}: {msg}"
        self.failure = reason
        if server_side:
            mark_broken(self.session, reason, restart=timeout)
        self._teardown()
        return out

    def _teardown(self) -> None:
        """Restore settings and Traffic Manager, destroy our actors; best effort, never raises."""
        if not (self.active or self._actors or self._sensors or self._ego is not None):
            return
        errors: list[str] = []
        client = self.session.client if self.session else None
        cfg = self.config

        def attempt(what, fn):
            try:
                fn()
            except Exception as err:  # a dead server must not hide the run's own error
                errors.append(f"{what}: {err}")

        if client is not None:
            attempt(
                "set_timeout", lambda: client.set_timeout(min(cfg.timeout, cfg.teardown_timeout))
            )
        for s in self._sensors:
            attempt("stop sensor", s.stop)
        if self._original_settings is not None and self.world is not None:
            original = self._original_settings
            attempt("restore settings", lambda: self.world.apply_settings(original))
        self._original_settings = None
        if self._tm is not None:
            attempt("traffic manager", lambda: self._tm.set_synchronous_mode(False))
        self._tm = None
        if self._ego is not None and self._held:
            attempt("constant velocity", self._ego.disable_constant_velocity)
        self._held = False
        spawned = [*self._sensors, *self._actors, *([self._ego] if self._ego is not None else [])]
        if spawned and client is not None:
            import carla

            ids = [a.id for a in spawned]

            def destroy():
                res = client.apply_batch_sync([carla.command.DestroyActor(i) for i in ids], False)
                bad = [r.error for r in (res or []) if getattr(r, "error", "")]
                if bad:
                    raise RuntimeError("; ".join(map(str, bad[:3])))

            attempt("destroy actors", destroy)
        if client is not None:
            attempt("set_timeout", lambda: client.set_timeout(cfg.timeout))
        self._sensors, self._actors, self._ego = [], [], None
        self._agent_sensors = {}
        self.active = False
        _LIVE.discard(self)
        if errors:
            self.teardown_errors = errors
            log.warning("CARLA clean-up on %s was incomplete: %s", cfg.address, "; ".join(errors))
            mark_broken(self.session, "clean-up failed: " + "; ".join(errors), restart=False)


def ego_v(ego) -> tuple[float, float]:
    v = ego.get_velocity()
    return float(v.x), float(v.y)


def make_carla_bridge(
    scenario: Scenario,
    host: str = "127.0.0.1",
    port: int = 2000,
    timeout: float = 10.0,
    restart_cmd: str | None = None,
    *,
    config: CarlaConfig | None = None,
    placement: CarlaPlacement | None = None,
    client_factory=None,
    sensors=(),
    **options,
) -> CarlaBridge:
    """The factory the CLI and the campaign runner call. Connects lazily (at ``reset``), so a dead
    server surfaces inside the run as a retryable :class:`SimulatorError`. ``options`` are further
    :class:`CarlaConfig` fields (``retries``, ``tm_port``, ``no_rendering``, ...)."""
    from drivefi.bridges.carla.settings import carla_config

    if config is None:
        config = carla_config(
            host=host, port=port, timeout=timeout, restart_cmd=restart_cmd, **options
        )
    return CarlaBridge(
        scenario, config, placement=placement, client_factory=client_factory, sensors=sensors
    )


__all__ = ["CarlaBridge", "equilibrium", "make_carla_bridge"]
