"""A model is used only for the stack and the structure it was fitted with: ``drivefi search``
refuses (exit 2, one line naming the model file) a model whose structure file changed since the
fit, whose nodes differ from the stack's structure, whose stored structure was edited, or whose
format version this DriveFI does not know."""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from drivefi.errors import InputError
from drivefi.run.golden import record_golden
from drivefi.run.testbed import Testbed
from drivefi.run.trace import write_trace
from drivefi.search.training import point_specs, structure_for, training_set
from drivefi.tbn import fit_model, save_model
from drivefi.tbn.model_io import check_structure, load_model, structure_hash
from drivefi.tbn.structure_file import build, derive, load_structure
from drivefi.util.resources import bundled_dir
from drivefi.world.scenario import load_scenario

SC = load_scenario("lead_brake")
EDIT = ("  parents: [gap, lead_v, v, lane_offset, heading_error, curvature, "
        "perception.obstacle_distance@1]")  # fmt: skip


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A model fitted with a user's copy of the reference structure, and the golden trace."""
    d = tmp_path_factory.mktemp("fitted")
    mine = d / "mine.yaml"
    shutil.copy(bundled_dir("models") / "reference.yaml", mine)
    golden = record_golden(SC)
    st = load_structure(mine)
    traces = training_set(SC, runs=10, golden=golden, structure=st)
    save_model(fit_model(traces, holdout=0.0), d / "m.json")
    write_trace(golden.trace, d / "g.parquet")
    return d


def search(d, model, capsys) -> tuple[int, str, str]:
    """``drivefi search`` with ``model`` (in this process: the refusals come before any work)."""
    from drivefi.cli import main

    capsys.readouterr()
    code = main(["search", "lead_brake", "--model", str(model), "--golden", str(d / "g.parquet"),
                 "--out", str(d / "plan.csv"), "--points", "control.steer", "--durations", "5",
                 "--stride", "50", "--top", "2", "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    return code, out, err


def refused(result: tuple[int, str, str], model, says: str) -> None:
    code, _, err = result
    assert code == 2, err[-2000:]
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: {model}: ") and says in line, line


def test_the_model_stores_its_structures_hash(fitted):
    data = json.loads((fitted / "m.json").read_text())
    assert data["version"] == 3
    assert data["structure_sha256"] == structure_hash(load_structure(fitted / "mine.yaml").doc)


def test_a_model_is_used_while_its_structure_file_is_unchanged_and_refused_once_it_changes(
    fitted, tmp_path, capsys
):
    d = tmp_path / "f"
    shutil.copytree(fitted, d)
    # the model remembers where its structure file was: fit it again here, with this copy
    model = d / "m.json"
    data = json.loads(model.read_text())
    data["structure"]["source"] = str(d / "mine.yaml")
    model.write_text(json.dumps(data))
    code, out, err = search(d, model, capsys)
    assert code == 0, err[-2000:]
    assert json.loads(out)["candidates_scored"] > 0
    text = (d / "mine.yaml").read_text()
    (d / "mine.yaml").write_text(text + "\n# a comment changes nothing the model reads\n")
    assert search(d, model, capsys)[0] == 0
    assert EDIT in text
    (d / "mine.yaml").write_text(text.replace(EDIT, EDIT.replace("curvature, ", "")))
    refused(search(d, model, capsys), model, "changed since the fit")


def test_a_model_of_another_structure_or_an_edited_one_is_refused(fitted, tmp_path, capsys):
    model = load_model(fitted / "m.json")
    doc = copy.deepcopy(model.structure.doc)  # the same structure without the feature v2
    del doc["features"]["v2"]
    doc["kinematics"]["a"] = [p for p in doc["kinematics"]["a"] if p != "v2@1"]
    fewer = build(doc, "fewer.yaml")
    with pytest.raises(InputError, match=r"m\.json: structure: model's nodes differ .*: v2;"):
        check_structure(model, fewer, "m.json")
    derived = build(derive(point_specs(Testbed()), "reference"), "<derived>")
    with pytest.raises(InputError, match=r"m\.json: structure: .*changed since the fit"):
        check_structure(model, derived, "m.json")  # the same nodes, other parents
    check_structure(model, load_structure(fitted / "mine.yaml"), "m.json")  # the same: accepted
    data = json.loads((fitted / "m.json").read_text())
    data["structure"]["file"]["points"][0]["parents"] = ["gap", "v"]
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    refused(search(fitted, edited, capsys), edited, "structure_sha256: does not match")


@pytest.mark.parametrize(
    ("version", "says"),
    [
        (4, "written by a newer DriveFI"),
        ("3", "unknown model file version '3'"),
        (None, "unknown model file version None"),
        (1, "refit it"),
    ],
)
def test_a_model_of_an_unknown_or_newer_version_is_refused(fitted, tmp_path, capsys, version, says):
    data = json.loads((fitted / "m.json").read_text())
    data["version"] = version
    bad = tmp_path / "v.json"
    bad.write_text(json.dumps(data))
    refused(search(fitted, bad, capsys), bad, says)


def test_a_version_2_model_without_the_hash_is_still_read_and_checked(fitted, tmp_path):
    data = json.loads((fitted / "m.json").read_text())
    data["version"] = 2
    del data["structure_sha256"]
    old = tmp_path / "v2.json"
    old.write_text(json.dumps(data))
    m = load_model(old)
    check_structure(m, load_structure(fitted / "mine.yaml"), str(old))
    assert structure_for(Testbed()).name == "reference"  # the default is the bundled file
