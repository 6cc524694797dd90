"""`drivefi record` and `drivefi scenarios`: golden traces on disk, summaries, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from drivefi.cli import main
from drivefi.errors import InputError
from drivefi.run.trace import read_trace, write_trace
from drivefi.stacks.reference import INJECTION_POINTS
from drivefi.world.scenario import SCENARIO_DIR, bundled_names

REQUIRED_POINTS = [
    "perception.obstacle_distance",
    "perception.obstacle_speed",
    "perception.lane_offset",
    "localization.speed",
    "planning.target_speed",
    "control.throttle",
    "control.brake",
    "control.steer",
]
# DESIGN.md, Trace: time, ego state, applied actuation, every injection point, lane-frame
# offsets, d_stop / d_safe / delta (lon, lat), hazard, collision, fault_active
TRACE_COLUMNS = [
    "k", "t", "x", "y", "theta", "v", "phi", "a", "throttle", "brake", "steer",
    "lane_offset", "heading_error", "d_stop_lon", "d_stop_lat", "d_safe_lon", "d_safe_lat",
    "delta_lon", "delta_lat", "hazard", "collision", "fault_active",
]  # fmt: skip


def run_cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_record_json(tmp_path, capsys, golden_run):
    out = tmp_path / "lb.parquet"
    rc, stdout, stderr = run_cli(capsys, "record", "lead_brake", "--out", out, "--json")
    assert rc == 0, stderr
    summary = json.loads(stdout)  # one JSON object, nothing else on stdout
    ref = golden_run("lead_brake").trace
    assert summary == {**ref.summary(), "stack": "reference", "trace": str(out)}
    assert summary["steps"] == 400 and summary["duration_s"] == pytest.approx(20.0)
    assert summary["collision"] is False and summary["departure"] is False
    assert summary["min_delta_lon"] > 0 and summary["min_delta_lat"] > 0
    assert 0 <= summary["min_delta_lon_t"] < 20

    trace = read_trace(out)
    pd.testing.assert_frame_equal(trace.frame, ref.frame, check_exact=True)
    missing = [
        c for c in TRACE_COLUMNS + [p.name for p in INJECTION_POINTS] if c not in trace.frame
    ]
    assert not missing
    assert set(REQUIRED_POINTS) <= {p.name for p in INJECTION_POINTS}
    assert trace.frame["k"].tolist() == list(range(400))
    np.testing.assert_allclose(trace.frame["t"], np.arange(400) * 0.05)
    meta = trace.meta
    assert meta["scenario"] == "lead_brake" and meta["seed"] == 1 and meta["dt"] == 0.05
    assert meta["vehicle"]["wheelbase"] == 2.9 and meta["vehicle"]["a_max"] == 8.0
    assert meta["version"] and meta["fault"] is None


def test_record_text_and_default_path(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, stdout, stderr = run_cli(capsys, "record", "cut_in", "--seed", "9")
    assert rc == 0, stderr
    assert "min_delta_lon" in stdout and "collision" in stdout
    trace = read_trace(tmp_path / "out" / "cut_in.golden.parquet")
    assert trace.meta["seed"] == 9


def test_traces_are_byte_identical(tmp_path, capsys, golden_run):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for p in (a, b):
        assert run_cli(capsys, "record", "highway", "--out", p, "--json")[0] == 0
    assert a.read_bytes() == b.read_bytes()
    # the same bytes as writing the in-process golden run
    c = write_trace(golden_run("highway").trace, tmp_path / "c.parquet")
    assert c.read_bytes() == a.read_bytes()
    # another seed: another trace
    d = tmp_path / "d.parquet"
    assert run_cli(capsys, "record", "highway", "--out", d, "--seed", "7", "--json")[0] == 0
    assert d.read_bytes() != a.read_bytes()


def test_scenarios_json(capsys):
    rc, stdout, _ = run_cli(capsys, "scenarios", "--json")
    assert rc == 0
    items = json.loads(stdout)["scenarios"]
    assert [i["name"] for i in items] == bundled_names()
    assert all(i["duration"] > 0 and i["description"] for i in items)


# --- bad input: exit 2, one line naming the file and the field, no traceback ----------------------


def bad_files(tmp: Path) -> dict[str, tuple[Path, list[str]]]:
    base = yaml.safe_load((SCENARIO_DIR / "lead_brake.yaml").read_text())
    files = {}

    def write(name, text, words):
        p = tmp / f"{name}.yaml"
        p.write_text(text)
        files[name] = (p, words)

    write("malformed", "name: x\nroad: {lanes: 2\nego: [\n", ["malformed YAML", "line"])
    write("unknown", yaml.safe_dump({**base, "colour": "red"}), ["field 'colour'"])
    write("wrong_type", yaml.safe_dump({**base, "duration": "fast"}), ["field 'duration'"])
    write("negative_dt", yaml.safe_dump({**base, "dt": -0.05}), ["field 'dt'", "greater than 0"])
    write(
        "nested_type",
        yaml.safe_dump({**base, "ego": {**base["ego"], "speed": "quick"}}),
        ["field 'ego.speed'"],
    )
    files["missing"] = (tmp / "missing.yaml", ["not found"])
    return files


def check_error(rc: int, stdout: str, stderr: str, path: Path, words: list[str]) -> None:
    assert rc == 2
    assert "Traceback" not in stderr and "Traceback" not in stdout
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and str(path) in lines[0]
    for w in words:
        assert w in lines[0], lines[0]


@pytest.mark.parametrize(
    "case", ["malformed", "unknown", "wrong_type", "negative_dt", "nested_type", "missing"]
)
def test_bad_scenario_in_process(tmp_path, capsys, case):
    path, words = bad_files(tmp_path)[case]
    out = tmp_path / "never.parquet"
    rc, stdout, stderr = run_cli(capsys, "record", path, "--out", out)
    check_error(rc, stdout, stderr, path, words)
    assert not out.exists()


@pytest.mark.parametrize("case", ["negative_dt", "missing"])
def test_bad_scenario_subprocess(tmp_path, case):
    path, words = bad_files(tmp_path)[case]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "drivefi",
            "record",
            str(path),
            "--out",
            str(tmp_path / "o.parquet"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    check_error(proc.returncode, proc.stdout, proc.stderr, path, words)


def test_unknown_scenario_name(capsys):
    rc, stdout, stderr = run_cli(capsys, "record", "no_such_scenario")
    check_error(rc, stdout, stderr, Path("no_such_scenario.yaml"), ["not found", "lead_brake"])


def test_read_trace_rejects_other_files(tmp_path):
    with pytest.raises(InputError, match="trace file not found"):
        read_trace(tmp_path / "nope.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(InputError, match="not a readable Parquet trace"):
        read_trace(junk)
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), plain)
    with pytest.raises(InputError, match="no DriveFI metadata"):
        read_trace(plain)
