"""Worker processes die with their campaign, however the campaign ends (kill -9 included).

:func:`die_with` runs in each worker as it starts: on Linux it asks the kernel for SIGKILL when the
process that started the worker dies (``prctl(PR_SET_PDEATHSIG)``), and on every platform a daemon
thread polls the campaign's process id twice a second and ends the worker when it is gone.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
POLL_S = 0.5


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Linux: deliver ``sig`` to this process when its parent dies. False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs: a zombie (dead, not yet reaped by its parent) does not."""
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate it on Windows; the parent check suffices
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Linux: the process's state in /proc is Z (elsewhere: unknown, taken as alive)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].startswith("Z")


def _watch(campaign_pid: int, parent_pid: int) -> None:
    while True:
        time.sleep(POLL_S)
        if os.getppid() != parent_pid or not pid_alive(campaign_pid):
            os._exit(1)


def die_with(campaign_pid: int) -> None:
    """Make this worker process end when the campaign process ``campaign_pid`` ends."""
    parent = os.getppid()
    set_parent_death_signal()
    if not pid_alive(campaign_pid) or os.getppid() != parent:
        os._exit(1)  # it died before we asked
    threading.Thread(
        target=_watch, args=(campaign_pid, parent), name="drivefi-watchdog", daemon=True
    ).start()
