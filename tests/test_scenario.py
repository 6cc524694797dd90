"""Scenario files: the bundled ones load, and every bad input is one clear InputError."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from drivefi.errors import InputError
from drivefi.world.scenario import (
    SCENARIO_DIR,
    Brake,
    CutIn,
    bundled_names,
    load_scenario,
    parse_scenario,
)

BASE = yaml.safe_load((SCENARIO_DIR / "cut_in.yaml").read_text())


def test_bundled_scenarios_load():
    names = bundled_names()
    assert len(names) >= 6
    for name in names:
        by_name = load_scenario(name)
        by_path = load_scenario(SCENARIO_DIR / f"{name}.yaml")
        assert by_name == by_path and by_name.name == name
        assert by_name.steps == round(by_name.duration / by_name.dt) and by_name.steps > 0
        assert by_name.description
        assert 0 <= by_name.ego.lane < by_name.road.lanes


def test_defaults_and_behaviours():
    sc = load_scenario("lead_brake")
    assert sc.dt == 0.05 and sc.steps == 400
    assert isinstance(sc.actors[0].behaviour, Brake) and sc.actors[0].behaviour.decel == 7.0
    assert isinstance(load_scenario("cut_in").actors[0].behaviour, CutIn)
    d = copy.deepcopy(BASE)
    del d["dt"]
    d["actors"] = [{"kind": "pedestrian", "d": -1.0, "s": 50}]
    sc = parse_scenario(d, "x.yaml")
    assert sc.dt == 0.05 and sc.actors[0].size == (0.5, 0.5)
    assert sc.actors[0].behaviour.type == "cruise"


def edit(path: str, value):
    """BASE with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    d = copy.deepcopy(BASE)
    *head, last = path.split(".")
    node = d
    for key in head:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is ...:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return d


BAD = [
    # (edit, words the message must contain)
    (("colour", "red"), ["field 'colour'", "not permitted"]),
    (("ego.vehicle", {"wheelbase": 2.9, "colour": 1}), ["field 'ego.vehicle.colour'"]),
    (("duration", "fast"), ["field 'duration'", "number", "'fast'"]),
    (("ego", 5), ["field 'ego'"]),
    (("dt", -0.05), ["field 'dt'", "greater than 0", "-0.05"]),
    (("dt", 0.5), ["field 'dt'", "0.1"]),
    (("seed", 1.5), ["field 'seed'", "integer"]),
    (("ego.speed", ...), ["field 'ego.speed'", "required"]),
    (("road.segments", []), ["field 'road.segments'"]),
    (("road.segments.0.curvature", 1.0), ["field 'road.segments.0.curvature'", "0.2"]),
    (("actors.0.behaviour", {"type": "teleport"}), ["field 'actors.0.behaviour'", "cut_in"]),
    (("actors.0.d", 2.0), ["field 'actors.0'", "exactly one of 'lane' or 'd'"]),
    (("ego.lane", 5), ["ego.lane 5", "2 lanes"]),
    (("actors.0.behaviour.to_lane", 9), ["actors.0.behaviour.to_lane"]),
    (("name", "bad name!"), ["field 'name'"]),
]


@pytest.mark.parametrize(
    ("change", "words"), BAD, ids=[b[0][0] + "=" + repr(b[0][1])[:12] for b in BAD]
)
def test_bad_field_is_named(change, words):
    with pytest.raises(InputError) as err:
        parse_scenario(edit(*change), "scenarios/x.yaml")
    msg = str(err.value)
    assert msg.startswith("scenarios/x.yaml: ")
    assert "\n" not in msg
    assert "Value error" not in msg and "(top)" not in msg
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize("data", [[1, 2], None, "text", 3])
def test_not_a_mapping(data):
    with pytest.raises(InputError, match=r"^x\.yaml: expected a YAML mapping"):
        parse_scenario(data, "x.yaml")


def test_file_problems(tmp_path: Path):
    with pytest.raises(
        InputError, match=r"scenario file not found; bundled scenarios: .*lead_brake"
    ):
        load_scenario("no_such_scenario")
    missing = tmp_path / "missing.yaml"
    with pytest.raises(InputError, match=f"^{missing}: scenario file not found"):
        load_scenario(missing)
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\nroad: [unclosed\n")
    with pytest.raises(InputError, match=r"broken\.yaml: malformed YAML at line \d+, column \d+"):
        load_scenario(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(InputError, match=r"empty\.yaml: expected a YAML mapping"):
        load_scenario(empty)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(edit("dt", -1.0)))
    with pytest.raises(InputError, match=rf"^{wrong}: field 'dt'"):
        load_scenario(wrong)
