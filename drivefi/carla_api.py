"""Deprecated import path of CARLA's Python API for agents: use :mod:`drivefi.stacks.agent`.

Kept for one release so that agent files written against it run unchanged, with a warning."""

import warnings

from drivefi.stacks.agent.carla_api import CarlaDataProvider  # noqa: F401

warnings.warn(
    "drivefi.carla_api is deprecated: import CarlaDataProvider from drivefi.stacks.agent instead",
    FutureWarning,
    stacklevel=2,
)
