"""``drivefi report``: one HTML page from a results database."""

from __future__ import annotations

from pathlib import Path

import typer

from drivefi.cli.options import JsonOpt, console, emit_json


def report_cmd(
    db: Path = typer.Argument(..., help="Results database."),
    out: Path = typer.Option(Path("report.html"), "--out", help="HTML file to write."),
    as_json: bool = JsonOpt,
) -> None:
    """One HTML page: every campaign's outcomes, critical faults by point and model, plots."""
    from drivefi.report import build_report

    s = build_report(db, out)
    if as_json:
        emit_json(s)
    else:
        console.print(f"report written to {out} ({len(s['campaigns'])} campaigns)")


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
