"""The CVXPY semidefinite programs of the rate problems (exact, certified by a duality gap;
dense, so meant for graphs up to about a hundred nodes).

``dadao`` (DADAO notes §3): for a scalar ``s``, ``SDP(s)``

.. code-block:: text

    minimize cᵀλ  s.t.  λ ≥ 0,  Λ ⪰ (1/s)(I − 11ᵀ/n)                  (χ1 ≤ s)
                        [[Λ + 11ᵀ/n, b_e], [b_eᵀ, 1/s]] ⪰ 0   ∀e        (χ2 ≤ 1/(2s))

then a 1-D search over ``s``. ``max_connectivity``: maximize ``γ`` with ``Λ ⪰ γ(I − 11ᵀ/n)``
(Boyd 2006, eq. 2). ``min_total_resistance``: minimize ``Tr Y`` with
``[[Λ + 11ᵀ/n, I], [I, Y]] ⪰ 0`` (Ghosh, Boyd & Saberi 2008, §4). ``fastest_mixing``:
minimize ``t`` with ``−tI ⪯ I − Λ − 11ᵀ/n ⪯ tI`` and ``Σ_{e∋i} λ_e ≤ 1`` (Boyd, Diaconis &
Xiao 2004, eq. 5).

Both λ2 constraints are imposed as ``Λ + 11ᵀ/n ⪰ γ(I − 11ᵀ/n)``: the same on ``1⊥`` and
strictly feasible along ``1``. Written as ``Λ − γ(I − 11ᵀ/n) ⪰ 0`` the matrix always has
``1`` in its kernel, Slater's condition fails, and Clarabel stopped with "insufficient
progress" at n = 60.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from fedopt.topology import spectral
from fedopt.topology.graph import Topology
from fedopt.topology.rates.mirror_descent import mirror_descent
from fedopt.topology.rates.registry import RateObjective
from fedopt.topology.rates.values import dadao_finalize

#: Solver names accepted by ``solver=`` (lower case) and their CVXPY names.
SOLVERS = {"scs": "SCS", "clarabel": "CLARABEL"}


def cvxpy_solver(solver: str) -> str:
    """CVXPY's name of ``solver`` (``"scs"``/``"clarabel"``); raises if unknown or not installed."""
    try:
        import cvxpy as cp
    except ImportError:  # pragma: no cover - cvxpy is a dependency
        raise ValueError("the rate SDPs need cvxpy (pip install cvxpy)") from None
    key = solver.lower()
    if key not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of: {', '.join(SOLVERS)}")
    name = SOLVERS[key]
    if name not in cp.installed_solvers():
        raise ValueError(
            f"solver {key!r} ({name}) is not installed; installed CVXPY solvers: {', '.join(cp.installed_solvers())}"
        )
    return name


@dataclass
class SDPContext:
    """What one SDP solve needs: the graph, normalized costs, the solver and its options."""

    top: Topology
    costs: np.ndarray  # normalized to mean 1
    solver: str
    verbose: bool
    solver_opts: dict[str, Any]
    objective: RateObjective | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def laplacian_expr(self, lam: Any) -> Any:
        """``Λ = B diag(λ) Bᵀ`` as a CVXPY expression (a sparse affine map of ``λ``)."""
        import cvxpy as cp

        n, m = self.top.n, self.top.m
        i, j = self.top.edges[:, 0], self.top.edges[:, 1]
        e = np.arange(m)
        rows = np.concatenate([i * n + i, j * n + j, i * n + j, j * n + i])
        cols = np.concatenate([e, e, e, e])
        vals = np.concatenate([np.ones(m), np.ones(m), -np.ones(m), -np.ones(m)])
        A = sp.csr_matrix((vals, (rows, cols)), shape=(n * n, m))
        return cp.reshape(A @ lam, (n, n), order="C")

    def solve(self, prob: Any, warm: bool = False) -> str:
        kw = dict(self.solver_opts)
        if self.solver == "SCS":
            kw.setdefault("eps_abs", 1e-6)
            kw.setdefault("eps_rel", 1e-6)
            kw.setdefault("max_iters", 20000)
        try:
            with warnings.catch_warnings():  # "may be inaccurate": reported as the status instead
                warnings.simplefilter("ignore", UserWarning)
                prob.solve(solver=self.solver, warm_start=warm, verbose=self.verbose, **kw)
        except Exception as exc:  # solver failures are reported, not raised from deep inside CVXPY
            name = type(exc).__name__
            other = "scs" if self.solver == "CLARABEL" else "clarabel"
            raise ValueError(f"{self.solver} failed on the rate SDP ({name}: {exc}); try solver={other!r} "
                             "or method='first_order'") from None
        if prob.status not in ("optimal", "optimal_inaccurate"):
            raise ValueError(f"{self.solver} returned status {prob.status!r} on the rate SDP")
        return str(prob.status)


def duality_gap(prob: Any) -> float:
    """Relative complementarity gap ``Σ_i |⟨y_i, g_i(x)⟩| / max(1, |p*|)`` over the
    constraints (equal to primal − dual objective at a stationary primal–dual pair)."""
    total = 0.0
    for con in prob.constraints:
        y = con.dual_value
        if y is None:
            continue
        g = con.expr.value
        total += abs(float(np.sum(np.asarray(y) * np.asarray(g))))
    return total / max(1.0, abs(float(prob.value)))


def _nonneg(lam: Any) -> Any:
    return lam >= 0


def dadao(ctx: SDPContext) -> tuple[np.ndarray, str, float]:
    """DADAO's rate SDP(s) and the 1-D search over ``s``: ``(rates, status, duality gap)``."""
    import cvxpy as cp
    from scipy.optimize import minimize_scalar

    top, c = ctx.top, ctx.costs
    n = top.n
    lam = cp.Variable(top.m)
    p = cp.Parameter(nonneg=True)  # 1/s
    Lam = ctx.laplacian_expr(lam)
    J = np.full((n, n), 1.0 / n)
    P = np.eye(n) - J
    B = top.incidence()
    cons = [_nonneg(lam), Lam + J - p * P >> 0]  # + J: strictly feasible along 1 (see module doc)
    pp = cp.reshape(p, (1, 1), order="C")
    for e in range(top.m):
        be = B[:, e:e + 1]
        cons.append(cp.bmat([[Lam + J, be], [be.T, pp]]) >> 0)
    prob = cp.Problem(cp.Minimize(c @ lam), cons)

    # Bracket s around χ1 of a good direction scaled to the condition: a cheap mirror-descent pass.
    hint = None
    if ctx.objective is not None and ctx.objective.smooth is not None:
        hint, _ = mirror_descent(ctx.objective, top, c, max_iter=60, tol=1e-4)
    w0 = hint if hint is not None else np.ones(top.m)
    r0 = dadao_finalize(top, w0, c)
    s0 = spectral.chi1(top, r0)
    cache: dict[float, tuple[float, np.ndarray, str, float]] = {}
    warm = [False]

    def value(logs: float) -> float:
        key = round(logs, 12)
        if key in cache:
            return cache[key][0]
        p.value = math.exp(-logs)
        status = ctx.solve(prob, warm=warm[0])
        warm[0] = True
        x = np.maximum(np.asarray(lam.value, dtype=np.float64), 0.0)
        # exact cost of the SDP's rates made feasible (solver tolerance never breaks the condition)
        exact = float(c @ dadao_finalize(top, x, c))
        cache[key] = (exact, x, status, duality_gap(prob))
        return exact

    width = math.log(1.25) if hint is not None else math.log(4.0)
    lo, hi = math.log(s0) - width, math.log(s0) + width
    grid = np.linspace(lo, hi, 3 if hint is not None else 5)
    vals = [value(g) for g in grid]
    k = int(np.argmin(vals))
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    if k in (0, len(grid) - 1):  # optimum at the edge of the bracket: widen once
        a, b = (a - 2 * width, a + width / 2) if k == 0 else (b - width / 2, b + 2 * width)
    minimize_scalar(value, bounds=(a, b), method="bounded", options={"xatol": 5e-3})
    best = min(cache, key=lambda kk: cache[kk][0])
    _, x, status, gap = cache[best]
    ctx.info.update(s=math.exp(best), sdp_solves=len(cache))
    return x, status, gap


def max_connectivity(ctx: SDPContext) -> tuple[np.ndarray, str, float]:
    """Maximize ``λ2(Λ)`` within the budget (Boyd 2006): ``(rates, status, duality gap)``."""
    import cvxpy as cp

    top, c = ctx.top, ctx.costs
    n = top.n
    lam = cp.Variable(top.m)
    gamma = cp.Variable()
    J = np.full((n, n), 1.0 / n)
    Lam = ctx.laplacian_expr(lam)
    cons = [_nonneg(lam), c @ lam <= top.m, Lam + J - gamma * (np.eye(n) - J) >> 0]
    prob = cp.Problem(cp.Maximize(gamma), cons)
    status = ctx.solve(prob)
    return np.asarray(lam.value, dtype=np.float64), status, duality_gap(prob)


def min_total_resistance(ctx: SDPContext) -> tuple[np.ndarray, str, float]:
    """Minimize ``n·Tr Λ⁺`` within the budget (Ghosh, Boyd & Saberi 2008): ``(rates, status, duality gap)``."""
    import cvxpy as cp

    top, c = ctx.top, ctx.costs
    n = top.n
    lam = cp.Variable(top.m)
    Y = cp.Variable((n, n), symmetric=True)
    Lam = ctx.laplacian_expr(lam)
    J = np.full((n, n), 1.0 / n)
    I = np.eye(n)
    # Y ⪰ (Λ + J/n)⁻¹ = Λ⁺ + J/n, so n·(Tr Y − 1) ≥ R_tot with equality at the optimum.
    cons = [_nonneg(lam), c @ lam <= top.m, cp.bmat([[Lam + J, I], [I, Y]]) >> 0]
    prob = cp.Problem(cp.Minimize(cp.trace(Y)), cons)
    status = ctx.solve(prob)
    return np.asarray(lam.value, dtype=np.float64), status, duality_gap(prob)


def fastest_mixing(ctx: SDPContext) -> tuple[np.ndarray, str, float]:
    """Fastest-mixing ``W = I − Λ`` (Boyd, Diaconis & Xiao 2004): ``(rates, status, duality gap)``."""
    import cvxpy as cp

    top = ctx.top
    n = top.n
    lam = cp.Variable(top.m)
    t = cp.Variable()
    Lam = ctx.laplacian_expr(lam)
    X = np.eye(n) - np.full((n, n), 1.0 / n) - Lam
    absB = sp.csr_matrix(np.abs(top.incidence()))
    cons = [_nonneg(lam), absB @ lam <= 1, X << t * np.eye(n), X >> -t * np.eye(n)]
    prob = cp.Problem(cp.Minimize(t), cons)
    status = ctx.solve(prob)
    return np.asarray(lam.value, dtype=np.float64), status, duality_gap(prob)

