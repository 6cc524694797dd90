"""HTML building blocks of the report: one self-contained page (inline CSS, PNGs as base64, no
scripts, no external fetches)."""

from __future__ import annotations

import base64
import html

import pandas as pd

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
  color:#1c2833;background:#fbfcfc;line-height:1.4}
main{max-width:78em;margin:0 auto;padding:1.2em 2em 3em}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;margin:1.8em 0 .4em;padding-top:.4em;
  border-top:2px solid #d5d8dc}h3{font-size:1.05em;margin:1.2em 0 .3em}
.meta{color:#566573;font-size:.9em}
.summary{background:#fff;border:1px solid #d5d8dc;border-left:6px solid #c0392b;padding:.8em 1.2em;
  border-radius:4px}
.summary ul{margin:.3em 0;padding-left:1.3em}.summary li{margin:.25em 0}
.kpis{display:flex;gap:1em;flex-wrap:wrap;margin:.6em 0}
.kpi{background:#fff;border:1px solid #d5d8dc;border-radius:4px;padding:.5em .9em;flex:1 1 0;
  min-width:9em}
.kpi b{display:block;font-size:1.5em}.kpi span{color:#566573;font-size:.85em}
.kpi.search{border-top:4px solid #2471a3}.kpi.random{border-top:4px solid #d68910}
.kpi.speed{border-top:4px solid #1e8449}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em;background:#fff}
td,th{border:1px solid #d5d8dc;padding:.25em .55em;text-align:right;vertical-align:top}
th{background:#f2f4f4}td.l,th.l{text-align:left}
.badge{display:inline-block;padding:0 .45em;border-radius:3px;font-size:.85em;font-weight:600;color:#fff}
.accident{background:#c0392b}.hazard{background:#e67e22}.masked{background:#95a5a6}
.role{display:inline-block;padding:0 .45em;border-radius:3px;font-size:.85em;color:#fff;
  white-space:nowrap}
.role.search{background:#2471a3}.role.random{background:#d68910}.role.other{background:#566573}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em}
pre.cmd{background:#f4f6f6;border:1px solid #d5d8dc;padding:.4em .6em;white-space:pre-wrap;
  word-break:break-all;margin:.3em 0}
td pre.cmd{margin:0;font-size:.8em;background:none;border:0;padding:0;color:#34495e}
code.cmd{color:#34495e;word-break:break-all}.muted{color:#7f8c8d;font-size:.85em}
tr.sub td{border-top:0;padding-top:0;background:#fdfefe}
.case{background:#fff;border:1px solid #d5d8dc;border-radius:4px;padding:.4em 1em .8em;margin:1em 0}
img{max-width:100%;height:auto;display:block}
details{margin:.4em 0}summary{cursor:pointer;color:#2471a3}
.note{color:#7d6608;background:#fef9e7;border:1px solid #f7dc6f;padding:.3em .6em;border-radius:3px}
nav a{margin-right:1em}
.alarm{color:#fff;background:#a93226;padding:.5em .8em;border-radius:4px;margin:.5em 0}
.alarm b{font-size:1.05em}
.kpi-head{margin:.7em 0 0;font-weight:600;color:#566573;font-size:.9em}
.nowrap td{white-space:nowrap}.nowrap td:last-child{white-space:normal}
"""


def esc(x) -> str:
    return html.escape(str(x))


def img(data: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def badge(outcome: str) -> str:
    return f'<span class="badge {esc(outcome)}">{esc(outcome)}</span>'


def role(label: str, text: str | None = None) -> str:
    cls = label if label in ("search", "random") else "other"
    return f'<span class="role {cls}">{esc(text or label or "campaign")}</span>'


def cmd(text: str) -> str:
    return f'<pre class="cmd">{esc(text)}</pre>'


def code(text: str) -> str:
    return f'<code class="cmd">{esc(text)}</code>'


def table(rows: list[dict], columns: list[tuple[str, str]], raw: set[str] = frozenset()) -> str:
    """An HTML table; ``columns`` are (key, header); text columns left-aligned (their header
    too); keys in ``raw`` hold HTML already."""
    text = {k for k, _ in columns if k in raw or any(isinstance(r.get(k), str) for r in rows[:1])}
    head = "".join(f'<th class="{"l" if k in text else ""}">{esc(h)}</th>' for k, h in columns)
    body = []
    for r in rows:
        cells = []
        for k, _ in columns:
            v = r.get(k, "")
            left = k in raw or isinstance(v, str)
            text = v if k in raw else esc(_fmt(v))
            cells.append(f'<td class="{"l" if left else ""}">{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
        if r.get("_after"):  # HTML under the row, across every column
            body.append(
                f'<tr class="sub"><td class="l" colspan="{len(columns)}">{r["_after"]}</td></tr>'
            )
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<style>{STYLE}</style></head><body><main>{body}</main></body></html>"
    )
