"""Optimal per-edge gossip rates of a graph (CVXPY semidefinite programs).

Every problem picks edge weights ``λ ≥ 0`` of the rate-weighted Laplacian
``Λ = B diag(λ) Bᵀ`` (``B`` the incidence matrix) and is registered in
:data:`OBJECTIVES` (see :func:`register_objective`):

``dadao``
    minimize the total (or cost-weighted) rate ``Σ_e c_e λ_e`` subject to DADAO's rate
    condition ``2 χ1(Λ) χ2(Λ) ≤ 1`` (DADAO notes §3). ``χ1`` and ``χ2`` are each convex
    in ``λ`` but their product is not; with ``r_e = b_eᵀΛ⁺b_e`` the condition reads
    ``max_e r_e ≤ λ2``, i.e. ``r_e ≤ p ≤ λ2`` for some ``p``, and

    .. code-block:: text

        minimize cᵀλ  s.t.  λ ≥ 0,  Λ + 11ᵀ/n ⪰ p(I − 11ᵀ/n)              (λ2 ≥ p)
                            b_eᵀΛ⁺b_e ≤ p   ∀e                              (2χ2 ≤ p)

    is one convex problem in ``(λ, p)`` (the notes' ``SDP(s)`` with ``p = 1/s`` a variable
    instead of a 1-D search over ``s``). The χ2 constraint has three equivalent forms
    (``form=``): an LMI per edge, one block LMI, or a unit flow per edge (Thomson's
    principle, second-order cones only), the fastest with Clarabel (see
    :func:`fedopt.topology.rates.sdp.dadao`). Equivalently the optimum is
    ``min_w cᵀw·sqrt(2χ1(w)χ2(w))`` over ``w ≥ 0``; ``log χ1 = −log λ2`` and
    ``log χ2 = max_e −log(conductance_e)`` are convex in ``w`` (``λ2`` and the effective
    conductances are concave), so this scale-free form is a convex problem, which the
    large-graph path minimizes.
``max_connectivity``
    maximize ``λ2(Λ)`` with the budget ``cᵀλ = Σ_e c_e`` (Boyd 2006).
``min_total_resistance``
    minimize the total effective resistance ``R_tot = n·Tr(Λ⁺)`` with the same budget
    (Ghosh, Boyd & Saberi 2008).
``fastest_mixing``
    the symmetric gossip matrix ``W = I − Λ`` (``Σ_{e∋i} λ_e ≤ 1``) with the smallest
    second-largest eigenvalue modulus ``‖W − 11ᵀ/n‖₂`` (Boyd, Diaconis & Xiao 2004), for
    the synchronous algorithms.

Each result is compared with the best *uniform* rates of the same problem: uniform at the
rate condition (``dadao``), uniform within the budget (``max_connectivity``,
``min_total_resistance``) and the best constant weight ``min(2/(λ2+λn), 1/d_max)`` of
``L_G`` (``fastest_mixing``). ``improvement`` is how many times better the optimum is
(uniform/optimal for the minimized cost and resistance, optimal/uniform for ``λ2``, the
ratio of spectral gaps ``1 − SLEM`` for fastest mixing), so ``1.0`` means uniform is optimal.

Two methods solve every problem (``method=``):

* ``"sdp"`` (:mod:`~fedopt.topology.rates.sdp`): CVXPY with Clarabel (interior point) or
  SCS (first-order), certified by a duality gap. ``solver="auto"`` (the default) takes the
  faster of the two for the objective and ``n`` (:data:`AUTO_SOLVER`, measured in
  ``benchmarks/RESULTS_rates.md``: Clarabel for ``dadao``, ``fastest_mixing`` and
  ``max_connectivity`` up to 60 nodes, SCS for ``min_total_resistance`` and larger
  ``max_connectivity``); the result's ``solver`` says which ran. The dense SDPs grow as
  ``n²`` variables per matrix inequality (a 200-node max-connectivity SDP takes minutes
  with Clarabel).
* ``"first_order"``, the large-graph path, on the same objective: mirror descent on the
  cost simplex for the three budgeted problems
  (:mod:`~fedopt.topology.rates.mirror_descent`), accelerated projected gradient on a
  smoothed SLEM for ``fastest_mixing`` (:mod:`~fedopt.topology.rates.fastest_mixing`);
  both evaluate with sparse linear algebra from ``n ≥ 500`` (shift-invert Lanczos and a
  sparse LU of the grounded Laplacian, :mod:`~fedopt.topology.rates.linalg`).

``method="auto"`` (the default) takes the SDP up to :data:`SDP_MAX_NODES` nodes (DADAO's up
to ``m·(n+1) ≤`` :data:`DADAO_SDP_MAX_SIZE`; fastest mixing's up to
:data:`FASTEST_MIXING_SDP_MAX_NODES`) and the first-order path above. Whatever the method,
the returned objective is the exact value of the returned rates
(:mod:`~fedopt.topology.rates.values`).
"""

from fedopt.topology.rates.objectives import AUTO_SOLVER, DADAO_SDP_MAX_SIZE, FASTEST_MIXING_SDP_MAX_NODES
from fedopt.topology.rates.registry import (
    OBJECTIVES, SDP_MAX_NODES, RateObjective, RateSolution, available_objectives, get_objective, register_objective,
)
from fedopt.topology.rates.sdp import SOLVERS
from fedopt.topology.rates.solve import METHODS, optimize_rates, optimized_topology, rates_options
from fedopt.topology.rates.values import MIN_RATE_FRACTION, condition, slem, total_resistance

__all__ = [
    "AUTO_SOLVER",
    "DADAO_SDP_MAX_SIZE",
    "FASTEST_MIXING_SDP_MAX_NODES",
    "METHODS",
    "MIN_RATE_FRACTION",
    "OBJECTIVES",
    "RateObjective",
    "RateSolution",
    "SDP_MAX_NODES",
    "SOLVERS",
    "available_objectives",
    "condition",
    "get_objective",
    "optimize_rates",
    "optimized_topology",
    "rates_options",
    "register_objective",
    "slem",
    "total_resistance",
]
