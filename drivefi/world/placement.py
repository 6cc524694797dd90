"""Where a scenario is placed on a CARLA town: the optional ``carla:`` block of a scenario file.

    carla:
      town: Town04                      # load this town instead of the scenario's own road
      ego: {road_id: 35, lane_id: -3, s: 40.0}
      route:                            # optional: the lanes to follow at junctions, in order
        - {road_id: 35, lane_id: -3}    #   by OpenDRIVE road and lane id ...
        - {x: 120.5, y: -8.2}           #   ... or by CARLA location (as Leaderboard routes give)
      actors:                           # one entry per scenario actor, in order (all optional)
        - {road_id: 35, lane_id: -3, s: 80.0, blueprint: vehicle.audi.tt}

Without ``town`` the scenario's road is written as OpenDRIVE and generated on the server, and the
block may only choose blueprints. With ``town``, the ego's lane from its placement on is the route:
at a junction it continues on the lane that goes straightest through it, unless ``route`` names the
way. ``s`` is measured as on the scenario's own road (along its reference line, the right edge of
lane 0, here a line ``(ego.lane + 0.5) * lane_width`` to the right of the ego lane's centre), the
ego starts at the scenario's ``ego.s``, scripted actors move in that frame, and an actor with a
road/lane/s placement starts where that waypoint projects onto it.

This module only validates (pydantic) and imports nothing of DriveFI, so the scenario schema can
use it (it sits below :mod:`drivefi.world.scenario`; :mod:`drivefi.bridges.carla.settings` re-exports it).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _not_centre(lane_id: int) -> int:
    if lane_id == 0:
        raise ValueError("lane_id 0 is OpenDRIVE's centre line, not a lane")
    return lane_id


class LanePlace(_Strict):
    """A point on a map lane: OpenDRIVE road id, lane id (negative: right of the road's
    reference line) and s along the road [m]."""

    road_id: int = Field(ge=0)
    lane_id: int
    s: float = Field(ge=0)

    @field_validator("lane_id")
    @classmethod
    def _lane(cls, v: int) -> int:
        return _not_centre(v)


class ActorPlacement(_Strict):
    road_id: int | None = Field(default=None, ge=0)
    lane_id: int | None = None
    s: float | None = Field(default=None, ge=0)
    blueprint: str | None = None

    @model_validator(mode="after")
    def _all_or_none(self) -> ActorPlacement:
        given = [v is not None for v in (self.road_id, self.lane_id, self.s)]
        if any(given) and not all(given):
            raise ValueError("give all of road_id, lane_id and s, or none")
        return self

    @field_validator("lane_id")
    @classmethod
    def _lane(cls, v: int | None) -> int | None:
        return v if v is None else _not_centre(v)

    @property
    def place(self) -> LanePlace | None:
        if self.road_id is None:
            return None
        return LanePlace(road_id=self.road_id, lane_id=self.lane_id, s=self.s)


class RoutePoint(_Strict):
    """One entry of an explicit route: a lane (``road_id`` and ``lane_id``) or a CARLA location
    (``x``, ``y`` in CARLA's left-handed coordinates, as a Leaderboard route's waypoints)."""

    road_id: int | None = Field(default=None, ge=0)
    lane_id: int | None = None
    x: float | None = None
    y: float | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> RoutePoint:
        lane = self.road_id is not None and self.lane_id is not None
        loc = self.x is not None and self.y is not None
        partial = (self.road_id is None) != (self.lane_id is None) or (self.x is None) != (
            self.y is None
        )
        if lane == loc or partial:
            raise ValueError("give either road_id and lane_id, or x and y")
        if self.lane_id == 0:
            raise ValueError("lane_id 0 is OpenDRIVE's centre line, not a lane")
        return self


class CarlaPlacement(_Strict):
    """Optional ``carla:`` block of a scenario (see the module docstring)."""

    town: str | None = Field(default=None, description="CARLA map to load, e.g. Town04")
    ego: LanePlace | None = None
    ego_blueprint: str | None = None
    actors: list[ActorPlacement] = []
    route: list[RoutePoint] = Field(
        default=[], description="lanes or locations to follow at junctions, in driving order"
    )
    route_behind: float = Field(
        default=80.0, ge=0, description="lane frame kept behind the ego start [m]"
    )

    @model_validator(mode="after")
    def _town_needs_ego(self) -> CarlaPlacement:
        if self.town is not None and self.ego is None:
            raise ValueError("a town needs 'ego: {road_id, lane_id, s}' to place the ego")
        if self.town is None and self.route:
            raise ValueError("a route needs 'town' (the scenario's own road has no junctions)")
        if self.town is None and (self.ego is not None or any(a.place for a in self.actors)):
            raise ValueError(
                "road/lane/s placements need 'town' (the scenario's own road uses its lanes)"
            )
        return self
