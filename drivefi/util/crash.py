"""Where this process is, kept where a supervising parent can read it after the process dies.

A command that runs a user's agent in its own process (the golden run of ``record`` and
``pipeline``) runs under a parent that waits for it (:mod:`drivefi.cli.guard`): if the agent
crashes the process in native code, no Python code of the process runs again, so the process
writes what it is doing (``golden run of lead_brake, step 50``) into a page of memory shared with
that parent as it goes, and the parent names it. Without a parent every call here does nothing.
"""

from __future__ import annotations

import mmap

SIZE = 512
_PAGE: list[mmap.mmap | None] = [None]


def share() -> mmap.mmap:
    """Start keeping marks in a page of anonymous memory that a child forked next shares."""
    _PAGE[0] = mmap.mmap(-1, SIZE)
    return _PAGE[0]


def active() -> bool:
    """Whether marks are kept (a parent reads them)."""
    return _PAGE[0] is not None


def mark(text: str) -> None:
    """What this process does now (the empty string: nothing to name)."""
    page = _PAGE[0]
    if page is not None:
        data = text.encode("utf-8", "replace")[: SIZE - 1] + b"\0"
        page[: len(data)] = data


def read(page: mmap.mmap) -> str:
    """The last mark written to ``page``."""
    raw = page[:SIZE]
    return raw[: raw.find(b"\0") if b"\0" in raw else SIZE].decode("utf-8", "replace")
