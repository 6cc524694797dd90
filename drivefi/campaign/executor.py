"""Executors: run batches of faults somewhere and hand back their outcomes as they complete.

The runner only needs ``run(ctx, batches)`` yielding each batch's result (``batches`` is consumed
lazily: each batch is claimed from the results store when the executor asks for it); optional
``start()`` (called before the store is opened) and ``close()``. ``local`` runs batches in this
process (workers = 1) or a process pool, ``ray`` on a Ray cluster, ``carla-pool`` on Ray actors that
each own one CARLA server.

The local pool's workers die with the campaign (:mod:`drivefi.campaign.containment`). A worker that
dies under it (the OOM killer, a signal) breaks the pool: the pool is replaced and every batch that
was in flight runs again; a batch that keeps breaking pools is split until the fault that does it is
alone, and that fault is stored as an error with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

from drivefi.campaign.batch import run_batch
from drivefi.campaign.context import BatchContext
from drivefi.campaign.outcome import error_row

log = logging.getLogger("drivefi.campaign")

MAX_BREAKS = 3  # pools a single fault may break before it is stored as an error


class Executor(Protocol):
    name: str

    def run(self, ctx: BatchContext, batches: Iterable[list]) -> Iterator[list[dict]]:
        """Yield each batch's outcome rows as soon as that batch is done (any order)."""


_CTX: BatchContext | None = None
_SWITCHES = "DRIVEFI_"  # environment variables that configure DriveFI


def _switches() -> dict[str, str]:
    """This process's DriveFI switches, handed to the workers it starts."""
    return {n: v for n, v in os.environ.items() if n.startswith(_SWITCHES)}


def _init_worker(
    ctx: BatchContext, campaign_pid: int, switches: dict | None = None, memory_mb: int | None = None
) -> None:
    global _CTX
    from drivefi.campaign.containment import die_with

    die_with(campaign_pid)
    _CTX = ctx
    if memory_mb:
        _limit_memory(memory_mb)
    # the campaign's own DRIVEFI_* switches (e.g. DRIVEFI_REJOIN): workers fork from a server
    # that keeps the environment of the first campaign in this process
    for name in [n for n in os.environ if n.startswith(_SWITCHES)]:
        del os.environ[name]
    os.environ.update(switches or {})
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _limit_memory(mb: int) -> None:
    """Cap this worker's address space (``--worker-memory``): an allocation past it raises
    ``MemoryError`` in the code that asked, a stack's own failure when it is the stack's."""
    import resource

    limit = int(mb) << 20
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _run_in_worker(batch: list) -> list[dict]:
    return run_batch(_CTX, batch)


def _mp_context():
    """forkserver on Linux (workers forked from a clean process, not from the multi-threaded
    campaign), else the platform's default."""
    if sys.platform.startswith("linux"):
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["drivefi.campaign.batch"])
        return ctx
    return mp.get_context()


class LocalExecutor:
    """In-process for one worker, else a pool of ``workers`` processes (at most 2x batches in
    flight). ``memory_mb`` caps each worker's memory; it needs worker processes, so one worker
    then runs in a pool of one."""

    name = "local"

    def __init__(self, workers: int = 1, memory_mb: int | None = None):
        self.workers = max(1, workers)
        self.memory_mb = memory_mb

    def _pool(self, ctx: BatchContext) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers,
            mp_context=_mp_context(),
            initializer=_init_worker,
            initargs=(ctx, os.getpid(), _switches(), self.memory_mb),
        )

    def run(self, ctx: BatchContext, batches: Iterable[list]) -> Iterator[list[dict]]:
        if self.workers == 1 and not self.memory_mb:
            for b in batches:
                yield run_batch(ctx, b)
            return
        it = iter(batches)
        retry: deque = deque()  # (batch, breaks, suspect) to run again on a fresh pool
        pending: dict = {}  # future -> (batch, breaks, suspect)
        pool = self._pool(ctx)
        try:
            while True:
                # a suspect (in flight when a pool broke beside others) runs alone, so that a
                # break is charged to the batch that caused it, never to its neighbours
                while len(pending) < 2 * self.workers:
                    if any(item[2] for item in pending.values()):
                        break
                    if retry and retry[0][2] and pending:
                        break
                    item = retry.popleft() if retry else None
                    if item is None:
                        b = next(it, None)
                        if b is None:
                            break
                        item = (b, 0, False)
                    pending[pool.submit(_run_in_worker, item[0])] = item
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                broken = False
                for fut in done:
                    item = pending.pop(fut)
                    try:
                        rows = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        pending[fut] = item  # handled with the rest below
                        continue
                    yield rows
                if broken:
                    lost = []
                    for fut, item in pending.items():
                        if fut.done() and not fut.cancelled() and fut.exception() is None:
                            yield fut.result()  # finished before the pool broke
                        else:
                            lost.append(item)
                    pending.clear()
                    _discard(pool)
                    log.warning(
                        "a campaign worker process died (killed by a signal, e.g. the OOM killer); "
                        "starting a new pool and running its %d batch(es) again",
                        len(lost),
                    )
                    for rows in _requeue(lost, retry):
                        yield rows
                    pool = self._pool(ctx)
        finally:
            _discard(pool)


def _requeue(lost: list, retry: deque) -> Iterator[list[dict]]:
    """Queue the batches of a broken pool again. Several lost together: none is known to have
    broken it, so each runs again alone (a suspect), uncharged; one lost alone broke it: split a
    repeat offender, give up on a lone fault."""
    if len(lost) > 1:
        retry.extendleft((batch, breaks, True) for batch, breaks, _ in reversed(lost))
        return
    for batch, breaks, _ in lost:
        breaks += 1
        if breaks >= MAX_BREAKS and len(batch) == 1:
            idx = batch[0][0]
            yield [error_row(idx, breaks, [f"the worker process died {breaks} times running it"])]
        elif breaks >= MAX_BREAKS - 1 and len(batch) > 1:
            half = len(batch) // 2
            retry.appendleft((batch[half:], breaks, True))
            retry.appendleft((batch[:half], breaks, True))
        else:
            retry.appendleft((batch, breaks, True))


def _discard(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: cancel what waits, kill its workers (never leave one behind)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if p.is_alive():
                p.kill()
    for p in procs:
        with contextlib.suppress(OSError, ValueError, AttributeError, AssertionError):
            p.join(timeout=2.0)


def make_executor(
    kind: str,
    workers: int,
    address: str | None = None,
    timeout: float | None = None,
    servers: list | None = None,
    memory_mb: int | None = None,
) -> Executor:
    """``local`` or ``ray`` (``address`` joins a cluster within ``timeout`` seconds); with
    ``servers`` (CARLA host:port list) the Ray actor pool of CARLA servers."""
    from drivefi.errors import InputError

    if memory_mb and (servers or kind != "local"):
        raise InputError("--worker-memory: needs --executor local (no Ray, no CARLA server pool)")
    if servers:
        if kind not in ("ray", "local"):
            raise InputError(f"--executor: expected local or ray, got '{kind}'")
        from drivefi.campaign.carla_pool import CarlaPoolExecutor

        return CarlaPoolExecutor(servers, address, timeout)
    if kind == "local":
        if address:
            raise InputError("--ray-address: needs --executor ray")
        return LocalExecutor(workers, memory_mb)
    if kind == "ray":
        from drivefi.campaign.ray_executor import RayExecutor

        return RayExecutor(workers, address, timeout)
    raise InputError(f"--executor: expected local or ray, got '{kind}'")
