"""Optimal per-edge gossip rates of a graph (CVXPY semidefinite programs).

Every problem picks edge weights ``λ ≥ 0`` of the rate-weighted Laplacian
``Λ = B diag(λ) Bᵀ`` (``B`` the incidence matrix) and is registered in
:data:`OBJECTIVES` (see :func:`register_objective`):

``dadao``
    minimize the total (or cost-weighted) rate ``Σ_e c_e λ_e`` subject to DADAO's rate
    condition ``2 χ1(Λ) χ2(Λ) ≤ 1`` (DADAO notes §3). ``χ1`` and ``χ2`` are each convex
    in ``λ`` but their product is not; for a scalar ``s`` the problem ``SDP(s)``

    .. code-block:: text

        minimize cᵀλ  s.t.  λ ≥ 0,  Λ ⪰ (1/s)(I − 11ᵀ/n)                  (χ1 ≤ s)
                            [[Λ + 11ᵀ/n, b_e], [b_eᵀ, 1/s]] ⪰ 0   ∀e        (χ2 ≤ 1/(2s))

    is convex, and a 1-D search over ``s`` (a bracket around the first-order solution's
    ``χ1``, then a bounded scalar minimization on ``log s``) solves the problem exactly.
    ``1/s`` is a CVXPY parameter, so the problem is compiled once and warm-started
    (SCS) along the search. Equivalently the optimum is ``min_w cᵀw·sqrt(2χ1(w)χ2(w))``
    over ``w ≥ 0``; ``log χ1 = −log λ2`` and ``log χ2 = max_e −log(conductance_e)`` are
    convex in ``w`` (``λ2`` and the effective conductances are concave), so this
    scale-free form is a convex problem, which the large-graph path minimizes.
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

Solvers: SCS (default, first-order, fast) or Clarabel (interior point, accurate), by the
``solver`` option. The dense SDPs grow as ``n²`` variables per matrix inequality (a
200-node max-connectivity SDP takes minutes with Clarabel), so ``method="auto"`` uses
them up to :data:`SDP_MAX_NODES` nodes (DADAO's, with one LMI per edge, up to
``m·(n+1) ≤`` :data:`DADAO_SDP_MAX_SIZE`) and above that a first-order method on the same
objective: exponentiated-gradient (mirror) descent on the cost simplex with backtracking,
on a smoothed objective (a soft-min over the smallest Laplacian eigenvalues for ``χ1``, a
soft-max over the edges for ``χ2``), evaluated with sparse linear algebra from ``n ≥ 500``
(shift-invert Lanczos and a sparse LU of the grounded Laplacian); the returned value is
always the exact objective of the returned rates.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from fedopt.topology import spectral
from fedopt.topology.graph import Topology

#: Solver names accepted by ``solver=`` (lower case) and their CVXPY names.
SOLVERS = {"scs": "SCS", "clarabel": "CLARABEL"}
#: ``method="auto"`` solves the SDP up to this many nodes, the first-order method above.
SDP_MAX_NODES = 60
#: ``method="auto"`` solves DADAO's SDP (one (n+1)×(n+1) LMI per edge, solved about ten
#: times along the 1-D search) only while ``m·(n+1)`` is at most this.
DADAO_SDP_MAX_SIZE = 1200
#: Rates below this fraction of the mean rate are raised to it (DADAO needs every λ_e > 0).
MIN_RATE_FRACTION = 1e-6


@dataclass(frozen=True)
class RateSolution:
    """Optimized per-edge rates and how they compare with uniform rates.

    ``rates`` are in the topology's edge order. ``objective`` is recomputed exactly from
    the returned rates with :mod:`fedopt.topology.spectral` (not the solver's value);
    ``chi1``/``chi2`` are those of the returned rates. ``status`` is the solver's status
    (``"optimal"``, ``"optimal_inaccurate"``, ``"first_order"``...), ``duality_gap`` the
    relative gap certified by the last SDP solve (``Σ |⟨dual, slack⟩| / max(1, |p*|)``;
    ``None`` for the first-order method).
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


# ---- the registry ------------------------------------------------------------------------


@dataclass(frozen=True)
class RateObjective:
    """One rate problem: its exact value, its best uniform rates, its SDP and (optionally)
    its first-order smoothed surrogate.

    ``value(top, w, c)`` is the exact objective of rates ``w`` (already normalized to the
    problem's scale by ``finalize``); ``finalize(top, w, c)`` rescales any direction
    ``w ≥ 0`` to feasible rates; ``sdp(ctx)`` returns rates from CVXPY; ``smooth(top, w,
    c, p)`` returns ``(f, grad)`` of a smoothed scale-free objective to *minimize* over the
    cost simplex (``None``: no first-order path).
    """

    name: str
    sense: str  # "min" or "max"
    description: str
    value: Callable[[Topology, np.ndarray, np.ndarray], float]
    finalize: Callable[[Topology, np.ndarray, np.ndarray], np.ndarray]
    uniform: Callable[[Topology, np.ndarray], np.ndarray]
    sdp: Callable[["_SDPContext"], tuple[np.ndarray, str, float]]
    smooth: Callable[[Topology, np.ndarray, np.ndarray, float], tuple[float, np.ndarray]] | None = None
    improvement: Callable[[float, float], float] | None = None

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


# ---- checks --------------------------------------------------------------------------------


def _as_topology(top: Topology | nx.Graph) -> Topology:
    if isinstance(top, nx.Graph):
        if top.number_of_nodes() < 2 or not nx.is_connected(top):
            raise ValueError("the graph is disconnected (or has fewer than 2 nodes): gossip rates need a connected graph")
        return Topology.from_networkx("graph", top)
    if top.n < 2 or top.m == 0 or not nx.is_connected(top.graph):
        raise ValueError(f"topology {top.name!r} is disconnected (or has fewer than 2 nodes): gossip rates need a connected graph")
    return top


def _cvxpy_solver(solver: str) -> str:
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


def _costs(top: Topology, costs: np.ndarray | None) -> np.ndarray:
    if costs is None:
        return np.ones(top.m)
    c = np.asarray(costs, dtype=np.float64)
    if c.shape != (top.m,):
        raise ValueError(f"costs must have one value per edge ({top.m}), got shape {c.shape}")
    if not np.isfinite(c).all() or (c <= 0).any():
        raise ValueError("edge costs must be finite and positive")
    return c


# ---- exact values ----------------------------------------------------------------------------


def condition(top: Topology, rates: np.ndarray) -> float:
    """``2 χ1(Λ) χ2(Λ)`` of the rates (≤ 1 is DADAO's condition)."""
    return 2.0 * spectral.chi1(top, rates) * spectral.chi2(top, rates)


def total_resistance(top: Topology, rates: np.ndarray) -> float:
    """``R_tot = Σ_{i<j} R_ij = n·Tr(Λ⁺)``."""
    n = top.n
    if n < spectral.SPARSE_THRESHOLD:
        ev = sla.eigvalsh(top.laplacian(rates))[1:]
        return float(n * np.sum(1.0 / ev)) if ev[0] > 0 else math.inf
    lin = _LinAlg(top, rates)
    return float(n * lin.trace_pinv())


def slem(top: Topology, rates: np.ndarray) -> float:
    """Second-largest eigenvalue modulus ``‖I − Λ − 11ᵀ/n‖₂`` of ``W = I − Λ``."""
    ev = np.linalg.eigvalsh(top.laplacian(rates))
    return float(max(abs(1.0 - ev[1]), abs(1.0 - ev[-1])))


def _scale_to_budget(top: Topology, w: np.ndarray, c: np.ndarray) -> np.ndarray:
    w = np.maximum(np.asarray(w, dtype=np.float64), 0.0)
    return w * (float(c.sum()) / float(c @ w))


def _dadao_finalize(top: Topology, w: np.ndarray, c: np.ndarray) -> np.ndarray:
    w = np.maximum(np.asarray(w, dtype=np.float64), 0.0)
    w = np.maximum(w, MIN_RATE_FRACTION * w.mean())
    return w * math.sqrt(condition(top, w))


# ---- SDPs -------------------------------------------------------------------------------------


@dataclass
class _SDPContext:
    top: Topology
    costs: np.ndarray  # normalized to mean 1
    solver: str
    verbose: bool
    solver_opts: dict[str, Any]
    hint: np.ndarray | None = None  # a good direction (e.g. the first-order solution)
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
            raise ValueError(f"{self.solver} failed on the rate SDP ({name}: {exc}); try solver='clarabel' or 'scs'") from None
        if prob.status not in ("optimal", "optimal_inaccurate"):
            raise ValueError(f"{self.solver} returned status {prob.status!r} on the rate SDP")
        return str(prob.status)


def _gap(prob: Any) -> float:
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


def _sdp_dadao(ctx: _SDPContext) -> tuple[np.ndarray, str, float]:
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
    cons = [_nonneg(lam), Lam - p * P >> 0]
    pp = cp.reshape(p, (1, 1), order="C")
    for e in range(top.m):
        be = B[:, e:e + 1]
        cons.append(cp.bmat([[Lam + J, be], [be.T, pp]]) >> 0)
    prob = cp.Problem(cp.Minimize(c @ lam), cons)

    # Bracket s around χ1 of a good direction scaled to the condition.
    w0 = ctx.hint if ctx.hint is not None else np.ones(top.m)
    r0 = _dadao_finalize(top, w0, c)
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
        exact = float(c @ _dadao_finalize(top, x, c))
        cache[key] = (exact, x, status, _gap(prob))
        return exact

    width = math.log(1.25) if ctx.hint is not None else math.log(4.0)
    lo, hi = math.log(s0) - width, math.log(s0) + width
    grid = np.linspace(lo, hi, 3 if ctx.hint is not None else 5)
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


def _sdp_max_connectivity(ctx: _SDPContext) -> tuple[np.ndarray, str, float]:
    import cvxpy as cp

    top, c = ctx.top, ctx.costs
    n = top.n
    lam = cp.Variable(top.m)
    gamma = cp.Variable()
    P = np.eye(n) - np.full((n, n), 1.0 / n)
    Lam = ctx.laplacian_expr(lam)
    prob = cp.Problem(cp.Maximize(gamma), [_nonneg(lam), c @ lam <= top.m, Lam - gamma * P >> 0])
    status = ctx.solve(prob)
    return np.asarray(lam.value, dtype=np.float64), status, _gap(prob)


def _sdp_min_total_resistance(ctx: _SDPContext) -> tuple[np.ndarray, str, float]:
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
    return np.asarray(lam.value, dtype=np.float64), status, _gap(prob)


def _sdp_fastest_mixing(ctx: _SDPContext) -> tuple[np.ndarray, str, float]:
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
    return np.asarray(lam.value, dtype=np.float64), status, _gap(prob)


# ---- linear algebra of the first-order path -------------------------------------------------------


class _LinAlg:
    """``Λ⁺`` solves, the bottom of the spectrum and edge resistances of one weighting;
    dense below ``spectral.SPARSE_THRESHOLD`` nodes, sparse (grounded LU) above."""

    def __init__(self, top: Topology, w: np.ndarray) -> None:
        self.top, self.w, self.n = top, w, top.n
        self.sparse = top.n >= spectral.SPARSE_THRESHOLD
        if self.sparse:
            L = spectral.laplacian(top, w, sparse=True).tocsc()
            self.L = L
            self.c = float(L.diagonal().sum()) / self.n
            self._solve = spectral._grounded_solver(L, self.c, np.full(self.n, 1.0 / math.sqrt(self.n)))
        else:
            L = top.laplacian(w)
            self.L = L
            self.pinv = np.linalg.inv(L + np.full((self.n, self.n), 1.0 / self.n)) - 1.0 / self.n

    def solve(self, X: np.ndarray) -> np.ndarray:
        """``Λ⁺ X`` for columns ``X ⊥ 1``."""
        if self.sparse:
            Y = self._solve.matmat(X) if X.ndim == 2 else self._solve.matvec(X)
            return Y - Y.mean(axis=0)
        return self.pinv @ X

    def bottom(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` smallest positive eigenvalues of ``Λ`` and their eigenvectors."""
        k = min(k, self.n - 1)
        if not self.sparse:
            ev, U = sla.eigh(self.L, subset_by_index=[1, k])
            return ev, U
        # eigenvalues of the grounded inverse (Λ + c·uuᵀ)⁻¹: the largest are 1/λ2, 1/λ3, ...
        op = spla.LinearOperator((self.n, self.n), matvec=self._solve.matvec, dtype=np.float64)
        vals, U = spla.eigsh(op, k=k, which="LA", tol=1e-10)
        order = np.argsort(-vals)
        return 1.0 / vals[order], U[:, order]

    def resistances(self) -> np.ndarray:
        if self.sparse:
            return spectral.effective_resistances(self.top, self.w)
        i, j = self.top.edges[:, 0], self.top.edges[:, 1]
        M = self.pinv
        return M[i, i] + M[j, j] - 2.0 * M[i, j]

    def trace_pinv(self) -> float:
        if not self.sparse:
            return float(np.trace(self.pinv))
        # exact: Tr Λ⁺ = Σ_i e_iᵀ Λ⁺ e_i, in blocks
        n, tot = self.n, 0.0
        for s in range(0, n, 256):
            idx = np.arange(s, min(s + 256, n))
            E = np.zeros((n, idx.size))
            E[idx, np.arange(idx.size)] = 1.0
            E -= 1.0 / n
            tot += float(np.einsum("ij,ij->", E, self.solve(E)))
        return tot

    def edge_quad(self, X: np.ndarray) -> np.ndarray:
        """``(b_fᵀ x)²`` for every edge ``f`` and column ``x`` of ``X`` (``m × k``)."""
        i, j = self.top.edges[:, 0], self.top.edges[:, 1]
        D = X[i] - X[j]
        return D * D


def _soft_log_chi1(lin: _LinAlg, p: float, k: int = 8) -> tuple[float, np.ndarray]:
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


def _soft_log_chi2(lin: _LinAlg, q: float) -> tuple[float, np.ndarray]:
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
    Bk = np.zeros((top.n, keep.size))
    Bk[top.edges[keep, 0], np.arange(keep.size)] = 1.0
    Bk[top.edges[keep, 1], np.arange(keep.size)] = -1.0
    X = lin.solve(Bk)
    g = -(lin.edge_quad(X) @ wts[keep])
    return float(f), g


def _smooth_dadao(top: Topology, w: np.ndarray, c: np.ndarray, p: float) -> tuple[float, np.ndarray]:
    lin = _LinAlg(top, w)
    f1, g1 = _soft_log_chi1(lin, p)
    f2, g2 = _soft_log_chi2(lin, p)
    return f1 + f2, g1 + g2


def _smooth_max_connectivity(top: Topology, w: np.ndarray, c: np.ndarray, p: float) -> tuple[float, np.ndarray]:
    return _soft_log_chi1(_LinAlg(top, w), p)


def _smooth_min_total_resistance(top: Topology, w: np.ndarray, c: np.ndarray, p: float) -> tuple[float, np.ndarray]:
    lin = _LinAlg(top, w)
    m = top.m
    g = np.empty(m)
    tr = 0.0
    # ∂ Tr Λ⁺/∂w_f = −‖Λ⁺ b_f‖²; Tr Λ⁺ = Σ_f w_f ‖Λ^{+1/2}... computed directly
    for s in range(0, m, 256):
        idx = np.arange(s, min(s + 256, m))
        Bk = np.zeros((top.n, idx.size))
        Bk[top.edges[idx, 0], np.arange(idx.size)] = 1.0
        Bk[top.edges[idx, 1], np.arange(idx.size)] = -1.0
        X = lin.solve(Bk)
        g[idx] = -np.einsum("ij,ij->j", X, X)
    tr = lin.trace_pinv()
    return math.log(tr), g / tr


def _first_order(obj: RateObjective, top: Topology, c: np.ndarray, w0: np.ndarray | None = None,
                 max_iter: int = 150, tol: float = 1e-5) -> tuple[np.ndarray, dict[str, Any]]:
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


# ---- the registered problems ------------------------------------------------------------------------


def _uniform_dadao(top: Topology, c: np.ndarray) -> np.ndarray:
    return _dadao_finalize(top, np.ones(top.m), c)


def _best_constant_weight(top: Topology, c: np.ndarray) -> np.ndarray:
    ev = np.linalg.eigvalsh(top.laplacian())
    alpha = min(2.0 / (ev[1] + ev[-1]), 1.0 / float(top.degrees().max()))
    return np.full(top.m, alpha)


register_objective(RateObjective(
    name="dadao", sense="min",
    description="minimize Σ c_e λ_e subject to 2·χ1(Λ)·χ2(Λ) ≤ 1 (DADAO's rate condition)",
    value=lambda top, w, c: float(c @ w),
    finalize=_dadao_finalize, uniform=_uniform_dadao, sdp=_sdp_dadao, smooth=_smooth_dadao,
))
register_objective(RateObjective(
    name="max_connectivity", sense="max",
    description="maximize λ2(Λ) with the budget Σ c_e λ_e = Σ c_e (Boyd 2006)",
    value=lambda top, w, c: spectral.lambda2(top, w),
    finalize=_scale_to_budget, uniform=lambda top, c: _scale_to_budget(top, np.ones(top.m), c),
    sdp=_sdp_max_connectivity, smooth=_smooth_max_connectivity,
))
register_objective(RateObjective(
    name="min_total_resistance", sense="min",
    description="minimize n·Tr(Λ⁺) with the budget Σ c_e λ_e = Σ c_e (Ghosh, Boyd & Saberi 2008)",
    value=lambda top, w, c: total_resistance(top, w),
    finalize=_scale_to_budget, uniform=lambda top, c: _scale_to_budget(top, np.ones(top.m), c),
    sdp=_sdp_min_total_resistance, smooth=_smooth_min_total_resistance,
))
register_objective(RateObjective(
    name="fastest_mixing", sense="min",
    description="W = I − Λ with the smallest ‖W − 11ᵀ/n‖₂, Σ_{e∋i} λ_e ≤ 1 (Boyd, Diaconis & Xiao 2004)",
    value=lambda top, w, c: slem(top, w), finalize=lambda top, w, c: np.maximum(np.asarray(w, dtype=np.float64), 0.0),
    uniform=_best_constant_weight, sdp=_sdp_fastest_mixing, smooth=None,
    improvement=lambda opt, uni: (1.0 - opt) / (1.0 - uni) if uni < 1.0 else math.inf,
))


# ---- the entry point ---------------------------------------------------------------------------


def optimize_rates(
    top: Topology | nx.Graph,
    objective: str = "dadao",
    *,
    costs: np.ndarray | None = None,
    solver: str = "scs",
    method: str = "auto",
    verbose: bool = False,
    solver_opts: dict[str, Any] | None = None,
    max_iter: int = 150,
) -> RateSolution:
    """Optimal per-edge rates of ``top`` for a registered ``objective``.

    ``costs`` (one positive number per edge, e.g. :func:`fedopt.topology.linkcost.edge_costs`)
    weight the budget / total rate; default 1. ``method``: ``"sdp"`` (CVXPY with ``solver``
    ``"scs"`` or ``"clarabel"``), ``"first_order"`` (the large-graph path) or ``"auto"``
    (the SDP up to :data:`SDP_MAX_NODES` nodes). Raises ``ValueError`` for a disconnected
    graph, an unknown objective, method or solver, or a solver that is not installed.
    """
    top = _as_topology(top)
    obj = get_objective(objective)
    c = _costs(top, costs)
    if method not in ("auto", "sdp", "first_order"):
        raise ValueError(f"unknown method {method!r}; choose one of: auto, sdp, first_order")
    if method == "auto":
        small = top.n <= SDP_MAX_NODES and (obj.name != "dadao" or top.m * (top.n + 1) <= DADAO_SDP_MAX_SIZE)
        method = "sdp" if small or obj.smooth is None else "first_order"
    if method == "first_order" and obj.smooth is None:
        raise ValueError(f"rate objective {obj.name!r} has no first-order path; use method='sdp'")
    cvx_solver = _cvxpy_solver(solver) if method == "sdp" else "first_order"
    cn = c / c.mean()
    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    gap: float | None = None
    if method == "sdp":
        hint = None
        if obj.name == "dadao":  # a cheap first-order pass brackets the 1-D search over s
            hint, _ = _first_order(obj, top, cn, max_iter=60, tol=1e-4)
        ctx = _SDPContext(top, cn, cvx_solver, verbose, dict(solver_opts or {}), hint=hint)
        w, status, gap = obj.sdp(ctx)
        info.update(ctx.info)
    else:
        w, fo_info = _first_order(obj, top, cn, max_iter=max_iter)
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


# ---- cached rates for experiment configs ------------------------------------------------------------

_CACHE: dict[tuple[Any, ...], np.ndarray] = {}


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


__all__ = [
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
    "register_objective",
    "slem",
    "total_resistance",
]
