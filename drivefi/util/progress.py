"""Progress of long work (fitting, scoring, the pipeline's stages), reported as
``progress(what, done, total)`` to whoever shows it: the CLI draws a bar, library callers pass
nothing. The work never imports the display. ``what == ""`` (:func:`finished`) says the work is
over, so a display can close before another one (a campaign's own bar) opens."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]


def silent(what: str, done: int, total: int) -> None:
    """The default: report nothing."""


def prefixed(progress: Progress, prefix: str) -> Progress:
    """``progress`` with ``prefix`` before every ``what`` (e.g. the active-refit round)."""
    return lambda what, done, total: progress(f"{prefix}{what}", done, total)


def finished(progress: Progress) -> None:
    """Tell ``progress`` that the work it showed is over."""
    progress("", 0, 0)
