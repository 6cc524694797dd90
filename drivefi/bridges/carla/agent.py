"""Your own CARLA Leaderboard-style agent as the ADS under test (``--agent FILE:CLASS``).

An agent is a class with ``setup(path_to_conf_file)``, ``sensors()`` and
``run_step(input_data, timestamp) -> carla.VehicleControl`` (Leaderboard 1.x/2.x conventions;
``get_entry_point()`` names the class when CLASS is omitted). :class:`AgentADS` wraps it in the ADS
interface DriveFI drives (``reset(n)``, ``step(observation) -> Actuation``, ``injector``,
``points``), with these injection points:

=====================  ==========================================================================
``control.throttle``   the returned ``VehicleControl.throttle``
``control.brake``      the returned ``VehicleControl.brake`` (``hand_brake`` counts as brake 1)
``control.steer``      the returned steer in DriveFI's convention, left positive
                       (= ``-VehicleControl.steer``), so plans carry over from the reference ADS
``localization.speed`` the ego speed the agent receives (``sensor.speedometer`` and the
                       ``drivefi.observation`` pseudo-sensor), corrupted before ``run_step``
=====================  ==========================================================================

plus every point the agent's code declares with :func:`drivefi.inject.declare` /
``drivefi.inject(name, value, lo=, hi=)`` at import or in ``setup`` (source-level injection).

Sensors: real CARLA sensors (cameras, lidar, radar, GNSS, IMU, ...) are spawned on the ego by the
CARLA bridge and handed over matched to the frame, converted as the Leaderboard does (images as
BGRA arrays, point clouds as float32 arrays, GNSS/IMU as vectors). Pseudo-sensors work on any
bridge: ``sensor.speedometer`` ({'speed'}), ``sensor.opendrive_map`` ({'opendrive'}) and
``drivefi.observation`` (the ground-truth lane-frame observation as a dict of floats). An agent
that needs only pseudo-sensors also runs on the embedded simulator.
"""

from __future__ import annotations

import abc
import enum
import hashlib
import importlib.util
import inspect
import logging
import sys
from pathlib import Path

import numpy as np

from drivefi.ads.injector import InjectionPoint, Injector
from drivefi.bridges.base import Observation
from drivefi.bridges.carla.bridge import PSEUDO_SENSORS
from drivefi.errors import DriveFIError, InputError
from drivefi.inject import active, capture, declared
from drivefi.scenario import Scenario
from drivefi.vehicle import Actuation

AGENT_POINTS = [
    InjectionPoint("control.throttle", 0.0, 1.0, "", "the agent's VehicleControl.throttle"),
    InjectionPoint("control.brake", 0.0, 1.0, "", "the agent's VehicleControl.brake"),
    InjectionPoint(
        "control.steer", -1.0, 1.0, "", "the agent's steer, left positive (= -VehicleControl.steer)"
    ),
    InjectionPoint("localization.speed", 0.0, 40.0, "m/s", "ego speed the agent receives"),
]
_BUILTIN = {p.name for p in AGENT_POINTS}
log = logging.getLogger("drivefi.carla")


class AgentError(DriveFIError):
    """The user's agent failed (import, setup or a step); the message names the agent and step."""


class RoadOption(enum.IntEnum):
    """Route commands of a Leaderboard global plan (``agents.navigation.local_planner.RoadOption``)."""

    VOID = -1
    LEFT = 1
    RIGHT = 2
    STRAIGHT = 3
    LANEFOLLOW = 4
    CHANGELANELEFT = 5
    CHANGELANERIGHT = 6


class AutonomousAgent(abc.ABC):
    """A drop-in for ``leaderboard.autoagents.autonomous_agent.AutonomousAgent`` (not on PyPI);
    a subclass must define ``run_step``."""

    def __init__(self, carla_host: str = "127.0.0.1", carla_port: int = 2000, debug: bool = False):
        self.carla_host, self.carla_port, self.debug = carla_host, carla_port, debug
        self._global_plan = None
        self._global_plan_world_coord = None

    def setup(self, path_to_conf_file):  # noqa: B027 - optional hook, as in the Leaderboard
        """Read the agent's configuration; nothing to do by default."""

    def sensors(self) -> list[dict]:
        return []

    @abc.abstractmethod
    def run_step(self, input_data, timestamp):
        """The agent's control for this frame: a ``carla.VehicleControl``."""

    def set_global_plan(self, global_plan_gps, global_plan_world_coord):
        self._global_plan = global_plan_gps
        self._global_plan_world_coord = global_plan_world_coord

    def destroy(self):  # noqa: B027 - optional hook, as in the Leaderboard
        """Release the agent's resources; nothing to release by default."""


_MODULES: dict[str, tuple[object, set[str]]] = {}


def parse_agent_spec(spec: str) -> tuple[Path, str | None]:
    """``FILE[:CLASS]`` -> (path, class name or None)."""
    path, _, cls = str(spec).partition(":")
    if len(path) == 1 and cls[:1] in ("\\", "/"):  # a Windows drive letter, not a separator
        drive, _, rest = cls.partition(":")
        path, cls = f"{path}:{drive}", rest
    return Path(path), (cls or None)


def _load_module(path: Path):
    key = str(path.resolve())
    if key in _MODULES:
        return _MODULES[key]
    if not path.is_file():
        raise InputError(f"--agent: {path}: agent file not found")
    name = f"drivefi_agent_{path.stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"--agent: {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # agents import their sibling modules
    sys.modules[name] = module
    try:
        with capture() as names:
            spec.loader.exec_module(module)
    except Exception as err:
        sys.modules.pop(name, None)
        raise AgentError(f"--agent: importing {path} failed: {type(err).__name__}: {err}") from err
    _MODULES[key] = (module, names)
    return module, names


def load_agent_class(spec: str):
    """The agent class named by ``FILE[:CLASS]`` and the points its module declared on import."""
    path, cls_name = parse_agent_spec(spec)
    module, names = _load_module(path)
    if cls_name is None:
        entry = getattr(module, "get_entry_point", None)
        if entry is None:
            raise InputError(
                f"--agent: {path}: give the class as FILE:CLASS (the file has no get_entry_point())"
            )
        cls_name = entry()
    cls = getattr(module, cls_name, None)
    if not inspect.isclass(cls):
        classes = sorted(
            n for n, v in vars(module).items() if inspect.isclass(v) and hasattr(v, "run_step")
        )
        raise InputError(
            f"--agent: {path} has no class {cls_name!r}; agent classes there: {', '.join(classes) or 'none'}"
        )
    for method in ("run_step", "sensors"):
        if not callable(getattr(cls, method, None)):
            raise InputError(
                f"--agent: {cls_name} in {path} has no {method}() method (not a Leaderboard agent)"
            )
    return cls, set(names)


def normalise_sensors(raw) -> list[dict]:
    """Leaderboard sensor specs as dicts (accepts the old ``[type, params, id]`` lists)."""
    out = []
    for i, s in enumerate(raw or []):
        if isinstance(s, dict):
            d = dict(s)
        elif isinstance(s, list | tuple) and len(s) == 3:
            d = {"type": s[0], **dict(s[1]), "id": s[2]}
        else:
            raise InputError(f"agent sensor {i}: expected a dict with 'type' and 'id', got {s!r}")
        if "type" not in d or "id" not in d:
            raise InputError(f"agent sensor {i}: needs 'type' and 'id' (got {sorted(d)})")
        out.append(d)
    ids = [d["id"] for d in out]
    if len(set(ids)) != len(ids):
        raise InputError(f"agent sensors: duplicate ids in {ids}")
    return out


def convert(data):
    """Raw CARLA sensor data as the Leaderboard hands it to agents."""
    if hasattr(data, "raw_data") and hasattr(data, "height") and hasattr(data, "width"):
        return (
            np.frombuffer(bytes(data.raw_data), dtype=np.uint8)
            .reshape(data.height, data.width, 4)
            .copy()
        )
    if hasattr(data, "raw_data") and hasattr(data, "channels"):  # lidar
        return np.frombuffer(bytes(data.raw_data), dtype=np.float32).reshape(-1, 4).copy()
    if hasattr(data, "raw_data"):  # radar and the like
        return np.frombuffer(bytes(data.raw_data), dtype=np.float32).reshape(-1, 4).copy()
    if hasattr(data, "latitude"):
        return np.array([data.latitude, data.longitude, data.altitude], dtype=np.float64)
    if hasattr(data, "accelerometer"):
        a, g = data.accelerometer, data.gyroscope
        return np.array([a.x, a.y, a.z, g.x, g.y, g.z, data.compass], dtype=np.float64)
    return data


class AgentADS:
    """A Leaderboard-style agent behind the ADS interface (see the module docstring)."""

    def __init__(
        self,
        spec: str,
        scenario: Scenario,
        seed: int | None = None,
        conf: str | None = None,
        bridge=None,
        injector: Injector | None = None,
        fresh_per_run: bool = True,
    ):
        self.spec = spec
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.conf = conf or ""
        self.bridge = bridge
        self.injector = injector or Injector()
        self.fresh_per_run = fresh_per_run
        self.cls, module_points = load_agent_class(spec)
        self._module_points = module_points
        self.agent = None
        self.agent = self._instantiate()
        self.sensors = normalise_sensors(self._call("sensors"))
        real = [s for s in self.sensors if s["type"] not in PSEUDO_SENSORS]
        if real:
            if not hasattr(bridge, "request_sensors"):
                what = ", ".join(f"{s['type']} ({s['id']!r})" for s in real)
                raise InputError(
                    f"agent {self.cls.__name__} needs {what}, which only a CARLA server provides: use --sim carla"
                )
            bridge.request_sensors(self.sensors)
        self.state = None
        self._runs = 0
        self._reversed_warned = False

    # -- construction -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.cls.__name__

    def _instantiate(self):
        cls = self.cls
        try:
            params = [
                p
                for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
            ]
        except (TypeError, ValueError):
            params = []
        host = getattr(getattr(self.bridge, "config", None), "host", "127.0.0.1")
        port = getattr(getattr(self.bridge, "config", None), "port", 2000)
        with capture() as names:
            try:
                if len(params) >= 2:  # Leaderboard 2.x: (host, port, debug), then setup()
                    agent = cls(host, port, False)
                    agent.setup(self.conf)
                elif len(params) == 1:  # Leaderboard 1.x: __init__(conf) calls setup() itself
                    agent = cls(self.conf)
                else:
                    agent = cls()
                    agent.setup(self.conf)
            except DriveFIError:
                raise
            except Exception as err:
                raise AgentError(
                    f"agent {cls.__name__}: setup failed: {type(err).__name__}: {err}"
                ) from err
        self._points(names)
        return agent

    def _points(self, setup_names: set[str]) -> None:
        decl = declared()
        user = sorted((self._module_points | setup_names) - _BUILTIN)
        self.user_points = [
            InjectionPoint(
                n,
                decl[n].lo,
                decl[n].hi,
                decl[n].unit,
                decl[n].doc or "declared with drivefi.inject",
            )
            for n in user
        ]
        self.points = AGENT_POINTS + self.user_points
        self._point_names = {p.name for p in self.user_points}

    def _call(self, method: str, *args):
        try:
            return getattr(self.agent, method)(*args)
        except DriveFIError:
            raise
        except Exception as err:
            raise AgentError(
                f"agent {self.cls.__name__}.{method} raised {type(err).__name__}: {err}"
            ) from err

    # -- ADS contract ---------------------------------------------------------------------------
    def reset(self, n: int = 1) -> None:
        if n != 1:
            raise ValueError("a user agent drives one run at a time (n=1)")
        if self.fresh_per_run and self._runs > 0:
            self.close()
            self.agent = self._instantiate()
        self._runs += 1
        self.state = None
        if hasattr(self.agent, "set_global_plan"):
            gps, world = self.global_plan()
            self._call("set_global_plan", gps, world)

    def step(self, obs: Observation) -> Actuation:
        inj, k = self.injector, obs.k
        speed = inj.apply("localization.speed", obs.v, k)
        frame = int(getattr(self.bridge, "frame", None) or int(k[0]))
        data = self._input_data(obs, float(speed[0]), frame)
        for p in self.user_points:
            inj.seen.pop(p.name, None)
        with active(_KnownPoints(inj, self._point_names), k):
            try:
                ctrl = self.agent.run_step(data, float(obs.t[0]))
            except DriveFIError:
                raise
            except Exception as err:
                raise AgentError(
                    f"agent {self.cls.__name__}.run_step raised {type(err).__name__} at step {int(k[0])}: {err}"
                ) from err
        if not all(hasattr(ctrl, a) for a in ("throttle", "brake", "steer")):
            raise AgentError(
                f"agent {self.cls.__name__}.run_step must return a carla.VehicleControl, got {ctrl!r}"
            )
        brake = 1.0 if getattr(ctrl, "hand_brake", False) else float(ctrl.brake)
        thr = inj.apply("control.throttle", np.array([float(ctrl.throttle)]), k)
        brk = inj.apply("control.brake", np.array([brake]), k)
        steer = inj.apply("control.steer", np.array([-float(ctrl.steer)]), k)
        for p in self.user_points:
            inj.seen.setdefault(p.name, np.full(np.shape(k), np.nan))
        return Actuation(thr, brk, steer)

    def close(self) -> None:
        if self.agent is not None and hasattr(self.agent, "destroy"):
            self._call("destroy")

    # -- inputs ---------------------------------------------------------------------------------
    def _input_data(self, obs: Observation, speed: float, frame: int) -> dict:
        raw = self.bridge.sensor_data() if hasattr(self.bridge, "sensor_data") else {}
        out = {}
        for s in self.sensors:
            t, sid = s["type"], s["id"]
            if t == "sensor.speedometer":
                out[sid] = (frame, {"speed": speed})
            elif t == "sensor.opendrive_map":
                out[sid] = (frame, {"opendrive": self.opendrive()})
            elif t == "drivefi.observation":
                d = {f: float(np.asarray(getattr(obs, f))[0]) for f in _OBS_SCALARS}
                d["v"] = speed
                d["objects"] = [
                    {
                        f: float(getattr(obs, "obj_" + f)[0, j])
                        for f in ("ds", "dd", "vlon", "vlat", "psi", "len", "wid")
                    }
                    | {"kind": int(obs.obj_kind[0, j])}
                    for j in range(obs.obj_ds.shape[1])
                ]
                out[sid] = (frame, d)
            else:
                f, data = raw[sid]
                out[sid] = (f, convert(data))
        return out

    def opendrive(self) -> str:
        xodr = getattr(self.bridge, "xodr", None)
        if xodr:
            return xodr
        from drivefi.bridges.carla.opendrive import write_opendrive

        return write_opendrive(self.scenario.road, name=self.scenario.name).xodr

    def global_plan(self, spacing: float = 10.0):
        """The route as Leaderboard global plans: ([(gps dict, option)], [(carla.Transform, option)])."""
        import carla

        from drivefi.bridges.carla.opendrive import to_carla

        sc = self.scenario
        route = getattr(self.bridge, "route", None)
        s_end = sc.ego.s + max(sc.ego.speed, sc.ego.cruise_speed) * sc.duration + 50.0
        s = np.arange(sc.ego.s, s_end, spacing)
        if route is not None:
            x, y, h, z = route.pose(s, 0.0)
            cmap = getattr(self.bridge, "map", None)
        else:
            from drivefi.road import RoadGeometry

            g = RoadGeometry.from_road(sc.road)
            x, y, h = g.pose(s, (sc.ego.lane + 0.5) * sc.road.lane_width)
            z = np.zeros_like(s)
            cmap = carla.Map(sc.name, self.opendrive())
        world = [(to_carla(x[i], y[i], h[i], z[i]), RoadOption.LANEFOLLOW) for i in range(len(s))]
        gps = []
        for tf, opt in world:
            g = cmap.transform_to_geolocation(tf.location)
            gps.append(({"lat": g.latitude, "lon": g.longitude, "z": g.altitude}, opt))
        return gps, world


_OBS_SCALARS = (
    "k",
    "t",
    "s",
    "x",
    "y",
    "theta",
    "v",
    "phi",
    "a",
    "lane_offset",
    "heading_error",
    "curvature",
    "lane_width",
)


def load_agent_ads(
    spec: str, scenario: Scenario, seed: int | None = None, bridge=None, conf: str | None = None
) -> AgentADS:
    """The ADS for ``--agent FILE[:CLASS]`` (``conf``: the agent's config file). Pass the CARLA
    ``bridge`` the run will use when the agent has real sensors (they are spawned on its ego)."""
    return AgentADS(spec, scenario, seed=seed, conf=conf, bridge=bridge)


make_agent_ads = load_agent_ads


def agent_points(spec: str) -> list[InjectionPoint]:
    """The points a fault plan for this agent may name: its control outputs and speed, and the
    points its module declares with ``drivefi.inject``/``declare`` on import."""
    _, names = load_agent_class(spec)
    decl = declared()
    return AGENT_POINTS + [
        InjectionPoint(
            n, decl[n].lo, decl[n].hi, decl[n].unit, decl[n].doc or "declared with drivefi.inject"
        )
        for n in sorted(names - _BUILTIN)
        if n in decl
    ]


class _KnownPoints:
    """The injector as ``drivefi.inject`` sees it: points not declared before the run pass through
    (a fault plan cannot name them, and the trace has no column for them)."""

    def __init__(self, injector: Injector, names: set[str]):
        self.injector, self.names, self.unknown = injector, names, set()

    def apply(self, point: str, value, k):
        if point in self.names:
            return self.injector.apply(point, value, k)
        if point not in self.unknown:
            self.unknown.add(point)
            log.warning(
                "injection point %r was first used inside run_step; declare it at import or in setup()",
                point,
            )
        return np.asarray(value, dtype=float)
