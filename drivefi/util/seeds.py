"""Seeds: the one valid range, checked wherever a seed enters (options, scenarios, plans).

A seed is a whole number 0 <= seed < 2**63: it is stored as a signed 64-bit SQLite INTEGER, and
numpy's generators take any non-negative integer.
"""

from __future__ import annotations

from drivefi.errors import InputError

SEED_MAX = 2**63 - 1


def check_seed(value: object, where: str = "--seed") -> int:
    """``value`` as a seed; raise :class:`InputError` naming ``where`` when it is out of range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}: expected a whole number 0..{SEED_MAX}, got {value!r}")
    if not 0 <= value <= SEED_MAX:
        raise InputError(f"{where}: expected a seed 0..{SEED_MAX} (0 <= seed < 2^63), got {value}")
    return value
