"""The registry of rate problems and the result type they share."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fedopt.topology.graph import Topology

if TYPE_CHECKING:
    from fedopt.topology.rates.sdp import SDPContext

#: ``method="auto"`` solves the SDP up to this many nodes, the first-order method above.
SDP_MAX_NODES = 60

#: ``first_order(obj, top, c, max_iter) -> (w, info)``: a large-graph solver of one problem.
FirstOrderSolver = Callable[["RateObjective", Topology, np.ndarray, int], tuple[np.ndarray, dict[str, Any]]]


@dataclass(frozen=True)
class RateSolution:
    """Optimized per-edge rates and how they compare with uniform rates.

    ``rates`` are in the topology's edge order. ``objective`` is recomputed exactly from
    the returned rates with :mod:`fedopt.topology.spectral` (not the solver's value);
    ``chi1``/``chi2`` are those of the returned rates. ``status`` is the solver's status
    (``"optimal"``, ``"optimal_inaccurate"``, ``"first_order"``...), ``duality_gap`` the
    relative gap certified by the last SDP solve (``Σ |⟨dual, slack⟩| / max(1, |p*|)``;
    ``None`` for the first-order method). ``solver`` is the SDP solver that ran
    (``"first_order"`` for the first-order method); for the SDP, ``info`` holds
    ``solver_selection`` (``"auto"`` or ``"explicit"``), ``solver_iterations`` and, for an
    objective with several formulations, the ``form`` solved.
    """

    rates: np.ndarray
    objective: float
    uniform_objective: float
    improvement: float
    chi1: float
    chi2: float
    status: str
    duality_gap: float | None
    solver: str
    solve_time: float
    objective_name: str = "dadao"
    method: str = "sdp"
    costs: np.ndarray | None = None
    uniform_rates: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("rates", "costs", "uniform_rates"):
            if d[k] is not None:
                d[k] = np.asarray(d[k]).tolist()
        return d

    def apply(self, top: Topology) -> Topology:
        """``top`` with these rates."""
        return top.with_rates(self.rates)


@dataclass(frozen=True)
class RateObjective:
    """One rate problem: its exact value, its best uniform rates, its SDP and its
    large-graph (first-order) solver.

    ``value(top, w, c)`` is the exact objective of rates ``w`` (already normalized to the
    problem's scale by ``finalize``); ``finalize(top, w, c)`` rescales any direction
    ``w ≥ 0`` to feasible rates; ``sdp(ctx)`` returns rates from CVXPY;
    ``first_order(obj, top, c, max_iter)`` returns rates without an SDP (``None``: no
    large-graph path); ``sdp_fits(top)`` says whether ``method="auto"`` takes the SDP
    (default: up to :data:`SDP_MAX_NODES` nodes); ``smooth(top, w, c, p)`` returns ``(f, grad)`` of a smoothed
    scale-free objective to *minimize* over the cost simplex, for the mirror-descent solver
    :func:`fedopt.topology.rates.mirror_descent.mirror_descent`. ``auto_solver`` is the SDP
    solver ``solver="auto"`` takes by size: ``(largest n, solver)`` rows, the first row with
    ``n ≤ largest n`` (see :meth:`choose_solver`). ``sdp_forms`` names the equivalent SDP
    formulations ``sdp`` accepts (``form=``; empty: one formulation).
    """

    name: str
    sense: str  # "min" or "max"
    description: str
    value: Callable[[Topology, np.ndarray, np.ndarray], float]
    finalize: Callable[[Topology, np.ndarray, np.ndarray], np.ndarray]
    uniform: Callable[[Topology, np.ndarray], np.ndarray]
    sdp: Callable[["SDPContext"], tuple[np.ndarray, str, float]]
    first_order: FirstOrderSolver | None = None
    sdp_fits: Callable[[Topology], bool] | None = None
    smooth: Callable[[Topology, np.ndarray, np.ndarray, float], tuple[float, np.ndarray]] | None = None
    improvement: Callable[[float, float], float] | None = None
    value_label: str = "objective"  # what ``value`` is, for printing
    auto_solver: tuple[tuple[float, str], ...] = ((math.inf, "clarabel"),)
    sdp_forms: tuple[str, ...] = ()

    def use_sdp(self, top: Topology) -> bool:
        """Whether ``method="auto"`` solves this problem's SDP on ``top``."""
        if self.first_order is None:
            return True
        return self.sdp_fits(top) if self.sdp_fits is not None else top.n <= SDP_MAX_NODES

    def choose_solver(self, top: Topology) -> str:
        """The SDP solver ``solver="auto"`` takes on ``top`` (a row of :attr:`auto_solver`)."""
        for largest, solver in self.auto_solver:
            if top.n <= largest:
                return solver
        return self.auto_solver[-1][1]

    def improvement_of(self, opt: float, uni: float) -> float:
        if self.improvement is not None:
            return self.improvement(opt, uni)
        if self.sense == "min":
            return uni / opt if opt > 0 else (1.0 if uni <= 0 else math.inf)
        return opt / uni if uni > 0 else math.inf


#: Registered rate problems by name.
OBJECTIVES: dict[str, RateObjective] = {}


def register_objective(obj: RateObjective) -> RateObjective:
    """Add a rate problem to :data:`OBJECTIVES` (names are unique)."""
    if obj.name in OBJECTIVES:
        raise ValueError(f"rate objective {obj.name!r} is already registered")
    OBJECTIVES[obj.name] = obj
    return obj


def available_objectives() -> list[str]:
    return list(OBJECTIVES)


def get_objective(name: str) -> RateObjective:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown rate objective {name!r}; choose one of: {', '.join(OBJECTIVES)}") from None

