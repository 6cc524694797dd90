"""``drivefi fit`` (fit the 3-TBN from traces) and ``drivefi structure`` (write a structure file)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from drivefi.cli.options import (
    AgentConfigOpt,
    AgentOpt,
    JsonOpt,
    StructureOpt,
    console,
    emit_json,
    kv_table,
    stack_spec,
    work_progress,
)

REPORT = ("v", "theta", "phi", "x", "y", "lane_offset", "heading_error")


def fit_command(
    traces: list[Path] = typer.Argument(..., help="Parquet traces (golden and random-fault runs)."),
    out: Path = typer.Option(..., "--out", help="Model file to write (JSON)."),
    method: str = typer.Option("mle", "--method", help="mle (pgmpy) | bayes (pymc, per CPD)."),
    holdout: float = typer.Option(
        0.2, "--holdout", min=0.0, max=0.9, help="Fraction of runs held out."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the hold-out split and the sampler."),
    agent: str = AgentOpt,
    agent_config: str = AgentConfigOpt,
    structure: str = StructureOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Fit the 3-TBN (linear-Gaussian, 3 time slices) and report the held-out one-step error."""
    from drivefi.run.testbed import Testbed
    from drivefi.search.training import structure_for
    from drivefi.tbn.dataset import read_traces
    from drivefi.tbn.fit import fit_model
    from drivefi.tbn.model_io import save_model
    from drivefi.util.atomic import check_output

    check_output(out, "--out")
    t0 = time.perf_counter()
    st = structure_for(Testbed.of(stack_spec(agent, agent_config)), structure)
    with work_progress(not as_json) as bar:
        bar(f"reading {len(traces)} trace(s)", 0, len(traces))
        ts = read_traces(list(traces), st)
        bar(f"reading {len(traces)} trace(s)", len(traces), len(traces))
        model = fit_model(ts, method, holdout, seed, progress=bar)
    save_model(model, out)
    summary = {
        "model": str(out),
        "structure": f"{st.name} ({st.source})" + (" [ORACLE]" if st.oracle else ""),
        "method": method,
        **{k: v for k, v in model.summary.items() if k != "sources"},
        "learned": {
            n: {k: round(v, 4) for k, v in p.items()} for n, p in model.structure.params.items()
        },
        "fit_seconds": round(time.perf_counter() - t0, 3),
        "holdout_error": model.holdout,
    }
    if as_json:
        emit_json(summary)
        return
    rows = {k: v for k, v in summary.items() if k not in ("holdout_error", "learned")}
    console.print(kv_table("3-TBN fit", rows))
    if model.structure.params:
        console.print(kv_table("Learned transform parameters", summary["learned"]))
    if model.holdout:
        err = {f"{v} rmse": f"{model.holdout[v]['rmse']:.3g}" for v in REPORT if v in model.holdout}
        console.print(
            kv_table(f"Held-out one-step error ({model.holdout['windows']} windows)", err)
        )


def structure_command(
    out: Path = typer.Option(None, "--out", help="Write the structure file here (else print it)."),
    agent: str = AgentOpt,
    agent_config: str = AgentConfigOpt,
    library: bool = typer.Option(False, "--library", help="List the feature transforms instead."),
    as_json: bool = JsonOpt,
) -> None:
    """Derive the default 3-TBN structure of a stack from its injection points (names, ranges,
    module order), to copy into models/ and edit; or list the feature library."""
    from drivefi.run.testbed import Testbed
    from drivefi.search.training import point_specs
    from drivefi.tbn.structure_file import build, derive, dump, write_structure
    from drivefi.tbn.transforms import library_markdown

    if library:
        sys.stdout.write(library_markdown() + "\n")
        return
    testbed = Testbed.of(stack_spec(agent, agent_config))
    stack = testbed.stack.structure_name
    doc = derive(point_specs(testbed), stack)
    build(doc, "<derived>")  # a derived structure is always valid
    if out is None:  # as is: a file to redirect into models/ (no wrapping, no markup)
        sys.stdout.write(dump(doc))
        sys.stdout.flush()
        return
    write_structure(doc, out)
    if as_json:
        emit_json(
            {"structure": str(out), "stack": stack, "points": [p["name"] for p in doc["points"]]}
        )
        return
    console.print(f"structure of stack '{stack}' written to {out}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("fit")(fit_command)
    app.command("structure")(structure_command)
