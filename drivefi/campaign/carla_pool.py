"""A campaign on a pool of CARLA servers: one Ray actor per server, each owning its connection.

The driver hands each fault to a free actor. An actor runs one attempt of one fault on its server
and returns the outcome row, or the reason it failed. When a run fails, or the actor does not
answer within ``run_timeout`` seconds (a hung server), the driver restarts the actor (Ray actor
restart) and the restarted actor runs the restart command of its server (``--carla-restart-cmd``,
with ``{host}`` and ``{port}`` filled in) before it takes new work; the fault goes back to the queue
and runs on the next free server, while the rest of the pool goes on. A fault that fails on
``retries + 1`` attempts is stored as an error with every attempt's reason. A server that fails
``max_failures`` times in a row is taken out of the pool with a warning; when no server is left the
campaign stops (rerun to resume). Only the driver writes to the results store.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from drivefi.campaign.context import BatchContext
from drivefi.campaign.outcome import error_row
from drivefi.campaign.ray_session import RaySession
from drivefi.errors import InputError, SimulatorError

log = logging.getLogger("drivefi.campaign")

MAX_FAILURES = 3  # consecutive failures that take a server out of the pool
RUN_SECONDS_PER_STEP = 0.25  # a run slower than 60 s + this per step counts as hung


@dataclass(frozen=True)
class Server:
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_servers(text: str) -> list[Server]:
    """``host:port[,host:port...]``, or ``@FILE`` / a file path with one ``host:port`` a line
    (``#`` comments). Raises InputError naming the entry."""
    src = "--carla-servers"
    entries: list[str]
    path = Path(text[1:] if text.startswith("@") else text)
    if text.startswith("@") or (path.is_file() and ":" not in text.split(",")[0][-6:]):
        if not path.is_file():
            raise InputError(f"--carla-servers {text}: file not found")
        src = str(path)
        entries = []
        for line in path.read_text(errors="replace").splitlines():
            line = line.split("#", 1)[0].strip()
            entries += [e for e in line.replace(",", " ").split() if e]
    else:
        entries = [e.strip() for e in text.split(",") if e.strip()]
    servers: list[Server] = []
    for e in entries:
        host, _, port = e.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InputError(f"{src}: expected host:port (port 1-65535), got '{e}'")
        s = Server(host.strip("[]"), int(port))
        if s in servers:
            raise InputError(f"{src}: server {s.address} is listed twice")
        servers.append(s)
    if not servers:
        raise InputError(f"{src}: no servers given (expected host:port[,host:port...])")
    return servers


class ServerWorker:
    """The actor of one server (wrapped with ``ray.remote`` at run time)."""

    def __init__(self, ctx: BatchContext, server: Server, restart_cmd: str | None):
        import ray

        simu = ctx.testbed.simulator.with_options(
            host=server.host, port=server.port, restart_cmd=restart_cmd
        )
        self.ctx = replace(ctx, testbed=ctx.testbed.on(simu))
        opts = simu.options
        self.server = server
        self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        if self.restarted and restart_cmd:
            from drivefi.bridges.carla.connection import restart_server
            from drivefi.bridges.carla.settings import carla_config

            cfg_opts = {k: v for k, v in opts.items() if k != "client_factory"}
            restart_server(carla_config(**cfg_opts), opts.get("client_factory"))

    def ready(self) -> int:
        """Connect and record the golden run on this server (once per actor process); returns the
        actor's process id (the driver tells a restarted actor from the one it killed by it)."""
        import os

        from drivefi.campaign.batch import golden

        golden(self.ctx)
        return os.getpid()

    def run(self, idx: int, fault) -> dict:
        """One attempt of one fault: the outcome row (a stack that raised is its outcome, not the
        server's failure; a kept trace rides along as ``_frame`` for the driver to write), or
        ``{"failed": reason}``."""
        from drivefi.campaign.batch import attempt, kept_frames

        try:
            rows, runs = attempt(self.ctx, [(idx, fault)])
        except SimulatorError as err:
            return {"idx": idx, "failed": str(err)}
        frame = kept_frames(self.ctx, rows, runs).get(0)
        return {**rows[0], "_frame": frame, "_stack": runs.stack} if frame is not None else rows[0]


@dataclass
class _Slot:
    server: Server
    actor: object = None
    ref: object = None  # the call in flight
    item: list | None = None  # [idx, fault, attempts, reasons]
    since: float = 0.0
    state: str = "starting"
    failures: int = 0
    restarts: int = 0
    ok: int = 0
    removed: bool = False
    task: int | None = None
    recheck_at: float | None = None  # restarting: ask ready() again at this time
    started: float = 0.0  # when the restart began
    pid: int | None = None  # the actor process that last answered ready()


class CarlaPoolExecutor:
    """Executor over a pool of CARLA servers (see module docstring)."""

    name = "carla-pool"

    def __init__(
        self,
        servers: list[Server],
        address: str | None = None,
        timeout: float | None = None,
        restart_cmd: str | None = None,
        run_timeout: float | None = None,
        max_failures: int = MAX_FAILURES,
        ready_timeout: float = 300.0,
    ):
        if not servers:
            raise InputError("--carla-servers: no servers given")
        self.servers = list(servers)
        self.workers = len(servers)
        self.restart_cmd = restart_cmd
        self.run_timeout = run_timeout
        self.max_failures = max_failures
        self.ready_timeout = ready_timeout
        self.session = RaySession(address, num_cpus=max(1, len(servers)), timeout=timeout)
        self.slots: list[_Slot] = [_Slot(s) for s in self.servers]
        self._ctx: BatchContext | None = None
        self._bar = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.session.start()

    def show_status(self, bar) -> None:
        """Show one progress line per server on ``bar`` (a rich Progress)."""
        self._bar = bar
        for s in self.slots:
            s.task = bar.add_task(self._line(s), total=None, rate=0.0)

    def _line(self, s: _Slot) -> str:
        return (f"  {s.server.address:<21} {s.state:<24} ok {s.ok:<5} restarts {s.restarts}")  # fmt: skip

    def _set(self, s: _Slot, state: str) -> None:
        s.state = state
        if self._bar is not None and s.task is not None:
            self._bar.update(s.task, description=self._line(s), completed=s.ok)

    def _restart_cmd(self, server: Server) -> str | None:
        if not self.restart_cmd:
            return None
        return self.restart_cmd.replace("{host}", server.host).replace("{port}", str(server.port))

    def _spawn(self, s: _Slot, ctx: BatchContext) -> None:
        ray = self.session.ray
        cls = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)(ServerWorker)
        s.actor = cls.remote(ctx, s.server, self._restart_cmd(s.server))
        self._ready(s)

    def _ready(self, s: _Slot) -> None:
        s.ref, s.item, s.since = s.actor.ready.remote(), None, time.monotonic()
        s.started, s.recheck_at = s.since, None
        self._set(s, "restarting" if s.restarts else "connecting")

    def _actors_for(self, ctx: BatchContext) -> None:
        if self._ctx is ctx:
            return
        self._kill_all()
        self._ctx = ctx
        for s in self.slots:
            if not s.removed:
                self._spawn(s, ctx)

    def _kill_all(self) -> None:
        ray = self.session.ray
        for s in self.slots:
            if s.actor is not None and ray is not None and ray.is_initialized():
                ray.kill(s.actor, no_restart=True)
            s.actor, s.ref, s.item = None, None, None

    def map_chunks(self, fn, scenario, items: list, *args) -> list:
        """The pipeline's training runs (embedded) as Ray tasks beside the servers' actors."""
        from drivefi.campaign.ray_executor import map_chunks

        return map_chunks(self.session, len(self.servers), fn, scenario, items, *args)

    def close(self) -> None:
        self._kill_all()
        self.session.close()

    # -- scheduling --------------------------------------------------------------------------
    def _timeout_of(self, ctx: BatchContext, s: _Slot) -> float:
        if s.item is None:  # connecting / restarting / golden run
            return self.ready_timeout
        if self.run_timeout is not None:
            return self.run_timeout
        return 60.0 + RUN_SECONDS_PER_STEP * ctx.scenario.steps

    def run(self, ctx: BatchContext, batches: Iterable[list]) -> Iterator[list[dict]]:
        ray = self.session.start()
        self._actors_for(ctx)
        it = (pair for b in batches for pair in b)
        queue: deque = deque()  # faults to retry first
        exhausted = False
        while True:
            for s in self.slots:  # restarting servers: ask again whether they are up
                if s.recheck_at is not None and time.monotonic() >= s.recheck_at:
                    s.ref, s.recheck_at = s.actor.ready.remote(), None
            for s in self.slots:  # hand work to every idle server
                if s.removed or s.ref is not None or s.recheck_at is not None:
                    continue
                item = queue.popleft() if queue else None
                if item is None and not exhausted:
                    pair = next(it, None)
                    if pair is None:
                        exhausted = True
                    else:
                        item = [pair[0], pair[1], 0, []]
                if item is None:
                    break
                s.item, s.since = item, time.monotonic()
                s.ref = s.actor.run.remote(item[0], item[1])
                self._set(s, f"running fault {item[0]}")
            busy = [s for s in self.slots if s.ref is not None]
            if not busy and any(s.recheck_at is not None for s in self.slots):
                time.sleep(0.1)
                continue
            if not busy:
                if queue or not exhausted:
                    live = [s for s in self.slots if not s.removed]
                    if not live:
                        raise SimulatorError(
                            "every CARLA server of the pool failed and was taken out "
                            f"({', '.join(s.server.address for s in self.slots)}); the faults "
                            "not run yet stay pending: fix the servers and run again to resume"
                        )
                    continue
                return
            ready, _ = ray.wait([s.ref for s in busy], num_returns=1, timeout=0.25)
            now = time.monotonic()
            for s in busy:
                if s.ref in ready:
                    try:
                        res = ray.get(s.ref)
                    except ray.exceptions.ActorUnavailableError:
                        if s.item is None and now - s.started < self.ready_timeout:
                            s.ref, s.recheck_at = None, now + 0.5  # still restarting
                            continue
                        res = {"failed": "server actor unavailable"}
                    except Exception as err:  # the actor died (killed, crashed, OOM) or raised
                        res = {"failed": _reason(err)}
                    yield from self._done(s, res, queue, ctx)
                elif now - (s.started if s.item is None else s.since) > self._timeout_of(ctx, s):
                    res = {"failed": f"no answer within {self._timeout_of(ctx, s):g} s (hung)"}
                    yield from self._done(s, res, queue, ctx)

    def _done(self, s: _Slot, res, queue: deque, ctx: BatchContext) -> Iterator[list[dict]]:
        item, s.ref, s.item = s.item, None, None
        if isinstance(res, dict) and "failed" not in res:
            frame, stack = res.pop("_frame", None), res.pop("_stack", None)
            if frame is not None and item is not None:  # only the driver writes files
                from drivefi.campaign.outcome import keep_trace

                keep_trace(ctx, frame, item[1], res["idx"], res, stack)
            res["attempts"] = (item[2] if item is not None else 0) + 1
            s.failures = 0
            s.ok += 1
            self._set(s, "idle")
            yield [res]
            return
        if isinstance(res, int) and not isinstance(res, bool):  # ready() answered: a process id
            if s.restarts and res == s.pid:  # the killed instance answered before it died
                s.recheck_at = time.monotonic() + 0.5
                return
            if not s.restarts:
                s.failures = 0
            s.pid = res
            self._set(s, "idle")
            return
        reason = res["failed"] if isinstance(res, dict) else str(res)
        if item is not None:
            item[2] += 1
            item[3].append(f"attempt {item[2]} on {s.server.address}: {reason}")
            if item[2] > ctx.retries:
                yield [error_row(item[0], item[2], item[3])]
            else:
                queue.appendleft(item)
        self._failed(s, reason)

    def _failed(self, s: _Slot, reason: str) -> None:
        ray = self.session.ray
        s.failures += 1
        if s.failures >= self.max_failures:
            s.removed = True
            ray.kill(s.actor, no_restart=True)
            s.actor = None
            self._set(s, "removed")
            log.warning(
                "CARLA server %s failed %d times in a row (last: %s); taken out of the pool",
                s.server.address, s.failures, reason,
            )  # fmt: skip
            return
        log.warning("CARLA server %s failed (%s); restarting it", s.server.address, reason)
        s.restarts += 1
        ray.kill(s.actor, no_restart=False)  # Ray restarts the actor; it runs the restart command
        self._ready(s)

    def status(self) -> list[dict]:
        """Per server: address, state, ok runs, restarts, removed."""
        return [
            {
                "server": s.server.address,
                "state": s.state,
                "ok": s.ok,
                "restarts": s.restarts,
                "removed": s.removed,
            }
            for s in self.slots
        ]


def _reason(err: BaseException) -> str:
    """A one-line reason from a Ray error (the actor's own exception when it raised one)."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}"
    return f"server actor died ({type(err).__name__})"


__all__ = ["CarlaPoolExecutor", "Server", "ServerWorker", "parse_servers"]
