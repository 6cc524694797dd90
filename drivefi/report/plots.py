"""The report's figures (matplotlib, Agg): fault timelines against the golden run, the heat map of
critical faults over injection point x start time, the search's calibration, margins. Times in
seconds. Each function returns a figure; :func:`png` turns it into PNG bytes."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap

from drivefi.report.data import step_ranges

GOLDEN, FAULTY, WINDOW, HAZARD = "#7f8c8d", "#c0392b", "#f5b7b1", "#8e44ad"
ROLE_COLOURS = {"search": "#2471a3", "random": "#d68910"}


def png(fig, dpi: int = 90) -> bytes:
    """PNG bytes of ``fig`` (layouts are fixed by each function: no tight-bbox pass, which costs
    more than drawing)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def _time(frame: pd.DataFrame, dt: float) -> np.ndarray:
    return frame["k"].to_numpy() * dt


def timeline(
    faulty: pd.DataFrame,
    golden: pd.DataFrame | None,
    fault: dict,
    dt: float,
    title: str = "",
    first_hazard_step: int | None = None,
    accident: tuple[str, int] | None = None,
):
    """Faulty run against the golden run: delta_lon, delta_lat, the corrupted point, speed, steer
    and brake over time [s]; the fault window shaded, the first hazard marked."""
    point = fault.get("point")
    panels = [
        ("delta_lon", "delta_lon [m]"),
        ("delta_lat", "delta_lat [m]"),
        (point, f"{point} (as seen)") if point in faulty.columns else ("throttle", "throttle"),
        ("v", "speed [m/s]"),
        ("steer", "steer command applied [-1, 1]"),
        ("brake", "brake command applied [0, 1]"),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(11, 4.6), sharex=True)
    t0, t1 = fault["start"] * dt, (fault["start"] + fault["duration"]) * dt
    tf = _time(faulty, dt)
    for ax, (col, name) in zip(axes.flat, panels, strict=True):
        ax.axvspan(t0, t1, color=WINDOW, alpha=0.6, lw=0)
        if golden is not None and col in golden.columns:
            ax.plot(_time(golden, dt), golden[col], color=GOLDEN, lw=2.4, alpha=0.8,
                    label="golden run")  # fmt: skip
        if col in faulty.columns:
            ax.plot(tf, faulty[col], color=FAULTY, lw=1.2, label="faulty run")
        if col.startswith("delta"):
            ax.axhline(0, color="k", lw=0.8)
            lo = np.nanmin(faulty[col].to_numpy()) if col in faulty.columns else 0.0
            hi = np.nanmax(golden[col].to_numpy()) if golden is not None else np.nan
            if np.isfinite(lo) and np.isfinite(hi):
                ax.set_ylim(min(lo, 0) - 0.5, min(hi, 40.0) + 0.5)
        if first_hazard_step is not None and first_hazard_step >= 0:
            ax.axvline(first_hazard_step * dt, color=HAZARD, lw=1, ls="--")
        if accident is not None:
            ax.axvline(accident[1] * dt, color="k", lw=1.2, ls=":")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    # zoom on the fault: 2 s before it to 4 s after it ends (or after the first hazard)
    t_end = float(tf[-1]) if len(tf) else t1
    t_hz = (
        first_hazard_step * dt if first_hazard_step is not None and first_hazard_step >= 0 else t1
    )
    axes[0, 0].set_xlim(max(0.0, t0 - 2.0), min(t_end, max(t1, t_hz) + 4.0))
    for ax in axes[1]:
        ax.set_xlabel("time [s]", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles.append(plt.Rectangle((0, 0), 1, 1, color=WINDOW, alpha=0.6))
    labels.append("fault active")
    if first_hazard_step is not None and first_hazard_step >= 0:
        handles.append(plt.Line2D([], [], color=HAZARD, ls="--"))
        labels.append("first hazard")
    if accident is not None:
        handles.append(plt.Line2D([], [], color="k", ls=":"))
        labels.append(accident[0])
    top = 0.83 if title else 0.88
    fig.legend(handles, labels, loc="upper right", bbox_to_anchor=(0.99, top + 0.11),
               ncol=len(labels), fontsize=8, frameon=False)  # fmt: skip
    if title:
        fig.suptitle(title, x=0.01, y=0.995, ha="left", fontsize=10)
    fig.subplots_adjust(left=0.05, right=0.99, top=top, bottom=0.1, wspace=0.22, hspace=0.35)
    return fig


def accident_of(outcome: dict) -> tuple[str, int] | None:
    """("collision" | "road departure", step) of an outcome row, whichever came first."""
    hits = [(str(name), int(outcome.get(key)))
            for name, key in (("collision", "collision_step"), ("road departure", "departure_step"))
            if outcome.get(key) is not None and not pd.isna(outcome.get(key))
            and int(outcome.get(key)) >= 0]  # fmt: skip
    return min(hits, key=lambda h: h[1]) if hits else None


def heatmap(panels: list[tuple[str, pd.DataFrame]], points: list[str], duration_s: float,
            golden: pd.DataFrame | None = None, dt: float | None = None, bin_s: float = 0.5):  # fmt: skip
    """Critical faults per (injection point, fault start time bin), one panel per campaign.

    ``panels``: (title, outcomes with t_start and critical). A dot marks cells where faults were
    injected and none was critical; empty cells had no injection. With ``golden``, a strip on top
    shows the golden run's margins over the same time axis.
    """
    edges = np.arange(0.0, duration_s + bin_s, bin_s)
    rows = len(panels) + (golden is not None)
    heights = ([1.2] if golden is not None else []) + [0.32 * len(points) + 0.6] * len(panels)
    fig, axes = plt.subplots(
        rows, 1, figsize=(11, sum(heights) + 0.6), sharex=True,
        gridspec_kw={"height_ratios": heights}, squeeze=False,
    )  # fmt: skip
    axes = axes[:, 0]
    if golden is not None:
        ax = axes[0]
        t = _time(golden, dt)
        ax.plot(t, golden["delta_lon"], color="#2c3e50", lw=1.2, label="delta_lon")
        ax.plot(t, golden["delta_lat"], color="#16a085", lw=1.2, label="delta_lat")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylim(-0.3, 6.0)
        title = "golden run's safety margins (0-6 m shown): small margin = exposed"
        unsafe = step_ranges(np.flatnonzero(golden["hazard"].to_numpy(bool)))
        for i, (a, b) in enumerate(unsafe):  # hazardous with no fault at all
            ax.axvspan(a * dt, (b + 1) * dt, color=FAULTY, alpha=0.3, lw=0,
                       label="golden run unsafe" if i == 0 else None)  # fmt: skip
        if unsafe:
            title += "; UNSAFE with no fault where shaded"
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_ylabel("margin [m]", fontsize=8)
        ax.legend(fontsize=7, loc="upper right", ncol=3, frameon=False)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        axes = axes[1:]
    cmax = 1
    grids = []
    for _, df in panels:
        ok = df[df["status"] == "ok"]
        crit = np.zeros((len(points), len(edges) - 1))
        seen = np.zeros_like(crit)
        for i, p in enumerate(points):
            sel = ok[ok["point"] == p]
            seen[i] = np.histogram(sel["t_start"], edges)[0]
            crit[i] = np.histogram(sel.loc[sel["critical"] == 1, "t_start"], edges)[0]
        grids.append((crit, seen))
        cmax = max(cmax, int(crit.max()))
    cmap = ListedColormap(plt.get_cmap("Reds")(np.linspace(0.15, 1.0, 256))).with_extremes(
        bad="white"
    )
    bars = []
    for ax, (title, _), (crit, seen) in zip(axes, panels, grids, strict=True):
        shown = np.ma.masked_where(crit == 0, crit)
        im = ax.pcolormesh(edges, np.arange(len(points) + 1), shown, cmap=cmap, vmin=1, vmax=cmax)
        yy, xx = np.nonzero((crit == 0) & (seen > 0))
        ax.scatter(edges[xx] + bin_s / 2, yy + 0.5, s=4, color="#95a5a6", lw=0)
        ax.set_yticks(np.arange(len(points)) + 0.5, points, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
        bars.append((ax, im))
    axes[-1].set_xlabel(f"fault start time [s] (bins of {bin_s:g} s)", fontsize=8)
    height = sum(heights) + 0.6
    fig.subplots_adjust(left=0.2, right=0.93, top=1 - 0.25 / height, bottom=0.45 / height,
                        hspace=0.5 / np.mean(heights))  # fmt: skip
    for ax, im in bars:  # colour bars beside the panels, so every panel keeps one time axis
        box = ax.get_position()
        cb = fig.colorbar(im, cax=fig.add_axes((0.945, box.y0, 0.012, box.height)))
        cb.set_label("critical faults", fontsize=8)
        cb.ax.tick_params(labelsize=7)
        cb.set_ticks(np.unique(np.linspace(1, cmax, min(cmax, 5)).round()))
    return fig


def calibration(df: pd.DataFrame, bins: np.ndarray):
    """Search predictions against outcomes: P(hazard) bins vs observed hazard rate, and predicted
    delta vs the observed worst margin."""
    ok = df[(df["status"] == "ok") & df["p_hazard"].notna()]
    observed = ok["outcome"].isin(["hazard", "accident"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    idx = np.clip(np.digitize(ok["p_hazard"], bins) - 1, 0, len(bins) - 2)
    centres, rates, counts = [], [], []
    for i in range(len(bins) - 1):
        m = idx == i
        if m.any():
            centres.append(ok["p_hazard"][m].mean())
            rates.append(observed[m].mean())
            counts.append(int(m.sum()))
    a.plot([0, 1], [0, 1], color="k", lw=0.8, ls=":", label="perfect calibration")
    a.scatter(centres, rates, s=[20 + 3 * np.sqrt(c) * 4 for c in counts], color="#2471a3",
              label="faults in bin (size: count)", zorder=3)  # fmt: skip
    for x, y, c in zip(centres, rates, counts, strict=True):
        a.annotate(str(c), (x, y), textcoords="offset points", xytext=(6, -10), fontsize=7)
    a.set_xlim(0, 1.02)
    a.set_ylim(-0.02, 1.05)
    a.set_xlabel("predicted P(hazard)", fontsize=8)
    a.set_ylabel("observed hazard rate", fontsize=8)
    a.set_title("Predicted P(hazard) vs observed", fontsize=9)
    a.legend(fontsize=7, loc="upper left")
    worst = ok[["min_delta_lon", "min_delta_lat"]].min(axis=1)
    pdelta = ok["predicted_delta"].clip(-10, 10)
    b.scatter(pdelta[observed], worst[observed].clip(-10, 10), s=6, color=FAULTY,
              label="hazard / accident")  # fmt: skip
    b.scatter(pdelta[~observed], worst[~observed].clip(-10, 10), s=6, color=GOLDEN,
              label="masked")  # fmt: skip
    lim = [-10, 10]
    b.plot(lim, lim, color="k", lw=0.8, ls=":")
    b.axhline(0, color="k", lw=0.5)
    b.axvline(0, color="k", lw=0.5)
    b.set_xlabel("predicted delta [m] (clipped to +-10)", fontsize=8)
    b.set_ylabel("observed min delta [m]", fontsize=8)
    b.set_title("Predicted vs observed safety margin", fontsize=9)
    b.legend(fontsize=7, loc="upper left")
    for ax in (a, b):
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.06, right=0.99, top=0.92, bottom=0.13, wspace=0.18)
    return fig


def time_to_hazard(panels: list[tuple[str, str, pd.DataFrame]]):
    """Histogram of time to hazard [s] of critical faults, one colour per campaign role."""
    fig, ax = plt.subplots(figsize=(6.5, 2.6))
    data = [(t, r, d.loc[d["critical"] == 1, "time_to_hazard"].dropna()) for t, r, d in panels]
    top = max([float(x.max()) for _, _, x in data if len(x)] + [0.5])
    edges = np.linspace(0, top + 1e-9, 25)
    for title, role, x in data:
        if len(x):
            ax.hist(x, edges, weights=np.full(len(x), 1.0 / len(x)), alpha=0.6,
                    color=ROLE_COLOURS.get(role, "#555"), label=f"{title}: {len(x)} faults")  # fmt: skip
    ax.set_xlabel("time from fault start to first hazard [s]", fontsize=8)
    ax.set_ylabel("share of its critical faults", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.12, right=0.98, top=0.96, bottom=0.16)
    return fig


def margins(df: pd.DataFrame):
    """Each fault's worst margins against its start time (critical ones red)."""
    ok = df[df["status"] == "ok"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 2.8), sharex=True)
    for ax, col, clip in (
        (axes[0], "min_delta_lon", (-20, 60)),
        (axes[1], "min_delta_lat", (-5, 5)),
    ):
        for crit, grp in ok.groupby("critical"):
            ax.scatter(grp["t_start"], grp[col].clip(*clip), s=4, alpha=0.6,
                       color=FAULTY if crit else GOLDEN,
                       label="critical" if crit else "not critical")  # fmt: skip
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("fault start time [s]", fontsize=8)
        ax.set_ylabel(f"{col} [m] (clipped {clip[0]}..{clip[1]})", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower left")
    fig.subplots_adjust(left=0.07, right=0.99, top=0.95, bottom=0.17, wspace=0.2)
    return fig
