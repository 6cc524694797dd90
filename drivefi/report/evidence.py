"""The report's section on what the search does not know: points whose faults never reached the
stack (left out of the search space) and the groups of the space the model could not resolve
(:mod:`drivefi.search.evidence`). :func:`drivefi.report.build_report` shows it when the pipeline
gives it these."""

from __future__ import annotations

from drivefi.report import page as H

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
        parts.append(f"<div class='nowrap'>{H.table(rows, cols)}</div>")
    return "".join(parts)
