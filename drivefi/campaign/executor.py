"""Executors: run batches of faults somewhere and hand back their outcomes as they complete.

The runner only needs ``run(ctx, batches)`` yielding each batch's result; ``local`` runs them in
this process (workers = 1) or a process pool, ``ray`` on a Ray cluster.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Protocol

from drivefi.campaign.batch import BatchContext, run_batch


class Executor(Protocol):
    name: str

    def run(self, ctx: BatchContext, batches: Iterable[list]) -> Iterator[list[dict]]:
        """Yield each batch's outcome rows as soon as that batch is done (any order)."""


_CTX: BatchContext | None = None


def _init_worker(ctx: BatchContext) -> None:
    global _CTX
    _CTX = ctx
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _run_in_worker(batch: list) -> list[dict]:
    return run_batch(_CTX, batch)


class LocalExecutor:
    """In-process for one worker, else a pool of ``workers`` processes (at most 2x batches in flight)."""

    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)

    def run(self, ctx: BatchContext, batches: Iterable[list]) -> Iterator[list[dict]]:
        if self.workers == 1:
            for b in batches:
                yield run_batch(ctx, b)
            return
        with ProcessPoolExecutor(self.workers, initializer=_init_worker, initargs=(ctx,)) as pool:
            it = iter(batches)
            pending = set()
            for b in it:
                pending.add(pool.submit(_run_in_worker, b))
                if len(pending) >= 2 * self.workers:
                    break
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
                    nxt = next(it, None)
                    if nxt is not None:
                        pending.add(pool.submit(_run_in_worker, nxt))


def make_executor(kind: str, workers: int, address: str | None = None) -> Executor:
    if kind == "local":
        return LocalExecutor(workers)
    if kind == "ray":
        from drivefi.campaign.ray_executor import RayExecutor

        return RayExecutor(workers, address)
    from drivefi.errors import InputError

    raise InputError(f"--executor: expected local or ray, got '{kind}'")
