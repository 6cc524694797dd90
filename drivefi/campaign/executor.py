"""Executors: run batches of faults somewhere and hand back their outcomes as they complete.

The runner only needs ``run(ctx, batches)`` yielding each batch's result (``batches`` is consumed
lazily: each batch is claimed from the results store when the executor asks for it); optional
``start()`` (called before the store is opened) and ``close()``. ``local`` runs batches in this
process (workers = 1, the bundled stack) or a process pool, ``ray`` on a Ray cluster, ``carla-pool``
on Ray actors that each own one CARLA server. A user's agent is untrusted code: with one worker its
batches run in a pool of one process, so that an agent that crashes its process in native code
(a segmentation fault, a ``SIGKILL`` of its own) loses that process, not the campaign.

The local pool's workers die with the campaign (:mod:`drivefi.campaign.containment`). A worker that
dies under it (the OOM killer, a signal) breaks the pool: the pool is replaced and every batch that
was in flight runs again; a batch that keeps breaking pools is split until the fault that does it is
alone, and that fault is stored with the reason: each worker writes Python's fault handler
report (:mod:`faulthandler`) to a file of its own, so a worker killed by a fatal signal while the
agent stepped (its ``run_step``, or native code it called) makes that fault's outcome a
``stack_failure`` naming the signal and the agent's line; any other death (``SIGKILL``, the OOM
killer) is an ``error`` naming the signal.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from drivefi.campaign.batch import run_batch
from drivefi.campaign.context import BatchContext
from drivefi.campaign.outcome import STACK_FAILURE, error_row

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
    ctx: BatchContext,
    campaign_pid: int,
    switches: dict | None = None,
    memory_mb: int | None = None,
    crash_dir: str | None = None,
) -> None:
    global _CTX
    from drivefi.campaign.containment import die_with

    die_with(campaign_pid)
    _CTX = ctx
    if crash_dir:
        _report_crashes_to(crash_dir)
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


_CRASH_FILE = None  # this worker's fault handler report (kept open for the process's life)


def _report_crashes_to(crash_dir: str) -> None:
    """On a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT), Python's fault handler writes
    the crashing thread's stack to ``<crash_dir>/<pid>`` before the process dies: what the campaign
    reads to tell whose code crashed (no cost while nothing crashes)."""
    global _CRASH_FILE
    _CRASH_FILE = open(Path(crash_dir) / str(os.getpid()), "w")  # noqa: SIM115
    faulthandler.enable(_CRASH_FILE, all_threads=False)


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
    then runs in a pool of one. So does one worker on a user's agent (untrusted code that may
    crash its process): only the bundled stack runs in the campaign's own process."""

    name = "local"

    def __init__(self, workers: int = 1, memory_mb: int | None = None):
        self.workers = max(1, workers)
        self.memory_mb = memory_mb

    def _pool(self, ctx: BatchContext, crash_dir: str) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers,
            mp_context=_mp_context(),
            initializer=_init_worker,
            initargs=(ctx, os.getpid(), _switches(), self.memory_mb, crash_dir),
        )

    def in_process(self, ctx: BatchContext) -> bool:
        """Whether batches run in this process: one worker, no memory cap, and the bundled
        stack (DriveFI's own code) or a simulator outside this process (CARLA: a worker would
        first record its own golden run on the server; a server pool isolates crashes in its
        actors). A user's agent on the embedded simulator runs in worker processes, so a native
        crash isolates one fault instead of ending the campaign."""
        tb = ctx.testbed
        untrusted = tb.stack.agent is not None and tb.simulator.in_process
        return self.workers == 1 and not self.memory_mb and not untrusted

    def run(self, ctx: BatchContext, batches: Iterable[list]) -> Iterator[list[dict]]:
        if self.in_process(ctx):
            for b in batches:
                yield run_batch(ctx, b)
            return
        crash_dir = tempfile.mkdtemp(prefix="drivefi-crash-")
        try:
            yield from self._run_pool(ctx, batches, crash_dir)
        finally:
            shutil.rmtree(crash_dir, ignore_errors=True)

    def _run_pool(self, ctx: BatchContext, batches: Iterable[list], crash_dir: str):
        it = iter(batches)
        retry: deque = deque()  # (batch, breaks, suspect) to run again on a fresh pool
        pending: dict = {}  # future -> (batch, breaks, suspect)
        pool = self._pool(ctx, crash_dir)
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
                    death = _death_of(pool, crash_dir, ctx)
                    lost = []
                    for fut, item in pending.items():
                        if fut.done() and not fut.cancelled() and fut.exception() is None:
                            yield fut.result()  # finished before the pool broke
                        else:
                            lost.append(item)
                    pending.clear()
                    _discard(pool)
                    log.warning(
                        "a campaign worker process died (%s); starting a new pool and running "
                        "its %d batch(es) again",
                        death.signal,
                        len(lost),
                    )
                    for rows in _requeue(lost, retry, death):
                        yield rows
                    pool = self._pool(ctx, crash_dir)
        finally:
            _discard(pool)


@dataclass(frozen=True)
class Death:
    """How a pool's worker died: the signal (``SIGSEGV (segmentation fault)``, or an exit code)
    and, where the fault handler saw the agent's step on the crashing stack, the agent's line."""

    signal: str
    in_agent: str | None = None  # "FILE:LINE in FUNCTION" of the agent's code that was running
    stack: str = "the agent"  # the stack under test as messages name it

    def row(self, idx: int, breaks: int) -> dict:
        """The stored outcome of the fault that killed its worker ``breaks`` times."""
        times = "" if breaks == 1 else f" ({breaks} times)"
        if self.in_agent is None:
            why = f"the worker process died ({self.signal}) running this fault{times}"
            return error_row(idx, breaks, [why])
        msg = (f"{self.stack} crashed the worker process ({self.signal}) in its run_step under this "
               f"fault{times} ({self.in_agent})")  # fmt: skip
        return {"idx": idx, "status": "ok", "outcome": STACK_FAILURE, "critical": 0,
                "attempts": breaks, "error": msg}  # fmt: skip


def _signal_name(exitcode: int | None) -> str:
    if exitcode is None or exitcode >= 0:
        return f"exit code {exitcode}"
    try:
        sig = signal.Signals(-exitcode)
    except ValueError:
        return f"signal {-exitcode}"
    about = signal.strsignal(sig)
    return f"{sig.name}, {about.lower()}" if about else sig.name


def _death_of(pool: ProcessPoolExecutor, crash_dir: str, ctx: BatchContext) -> Death:
    """How the worker that broken ``pool`` died: the one with a fault handler report, else one
    that ended by itself (the pool terminates the others with SIGTERM once it is broken)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    dead = []
    for p in procs:
        with contextlib.suppress(OSError, ValueError, AttributeError, AssertionError):
            if p.exitcode is not None:
                dead.append((p.pid, p.exitcode))
    for pid, code in dead:
        report = Path(crash_dir) / str(pid)
        with contextlib.suppress(OSError):
            text = report.read_text(errors="replace")
            report.unlink()
            if text.strip():
                return Death(_signal_name(code), _agent_frame(text, ctx), ctx.testbed.stack.label)
    by_itself = [c for _, c in dead if c != -signal.SIGTERM] or [c for _, c in dead]
    return Death(_signal_name(by_itself[0] if by_itself else None), None, ctx.testbed.stack.label)


def _agent_frame(report: str, ctx: BatchContext) -> str | None:
    """The agent's line in a fault handler report, when the crash happened while the stack
    stepped (a frame of the agent adapter's ``step`` below frames of code outside DriveFI):
    the innermost frame of the agent's own file, else the innermost frame outside DriveFI."""
    import re

    import drivefi

    own = str(Path(drivefi.__file__).resolve().parent)
    adapter = str(Path(own) / "stacks" / "agent" / "adapter.py")
    agent_file = _agent_path(ctx)
    frames = re.findall(r'File "(.*)", line (\d+) in (\S+)', report)  # most recent call first
    stepping = [i for i, (f, _, fn) in enumerate(frames) if f == adapter and fn == "step"]
    if not stepping:
        return None
    above = frames[: stepping[0]]
    mine = [fr for fr in above if agent_file and fr[0] == agent_file]
    foreign = [fr for fr in above if not fr[0].startswith(own + os.sep)]
    if not (mine or foreign):
        return None  # DriveFI's own code crashed, not the agent's
    f, line, fn = (mine or foreign)[0]
    return f"{f}:{line} in {fn}"


def _agent_path(ctx: BatchContext) -> str | None:
    absolute = ctx.testbed.stack.absolute
    if absolute is None:
        return None
    from drivefi.stacks.agent.loader import parse_agent_spec

    return str(parse_agent_spec(absolute)[0])


def _requeue(lost: list, retry: deque, death: Death | None = None) -> Iterator[list[dict]]:
    """Queue the batches of a broken pool again. Several lost together: none is known to have
    broken it, so each runs again alone (a suspect), uncharged; one lost alone broke it: split a
    repeat offender, give up on a lone fault (stored with how its worker died)."""
    if len(lost) > 1:
        retry.extendleft((batch, breaks, True) for batch, breaks, _ in reversed(lost))
        return
    death = death or Death("killed by a signal")
    # a crash the fault handler caught in the agent's step is the agent's doing: no second try;
    # a death without a trace (SIGKILL: the OOM killer?) may be the machine's, so it is retried
    limit = 1 if death.in_agent else MAX_BREAKS
    for batch, breaks, _ in lost:
        breaks += 1
        if breaks >= limit and len(batch) == 1:
            yield [death.row(batch[0][0], breaks)]
        elif breaks >= limit - 1 and len(batch) > 1:
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
