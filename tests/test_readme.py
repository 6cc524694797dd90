"""The README's command examples run as written (in a scratch folder)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def command_block() -> list[str]:
    text = README.read_text()
    block = text.split("## Commands", 1)[1].split("```", 2)[1]
    return [
        re.sub(r"\s+#.*$", "", line).strip()
        for line in block.splitlines()
        if line.startswith("drivefi ")
    ]


@pytest.mark.slow
def test_readme_commands_run(tmp_path):
    cmds = command_block()
    assert len(cmds) >= 10 and any(c.startswith("drivefi pipeline") for c in cmds)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    bindir = Path(sys.executable).parent
    for cmd in cmds:
        # --json keeps the output short; the shell expands the trace glob of `drivefi fit`
        line = f"{bindir}/{cmd} --json" if " --json" not in cmd else f"{bindir}/{cmd}"
        if cmd.startswith("drivefi pipeline"):
            line += " --budget 30 --training-runs 40 --rounds 0"
        r = subprocess.run(
            line, shell=True, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300
        )
        assert r.returncode == 0, f"{cmd}\n{r.stderr[-2000:]}"
    assert (tmp_path / "out" / "report.html").is_file()
    assert (tmp_path / "out" / "lead_brake" / "report.html").is_file()
