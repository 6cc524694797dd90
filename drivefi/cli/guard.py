"""A parent that outlives a user's agent crashing the command's process in native code.

``record`` and ``pipeline`` run an agent's golden run in their own process (its snapshots are what
every faulty run starts from). An agent that crashes there in native code (a segmentation fault,
``os.kill(os.getpid(), SIGKILL)``) leaves no Python code to report it: the process just dies. So,
for a user's agent only, :func:`supervise` forks the command's process first: the child runs the
command; the parent only waits. If the child dies of a signal, the parent prints one line naming
the signal, the step the child had marked (:mod:`drivefi.util.crash`: the golden run marks each
step) and, from Python's fault handler report, the agent's line, and exits 2. Stored results stay
as the child left them (SQLite stores are crash-safe; artefacts are written atomically).

Forking costs a millisecond and copies nothing (copy-on-write); the fault handler costs nothing
until a crash. The command is not supervised where ``fork`` is missing, when other threads already
run (a fork would copy their locks), inside an already supervised command, or when its standard
streams are not the process's own files (an in-process caller capturing them, e.g. a test: what
a child wrote there would stay in the child).
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import re
import signal
import sys
import tempfile
import threading

from drivefi.util import crash

_CHILD = [False]  # this process is a supervised command's child: it ends with os._exit
FORWARDED = ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


class Supervised(Exception):
    """Raised in the parent when its child has ended: ``code`` is the command's exit code."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def is_child() -> bool:
    return _CHILD[0]


def supervise(stack, command: str) -> None:
    """Run the rest of ``command`` in a child process when ``stack`` (a
    :class:`drivefi.stacks.StackSpec`) is a user's agent; in the parent, wait for it and raise
    :class:`Supervised` with its exit code (after one line on stderr if a signal killed it)."""
    if stack.agent is None or not hasattr(os, "fork") or _CHILD[0] or crash.active():
        return
    if threading.active_count() > 1 or not _own_stdio():
        return
    page = crash.share()
    report = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (lives as long as the child)
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _CHILD[0] = True
        from drivefi.campaign.containment import set_parent_death_signal

        set_parent_death_signal(signal.SIGTERM)  # the parent killed: the command ends like Ctrl-C
        if os.getppid() != parent:
            os._exit(1)
        faulthandler.enable(report, all_threads=False)
        return
    raise Supervised(_wait(pid, page, report, stack, command))


def _own_stdio() -> bool:
    """sys.stdout and sys.stderr write to file descriptors 1 and 2 (not to a caller's buffers)."""
    try:
        return sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def _wait(pid: int, page, report, stack, command: str) -> int:
    """Wait for the child (Ctrl-C reaches it from the terminal; other signals are passed on),
    and turn its death by a signal into one line on stderr and exit code 2."""
    old = {}
    with contextlib.suppress(ValueError):  # not the main thread: nothing to install
        old[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
        for name in FORWARDED:
            sig = getattr(signal, name, None)
            if sig is not None:
                old[sig] = signal.signal(sig, lambda s, _f: _pass_on(pid, s))
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except ChildProcessError:
                return 1
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    sig = os.WTERMSIG(status)
    if sig in _PASSED_ON or sig == signal.SIGINT:  # ended as asked (Ctrl-C, kill): not a crash
        return 128 + sig
    report.seek(0)
    sys.stderr.write(crash_line(command, sig, crash.read(page), report.read(), stack) + "\n")
    sys.stderr.flush()
    return 2


_PASSED_ON: set[int] = set()  # signals this parent passed on to its child


def _pass_on(pid: int, sig: int) -> None:
    _PASSED_ON.add(sig)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def crash_line(command: str, sig: int, where: str, report: str, stack) -> str:
    """One line: the command, the signal, the step marked and the agent's line (if known)."""
    try:
        name = signal.Signals(sig).name
        about = (signal.strsignal(sig) or "").lower()
    except ValueError:
        name, about = f"signal {sig}", ""
    what = f"{name}, {about}" if about else name
    frames = re.findall(r'File "(.*)", line (\d+) in (\S+)', report)  # most recent call first
    agent_file = _agent_file(stack)
    line = next((f"{f}:{n} in {fn}" for f, n, fn in frames if f == agent_file), None)
    at = f" during {where}" if where else ""
    if line is not None:
        return (f"error: drivefi {command}: {stack.label} crashed the process ({what}){at} "
                f"({line}); stored results are kept")  # fmt: skip
    if where:
        return (f"error: drivefi {command}: the process died ({what}){at} while {stack.label} "
                "ran: the agent crashed it (or the system killed it, e.g. the OOM killer); "
                "stored results are kept")  # fmt: skip
    return (f"error: drivefi {command}: the process died ({what}) running {stack.label}; "
            "stored results are kept")  # fmt: skip


def _agent_file(stack) -> str | None:
    from drivefi.stacks.agent.loader import parse_agent_spec

    with contextlib.suppress(Exception):
        return str(parse_agent_spec(stack.absolute)[0])
    return None


def end_child(code: int) -> None:
    """In a supervised command's child: end the process with ``code`` (after flushing), never
    returning to a caller that the parent still serves."""
    if _CHILD[0]:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
