"""MSDA: multi-step dual accelerated method (Scaman et al. 2017, Algorithm 2).

Scaman, Bach, Bubeck, Lee and Massoulié, "Optimal algorithms for smooth and
strongly convex distributed optimization in networks", ICML 2017, Alg. 2:
accelerated gradient ascent on the dual, whose gradient is obtained from the
dual (conjugate) gradients ``θ_i = ∇f_i*(x_i)`` after a Chebyshev-accelerated
gossip of ``K = ⌊1/√γ⌋`` steps (their "AcceleratedGossip" procedure)::

    θ_t   = ∇f*(x_t)
    y_t+1 = x_t − η · AcceleratedGossip(θ_t, W, K)
    x_t+1 = (1 + μ) y_t+1 − μ y_t

with ``γ = λ₂⁺(W)/λ_max(W)``, ``c₁ = (1−√γ)/(1+√γ)``, ``c₂ = (1+γ)/(1−γ)``,
``c₃ = 2/((1+γ)λ_max(W))``, ``η = α(1+c₁^{2K})/(1+c₁^K)²`` and
``μ = ((1+c₁^K)√κ − 1 + c₁^K)/((1+c₁^K)√κ + 1 − c₁^K)`` (α = strong convexity
of the f_i, κ = L/α). The primal iterates are ``θ_i = ∇f_i*(x_i)``. It needs
O(√κ log 1/ε) rounds of n dual gradients and O(√(κ γ⁻¹)) gossip steps (Thm. 3).
As in the DADAO paper's comparison, ``W = L_G/|E|`` and the method is run on
quadratic local objectives (least squares), whose conjugate gradient has a
closed form: ``∇f_i(x) = A_i x − b_i`` gives ``∇f_i*(u) = A_i⁻¹(u + b_i)``.

Counting: n (dual) gradients per round; each gossip step is one
communication of ``d`` floats per edge (``|E|·K`` per round).
"""

from __future__ import annotations

import math
import weakref

import numpy as np
from pydantic import Field

from fedopt.algorithms.base import Context, Params, RoundAlgorithm, register_algorithm
from fedopt.algorithms.decentralized.adom_plus import laplacian_spectrum, sparse_laplacian
from fedopt.core.arrays import FloatArray, IntArray, State
from fedopt.problems.base import Problem

#: Relative tolerance of the check that the local objectives are quadratic.
AFFINE_RTOL = 1e-8

_FORMS: "weakref.WeakKeyDictionary[Problem, tuple[FloatArray, FloatArray, FloatArray]]" = weakref.WeakKeyDictionary()


def quadratic_form(problem: Problem) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(A [n,d,d], b [n,d], A⁻¹)`` with ``∇f_i(x) = A_i x − b_i`` for quadratic local objectives.

    Read from the problem's gradient oracle (uncounted set-up: a quadratic is
    determined by ``d + 1`` gradients) and checked at a random point; a
    non-quadratic problem (e.g. logistic regression) is a clear error.
    """
    cached = _FORMS.get(problem)
    if cached is not None:
        return cached
    n, d = problem.n, problem.d
    nodes = np.arange(n)
    g0 = problem.grad(np.zeros((n, d)), nodes)
    A = np.empty((n, d, d))
    for j in range(d):
        e = np.zeros((n, d))
        e[:, j] = 1.0
        A[:, :, j] = problem.grad(e, nodes) - g0
    b = -g0
    X = np.random.default_rng(12345).standard_normal((n, d)) * 3.0
    pred = np.einsum("kij,kj->ki", A, X) - b
    actual = problem.grad(X, nodes)
    scale = max(1.0, float(np.abs(actual).max()))
    if not np.allclose(pred, actual, rtol=0, atol=AFFINE_RTOL * scale) or not np.allclose(
        A, A.transpose(0, 2, 1), atol=AFFINE_RTOL * max(1.0, float(np.abs(A).max()))
    ):
        raise ValueError(
            f"{type(problem).__name__}: this method needs local objectives whose conjugate gradient ∇f_i* has a "
            "closed form (quadratics / least squares); use problem 'least_squares' or 'quadratic'"
        )
    A = 0.5 * (A + A.transpose(0, 2, 1))
    Ainv = np.linalg.inv(A)
    _FORMS[problem] = (A, b, Ainv)
    return A, b, Ainv


def dual_grad(problem: Problem, U: FloatArray, nodes: IntArray) -> FloatArray:
    """``∇f_i*(u_i) = A_i⁻¹(u_i + b_i)`` (pure, uncounted)."""
    _, b, Ainv = quadratic_form(problem)
    return np.einsum("kij,kj->ki", Ainv[nodes], U + b[nodes])


def counted_dual_grad(ctx: Context, U: FloatArray, nodes: IntArray) -> FloatArray:
    """Dual gradients, one gradient evaluation counted per row."""
    ctx.meter.grad_evals.add(nodes)
    return dual_grad(ctx.problem, U, nodes)


class MSDAParams(Params):
    K: int | None = Field(None, ge=1, description="gossip steps per round (default ⌊1/√γ⌋, their Alg. 2)")


@register_algorithm("msda")
class MSDA(RoundAlgorithm):
    Params = MSDAParams
    params: MSDAParams
    needs_strong_convexity = True

    def _setup(self, ctx: Context) -> dict[str, object]:
        top = ctx.topology
        key = ("msda", id(self), id(top))
        if key not in ctx.extra:
            prob = ctx.problem
            if prob.mu is None or not prob.mu > 0:
                raise ValueError("msda: needs a strongly convex problem (problem.mu > 0)")
            quadratic_form(prob)
            w = np.full(top.m, 1.0 / top.m)
            l2, lmax = laplacian_spectrum(top, w)
            gam = l2 / lmax
            c1 = (1 - math.sqrt(gam)) / (1 + math.sqrt(gam))
            c2 = (1 + gam) / (1 - gam) if gam < 1 else math.inf
            c3 = 2 / ((1 + gam) * lmax)
            K = self.params.K if self.params.K is not None else max(1, int(1 / math.sqrt(gam) + 1e-9))
            kappa = float(prob.L) / float(prob.mu)
            cK = c1**K
            ctx.extra[key] = dict(
                W=sparse_laplacian(top, w), c2=c2, c3=c3, K=K,
                eta=float(prob.mu) * (1 + c1 ** (2 * K)) / (1 + cK) ** 2,
                mom=((1 + cK) * math.sqrt(kappa) - 1 + cK) / ((1 + cK) * math.sqrt(kappa) + 1 - cK),
            )
        return ctx.extra[key]  # type: ignore[no-any-return]

    def init(self, ctx: Context) -> State:
        self._setup(ctx)
        z = np.zeros((ctx.n, ctx.d))
        return {"x": z, "y": z.copy()}

    def accelerated_gossip(self, ctx: Context, X: FloatArray) -> FloatArray:
        """``X − T_K(c₂(I − c₃W))X / T_K(c₂)`` (Chebyshev), counting ``K`` gossip steps."""
        s = self._setup(ctx)
        W, c2, c3, K = s["W"], float(s["c2"]), float(s["c3"]), int(s["K"])  # type: ignore[arg-type]
        top = ctx.topology
        edges, eids = top.edges, np.arange(top.m)
        if math.isinf(c2):  # γ = 1 (complete graph): K = 1 and X − (I − c₃W)X = c₃WX
            ctx.channel.exchange(edges[:, 0], edges[:, 1], eids, ctx.d)
            return c3 * (W @ X)  # type: ignore[no-any-return]
        a_prev, a = 1.0, c2
        x_prev = X
        ctx.channel.exchange(edges[:, 0], edges[:, 1], eids, ctx.d)
        x = c2 * (X - c3 * (W @ X))
        for _ in range(1, K):
            ctx.channel.exchange(edges[:, 0], edges[:, 1], eids, ctx.d)
            a_prev, a = a, 2 * c2 * a - a_prev
            x_prev, x = x, 2 * c2 * (x - c3 * (W @ x)) - x_prev
        return X - x / a  # type: ignore[no-any-return]

    def round(self, state: State, ctx: Context, r: int) -> State:
        s = self._setup(ctx)
        x, y = state["x"], state["y"]
        theta = counted_dual_grad(ctx, x, np.arange(ctx.n))
        ctx.meter.local_steps.add_all(1.0)
        y_new = x - float(s["eta"]) * self.accelerated_gossip(ctx, theta)  # type: ignore[arg-type]
        mom = float(s["mom"])  # type: ignore[arg-type]
        return {"x": (1 + mom) * y_new - mom * y, "y": y_new}

    def iterates(self, state: State, ctx: Context, t: float) -> FloatArray:
        """The primal iterates ``θ_i = ∇f_i*(x_i)``."""
        return dual_grad(ctx.problem, state["x"], np.arange(ctx.n))
