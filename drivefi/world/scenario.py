"""Scenario files: the drive to simulate (road, ego, other actors, duration, seed), validated on load.

A scenario is YAML in ``scenarios/``; a bundled scenario may be named instead of given as a path.
Every field is checked by pydantic; a bad file raises :class:`InputError` naming the file and field.

Limits (refused on load, each with its own message): a file of at most ``MAX_SCENARIO_BYTES``
(checked before parsing), UTF-8 text, plain YAML (no aliases ``*name``, merge keys or duplicate
keys), finite numbers only (no ``.nan``/``.inf``), no type coercion (``"5"`` is not a number,
``true`` is not a number), physical parameters within stated ranges, and at most ``MAX_STEPS``
simulation steps (``duration / dt``), so a mistyped ``dt`` cannot exhaust memory.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from drivefi.errors import InputError
from drivefi.util.resources import bundled_dir
from drivefi.util.seeds import SEED_MAX
from drivefi.util.text_input import read_text
from drivefi.world.placement import CarlaPlacement

SCENARIO_DIR = bundled_dir("scenarios")
MAX_SCENARIO_BYTES = 1 << 20  # 1 MiB: the bundled scenarios are under 1 KiB
MAX_STEPS = 100_000  # duration / dt: trace rows and per-step snapshots held in memory
MAX_YAML_DEPTH = 50


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Segment(_Strict):
    """A road piece: straight (curvature 0) or a constant-curvature arc (positive turns left)."""

    length: float = Field(gt=0, le=100_000, description="length along the reference line [m]")
    curvature: float = Field(default=0.0, ge=-0.2, le=0.2, description="1/radius [1/m]")


class Road(_Strict):
    """Road of parallel lanes; lane 0 is the rightmost, lateral offset d grows to the left."""

    lanes: int = Field(default=2, ge=1, le=8)
    lane_width: float = Field(default=3.5, gt=2.0, le=6.0)
    segments: list[Segment] = Field(min_length=1, max_length=10_000)

    @property
    def length(self) -> float:
        """Length of the road's reference line [m]."""
        return sum(seg.length for seg in self.segments)


class VehicleParams(_Strict):
    """Vehicle parameters shared by the simulator and the safety potential."""

    wheelbase: float = Field(default=2.9, gt=0, le=20)
    length: float = Field(default=4.7, gt=0, le=30)
    width: float = Field(default=1.9, gt=0, le=5)
    a_max: float = Field(
        default=8.0, gt=0, le=20, description="max comfortable deceleration for d_stop [m/s^2]"
    )
    brake_max: float = Field(
        default=9.5, gt=0, le=20, description="deceleration at brake = 1 [m/s^2]"
    )
    accel_max: float = Field(
        default=3.5, gt=0, le=20, description="acceleration at throttle = 1, at rest [m/s^2]"
    )
    v_max: float = Field(
        default=50.0, gt=0, le=150, description="speed where the throttle map reaches zero [m/s]"
    )
    phi_max: float = Field(default=0.6, gt=0, lt=1.5, description="max road-wheel angle [rad]")
    steer_rate: float = Field(default=0.5, gt=0, le=20, description="steering-rate limit [rad/s]")
    response_time: float = Field(
        default=0.1,
        ge=0,
        allow_inf_nan=True,
        description="rho: steering held before it returns [s]; .inf holds it for the whole stop",
    )
    a_lat_max: float = Field(
        default=2.0,
        gt=0,
        le=20,
        description="steering-interface lateral-acceleration limit [m/s^2]",
    )
    actuator_tau: float = Field(
        default=0.1, gt=0, le=10, description="throttle/brake first-order lag [s]"
    )
    drag: float = Field(
        default=0.0004, ge=0, le=1, description="aerodynamic drag coefficient [1/m]"
    )
    rolling: float = Field(default=0.1, ge=0, le=5, description="rolling resistance [m/s^2]")

    @field_validator("response_time", mode="before")
    @classmethod
    def _rho_number(cls, v):
        if isinstance(v, float) and math.isnan(v):
            raise ValueError("expected a finite number 0..60 s, or .inf (held for the whole stop)")
        return v

    @field_validator("response_time")
    @classmethod
    def _rho(cls, v: float) -> float:
        if math.isfinite(v) and v > 60:
            raise ValueError("expected 0..60 s, or .inf (steering held for the whole stop)")
        return v

    @model_validator(mode="after")
    def _wheelbase_fits(self) -> VehicleParams:
        if self.wheelbase >= self.length:
            raise ValueError(
                f"vehicle wheelbase {self.wheelbase:g} m must be shorter than its length {self.length:g} m"
            )
        return self


class Ego(_Strict):
    lane: int = Field(default=0, ge=0, le=7)
    s: float = Field(default=0.0, ge=0, description="start position along the road [m]")
    speed: float = Field(ge=0, le=60, description="initial speed [m/s]")
    cruise_speed: float = Field(gt=0, le=60, description="goal speed [m/s]")
    vehicle: VehicleParams = VehicleParams()


class Cruise(_Strict):
    type: Literal["cruise"]


class Brake(_Strict):
    type: Literal["brake"]
    t: float = Field(ge=0, description="time the actor starts braking [s]")
    decel: float = Field(gt=0, le=12, description="deceleration [m/s^2], held until it stops")


class Stop(_Strict):
    type: Literal["stop"]


class CutIn(_Strict):
    type: Literal["cut_in"]
    t: float = Field(ge=0, description="time the lane change starts [s]")
    to_lane: int = Field(ge=0)
    duration: float = Field(default=2.0, gt=0, le=60, description="lane-change duration [s]")


class Cross(_Strict):
    type: Literal["cross"]
    t: float = Field(ge=0, description="time the actor starts crossing [s]")
    speed: float = Field(default=1.4, gt=0, le=10, description="crossing speed [m/s]")
    to_d: float = Field(ge=-100, le=100, description="lateral offset where it stops walking [m]")


Behaviour = Annotated[Cruise | Brake | Stop | CutIn | Cross, Field(discriminator="type")]

_TAGS = {"cruise", "brake", "stop", "cut_in", "cross"}
_SIZES = {"vehicle": (4.6, 1.9), "pedestrian": (0.5, 0.5), "static": (1.0, 1.0)}


class Actor(_Strict):
    """Another road user or object, driven by a scripted behaviour (no reaction to the ego)."""

    kind: Literal["vehicle", "pedestrian", "static"] = "vehicle"
    lane: int | None = Field(default=None, ge=0, le=7, description="lane to start in (or give d)")
    d: float | None = Field(
        default=None, ge=-100, le=100, description="lateral offset from the road's right edge [m]"
    )
    s: float = Field(ge=0, description="start position along the road [m]")
    speed: float = Field(default=0.0, ge=0, le=60)
    length: float | None = Field(default=None, gt=0, le=30)
    width: float | None = Field(default=None, gt=0, le=10)
    a_max: float = Field(default=8.0, gt=0, le=20, description="its own maximum braking [m/s^2]")
    behaviour: Behaviour = Cruise(type="cruise")

    @model_validator(mode="after")
    def _one_place(self) -> Actor:
        if (self.lane is None) == (self.d is None):
            raise ValueError("give exactly one of 'lane' or 'd'")
        return self

    @property
    def size(self) -> tuple[float, float]:
        dl, dw = _SIZES[self.kind]
        return (self.length or dl, self.width or dw)


class SensorNoise(_Strict):
    """Standard deviations of the perception noise (Gaussian, seeded)."""

    distance: float = Field(default=0.2, ge=0, le=100)
    speed: float = Field(default=0.05, ge=0, le=100)
    lane_offset: float = Field(default=0.01, ge=0, le=10)
    heading: float = Field(default=0.001, ge=0, le=3.2)


class Scenario(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$", max_length=100)
    description: str = Field(default="", max_length=10_000)
    duration: float = Field(gt=0, le=600, description="[s]")
    dt: float = Field(default=0.05, gt=0, le=0.1, description="simulation step [s]")
    seed: int = Field(default=0, ge=0, le=SEED_MAX, description="0 <= seed < 2^63")
    road: Road
    ego: Ego
    actors: list[Actor] = Field(default=[], max_length=1000)
    sensor_noise: SensorNoise = SensorNoise()
    carla: CarlaPlacement | None = Field(
        default=None,
        description="optional CARLA town and road/lane/s placements (CARLA bridge only)",
    )

    @model_validator(mode="after")
    def _lanes_exist(self) -> Scenario:
        n = self.road.lanes
        if self.ego.lane >= n:
            raise ValueError(f"ego.lane {self.ego.lane} but the road has {n} lanes")
        for i, a in enumerate(self.actors):
            if a.lane is not None and a.lane >= n:
                raise ValueError(f"actors.{i}.lane {a.lane} but the road has {n} lanes")
            if isinstance(a.behaviour, CutIn) and a.behaviour.to_lane >= n:
                raise ValueError(f"actors.{i}.behaviour.to_lane {a.behaviour.to_lane} >= lanes {n}")
        return self

    @model_validator(mode="after")
    def _steps_in_range(self) -> Scenario:
        ratio = self.duration / self.dt
        if not math.isfinite(ratio) or ratio > MAX_STEPS + 0.5:
            raise ValueError(
                f"duration {self.duration:g} s at dt {self.dt:g} s gives {ratio:.3g} steps; "
                f"expected at most {MAX_STEPS} (raise dt or shorten the duration)"
            )
        steps = round(ratio)
        if steps < 2:
            raise ValueError(
                f"duration {self.duration:g} s at dt {self.dt:g} s gives {steps} steps; expected at least 2"
            )
        return self

    @model_validator(mode="after")
    def _on_the_road(self) -> Scenario:
        if self.carla is not None and self.carla.town is not None:
            return self  # s is measured along the town route, not along these segments
        length = self.road.length
        if self.ego.s >= length:
            raise ValueError(f"ego.s {self.ego.s:g} m is past the end of the road ({length:g} m)")
        for i, a in enumerate(self.actors):
            if a.s > length:
                raise ValueError(
                    f"actors.{i}.s {a.s:g} m is past the end of the road ({length:g} m)"
                )
        return self

    @property
    def steps(self) -> int:
        """Number of simulation steps (rows of a trace)."""
        return round(self.duration / self.dt)


def bundled_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def resolve_path(name_or_path: str | Path) -> Path:
    """A bundled scenario's name, or a path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists() or "/" in str(name_or_path):
        return p
    return SCENARIO_DIR / f"{name_or_path}.yaml"


def _describe(err: ValidationError) -> str:
    e = err.errors()[0]
    loc = [str(x) for x in e["loc"] if not str(x).startswith("function-after")]
    # a discriminated union adds its tag ('brake') after 'behaviour': the file has no such key
    loc = [x for i, x in enumerate(loc) if not (i and loc[i - 1] == "behaviour" and x in _TAGS)]
    where = ".".join(loc)
    msg = e["msg"].removeprefix("Value error, ")
    got = e.get("input")
    got_s = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    more = f" (and {len(err.errors()) - 1} more problems)" if len(err.errors()) > 1 else ""
    if not where:  # a check across fields (lane numbers): its message names the fields
        return f"{msg}{more}"
    return f"field '{where}': {msg}{got_s}{more}"


def parse_scenario(data: object, source: str = "<scenario>") -> Scenario:
    if not isinstance(data, dict):
        raise InputError(
            f"{source}: expected a YAML mapping of scenario fields, got {type(data).__name__}"
        )
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise InputError(f"{source}: {_describe(err)}") from None


class _PlainLoader(yaml.SafeLoader):
    """Safe YAML without aliases (a few lines can expand to gigabytes), duplicate keys or deep
    nesting: a scenario is a small tree written by hand."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            ev = self.peek_event()
            raise yaml.MarkedYAMLError(
                problem=f"alias *{ev.anchor} (YAML anchors and aliases are not supported)",
                problem_mark=ev.start_mark,
            )
        depth = getattr(self, "_depth", 0) + 1
        if depth > MAX_YAML_DEPTH:
            raise yaml.MarkedYAMLError(
                problem=f"nested more than {MAX_YAML_DEPTH} levels deep",
                problem_mark=self.peek_event().start_mark,
            )
        self._depth = depth
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth - 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                raise yaml.MarkedYAMLError(
                    problem="a mapping key must be a plain value", problem_mark=key_node.start_mark
                )
            if key in seen:
                raise yaml.MarkedYAMLError(
                    problem=f"duplicate key '{key}'", problem_mark=key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


# YAML 1.2 floats without a dot (`dt: 5e-2`, `1E3`): YAML 1.1, which PyYAML follows, reads them as
# strings, so a valid number would be refused (added to this loader only, not to yaml.SafeLoader)
_PlainLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def parse_yaml(text: str, source: str) -> object:
    """Parse scenario YAML with :class:`_PlainLoader`; raise :class:`InputError` naming ``source``."""
    try:
        return yaml.load(text, Loader=_PlainLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError(
            f"{source}: malformed YAML{where}: {getattr(err, 'problem', err)}"
        ) from None
    except RecursionError:
        raise InputError(f"{source}: malformed YAML: nested too deeply") from None


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load and validate a scenario; raise :class:`InputError` with file and field on any problem."""
    path = resolve_path(name_or_path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected a scenario YAML file")
    if not path.is_file():
        hint = (
            f"; bundled scenarios: {', '.join(bundled_names())}"
            if "/" not in str(name_or_path)
            else ""
        )
        raise InputError(f"{path}: scenario file not found{hint}")
    return parse_scenario(
        parse_yaml(read_text(path, "scenario", "a YAML scenario", MAX_SCENARIO_BYTES), str(path)),
        str(path),
    )
