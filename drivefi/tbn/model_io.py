"""Model files: one JSON object with the structure, CPD parameters, scaling, saturations, the
training-data summary and the held-out one-step error, tagged with a format version."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from drivefi.atomic import atomic_path
from drivefi.errors import InputError
from drivefi.tbn.model import CPD, TBNModel
from drivefi.tbn.structure import STRUCTURE, STRUCTURE_VERSION

FORMAT = "drivefi-3tbn"
FORMAT_VERSION = 1


def _cpd_json(c: CPD) -> dict:
    out = {
        "parents": [[p, lag] for p, lag in c.parents],
        "beta": [float(x) for x in c.beta],
        "sigma": float(c.sigma),
        "rows": int(c.rows),
    }
    if c.draws:
        out["draws"] = {
            "beta": np.asarray(c.draws["beta"]).round(8).tolist(),
            "sigma": np.asarray(c.draws["sigma"]).round(10).tolist(),
        }
    return out


def to_json(model: TBNModel) -> dict:
    st = model.structure
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "structure_version": STRUCTURE_VERSION,
        "method": model.method,
        "structure": {
            "slices": 3,
            "variables": [
                {"name": v.name, "kind": v.kind, "parents": [[p, lag] for p, lag in v.parents]}
                for v in st.vars
            ],
        },
        "scaling": {n: {"mean": model.mean[n], "std": model.std[n]} for n in st.names},
        "saturation": {n: list(b) for n, b in model.saturation.items()},
        "transition": {n: _cpd_json(c) for n, c in model.transition.items()},
        "initial": {n: _cpd_json(c) for n, c in model.initial.items()},
        "contexts": model.contexts,
        "training": model.summary,
        "holdout_error": model.holdout,
    }


def save_model(model: TBNModel, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(to_json(model), indent=1))
    return Path(path)


def _cpd(name: str, d: dict) -> CPD:
    draws = None
    if "draws" in d:
        draws = {
            "beta": np.asarray(d["draws"]["beta"], float),
            "sigma": np.asarray(d["draws"]["sigma"], float),
        }
    parents = tuple((str(p), int(lag)) for p, lag in d["parents"])
    return CPD(
        name, parents, np.asarray(d["beta"], float), float(d["sigma"]), int(d.get("rows", 0)), draws
    )


def from_json(data: object, source: str = "<model>") -> TBNModel:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(
            f'{source}: not a DriveFI 3-TBN model file (expected "format": "{FORMAT}")'
        )
    if data.get("version") != FORMAT_VERSION or data.get("structure_version") != STRUCTURE_VERSION:
        raise InputError(
            f"{source}: model file version {data.get('version')}/{data.get('structure_version')}, "
            f"this DriveFI reads {FORMAT_VERSION}/{STRUCTURE_VERSION}; refit it with `drivefi fit`"
        )
    st = STRUCTURE
    try:
        names = [v["name"] for v in data["structure"]["variables"]]
        if names != st.names:
            raise InputError(
                f"{source}: the model's variables differ from this DriveFI's 3-TBN structure; refit it"
            )
        for v in data["structure"]["variables"]:
            if tuple((p, lag) for p, lag in v["parents"]) != st.by_name[v["name"]].parents:
                raise InputError(
                    f"{source}: parents of '{v['name']}' differ from this DriveFI's structure; refit it"
                )
        sc = data["scaling"]
        model = TBNModel(
            method=str(data["method"]),
            mean={n: float(sc[n]["mean"]) for n in st.names},
            std={n: float(sc[n]["std"]) for n in st.names},
            transition={n: _cpd(n, data["transition"][n]) for n in st.names},
            initial={n: _cpd(n, data["initial"][n]) for n in st.names},
            saturation={
                n: (None if b[0] is None else float(b[0]), None if b[1] is None else float(b[1]))
                for n, b in data["saturation"].items()
            },
            contexts=dict(data["contexts"]),
            summary=dict(data.get("training", {})),
            holdout=dict(data.get("holdout_error", {})),
        )
        for n in st.names:
            for c in (model.transition[n], model.initial[n]):
                if len(c.beta) != len(c.parents) + 1 or not np.all(np.isfinite(c.beta)):
                    raise InputError(
                        f"{source}: CPD of '{n}' has {len(c.beta)} finite weights for {len(c.parents)} parents"
                    )
        if not model.contexts:
            raise InputError(f"{source}: model has no scenario context")
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise InputError(f"{source}: malformed model file ({type(err).__name__}: {err})") from None
    return model


def load_model(path: str | Path) -> TBNModel:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a JSON model file ({err})") from None
    return from_json(data, str(path))


def check_scenario(model: TBNModel, scenario_name: str, source: str = "<model>") -> None:
    """Refuse a model that was not fitted on this scenario."""
    if scenario_name not in model.scenarios:
        fitted = ", ".join(model.scenarios) or "no recorded scenario"
        raise InputError(
            f"{source}: model was fitted on {fitted}, not on scenario '{scenario_name}'; fit one for it"
        )
