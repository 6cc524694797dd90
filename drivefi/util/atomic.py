"""Output files: checked before any work starts, written atomically, never left half-written.

:func:`check_output` refuses a destination that can never be written (a folder, a path below a
file, a folder that refuses writes) before a command spends time on its result.
:func:`atomic_path` writes beside the destination under a unique hidden temporary name and renames
it into place only when the write succeeded, so a reader, a killed writer or two writers at once
never see (or leave) a partial file at the destination. A failed write (a full disk, a read-only
folder) raises :class:`InputError` naming the destination, removes its temporary file and any folder
it created, and leaves an existing destination untouched. Special files (``/dev/stdout``, a pipe)
are written in place: there is nothing to rename.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from drivefi.errors import InputError


def _reason(err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return "no space left on the device"
    if err.errno == errno.EDQUOT:
        return "disk quota exceeded"
    return err.strerror or type(err).__name__


def _nearest_existing(path: Path) -> Path:
    p = path.parent
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output(path: str | Path, what: str = "output") -> Path:
    """Refuse an output path that cannot be written; raise :class:`InputError` naming it.

    ``what`` names the option or artefact (e.g. ``--out``) in the message."""
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    if str(path) in ("", "."):
        raise InputError(f"{what}: expected a file path, got '{path}'")
    if path.is_dir():
        raise InputError(f"{label}: is a folder; expected a file path")
    if path.exists() and not path.is_file():
        return path  # a device or pipe: written in place
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise InputError(f"{label}: {parent} is a file, not a folder")
        if parent.exists():
            break
    base = _nearest_existing(path)
    if not os.access(base, os.W_OK | os.X_OK):
        raise InputError(f"{label}: folder {base} is not writable")
    return path


def check_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """Refuse a folder for outputs that cannot be one (a file is there, or above it) or that
    cannot be created or written; raise :class:`InputError` naming it."""
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{label}: not a folder (a file is there)")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise InputError(f"{label}: {parent} is a file, not a folder")
        if parent.exists():
            break
    base = path if path.is_dir() else _nearest_existing(path)
    if not os.access(base, os.W_OK | os.X_OK):
        raise InputError(f"{label}: folder {base} is not writable")
    return path


def _special(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def temp_name(path: Path) -> Path:
    """A unique hidden temporary name beside ``path`` (two writers never share one)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def remove_stray_temps(folder: str | Path, older_than: float = 60.0) -> int:
    """Remove the temporary files of writers that died (``kill -9`` while writing): those whose
    process is gone and that nobody touched for ``older_than`` seconds. Returns how many."""
    import time

    gone = 0
    for tmp in Path(folder).glob(".*.tmp"):
        parts = tmp.name.rsplit(".", 3)  # .{name}.{pid}.{hex}.tmp
        if len(parts) != 4 or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
            continue  # its writer is alive
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError):
            continue
        try:
            if time.time() - tmp.stat().st_mtime > older_than:
                tmp.unlink()
                gone += 1
        except OSError:
            pass
    return gone


@contextmanager
def atomic_path(path: str | Path, what: str = "output") -> Iterator[Path]:
    """Yield a unique temporary path beside ``path``; it replaces ``path`` when the block succeeds.

    An ``OSError`` while writing or renaming becomes :class:`InputError` naming ``path``; the
    temporary file and any folders created for ``path`` are removed first."""
    path = Path(path)
    check_output(path, what)
    label = f"{what} {path}" if what else str(path)
    if _special(path):
        try:
            yield path
        except OSError as err:
            raise InputError(f"{label}: cannot write ({_reason(err)})") from None
        return
    created = []
    for parent in reversed(path.parents):
        if not parent.exists():
            created.append(parent)
    tmp = temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if not tmp.exists():
            raise InputError(f"{label}: nothing was written")
        tmp.replace(path)
    except BaseException as err:
        _discard(tmp, created)
        if isinstance(err, OSError):
            raise InputError(f"{label}: cannot write ({_reason(err)})") from None
        raise


def _discard(tmp: Path, created: list[Path]) -> None:
    with suppress(OSError):
        tmp.unlink(missing_ok=True)
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            break


def write_text(path: str | Path, text: str, what: str = "output") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path, what) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
    return Path(path)
