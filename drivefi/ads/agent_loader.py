"""Deprecated import path of the agent base class: use :mod:`drivefi.stacks.agent`.

Kept for one release so that agent files written against it run unchanged, with a warning."""

import warnings

from drivefi.stacks.agent.loader import (  # noqa: F401
    AgentError,
    AgentStepError,
    AutonomousAgent,
    RoadOption,
)

warnings.warn(
    "drivefi.ads.agent_loader is deprecated: import AutonomousAgent (and RoadOption) from "
    "drivefi.stacks.agent instead",
    FutureWarning,
    stacklevel=2,
)
