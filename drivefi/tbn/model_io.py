"""Model files: one JSON object with the structure (the structure file's content, its SHA-256 and
the learned transform parameters), CPD parameters, scaling, saturations, the training-data summary
and the held-out one-step error, tagged with a format version. Loading checks every field and
refuses a bad file with one line naming the file and the field; a version this DriveFI does not
know (a newer one) is refused, never read as if it were known. Before a model is used for a stack,
:func:`check_stack` and :func:`check_structure` refuse a model of another stack, of other points
or nodes, or of a structure file whose content changed since the fit."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np

from drivefi.errors import InputError
from drivefi.tbn.model import CPD, TBNModel
from drivefi.tbn.structure import Structure
from drivefi.util.atomic import atomic_path

FORMAT = "drivefi-3tbn"
FORMAT_VERSION = 3  # 3: + structure_sha256 (2: the same without it, still read)
READS = (2, 3)  # the versions this DriveFI reads


def structure_hash(doc: dict) -> str:
    """SHA-256 of a structure file's content (as JSON with sorted keys: the same for the YAML file
    and for the copy a model stores)."""
    canon = json.dumps(json.loads(json.dumps(doc, default=str)), sort_keys=True)
    return hashlib.sha256(canon.encode()).hexdigest()


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


def _num(x):
    """JSON has no inf: learned parameters 'inf' are written as strings."""
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def to_json(model: TBNModel) -> dict:
    st = model.structure
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "method": model.method,
        "stack": st.stack,
        "oracle": st.oracle,
        "structure_sha256": structure_hash(st.doc),
        "structure": {
            "name": st.name,
            "source": st.source,
            "file": st.doc,
            "params": {n: {k: _num(v) for k, v in p.items()} for n, p in st.params.items()},
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


def _structure(data: dict, source: str) -> Structure:
    from drivefi.tbn.structure_file import PY_STRUCTURES, build

    s = data["structure"]
    doc = s["file"]
    if not isinstance(doc, dict):
        raise InputError(f"{source}: structure.file: expected the structure file's content")
    if "python" in doc:
        name = doc.get("structure")
        if name not in PY_STRUCTURES:
            raise InputError(
                f"{source}: structure: the model uses the oracle structure '{name}'; "
                "accept it explicitly (drivefi search --oracle)"
            )
        return PY_STRUCTURES[name]
    params = {n: {k: float(v) for k, v in p.items()} for n, p in (s.get("params") or {}).items()}
    st = build(doc, f"{source} (structure '{s.get('name')}')", params)
    st = dataclasses.replace(st, source=str(s.get("source", st.source)))
    names = [v["name"] for v in s["variables"]]
    if names != st.names:
        raise InputError(f"{source}: structure.variables: differ from the stored structure file")
    return st


def from_json(data: object, source: str = "<model>") -> TBNModel:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(
            f'{source}: not a DriveFI 3-TBN model file (expected "format": "{FORMAT}")'
        )
    version = data.get("version")
    if type(version) is not int:
        raise InputError(
            f"{source}: version: unknown model file version {version!r}; this DriveFI reads "
            f"versions {', '.join(map(str, READS))}"
        )
    if version > FORMAT_VERSION:
        raise InputError(
            f"{source}: version: model file version {version}, written by a newer DriveFI; this "
            f"one reads versions up to {FORMAT_VERSION}: upgrade DriveFI, or refit it with `drivefi fit`"
        )
    if version not in READS:
        raise InputError(
            f"{source}: version: model file version {version}, this DriveFI reads "
            f"{', '.join(map(str, READS))}; refit it with `drivefi fit`"
        )

    def field(path: str, read):
        """``read()``, or one line naming the field ``path`` that is missing or malformed."""
        try:
            return read()
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            raise InputError(
                f"{source}: {path}: missing or malformed ({type(err).__name__}: {err})"
            ) from None

    st = field("structure", lambda: _structure(data, source))
    if version >= 3:
        stored = data.get("structure_sha256")
        if not isinstance(stored, str) or stored != structure_hash(st.doc):
            raise InputError(
                f"{source}: structure_sha256: does not match the structure the model stores "
                f"(got {stored!r}); the file was edited after the fit: refit it with `drivefi fit`"
            )
    sc = field("scaling", lambda: dict(data["scaling"]))
    model = TBNModel(
        method=field("method", lambda: str(data["method"])),
        mean={n: field(f"scaling.{n}.mean", lambda n=n: float(sc[n]["mean"])) for n in st.names},
        std={n: field(f"scaling.{n}.std", lambda n=n: float(sc[n]["std"])) for n in st.names},
        transition={
            n: field(f"transition.{n}", lambda n=n: _cpd(n, data["transition"][n]))
            for n in st.names
        },
        initial={
            n: field(f"initial.{n}", lambda n=n: _cpd(n, data["initial"][n])) for n in st.names
        },
        saturation=field(
            "saturation",
            lambda: {
                n: (None if b[0] is None else float(b[0]), None if b[1] is None else float(b[1]))
                for n, b in data["saturation"].items()
            },
        ),
        contexts=field("contexts", lambda: dict(data["contexts"])),
        summary=field("training", lambda: dict(data.get("training", {}))),
        holdout=field("holdout_error", lambda: dict(data.get("holdout_error", {}))),
        structure=st,
    )
    validate(model, source)
    return model


def validate(model: TBNModel, source: str) -> None:
    """Every number a prediction uses must be usable: one line naming the field otherwise."""
    st = model.structure
    for n in st.names:
        m, s = model.mean[n], model.std[n]
        if not math.isfinite(m):
            raise InputError(f"{source}: scaling.{n}.mean: expected a finite number, got {m}")
        if not (math.isfinite(s) and s > 0):
            raise InputError(f"{source}: scaling.{n}.std: expected a finite number > 0, got {s}")
        for part, c in (("transition", model.transition[n]), ("initial", model.initial[n])):
            if tuple(c.parents) != st.parents(n, part == "initial") and part == "transition":
                raise InputError(f"{source}: {part}.{n}.parents: differ from the structure's")
            if len(c.beta) != len(c.parents) + 1:
                raise InputError(
                    f"{source}: {part}.{n}.beta: {len(c.beta)} weights for {len(c.parents)} parents"
                )
            if not np.all(np.isfinite(c.beta)):
                raise InputError(f"{source}: {part}.{n}.beta: expected finite weights")
            if not (math.isfinite(c.sigma) and c.sigma > 0):
                raise InputError(
                    f"{source}: {part}.{n}.sigma: expected a finite number > 0, got {c.sigma}"
                )
    for n, (lo, hi) in model.saturation.items():
        if n not in st.index:
            raise InputError(f"{source}: saturation.{n}: not a node of the structure")
        for b in (lo, hi):
            if b is not None and not math.isfinite(b):
                raise InputError(f"{source}: saturation.{n}: bound {b} is not finite")
        if lo is not None and hi is not None and not lo < hi:
            raise InputError(f"{source}: saturation.{n}: lower bound {lo} not below upper {hi}")
    if not model.contexts:
        raise InputError(f"{source}: contexts: model has no scenario context")


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
            f"{source}: scenarios: model was fitted on {fitted}, not on scenario "
            f"'{scenario_name}'; fit one for it"
        )


def check_stack(model: TBNModel, stack: str, points, source: str = "<model>") -> None:
    """Refuse a model of another stack (its name or its injection points differ)."""
    st = model.structure
    if st.stack and stack and st.stack != stack:
        raise InputError(
            f"{source}: stack: model is of stack '{st.stack}', not of '{stack}'; fit one for it"
        )
    if points is not None and set(points) != set(st.points):
        other = sorted(set(points) ^ set(st.points))
        raise InputError(
            f"{source}: stack: model's injection points differ from the stack's ({', '.join(other)})"
        )


def check_structure(model: TBNModel, current, source: str = "<model>") -> None:
    """Refuse a model whose structure is not ``current`` (the stack under test's structure now,
    a :class:`drivefi.tbn.structure.Structure`): other nodes, or the same structure file with
    other content than at the fit (their SHA-256 differ). An oracle structure is code, not a
    file: only its name is compared."""
    st = model.structure
    if st.name != current.name and (st.oracle or current.oracle):
        raise InputError(
            f"{source}: structure: model was fitted with structure '{st.name}', the stack's is "
            f"'{current.name}'; fit one for it"
        )
    if st.oracle:
        return
    if list(st.names) != list(current.names):
        other = sorted(set(st.names) ^ set(current.names)) or ["their order"]
        raise InputError(
            f"{source}: structure: model's nodes differ from structure '{current.name}' of the "
            f"stack ({current.source}): {', '.join(other)}; refit it with `drivefi fit`"
        )
    fitted, now = structure_hash(st.doc), structure_hash(current.doc)
    if fitted != now:
        raise InputError(
            f"{source}: structure: model was fitted with structure '{st.name}' of sha256 "
            f"{fitted[:12]}, but {current.source} is now sha256 {now[:12]} (changed since the "
            "fit); refit it with `drivefi fit`"
        )
