"""Summaries of the DIFF2 experiments from their results tables (the figures quoted in
experiments/README.md).

    python experiments/diff2_summary.py utility runs/diff2_privacy_utility
    python experiments/diff2_summary.py rate runs/diff2_rate

``utility``: per data set, method and ε, the step size with the best median (over seeds) of
the minimum train loss over the trajectory (the tuning is done on the private training data:
"tuned non-privately"), and at that step size the median and 95 % bootstrap interval over
seeds of the minimum train loss, the minimum ‖∇f‖², and the final values.

``rate``: per method and total sample count n, the utility gap (a private run's minimum
‖∇f‖² over the trajectory minus the non-private GD run's, same seed and data; also for the
train loss), its median and bootstrap interval over seeds, the log–log slope of the gap
against n with its t interval (all seeds' positive gaps as points), and the smallest n·ε
from which DIFF2's median gap stays below DP-GD's. The statistics are
:func:`fedopt.experiment.report.bootstrap_median` and :func:`fedopt.experiment.report.fit_slope`.
"""

from __future__ import annotations

import argparse
import ast
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from fedopt.experiment.report import bootstrap_median, fit_slope

#: The non-private baseline's label in both configs.
GD = "GD (non-private)"


def _table(rundir: str) -> pd.DataFrame:
    path = Path(rundir)
    df = pd.read_parquet(path / "results.parquet" if path.is_dir() else path)
    bad = df[df["status"].astype(str) == "error"]
    if len(bad):
        raise SystemExit(f"{len(bad['run_id'].unique())} run(s) ended in error, e.g.: {bad['message'].iloc[0]}")
    return df


def _cell(values: np.ndarray) -> str:
    med, lo, hi = bootstrap_median(values)
    return f"{med:.4g} [{lo:.4g}, {hi:.4g}]"


def _per_run(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per run: its keys, the minimum and final train loss and ‖∇f‖², and its final ε."""
    rows = []
    for run_id, g in df.groupby("run_id", sort=False):
        g = g.sort_values("round")
        rows.append({**{k: g[k].iloc[0] for k in keys}, "run_id": run_id,
                     "min_loss": float(g["train_loss"].min()), "min_gns": float(g["grad_norm_sq"].min()),
                     "final_loss": float(g["train_loss"].iloc[-1]), "final_gns": float(g["grad_norm_sq"].iloc[-1]),
                     "epsilon": float(g["epsilon"].iloc[-1]) if g["epsilon"].notna().any() else math.nan,
                     "status": str(g["status"].iloc[-1])})
    return pd.DataFrame(rows)


def utility(rundir: str) -> None:
    df = _table(rundir)
    label = df["algorithm"].astype(str).str.rsplit(" lr=", n=1)  # "DIFF2 eps=1 lr=0.5": one entry per step size
    df = df.assign(dataset=df["data"].map(lambda v: ast.literal_eval(v)["source"] if isinstance(v, str) else v["source"]),
                   algorithm=label.str[0], lr=label.str[1].astype(float))
    runs = _per_run(df, ["dataset", "algorithm", "lr", "seed"])
    print("| data | method | best lr | min train loss | min ‖∇f‖² | final train loss | final ‖∇f‖² | ε at R | diverged |")
    print("|---|---|---:|---|---|---|---|---:|---:|")
    for (data, alg), g in runs.groupby(["dataset", "algorithm"], sort=True):
        score = g.groupby("lr")["min_loss"].median()
        best = float(score.idxmin())
        b = g[g["lr"] == best]
        eps = b["epsilon"].max()
        print(f"| {data} | {alg} | {best:g} | {_cell(b['min_loss'].to_numpy())} | {_cell(b['min_gns'].to_numpy())} | "
              f"{_cell(b['final_loss'].to_numpy())} | {_cell(b['final_gns'].to_numpy())} | "
              f"{'—' if math.isnan(eps) else f'{eps:.4f}'} | {int((b['status'] == 'diverged').sum())}/{len(b)} |")


def rate(rundir: str) -> None:
    df = _table(rundir)
    runs = _per_run(df, ["algorithm", "n_samples", "seed"])
    eps = float(runs["epsilon"].dropna().max())
    base = runs[runs["algorithm"] == GD].set_index(["n_samples", "seed"])
    private = sorted(a for a in runs["algorithm"].unique() if a != GD)
    gaps: dict[str, pd.DataFrame] = {}
    for alg in private:
        r = runs[runs["algorithm"] == alg].set_index(["n_samples", "seed"])
        gaps[alg] = pd.DataFrame({"gns": r["min_gns"] - base["min_gns"], "loss": r["min_loss"] - base["min_loss"]})
    for metric, name in (("gns", "min ‖∇f‖² gap"), ("loss", "min train loss gap")):
        print(f"\n{name} (private minus non-private GD, same seed), median [95 % bootstrap] over seeds; ε = {eps:g}")
        sizes = sorted(runs["n_samples"].unique())
        print("| n | n·ε | " + " | ".join(private) + " |")
        print("|---:|---:|" + "---|" * len(private))
        med: dict[str, list[float]] = {a: [] for a in private}
        for n in sizes:
            cells = []
            for a in private:
                v = gaps[a][metric].xs(n, level="n_samples").to_numpy()
                med[a].append(bootstrap_median(v)[0])
                cells.append(_cell(v))
            print(f"| {n} | {n * eps:g} | " + " | ".join(cells) + " |")
        for a in private:
            g = gaps[a][metric].reset_index()
            fit = fit_slope(g["n_samples"], g[metric])
            fit_med = fit_slope(sizes, med[a])
            print(f"slope of {a}: {fit.slope:.3f} [{fit.lo:.3f}, {fit.hi:.3f}] over {fit.points} positive per-seed "
                  f"gaps; {fit_med.slope:.3f} [{fit_med.lo:.3f}, {fit_med.hi:.3f}] over the {fit_med.points} medians")
        d2, dp = next(a for a in private if "DIFF2" in a), next(a for a in private if "DP-GD" in a)
        wins = [m2 < m1 for m2, m1 in zip(med[d2], med[dp])]
        start = next((i for i in range(len(sizes)) if all(wins[i:])), None)
        print(f"DIFF2 below DP-GD at n = {[int(n) for n, w in zip(sizes, wins) if w]}; "
              + (f"from n·ε = {sizes[start] * eps:g} on" if start is not None else "not from any n on"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=("utility", "rate"))
    ap.add_argument("rundir")
    a = ap.parse_args(argv)
    (utility if a.kind == "utility" else rate)(a.rundir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
