"""What a worker needs to run batches of one campaign (picklable, sent once per worker)."""

from __future__ import annotations

from dataclasses import dataclass, field

from drivefi.world.scenario import Scenario


@dataclass(frozen=True)
class BatchContext:
    """What a worker needs to run batches of one campaign (picklable)."""

    scenario: Scenario
    seed: int
    sim: str = "embedded"
    keep_traces: str = "none"  # none | hazards | all
    trace_dir: str | None = None
    campaign_id: int = 0
    bridge_options: dict = field(default_factory=dict)  # for non-embedded bridges
    retries: int = 2
    agent: str | None = None  # the stack under test: None (reference) or FILE.py[:CLASS]
