"""``drivefi fit``: fit the 3-TBN from traces and write the model file."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from drivefi.cli.options import JsonOpt, console, emit_json, kv_table

REPORT = ("v", "theta", "phi", "x", "y", "lane_offset", "heading_error")


def fit_command(
    traces: list[Path] = typer.Argument(..., help="Parquet traces (golden and random-fault runs)."),
    out: Path = typer.Option(..., "--out", help="Model file to write (JSON)."),
    method: str = typer.Option("mle", "--method", help="mle (pgmpy) | bayes (pymc, per CPD)."),
    holdout: float = typer.Option(
        0.2, "--holdout", min=0.0, max=0.9, help="Fraction of runs held out."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the hold-out split and the sampler."),
    as_json: bool = JsonOpt,
) -> None:
    """Fit the 3-TBN (linear-Gaussian, 3 time slices) and report the held-out one-step error."""
    from drivefi.tbn.dataset import read_traces
    from drivefi.tbn.fit import fit_model
    from drivefi.tbn.model_io import save_model

    t0 = time.perf_counter()
    ts = read_traces(list(traces))
    model = fit_model(ts, method, holdout, seed)
    save_model(model, out)
    summary = {
        "model": str(out),
        "method": method,
        **{k: v for k, v in model.summary.items() if k != "sources"},
        "fit_seconds": round(time.perf_counter() - t0, 3),
        "holdout_error": model.holdout,
    }
    if as_json:
        emit_json(summary)
        return
    rows = {k: v for k, v in summary.items() if k != "holdout_error"}
    console.print(kv_table("3-TBN fit", rows))
    if model.holdout:
        err = {f"{v} rmse": f"{model.holdout[v]['rmse']:.3g}" for v in REPORT if v in model.holdout}
        console.print(
            kv_table(f"Held-out one-step error ({model.holdout['windows']} windows)", err)
        )


def register(app: typer.Typer) -> None:
    app.command("fit")(fit_command)
