"""What a CARLA run is configured with: the connection (:class:`CarlaConfig`) and, optionally,
where on a CARLA town the scenario is placed (:class:`CarlaPlacement`).

The placement schema itself (the scenario's ``carla:`` block) lives in :mod:`drivefi.world.placement`,
below :mod:`drivefi.world.scenario`, and is re-exported here.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drivefi.errors import InputError
from drivefi.world.placement import ActorPlacement, CarlaPlacement, LanePlace, RoutePoint

__all__ = [
    "ActorPlacement",
    "CarlaConfig",
    "CarlaPlacement",
    "LanePlace",
    "RoutePoint",
    "carla_config",
    "load_carla_scenario",
    "placement_of",
]

DEFAULT_BLUEPRINTS = {
    "vehicle": "vehicle.tesla.model3",
    "pedestrian": "walker.pedestrian.0001",
    "static": "static.prop.streetbarrier",
}
BLUEPRINT_FALLBACK = {
    "vehicle": "vehicle.*",
    "pedestrian": "walker.pedestrian.*",
    "static": "static.prop.*",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CarlaConfig(_Strict):
    """Connection and run options of the CARLA bridge (CLI: ``--carla-*``)."""

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(
        default=2000, ge=1, le=65535, description="RPC port; the server also uses port + 1"
    )
    timeout: float = Field(default=10.0, gt=0, le=600, description="RPC and tick time-out [s]")
    retries: int = Field(default=2, ge=0, le=100, description="campaign retries of a failed run")
    restart_cmd: str | None = Field(
        default=None, description="shell command that (re)starts the server"
    )
    restart_wait: float = Field(default=120.0, gt=0, description="wait for a restarted server [s]")
    tm_port: int | None = Field(
        default=None, ge=1, le=65535, description="Traffic Manager port (port + 6000)"
    )
    no_rendering: bool = Field(default=False, description="no_rendering_mode (no camera images)")
    ego_blueprint: str = "vehicle.lincoln.mkz_2020"
    blueprints: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_BLUEPRINTS))
    match_steering: bool = Field(
        default=True, description="set the ego's front-wheel max steer angle to phi_max"
    )
    vertex_distance: float = Field(
        default=1.0, gt=0, description="mesh vertex spacing of generated roads [m]"
    )
    route_step: float = Field(
        default=1.0, gt=0, le=5, description="waypoint spacing of the lane frame [m]"
    )
    spawn_z: float = Field(
        default=0.1, ge=0, description="height above the road the ego spawns at [m]"
    )
    teardown_timeout: float = Field(
        default=3.0, gt=0, description="RPC time-out while cleaning up [s]"
    )

    @property
    def traffic_manager_port(self) -> int:
        return self.tm_port if self.tm_port is not None else self.port + 6000

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def carla_config(**options) -> CarlaConfig:
    """A validated :class:`CarlaConfig` from CLI-style options (None means the default);
    a bad value raises :class:`InputError` naming the ``--carla-*`` option."""
    given = {k: v for k, v in options.items() if v is not None}
    try:
        return CarlaConfig(**given)
    except ValidationError as err:
        e = err.errors()[0]
        name = str(e["loc"][0]) if e["loc"] else "?"
        flag = "--carla-" + name.replace("_", "-")
        raise InputError(f"{flag}: {e['msg']} (got {e.get('input')!r})") from None


def placement_of(scenario) -> CarlaPlacement | None:
    """The scenario's ``carla`` block if its model has one (dict or model), else None."""
    raw = getattr(scenario, "carla", None)
    if raw is None or isinstance(raw, CarlaPlacement):
        return raw
    data = raw.model_dump() if hasattr(raw, "model_dump") else raw
    try:
        return CarlaPlacement.model_validate(data)
    except ValidationError as err:
        raise InputError(f"scenario {scenario.name}: {_where(err, 'carla')}") from None


def _where(err: ValidationError, prefix: str) -> str:
    e = err.errors()[0]
    loc = ".".join([prefix, *(str(x) for x in e["loc"] if not str(x).startswith("function-after"))])
    return f"field '{loc}': {e['msg']}"


def load_carla_scenario(name_or_path: str | Path):
    """Load a scenario whose YAML may carry a ``carla:`` block: (Scenario, CarlaPlacement | None).

    Works whether or not :class:`drivefi.world.scenario.Scenario` knows the ``carla`` field; errors are
    :class:`InputError` naming the file and field.
    """
    from drivefi.world.scenario import load_scenario, parse_scenario, resolve_path

    path = resolve_path(name_or_path)
    if not path.is_file():
        return load_scenario(name_or_path), None  # the scenario loader's own clear error
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return load_scenario(name_or_path), None
    if not isinstance(data, dict) or "carla" not in data:
        return load_scenario(path), None
    raw = data.pop("carla")
    try:
        placement = CarlaPlacement.model_validate(raw if raw is not None else {})
    except ValidationError as err:
        raise InputError(f"{path}: {_where(err, 'carla')}") from None
    try:
        scenario = parse_scenario({**data, "carla": raw}, str(path))
    except InputError:
        scenario = parse_scenario(data, str(path))
    if len(placement.actors) > len(scenario.actors):
        raise InputError(
            f"{path}: field 'carla.actors': {len(placement.actors)} placements but the scenario has "
            f"{len(scenario.actors)} actors"
        )
    return scenario, placement
