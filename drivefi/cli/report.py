"""``drivefi report``: one HTML page from a results database."""

from __future__ import annotations

from pathlib import Path

import typer

from drivefi.cli.options import JsonOpt, console, emit_json


def report_cmd(
    db: Path = typer.Argument(..., help="Results database."),
    out: Path = typer.Option(Path("report.html"), "--out", help="HTML file to write."),
    plan: list[Path] = typer.Option(
        None,
        "--plan",
        help="Search plan CSV with p_hazard/predicted_delta (repeatable; default: the plan CSVs "
        "next to the database). Matched to its campaign by plan hash.",
    ),
    scenario: list[Path] = typer.Option(
        None, "--scenario", help="Scenario YAML of a campaign whose scenario is not bundled."
    ),
    top: int = typer.Option(6, "--top", min=0, help="Distinct cases shown with timelines."),
    as_json: bool = JsonOpt,
) -> None:
    """One HTML page to act on: search vs random, distinct critical cases with replay commands,
    timelines against the golden run, heat map over point x start time, calibration."""
    from drivefi.report import build_report

    s = build_report(db, out, plans=plan or None, scenario_files=scenario or None, top=top)
    from drivefi.cli.options import err_console
    from drivefi.report.build import unsafe_golden_text

    for u in s["unsafe_golden"]:  # a stack that fails with no fault: said wherever one looks
        err_console.print(unsafe_golden_text(u), markup=False, highlight=False, soft_wrap=True)
    if as_json:
        emit_json(s)
    else:
        console.print(
            f"report written to {out} ({len(s['campaigns'])} campaigns, {s['cases']} distinct "
            f"critical cases)"
        )


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
