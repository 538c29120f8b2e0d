"""Communication-complexity report: the cost of each run to reach a target accuracy.

For every run of a results table, :func:`run_costs` finds where the quality
metric (``dist_opt`` by default) first reaches the target and reads every cost
axis there (:data:`COST_AXES`: messages, bytes, gradient evaluations, queries,
simulated time, link time, rounds). Between two checkpoints the metric is
interpolated linearly in ``log(metric)`` against each cost (exact for a linearly
converging method, whose log-metric is affine in its cost), so the reported cost
does not depend on the record spacing more than the method's curvature does. A
run that never reaches the target is kept, marked not reached, with its final
value. A relative target is a fraction of the run's first recorded value.

:func:`cost_report` aggregates the seeds of each algorithm and group (``by``:
topology, swept values, ``n``, ...) into the median and a percentile bootstrap
95 % interval of the median (a fixed seed, so the same table every time); a run
that did not reach the target counts as an infinite cost, so the median is
infinite ("not reached") when half of the seeds or more did not get there.
:func:`ratio_table` divides each algorithm's median cost by a named baseline's
(in the same group, with a bootstrap interval), and :func:`scaling_table` fits
``log cost = a + b · log x`` across a swept quantity ``x`` (``n``, a swept
parameter, κ, or a spectral quantity the report computes for each run's graph:
λ2, χ1, χ2, √(χ1χ2), χ = λ_max/λ2, diameter), with the slope's t interval, next
to the slope an algorithm's declared :class:`~fedopt.algorithms.base.Complexity`
predicts over the same points (its constant unknown: only the slope is predicted,
the constant is fitted). :func:`write_report` writes ``report.parquet``,
``report.md`` and the scaling plots of a results directory; ``fedopt report`` and
``fedopt run`` (for a config with a ``report:`` section) call it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedopt.algorithms.base import GRAPH_QUANTITIES
from fedopt.experiment.store import atomic_write_parquet, atomic_write_text, load_results

#: Cost axes of the results table, in report order.
COST_AXES = ("messages", "bytes", "grad_evals", "queries", "time", "link_time", "round")
#: Quantities a scaling plot may use as its x axis besides swept columns (graph quantities and κ).
SCALING_QUANTITIES = (*GRAPH_QUANTITIES, "kappa")
#: Aliases accepted for ``by`` and ``x``: ``n`` is the ``n_nodes`` column, ``d`` the ``dim`` column.
ALIASES = {"n": "n_nodes", "d": "dim"}
#: Identity columns of a run (what may distinguish two runs of one algorithm with one seed).
IDENTITY_COLUMNS = ("topology", "variant", "n_nodes", "dim")
#: Bootstrap defaults: resamples and the generator seed (fixed: the same report every time).
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
LEVEL = 0.95
#: Output formats of the plots.
FORMATS = ("png", "pdf", "svg")


# ---- one run --------------------------------------------------------------------------


def first_crossing(values: np.ndarray, costs: np.ndarray, target: float) -> tuple[bool, np.ndarray]:
    """Where ``values`` (one per checkpoint, in order) first reach ``target`` (``≤``), on every cost axis.

    ``costs`` is ``[k, a]`` (``a`` cost axes) or ``[k]``. Between the last checkpoint above
    the target and the first at or below it, ``log(value)`` is interpolated linearly in the
    cost (one fraction for every axis); a first checkpoint already at or below the target
    gives its own costs; a crossing into a non-positive value (round-off below the optimum)
    is interpolated linearly in the value. Non-finite values (a diverged run) are skipped.
    Returns ``(reached, cost)``, ``cost`` NaN when not reached.
    """
    if not target > 0:
        raise ValueError(f"report: target must be positive, got {target}")
    v = np.asarray(values, dtype=np.float64)
    c = np.asarray(costs, dtype=np.float64)
    finite = np.isfinite(v)
    hits = np.flatnonzero(finite & (v <= target))
    if len(hits) == 0:
        return False, np.full(c.shape[1:], np.nan)
    k = int(hits[0])
    before = np.flatnonzero(finite[:k])
    if len(before) == 0:
        return True, c[k].copy()
    j = int(before[-1])
    a, b = v[j], v[k]
    if b > 0:
        frac = (math.log(a) - math.log(target)) / (math.log(a) - math.log(b))
    else:
        frac = (a - target) / (a - b)
    return True, c[j] + frac * (c[k] - c[j])


def _axes(df: pd.DataFrame) -> list[str]:
    return [a for a in COST_AXES if a in df.columns]


def check_metric(df: pd.DataFrame, metric: str) -> None:
    """``metric`` is a numeric column of the results table (any metric column, by name)."""
    from fedopt.experiment.store import COLUMNS

    if metric in COST_AXES or metric in ("seed", "n_nodes", "dim", "events", "wall_s") or metric not in df.columns:
        metrics = [c for c in df.columns if c in COLUMNS and c not in (*COST_AXES, "seed", "n_nodes", "dim", "events",
                                                                       "wall_s", "run_id", "algorithm", "topology",
                                                                       "variant", "status", "message")]
        raise ValueError(f"report: metric {metric!r} is not a metric column of the results table; "
                         f"choose one of: {', '.join(metrics)}")


#: Metrics where higher is better, with their best value: the target is reached when the
#: metric rises to it (``test_accuracy ≥ 0.9``), found on the error ``best − metric``.
HIGHER_IS_BETTER: dict[str, float] = {"test_accuracy": 1.0}


def run_costs(results: pd.DataFrame, target: float, metric: str = "dist_opt", relative: bool = False) -> pd.DataFrame:
    """One row per run: its identity, ``reached``, the target it was held to (``target_value``:
    ``target`` times the run's first recorded value when ``relative``), ``initial_value`` and
    ``final_value`` of the metric, and the cost to reach the target on every cost axis (NaN
    when not reached). Runs that errored are kept (not reached, final value NaN).

    For a metric of :data:`HIGHER_IS_BETTER` (``test_accuracy``) the target is reached when the
    metric rises to ``target`` (an absolute value below its best, e.g. 0.9): the crossing is
    found on the error ``best − metric`` against ``best − target``; ``relative`` is refused."""
    if not target > 0:
        raise ValueError(f"report: target must be positive, got {target}")
    if results is None or len(results) == 0:
        raise ValueError("report: the results table is empty (no run finished)")
    check_metric(results, metric)
    best = HIGHER_IS_BETTER.get(metric)
    if best is not None:
        if relative:
            raise ValueError(f"report: metric {metric!r} is higher-is-better; give an absolute target "
                             f"(e.g. 0.9), not a relative one")
        if not target < best:
            raise ValueError(f"report: target for {metric!r} must be below its best value {best:g}, got {target:g}")
    axes = _axes(results)
    ident = [c for c in results.columns if c not in (*COST_AXES, "events", "wall_s", "message") and
             pd.api.types.is_scalar(c)]
    rows = []
    for run_id, g in results.groupby("run_id", sort=False):
        vals = pd.to_numeric(g[metric], errors="coerce").to_numpy(dtype=np.float64)
        costs = g[axes].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        finite = np.flatnonzero(np.isfinite(vals))
        first = float(vals[finite[0]]) if len(finite) else math.nan
        last = float(vals[finite[-1]]) if len(finite) else math.nan
        tv = target * first if relative else target
        if best is None:
            reached, at = (first_crossing(vals, costs, tv) if math.isfinite(tv) and tv > 0
                           else (False, np.full(len(axes), np.nan)))
        else:
            reached, at = first_crossing(best - vals, costs, best - tv)
        head = g.iloc[0]
        row: dict[str, Any] = {c: head[c] for c in ident if c not in (metric,)}
        row["status"] = str(head["status"]) if "status" in g else "ok"
        if "status" in g and (g["status"].astype(str) == "diverged").any():
            row["status"] = "diverged"
        row.update(run_id=run_id, metric=metric, reached=bool(reached), target_value=tv, initial_value=first,
                   final_value=last)
        row.update({a: float(x) for a, x in zip(axes, at)})
        rows.append(row)
    out = pd.DataFrame(rows)
    drop = [c for c in ("subopt", "dist_opt", "consensus", "grad_norm_sq", "epsilon") if c in out.columns]
    return out.drop(columns=drop)


# ---- statistics -------------------------------------------------------------------------


def bootstrap_median(values: Sequence[float] | np.ndarray, level: float = LEVEL,
                     resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """``(median, lo, hi)``: the sample median and the percentile bootstrap ``level`` interval of the
    median (``resamples`` resamples with replacement from a generator seeded by ``seed``). ``inf``
    values (runs that did not reach a target) are allowed; NaN values are left out."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    med = float(np.median(v))
    if len(v) == 1:
        return med, med, med
    rng = np.random.default_rng(seed)
    meds = np.median(v[rng.integers(0, len(v), size=(resamples, len(v)))], axis=1)
    lo, hi = _percentiles(meds, level)
    return med, lo, hi


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    """The ``(1−level)/2`` and ``(1+level)/2`` quantiles, taken as order statistics (no
    interpolation, so infinite samples stay infinite instead of NaN)."""
    s = np.sort(samples)
    k = len(s)
    lo = s[max(0, int(math.floor((1 - level) / 2 * k)))]
    hi = s[min(k - 1, int(math.ceil((1 + level) / 2 * k)) - 1)]
    return float(lo), float(hi)


def bootstrap_ratio(values: np.ndarray, baseline: np.ndarray, level: float = LEVEL,
                    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """``(ratio, lo, hi)``: median(values) / median(baseline) and a percentile bootstrap interval
    (the two samples resampled independently)."""
    a = np.asarray(values, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan, math.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = float(np.median(a) / np.median(b))
        rng = np.random.default_rng(seed)
        ma = np.median(a[rng.integers(0, len(a), size=(resamples, len(a)))], axis=1)
        mb = np.median(b[rng.integers(0, len(b), size=(resamples, len(b)))], axis=1)
        r = ma / mb
    r = np.where(np.isnan(r), np.inf, r)  # inf/inf: neither reached; ordered last
    lo, hi = _percentiles(r, level)
    return ratio, lo, hi


@dataclass(frozen=True)
class SlopeFit:
    """Least-squares fit ``log y = intercept + slope · log x`` with the slope's t interval."""

    slope: float
    lo: float
    hi: float
    intercept: float
    points: int


def fit_slope(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, level: float = LEVEL) -> SlopeFit:
    """The log–log slope of ``y`` against ``x`` (positive finite pairs only) and its ``level``
    interval from Student's t with ``points − 2`` degrees of freedom (NaN with fewer than three
    points or a single distinct x)."""
    from scipy import stats

    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(xa) & np.isfinite(ya) & (xa > 0) & (ya > 0)
    lx, ly = np.log(xa[ok]), np.log(ya[ok])
    k = len(lx)
    if k < 2 or np.ptp(lx) == 0:
        return SlopeFit(math.nan, math.nan, math.nan, math.nan, k)
    xm = lx.mean()
    sxx = float(((lx - xm) ** 2).sum())
    slope = float(((lx - xm) * (ly - ly.mean())).sum() / sxx)
    icpt = float(ly.mean() - slope * xm)
    if k < 3:
        return SlopeFit(slope, math.nan, math.nan, icpt, k)
    resid = ly - (icpt + slope * lx)
    se = math.sqrt(float((resid**2).sum()) / (k - 2) / sxx)
    half = float(stats.t.ppf((1 + level) / 2, k - 2)) * se
    return SlopeFit(slope, slope - half, slope + half, icpt, k)


# ---- graphs, problems and declared complexities of the runs -------------------------------


def graph_quantities(top: Any) -> dict[str, float]:
    """The :data:`~fedopt.algorithms.base.GRAPH_QUANTITIES` of a topology, on its unweighted
    Laplacian ``L_G`` (a time-varying topology: ``n`` only, the others NaN)."""
    out = {q: math.nan for q in GRAPH_QUANTITIES}
    if hasattr(top, "at"):
        out["n"] = float(top.at(0.0).n)
        return out
    import networkx as nx
    import scipy.linalg as sla

    from fedopt.topology import spectral

    n = int(top.n)
    out.update(n=float(n), edges=float(top.m))
    if n < 2 or top.m == 0:
        return out
    ones = np.ones(top.m)
    l2 = spectral.lambda2(top, ones)
    if n < spectral.SPARSE_THRESHOLD:
        lmax = float(sla.eigvalsh(top.laplacian(ones), subset_by_index=[n - 1, n - 1])[0])
    else:
        import scipy.sparse.linalg as spla

        lmax = float(spla.eigsh(spectral.laplacian(top, ones, sparse=True), k=1, which="LA",
                                return_eigenvectors=False, v0=spectral.lanczos_start(n))[0])
    c1 = spectral.chi1(top, ones)
    c2 = spectral.chi2(top, ones)
    out.update(lambda2=l2, chi1=c1, chi2=c2, sqrt_chi1_chi2=math.sqrt(c1 * c2), chi=lmax / l2 if l2 > 0 else math.inf,
               diameter=float(nx.diameter(top.graph)) if math.isfinite(c1) else math.inf)
    return out


def run_info(config: Any) -> pd.DataFrame:
    """One row per run of an experiment config (an :class:`~fedopt.experiment.config.ExperimentConfig`
    or a path to its YAML): ``run_id``, the registered algorithm ``algorithm_name``, its
    validated ``params`` (JSON), the graph quantities of its topology and ``kappa`` = L/μ of its
    problem (NaN when the problem does not know both). Each distinct graph and problem is built once."""
    from fedopt.experiment.config import ExperimentConfig, build_problem, load_config, resolve_topology_paths
    from fedopt.experiment.sweep import expand, resolve_topology_ref

    cfg = config if isinstance(config, ExperimentConfig) else load_config(config)
    runs = expand(cfg, check_topologies=False)
    graphs: dict[str, dict[str, float]] = {}
    kappas: dict[str, float] = {}
    rows = []
    for r in runs:
        gkey = json.dumps(r.topology, sort_keys=True, default=str)
        if gkey not in graphs:
            graphs[gkey] = graph_quantities(resolve_topology_ref(resolve_topology_paths(r.topology, r.base_dir)))
        pkey = json.dumps([r.problem, None if "seed" in r.problem else r.seed], sort_keys=True, default=str)
        if pkey not in kappas:
            try:
                prob = build_problem(r.problem, r.seed, r.base_dir)
                L, mu = getattr(prob, "L", None), getattr(prob, "mu", None)
                kappas[pkey] = float(L) / float(mu) if L is not None and mu else math.nan
            except Exception:  # noqa: BLE001 - a problem that cannot be built here has no known κ
                kappas[pkey] = math.nan
        rows.append({"run_id": r.run_id, "algorithm_name": r.algorithm,
                     "params": json.dumps(r.params, sort_keys=True), **graphs[gkey], "kappa": kappas[pkey]})
    return pd.DataFrame(rows)


def predicted_cost(per_run: pd.DataFrame, cost: str) -> tuple[np.ndarray, list[str], list[str]]:
    """Each run's declared prediction of ``cost`` up to its unknown constant,
    ``Π q^e · κ^k · log(initial/target)`` (NaN where the algorithm declares none or a
    quantity is unknown), with the formula and reference of each run ('' where none)."""
    from fedopt.algorithms.base import algorithm_class

    pred = np.full(len(per_run), np.nan)
    formulas, refs = [""] * len(per_run), [""] * len(per_run)
    if "algorithm_name" not in per_run:
        return pred, formulas, refs
    for i, (_, row) in enumerate(per_run.iterrows()):
        name = row.get("algorithm_name")
        if not isinstance(name, str):
            continue
        try:
            cls = algorithm_class(name)
        except ValueError:
            continue
        c = cls.predicted_complexity(cost, json.loads(row["params"]))
        if c is None:
            continue
        logs = math.log(row["initial_value"] / row["target_value"]) if row["target_value"] > 0 else math.nan
        val = logs * (row["kappa"] ** c.kappa if c.kappa else 1.0)
        for q, e in c.graph.items():
            val *= float(row[q]) ** e
        pred[i] = val * (c.constant if c.constant is not None else 1.0)
        formulas[i], refs[i] = c.formula(), c.reference
    return pred, formulas, refs


# ---- tables -------------------------------------------------------------------------------


def _resolve(name: str, df: pd.DataFrame, what: str) -> str:
    col = ALIASES.get(name, name)
    if col not in df.columns:
        allowed = [c for c in df.columns if c not in (*COST_AXES, "run_id", "algorithm", "seed", "reached", "metric",
                                                      "target_value", "initial_value", "final_value", "status",
                                                      "algorithm_name", "params")]
        names = sorted({next((a for a, b in ALIASES.items() if b == c), c) for c in allowed})
        raise ValueError(f"report: {what} {name!r} is not a column of the report; choose from: {', '.join(names)}")
    return col


def _check_groups(per_run: pd.DataFrame, keys: list[str], by_names: Sequence[str]) -> None:
    """Within a group, seeds are distinct (else the group mixes runs that differ in another column)."""
    if "seed" not in per_run:
        return
    dup = per_run[per_run.duplicated([*keys, "seed"], keep=False)]
    if len(dup) == 0:
        return
    derived = (*SCALING_QUANTITIES, "algorithm_name", "params", "run_id", "reached", "final_value", "initial_value",
               "target_value", "status", "metric", "seed", *COST_AXES)
    candidates = [*IDENTITY_COLUMNS, *(c for c in per_run.columns if c not in IDENTITY_COLUMNS and c not in derived)]
    cols = [c for c in dict.fromkeys(candidates) if c in dup and c not in keys
            and dup.groupby([*keys, "seed"], dropna=False)[c].nunique(dropna=False).max() > 1]
    alg = dup["algorithm"].iloc[0]
    names = [next((a for a, b in ALIASES.items() if b == c), c) for c in cols] or ["(unknown)"]
    hint = next((c for c in names if c != "variant"), names[0])
    raise ValueError(f"report: runs of {alg!r} with the same seed fall in one group of --by {' '.join(by_names)} but "
                     f"differ in {', '.join(names)}; add {hint} to --by")


def aggregate(per_run: pd.DataFrame, by: Sequence[str] = ("topology", "variant"), level: float = LEVEL,
              resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """One row per algorithm and ``by`` group: ``runs``, ``reached`` (how many reached the target),
    the median ``final_value``, and for every cost axis its median over the runs with ``_lo``/``_hi``
    (bootstrap interval; a run that did not reach the target counts as an infinite cost)."""
    by_cols = [_resolve(b, per_run, "--by") for b in by]
    keys = ["algorithm", *dict.fromkeys(by_cols)]
    _check_groups(per_run, keys, by)
    axes = _axes(per_run)
    extra = [q for q in SCALING_QUANTITIES if q in per_run.columns and q not in keys]
    rows = []
    for key, g in per_run.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(keys, key))
        row.update(runs=len(g), reached=int(g["reached"].sum()), metric=str(g["metric"].iloc[0]),
                   target=float(np.median(g["target_value"])) if len(g) else math.nan,
                   final_value=float(np.nanmedian(g["final_value"])) if g["final_value"].notna().any() else math.nan)
        for a in axes:
            vals = np.where(g["reached"].to_numpy(dtype=bool), g[a].to_numpy(dtype=np.float64), np.inf)
            vals = np.where(g["status"].astype(str).to_numpy() == "error", np.nan, vals)
            row[a], row[f"{a}_lo"], row[f"{a}_hi"] = bootstrap_median(vals, level, resamples, seed)
        for q in extra:
            u = pd.unique(g[q].dropna())
            row[q] = float(u[0]) if len(u) == 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def ratio_table(per_run: pd.DataFrame, baseline: str, by: Sequence[str] = ("topology", "variant"),
                axes: Sequence[str] | None = None, level: float = LEVEL, resamples: int = BOOTSTRAP_RESAMPLES,
                seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """Each algorithm's median cost over ``baseline``'s (an algorithm label) in the same ``by``
    group, on every cost axis, with bootstrap intervals (``<axis>``, ``<axis>_lo``, ``<axis>_hi``)."""
    labels = list(pd.unique(per_run["algorithm"].astype(str)))
    if baseline not in labels:
        raise ValueError(f"report: baseline {baseline!r} is not an algorithm of the results; choose one of: "
                         f"{', '.join(labels)}")
    by_cols = list(dict.fromkeys(_resolve(b, per_run, "--by") for b in by))
    axes = [a for a in (axes or _axes(per_run)) if a in per_run.columns]
    _check_groups(per_run, ["algorithm", *by_cols], by)

    def costs(g: pd.DataFrame, a: str) -> np.ndarray:
        vals = np.where(g["reached"].to_numpy(dtype=bool), g[a].to_numpy(dtype=np.float64), np.inf)
        return np.where(g["status"].astype(str).to_numpy() == "error", np.nan, vals)

    rows = []
    groups = per_run.groupby(by_cols, sort=False, dropna=False) if by_cols else [((), per_run)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        base = g[g["algorithm"].astype(str) == baseline]
        if len(base) == 0:
            continue
        for alg, ga in g.groupby("algorithm", sort=False):
            row: dict[str, Any] = {"algorithm": alg, **dict(zip(by_cols, key)), "baseline": baseline}
            for a in axes:
                row[a], row[f"{a}_lo"], row[f"{a}_hi"] = bootstrap_ratio(costs(ga, a), costs(base, a), level,
                                                                         resamples, seed)
            rows.append(row)
    return pd.DataFrame(rows)


def scaling_table(per_run: pd.DataFrame, x: str, cost: str = "messages", panel: str = "topology",
                  level: float = LEVEL) -> pd.DataFrame:
    """Per ``panel`` value (topology) and algorithm: the fitted log–log slope of ``cost`` against
    ``x`` over the runs that reached the target (``slope``, ``slope_lo``, ``slope_hi``,
    ``points``), the points' range of ``x``, and the declared prediction (``theory``,
    ``theory_slope``: its log–log slope over the same runs, ``reference``; its constant is
    unknown, so only the slope is compared)."""
    xc = _resolve(x, per_run, "x")
    if cost not in per_run.columns:
        raise ValueError(f"report: cost {cost!r} is not a cost axis of the results; choose one of: "
                         f"{', '.join(_axes(per_run))}")
    pred, formulas, refs = predicted_cost(per_run, cost)
    d = per_run.assign(_pred=pred, _formula=formulas, _ref=refs, _x=pd.to_numeric(per_run[xc], errors="coerce"))
    rows = []
    pkeys = [panel] if panel in d.columns else []
    for key, g in (d.groupby([*pkeys, "algorithm"], sort=False) if pkeys else d.groupby(["algorithm"], sort=False)):
        key = key if isinstance(key, tuple) else (key,)
        ok = g[g["reached"].astype(bool)]
        fit = fit_slope(ok["_x"], ok[cost], level)
        th = fit_slope(g["_x"], g["_pred"], level) if np.isfinite(g["_pred"]).any() else None
        formula = next((f for f in g["_formula"] if f), "")
        rows.append({**dict(zip([*pkeys, "algorithm"], key)), "x": x, "cost": cost, "points": fit.points,
                     "runs": len(g), "x_min": float(g["_x"].min()), "x_max": float(g["_x"].max()),
                     "slope": fit.slope, "slope_lo": fit.lo, "slope_hi": fit.hi,
                     "theory": formula, "theory_slope": th.slope if th is not None else math.nan,
                     "reference": next((r for r in g["_ref"] if r), "")})
    return pd.DataFrame(rows)


# ---- the whole report -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReportSettings:
    """What a report computes (``fedopt report`` flags, or a config's ``report:`` section)."""

    target: float = 1e-6
    metric: str = "dist_opt"
    relative: bool = False
    by: tuple[str, ...] = ("topology", "variant")
    baseline: str | None = None
    x: tuple[str, ...] = ()
    cost: tuple[str, ...] = ("messages",)
    format: str = "png"
    plots: bool = True

    def __post_init__(self) -> None:
        if not self.target > 0:
            raise ValueError(f"report: target must be positive, got {self.target}")
        if self.format not in FORMATS:
            raise ValueError(f"report: format must be one of {', '.join(FORMATS)}; got {self.format!r}")
        for c in self.cost:
            if c not in COST_AXES:
                raise ValueError(f"report: cost must be one of {', '.join(COST_AXES)}; got {c!r}")


@dataclass
class Report:
    """The tables of a report: ``per_run`` (:func:`run_costs` joined with :func:`run_info`),
    ``table`` (:func:`aggregate`, what ``report.parquet`` holds), ``ratios`` and ``scaling``."""

    settings: ReportSettings
    per_run: pd.DataFrame
    table: pd.DataFrame
    ratios: pd.DataFrame | None = None
    scaling: list[pd.DataFrame] = field(default_factory=list)


def build_report(results: pd.DataFrame, settings: ReportSettings, config: Any = None) -> Report:
    """Every table of a report of ``results`` (``config``: the experiment's config, or a path to it;
    it gives the graph quantities, κ and the declared complexities of the runs)."""
    per_run = run_costs(results, settings.target, settings.metric, settings.relative)
    if config is not None:
        info = run_info(config)
        same = [c for c in info.columns if c in per_run.columns and c != "run_id"]  # e.g. a swept n
        per_run = per_run.merge(info.drop(columns=same), on="run_id", how="left")
    if "n" not in per_run.columns and "n_nodes" in per_run.columns:
        per_run["n"] = pd.to_numeric(per_run["n_nodes"], errors="coerce").astype(float)
    table = aggregate(per_run, settings.by)
    ratios = ratio_table(per_run, settings.baseline, settings.by) if settings.baseline else None
    xs = list(settings.x)
    if not xs and "n_nodes" in per_run and per_run["n_nodes"].nunique() > 1:
        xs = ["n"]
    scaling = [scaling_table(per_run, x, c) for x in xs for c in settings.cost]
    return Report(settings, per_run, table, ratios, scaling)


def cost_report(source: str | Path | pd.DataFrame, target: float = 1e-6, metric: str = "dist_opt",
                by: Sequence[str] = ("topology", "variant"), relative: bool = False, config: Any = None) -> pd.DataFrame:
    """The cost-to-target table of a results directory (or table): what ``report.parquet`` holds.

    ``config`` defaults to the directory's ``config.yaml`` (when ``source`` is a directory).
    """
    results = source if isinstance(source, pd.DataFrame) else load_results(source)
    if config is None and not isinstance(source, pd.DataFrame) and (Path(source) / "config.yaml").is_file():
        config = Path(source) / "config.yaml"
    return build_report(results, ReportSettings(target=target, metric=metric, relative=relative, by=tuple(by)),
                        config).table


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return "∞" if math.isinf(v) else f"{v:.3g}"
    return str(v)


def _md(text: str) -> str:
    """A Markdown table cell (``|`` escaped)."""
    return text.replace("|", "\\|")


def _cell(med: float, lo: float, hi: float) -> str:
    if math.isnan(med):
        return "—"
    if math.isinf(med):
        return "not reached"
    return f"{med:.3g} [{_fmt(lo)}, {_fmt(hi)}]"


def to_markdown(report: Report) -> str:
    """The report as Markdown tables (cost to target, ratios, fitted slopes)."""
    s = report.settings
    t = report.table
    target = f"{s.target:g} × the run's first value" if s.relative else f"{s.target:g}"
    op = "≥" if s.metric in HIGHER_IS_BETTER else "≤"
    lines = [f"# Cost to reach {s.metric} {op} {target}", "",
             "Median over seeds [bootstrap 95 % interval of the median]; a run that did not reach the target "
             "counts as an infinite cost (*not reached* when half of the runs or more did not reach it; "
             "*final* is then the median final value).", ""]
    by_cols = [c for c in t.columns if c in [ALIASES.get(b, b) for b in s.by]]
    axes = [a for a in _axes(t) if np.isfinite(t[a].to_numpy(dtype=np.float64)).any()
            and (t[a].replace([np.inf], np.nan).fillna(0) != 0).any()]
    if not axes:
        axes = [a for a in ("messages", "time") if a in t.columns]
    head = ["algorithm", *(next((a for a, b in ALIASES.items() if b == c), c) for c in by_cols), "reached", *axes,
            "final"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in t.iterrows():
        cells = [_md(_fmt(r["algorithm"])), *(_md(_fmt(r[c])) for c in by_cols), f"{r['reached']}/{r['runs']}",
                 *(_cell(r[a], r[f"{a}_lo"], r[f"{a}_hi"]) for a in axes), _fmt(r["final_value"])]
        lines.append("| " + " | ".join(cells) + " |")
    if report.ratios is not None and len(report.ratios):
        rt = report.ratios
        rb = [c for c in rt.columns if c in by_cols]
        lines += ["", f"## Cost relative to {s.baseline}", "",
                  "Median cost over the baseline's median in the same group [bootstrap 95 % interval].", "",
                  "| " + " | ".join(["algorithm", *rb, *axes]) + " |", "|" + "---|" * (1 + len(rb) + len(axes))]
        for _, r in rt.iterrows():
            cells = [_fmt(r["algorithm"]), *(_fmt(r[c]) for c in rb),
                     *(_cell(r[a], r[f"{a}_lo"], r[f"{a}_hi"]) if a in rt else "—" for a in axes)]
            lines.append("| " + " | ".join(cells).replace("not reached", "∞") + " |")
    for sc in report.scaling:
        if not len(sc):
            continue
        x, cost = sc["x"].iloc[0], sc["cost"].iloc[0]
        lines += ["", f"## Scaling of {cost} with {x}", "",
                  f"Least-squares slope of log {cost} against log {x} over the runs that reached the target "
                  "[95 % t interval]; theory: the algorithm's declared complexity, its log–log slope over the "
                  "same runs (the constant is unknown and not compared).", "",
                  "| topology | algorithm | points | x range | slope | theory | theory slope |",
                  "|---|---|---|---|---|---|---|"]
        for _, r in sc.iterrows():
            slope = "—" if math.isnan(r["slope"]) else f"{r['slope']:.2f} [{_fmt(r['slope_lo'])}, {_fmt(r['slope_hi'])}]"
            lines.append(f"| {_fmt(r.get('topology'))} | {_fmt(r['algorithm'])} | {r['points']}/{r['runs']} | "
                         f"{r['x_min']:g}–{r['x_max']:g} | {slope} | {_md(r['theory']) or 'none declared'} | "
                         f"{'—' if math.isnan(r['theory_slope']) else format(r['theory_slope'], '.2f')} |")
    return "\n".join(lines) + "\n"


def write_report(rundir: str | Path, settings: ReportSettings, results: pd.DataFrame | None = None,
                 config: Any = None) -> dict[str, Any]:
    """Write ``report.parquet`` (the aggregated table), ``report.md`` and the scaling plots
    (``plots/scaling_<cost>_vs_<x>.<format>``) of the results directory ``rundir`` (atomically);
    the paths written and the plots that could not be drawn, with why."""
    from fedopt.experiment.plots import plot_scaling

    root = Path(rundir)
    if results is None:
        results = load_results(root)
    if config is None and (root / "config.yaml").is_file():
        config = root / "config.yaml"
    rep = build_report(results, settings, config)
    atomic_write_parquet(rep.table, root / "report.parquet")
    atomic_write_text(root / "report.md", to_markdown(rep))
    written: dict[str, Any] = {"table": str(root / "report.parquet"), "markdown": str(root / "report.md"),
                               "plots": [], "plots_skipped": {}}
    if settings.plots:
        for sc in rep.scaling:
            if not len(sc):
                continue
            x, cost = str(sc["x"].iloc[0]), str(sc["cost"].iloc[0])
            out = root / "plots" / f"scaling_{cost}_vs_{x}.{settings.format}"
            try:
                plot_scaling(rep.per_run, x, cost, out, scaling=sc)
            except ValueError as exc:
                written["plots_skipped"][str(out)] = str(exc)
                continue
            written["plots"].append(str(out))
    return written


def settings_from(section: Mapping[str, Any] | None, **overrides: Any) -> ReportSettings:
    """:class:`ReportSettings` from a config's ``report:`` section and flags given (``None``: not given)."""
    base = dict(section or {})
    base.update({k: v for k, v in overrides.items() if v is not None})
    for k in ("by", "x", "cost"):
        if k in base and base[k] is not None:
            base[k] = tuple(base[k])
    return ReportSettings(**{k: v for k, v in base.items() if v is not None})


__all__ = ["COST_AXES", "Report", "ReportSettings", "SlopeFit", "aggregate", "bootstrap_median", "bootstrap_ratio",
           "build_report", "cost_report", "first_crossing", "fit_slope", "graph_quantities", "predicted_cost",
           "ratio_table", "run_costs", "run_info", "scaling_table", "settings_from", "to_markdown", "write_report"]
