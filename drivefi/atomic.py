"""Atomic file writes: readers (and a killed writer) never see a half-written artefact.

The data goes to a temporary file with a unique name beside the destination (so concurrent writers
never share one), which then replaces the destination in one ``os.replace``. A writer killed before
that leaves at most a hidden ``.NAME.*.tmp`` file, never a truncated ``NAME``. Destinations that
are not regular files (``/dev/null``, ``/dev/full``, a FIFO) cannot be replaced and are written
directly. Every OS error becomes an :class:`InputError` naming the path.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from drivefi.errors import InputError


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


_MODE = 0o666 & ~_umask()  # what open() would give a new file


def _why(err: OSError) -> str:
    return err.strerror or str(err)


def prepare_output(path: str | Path) -> Path:
    """Check that ``path`` can be an output file (not a folder, its parent a folder); make the parent."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a file path to write")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"{path}: cannot write below {parent}, which is a file") from None
    except NotADirectoryError:
        raise InputError(f"{path}: cannot write there, a part of {parent} is a file") from None
    except OSError as err:
        raise InputError(f"{path}: cannot create the folder {parent} ({_why(err)})") from None
    return path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a unique temporary path beside ``path``; it replaces ``path`` when the block succeeds."""
    path = prepare_output(path)
    try:
        special = path.exists() and not stat.S_ISREG(path.stat().st_mode)
    except OSError:
        special = False
    if special:  # a device or FIFO: write straight to it
        try:
            yield path
        except OSError as err:
            raise InputError(f"{path}: cannot write ({_why(err)})") from None
        return
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise InputError(f"{path}: cannot write in {path.parent} ({_why(err)})") from None
    os.close(fd)
    os.chmod(name, _MODE)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write ({_why(err)})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
