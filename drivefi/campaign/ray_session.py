"""The campaign's Ray session: a local Ray contained on this machine, or a cluster joined safely.

**Local** (no address): every Ray component (GCS, raylet, object manager, workers, dashboard and
runtime-env agents, metrics) binds to 127.0.0.1 only. In Ray 2.x a node's address comes from
``services.get_node_ip_address()``, which returns the loopback address only when
``ray_constants.ENABLE_RAY_CLUSTER`` is false (environment ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
before Ray is imported): ``_node_ip_address="127.0.0.1"`` alone is rewritten to the host's public
address. We set both, plus ``include_dashboard=False``. The session is shut down with the campaign
(``close``), and a reaper process (:mod:`drivefi.campaign.reaper`) kills what is left of it if the
campaign is killed.

**Cluster** (``--ray-address host:port``, ``ray://host:port`` or ``auto``): the address is checked
before anything is written, within ``timeout`` seconds: a TCP connection to it, then a probe
process that joins the cluster (Ray aborts, rather than raises, when a GCS stops answering, so the
probe runs in its own process). An unreachable address is an :class:`InputError` (exit 2).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time

from drivefi.errors import InputError

DEFAULT_TIMEOUT = 20.0  # seconds to reach a cluster's address and join it
LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
_PROBE = (
    "import sys, ray; ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR'); "
    "print(int(ray.cluster_resources().get('CPU', 0))); ray.shutdown()"
)


def import_ray(local: bool):
    """Import ray (configured for a loopback-only local node when ``local``)."""
    if local:
        os.environ.update(LOCAL_ENV)
    try:
        import ray
        from ray._private import ray_constants
    except ImportError:
        raise InputError(
            "--executor ray: the 'ray' package is not installed (pip install 'drivefi[ray]')"
        ) from None
    if local:
        ray_constants.ENABLE_RAY_CLUSTER = (
            False  # read at call time by services.get_node_ip_address
        )
    return ray


def _split(address: str) -> tuple[str, int] | None:
    a = address.strip()
    if a == "auto":
        return None
    for prefix in ("ray://", "http://", "https://"):
        if a.startswith(prefix):
            a = a[len(prefix) :]
    host, _, port = a.rstrip("/").rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(
            f"--ray-address: expected host:port (e.g. 10.0.0.5:6379), ray://host:port or auto, "
            f"got '{address}'"
        )
    return host, int(port)


def check_address(address: str, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Exit-2 error unless a Ray cluster answers at ``address`` within ``timeout`` seconds; returns
    the cluster's CPU count."""
    hp = _split(address)
    t0 = time.monotonic()
    if hp is not None:
        try:
            with socket.create_connection(hp, timeout=timeout):
                pass
        except OSError as err:
            raise InputError(
                f"--ray-address {address}: no Ray cluster answers within {timeout:g} s "
                f"({err.strerror or err}); start one with `ray start --head --port={hp[1]}` "
                "or check the address"
            ) from None
    # one deadline for both: the probe (importing ray, then joining) is killed when it is up
    left = max(1.0, timeout - (time.monotonic() - t0))
    env = {
        **os.environ,
        "RAY_gcs_rpc_server_reconnect_timeout_s": str(max(1, int(left))),
        "RAY_gcs_server_request_timeout_seconds": str(max(1, int(left))),
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, address],
            capture_output=True,
            text=True,
            timeout=left,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise InputError(
            f"--ray-address {address}: joining the Ray cluster did not finish within "
            f"{timeout:g} s; is it a Ray head node (GCS port, default 6379)?"
        ) from None
    if proc.returncode != 0 or not proc.stdout.strip().isdigit():
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:] or ["no answer"]
        raise InputError(
            f"--ray-address {address}: cannot join the Ray cluster ({tail[0].strip()[:200]})"
        )
    return int(proc.stdout.strip())


class RaySession:
    """Start (or join) Ray for a campaign; ``close`` stops what it started."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 timeout: float | None = None):  # fmt: skip
        self.address = address
        self.num_cpus = num_cpus
        self.timeout = DEFAULT_TIMEOUT if timeout is None else float(timeout)
        self.ray = None
        self.started = False
        self._reaper = None

    def start(self):
        if self.ray is not None:
            return self.ray
        if self.address:  # before importing ray here: the time-out is the probe's alone
            import importlib.util

            if importlib.util.find_spec("ray") is None:
                import_ray(local=False)  # the one "not installed" message
            check_address(self.address, self.timeout)
        ray = import_ray(local=not self.address)
        if ray.is_initialized():  # a session the caller runs (tests, notebooks): use it
            self.ray = ray
            return ray
        if self.address:
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            from drivefi.campaign.reaper import start_reaper

            self._reaper = start_reaper()
            ray.init(
                num_cpus=self.num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
                _node_ip_address="127.0.0.1",
            )
        self.started = True
        self.ray = ray
        return ray

    def close(self) -> None:
        if self.ray is not None and self.started and self.ray.is_initialized():
            self.ray.shutdown()
        self.started = False
        self.ray = None
        if self._reaper is not None:
            self._reaper.kill()
            self._reaper.wait()
            self._reaper = None
