"""The CVXPY semidefinite programs of the rate problems (exact, certified by a duality gap;
dense, so meant for graphs up to about a hundred nodes).

``dadao`` (DADAO notes §3, with ``p = 1/s`` a variable rather than searched over):

.. code-block:: text

    minimize cᵀλ  s.t.  λ ≥ 0,  Λ + 11ᵀ/n ⪰ p(I − 11ᵀ/n)               (λ2 ≥ p)
                        b_eᵀΛ⁺b_e ≤ p   ∀e                               (2χ2 ≤ p)

one convex problem (``2χ1χ2 ≤ 1`` is ``max_e b_eᵀΛ⁺b_e ≤ λ2``), with the χ2 constraint in one
of three equivalent forms (per-edge LMIs, one block LMI, unit flows; see :func:`dadao`).
``max_connectivity``: maximize ``γ`` with ``Λ ⪰ γ(I − 11ᵀ/n)``
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

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from fedopt.topology.graph import Topology
from fedopt.topology.rates.registry import RateObjective

#: Solver names accepted by ``solver=`` (lower case) and their CVXPY names.
SOLVERS = {"scs": "SCS", "clarabel": "CLARABEL"}


def cvxpy_solver(solver: str) -> str:
    """CVXPY's name of ``solver`` (``"scs"``/``"clarabel"``); raises if unknown or not installed
    (naming the other solver)."""
    try:
        import cvxpy as cp
    except ImportError:  # pragma: no cover - cvxpy is a dependency
        raise ValueError("the rate SDPs need cvxpy (pip install cvxpy)") from None
    key = solver.lower()
    if key not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of: auto, {', '.join(SOLVERS)}")
    name = SOLVERS[key]
    if name not in cp.installed_solvers():
        other = next(k for k in SOLVERS if k != key)
        raise ValueError(
            f"solver {key!r} ({name}) is not installed (pip install {name.lower()}, or pass solver={other!r}); "
            f"installed CVXPY solvers: {', '.join(cp.installed_solvers())}"
        )
    return name


@dataclass
class SDPContext:
    """What one SDP solve needs: the graph, normalized costs, the solver and its options.

    ``form`` names one of the objective's equivalent formulations (``None``: its default
    for the solver); ``info`` collects what the solve reports (``solver_iterations``: the
    solver's iterations summed over every SDP solved, ``form``, ...)."""

    top: Topology
    costs: np.ndarray  # normalized to mean 1
    solver: str
    verbose: bool
    solver_opts: dict[str, Any]
    objective: RateObjective | None = None
    info: dict[str, Any] = field(default_factory=dict)
    form: str | None = None

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
        """Solve ``prob`` with the context's solver; a failure, or a status other than
        ``optimal``/``optimal_inaccurate``, is a ``ValueError`` that names the other solver
        (no silent fallback)."""
        kw = dict(self.solver_opts)
        if self.solver == "SCS":
            kw.setdefault("eps_abs", 1e-6)
            kw.setdefault("eps_rel", 1e-6)
            kw.setdefault("max_iters", 20000)
        other = next(k for k, v in SOLVERS.items() if v != self.solver)
        name = self.objective.name if self.objective is not None else "rate"
        what = f"the {name} SDP (n={self.top.n}, m={self.top.m})"
        advice = f"try solver={other!r} or method='first_order'"
        try:
            with warnings.catch_warnings():  # "may be inaccurate": reported as the status instead
                warnings.simplefilter("ignore", UserWarning)
                prob.solve(solver=self.solver, warm_start=warm, verbose=self.verbose, **kw)
        except Exception as exc:  # solver failures are reported, not raised from deep inside CVXPY
            raise ValueError(f"{self.solver} failed on {what} ({type(exc).__name__}: {exc}); {advice}") from None
        stats = prob.solver_stats
        if stats is not None and stats.num_iters is not None:
            self.info["solver_iterations"] = self.info.get("solver_iterations", 0) + int(stats.num_iters)
        if prob.status not in ("optimal", "optimal_inaccurate"):
            raise ValueError(f"{self.solver} returned status {prob.status!r} on {what}; {advice}")
        return str(prob.status)


def duality_gap(prob: Any) -> float:
    """Relative complementarity gap ``Σ_i |⟨y_i, g_i(x)⟩| / max(1, |p*|)`` over the
    constraints (equal to primal − dual objective at a stationary primal–dual pair)."""
    total = 0.0
    for con in prob.constraints:
        y = con.dual_value
        if y is None:
            continue
        if isinstance(y, list):  # a second-order cone: one dual block per argument
            total += abs(sum(float(np.sum(np.asarray(yi) * np.asarray(a.value))) for yi, a in zip(y, con.args)))
            continue
        g = con.expr.value
        total += abs(float(np.sum(np.asarray(y) * np.asarray(g))))
    return total / max(1.0, abs(float(prob.value)))


def _nonneg(lam: Any) -> Any:
    return lam >= 0


def _chi2_edge_lmi(ctx: SDPContext, lam: Any, Lam: Any, p: Any) -> list[Any]:
    """One ``(n+1)×(n+1)`` LMI per edge: ``[[Λ + 11ᵀ/n, b_e], [b_eᵀ, p]] ⪰ 0``."""
    import cvxpy as cp

    n = ctx.top.n
    B = ctx.top.incidence()
    A = Lam + np.full((n, n), 1.0 / n)
    pp = cp.reshape(p, (1, 1), order="C")
    return [cp.bmat([[A, B[:, e:e + 1]], [B[:, e:e + 1].T, pp]]) >> 0 for e in range(ctx.top.m)]


def _chi2_block_lmi(ctx: SDPContext, lam: Any, Lam: Any, p: Any) -> list[Any]:
    """One ``(n+m)×(n+m)`` LMI: ``[[Λ + 11ᵀ/n, B], [Bᵀ, Y]] ⪰ 0`` and ``diag(Y) ≤ p``."""
    import cvxpy as cp

    n, m = ctx.top.n, ctx.top.m
    B = ctx.top.incidence()
    Y = cp.Variable((m, m), symmetric=True)
    return [cp.bmat([[Lam + np.full((n, n), 1.0 / n), B], [B.T, Y]]) >> 0, cp.diag(Y) <= p]


def _chi2_flow(ctx: SDPContext, lam: Any, Lam: Any, p: Any) -> list[Any]:
    """Thomson's principle: a unit flow ``f^e`` (``B f^e = b_e``) per edge with
    ``Σ_k (f^e_k)²/λ_k ≤ p``, as ``m²`` three-dimensional rotated second-order cones
    ``(f^e_k)² ≤ t_ke·λ_k`` (``‖(2f, t − λ)‖ ≤ t + λ``) and ``Σ_k t_ke ≤ p``; no LMI."""
    import cvxpy as cp

    m = ctx.top.m
    B = ctx.top.incidence()
    F = cp.Variable((m, m))  # column e: the unit flow of edge e
    T = cp.Variable((m, m))  # T[k, e] ≥ F[k, e]² / λ_k
    rep = sp.kron(np.ones((m, 1)), sp.eye(m), format="csr")  # λ_k at every (k, e), column-major
    f, t, lk = cp.vec(F, order="F"), cp.vec(T, order="F"), rep @ lam
    return [sp.csr_matrix(B) @ F == B, cp.sum(T, axis=0) <= p, cp.SOC(t + lk, cp.vstack([2 * f, t - lk]), axis=0)]


#: Equivalent forms of DADAO's χ2 constraint ``b_eᵀΛ⁺b_e ≤ p`` on every edge (``form=`` of
#: :func:`fedopt.topology.rates.optimize_rates`), see :func:`dadao`.
DADAO_FORMS = {"flow": _chi2_flow, "edge_lmi": _chi2_edge_lmi, "block_lmi": _chi2_block_lmi}

#: The form :func:`dadao` takes for each solver when ``form`` is not given: the fastest with
#: that solver in ``benchmarks/RESULTS_rates.md`` (``python benchmarks/rates_solvers.py``).
DADAO_DEFAULT_FORM = {"CLARABEL": "flow", "SCS": "block_lmi"}


def dadao(ctx: SDPContext) -> tuple[np.ndarray, str, float]:
    """DADAO's total rate under ``2χ1χ2 ≤ 1`` as one SDP: ``(rates, status, duality gap)``.

    With ``r_e = b_eᵀΛ⁺b_e``, ``χ1 = 1/λ2`` and ``χ2 = max_e r_e/2``, the condition reads
    ``max_e r_e ≤ λ2``, i.e. some ``p`` has ``r_e ≤ p ≤ λ2`` on every edge. ``λ2 ≥ p`` is the
    LMI ``Λ + 11ᵀ/n ⪰ p(I − 11ᵀ/n)`` and ``r_e ≤ p`` (convex in ``(λ, p)``: ``r_e`` is a
    matrix-fractional function) takes one of the equivalent forms of :data:`DADAO_FORMS`
    (``ctx.form``, default :data:`DADAO_DEFAULT_FORM` of the solver). Both are jointly
    convex in ``(λ, p)``, so ``p`` is a variable of the one problem ``minimize cᵀλ``: the
    split ``χ1 ≤ s``, ``χ2 ≤ 1/(2s)`` of the DADAO notes §3 with ``p = 1/s`` optimized
    together with ``λ`` instead of by a search over ``s``. With ``Λ + 11ᵀ/n ≻ 0`` and
    ``b_e ⊥ 1``, ``(Λ + 11ᵀ/n)⁻¹ = Λ⁺ + 11ᵀ/n`` and ``r_e = b_eᵀ(Λ + 11ᵀ/n)⁻¹b_e``; then

    * ``edge_lmi``: ``[[Λ + 11ᵀ/n, b_e], [b_eᵀ, p]] ⪰ 0`` for every edge (Schur; the notes'
      form): ``m`` LMIs of size ``n+1``;
    * ``block_lmi``: ``[[Λ + 11ᵀ/n, B], [Bᵀ, Y]] ⪰ 0`` and ``diag(Y) ≤ p`` (then
      ``Y ⪰ Bᵀ(Λ + 11ᵀ/n)⁻¹B``, whose diagonal is ``r``, and ``Y = Bᵀ(Λ + 11ᵀ/n)⁻¹B`` is
      feasible): one LMI of size ``n+m``;
    * ``flow``: Thomson's principle, ``r_e = min {Σ_k f_k²/λ_k : B f = b_e}`` (the energy
      of the electrical unit flow between the edge's ends): ``m²`` small second-order cones.
    """
    import cvxpy as cp

    top, c = ctx.top, ctx.costs
    n = top.n
    form = ctx.form or DADAO_DEFAULT_FORM[ctx.solver]
    lam = cp.Variable(top.m)
    p = cp.Variable(nonneg=True)
    Lam = ctx.laplacian_expr(lam)
    J = np.full((n, n), 1.0 / n)
    cons = [_nonneg(lam), Lam + J - p * (np.eye(n) - J) >> 0]  # + J: strictly feasible along 1 (see module doc)
    cons += DADAO_FORMS[form](ctx, lam, Lam, p)
    prob = cp.Problem(cp.Minimize(c @ lam), cons)
    status = ctx.solve(prob)
    ctx.info.update(form=form, s=1.0 / float(p.value))
    return np.maximum(np.asarray(lam.value, dtype=np.float64), 0.0), status, duality_gap(prob)


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

