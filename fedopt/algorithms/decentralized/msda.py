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

Counting: each round every node computes one dual gradient ``∇f_i*(x_i)`` (their
Alg. 2, line 3: n gradient evaluations per round, through the counting oracle's
``conjugate_grad``); each gossip step is one communication of ``d`` floats per edge
(``|E|·K`` per round).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from fedopt.algorithms.base import (
    Complexity,
    Context,
    Layout,
    Mix,
    Params,
    Prepared,
    RowBlock,
    RowRound,
    RowRoundAlgorithm,
    register_algorithm,
)
from fedopt.algorithms.decentralized.adom_plus import laplacian_spectrum, sparse_laplacian
from fedopt.core.arrays import FloatArray, State
from fedopt.problems.base import Problem, quadratic_form
from fedopt.topology.graph import Topology


class MSDAParams(Params):
    K: int | None = Field(None, ge=1, description="gossip steps per round (default ⌊1/√γ⌋, their Alg. 2)")


@dataclass(frozen=True, eq=False)
class MSDAPrepared(Prepared):
    """``W = L_G/|E|`` of one graph and the constants of Alg. 2 for it (module docstring)."""

    W: sp.csr_matrix
    c2: float
    c3: float
    K: int
    eta: float
    mom: float


@register_algorithm("msda")
class MSDA(RowRoundAlgorithm):
    Params = MSDAParams
    params: MSDAParams
    needs_strong_convexity = True
    layout = {"x": Layout.NODE, "y": Layout.NODE}
    prepared_type = MSDAPrepared
    #: Thm. 3: O(√κ log 1/ε) rounds of n dual gradients and K = ⌊1/√γ⌋ gossip steps over |E|
    #: edges, γ = λ₂/λ_max = 1/χ of L_G (scale-free, so that of L_G/|E| too).
    complexity = (
        Complexity("messages", {"edges": 1.0, "chi": 0.5}, 0.5, "Scaman et al. 2017, Thm. 3"),
        Complexity("grad_evals", {"n": 1.0}, 0.5, "Scaman et al. 2017, Thm. 3"),
    )

    def prepare(self, problem: Problem, graphs: Sequence[Topology]) -> list[MSDAPrepared]:
        if problem.mu is None or not problem.mu > 0:
            raise ValueError("msda: needs a strongly convex problem (problem.mu > 0)")
        quadratic_form(problem)
        return [self._prepare_graph(float(problem.L), float(problem.mu), top) for top in graphs]

    def _prepare_graph(self, L: float, mu: float, top: Topology) -> MSDAPrepared:
        w = np.full(top.m, 1.0 / top.m)
        l2, lmax = laplacian_spectrum(top, w)
        gam = l2 / lmax
        c1 = (1 - math.sqrt(gam)) / (1 + math.sqrt(gam))
        c2 = (1 + gam) / (1 - gam) if gam < 1 else math.inf
        c3 = 2 / ((1 + gam) * lmax)
        K = self.params.K if self.params.K is not None else max(1, int(1 / math.sqrt(gam) + 1e-9))
        kappa = L / mu
        cK = c1**K
        return MSDAPrepared(
            W=sparse_laplacian(top, w), c2=c2, c3=c3, K=K,
            eta=mu * (1 + c1 ** (2 * K)) / (1 + cK) ** 2,
            mom=((1 + cK) * math.sqrt(kappa) - 1 + cK) / ((1 + cK) * math.sqrt(kappa) + 1 - cK),
        )

    def init(self, ctx: Context) -> State:
        z = np.zeros((ctx.n, ctx.d))
        return {"x": z, "y": z.copy()}

    def products(self, ctx: Context) -> int:
        s = ctx.prepared_as(MSDAPrepared)
        return 1 if math.isinf(s.c2) else s.K

    def accelerated_gossip(self, ctx: Context, block: RowBlock,
                           X: FloatArray) -> Generator[Mix, FloatArray, FloatArray]:
        """``X − T_K(c₂(I − c₃W))X / T_K(c₂)`` (Chebyshev) on the rows of ``block``: ``K``
        products with ``W``, each one gossip step counted on the block's edges."""
        s = ctx.prepared_as(MSDAPrepared)
        c2, c3, K = s.c2, s.c3, s.K
        edges, eids = ctx.topology.edges[block.edges], block.edges
        if math.isinf(c2):  # γ = 1 (complete graph): K = 1 and X − (I − c₃W)X = c₃WX
            ctx.channel.exchange(edges[:, 0], edges[:, 1], eids, ctx.d)
            WX = yield Mix("W", X)
            return c3 * WX
        a_prev, a = 1.0, c2
        x_prev = X
        ctx.channel.exchange(edges[:, 0], edges[:, 1], eids, ctx.d)
        WX = yield Mix("W", X)
        x = c2 * (X - c3 * WX)
        for _ in range(1, K):
            ctx.channel.exchange(edges[:, 0], edges[:, 1], eids, ctx.d)
            a_prev, a = a, 2 * c2 * a - a_prev
            Wx = yield Mix("W", x)
            x_prev, x = x, 2 * c2 * (x - c3 * Wx) - x_prev
        return X - x / a

    def round_rows(self, state: State, ctx: Context, block: RowBlock, r: int) -> RowRound:
        s = ctx.prepared_as(MSDAPrepared)
        x, y = block.take(state["x"]), block.take(state["y"])
        theta = ctx.oracle.conjugate_grad(x, block.nodes)
        ctx.oracle.local_step(block.nodes)
        gossip = yield from self.accelerated_gossip(ctx, block, theta)
        y_new = x - s.eta * gossip
        mom = s.mom
        return {"x": (1 + mom) * y_new - mom * y, "y": y_new}

    def iterates(self, state: State, ctx: Context, t: float) -> FloatArray:
        """The primal iterates ``θ_i = ∇f_i*(x_i)``."""
        return ctx.problem.conjugate_grad(state["x"], np.arange(ctx.n))
