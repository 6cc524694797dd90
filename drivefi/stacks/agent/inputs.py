"""What a Leaderboard-style agent receives each step: its sensors' data, in CARLA's conventions.

One frame convention per name, across the observation, the trace and CARLA's API: ``x``, ``y``,
``theta`` are DriveFI's world frame, the trace's (right-handed: ``y`` to the left of ``x``,
``theta`` counter-clockwise, radians); ``yaw`` is CARLA's (degrees, clockwise seen from above, as
``carla.Rotation.yaw``); what CARLA's API returns (``get_transform()``, GNSS, IMU) is in CARLA's
left-handed frame. Lane-frame quantities follow OpenDRIVE's (s, t) frame, which is what CARLA's map
uses: ``s`` along the lane, offsets to the left positive, angles counter-clockwise. Every field
and unit is listed in ``docs/agents.md``; an agent may pin the version it was written for
(:func:`observation_version`).

Pseudo-sensors (computed from the simulation, no server needed; the embedded simulator provides
all of them, the CARLA bridge spawns real GNSS/IMU sensors instead):

========================  =====================================================================
``sensor.speedometer``    ``{'speed': m/s}`` (the ``localization.speed`` point)
``sensor.opendrive_map``  ``{'opendrive': text}`` (rendered once per scenario)
``drivefi.observation``   the ground-truth observation as a dict (see :func:`observation_rows`)
``sensor.other.gnss``     ``np.array([lat, lon, alt])`` [deg, deg, m] (embedded only)
``sensor.other.imu``      ``np.array([ax, ay, az, gx, gy, gz, compass])`` (embedded only)
========================  =====================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import lru_cache
from itertools import repeat

import numpy as np

from drivefi.core import Observation
from drivefi.world.scenario import Scenario

PSEUDO = {"sensor.speedometer", "sensor.opendrive_map", "drivefi.observation"}
EMBEDDED_ONLY = {"sensor.other.gnss", "sensor.other.imu"}  # real sensors on CARLA
EMBEDDED_SENSORS = PSEUDO | EMBEDDED_ONLY
KIND_NAMES = {0: "vehicle", 1: "pedestrian", 2: "static"}
GRAVITY = 9.81
_LANE = ("s", "lane_offset", "heading_error", "curvature", "lane_width", "a", "phi")
_OBJ = ("ds", "dd", "vlon", "vlat", "psi", "len", "wid")
_OBJ_KEYS = (*_OBJ, "kind", "type")
_TYPES = np.array([KIND_NAMES[c] for c in range(len(KIND_NAMES))], object)


def speed_limit(scenario: Scenario) -> float:
    """The scenario's speed limit [m/s]: the ego's cruise speed, which the generated OpenDRIVE
    (:func:`drivefi.world.opendrive.scenario_opendrive`) also carries on both
    simulators."""
    return float(scenario.ego.cruise_speed)


# The observation's version (CHANGELOG.md lists every change of its keys or their meaning):
# 2 added ``version`` and the vehicle's limits; 3 gave ``y`` and ``theta`` the trace's frame (in 2
# they were CARLA's, the trace's negated, under the same names)
OBSERVATION_VERSION = 3
OBSERVATION_VERSIONS = (2, 3)  # what an agent may ask for (``observation_version`` on its class)


def observation_version(cls: type, where: str) -> int:
    """The observation version agent class ``cls`` reads: its ``observation_version`` attribute
    (an agent pins the version it was written for, so a later change of the observation cannot
    silently change what it reads), else the current one. Refused, naming the agent, when DriveFI
    cannot give it."""
    from drivefi.stacks.agent.loader import AgentError

    v = getattr(cls, "observation_version", None)
    if v is None:
        return OBSERVATION_VERSION
    if isinstance(v, bool) or not isinstance(v, int) or v not in OBSERVATION_VERSIONS:
        raise AgentError(
            f"{where}: observation_version = {v!r}, but DriveFI gives observation versions "
            f"{', '.join(map(str, OBSERVATION_VERSIONS))} (CHANGELOG.md lists what changed)"
        )
    return v


def ego_constants(scenario: Scenario, version: int = OBSERVATION_VERSION) -> dict:
    """What the observation carries that does not change in a run: its version, the ego's size
    and limits, set speed, speed limit and step (docs/agents.md lists them with units)."""
    vp = scenario.ego.vehicle
    return {
        "version": int(version),
        "ego_length": float(vp.length),
        "ego_width": float(vp.width),
        "wheelbase": float(vp.wheelbase),
        "phi_max": float(vp.phi_max),
        "steer_rate": float(vp.steer_rate),
        "a_lat_max": float(vp.a_lat_max),
        "brake_max": float(vp.brake_max),
        "accel_max": float(vp.accel_max),
        "a_max": float(vp.a_max),
        "set_speed": float(scenario.ego.cruise_speed),
        "speed_limit": speed_limit(scenario),
        "dt": float(scenario.dt),
    }


@lru_cache(maxsize=8)
def _opendrive(scenario_json: str) -> str:
    from drivefi.world.opendrive import scenario_opendrive

    return scenario_opendrive(Scenario.model_validate_json(scenario_json)).xodr


def opendrive_text(scenario: Scenario) -> str:
    """The scenario's OpenDRIVE, the same document the CARLA bridge loads (road, speed limit, the
    ego's set speed and size), rendered once per process and scenario."""
    return _opendrive(scenario.model_dump_json())


@lru_cache(maxsize=8)
def _carla_map(name: str, xodr: str):
    import carla

    return carla.Map(name, xodr)


def carla_map(scenario: Scenario, xodr: str | None = None):
    """``carla.Map`` of the scenario's generated OpenDRIVE (client-side; one per scenario)."""
    return _carla_map(scenario.name, xodr or opendrive_text(scenario))


def carla_pose(obs: Observation, rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, yaw [deg]) of the ego in CARLA's left-handed frame, for runs ``rows``."""
    return obs.x[rows], -obs.y[rows], -np.degrees(obs.theta[rows])


@lru_cache(maxsize=64)
def record(keys: tuple) -> Callable[..., dict]:
    """A function of ``len(keys)`` values returning ``{keys[0]: values[0], ...}``.

    Agent inputs are thousands of small dicts a step with fixed keys. For string keys this is a
    dict display compiled once (CPython builds it in one instruction), about 1.5x cheaper than
    ``dict(zip(keys, values))`` a row; other keys fall back to exactly that."""
    if not all(type(k) is str for k in keys):
        return lambda *values: dict(zip(keys, values, strict=True))
    args = ", ".join(f"v{i}" for i in range(len(keys)))
    body = ", ".join(f"{k!r}: v{i}" for i, k in enumerate(keys))
    return eval(f"lambda {args}: {{{body}}}", {})  # keys are str literals (repr): nothing else


_OBS_KEYS = ("k", "t", "x", "y", "yaw", "theta", "speed", "v", *_LANE)


def observation_rows(
    obs: Observation, speed: np.ndarray, rows: np.ndarray, const: dict
) -> Iterator[dict]:
    """The ``drivefi.observation`` dict of each run in ``rows`` (``speed``: what the agent sees).

    This runs for every run at every step of an agent campaign. The columns are turned into lists
    once (one ``tolist`` per field); the dicts are built lazily, one :func:`record` call a run and
    an object as the iterator is read: a run's dicts are made just before its agent steps, so
    they are still in the CPU's cache when it reads them (a batch's dicts, built all at once,
    outgrow it: 30-32 against 25-26 us a run and step in the FSM example's campaigns)."""
    if len(rows) == obs.n:
        rows = slice(None)  # every run: views, no gathers
    x, y, yaw = obs.x[rows], obs.y[rows], -np.degrees(obs.theta[rows])
    theta = obs.theta[rows]
    if const["version"] < 3:  # version 2: y and theta in CARLA's frame
        y, theta = -y, np.radians(yaw)
    sp = speed[rows].tolist()
    kind = obs.obj_kind[rows]
    n, m = kind.shape
    flat = [getattr(obs, "obj_" + f)[rows].ravel().tolist() for f in _OBJ]
    kinds = kind.ravel()
    flat.append(kinds.tolist())
    flat.append(_TYPES[np.where((kinds >= 0) & (kinds < len(KIND_NAMES)), kinds, 0)].tolist())
    objects = map(record(_OBJ_KEYS), *flat)
    fixed = {**const, "z": 0.0}
    return map(
        record((*_OBS_KEYS, *fixed, "objects")),
        obs.k[rows].tolist(),
        obs.t[rows].tolist(),
        x.tolist(),
        y.tolist(),
        yaw.tolist(),
        theta.tolist(),
        sp,
        sp,
        *(getattr(obs, f)[rows].tolist() for f in _LANE),
        *(repeat(v, n) for v in fixed.values()),
        map(list, zip(*[objects] * m, strict=True)) if m else map(list, repeat((), n)),
    )


def imu_rows(obs: Observation, rows: np.ndarray, wheelbase: float) -> np.ndarray:
    """Leaderboard IMU vectors (rows, 7): accelerometer [m/s^2] and gyroscope [rad/s] in the
    vehicle's left-handed frame (x forward, y right, z up; gravity included), compass [rad]
    (0 = north = CARLA's -y, clockwise)."""
    v, phi = obs.v[rows], obs.phi[rows]
    yaw_rate = v * np.tan(phi) / wheelbase  # counter-clockwise [rad/s]
    yaw = -obs.theta[rows]  # CARLA yaw [rad]
    compass = np.mod(yaw + 0.5 * math.pi, 2 * math.pi)
    z = np.zeros_like(v)
    return np.stack([obs.a[rows], -v * yaw_rate, z + GRAVITY, z, z, -yaw_rate, compass], axis=1)


def gnss_rows(obs: Observation, rows: np.ndarray, cmap) -> np.ndarray:
    """Leaderboard GNSS vectors (rows, 3): latitude, longitude [deg], altitude [m], from the
    map's geo-reference (``carla.Map.transform_to_geolocation``)."""
    import carla

    x, y, _ = carla_pose(obs, rows)
    out = np.empty((len(x), 3))
    for j, (xi, yi) in enumerate(zip(x.tolist(), y.tolist(), strict=True)):
        g = cmap.transform_to_geolocation(carla.Location(xi, yi, 0.0))
        out[j] = (g.latitude, g.longitude, g.altitude)
    return out


def global_plan(scenario: Scenario, cmap, route=None, spacing: float = 10.0):
    """The route as Leaderboard global plans: ([(gps dict, option)], [(carla.Transform, option)])."""
    from drivefi.stacks.agent.loader import RoadOption
    from drivefi.world.opendrive import to_carla
    from drivefi.world.road import RoadGeometry

    sc = scenario
    s_end = sc.ego.s + max(sc.ego.speed, sc.ego.cruise_speed) * sc.duration + 50.0
    s = np.arange(sc.ego.s, s_end, spacing)
    if route is not None:
        x, y, h, z = route.pose(s, 0.0)
    else:
        g = RoadGeometry.from_road(sc.road)
        x, y, h = g.pose(s, (sc.ego.lane + 0.5) * sc.road.lane_width)
        z = np.zeros_like(s)
    world = [(to_carla(x[i], y[i], h[i], z[i]), RoadOption.LANEFOLLOW) for i in range(len(s))]
    gps = []
    for tf, opt in world:
        g = cmap.transform_to_geolocation(tf.location)
        gps.append(({"lat": g.latitude, "lon": g.longitude, "z": g.altitude}, opt))
    return gps, world
