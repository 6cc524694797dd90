"""Bad input, as a hostile user gives it: one table of cases against the command line.

Every case: exit code 2, no traceback, one error line naming the culprit (file, row, field or
option) and what was expected, and no file created, changed or removed. Most cases run in-process
through ``drivefi.cli.main``; a few run ``python -m drivefi`` to show the entry point agrees.
"""

from __future__ import annotations

import copy
import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from drivefi.cli import main
from drivefi.world.scenario import SCENARIO_DIR

SEED_LIMIT = 2**63
BASE = yaml.safe_load((SCENARIO_DIR / "lead_brake.yaml").read_text())
DIR = object()  # a file entry that is a folder
RECORD = ["record", "{d}/s.yaml", "--out", "{d}/o.parquet"]
CAMPAIGN = ["campaign", "run", "lead_brake", "{d}/p.csv", "--db", "{d}/r.db"]
FIT = ["fit", "{d}/t.parquet", "--out", "{d}/m.json"]
SEARCH = ["search", "lead_brake", "--golden", "{d}/t.parquet", "--model", "{d}/m.json"]
SEARCH += ["--out", "{d}/p.csv"]


@dataclass
class Case:
    id: str
    argv: list[str]  # "{d}" is the case's folder
    culprit: list[str]  # texts the error line must contain ("{d}" is the folder)
    files: dict[str, object] = field(default_factory=dict)  # name -> text, bytes, DIR or f(golden)
    subprocess: bool = False
    unless_root: bool = False  # permissions do not bind root
    full_disk: bool = False  # writes to /dev/full (skipped unless it is the character device)


# --- file makers ------------------------------------------------------------------------------


def scenario(path: str | None = None, value=..., data: dict | None = None) -> str:
    """lead_brake's YAML with the dotted ``path`` set to ``value`` (``...``: deleted)."""
    d = copy.deepcopy(data if data is not None else BASE)
    if path is not None:
        *head, last = path.split(".")
        node = d
        for key in head:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if value is ...:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return yaml.safe_dump(d, sort_keys=False)


PLAN_HEAD = (
    "# drivefi plan scenario=lead_brake steps=400\npoint,model,value,bit,start,duration,seed\n"
)
GOOD_ROW = "control.throttle,1-fixed,1.0,,10,1,0\n"


def plan(*rows: str, head: str = PLAN_HEAD) -> str:
    return head + "".join(r if r.endswith("\n") else r + "\n" for r in rows)


def trace(edit_frame=None, edit_meta=None, raw_meta: bytes | None = None, drop_meta=False):
    """A maker of lead_brake's golden trace, with its frame and/or metadata edited."""

    def make(golden) -> bytes:
        frame = golden.trace.frame.copy()
        meta = copy.deepcopy(golden.trace.meta)
        if edit_frame is not None:
            frame = edit_frame(frame)
        if edit_meta is not None:
            edit_meta(meta)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        md = dict(table.schema.metadata or {})
        if not drop_meta:
            md[b"drivefi"] = raw_meta if raw_meta is not None else json.dumps(meta).encode()
        buf = io.BytesIO()
        pq.write_table(table.replace_schema_metadata(md), buf)
        return buf.getvalue()

    return make


def setitem(key, value):
    def edit(meta):
        if value is ...:
            del meta[key]
        else:
            meta[key] = value

    return edit


def cell(col, row, value):
    def edit(frame):
        frame = frame.copy()
        frame[col] = frame[col].astype(float) if isinstance(value, float) else frame[col]
        frame.loc[row, col] = value
        return frame

    return edit


# --- the table ----------------------------------------------------------------------------------

CASES: list[Case] = []


def add(id, argv, culprit, files=None, **kw):
    CASES.append(Case(id, list(argv), list(culprit), dict(files or {}), **kw))


# Scenarios: every float field refuses .nan and .inf (pydantic models refuse non-finite numbers)
FLOATS = [
    "duration", "dt", "road.lane_width", "road.segments.0.length", "road.segments.0.curvature",
    "ego.s", "ego.speed", "ego.cruise_speed", "actors.0.s", "actors.0.speed", "actors.0.a_max",
    "actors.0.behaviour.t", "actors.0.behaviour.decel",
    *(f"ego.vehicle.{f}" for f in (
        "wheelbase", "length", "width", "a_max", "brake_max", "accel_max", "v_max", "phi_max",
        "steer_rate", "response_time", "a_lat_max", "actuator_tau", "drag", "rolling")),
    *(f"sensor_noise.{f}" for f in ("distance", "speed", "lane_offset", "heading")),
]  # fmt: skip
for f in FLOATS:
    for v in (float("nan"), float("inf")):
        if f == "ego.vehicle.response_time" and v > 0:
            continue  # .inf is rho = infinity: steering held for the whole stop (DESIGN.md)
        add(f"scenario-{f}={v}", RECORD, ["s.yaml", f"field '{f}'", "finite"], {"s.yaml": scenario(f, v)})  # fmt: skip
add("scenario-ego.s=-inf", RECORD, ["s.yaml", "field 'ego.s'", "finite"], {"s.yaml": scenario("ego.s", float("-inf"))})  # fmt: skip
add("scenario-actor-d-nan", RECORD, ["s.yaml", "field 'actors.0.d'", "finite"],
    {"s.yaml": scenario("actors.0", {"kind": "pedestrian", "d": float("nan"), "s": 50})})  # fmt: skip

# Scenarios: the file itself
big = "# padding\n" * 300_000 + scenario()
add("scenario-missing", RECORD, ["s.yaml", "not found"])
add("scenario-folder", RECORD, ["s.yaml", "folder"], {"s.yaml": DIR})
add("scenario-unknown-name", ["record", "no_such_scenario", "--out", "{d}/o.parquet"], ["no_such_scenario.yaml", "not found", "lead_brake"])  # fmt: skip
add("scenario-binary", RECORD, ["s.yaml", "binary"], {"s.yaml": bytes(range(256)) * 4})
add("scenario-latin1", RECORD, ["s.yaml", "not UTF-8"], {"s.yaml": scenario().replace("Following", "F\u00f6llowing").encode("latin-1")})  # fmt: skip
add("scenario-50MB", RECORD, ["s.yaml", "bytes", "at most"], {"s.yaml": "#" * 50_000_000})
add("scenario-2MB-comments", RECORD, ["s.yaml", "at most"], {"s.yaml": big})
add("scenario-empty", RECORD, ["s.yaml", "expected a YAML mapping"], {"s.yaml": ""})
add(
    "scenario-list", RECORD, ["s.yaml", "expected a YAML mapping", "list"], {"s.yaml": "- 1\n- 2\n"}
)
add("scenario-scalar", RECORD, ["s.yaml", "expected a YAML mapping"], {"s.yaml": "just text\n"})
add("scenario-malformed", RECORD, ["s.yaml", "malformed YAML", "line"], {"s.yaml": "name: x\nroad: {lanes: 2\n"})  # fmt: skip
add("scenario-tab-indent", RECORD, ["s.yaml", "malformed YAML"], {"s.yaml": "name: x\nroad:\n\tlanes: 2\n"})  # fmt: skip
bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)
add("scenario-alias-bomb", RECORD, ["s.yaml", "alias", "not supported"], {"s.yaml": bomb})
add("scenario-merge-key", RECORD, ["s.yaml", "alias"], {"s.yaml": "v: &v {wheelbase: 2.9}\n" + scenario().replace("ego:\n", "ego:\n  vehicle: {<<: *v}\n")})  # fmt: skip
add("scenario-duplicate-key", RECORD, ["s.yaml", "duplicate key 'seed'"], {"s.yaml": scenario() + "seed: 3\n"})  # fmt: skip
add("scenario-deep-nesting", RECORD, ["s.yaml", "nested"], {"s.yaml": "a: " + "[" * 5000 + "]" * 5000 + "\n"})  # fmt: skip
add("scenario-python-tag", RECORD, ["s.yaml", "malformed YAML"], {"s.yaml": "name: !!python/object/apply:os.system ['true']\n"})  # fmt: skip
add("scenario-dt-1e-7", RECORD, ["s.yaml", "steps", "at most 100000"], {"s.yaml": scenario("dt", 1e-7)})  # fmt: skip
add("scenario-dt-denormal", RECORD, ["s.yaml", "steps", "at most"], {"s.yaml": scenario("dt", 5e-324)})  # fmt: skip
add("scenario-one-step", RECORD, ["s.yaml", "steps", "at least 2"], {"s.yaml": scenario("duration", 0.05)})  # fmt: skip
add("scenario-duration-huge", RECORD, ["s.yaml", "field 'duration'", "600"], {"s.yaml": scenario("duration", 1e9)})  # fmt: skip
add("scenario-dt-big", RECORD, ["s.yaml", "field 'dt'", "0.1"], {"s.yaml": scenario("dt", 2.0)})
add("scenario-dt-zero", RECORD, ["s.yaml", "field 'dt'", "greater than 0"], {"s.yaml": scenario("dt", 0)})  # fmt: skip
add("scenario-seed-negative", RECORD, ["s.yaml", "field 'seed'", "greater than or equal to 0"], {"s.yaml": scenario("seed", -1)})  # fmt: skip
add("scenario-seed-2^63", RECORD, ["s.yaml", "field 'seed'", "9223372036854775807"], {"s.yaml": scenario("seed", SEED_LIMIT)})  # fmt: skip
add("scenario-seed-10^30", RECORD, ["s.yaml", "field 'seed'"], {"s.yaml": scenario("seed", 10**30)})  # fmt: skip
add("scenario-seed-float", RECORD, ["s.yaml", "field 'seed'", "integer"], {"s.yaml": scenario("seed", 1.5)})  # fmt: skip
add("scenario-seed-text", RECORD, ["s.yaml", "field 'seed'"], {"s.yaml": scenario("seed", "one")})
add("scenario-duration-text", RECORD, ["s.yaml", "field 'duration'", "number"], {"s.yaml": scenario("duration", "fast")})  # fmt: skip
add("scenario-duration-quoted", RECORD, ["s.yaml", "field 'duration'", "'20'"], {"s.yaml": scenario("duration", "20")})  # fmt: skip
add("scenario-duration-bool", RECORD, ["s.yaml", "field 'duration'", "True"], {"s.yaml": scenario("duration", True)})  # fmt: skip
add("scenario-duration-list", RECORD, ["s.yaml", "field 'duration'"], {"s.yaml": scenario("duration", [20])})  # fmt: skip
add("scenario-lanes-float", RECORD, ["s.yaml", "field 'road.lanes'", "integer"], {"s.yaml": scenario("road.lanes", 2.0)})  # fmt: skip
add("scenario-road-scalar", RECORD, ["s.yaml", "field 'road'"], {"s.yaml": scenario("road", 5)})
add("scenario-name-number", RECORD, ["s.yaml", "field 'name'"], {"s.yaml": scenario("name", 5)})
add("scenario-name-spaces", RECORD, ["s.yaml", "field 'name'"], {"s.yaml": scenario("name", "a b")})
add("scenario-name-long", RECORD, ["s.yaml", "field 'name'", "100"], {"s.yaml": scenario("name", "x" * 200)})  # fmt: skip
add("scenario-description-number", RECORD, ["s.yaml", "field 'description'"], {"s.yaml": scenario("description", 3)})  # fmt: skip
add("scenario-unknown-field", RECORD, ["s.yaml", "field 'colour'", "not permitted"], {"s.yaml": scenario("colour", "red")})  # fmt: skip
add("scenario-unknown-nested", RECORD, ["s.yaml", "field 'ego.vehicle.colour'"], {"s.yaml": scenario("ego.vehicle.colour", 1)})  # fmt: skip
add("scenario-typo-field", RECORD, ["s.yaml", "field 'ego.sped'"], {"s.yaml": scenario("ego.sped", 20)})  # fmt: skip
add("scenario-missing-field", RECORD, ["s.yaml", "field 'ego.speed'", "required"], {"s.yaml": scenario("ego.speed")})  # fmt: skip
add("scenario-missing-road", RECORD, ["s.yaml", "field 'road'", "required"], {"s.yaml": scenario("road")})  # fmt: skip
add("scenario-lanes-0", RECORD, ["s.yaml", "field 'road.lanes'"], {"s.yaml": scenario("road.lanes", 0)})  # fmt: skip
add("scenario-lanes-9", RECORD, ["s.yaml", "field 'road.lanes'", "8"], {"s.yaml": scenario("road.lanes", 9)})  # fmt: skip
add("scenario-no-segments", RECORD, ["s.yaml", "field 'road.segments'"], {"s.yaml": scenario("road.segments", [])})  # fmt: skip
add("scenario-curvature", RECORD, ["s.yaml", "field 'road.segments.0.curvature'", "0.2"], {"s.yaml": scenario("road.segments.0.curvature", 1.0)})  # fmt: skip
add("scenario-segment-negative", RECORD, ["s.yaml", "field 'road.segments.0.length'"], {"s.yaml": scenario("road.segments.0.length", -5)})  # fmt: skip
add("scenario-ego-lane", RECORD, ["s.yaml", "ego.lane 2", "2 lanes"], {"s.yaml": scenario("ego.lane", 2)})  # fmt: skip
add("scenario-actor-lane", RECORD, ["s.yaml", "actors.0.lane 5", "2 lanes"], {"s.yaml": scenario("actors.0.lane", 5)})  # fmt: skip
add("scenario-ego-past-end", RECORD, ["s.yaml", "ego.s", "past the end of the road"], {"s.yaml": scenario("ego.s", 700)})  # fmt: skip
add("scenario-actor-past-end", RECORD, ["s.yaml", "actors.0.s", "past the end of the road"], {"s.yaml": scenario("actors.0.s", 5000)})  # fmt: skip
add("scenario-actor-behind-start", RECORD, ["s.yaml", "field 'actors.0.s'"], {"s.yaml": scenario("actors.0.s", -20)})  # fmt: skip
add("scenario-speed-negative", RECORD, ["s.yaml", "field 'ego.speed'"], {"s.yaml": scenario("ego.speed", -1)})  # fmt: skip
add("scenario-speed-huge", RECORD, ["s.yaml", "field 'ego.speed'", "60"], {"s.yaml": scenario("ego.speed", 1e6)})  # fmt: skip
add("scenario-wheelbase-1e300", RECORD, ["s.yaml", "field 'ego.vehicle.wheelbase'"], {"s.yaml": scenario("ego.vehicle.wheelbase", 1e300)})  # fmt: skip
add("scenario-wheelbase-zero", RECORD, ["s.yaml", "field 'ego.vehicle.wheelbase'"], {"s.yaml": scenario("ego.vehicle.wheelbase", 0)})  # fmt: skip
add("scenario-wheelbase-vs-length", RECORD, ["s.yaml", "field 'ego.vehicle'", "wheelbase"], {"s.yaml": scenario("ego.vehicle.wheelbase", 6.0)})  # fmt: skip
add("scenario-phi-max", RECORD, ["s.yaml", "field 'ego.vehicle.phi_max'", "1.5"], {"s.yaml": scenario("ego.vehicle.phi_max", 2.0)})  # fmt: skip
add("scenario-noise-negative", RECORD, ["s.yaml", "field 'sensor_noise.distance'"], {"s.yaml": scenario("sensor_noise.distance", -0.1)})  # fmt: skip
add("scenario-lane-and-d", RECORD, ["s.yaml", "field 'actors.0'", "exactly one of 'lane' or 'd'"], {"s.yaml": scenario("actors.0.d", 2.0)})  # fmt: skip
add("scenario-behaviour-type", RECORD, ["s.yaml", "field 'actors.0.behaviour'", "cut_in"], {"s.yaml": scenario("actors.0.behaviour", {"type": "teleport"})})  # fmt: skip
add("scenario-behaviour-field", RECORD, ["s.yaml", "field 'actors.0.behaviour.decel'", "12"], {"s.yaml": scenario("actors.0.behaviour.decel", 50)})  # fmt: skip
add("scenario-actor-kind", RECORD, ["s.yaml", "field 'actors.0.kind'"], {"s.yaml": scenario("actors.0.kind", "truck")})  # fmt: skip
add("scenario-actors-mapping", RECORD, ["s.yaml", "field 'actors'"], {"s.yaml": scenario("actors", {"a": 1})})  # fmt: skip
add("scenario-bad-in-plan-random", ["plan", "random", "{d}/s.yaml", "--model", "1-random", "--count", "5", "--out", "{d}/p.csv"], ["s.yaml", "field 'dt'"], {"s.yaml": scenario("dt", float("nan"))})  # fmt: skip
add("scenario-bad-in-campaign", ["campaign", "run", "{d}/s.yaml", "{d}/p.csv", "--db", "{d}/r.db"], ["s.yaml", "field 'ego.s'"], {"s.yaml": scenario("ego.s", float("inf")), "p.csv": plan(GOOD_ROW)})  # fmt: skip
add("scenario-bad-subprocess", RECORD, ["s.yaml", "finite"], {"s.yaml": scenario("actors.0.s", float("nan"))}, subprocess=True)  # fmt: skip
add("scenario-binary-subprocess", RECORD, ["s.yaml", "binary"], {"s.yaml": b"\x00\xff" * 100}, subprocess=True)  # fmt: skip

add("scenario-is-a-plan", RECORD, ["s.yaml", "expected a YAML mapping"], {"s.yaml": PLAN_HEAD + GOOD_ROW})  # fmt: skip
add("scenario-is-parquet", RECORD, ["s.yaml", "binary"], {"s.yaml": lambda g: trace()(g)})
add("scenario-actors-null", RECORD, ["s.yaml", "field 'actors'"], {"s.yaml": scenario("actors", None)})  # fmt: skip
add("pipeline-durations-too-long", ["pipeline", "lead_brake", "--out", "{d}/run", "--durations", "1,1000"], ["--durations", "1000", "400"])  # fmt: skip
add("search-durations-too-long", ["search", "lead_brake", "--model", "{d}/m.json", "--out", "{d}/p.csv", "--durations", "500"], ["--durations", "500", "400"], {"m.json": "{}"})  # fmt: skip

# Plans, read by `campaign run` (refused before the results database exists)


def plan_case(id, text, culprit, **kw):
    add(f"plan-{id}", CAMPAIGN, ["p.csv", *culprit], {"p.csv": text}, **kw)


plan_case("missing-file", None, ["not found"])
CASES[-1].files = {}
plan_case("folder", DIR, ["folder"])
plan_case("empty-file", "", ["missing first line"])
plan_case("no-comment-line", "point,model,value,bit,start,duration,seed\n" + GOOD_ROW, ["missing first line"])  # fmt: skip
plan_case("no-steps", plan(GOOD_ROW, head=PLAN_HEAD.replace(" steps=400", "")), ["'steps'", "whole number"])  # fmt: skip
plan_case("steps-text", plan(GOOD_ROW, head=PLAN_HEAD.replace("steps=400", "steps=many")), ["'steps'", "'many'"])  # fmt: skip
plan_case("steps-zero", plan(GOOD_ROW, head=PLAN_HEAD.replace("steps=400", "steps=0")), ["'steps'"])  # fmt: skip
plan_case("steps-huge", plan(GOOD_ROW, head=PLAN_HEAD.replace("steps=400", "steps=10000000000")), ["'steps'"])  # fmt: skip
plan_case("steps-other", plan(GOOD_ROW, head=PLAN_HEAD.replace("steps=400", "steps=800")), ["800 steps", "400"])  # fmt: skip
plan_case("other-scenario", plan(GOOD_ROW, head=PLAN_HEAD.replace("lead_brake", "cut_in")), ["'cut_in'", "not 'lead_brake'"])  # fmt: skip
plan_case("header-only", plan(), ["no faults"])
plan_case("comment-only", "# drivefi plan scenario=lead_brake steps=400\n", ["lacks column"])
plan_case("missing-column", plan(head=PLAN_HEAD.replace(",seed", "")).rstrip() + "\n" + "control.throttle,1-fixed,1.0,,10,1\n", ["lacks column(s) seed"])  # fmt: skip
plan_case("duplicate-column", PLAN_HEAD.replace(",seed\n", ",seed,start\n") + "control.throttle,1-fixed,1.0,,10,1,0,11\n", ["'start' appears twice"])  # fmt: skip
plan_case("model-bogus", plan("control.throttle,bogus,1.0,,10,1,0"), ["row 1", "field 'model'", "'bogus'"])  # fmt: skip
plan_case("point-bogus", plan(GOOD_ROW, "control.nitro,1-fixed,1.0,,10,1,0"), ["row 2", "field 'point'", "'control.nitro'"])  # fmt: skip
plan_case("value-nan", plan("control.throttle,1-fixed,nan,,10,1,0"), ["row 1", "field 'value'", "0..1"])  # fmt: skip
plan_case("value-inf", plan("control.steer,m-fixed,inf,,10,5,0"), ["row 1", "field 'value'"])
plan_case("value-out-of-range", plan("control.throttle,1-fixed,1000,,10,1,0"), ["row 1", "field 'value'", "got 1000"])  # fmt: skip
plan_case("value-text", plan("control.throttle,1-fixed,full,,10,1,0"), ["row 1", "field 'value'", "'full'"])  # fmt: skip
plan_case("value-empty", plan("control.throttle,1-fixed,,,10,1,0"), ["row 1", "field 'value'"])
plan_case("value-for-bitflip", plan("control.throttle,bitflip,0.5,3,10,1,0"), ["row 1", "field 'value'", "bitflip"])  # fmt: skip
plan_case("value-for-m-random", plan("*,m-random,0.5,,10,5,0"), ["row 1", "field 'value'"])
plan_case("bit-32", plan("control.throttle,bitflip,,32,10,1,0"), ["row 1", "field 'bit'", "0..31"])  # fmt: skip
plan_case("bit-negative", plan("control.throttle,bitflip,,-1,10,1,0"), ["row 1", "field 'bit'", "0..31"])  # fmt: skip
plan_case("bit-text", plan("control.throttle,bitflip,,high,10,1,0"), ["row 1", "field 'bit'", "'high'"])  # fmt: skip
plan_case("bit-empty", plan("control.throttle,bitflip,,,10,1,0"), ["row 1", "field 'bit'"])
plan_case("bit-for-fixed", plan("control.throttle,1-fixed,1.0,5,10,1,0"), ["row 1", "field 'bit'", "only bitflip"])  # fmt: skip
plan_case("start-negative", plan("control.throttle,1-fixed,1.0,,-1,1,0"), ["row 1", "field 'start'", "0..399"])  # fmt: skip
plan_case("start-past-end", plan("control.throttle,1-fixed,1.0,,400,1,0"), ["row 1", "field 'start'", "0..399"])  # fmt: skip
plan_case("start-float", plan("control.throttle,1-fixed,1.0,,1.5,1,0"), ["row 1", "field 'start'", "whole number"])  # fmt: skip
plan_case("start-exponent", plan("control.throttle,1-fixed,1.0,,1e2,1,0"), ["row 1", "field 'start'"])  # fmt: skip
plan_case("duration-zero", plan("control.throttle,m-fixed,1.0,,10,0,0"), ["row 1", "field 'duration'"])  # fmt: skip
plan_case("duration-negative", plan("control.throttle,m-fixed,1.0,,10,-5,0"), ["row 1", "field 'duration'"])  # fmt: skip
plan_case("duration-huge", plan("control.throttle,m-fixed,1.0,,10,1000,0"), ["row 1", "field 'duration'", "1..400"])  # fmt: skip
plan_case("duration-1-fixed", plan("control.throttle,1-fixed,1.0,,10,5,0"), ["row 1", "field 'duration'", "one step"])  # fmt: skip
plan_case("ends-past-last-step", plan(GOOD_ROW, GOOD_ROW, "control.brake,m-fixed,1.0,,390,20,0"), ["row 3", "ends after step 400"])  # fmt: skip
plan_case("seed-negative", plan("*,m-random,,,10,5,-1"), ["row 1", "field 'seed'"])
plan_case("seed-2^63", plan(f"*,m-random,,,10,5,{SEED_LIMIT}"), ["row 1", "field 'seed'", "9223372036854775807"])  # fmt: skip
plan_case("seed-text", plan("*,m-random,,,10,5,abc"), ["row 1", "field 'seed'", "'abc'"])
plan_case("m-random-point", plan("control.throttle,m-random,,,10,5,0"), ["row 1", "field 'point'", "'*'"])  # fmt: skip
plan_case("too-few-fields", plan("control.throttle,1-fixed,1.0"), ["row 1", "fields"])
plan_case("too-many-fields", plan("control.throttle,1-fixed,1.0,,10,1,0,extra,more"), ["row 1", "fields"])  # fmt: skip
plan_case("binary", b"\x00\x01\x02" * 50, ["binary"])
plan_case("latin1", (PLAN_HEAD + "control.throttle,1-fixed,1.0,,10,1,0,caf\xe9\n").encode("latin-1"), ["not UTF-8"])  # fmt: skip
plan_case("nul-in-row", plan(GOOD_ROW) + "control.throttle,1-fixed,1.0,,1\x000,1,0\n", ["binary"])
plan_case("field-too-large", plan("control.throttle,1-fixed," + "1" * 200_000 + ",,10,1,0"), ["row 1"])  # fmt: skip
plan_case("bom-then-bad-row", "\ufeff" + plan(GOOD_ROW, "control.throttle,1-fixed,7,,10,1,0"), ["row 2", "field 'value'"])  # fmt: skip
plan_case("value-overflows", plan("control.throttle,1-fixed,1e400,,10,1,0"), ["row 1", "field 'value'"])  # fmt: skip
plan_case("is-parquet", lambda g: trace()(g), ["binary"])
plan_case("is-a-scenario", scenario(), ["missing first line"])
plan_case("subprocess-ends-past", plan("control.brake,m-fixed,1.0,,399,2,0"), ["row 1", "ends after step 400"], subprocess=True)  # fmt: skip

# Plans made by `plan random` and `plan exhaustive`: arguments refused before anything is written
RANDOM = ["plan", "random", "lead_brake", "--out", "{d}/p.csv"]
EXH = ["plan", "exhaustive", "lead_brake", "--out", "{d}/p.csv"]
add("random-points-bogus", [*RANDOM, "--model", "1-random", "--count", "5", "--points", "bogus"], ["--points", "'bogus'"])  # fmt: skip
add("random-points-one-bogus", [*RANDOM, "--model", "bitflip", "--count", "5", "--points", "control.throttle,nope"], ["--points", "'nope'"])  # fmt: skip
add("random-m-random-points", [*RANDOM, "--model", "m-random", "--m", "5", "--count", "5", "--points", "control.throttle"], ["--points", "m-random"])  # fmt: skip
add("random-model-bogus", [*RANDOM, "--model", "2-random", "--count", "5"], ["--model", "'2-random'"])  # fmt: skip
add("random-model-fixed", [*RANDOM, "--model", "1-fixed", "--count", "5"], ["--model", "'1-fixed'"])  # fmt: skip
add("random-count-zero", [*RANDOM, "--model", "1-random", "--count", "0"], ["--count"])
add(
    "random-count-text", [*RANDOM, "--model", "1-random", "--count", "many"], ["--count", "integer"]
)
add("random-count-huge", [*RANDOM, "--model", "1-random", "--count", "100000000"], ["--count", "100000000"])  # fmt: skip
add("random-m-zero", [*RANDOM, "--model", "m-random", "--count", "5", "--m", "0"], ["--m"])
add("random-m-too-long", [*RANDOM, "--model", "m-random", "--count", "5", "--m", "1000"], ["--m", "1..400", "1000"])  # fmt: skip
add("random-seed-negative", [*RANDOM, "--model", "1-random", "--count", "5", "--seed", "-1"], ["--seed", "-1"])  # fmt: skip
add("random-seed-2^63", [*RANDOM, "--model", "1-random", "--count", "5", "--seed", str(SEED_LIMIT)], ["--seed", str(SEED_LIMIT)])  # fmt: skip
add("random-seed-text", [*RANDOM, "--model", "1-random", "--count", "5", "--seed", "x"], ["--seed"])
add("exhaustive-values-1000", [*EXH, "--values", "1000"], ["--values", "1000"])
add("exhaustive-values-nan", [*EXH, "--values", "nan"], ["--values", "nan"])
add("exhaustive-values-inf", [*EXH, "--values", "0,inf"], ["--values", "inf"])
add("exhaustive-values-text", [*EXH, "--values", "low,high"], ["--values", "low,high"])
add("exhaustive-values-out-for-one-point", [*EXH, "--points", "control.throttle,control.steer", "--values", "-0.5"], ["--values", "control.throttle", "-0.5"])  # fmt: skip
add("exhaustive-durations-1000", [*EXH, "--durations", "1000"], ["--durations", "1000", "1..400"])
add("exhaustive-durations-zero", [*EXH, "--durations", "0"], ["--durations", "0"])
add("exhaustive-durations-negative", [*EXH, "--durations", "1,-5"], ["--durations", "-5"])
add("exhaustive-durations-float", [*EXH, "--durations", "1.5"], ["--durations", "1.5"])
add("exhaustive-points-bogus", [*EXH, "--points", "bogus"], ["'bogus'"])
add("exhaustive-stride-zero", [*EXH, "--stride", "0"], ["--stride"])
add("exhaustive-stride-huge", [*EXH, "--stride", "5000"], ["--stride", "5000"])
add("exhaustive-too-many-faults", [*EXH, "--points", "control.throttle", "--values", ",".join(f"{i / 20000:.5f}" for i in range(20000))], ["exhaustive plan", "faults", "at most"])  # fmt: skip
add("exhaustive-values-subprocess", [*EXH, "--values", "nan"], ["--values", "nan"], subprocess=True)  # fmt: skip

# Seeds on the command line
add("record-seed-negative", ["record", "lead_brake", "--seed", "-1", "--out", "{d}/o.parquet"], ["--seed", "-1"])  # fmt: skip
add("record-seed-2^63", ["record", "lead_brake", "--seed", str(SEED_LIMIT), "--out", "{d}/o.parquet"], ["--seed", str(SEED_LIMIT)])  # fmt: skip
add("record-seed-10^30", ["record", "lead_brake", "--seed", str(10**30), "--out", "{d}/o.parquet"], ["--seed"])  # fmt: skip
add("record-seed-text", ["record", "lead_brake", "--seed", "one", "--out", "{d}/o.parquet"], ["--seed"])  # fmt: skip
add("campaign-seed-negative", [*CAMPAIGN, "--seed", "-1"], ["--seed", "-1"], {"p.csv": plan(GOOD_ROW)})  # fmt: skip
add("campaign-seed-2^63", [*CAMPAIGN, "--seed", str(SEED_LIMIT)], ["--seed", str(SEED_LIMIT)], {"p.csv": plan(GOOD_ROW)})  # fmt: skip
add("campaign-seed-2^64", [*CAMPAIGN, "--seed", str(2**64)], ["--seed"], {"p.csv": plan(GOOD_ROW)})  # fmt: skip
add("pipeline-seed-negative", ["pipeline", "lead_brake", "--out", "{d}/run", "--seed", "-1"], ["--seed", "-1"])  # fmt: skip
add("pipeline-seed-2^63", ["pipeline", "lead_brake", "--out", "{d}/run", "--seed", str(SEED_LIMIT)], ["--seed"])  # fmt: skip
add("record-seed-subprocess", ["record", "lead_brake", "--seed", str(SEED_LIMIT), "--out", "{d}/o.parquet"], ["--seed"], subprocess=True)  # fmt: skip

# Traces: read by `fit` and, as the golden run, by `search`
T = "t.parquet"


def trace_case(id, maker, culprit, argv=FIT, **kw):
    add(f"trace-{id}", argv, [T, *culprit], {T: maker, "m.json": "{}"}, **kw)


trace_case("missing", None, ["not found"])
CASES[-1].files = {}
trace_case("folder", DIR, ["folder"])
trace_case("text-file", "not parquet at all", ["not a readable Parquet trace"])
trace_case("empty-file", "", ["not a readable Parquet trace"])
trace_case("binary", bytes(range(256)) * 20, ["not a readable Parquet trace"])
trace_case("truncated-parquet", lambda g: trace()(g)[:2000], ["not a readable Parquet trace"])
trace_case("no-metadata", trace(drop_meta=True), ["no DriveFI metadata"])
trace_case("metadata-not-json", trace(raw_meta=b"{scenario: lead_brake"), ["metadata", "not valid JSON"])  # fmt: skip
trace_case("metadata-list", trace(raw_meta=b"[1, 2]"), ["metadata", "JSON object"])
trace_case("metadata-binary", trace(raw_meta=b"\xff\xfe\x00"), ["metadata", "not valid JSON"])
trace_case("metadata-no-dt", trace(edit_meta=setitem("dt", ...)), ["lacks field(s) dt"])
trace_case("metadata-no-scenario", trace(edit_meta=setitem("scenario", ...)), ["lacks field(s) scenario"])  # fmt: skip
trace_case("metadata-dt-nan", trace(raw_meta=json.dumps({"scenario": "lead_brake", "seed": 1, "dt": float("nan"), "steps": 400, "vehicle": {}}).encode()), ["'dt'"])  # fmt: skip
trace_case("metadata-dt-text", trace(edit_meta=setitem("dt", "fast")), ["'dt'", "'fast'"])
trace_case("metadata-dt-negative", trace(edit_meta=setitem("dt", -0.05)), ["'dt'"])
trace_case("metadata-steps-float", trace(edit_meta=setitem("steps", 400.5)), ["'steps'"])
trace_case("metadata-seed-negative", trace(edit_meta=setitem("seed", -1)), ["'seed'"])
trace_case("metadata-seed-2^63", trace(edit_meta=setitem("seed", SEED_LIMIT)), ["'seed'"])
trace_case("metadata-scenario-number", trace(edit_meta=setitem("scenario", 7)), ["'scenario'"])
trace_case("metadata-vehicle-list", trace(edit_meta=setitem("vehicle", [1])), ["'vehicle'"])
trace_case("metadata-fault-text", trace(edit_meta=setitem("fault", "yes")), ["'fault'"])
trace_case("is-a-scenario", scenario(), ["not a readable Parquet trace"])
trace_case("missing-delta_lon", trace(edit_frame=lambda f: f.drop(columns=["delta_lon"])), ["delta_lon"])  # fmt: skip
trace_case("missing-k", trace(edit_frame=lambda f: f.drop(columns=["k"])), ["lacks column(s) k"])
trace_case("missing-several", trace(edit_frame=lambda f: f.drop(columns=["x", "y", "hazard"])), ["x, y, hazard"])  # fmt: skip
trace_case("gap-in-steps", trace(edit_frame=lambda f: f.drop(index=50).reset_index(drop=True), edit_meta=setitem("steps", 399)), ["column 'k'", "row 50"])  # fmt: skip
trace_case("repeated-step", trace(edit_frame=cell("k", 51, 50)), ["column 'k'", "row 51"])
trace_case("steps-out-of-order", trace(edit_frame=lambda f: f.iloc[::-1].reset_index(drop=True)), ["column 'k'"])  # fmt: skip
trace_case("cut-to-100", trace(edit_frame=lambda f: f.iloc[:100]), ["100 rows", "400 steps"])
trace_case("padded", trace(edit_frame=lambda f: pd.concat([f, f.iloc[-1:]], ignore_index=True)), ["401 rows"])  # fmt: skip
trace_case("time-wrong", trace(edit_frame=cell("t", 20, 99.0)), ["column 't'", "step 20"])
trace_case("k-float", trace(edit_frame=lambda f: f.assign(k=f["k"].astype(float))), ["column 'k'"])
trace_case("text-column", trace(edit_frame=lambda f: f.assign(v=f["v"].astype(str))), ["column 'v'", "numbers"])  # fmt: skip
trace_case("fit-subprocess-gap", trace(edit_frame=lambda f: f.drop(index=7).reset_index(drop=True)), ["400 steps"], subprocess=True)  # fmt: skip
trace_case("golden-cut-to-100", trace(edit_frame=lambda f: f.iloc[:100]), ["100 rows", "400 steps"], argv=SEARCH)  # fmt: skip
trace_case("golden-cut-meta-100", trace(edit_frame=lambda f: f.iloc[:100], edit_meta=setitem("steps", 100)), ["100 steps", "400 steps"], argv=SEARCH)  # fmt: skip
trace_case("golden-other-scenario", trace(edit_meta=setitem("scenario", "cut_in")), ["'cut_in'", "not 'lead_brake'"], argv=SEARCH)  # fmt: skip
trace_case("golden-other-dt", trace(edit_frame=lambda f: f.assign(t=f["t"] * 2), edit_meta=setitem("dt", 0.1)), ["0.1 s", "0.05 s"], argv=SEARCH)  # fmt: skip
trace_case("golden-faulty-run", trace(edit_meta=setitem("fault", {"point": "control.steer"})), ["faulty run"], argv=SEARCH)  # fmt: skip
trace_case("golden-nan-speed", trace(edit_frame=cell("v", 57, float("nan"))), ["column 'v'", "step 57", "finite"], argv=SEARCH)  # fmt: skip
trace_case("golden-inf-delta", trace(edit_frame=cell("delta_lon", 3, float("inf"))), ["column 'delta_lon'", "step 3"], argv=SEARCH)  # fmt: skip
trace_case("golden-other-vehicle", trace(edit_meta=lambda m: m["vehicle"].update(wheelbase=3.5)), ["vehicle.wheelbase", "3.5"], argv=SEARCH)  # fmt: skip
trace_case("golden-no-metadata", trace(drop_meta=True), ["no DriveFI metadata"], argv=SEARCH)
trace_case("golden-missing-point", trace(edit_frame=lambda f: f.drop(columns=["control.steer"])), ["control.steer"], argv=SEARCH)  # fmt: skip

# Model files (generic problems only; the model format has its own tests)
MODEL = ["search", "lead_brake", "--model", "{d}/m.json", "--out", "{d}/p.csv"]
add("model-missing", MODEL, ["m.json", "not found"])
add("model-folder", MODEL, ["m.json"], {"m.json": DIR})
add("model-empty", MODEL, ["m.json", "JSON"], {"m.json": ""})
add("model-not-json", MODEL, ["m.json", "JSON"], {"m.json": "{ not json"})
add("model-binary", MODEL, ["m.json"], {"m.json": bytes(range(256)) * 3})
add("model-list", MODEL, ["m.json", "model file"], {"m.json": "[1, 2, 3]"})

# Output paths: refused before the work starts, nothing left behind
add("record-out-folder", ["record", "lead_brake", "--out", "{d}/o"], ["{d}/o", "folder"], {"o": DIR})  # fmt: skip
add("record-out-below-file", ["record", "lead_brake", "--out", "{d}/f/o.parquet"], ["{d}/f", "is a file"], {"f": "x"})  # fmt: skip
add("record-out-deep-below-file", ["record", "lead_brake", "--out", "{d}/f/a/b/o.parquet"], ["{d}/f", "is a file"], {"f": "x"})  # fmt: skip
add("record-out-dot", ["record", "lead_brake", "--out", "."], ["--out", "file path"])
add("scenario-rho-above-60", RECORD, ["s.yaml", "field 'ego.vehicle.response_time'", "60"], {"s.yaml": scenario("ego.vehicle.response_time", 100.0)})  # fmt: skip
add("record-out-read-only", ["record", "lead_brake", "--out", "{d}/ro/o.parquet"], ["{d}/ro", "not writable"], {"ro": DIR}, unless_root=True)  # fmt: skip
add("plan-out-folder", [*RANDOM[:3], "--model", "1-random", "--count", "5", "--out", "{d}/o"], ["{d}/o", "folder"], {"o": DIR})  # fmt: skip
add("plan-out-below-file", [*RANDOM[:3], "--model", "1-random", "--count", "5", "--out", "{d}/f/p.csv"], ["{d}/f", "is a file"], {"f": "x"})  # fmt: skip
add("plan-out-dev-full", [*RANDOM[:3], "--model", "1-random", "--count", "5", "--out", "/dev/full"], ["/dev/full", "no space left"], full_disk=True)  # fmt: skip
add("exhaustive-out-dev-full", [*EXH[:3], "--stride", "50", "--out", "/dev/full"], ["/dev/full", "no space left"], full_disk=True)  # fmt: skip
add("plan-out-folder-subprocess", [*RANDOM[:3], "--model", "1-random", "--count", "5", "--out", "{d}/o"], ["{d}/o", "folder"], {"o": DIR}, subprocess=True)  # fmt: skip
add("search-out-folder", ["search", "lead_brake", "--model", "{d}/m.json", "--out", "{d}/o"], ["{d}/o", "folder"], {"o": DIR, "m.json": "{}"})  # fmt: skip
add("search-out-below-file", ["search", "lead_brake", "--model", "{d}/m.json", "--out", "{d}/f/p.csv"], ["{d}/f", "is a file"], {"f": "x", "m.json": "{}"})  # fmt: skip
add("pipeline-out-file", ["pipeline", "lead_brake", "--out", "{d}/f"], ["{d}/f", "not a folder"], {"f": "x"})  # fmt: skip
add("pipeline-out-below-file", ["pipeline", "lead_brake", "--out", "{d}/f/run"], ["{d}/f", "is a file"], {"f": "x"})  # fmt: skip
add("campaign-traces-dir-is-file", [*CAMPAIGN, "--keep-traces", "all"], ["{d}/r.traces", "not a folder"], {"p.csv": plan(GOOD_ROW), "r.traces": "x"})  # fmt: skip
add("fit-out-folder", ["fit", "{d}/t.parquet", "--out", "{d}/o"], ["{d}/o", "folder"], {"o": DIR, "t.parquet": trace()})  # fmt: skip
add("report-out-folder", ["report", "{d}/r.db", "--out", "{d}/o"], ["{d}/o", "folder"], {"o": DIR, "r.db": ""})  # fmt: skip


# --- running a case ------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder below ``root``: kind, size, modification time and mode."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def materialise(case: Case, d: Path, golden) -> None:
    for name, content in case.files.items():
        p = d / name
        if content is DIR:
            p.mkdir(parents=True)
            continue
        if content is None:
            continue
        if isinstance(content, Callable):
            content = content(golden)
        if isinstance(content, str):
            content = content.encode("utf-8")
        p.write_bytes(content)


def run_case(case: Case, d: Path, capsys) -> tuple[int, str, str]:
    argv = [a.replace("{d}", str(d)) for a in case.argv]
    if case.subprocess:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        proc = subprocess.run(
            [sys.executable, "-m", "drivefi", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=d,
            env=env,
        )
        return proc.returncode, proc.stdout, proc.stderr
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def golden(golden_run):
    return golden_run("lead_brake")


def test_the_table_is_large_and_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
    assert len(CASES) >= 150
    assert sum(c.subprocess for c in CASES) <= 8


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, capsys, monkeypatch, golden):
    if case.unless_root and os.geteuid() == 0:
        pytest.skip("folder permissions do not bind root")
    if case.full_disk and not stat.S_ISCHR(os.stat("/dev/full").st_mode):
        pytest.skip("/dev/full is not the full-disk device on this machine")
    d = tmp_path / "case"
    d.mkdir()
    materialise(case, d, golden)
    if case.unless_root:
        (d / "ro").chmod(0o555)
    monkeypatch.chdir(d)
    before = snapshot(d)
    try:
        rc, out, err = run_case(case, d, capsys)
    finally:
        if case.unless_root:
            (d / "ro").chmod(0o755)
    after = snapshot(d)
    assert "Traceback" not in err and "Traceback" not in out, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, f"exit {rc}; stderr: {err}"
    assert len(lines) == 1, f"expected one error line, got: {err}"
    line = lines[0]
    for text in case.culprit:
        assert text.replace("{d}", str(d)) in line, f"{text!r} not in: {line}"
    assert after == before, f"files changed: {set(after) ^ set(before) or 'contents'}"
    assert out.strip() == "", out


def test_bom_plan_is_accepted(tmp_path):
    """A UTF-8 byte-order mark (as some editors write) is dropped, not refused."""
    from drivefi.faults.plan import read_plan

    p = tmp_path / "bom.csv"
    p.write_bytes(("\ufeff" + plan(GOOD_ROW)).encode("utf-8"))
    got = read_plan(p)
    assert got.scenario == "lead_brake" and got.steps == 400 and len(got.faults) == 1


def test_seed_limit_is_inclusive(tmp_path):
    """The largest valid seed (2^63 - 1) is accepted where seeds enter, one more is not."""
    from drivefi.errors import InputError
    from drivefi.faults.plan import read_plan
    from drivefi.util.seeds import SEED_MAX, check_seed
    from drivefi.world.scenario import parse_scenario

    assert SEED_MAX == SEED_LIMIT - 1 and check_seed(SEED_MAX) == SEED_MAX
    assert parse_scenario(yaml.safe_load(scenario("seed", SEED_MAX))).seed == SEED_MAX
    p = tmp_path / "p.csv"
    p.write_text(plan(f"*,m-random,,,10,5,{SEED_MAX}"))
    assert read_plan(p).faults[0].seed == SEED_MAX
    with pytest.raises(InputError):
        check_seed(SEED_LIMIT)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    """A failed write removes its temporary file and the folders it made; the old file stays."""
    from drivefi.errors import InputError
    from drivefi.util.atomic import atomic_path

    dest = tmp_path / "a" / "b" / "out.txt"
    with pytest.raises(InputError, match=r"out\.txt: cannot write"), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []
    keep = tmp_path / "keep.txt"
    keep.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(keep) as tmp:
        tmp.write_text("new")
        raise RuntimeError("stop")
    assert keep.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    names = set()
    for _ in range(50):
        with atomic_path(keep) as tmp:
            names.add(tmp.name)
            tmp.write_text("x")
    assert len(names) == 50  # unique temporary names: concurrent writers never share one
    assert np.all([not p.name.endswith(".tmp") for p in tmp_path.iterdir()])


def test_accepted_edge_inputs(tmp_path):
    """What the checks must not refuse: a BOM, rho = .inf, CRLF plan lines, the largest step count."""
    from drivefi.faults.plan import read_plan
    from drivefi.world.scenario import MAX_STEPS, load_scenario

    s = tmp_path / "s.yaml"
    text = scenario("ego.vehicle.response_time", float("inf"))
    s.write_bytes(("\ufeff" + text).encode("utf-8"))
    assert load_scenario(s).ego.vehicle.response_time == float("inf")
    s.write_text(scenario("dt", 600 / MAX_STEPS, yaml.safe_load(scenario("duration", 600.0))))
    assert load_scenario(s).steps == MAX_STEPS
    p = tmp_path / "p.csv"
    p.write_bytes(plan(GOOD_ROW, "*,m-random,,,10,5,3").replace("\n", "\r\n").encode())
    assert [f.model for f in read_plan(p).faults] == ["1-fixed", "m-random"]
    s.write_text(
        scenario().replace("dt: 0.05", "dt: 5e-2").replace("duration: 20.0", "duration: 2E1")
    )
    sc = load_scenario(s)  # YAML 1.2 numbers without a dot are numbers, not strings
    assert (sc.dt, sc.duration) == (0.05, 20.0)
