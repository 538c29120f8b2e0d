"""ADOM+: optimal primal decentralized method for time-varying networks.

Kovalev, Gasanov, Gasnikov and Richtárik, "Lower Bounds and Optimal Algorithms
for Smooth and Strongly Convex Decentralized Optimization Over Time-Varying
Networks", NeurIPS 2021 (arXiv 2106.04469), Algorithm 1 (ADOM+), with the
parameters of their Theorem 1:

    τ₁ = 1/(√(L/μ) + ½),  τ₂ = √(μ/L),  σ₂ = τ₂/(16χ),  σ₁ = 1/(1/σ₂ + ½),
    η = 1/(Lτ₂),  α = μ/2,  ν = μ/2,  β = 1/(2L),  δ = 1/(17L),
    γ = ν/(14σ₂χ²),  θ = ν/(4σ₂),  ζ = ½.

One round (lines 3–14 of Alg. 1; the implicit x/y pair of lines 5 and 9 is
solved in closed form)::

    x_g = τ₁x + (1−τ₁)x_f ;  g = ∇F(x_g)
    y_g = σ₁y + (1−σ₁)y_f ;  z_g = σ₁z + (1−σ₁)z_f
    y⁺ = y + θβ(g − νx_g − y⁺) − θ(ν⁻¹(y_g + z_g) + x⁺)
    x⁺ = x + ηα(x_g − x⁺) − η(g − νx_g − y⁺)
    z⁺ = z + γδ(z_g − z) − W(γν⁻¹(y_g + z_g) + m) ;  m⁺ = (I − W)(γν⁻¹(y_g + z_g) + m)
    x_f = x_g + τ₂(x⁺ − x) ;  y_f = y_g + σ₂(y⁺ − y) ;  z_f = z_g − ζW(y_g + z_g)

``W`` is the gossip matrix ``L_G/λ_max(L_G)`` of the graph in force (so
``λ_max(W) = 1`` and ``χ = λ_max/λ₂⁺`` of ``L_G``); on a time-varying sequence χ is
the worst case over the sequence (the paper bounds every ``W(q)`` by one χ).
With multi-consensus (their eq. (18)–(20)) ``W`` is replaced by
``I − (I − L_G/λ_max)^K`` with ``K = ⌈χ ln 2⌉`` plain gossip rounds, whose condition
number is at most 2, so χ is set to 2. As in the paper and its authors' code, K comes
from the worst-case χ and is the same in every round (``multi_consensus_rounds:
worst_case``, the default); ``per_graph`` takes ``K = ⌈χ_k ln 2⌉`` of the graph in force
instead (a variant: fewer communications on the better-connected graphs of a sequence,
with the same bound 2 on the condition number). Complexity (Thm. 1): O(χ√κ log 1/ε)
rounds; with multi-consensus O(√κ log 1/ε) gradient rounds and O(χ√κ log 1/ε) gossip
rounds.

Counting: n gradients per round; each gossip round sends the two vectors
``γν⁻¹(y_g + z_g) + m`` and ``y_g + z_g`` over every edge, one communication of
``2d`` floats per edge (as the DADAO paper counts it: ``|E|·K`` per round).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Literal

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
from fedopt.core.arrays import FloatArray, State
from fedopt.problems.base import Problem
from fedopt.topology.graph import Topology


class ADOMPlusParams(Params):
    multi_consensus: bool = Field(False, description="K = ⌈χ ln 2⌉ gossip rounds per gradient round (their eq. (18))")
    multi_consensus_rounds: Literal["worst_case", "per_graph"] = Field(
        "worst_case",
        description="K of multi-consensus on a time-varying topology: worst_case = from the worst χ of the sequence, "
        "the same K in every round (the paper's); per_graph = from χ of the graph in force",
    )
    init_noise: float = Field(
        1.0, ge=0, description="y(0), m(0) ~ init_noise · N(0, I) (any start is allowed; the paper's code draws N(0, I))"
    )


def laplacian_spectrum(top: Topology, weights: FloatArray | None = None) -> tuple[float, float]:
    """``(λ₂⁺, λ_max)`` of the (weighted) Laplacian of a connected graph."""
    ev = np.linalg.eigvalsh(top.laplacian(weights))
    return float(ev[1]) if top.n > 1 else 1.0, float(ev[-1]) if top.n > 1 else 1.0


def sparse_laplacian(top: Topology, weights: FloatArray | None = None) -> sp.csr_matrix:
    w = np.ones(top.m) if weights is None else np.asarray(weights, dtype=np.float64)
    i, j = top.edges[:, 0], top.edges[:, 1]
    A = sp.coo_matrix((np.r_[w, w], (np.r_[i, j], np.r_[j, i])), shape=(top.n, top.n)).tocsr()
    return (sp.diags(np.asarray(A.sum(axis=1)).ravel()) - A).tocsr()


@dataclass(frozen=True, eq=False)
class ADOMPlusPrepared(Prepared):
    """The constants of Theorem 1 (``const``: τ₁, τ₂, σ₁, σ₂, η, α, β, δ, ν, γ, θ, ζ; with χ the
    worst over the run's graphs) and the gossip matrix ``W_l = L_G/λ_max`` of one graph with
    its ``rounds`` gossip rounds per round (1 without multi-consensus)."""

    const: dict[str, float]
    W_l: sp.csr_matrix
    rounds: int


@register_algorithm("adom_plus")
class ADOMPlus(RowRoundAlgorithm):
    Params = ADOMPlusParams
    params: ADOMPlusParams
    needs_strong_convexity = True
    layout = {k: Layout.NODE for k in ("x", "y", "z", "m", "x_f", "y_f", "z_f")}
    #: Thm. 1: O(χ√κ log 1/ε) rounds of |E| communications and n gradients (χ = λ_max/λ₂ of L_G);
    #: with multi-consensus O(√κ log 1/ε) gradient rounds of K = ⌈χ ln 2⌉ gossip rounds each.
    complexity = (
        Complexity("messages", {"edges": 1.0, "chi": 1.0}, 0.5, "Kovalev et al. 2021, Thm. 1"),
        Complexity("grad_evals", {"n": 1.0}, 0.5, "Kovalev et al. 2021, Thm. 1 and eq. (18) (multi-consensus)",
                   when={"multi_consensus": True}),
        Complexity("grad_evals", {"n": 1.0, "chi": 1.0}, 0.5, "Kovalev et al. 2021, Thm. 1",
                   when={"multi_consensus": False}),
    )
    prepared_type = ADOMPlusPrepared

    def prepare(self, problem: Problem, graphs: Sequence[Topology]) -> list[ADOMPlusPrepared]:
        """χ is the worst ``λ_max/λ₂⁺`` over the graphs (one graph: its own); ``K`` gossip
        rounds per round on each graph (``⌈χ ln 2⌉`` with multi-consensus, χ the worst or the
        graph's own, see ``multi_consensus_rounds``)."""
        if problem.mu is None or not problem.mu > 0:
            raise ValueError("adom_plus: needs a strongly convex problem (problem.mu > 0)")
        spectra = [laplacian_spectrum(top) for top in graphs]
        chi = max(lmax / l2 for l2, lmax in spectra)
        const = self._constants(float(problem.L), float(problem.mu), chi)
        out = []
        for top, (l2, lmax) in zip(graphs, spectra):
            rounds = 1
            if self.params.multi_consensus:
                chi_k = chi if self.params.multi_consensus_rounds == "worst_case" else lmax / l2
                rounds = max(1, math.ceil(chi_k * math.log(2)))
            out.append(ADOMPlusPrepared(const, sparse_laplacian(top) / lmax, rounds))
        return out

    def _constants(self, L: float, mu: float, chi: float) -> dict[str, float]:
        if self.params.multi_consensus and max(1, math.ceil(chi * math.log(2))) > 1:
            chi = 2.0
        tau2 = math.sqrt(mu / L)
        sigma2 = tau2 / (16.0 * chi)
        nu = mu / 2.0
        return dict(
            tau1=1.0 / (math.sqrt(L / mu) + 0.5), tau2=tau2, sigma1=1.0 / (1.0 / sigma2 + 0.5), sigma2=sigma2,
            eta=1.0 / (L * tau2), alpha=mu / 2.0, beta=1.0 / (2.0 * L), delta=1.0 / (17.0 * L), nu=nu,
            gamma=nu / (14.0 * sigma2 * chi**2), theta=nu / (4.0 * sigma2), zeta=0.5,
        )

    def init(self, ctx: Context) -> State:
        n, d = ctx.n, ctx.d
        x = np.tile(self.initial_point(ctx), (n, 1))
        rng = ctx.rng["init"]
        y = self.params.init_noise * rng.standard_normal((n, d))
        m = self.params.init_noise * rng.standard_normal((n, d))
        z = np.zeros((n, d))  # z(0) must lie in the orthogonal complement of consensus
        return {"x": x, "y": y, "z": z, "m": m, "x_f": x.copy(), "y_f": y.copy(), "z_f": z.copy()}

    def products(self, ctx: Context) -> int:
        return ctx.prepared_as(ADOMPlusPrepared).rounds

    def _apply_W(self, ctx: Context, V: FloatArray) -> Generator[Mix, FloatArray, FloatArray]:
        """``W V`` for the (multi-)consensus gossip matrix on a block's rows: one product with
        ``W_l`` per gossip round."""
        p = ctx.prepared_as(ADOMPlusPrepared)
        out = V
        for _ in range(p.rounds):
            Wout = yield Mix("W_l", out)
            out = out - Wout
        return V - out

    def round_rows(self, state: State, ctx: Context, block: RowBlock, r: int) -> RowRound:
        c = ctx.prepared_as(ADOMPlusPrepared).const
        x, y, z, m = (block.take(state[k]) for k in ("x", "y", "z", "m"))
        x_f, y_f, z_f = (block.take(state[k]) for k in ("x_f", "y_f", "z_f"))
        x_g = c["tau1"] * x + (1.0 - c["tau1"]) * x_f
        g = ctx.oracle.grad(x_g, block.nodes)
        ctx.oracle.local_step(block.nodes)
        y_g = c["sigma1"] * y + (1.0 - c["sigma1"]) * y_f
        z_g = c["sigma1"] * z + (1.0 - c["sigma1"]) * z_f
        eta, alpha, nu, theta, beta = c["eta"], c["alpha"], c["nu"], c["theta"], c["beta"]
        # the implicit pair (x⁺, y⁺) in closed form
        c1 = (1 + eta * alpha) / ((1 + theta * beta) * (1 + eta * alpha) + theta * eta)
        c2 = theta * beta + eta * theta / (1 + eta * alpha)
        c3 = theta * (beta * nu + eta * (nu + alpha) / (1 + eta * alpha))
        c4 = theta / (1 + eta * alpha)
        y_new = c1 * (y + c2 * g - c3 * x_g - c4 * x - (theta / nu) * (y_g + z_g))
        x_new = (x + eta * alpha * x_g - eta * (g - nu * x_g - y_new)) / (1 + eta * alpha)
        u = (c["gamma"] / nu) * (y_g + z_g) + m
        yz = y_g + z_g
        # one gossip round carries u and y_g + z_g (2d floats per edge), K rounds with multi-consensus
        edges = ctx.topology.edges[block.edges]
        for _ in range(ctx.prepared_as(ADOMPlusPrepared).rounds):
            ctx.channel.exchange(edges[:, 0], edges[:, 1], block.edges, 2 * ctx.d)
        both = yield from self._apply_W(ctx, np.concatenate((u, yz), axis=1))
        d = ctx.d
        Wu, Wyz = both[:, :d], both[:, d:]
        z_new = z + c["gamma"] * c["delta"] * (z_g - z) - Wu
        m_new = u - Wu
        return {
            "x": x_new, "y": y_new, "z": z_new, "m": m_new,
            "x_f": x_g + c["tau2"] * (x_new - x),
            "y_f": y_g + c["sigma2"] * (y_new - y),
            "z_f": z_g - c["zeta"] * Wyz,
        }
