"""Campaigns on Ray: same outcomes as local, a local Ray on loopback only and gone with its
campaign (kill -9 included), an unreachable cluster refused within its time-out."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from procs import alive, descendants, rows

from drivefi.campaign.executor import LocalExecutor
from drivefi.campaign.runner import run_campaign
from drivefi.errors import InputError
from drivefi.faults.plan import exhaustive, write_plan
from drivefi.world.scenario import load_scenario

pytest.importorskip("ray")
if not Path("/proc/net/tcp").exists():
    pytest.skip("the socket table check needs Linux /proc", allow_module_level=True)

SC = load_scenario("lead_brake")
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def small_plan(stride=100):
    return exhaustive(
        SC, ["control.steer", "planning.target_speed"], durations=[1, 5], stride=stride
    )


def listening(pids) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every listening TCP socket the processes hold (/proc socket table)."""
    inodes = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    inodes[link[8:-1]] = pid
        except OSError:
            continue
    out = []
    for fam, table in ((socket.AF_INET, "/proc/net/tcp"), (socket.AF_INET6, "/proc/net/tcp6")):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:  # 0A: LISTEN
                continue
            hexip, hexport = f[1].split(":")
            raw = bytes.fromhex(hexip)
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            out.append((inodes[f[9]], socket.inet_ntop(fam, raw), int(hexport, 16)))
    return out


def loopback(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


@pytest.mark.slow
def test_local_ray_matches_local_and_listens_on_loopback_only(tmp_path):
    from drivefi.campaign.ray_executor import RayExecutor
    from drivefi.run.golden import record_golden
    from drivefi.search.training import simulate_training

    plan = small_plan()
    golden = record_golden(SC)
    before = descendants(os.getpid())  # e.g. a process pool's forkserver from earlier tests
    ex = RayExecutor(2)
    ex.start()
    try:
        run_campaign(SC, plan, tmp_path / "ray.db", ex, progress=False, batch_size=9)
        spread = simulate_training(SC, 12, seed=1, golden=golden, map_chunks=ex.map_chunks)
        procs = descendants(os.getpid()) - before
        socks = listening(procs | {os.getpid()})
    finally:
        ex.close()
    # the pipeline's training runs spread over Ray: the same traces as in one local batch
    here = simulate_training(SC, 12, seed=1, golden=golden)
    assert len(spread) == len(here) == 13
    for a, b in zip(spread, here, strict=True):
        assert a.frame.equals(b.frame) and a.meta == b.meta
    assert len(procs) >= 4  # GCS, raylet, agents, workers
    assert socks, "Ray opened no listening socket?"
    outside = [s for s in socks if not loopback(s[1])]
    assert not outside, f"listening outside 127.0.0.0/8: {outside}"
    run_campaign(SC, plan, tmp_path / "local.db", LocalExecutor(1), progress=False)
    assert rows(tmp_path / "ray.db").equals(rows(tmp_path / "local.db"))
    t0 = time.time()
    while alive(procs) and time.time() - t0 < 5:
        time.sleep(0.1)
    assert not alive(procs), "Ray processes outlived the campaign's close()"


def test_unreachable_ray_address_exit_2_fast_and_no_db(tmp_path):
    from drivefi.campaign.ray_executor import RayExecutor

    db = tmp_path / "r.db"
    t0 = time.time()
    with pytest.raises(InputError, match=r"--ray-address 127.0.0.1:1: no Ray cluster answers"):
        run_campaign(SC, small_plan(), db, RayExecutor(1, "127.0.0.1:1", timeout=5), progress=False)
    assert time.time() - t0 < 6 and not db.exists()
    with pytest.raises(InputError, match="expected host:port"):
        run_campaign(SC, small_plan(), db, RayExecutor(1, "nohost", timeout=5), progress=False)


@pytest.mark.slow
def test_a_port_that_is_not_ray_exit_2_within_the_time_out(tmp_path):
    from drivefi.campaign.ray_executor import RayExecutor

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    stop = threading.Event()

    def accept():  # accepts and says nothing, like a wrong service
        srv.settimeout(0.2)
        conns = []
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conns.append(srv.accept()[0])
        for c in conns:
            c.close()

    t = threading.Thread(target=accept)
    t.start()
    db = tmp_path / "r.db"
    t0 = time.time()
    try:
        with pytest.raises(InputError, match=f"--ray-address 127.0.0.1:{port}"):
            run_campaign(SC, small_plan(), db, RayExecutor(1, f"127.0.0.1:{port}", timeout=5),
                         progress=False)  # fmt: skip
    finally:
        stop.set()
        t.join()
        srv.close()
    assert time.time() - t0 < 5 + 3 and not db.exists()  # the time-out, plus tearing down


KILL_SCRIPT = """
import sys
from drivefi.campaign.ray_executor import RayExecutor
from drivefi.campaign.runner import run_campaign
from drivefi.faults.plan import read_plan
from drivefi.world.scenario import load_scenario
run_campaign(load_scenario("lead_brake"), read_plan(sys.argv[1]), sys.argv[2], RayExecutor(1),
             progress=False, batch_size=5)
"""


@pytest.mark.slow
def test_kill_9_of_a_ray_campaign_leaves_no_process_behind(tmp_path):
    plan_path = write_plan(small_plan(stride=4), tmp_path / "p.csv")
    db = tmp_path / "k.db"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(plan_path), str(db)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    seen: set[int] = set()
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        seen |= descendants(proc.pid)
        if db.exists() and len(seen) >= 5:
            import sqlite3

            try:
                if sqlite3.connect(db).execute("SELECT COUNT(*) FROM outcomes").fetchone()[0]:
                    break
            except sqlite3.DatabaseError:
                pass
        time.sleep(0.2)
    seen |= descendants(proc.pid)
    assert proc.poll() is None, "the campaign ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.time()
    while alive(seen) and time.time() - t0 < 5:
        time.sleep(0.1)
    left = alive(seen)
    names = {
        p: Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in left if Path(f"/proc/{p}").exists()
    }
    assert not left, f"left behind after 5 s: {names}"
