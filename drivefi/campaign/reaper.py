"""Reaper: ``python -m drivefi.campaign.reaper PID`` kills what PID started once PID is gone.

A local Ray started by a campaign runs as a tree of processes under it (GCS, raylet, dashboard and
runtime-env agents, workers). Ray stops most of them when the campaign exits, but after a kill -9
some agents live on. The reaper is a small process in its own session (so a kill of the campaign's
process group spares it): every ``POLL_S`` seconds it records the campaign's descendants (pid and
start time, from /proc); when the campaign is gone it SIGKILLs every recorded process still
running with the same start time, then exits. Linux only (it needs /proc).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.25


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every process below ``root``: pid -> start time."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _stat(int(name))
        if st is not None:
            children.setdefault(st[0], []).append(int(name))
            starts[int(name)] = st[1]
    out, stack = {}, list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if pid in starts and pid not in out:
            out[pid] = starts[pid]
            stack.extend(children.get(pid, []))
    return out


def watch(root: int) -> None:
    me = os.getpid()
    seen: dict[int, int] = {}
    root_start = _stat(root)
    while True:
        st = _stat(root)
        if st is None or (root_start is not None and st[1] != root_start[1]):
            break
        seen.update(descendants(root))
        seen.pop(me, None)
        time.sleep(POLL_S)
    for pid, start in seen.items():
        st = _stat(pid)
        if st is not None and st[1] == start:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def start_reaper(root: int | None = None) -> subprocess.Popen | None:
    """Start a reaper for ``root`` (default: this process); None where /proc is missing."""
    if not Path("/proc/self/stat").exists():
        return None
    return subprocess.Popen(
        [sys.executable, "-m", "drivefi.campaign.reaper", str(root or os.getpid())],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


if __name__ == "__main__":
    watch(int(sys.argv[1]))
