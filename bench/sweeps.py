"""The reference stack's exhaustive ground-truth sweeps that the search benches compare against."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TAGS = ("1-fixed", "m-fixedm5", "m-fixedm20")  # bench/bench_campaign.py's database tags


def ensure_sweeps(out: Path, scenarios: str) -> None:
    """Run bench/bench_campaign.py for ``scenarios`` (comma-separated) unless every sweep
    database out/<scenario>.<tag>.db exists."""
    names = scenarios.split(",")
    if all((out / f"{n}.{t}.db").exists() for n in names for t in TAGS):
        return
    bench = Path(__file__).resolve().parent / "bench_campaign.py"
    cmd = [sys.executable, str(bench), "--out", str(out), "--scenarios", scenarios]
    subprocess.run(cmd, check=True)
