"""User agents on CARLA: the raw sensor data conversion, and the agent API's names.

The agent adapter itself is simulator-independent (:mod:`drivefi.ads.agent`); on the CARLA bridge
it reads the agent's real sensors through :func:`convert`, the one place raw CARLA sensor data is
turned into what Leaderboard agents receive (images as BGRA arrays, point clouds as float32
arrays, GNSS/IMU as vectors). The names below are kept for code written against this module.
"""

from __future__ import annotations

import numpy as np

from drivefi.ads.agent import AgentStack
from drivefi.ads.agent_loader import (
    AGENT_POINTS,
    AgentError,
    AgentStepError,
    AutonomousAgent,
    RoadOption,
    load_agent_class,
    normalise_sensors,
    parse_agent_spec,
)
from drivefi.scenario import Scenario

AgentADS = AgentStack

__all__ = [
    "AGENT_POINTS",
    "AgentADS",
    "AgentError",
    "AgentStepError",
    "AutonomousAgent",
    "RoadOption",
    "agent_points",
    "convert",
    "load_agent_ads",
    "load_agent_class",
    "normalise_sensors",
    "parse_agent_spec",
]


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


def load_agent_ads(
    spec: str, scenario: Scenario, seed: int | None = None, bridge=None, conf: str | None = None
) -> AgentStack:
    """The stack for ``--agent FILE[:CLASS]`` (``conf``: the agent's config file). Pass the CARLA
    ``bridge`` the run will use when the agent runs on CARLA (its sensors are spawned on its ego)."""
    return AgentStack(spec, scenario, seed=seed, conf=conf, bridge=bridge)


make_agent_ads = load_agent_ads


def agent_points(spec: str):
    """The points a fault plan for this agent may name (see :func:`drivefi.stack.stack_points`)."""
    from drivefi.stack import stack_points

    return stack_points(spec)
