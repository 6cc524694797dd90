"""Where the bundled data folders (``scenarios/``, ``models/``) are, in a checkout or a wheel.

In a source checkout they are the top-level folders next to ``drivefi/`` (DESIGN.md's layout);
an installed wheel carries them as the data packages ``drivefi.scenarios`` and ``drivefi.models``
(pyproject.toml maps the folders there). A checkout wins, so a working tree on ``PYTHONPATH``
always reads its own files.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

BUNDLED = ("scenarios", "models")
_SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout: drivefi/util/ -> root


def bundled_dir(kind: str) -> Path:
    """The folder of bundled ``kind`` files (``scenarios`` or ``models``); it may not exist."""
    if kind not in BUNDLED:
        raise ValueError(f"bundled folder: expected one of {', '.join(BUNDLED)}, got '{kind}'")
    checkout = _SOURCE_ROOT / kind
    if (_SOURCE_ROOT / "pyproject.toml").is_file() and checkout.is_dir():
        return checkout
    try:
        spec = importlib.util.find_spec(f"drivefi.{kind}")
    except ModuleNotFoundError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return checkout
