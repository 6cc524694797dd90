"""Loading a user's Leaderboard-style agent (``--agent FILE.py[:CLASS]``) and what it declares.

An agent is a class with ``setup(path_to_conf_file)``, ``sensors()`` and
``run_step(input_data, timestamp) -> carla.VehicleControl`` (Leaderboard 1.x/2.x conventions;
``get_entry_point()`` names the class when CLASS is omitted), optional ``destroy()`` and optional
``get_state()``/``set_state(state)`` snapshot hooks. Every problem loading it is one
:class:`InputError` naming the file and the class (exit 2); nothing falls back to another stack.
"""

from __future__ import annotations

import abc
import enum
import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path

from drivefi.core import InjectionPoint
from drivefi.errors import DriveFIError, InputError
from drivefi.inject import capture, declared

AGENT_POINTS = [
    InjectionPoint("control.throttle", 0.0, 1.0, "", "the agent's VehicleControl.throttle"),
    InjectionPoint("control.brake", 0.0, 1.0, "", "the agent's VehicleControl.brake"),
    InjectionPoint(
        "control.steer", -1.0, 1.0, "", "the agent's steer, left positive (= -VehicleControl.steer)"
    ),
    InjectionPoint("localization.speed", 0.0, 40.0, "m/s", "ego speed the agent receives"),
]
STANDARD = {p.name for p in AGENT_POINTS}


CARLA_PACKAGE = "carla"  # the client package an agent may import (extra drivefi[carla])


class AgentError(InputError):
    """The user's agent cannot be loaded or set up; the message names the file and class."""


class AgentStepError(DriveFIError):
    """The stack under test failed with no fault (its golden run): the message names the agent,
    the step and what happened. Exit 2: a search needs a stack that drives without faults."""

    exit_code = 2


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


def file_hash(path: Path) -> str:
    """SHA-256 of the agent file (hex), part of the stack's identity in traces and campaigns."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _load_module(path: Path, cls_name: str | None):
    key = str(path.resolve())
    if key in _MODULES:
        return _MODULES[key]
    what = f"{path}:{cls_name}" if cls_name else str(path)
    if not path.is_file():
        raise AgentError(f"--agent {what}: agent file not found")
    name = f"drivefi_agent_{path.stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AgentError(f"--agent {what}: {path} is not a Python file")
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
        hint = ""
        if isinstance(err, ModuleNotFoundError) and (err.name or "").split(".")[0] == CARLA_PACKAGE:
            hint = " (the agent uses CARLA's Python API: pip install 'drivefi[carla]')"
        raise AgentError(
            f"--agent {what}: importing {path} failed: {type(err).__name__}: {err}{hint}"
        ) from err
    _MODULES[key] = (module, names)
    return module, names


def load_agent_class(spec: str) -> tuple[type, set[str]]:
    """The agent class named by ``FILE[:CLASS]`` and the points its module declared on import."""
    path, cls_name = parse_agent_spec(spec)
    module, names = _load_module(path, cls_name)
    if cls_name is None:
        entry = getattr(module, "get_entry_point", None)
        if entry is None:
            raise AgentError(
                f"--agent {path}: give the class as FILE:CLASS (the file has no get_entry_point())"
            )
        cls_name = entry()
    cls = getattr(module, cls_name, None)
    if not inspect.isclass(cls):
        classes = sorted(
            n for n, v in vars(module).items() if inspect.isclass(v) and hasattr(v, "run_step")
        )
        raise AgentError(
            f"--agent {path}:{cls_name}: {path} has no class {cls_name!r}; "
            f"agent classes there: {', '.join(classes) or 'none'}"
        )
    for method in ("run_step", "sensors"):
        if not callable(getattr(cls, method, None)):
            raise AgentError(
                f"--agent {path}:{cls_name}: {cls_name} has no {method}() method (not a Leaderboard agent)"
            )
    return cls, set(names)


def instantiate(cls: type, conf: str = "", host: str = "127.0.0.1", port: int = 2000):
    """A set-up instance of ``cls`` (Leaderboard 2.x ``(host, port, debug)`` then ``setup``, 1.x
    ``__init__(conf)``, or no arguments) and the points declared while setting it up."""
    try:
        params = [
            p
            for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        params = []
    src = inspect.getsourcefile(cls) or "?"
    with capture() as names:
        try:
            if len(params) >= 2:
                agent = cls(host, port, False)
                agent.setup(conf)
            elif len(params) == 1:
                agent = cls(conf)
            else:
                agent = cls()
                agent.setup(conf)
        except DriveFIError:
            raise
        except Exception as err:
            raise AgentError(
                f"--agent {src}:{cls.__name__}: setup failed: {type(err).__name__}: {err}"
            ) from err
    return agent, set(names)


def declared_points(names: set[str]) -> list[InjectionPoint]:
    """The user points among ``names`` (standard ones left out), sorted, with declared ranges."""
    decl = declared()
    return [
        InjectionPoint(
            n, decl[n].lo, decl[n].hi, decl[n].unit, decl[n].doc or "declared with drivefi.declare"
        )
        for n in sorted(set(names) - STANDARD)
        if n in decl
    ]


def normalise_sensors(raw, where: str = "agent") -> list[dict]:
    """Leaderboard sensor specs as dicts (accepts the old ``[type, params, id]`` lists)."""
    out = []
    for i, s in enumerate(raw or []):
        if isinstance(s, dict):
            d = dict(s)
        elif isinstance(s, list | tuple) and len(s) == 3:
            d = {"type": s[0], **dict(s[1]), "id": s[2]}
        else:
            raise InputError(f"{where} sensor {i}: expected a dict with 'type' and 'id', got {s!r}")
        if "type" not in d or "id" not in d:
            raise InputError(f"{where} sensor {i}: needs 'type' and 'id' (got {sorted(d)})")
        out.append(d)
    ids = [d["id"] for d in out]
    if len(set(ids)) != len(ids):
        raise InputError(f"{where} sensors: duplicate ids in {ids}")
    return out
