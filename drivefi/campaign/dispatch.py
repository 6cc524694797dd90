"""Run one batch on the campaign's simulator: embedded (lock-step, snapshots) or a bridge."""

from __future__ import annotations

from drivefi.campaign.context import BatchContext
from drivefi.core import Fault


def run_batch(ctx: BatchContext, batch: list[tuple[int, Fault]]) -> list[dict]:
    """One outcome row per (plan index, fault) pair of ``batch``."""
    if ctx.sim == "embedded":
        from drivefi.campaign.batch import run_batch as run_embedded

        return run_embedded(ctx, batch)
    from drivefi.campaign.remote import run_batch_on_bridge

    return run_batch_on_bridge(ctx, batch)
