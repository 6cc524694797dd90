"""Reading a user's text input file (scenario YAML, plan CSV) with one clear message per failure."""

from __future__ import annotations

from pathlib import Path

from drivefi.errors import InputError


def read_text(path: Path, noun: str, expected: str, max_bytes: int | None = None) -> str:
    """The file's text (UTF-8, a byte-order mark dropped). ``noun`` names the file's kind in
    messages ("scenario"), ``expected`` what it should be ("a YAML scenario"); a file larger than
    ``max_bytes``, unreadable, binary (NUL bytes) or not UTF-8 is an :class:`InputError`."""
    try:
        if max_bytes is not None:
            size = path.stat().st_size
            if size > max_bytes:
                raise InputError(
                    f"{path}: {noun} file is {size:,} bytes; expected at most {max_bytes:,}"
                )
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(f"{path}: cannot read {noun} ({err.strerror or err})") from None
    if b"\0" in raw:
        raise InputError(f"{path}: binary file (NUL bytes); expected {expected}")
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark (as some editors write) is dropped
    except UnicodeDecodeError as err:
        raise InputError(
            f"{path}: not UTF-8 text (byte {err.start}); expected {expected}"
        ) from None
