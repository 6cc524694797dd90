"""The report's section on what the search does not know: points whose faults never reached the
stack (left out of the search space) and the groups of the space the model could not resolve
(:mod:`drivefi.search.evidence`). The pipeline adds it to the report it wrote."""

from __future__ import annotations

from pathlib import Path

from drivefi.report import page as H
from drivefi.util.atomic import write_text

SHOWN = 20  # unresolved groups listed


def evidence_section(unreached: dict, groups: list[dict]) -> str:
    """The section's HTML: the unreached points, then the unresolved groups (most predicted
    critical faults first)."""
    from drivefi.search.evidence import top_unresolved

    parts = ["<h2 id='evidence'>What the search does not know</h2>"]
    if unreached:
        rows = [{"point": p, "runs": n} for p, n in unreached.items()]
        parts.append(
            "<p>No fault at these points changed the stack's commands (throttle, brake, steer) "
            "in any run that injected one (training runs and probes with the range's ends): the "
            "stack never reads them. They are left out of the search space and never planned.</p>"
            + H.table(rows, [("point", "unreached point"), ("runs", "runs that showed it")])
        )
    top = top_unresolved(groups, SHOWN)
    n_bad = sum(g["unresolved"] for g in groups)
    parts.append(
        f"<p>{len(groups):,} groups (point x duration class x 1-s phase), {n_bad:,} unresolved: "
        "too few simulated runs where the model is uncertain, or a critical run where the plan "
        "holds nothing.</p>"
    )
    if top:
        rows = [{**g, "phase": "{:g}-{:g} s".format(*g["phase_window"])} for g in top]
        cols = [("point", "point"), ("duration_class", "duration"), ("phase", "phase"),
                ("runs", "simulated runs"), ("critical", "critical"),
                ("predicted_critical", "predicted critical"), ("uncertain", "uncertain"),
                ("predicted_share", "mean P(hazard)"), ("observed_share", "critical share"),
                ("why", "why unresolved")]  # fmt: skip
        parts.append(H.table(rows, cols))
    return "".join(parts)


def add_evidence(report: str | Path, unreached: dict, groups: list[dict]) -> None:
    """Add :func:`evidence_section` to the end of the HTML report ``report``."""
    path = Path(report)
    text = path.read_text(encoding="utf-8")
    at = text.rfind("</main>")
    if at < 0:
        from drivefi.errors import InputError

        raise InputError(f"{path}: not a DriveFI report (no </main>)")
    write_text(path, text[:at] + evidence_section(unreached, groups) + text[at:], "report")
