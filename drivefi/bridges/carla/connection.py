"""Connections to CARLA servers: version check, reconnect and restart after a failure.

One :class:`Session` per (client factory, host, port) lives for the whole process, so a campaign
that builds a bridge per fault keeps its client, the loaded map and the lane frames. A failed run
marks its session broken; the next run on that server reconnects, first running the user's restart
command when the failure was a time-out (a hung or dead server).
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from drivefi.errors import InputError, SimulatorError

log = logging.getLogger("drivefi.carla")

START_HINT = "start one with `CarlaUE4.sh -RenderOffScreen -nosound -carla-rpc-port={port}`"


class CarlaConnectionError(SimulatorError):
    """No CARLA server answers at the address (exit 2; a campaign retries the run)."""

    exit_code = 2


class CarlaVersionError(InputError):
    """The server's CARLA version differs from the client package's (exit 2; never retried)."""


@dataclass
class Session:
    key: tuple
    client: Any
    server_version: str
    client_version: str
    map_key: Any = None  # what the server was last loaded with by us
    map: Any = None  # its carla.Map (client-side, parsed once)
    routes: dict = field(default_factory=dict)
    broken: str | None = None
    restart: bool = False


_SESSIONS: dict[tuple, Session] = {}


def forget_sessions() -> None:
    """Drop every cached connection (tests; or after changing servers)."""
    _SESSIONS.clear()


def default_client_factory():
    try:
        import carla
    except ImportError:
        raise InputError(
            "the carla client package is not installed: pip install 'drivefi[carla]' (carla==0.9.16)"
        ) from None
    return carla.Client


def _release(v: str) -> str:
    m = re.match(r"\d+\.\d+\.\d+", v.strip())
    return m.group(0) if m else v.strip()


def _connect_once(cfg, factory, timeout: float):
    """A client whose server answered a version query; raises RuntimeError/OSError if none."""
    client = factory(cfg.host, cfg.port)
    client.set_timeout(timeout)
    server = str(client.get_server_version())
    return client, server


def check_version(client_version: str, server_version: str, address: str) -> None:
    if _release(client_version) != _release(server_version):
        raise CarlaVersionError(
            f"CARLA server at {address} runs {server_version} but the carla client package is "
            f"{client_version}; install the matching client (pip install carla=={_release(server_version)}) "
            f"or start a {_release(client_version)} server"
        )
    if client_version.strip() != server_version.strip():
        log.warning("CARLA client %s and server %s differ in build", client_version, server_version)


def unreachable(cfg, err: BaseException) -> CarlaConnectionError:
    return CarlaConnectionError(
        f"cannot reach a CARLA server at {cfg.address} within {cfg.timeout:g} s ({err}); "
        + START_HINT.format(port=cfg.port)
        + ", or point --carla-host/--carla-port at a running one"
    )


def check_server(cfg=None, client_factory=None, **options) -> str:
    """Connect once and compare versions; returns the server version.

    ``cfg`` is a :class:`CarlaConfig`, or give its fields (``host=``, ``port=``, ``timeout=``,
    ``restart_cmd=`` ...; the campaign's ``bridge_options`` fit). Raises
    :class:`CarlaConnectionError` (unreachable) or :class:`CarlaVersionError` (mismatch), both exit
    code 2. Call it before a golden run or campaign to fail fast on a bad setup.
    """
    if cfg is None:
        from drivefi.bridges.carla.settings import carla_config

        cfg = carla_config(**options)
    return connect(cfg, client_factory).server_version


def restart_server(cfg, client_factory) -> None:
    """Run the user's restart command and wait until a server answers (or ``restart_wait``)."""
    cmd = cfg.restart_cmd
    log.warning("restarting the CARLA server at %s: %s", cfg.address, cmd)
    proc = subprocess.Popen(
        cmd, shell=True, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        rc = proc.wait(timeout=min(5.0, cfg.restart_wait))
    except subprocess.TimeoutExpired:
        rc = None  # still running: a command that starts the server in the foreground
        if proc.stderr is not None:
            proc.stderr.close()
    if rc not in (None, 0):
        tail = (proc.stderr.read() or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise CarlaConnectionError(
            f"restart command {cmd!r} failed with exit code {rc}"
            + (f": {' / '.join(tail)}" if tail else "")
        )
    deadline = time.monotonic() + cfg.restart_wait
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            _connect_once(cfg, client_factory, min(cfg.timeout, 5.0))
            return
        except (RuntimeError, OSError) as err:
            last = err
            time.sleep(min(1.0, cfg.restart_wait / 20))
    raise CarlaConnectionError(
        f"the CARLA server at {cfg.address} did not come back within {cfg.restart_wait:g} s after "
        f"{cmd!r} ({last})"
    )


def connect(cfg, client_factory=None) -> Session:
    """The session for ``cfg``'s server: cached, or (re)connected and version-checked."""
    factory = client_factory or default_client_factory()
    key = (factory, cfg.host, cfg.port)
    sess = _SESSIONS.get(key)
    if sess is not None and sess.broken is None:
        return sess
    restarted = False
    if sess is not None and sess.restart and cfg.restart_cmd:
        restart_server(cfg, factory)
        restarted = True
    _SESSIONS.pop(key, None)
    try:
        client, server = _connect_once(cfg, factory, cfg.timeout)
    except (RuntimeError, OSError) as err:
        if not cfg.restart_cmd or restarted:
            raise unreachable(cfg, err) from None
        restart_server(cfg, factory)  # a dead server found on connect: restart it once
        try:
            client, server = _connect_once(cfg, factory, cfg.timeout)
        except (RuntimeError, OSError) as err2:
            raise unreachable(cfg, err2) from None
    client_version = str(client.get_client_version())
    check_version(client_version, server, cfg.address)
    sess = Session(key, client, server, client_version)
    _SESSIONS[key] = sess
    return sess


def mark_broken(sess: Session | None, reason: str, restart: bool) -> None:
    """Remember that a run on this server failed: the next run reconnects (and restarts)."""
    if sess is None:
        return
    sess.broken = reason
    sess.restart = sess.restart or restart
