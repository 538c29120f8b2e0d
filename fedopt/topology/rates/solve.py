"""The entry point :func:`optimize_rates` and the cached rates of experiment configs."""

from __future__ import annotations

import inspect
import time
from typing import Any

import networkx as nx
import numpy as np
from threadpoolctl import threadpool_limits

from fedopt.topology import spectral
from fedopt.topology.graph import Topology
from fedopt.topology.rates import objectives as _objectives  # noqa: F401  (registers the problems)
from fedopt.topology.rates.registry import RateSolution, get_objective
from fedopt.topology.rates.sdp import SDPContext, cvxpy_solver
from fedopt.topology.rates.values import as_topology, edge_costs_or_ones

#: Values of ``method=``.
METHODS = ("auto", "sdp", "first_order")


def optimize_rates(
    top: Topology | nx.Graph,
    objective: str = "dadao",
    *,
    costs: np.ndarray | None = None,
    solver: str = "auto",
    method: str = "auto",
    verbose: bool = False,
    solver_opts: dict[str, Any] | None = None,
    max_iter: int = 150,
    form: str | None = None,
) -> RateSolution:
    """Optimal per-edge rates of ``top`` for a registered ``objective``.

    ``costs`` (one positive number per edge, e.g. :func:`fedopt.topology.linkcost.edge_costs`)
    weight the budget / total rate; default 1. ``method``: ``"sdp"`` (CVXPY),
    ``"first_order"`` (the large-graph path) or ``"auto"`` (the SDP up to
    :data:`SDP_MAX_NODES` nodes, see :meth:`RateObjective.use_sdp`). ``solver``: ``"scs"``,
    ``"clarabel"`` or ``"auto"``, the faster of the two for the objective and the graph's
    size (:meth:`RateObjective.choose_solver`, measured in ``benchmarks/RESULTS_rates.md``);
    the result's ``solver`` names the one that ran and ``info["solver_selection"]`` says
    whether ``"auto"`` chose it. ``form``: one of the objective's equivalent SDP
    formulations (``RateObjective.sdp_forms``, e.g. DADAO's χ2 constraint); default the
    fastest for the solver. Raises ``ValueError`` for a disconnected graph, an unknown
    objective, method, solver or form, a solver that is not installed, or a solver that
    fails (the message names the other solver: there is no silent fallback).
    """
    top = as_topology(top)
    obj = get_objective(objective)
    c = edge_costs_or_ones(top, costs)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    if method == "auto":
        method = "sdp" if obj.use_sdp(top) else "first_order"
    if method == "first_order" and obj.first_order is None:
        raise ValueError(f"rate objective {obj.name!r} has no first-order path; use method='sdp'")
    if form is not None and form not in obj.sdp_forms:
        allowed = ", ".join(obj.sdp_forms) if obj.sdp_forms else "none (it has one formulation)"
        raise ValueError(f"unknown form {form!r} of rate objective {obj.name!r}; allowed: {allowed}")
    if form is not None and method != "sdp":
        raise ValueError(f"form={form!r} chooses an SDP formulation; it needs method='sdp', not {method!r}")
    selection = "auto" if solver.lower() == "auto" else "explicit"
    if selection == "auto":
        solver = obj.choose_solver(top)
    cvx_solver = cvxpy_solver(solver) if method == "sdp" else "first_order"
    cn = c / c.mean()
    t0 = time.perf_counter()
    info: dict[str, Any] = {"solver_selection": selection} if method == "sdp" else {}
    gap: float | None = None
    # Many small dense eigen-solves: one BLAS thread is several times faster than a pool.
    with threadpool_limits(limits=1, user_api="blas"):
        if method == "sdp":
            ctx = SDPContext(top, cn, cvx_solver, verbose, dict(solver_opts or {}), objective=obj, form=form)
            w, status, gap = obj.sdp(ctx)
            info.update(ctx.info)
        else:
            assert obj.first_order is not None
            w, fo_info = obj.first_order(obj, top, cn, max_iter)
            status = "first_order"
            info.update(fo_info)
        rates = obj.finalize(top, w, c)
        solve_time = time.perf_counter() - t0
        uni = obj.uniform(top, c)
        val, uval = obj.value(top, rates, c), obj.value(top, uni, c)
        c1, c2 = spectral.chi1(top, rates), spectral.chi2(top, rates)
    return RateSolution(
        rates=rates, objective=float(val), uniform_objective=float(uval),
        improvement=float(obj.improvement_of(val, uval)), chi1=float(c1), chi2=float(c2),
        status=status, duality_gap=gap, solver=cvx_solver.lower(), solve_time=solve_time,
        objective_name=obj.name, method=method, costs=None if costs is None else c,
        uniform_rates=uni, info=info,
    )


# ---- cached rates for experiment configs ----------------------------------------------------

_CACHE: dict[tuple[Any, ...], np.ndarray] = {}


def rates_options() -> list[str]:
    """The options a topology entry's ``rates: {...}`` mapping may give (those of
    :func:`optimized_topology`, which passes the solver options on to :func:`optimize_rates`)."""
    skip = {"top", "costs", "kw"}
    names = [*inspect.signature(optimized_topology).parameters, *inspect.signature(optimize_rates).parameters]
    return list(dict.fromkeys(k for k in names if k not in skip))


def optimized_topology(top: Topology, objective: str = "dadao", message_bytes: float | None = None,
                       **kw: Any) -> Topology:
    """``top`` with optimized rates (cached by graph, costs and options), the cost of each edge
    from the link-cost model when the topology has latency and bandwidth."""
    from fedopt.topology.linkcost import DEFAULT_MESSAGE_BYTES, edge_costs, has_link_costs

    costs = None
    if has_link_costs(top):
        costs = edge_costs(top, DEFAULT_MESSAGE_BYTES if message_bytes is None else message_bytes)
    key = (top.n, top.edges.tobytes(), None if costs is None else costs.tobytes(), objective,
           tuple(sorted((k, str(v)) for k, v in kw.items())))
    rates = _CACHE.get(key)
    if rates is None:
        rates = _CACHE[key] = optimize_rates(top, objective, costs=costs, **kw).rates
    return top.with_rates(rates)

