"""CARLA as a :class:`drivefi.bridges.base.Simulator`: a server (or a pool's server) to run on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from drivefi.world.scenario import Scenario


@dataclass(frozen=True)
class CarlaSimulator:
    """Runs on a CARLA server: one run per bridge, from step 0 (no snapshots). ``options`` are
    :func:`drivefi.bridges.carla.bridge.make_carla_bridge`'s (host, port, timeout, ...)."""

    settings: dict = field(default_factory=dict)
    name: ClassVar[str] = "carla"
    snapshots: ClassVar[bool] = False
    in_process: ClassVar[bool] = False

    @property
    def options(self) -> dict:
        return dict(self.settings)

    def bridge(self, scenario: Scenario):
        from drivefi.bridges.carla.bridge import make_carla_bridge

        return make_carla_bridge(scenario, **self.settings)

    def with_options(self, **options) -> CarlaSimulator:
        return CarlaSimulator({**self.settings, **options})
