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
``test_accuracy`` and ``attack_success``. The x axis is logarithmic when it spans two decades:
then symmetric-logarithmic when a curve starts at 0 (no messages sent yet), linear
up to the smallest positive value, so that every curve's starting point (e.g. the
initial overshoot of a method) stays on the figure. Axes are labelled with their
units, colours come from the Okabe–Ito palette (distinguishable with the common
colour-vision deficiencies; line styles repeat it beyond eight lines), the legend
sits below the panels, outside the data, and the figure is written as PNG, PDF or
SVG (vector) after its file's suffix.

:func:`plot_scaling` draws a communication-complexity report's scaling plot: cost
to reach the target against a swept quantity, log–log.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fedopt.experiment.store import temp_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

X_COLUMNS = ("messages", "bytes", "time", "link_time", "grad_evals", "queries", "round", "epsilon")
Y_COLUMNS = ("subopt", "dist_opt", "consensus", "grad_norm_sq", "train_loss", "test_accuracy", "attack_success",
             "grad_cosine", "grad_cosine_local")
#: y columns drawn on a linear axis whatever their values.
LINEAR_Y_COLUMNS = ("test_accuracy", "attack_success", "grad_cosine", "grad_cosine_local")
#: y columns drawn on a log axis only when every value is positive.
SIGNED_Y_COLUMNS = ("train_loss",)
_NAMES = {
    "messages": "messages sent (count)", "bytes": "bytes sent (B)",
    "time": "simulated time (rounds; n gradients per unit)", "link_time": "link time (s, link-cost model)",
    "grad_evals": "gradient evaluations (count)", "queries": "function queries (count)", "round": "rounds (count)",
    "epsilon": "privacy spent ε (cumulative, at the run's δ)",
    "subopt": "f(x̄) − f*", "dist_opt": "mean ‖xᵢ − x*‖²", "consensus": "mean ‖xᵢ − x̄‖²",
    "grad_norm_sq": "‖∇f(x̄)‖²", "train_loss": "train loss f(x̄)",
    "test_accuracy": "test accuracy of x̄ (fraction)", "attack_success": "attack success at x̄ (fraction)",
    "grad_cosine": "cos(step direction, ∇f) (mean over clients and local steps)",
    "grad_cosine_local": "cos(local estimate, ∇fᵢ) (mean over clients and local steps)",
    "n": "nodes n", "edges": "edges |E|", "lambda2": "λ2 of L_G",
    "chi1": "χ1 = 1/λ2 of L_G", "chi2": "χ2 (max ½ effective resistance)", "sqrt_chi1_chi2": "√(χ1χ2) of L_G",
    "chi": "χ = λmax/λ2 of L_G", "diameter": "diameter (hops)", "kappa": "κ = L/μ",
}
GRID_POINTS = 200
#: Okabe & Ito's colour-blind-safe palette (the pale yellow last).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: Output formats (from the file's suffix).
FORMATS = ("png", "pdf", "svg")


def label(column: str) -> str:
    """The axis label of a column, with its unit (the column's own name when it has no label)."""
    return _NAMES.get(column, column)


def style(i: int) -> dict[str, Any]:
    """Colour and line style of the ``i``-th line."""
    return {"color": PALETTE[i % len(PALETTE)], "ls": LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)]}


def check_format(path: Path) -> str:
    fmt = path.suffix.lstrip(".").lower() or "png"
    if fmt not in FORMATS:
        raise ValueError(f"plot: the output format must be one of {', '.join(FORMATS)} (the file's suffix); got {fmt!r}")
    return fmt


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
        d = d[d["_x"] >= 0]  # 0 (nothing spent yet) stays: drawn on a symmetric-log axis
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
                pos = min(float(g["_x"][g["_x"] > 0].min()) for g in runs if (g["_x"] > 0).any())
                grid = np.geomspace(max(lo, pos), hi, GRID_POINTS - (lo == 0))
                if lo == 0:
                    grid = np.concatenate(([0.0], grid))
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
    """Draw ``y`` against ``x`` (median over seeds, min–max band) to ``out_path`` (PNG, PDF or SVG
    after its suffix)."""
    out = Path(out_path)
    check_format(out)
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    data = curves(df, x, y)
    yvals = pd.to_numeric(df[y], errors="coerce").to_numpy(dtype=float)
    ylog = log_y(y, yvals[np.isfinite(yvals)])
    xs_all = pd.to_numeric(df[x], errors="coerce").to_numpy(dtype=float)
    xs_all = xs_all[np.isfinite(xs_all)]
    xlog = _log_x(xs_all)
    lines: list[str] = []
    for panel in data.values():
        for line in panel:
            if line not in lines:
                lines.append(line)
    top_y = _y_ceiling(df, y, ylog)
    styles = {line: style(i) for i, line in enumerate(lines)}
    k = len(data)
    cols = min(k, 3)
    rows = math.ceil(k / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.6 * cols, 6.0), 3.6 * rows), squeeze=False, sharey=True)
    for ax, (top, panel) in zip(axes.flat, data.items()):
        for line, c in panel.items():
            med, lo, hi = (np.minimum(c[k], top_y * 1e3) for k in ("median", "lo", "hi"))
            ax.plot(c["x"], med, label=line, lw=1.6, **styles[line])
            if len(c["x"]) > 1:
                ax.fill_between(c["x"], lo, hi, color=styles[line]["color"], alpha=0.2, lw=0)
            ax.plot(c["x"][:1], med[:1], marker="o", ms=3.5, color=styles[line]["color"], ls="none")  # the start
        if math.isfinite(top_y) and ylog:
            lows = [float(np.nanmin(c["lo"])) for c in panel.values() if np.isfinite(c["lo"]).any()]
            bottom = min(lows) if lows else top_y / 10
            ax.set_ylim(bottom / 2, max(top_y * 2, bottom * 10))
        elif math.isfinite(top_y) and top_y > 0:
            ax.set_ylim(top=top_y * 1.05)
        ax.set_title(top)
        ax.set_xlabel(label(x))
        if xlog:
            _log_x_axis(ax, xs_all)
        if ylog:
            ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes.flat[k:]:
        ax.set_visible(False)
    for r in range(rows):
        axes[r, 0].set_ylabel(label(y))
    _legend_below(fig, axes.flat[:k], title or f"{y} vs {x}")
    return _save(fig, out)


def _log_x_axis(ax: Axes, xs: np.ndarray) -> None:
    """Logarithmic x; symmetric-logarithmic (linear below the smallest positive value) when
    some value is 0, so a curve's first point, at 0, is drawn."""
    pos = xs[xs > 0]
    if (xs == 0).any() and len(pos):
        ax.set_xscale("symlog", linthresh=float(pos.min()), linscale=0.25)
        ax.set_xlim(left=0.0)  # no negative decades
    else:
        ax.set_xscale("log")


def _legend_below(fig: Figure, axes: Any, title: str, ncol: int = 4) -> None:
    """One legend for the figure, below the panels (outside every panel's data)."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if not lab.startswith("_"):
                handles.setdefault(lab, h)
    ncol = max(1, min(len(handles), ncol))
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=ncol,
               frameon=False, bbox_to_anchor=(0.5, 0.0), fontsize=8)
    fig.suptitle(title, fontsize=11)
    legend_rows = math.ceil(len(handles) / ncol)
    fig.tight_layout(rect=(0, 0.05 + 0.04 * legend_rows, 1, 0.95))


def _save(fig: Figure, out: Path) -> Path:
    """Write ``fig`` to ``out`` atomically (format from the suffix: PNG at 150 dpi, PDF or SVG as vectors)."""
    import matplotlib.pyplot as plt

    fmt = check_format(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out)
    try:
        fig.savefig(tmp, dpi=150, format=fmt)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return out


def plot_scaling(per_run: pd.DataFrame, x: str, cost: str, out_path: str | Path,
                 scaling: pd.DataFrame | None = None) -> Path:
    """Cost to reach the target against ``x``, log–log: one panel per topology, one line per
    algorithm (median over the runs at each x with its bootstrap 95 % interval, the fitted
    line with its slope and interval in the legend), and, where the algorithm declares its
    complexity, the theory line (its shape over the runs' graphs; its constant unknown, so
    fitted to the points). ``per_run``: :attr:`fedopt.experiment.report.Report.per_run`."""
    from fedopt.experiment.report import ALIASES, bootstrap_median, fit_slope, predicted_cost, scaling_table

    out = Path(out_path)
    check_format(out)
    xc = ALIASES.get(x, x)
    if xc not in per_run.columns or cost not in per_run.columns:
        raise ValueError(f"plot: the report has no column {xc if xc not in per_run.columns else cost!r}")
    sc = scaling if scaling is not None else scaling_table(per_run, x, cost)
    pred, formulas, _ = predicted_cost(per_run, cost)
    d = per_run.assign(_x=pd.to_numeric(per_run[xc], errors="coerce").astype(float), _pred=pred, _formula=formulas)
    d = d[np.isfinite(d["_x"]) & (d["_x"] > 0)]
    reached = d[d["reached"].astype(bool) & (pd.to_numeric(d[cost], errors="coerce") > 0)]
    if len(reached) == 0:
        raise ValueError(f"plot: no run reached the target, so there is no {cost} to plot against {x}")
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    panels = list(pd.unique(d["topology"].astype(str))) if "topology" in d else [""]
    algs = list(pd.unique(d["algorithm"].astype(str)))
    k = len(panels)
    fig, axes = plt.subplots(k, 1, figsize=(10.5, 3.4 * k), squeeze=False)
    xs_all = np.sort(pd.unique(d["_x"]))
    for ax, top in zip(axes.flat, panels):
        dp = d[d["topology"].astype(str) == top] if top else d
        for i, alg in enumerate(algs):
            da = dp[dp["algorithm"].astype(str) == alg]
            ok = da[da["reached"].astype(bool)]
            if len(ok) == 0:
                continue
            st = style(i)
            xs = np.sort(pd.unique(da["_x"]))
            meds, los, his = [], [], []
            for xv in xs:
                g = da[da["_x"] == xv]
                vals = np.where(g["reached"].astype(bool), g[cost].to_numpy(dtype=float), np.inf)
                m, lo, hi = bootstrap_median(vals)
                meds.append(m)
                los.append(lo)
                his.append(hi)
            m_a, lo_a, hi_a = np.array(meds), np.array(los), np.array(his)
            fin = np.isfinite(m_a)
            with np.errstate(invalid="ignore"):
                err = np.vstack([m_a - lo_a, np.where(np.isfinite(hi_a), hi_a, m_a) - m_a])
            fit = fit_slope(ok["_x"], ok[cost])
            row = sc[(sc["algorithm"].astype(str) == alg) & ((sc["topology"].astype(str) == top) if top else True)] \
                if "topology" in sc else sc[sc["algorithm"].astype(str) == alg]
            interval = (f" [{fit.lo:.2f}, {fit.hi:.2f}]" if math.isfinite(fit.lo) else "")
            lab = f"{alg}: {fit.slope:.2f}{interval}" if math.isfinite(fit.slope) else alg
            missing = int((~da["reached"].astype(bool)).sum())
            if missing:
                lab += f" ({missing} runs not reached)"
            ax.errorbar(xs[fin], m_a[fin], yerr=err[:, fin], color=st["color"], marker=MARKERS[i % len(MARKERS)],
                        ls="none", ms=4, capsize=2, label=lab)
            if math.isfinite(fit.slope):
                xx = np.geomspace(xs[fin].min(), xs[fin].max(), 50) if fin.any() else xs
                ax.plot(xx, np.exp(fit.intercept) * xx**fit.slope, color=st["color"], ls="-", lw=1.2)
            theo = ok[np.isfinite(ok["_pred"]) & (ok["_pred"] > 0)]
            if len(theo) and len(row) and isinstance(row["theory"].iloc[0], str) and row["theory"].iloc[0]:
                logc = float(np.median(np.log(theo[cost].to_numpy(dtype=float)) - np.log(theo["_pred"].to_numpy())))
                tx = np.sort(pd.unique(da["_x"][np.isfinite(da["_pred"])]))
                ty = [math.exp(logc) * float(np.median(da["_pred"][da["_x"] == v])) for v in tx]
                ax.plot(tx, ty, color=st["color"], ls=":", lw=1.4,
                        label=f"{alg} theory ∝ {row['theory'].iloc[0]}: {row['theory_slope'].iloc[0]:.2f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        if len(xs_all) <= 8:  # few swept values: label them plainly
            from matplotlib.ticker import FixedLocator, NullLocator

            ax.xaxis.set_major_locator(FixedLocator(list(xs_all)))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([f"{v:.3g}" for v in xs_all])
        ax.set_title(top, fontsize=10)
        ax.set_xlabel(label(xc if xc != "n_nodes" else "n"))
        ax.set_ylabel(f"{label(cost)}\nto target", fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False,
                  title="log–log slope [95 % interval]", title_fontsize=7)
    fig.suptitle(f"{cost} to reach the target vs {x} (median over seeds, bootstrap 95 % interval; theory: "
                 "declared complexity, constant unknown, fitted)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return _save(fig, out)


#: The plots :func:`fedopt.experiment.runner.run_experiment` draws: (x, y).
DEFAULT_PLOTS = (("messages", "dist_opt"), ("grad_evals", "dist_opt"), ("time", "subopt"))
#: Drawn as well when some topology has link costs (``link_time`` > 0).
LINK_COST_PLOTS = (("link_time", "dist_opt"),)

__all__ = ["DEFAULT_PLOTS", "FORMATS", "LINEAR_Y_COLUMNS", "LINK_COST_PLOTS", "PALETTE", "X_COLUMNS", "Y_COLUMNS",
           "curves", "label", "log_y", "plot_results", "plot_scaling"]
