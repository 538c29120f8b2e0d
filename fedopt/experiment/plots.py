"""Communication-complexity plots from the results table.

:func:`plot_results` draws one panel per topology and, in each, one line per
algorithm (its label plus the swept values, if any): the median over seeds with
a min–max band. Each seed's curve is interpolated onto a common x grid before
the median is taken (seeds record at different counter values), and the grid
covers the union of the seeds' ranges (a seed contributes only inside its own).
The y axis is logarithmic for the error metrics (``subopt``, ``dist_opt``,
``consensus``, ``grad_norm_sq``) when some values are positive (non-positive
values, e.g. round-off below ``f*``, are left out), for ``train_loss`` when every
value is positive (a loss may be negative: then it is linear), and never for
``test_accuracy``; the x axis is logarithmic when it spans two decades.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedopt.experiment.store import temp_path

X_COLUMNS = ("messages", "bytes", "time", "link_time", "grad_evals", "queries", "round")
Y_COLUMNS = ("subopt", "dist_opt", "consensus", "grad_norm_sq", "train_loss", "test_accuracy")
#: y columns drawn on a linear axis whatever their values.
LINEAR_Y_COLUMNS = ("test_accuracy",)
#: y columns drawn on a log axis only when every value is positive.
SIGNED_Y_COLUMNS = ("train_loss",)
_NAMES = {
    "messages": "messages", "bytes": "bytes sent", "time": "simulated time",
    "link_time": "link time (s, link-cost model)", "grad_evals": "gradient evaluations",
    "queries": "function queries", "round": "rounds", "subopt": "f(x̄) − f*", "dist_opt": "mean ‖xᵢ − x*‖²",
    "consensus": "mean ‖xᵢ − x̄‖²", "grad_norm_sq": "‖∇f(x̄)‖²", "train_loss": "train loss f(x̄)",
    "test_accuracy": "test accuracy of x̄",
}
GRID_POINTS = 200


def check_axes(x: str, y: str) -> None:
    if x not in X_COLUMNS:
        raise ValueError(f"plot: x must be one of {', '.join(X_COLUMNS)}; got {x!r}")
    if y not in Y_COLUMNS:
        raise ValueError(f"plot: y must be one of {', '.join(Y_COLUMNS)}; got {y!r}")


def log_y(y: str, values: np.ndarray) -> bool:
    """Whether ``y`` is drawn on a log axis, given its finite ``values`` (see the module doc)."""
    if y in LINEAR_Y_COLUMNS:
        return False
    if y in SIGNED_Y_COLUMNS:
        return len(values) > 0 and bool((values > 0).all())
    return bool((values > 0).any())


def _line_key(df: pd.DataFrame) -> pd.Series:
    alg = df["algorithm"].astype(str)
    if "variant" not in df:
        return alg
    var = df["variant"].fillna("").astype(str)
    return alg.where(var == "", alg + " (" + var + ")")


def curves(df: pd.DataFrame, x: str, y: str) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``{topology: {line: {"x", "median", "lo", "hi"}}}``: the aggregated curves that are drawn."""
    check_axes(x, y)
    if df is None or len(df) == 0:
        raise ValueError("plot: the results table is empty (no run finished)")
    missing = [c for c in ("run_id", "algorithm", "topology", x, y) if c not in df.columns]
    if missing:
        raise ValueError(f"plot: the results table lacks column(s) {', '.join(missing)}")
    d = df[df["status"].astype(str) != "error"] if "status" in df else df
    d = d.assign(_line=_line_key(d), _x=pd.to_numeric(d[x], errors="coerce").astype(float),
                 _y=pd.to_numeric(d[y], errors="coerce").astype(float))
    d = d[np.isfinite(d["_x"]) & np.isfinite(d["_y"])]
    ypos = log_y(y, d["_y"].to_numpy())
    if ypos:
        d = d[d["_y"] > 0]
    if len(d) == 0:
        raise ValueError(f"plot: no finite values of {y!r} against {x!r} in the results table")
    logx = _log_x(d["_x"].to_numpy())
    if logx:
        d = d[d["_x"] > 0]
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for top, dt in d.groupby("topology", sort=False):
        panel: dict[str, dict[str, np.ndarray]] = {}
        for line, dl in dt.groupby("_line", sort=False):
            runs = [g.sort_values("_x") for _, g in dl.groupby("run_id", sort=False)]
            lo = min(float(g["_x"].iloc[0]) for g in runs)
            hi = max(float(g["_x"].iloc[-1]) for g in runs)
            if hi <= lo:
                grid = np.array([lo])
            elif logx:
                grid = np.geomspace(lo, hi, GRID_POINTS)
            else:
                grid = np.linspace(lo, hi, GRID_POINTS)
            ys = np.full((len(runs), len(grid)), np.nan)
            for k, g in enumerate(runs):
                gx, gy = g["_x"].to_numpy(), g["_y"].to_numpy()
                gx, idx = np.unique(gx, return_index=True)  # equal x: keep the first record
                gy = gy[idx]
                if ypos:
                    gy = np.log(gy)
                inside = (grid >= gx[0]) & (grid <= gx[-1])
                ys[k, inside] = np.interp(grid[inside], gx, gy)
            keep = np.isfinite(ys).any(axis=0)
            ys, grid = ys[:, keep], grid[keep]
            med, mn, mx = np.nanmedian(ys, axis=0), np.nanmin(ys, axis=0), np.nanmax(ys, axis=0)
            if ypos:
                med, mn, mx = np.exp(med), np.exp(mn), np.exp(mx)
            panel[str(line)] = {"x": grid, "median": med, "lo": mn, "hi": mx}
        out[str(top)] = panel
    return out


def _y_ceiling(df: pd.DataFrame, y: str, ylog: bool) -> float:
    """Top of the y axis: the largest value of the runs that did not diverge (diverged
    curves leave the plot through the top instead of squashing the others)."""
    d = df[df["status"].astype(str) == "ok"] if "status" in df else df
    vals = pd.to_numeric(d[y], errors="coerce").to_numpy(dtype=float)
    vals = vals[np.isfinite(vals) & ((vals > 0) if ylog else True)]
    if len(vals) == 0:
        first = df.groupby("run_id", sort=False)[y].first()
        vals = pd.to_numeric(first, errors="coerce").to_numpy(dtype=float)
        vals = vals[np.isfinite(vals) & ((vals > 0) if ylog else True)]
    return float(vals.max()) if len(vals) else math.inf


def _log_x(xs: np.ndarray) -> bool:
    pos = xs[xs > 0]
    return len(pos) > 1 and float(pos.max()) / float(pos.min()) >= 100.0


def plot_results(df: pd.DataFrame, x: str, y: str, out_path: str | Path, title: str | None = None) -> Path:
    """Draw ``y`` against ``x`` (median over seeds, min–max band) to ``out_path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    data = curves(df, x, y)
    yvals = pd.to_numeric(df[y], errors="coerce").to_numpy(dtype=float)
    ylog = log_y(y, yvals[np.isfinite(yvals)])
    xs_all = pd.to_numeric(df[x], errors="coerce").to_numpy(dtype=float)
    xlog = _log_x(xs_all[np.isfinite(xs_all)])
    lines: list[str] = []
    for panel in data.values():
        for line in panel:
            if line not in lines:
                lines.append(line)
    top_y = _y_ceiling(df, y, ylog)
    cmap = plt.get_cmap("tab10" if len(lines) <= 10 else "tab20")
    colors = {line: cmap(i % cmap.N) for i, line in enumerate(lines)}
    k = len(data)
    cols = min(k, 3)
    rows = math.ceil(k / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.6 * cols, 6.0), 3.6 * rows), squeeze=False, sharey=True)
    for ax, (top, panel) in zip(axes.flat, data.items()):
        for line, c in panel.items():
            med, lo, hi = (np.minimum(c[k], top_y * 1e3) for k in ("median", "lo", "hi"))
            ax.plot(c["x"], med, color=colors[line], label=line, lw=1.6)
            if len(c["x"]) > 1:
                ax.fill_between(c["x"], lo, hi, color=colors[line], alpha=0.2, lw=0)
        if math.isfinite(top_y) and ylog:
            lows = [float(np.nanmin(c["lo"])) for c in panel.values() if np.isfinite(c["lo"]).any()]
            bottom = min(lows) if lows else top_y / 10
            ax.set_ylim(bottom / 2, max(top_y * 2, bottom * 10))
        elif math.isfinite(top_y) and top_y > 0:
            ax.set_ylim(top=top_y * 1.05)
        ax.set_title(top)
        ax.set_xlabel(_NAMES[x])
        if xlog:
            ax.set_xscale("log")
        if ylog:
            ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes.flat[k:]:
        ax.set_visible(False)
    for r in range(rows):
        axes[r, 0].set_ylabel(_NAMES[y])
    handles: dict[str, Any] = {}
    for ax in axes.flat[:k]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 4),
               frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(title or f"{y} vs {x}", fontsize=11)
    legend_rows = math.ceil(len(handles) / 4)
    fig.tight_layout(rect=(0, 0.05 + 0.04 * legend_rows, 1, 0.95))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out)
    try:
        fig.savefig(tmp, dpi=120, format=out.suffix.lstrip(".").lower() or "png")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return out


#: The plots :func:`fedopt.experiment.runner.run_experiment` draws: (x, y).
DEFAULT_PLOTS = (("messages", "dist_opt"), ("grad_evals", "dist_opt"), ("time", "subopt"))
#: Drawn as well when some topology has link costs (``link_time`` > 0).
LINK_COST_PLOTS = (("link_time", "dist_opt"),)

__all__ = ["DEFAULT_PLOTS", "LINEAR_Y_COLUMNS", "LINK_COST_PLOTS", "X_COLUMNS", "Y_COLUMNS", "curves", "log_y",
           "plot_results"]
