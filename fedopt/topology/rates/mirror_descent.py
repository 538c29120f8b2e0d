"""The large-graph path of the simplex-scaled problems (``dadao``, ``max_connectivity``,
``min_total_resistance``): exponentiated-gradient (mirror) descent on the cost simplex
``{w ≥ 0, cᵀw = 1}`` with backtracking, on a smoothed scale-free objective whose
smoothing sharpens in stages.

* ``dadao``: the optimum of ``min cᵀλ s.t. 2χ1χ2 ≤ 1`` is ``min_w cᵀw·sqrt(2χ1(w)χ2(w))``
  over the simplex, and ``log χ1 = −log λ2``, ``log χ2 = max_e log(r_e/2)`` are convex
  (``λ2`` and the effective conductances are concave in ``w``); the surrogate is a soft-min
  over the smallest Laplacian eigenvalues plus a soft-max over the edge resistances.
* ``max_connectivity``: ``−log λ2`` (soft-min over the smallest eigenvalues).
* ``min_total_resistance``: ``log Tr Λ⁺`` (exact, smooth).

Gradients use ``∂λ_k/∂w_e = (u_k[i] − u_k[j])²`` and ``∂r_f/∂w_e = −(b_eᵀΛ⁺b_f)²``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedopt.topology.graph import Topology
from fedopt.topology.rates.linalg import WeightedLaplacian
from fedopt.topology.rates.registry import RateObjective


def _soft_log_chi1(lin: WeightedLaplacian, p: float, k: int = 8) -> tuple[float, np.ndarray]:
    """``(1/p) log Σ_k λ_k^{−p}`` over the ``k`` smallest positive eigenvalues (→ ``log χ1``)
    and its gradient in ``w``."""
    ev, U = lin.bottom(k)
    z = -p * np.log(ev)
    zmax = z.max()
    pi = np.exp(z - zmax)
    f = (zmax + math.log(pi.sum())) / p
    pi /= pi.sum()
    g = -(lin.edge_quad(U) @ (pi / ev))
    return float(f), g


def _soft_log_chi2(lin: WeightedLaplacian, q: float) -> tuple[float, np.ndarray]:
    """``(1/q) log Σ_e (r_e/2)^q`` (→ ``log χ2``) and its gradient in ``w``."""
    r = lin.resistances()
    z = q * np.log(0.5 * r)
    zmax = z.max()
    pi = np.exp(z - zmax)
    f = (zmax + math.log(pi.sum())) / q
    pi /= pi.sum()
    top = lin.top
    wts = pi / r
    if not lin.sparse:
        # Σ_e wts_e (b_fᵀΛ⁺b_e)² = b_fᵀ Λ⁺ L_wts Λ⁺ b_f: one n³ product instead of m² terms
        M = lin.pinv @ top.laplacian(wts) @ lin.pinv
        i, j = top.edges[:, 0], top.edges[:, 1]
        return float(f), -(M[i, i] + M[j, j] - 2.0 * M[i, j])
    keep = np.flatnonzero(pi > 1e-9)
    if keep.size > 64:  # the soft-max is concentrated: the 64 heaviest edges carry the gradient
        keep = keep[np.argsort(-pi[keep])[:64]]
    X = lin.solve(lin.incidence_columns(keep))
    g = -(lin.edge_quad(X) @ wts[keep])
    return float(f), g


def smooth_dadao(top: Topology, w: np.ndarray, c: np.ndarray, p: float) -> tuple[float, np.ndarray]:
    """Smoothed ``log χ1 + log χ2`` (the scale-free DADAO objective is ``cᵀw·sqrt(2χ1χ2)``)."""
    lin = WeightedLaplacian(top, w)
    f1, g1 = _soft_log_chi1(lin, p)
    f2, g2 = _soft_log_chi2(lin, p)
    return f1 + f2, g1 + g2


def smooth_max_connectivity(top: Topology, w: np.ndarray, c: np.ndarray, p: float) -> tuple[float, np.ndarray]:
    """Smoothed ``−log λ2``."""
    return _soft_log_chi1(WeightedLaplacian(top, w), p)


def smooth_min_total_resistance(top: Topology, w: np.ndarray, c: np.ndarray, p: float) -> tuple[float, np.ndarray]:
    """``log Tr Λ⁺`` (already smooth; ``p`` is unused)."""
    lin = WeightedLaplacian(top, w)
    m = top.m
    g = np.empty(m)
    # ∂ Tr Λ⁺/∂w_f = −‖Λ⁺ b_f‖², in blocks of edges
    for s in range(0, m, 256):
        idx = np.arange(s, min(s + 256, m))
        X = lin.solve(lin.incidence_columns(idx))
        g[idx] = -np.einsum("ij,ij->j", X, X)
    tr = lin.trace_pinv()
    return math.log(tr), g / tr


def mirror_descent(obj: RateObjective, top: Topology, c: np.ndarray, max_iter: int = 150,
                   w0: np.ndarray | None = None, tol: float = 1e-5) -> tuple[np.ndarray, dict[str, Any]]:
    """Exponentiated-gradient descent of ``obj.smooth`` over ``{w ≥ 0, cᵀw = 1}`` with
    backtracking and an increasing smoothing parameter (a stage ends after ``max_iter``
    steps or three steps that decrease the smoothed objective by less than ``tol``,
    relative); returns the stage end with the best exact objective."""
    assert obj.smooth is not None
    v = np.full(top.m, 1.0 / top.m) if w0 is None else np.maximum(w0 * c, 1e-12)
    v /= v.sum()
    floor = 1e-10

    def exact(vv: np.ndarray) -> float:
        val = obj.value(top, obj.finalize(top, vv / c, c), c)
        return val if obj.sense == "min" else -val

    best_v, best = v.copy(), exact(v)
    iters = evals = 0
    for p in (8.0, 32.0, 128.0):
        f, g = obj.smooth(top, v / c, c, p)
        evals += 1
        eta = 1.0 / max(np.abs(g / c).max(), 1e-300)
        stall = 0
        for _ in range(max_iter):
            iters += 1
            gv = g / c
            gv = gv - gv.min()
            while True:
                trial = v * np.exp(-eta * gv)
                trial = np.maximum(trial / trial.sum(), floor)
                trial /= trial.sum()
                ft, gt = obj.smooth(top, trial / c, c, p)
                evals += 1
                if ft < f or eta < 1e-12:
                    break
                eta *= 0.5
            if eta < 1e-12:
                break
            decrease = f - ft
            v, f, g = trial, ft, gt
            eta *= 1.5
            stall = stall + 1 if decrease < tol * max(1.0, abs(f)) else 0
            if stall >= 3:
                break
        e = exact(v)
        if e < best:
            best, best_v = e, v.copy()
    return best_v / c, {"iterations": iters, "evaluations": evals}

