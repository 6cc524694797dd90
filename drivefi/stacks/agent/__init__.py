"""A user's Leaderboard-style agent as the stack under test.

The public place users' agents import from::

    from drivefi.stacks.agent import AutonomousAgent, RoadOption, CarlaDataProvider

Modules: ``loader`` (the agent file, its class and declared points), ``adapter`` (the agent
behind the :class:`drivefi.core.Stack` interface), ``inputs`` (observations as the agent's
sensor data), ``sensors`` (Leaderboard sensor specs and CARLA sensor data), ``carla_api``
(CARLA's Python API for agents on the embedded simulator), ``snapshot`` and ``equal`` (copying
and comparing an agent's state).
"""

from __future__ import annotations

from drivefi.util.lazy import lazy_exports

_EXPORTS = {
    "AutonomousAgent": "loader",
    "RoadOption": "loader",
    "AgentError": "loader",
    "AgentStepError": "loader",
    "CarlaDataProvider": "carla_api",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
