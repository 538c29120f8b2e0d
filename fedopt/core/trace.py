"""Checkpoint rows: the metrics of one run at one record point.

Rows are recorded at checkpoints only (every k rounds or every Δt of simulated
time), never per event. Metrics follow fedopt's results schema:
``subopt = f(x̄) − f*``, ``dist_opt = mean_i ‖x_i − x*‖²``,
``consensus = mean_i ‖x_i − x̄‖²``, ``grad_norm_sq = ‖∇f(x̄)‖²``,
``train_loss = f(x̄)`` (the global objective at the mean iterate, defined for every
problem), ``test_accuracy`` (the mean model's accuracy on the problem's held-out
split; NaN when the problem has none, see ``Problem.test_metrics``) and
``attack_success`` (the share of attacked inputs that an adversarial-perturbation
problem's models misclassify at x̄; NaN for other problems). Algorithms may add
diagnostic columns of their own (:data:`DIAGNOSTIC_COLUMNS`, from
``Algorithm.diagnostics``): ``grad_cosine`` (the cosine between the direction a client
steps along and the true ``∇f(x)`` at its iterate, averaged over the clients and the
local steps of the last round) and ``grad_cosine_local`` (the same for the client's own
estimate of ``∇f_i`` against the true ``∇f_i``); NaN where an algorithm does not report them.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from fedopt.core.arrays import FloatArray
from fedopt.core.meter import Meter

#: Numeric metric columns, in table order.
METRIC_COLUMNS = ("subopt", "dist_opt", "consensus", "grad_norm_sq", "train_loss", "test_accuracy", "attack_success")
#: The metric columns a problem's held-out split fills (``Problem.test_metrics``); NaN otherwise.
TEST_METRIC_COLUMNS = ("test_accuracy", "attack_success")
#: Diagnostic columns an algorithm may fill (``Algorithm.diagnostics``); NaN otherwise.
DIAGNOSTIC_COLUMNS = ("grad_cosine", "grad_cosine_local")
#: Counter columns, in table order.
COUNTER_COLUMNS = ("time", "round", "grad_evals", "queries", "messages", "bytes", "link_time", "wall_s")


class GlobalObjective(Protocol):
    """What the metrics read of a problem (:class:`fedopt.problems.base.Problem` is one):
    the global objective ``f = (1/n) Σ_i f_i``, its gradient, and its optimum when known."""

    def global_value(self, x: FloatArray) -> float:
        """``f(x)``."""
        ...

    def global_grad(self, x: FloatArray) -> FloatArray:
        """``∇f(x)``."""
        ...

    @property
    def x_star(self) -> FloatArray | None:
        """The minimizer of ``f``, ``None`` if not known."""
        ...

    @property
    def f_star(self) -> float | None:
        """``f(x*)``, ``None`` if not known."""
        ...

    def test_metrics(self, x: FloatArray) -> dict[str, float]:
        """Held-out metrics of the model ``x`` (keys among :data:`TEST_METRIC_COLUMNS`)."""
        ...


def metrics(problem: GlobalObjective, X: FloatArray) -> dict[str, float]:
    """Exact quality metrics of the node iterates ``X [n, d]`` (uncounted diagnostics)."""
    if not np.isfinite(X).all():
        return {k: math.nan for k in METRIC_COLUMNS}
    xbar = X.mean(axis=0)
    out: dict[str, float] = {
        "consensus": float(((X - xbar) ** 2).sum(axis=1).mean()),
        "grad_norm_sq": float((problem.global_grad(xbar) ** 2).sum()),
    }
    xs, fs = problem.x_star, problem.f_star
    fbar = float(problem.global_value(xbar))
    out["subopt"] = math.nan if fs is None else fbar - fs
    out["dist_opt"] = math.nan if xs is None else float(((X - xs) ** 2).sum(axis=1).mean())
    out["train_loss"] = fbar
    held_out = problem.test_metrics(xbar)
    unknown = sorted(set(held_out) - set(TEST_METRIC_COLUMNS))
    if unknown:
        raise ValueError(f"{type(problem).__name__}.test_metrics: unknown metric(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(TEST_METRIC_COLUMNS)}")
    for key in TEST_METRIC_COLUMNS:
        out[key] = float(held_out.get(key, math.nan))
    return out


def checkpoint_row(problem: GlobalObjective, X: FloatArray, meter: Meter, t: float, rnd: int,
                   wall_s: float, diagnostics: dict[str, float] | None = None) -> dict[str, Any]:
    """The row of one record point. Every counter of ``meter`` is reduced here (also the
    per-edge counts, which no column reads), so a count that cannot be recorded fails the
    run at this record point rather than after the run has ended. ``diagnostics``: the
    algorithm's diagnostic columns (keys among :data:`DIAGNOSTIC_COLUMNS`)."""
    meter.flush()
    row: dict[str, Any] = {"time": float(t), "round": int(rnd)}
    tot = meter.totals()
    row.update(
        grad_evals=tot["grad_evals"],
        queries=tot["queries"],
        messages=tot["messages"],
        bytes=tot["bytes"],
        link_time=tot["link_time"],
        wall_s=float(wall_s),
        epsilon=meter.epsilon,
    )
    row.update(metrics(problem, X))
    diag = diagnostics or {}
    unknown = sorted(set(diag) - set(DIAGNOSTIC_COLUMNS))
    if unknown:
        raise ValueError(f"diagnostics: unknown column(s) {', '.join(unknown)}; allowed: {', '.join(DIAGNOSTIC_COLUMNS)}")
    for key in DIAGNOSTIC_COLUMNS:
        row[key] = float(diag.get(key, math.nan))
    return row
