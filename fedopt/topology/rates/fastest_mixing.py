"""The large-graph path of ``fastest_mixing``: accelerated projected gradient on a smoothed
second-largest eigenvalue modulus.

Boyd, Diaconis & Xiao (2004, eq. 5 and §5) minimize ``SLEM(w) = ‖I − Λ(w) − 11ᵀ/n‖₂`` over
``C = {w ≥ 0, Σ_{e∋i} w_e ≤ 1}``; for large graphs they run a projected subgradient method.
Here the non-smooth ``max_k |1 − λ_k|`` (``k ≥ 2``) is replaced by the log-sum-exp

.. code-block:: text

    f_p(w) = (1/p) log Σ_{k∈K} (e^{p(1−λ_k)} + e^{p(λ_k−1)}),      SLEM ≤ f_p ≤ SLEM + log(2|K|)/p

over all positive eigenvalues ``K`` (dense) or the ``k`` smallest and ``k`` largest (sparse,
Lanczos), with ``∂λ_k/∂w_e = (u_k[i] − u_k[j])²``; ``p`` grows in stages. Each stage runs
FISTA (Beck & Teboulle 2009) with backtracking and the adaptive restart of O'Donoghue &
Candès (2015). The Euclidean projection onto ``C`` solves its dual

.. code-block:: text

    max_{μ ≥ 0}  ½‖w(μ) − y‖² + μᵀ(|B| w(μ) − 1),     w(μ) = max(0, y − |B|ᵀμ)

(smooth and concave, ``n`` variables) with L-BFGS-B warm-started from the previous
projection. The solver returns the iterate with the smallest exact SLEM.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from fedopt.topology import spectral
from fedopt.topology.graph import Topology
from fedopt.topology.rates.linalg import WeightedLaplacian
from fedopt.topology.rates.registry import RateObjective
from fedopt.topology.rates.values import best_constant_weight

#: Smoothing parameters of the stages (the eigenvalues of ``W`` lie in [−1, 1]).
STAGES = (16.0, 64.0, 256.0, 1024.0, 4096.0)
#: Eigenvalues at each end of the spectrum kept by the sparse path.
SPARSE_EIGS = 12


class DegreePolytope:
    """Euclidean projection onto ``{w ≥ 0, Σ_{e∋i} w_e ≤ 1 ∀i}``.

    The dual is ``min_{μ ≥ 0} φ(μ) = ½‖(y − |B|ᵀμ)₊‖² + 1ᵀμ`` (piecewise quadratic, convex),
    with ``w = (y − |B|ᵀμ)₊``. It is solved by a projected semismooth Newton method
    (Bertsekas 1982): Newton steps on the free coordinates with the generalized Hessian
    ``|B|_act |B|_actᵀ`` (edges with ``w_e > 0``), projected onto ``μ ≥ 0`` with an Armijo
    search, warm-started from the previous projection's ``μ``; it ends in a few steps once
    the active set is found.
    """

    def __init__(self, top: Topology, tol: float = 1e-12, max_iter: int = 100) -> None:
        i, j = top.edges[:, 0], top.edges[:, 1]
        e = np.arange(top.m)
        self.A = sp.csr_matrix((np.ones(2 * top.m), (np.concatenate([i, j]), np.concatenate([e, e]))),
                               shape=(top.n, top.m))
        self.AT = self.A.T.tocsr()
        self.mu = np.zeros(top.n)
        self.tol, self.max_iter = tol, max_iter
        self.dense = top.n < spectral.SPARSE_THRESHOLD
        self.Ad = self.A.toarray() if self.dense else None

    def _phi(self, y: np.ndarray, mu: np.ndarray) -> tuple[float, np.ndarray]:
        z = np.maximum(y - self.AT @ mu, 0.0)
        return 0.5 * float(z @ z) + float(mu.sum()), z

    def project(self, y: np.ndarray) -> np.ndarray:
        A = self.A
        w = np.maximum(y, 0.0)
        if float((A @ w).max()) <= 1.0:
            return w
        mu = self.mu.copy()
        phi, z = self._phi(y, mu)
        for _ in range(self.max_iter):
            grad = 1.0 - A @ z
            pg = np.where(mu > 0.0, grad, np.minimum(grad, 0.0))
            if float(np.abs(pg).max()) <= self.tol:
                break
            free = (mu > 0.0) | (grad < 0.0)
            act = z > 0.0
            d = np.zeros_like(mu)
            if self.Ad is not None:
                Aa = self.Ad[np.ix_(free, act)]
                H = Aa @ Aa.T
                H[np.diag_indices_from(H)] += 1e-12 * (1.0 + H.diagonal())
                d[free] = -_solve_psd(H, grad[free])
            else:
                Aa = A[:, act]
                H = (Aa @ Aa.T)[free][:, free]
                d[free] = -spectral.spd_lu(H + sp.diags(1e-12 * (1.0 + H.diagonal()))).solve(grad[free])
            step = 1.0
            while True:
                trial = np.maximum(mu + step * d, 0.0)
                phi_t, z_t = self._phi(y, trial)
                if phi_t <= phi + 1e-4 * float(grad @ (trial - mu)) or step < 1e-10:
                    break
                step *= 0.5
            if phi_t > phi:  # no descent (numerically converged)
                break
            mu, phi, z = trial, phi_t, z_t
        self.mu = mu
        w = z
        worst = float((A @ w).max())
        return w / worst if worst > 1.0 else w  # the dual's tolerance never leaves the polytope


def _solve_psd(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``H⁻¹g`` for a (regularized) positive semidefinite ``H`` (least squares if singular)."""
    try:
        return np.linalg.solve(H, g)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(H, g, rcond=None)[0]


class TopBound:
    """A certified upper bound on ``λ_max(Λ(w))`` from the last evaluation: Weyl's inequality
    and Gershgorin on ``Λ(w) − Λ(w')``, ``λ_max(Λ(w)) ≤ λ_max(Λ(w')) + 2 max_i Σ_{e∋i}
    |w_e − w'_e|``. Consecutive iterates are close, so the bound is a good Lanczos shift."""

    def __init__(self, top: Topology) -> None:
        self.top = top
        self.w: np.ndarray | None = None
        self.lmax = math.inf

    def bound(self, w: np.ndarray) -> float | None:
        if self.w is None:
            return None
        dw = np.abs(w - self.w)
        spread = 2.0 * float(self.top.weighted_degrees(dw).max())
        return self.lmax + spread + 1e-6 * max(self.lmax, 1.0)  # strictly above: (Λ − σI) invertible

    def update(self, w: np.ndarray, lmax: float) -> None:
        self.w, self.lmax = w.copy(), lmax


def smoothed_slem(top: Topology, w: np.ndarray, p: float, k: int = SPARSE_EIGS,
                  top_bound: TopBound | None = None) -> tuple[float, np.ndarray, float]:
    """``(f_p(w), ∇f_p(w), SLEM(w))`` (see the module docstring)."""
    lin = WeightedLaplacian(top, w)
    if lin.sparse:
        lo, U_lo = lin.bottom(k)
        hi, U_hi = lin.largest(k, above=top_bound.bound(w) if top_bound is not None else None)
        if top_bound is not None:
            top_bound.update(w, float(hi[0]))
        ev, U = np.concatenate([lo, hi]), np.hstack([U_lo, U_hi])
    else:
        ev, U = lin.spectrum()
    exact = float(max(1.0 - ev.min(), ev.max() - 1.0))
    z = np.concatenate([p * (1.0 - ev), p * (ev - 1.0)])
    zmax = float(z.max())
    pi = np.exp(z - zmax)
    total = float(pi.sum())
    pi /= total
    K = ev.size
    coef = pi[K:] - pi[:K]  # ∂f/∂λ_k
    keep = np.flatnonzero(np.abs(coef) > 1e-12)
    g = lin.edge_quad(U[:, keep]) @ coef[keep]
    return (zmax + math.log(total)) / p, g, exact


def accelerated_projected_gradient(obj: RateObjective, top: Topology, c: np.ndarray, max_iter: int = 150,
                                   tol: float = 1e-6) -> tuple[np.ndarray, dict[str, Any]]:
    """Minimize the SLEM over the degree polytope (``c`` is unused: the constraint is per
    node). A stage ends after ``max_iter`` steps or five steps that lower ``f_p`` by less than
    ``tol`` times the current spectral gap ``1 − SLEM``."""
    C = DegreePolytope(top)
    tb = TopBound(top)
    x = best_constant_weight(top)
    best, best_x = math.inf, x.copy()
    iters = evals = 0
    for p in STAGES:
        fx, gx, sx = smoothed_slem(top, x, p, top_bound=tb)
        evals += 1
        if sx < best:
            best, best_x = sx, x.copy()
        step_l = p  # Lipschitz estimate of ∇f_p (∝ p), refined by backtracking
        y, fy, gy, t = x, fx, gx, 1.0
        stall = 0
        for _ in range(max_iter):
            iters += 1
            while True:
                xn = C.project(y - gy / step_l)
                fn, gn, sn = smoothed_slem(top, xn, p, top_bound=tb)
                evals += 1
                d = xn - y
                if fn <= fy + float(gy @ d) + 0.5 * step_l * float(d @ d) + 1e-15 or step_l > 1e12:
                    break
                step_l *= 2.0
            if sn < best:
                best, best_x = sn, xn.copy()
            decrease = fx - fn
            if fn > fx:  # adaptive restart: drop the momentum
                t_next = 1.0
                y, fy, gy = xn, fn, gn
            else:
                t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
                y = np.maximum(xn + ((t - 1.0) / t_next) * (xn - x), 0.0)  # weights stay ≥ 0
                if t > 1.0:
                    fy, gy, _ = smoothed_slem(top, y, p, top_bound=tb)
                    evals += 1
                else:
                    fy, gy = fn, gn
            x, fx, t = xn, fn, t_next
            step_l *= 0.9
            stall = stall + 1 if abs(decrease) < tol * max(1.0 - best, 1e-9) else 0
            if stall >= 5:
                break
        x = best_x.copy()
    return best_x, {"iterations": iters, "evaluations": evals}
