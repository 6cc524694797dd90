"""What a worker needs to run batches of one campaign (picklable, sent once per worker)."""

from __future__ import annotations

from dataclasses import dataclass, field

from drivefi.run.testbed import Testbed
from drivefi.world.scenario import Scenario


@dataclass(frozen=True)
class BatchContext:
    """What a worker needs to run batches of one campaign (picklable)."""

    scenario: Scenario
    seed: int
    testbed: Testbed = field(default_factory=Testbed)
    keep_traces: str = "none"  # none | hazards | all
    trace_dir: str | None = None
    campaign_id: int = 0
    retries: int = 2  # attempts after a simulator failure (a stack's own failure is an outcome)
