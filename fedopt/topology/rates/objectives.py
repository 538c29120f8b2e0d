"""The four registered rate problems (see :mod:`fedopt.topology.rates`)."""

from __future__ import annotations

import math

import numpy as np

from fedopt.topology import spectral
from fedopt.topology.graph import Topology
from fedopt.topology.rates import sdp
from fedopt.topology.rates.fastest_mixing import accelerated_projected_gradient
from fedopt.topology.rates.mirror_descent import (
    mirror_descent, smooth_dadao, smooth_max_connectivity, smooth_min_total_resistance,
)
from fedopt.topology.rates.registry import SDP_MAX_NODES, RateObjective, register_objective
from fedopt.topology.rates.values import (
    best_constant_weight, dadao_finalize, scale_to_budget, slem, total_resistance, uniform_dadao,
)

#: ``method="auto"`` solves DADAO's SDP only while ``m·(n+1)`` is at most this (Clarabel on
#: the flow form, ``m²`` small cones: 0.3 s at m·(n+1) = 544, barbell(6, 3); about 3 s at
#: n = 30, m·(n+1) ≈ 3000–4300; past 20 s at n = 60; benchmarks/RESULTS_rates.md).
DADAO_SDP_MAX_SIZE = 1200


def _dadao_sdp_fits(top: Topology) -> bool:
    return top.n <= SDP_MAX_NODES and top.m * (top.n + 1) <= DADAO_SDP_MAX_SIZE


#: ``method="auto"`` solves the fastest-mixing SDP (two n×n LMIs; about 10 s with Clarabel at
#: n = 60, ten times the first-order path) up to this many nodes.
FASTEST_MIXING_SDP_MAX_NODES = 30


#: ``solver="auto"``: the SDP solver of each objective by size, ``(largest n, solver)`` rows,
#: the first that fits (:meth:`RateObjective.choose_solver`). From the side-by-side solve
#: times of ``benchmarks/RESULTS_rates.md`` (``python benchmarks/rates_solvers.py``; barbell
#: and random geometric graphs, n = 8–100):
#:
#: * ``dadao``: Clarabel (flow form): 1.3–2× faster at n = 8, 8–20× at n = 15; SCS runs
#:   past the limit from n = 30 in every form.
#: * ``max_connectivity``: Clarabel, 1.4–2.9× faster at n = 30–60 (SCS past the limit on
#:   the n = 60 barbell); within 0.7–1.4× at n ≤ 15, where either takes ~0.1 s; SCS
#:   1.1–2.3× faster at n = 100.
#: * ``min_total_resistance``: SCS, 1.3–5× faster on three of the four graphs at
#:   n = 15–30 and the only one to finish at n = 60–100; Clarabel is ahead on the n = 30
#:   barbell (1.9×).
#: * ``fastest_mixing``: Clarabel: SCS needs 13,000–17,000 iterations on the random
#:   geometric graphs from n = 15 and on both graphs at n = 60 (8–10× slower at n = 15–30,
#:   past the limit at 60) and stops inaccurate at its 20,000 at n = 100; within 0.8–1.7×
#:   on the barbells up to n = 30.
AUTO_SOLVER: dict[str, tuple[tuple[float, str], ...]] = {
    "dadao": ((math.inf, "clarabel"),),
    "max_connectivity": ((60, "clarabel"), (math.inf, "scs")),
    "min_total_resistance": ((math.inf, "scs"),),
    "fastest_mixing": ((math.inf, "clarabel"),),
}


def _uniform_budget(top: Topology, c: np.ndarray) -> np.ndarray:
    return scale_to_budget(top, np.ones(top.m), c)


def _stochastic(top: Topology, w: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``w ≥ 0`` scaled so that no node's weights sum above 1 (solver tolerance never
    leaves ``I − Λ`` non-stochastic)."""
    w = np.maximum(np.asarray(w, dtype=np.float64), 0.0)
    worst = float(top.weighted_degrees(w).max())
    return w / worst if worst > 1.0 else w


def _gap_ratio(opt: float, uni: float) -> float:
    """Ratio of spectral gaps ``(1 − SLEM_opt)/(1 − SLEM_uniform)``."""
    return (1.0 - opt) / (1.0 - uni) if uni < 1.0 else math.inf


DADAO = register_objective(RateObjective(
    name="dadao", sense="min",
    description="minimize Σ c_e λ_e subject to 2·χ1(Λ)·χ2(Λ) ≤ 1 (DADAO's rate condition)",
    value=lambda top, w, c: float(c @ w),
    finalize=dadao_finalize, uniform=uniform_dadao, sdp=sdp.dadao,
    first_order=mirror_descent, smooth=smooth_dadao, sdp_fits=_dadao_sdp_fits, value_label="total rate",
    auto_solver=AUTO_SOLVER["dadao"], sdp_forms=tuple(sdp.DADAO_FORMS),
))
MAX_CONNECTIVITY = register_objective(RateObjective(
    name="max_connectivity", sense="max",
    description="maximize λ2(Λ) with the budget Σ c_e λ_e = Σ c_e (Boyd 2006)",
    value=lambda top, w, c: spectral.lambda2(top, w),
    finalize=scale_to_budget, uniform=_uniform_budget, sdp=sdp.max_connectivity,
    first_order=mirror_descent, smooth=smooth_max_connectivity, value_label="λ2",
    auto_solver=AUTO_SOLVER["max_connectivity"],
))
MIN_TOTAL_RESISTANCE = register_objective(RateObjective(
    name="min_total_resistance", sense="min",
    description="minimize n·Tr(Λ⁺) with the budget Σ c_e λ_e = Σ c_e (Ghosh, Boyd & Saberi 2008)",
    value=lambda top, w, c: total_resistance(top, w),
    finalize=scale_to_budget, uniform=_uniform_budget, sdp=sdp.min_total_resistance,
    first_order=mirror_descent, smooth=smooth_min_total_resistance, value_label="total effective resistance",
    auto_solver=AUTO_SOLVER["min_total_resistance"],
))
FASTEST_MIXING = register_objective(RateObjective(
    name="fastest_mixing", sense="min",
    description="W = I − Λ with the smallest ‖W − 11ᵀ/n‖₂, Σ_{e∋i} λ_e ≤ 1 (Boyd, Diaconis & Xiao 2004)",
    value=lambda top, w, c: slem(top, w), finalize=_stochastic,
    uniform=lambda top, c: best_constant_weight(top), sdp=sdp.fastest_mixing,
    first_order=accelerated_projected_gradient, improvement=_gap_ratio,
    sdp_fits=lambda top: top.n <= FASTEST_MIXING_SDP_MAX_NODES, value_label="SLEM",
    auto_solver=AUTO_SOLVER["fastest_mixing"],
))
