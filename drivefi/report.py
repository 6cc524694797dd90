"""Report: one self-contained HTML page (tables + matplotlib plots) of a results database."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from drivefi import __version__
from drivefi.atomic import check_output, write_text
from drivefi.campaign.store import SUMMARY_COLUMNS, ResultsStore
from drivefi.errors import InputError

STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f4f4f4}img{max-width:100%}"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _plots(df: pd.DataFrame) -> list[str]:
    ok = df[df.status == "ok"]
    out = []
    by_point = ok.groupby("point")["critical"].sum().sort_values()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(by_point) + 1))
    ax.barh(by_point.index, by_point.values, color="#c0392b")
    ax.set_xlabel("critical faults")
    ax.set_title("Critical faults by injection point")
    out.append(_png(fig))
    fig, ax = plt.subplots(figsize=(7, 3))
    for name, grp in ok.groupby("critical"):
        ax.scatter(grp["start"], grp["min_delta_lat"].clip(-5, 5), s=4, alpha=0.5,
                   label="critical" if name else "masked / not critical")  # fmt: skip
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("fault start step")
    ax.set_ylabel("min delta_lat [m] (clipped to +-5)")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("Lateral safety margin after each fault")
    out.append(_png(fig))
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.hist(ok["min_delta_lon"].clip(-20, 60), bins=60, color="#2c3e50")
    ax.axvline(0, color="#c0392b", lw=1)
    ax.set_xlabel("min delta_lon [m] (clipped to -20..60)")
    ax.set_ylabel("faults")
    ax.set_title("Longitudinal safety margin after each fault")
    out.append(_png(fig))
    return out


def build_report(db: str | Path, out: str | Path) -> dict:
    """Write the HTML report; return the summary figures it shows."""
    db, out = Path(db), Path(out)
    if not db.is_file():
        raise InputError(f"{db}: results database not found")
    check_output(out, "--out")
    store = ResultsStore(db)
    try:
        camps = store.campaigns()
        parts = [
            f"<h1>DriveFI report</h1><p>{html.escape(str(db))} &middot; DriveFI {__version__}</p>"
        ]
        summary = {"db": str(db), "report": str(out), "campaigns": camps}
        cols = SUMMARY_COLUMNS
        parts.append("<h2>Campaigns</h2>" + pd.DataFrame(camps, columns=cols).to_html(index=False))
        for c in camps:
            df = store.outcomes(c["id"])
            parts.append(
                f"<h2>Campaign {c['id']}: {html.escape(c['scenario'])} ({html.escape(c['sim'])})</h2>"
            )
            if df["status"].isna().all():
                parts.append("<p>No outcomes yet.</p>")
                continue
            table = df[df.status == "ok"].pivot_table(
                index="point", columns="model", values="critical", aggfunc="sum", fill_value=0
            )
            parts.append("<h3>Critical faults by point and fault model</h3>" + table.to_html())
            parts += _plots(df)
            worst = df[df.critical == 1].sort_values(["min_delta_lat", "min_delta_lon"]).head(20)
            show = ["idx", "point", "model", "value", "bit", "start", "duration", "outcome",
                    "min_delta_lon", "min_delta_lat", "first_hazard_step"]  # fmt: skip
            parts.append(
                "<h3>Most severe critical faults</h3>"
                + worst[show].to_html(index=False, float_format="%.3f")
            )
    finally:
        store.close()
    write_text(out, f"<!doctype html><html><head><meta charset='utf-8'><title>DriveFI report</title>"
               f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>", "--out")  # fmt: skip
    return summary
