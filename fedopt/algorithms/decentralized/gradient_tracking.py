"""Gradient tracking (DIGing): exact decentralized gradient descent with a tracked gradient.

Nedić, Olshevsky and Shi, "Achieving geometric convergence for distributed
optimization over time-varying graphs", SIAM J. Optim. 2017 (DIGing, Alg. 1,
eq. (3)); also Qu and Li, "Harnessing smoothness to accelerate distributed
optimization", IEEE TCNS 2018, eq. (4)::

    x^{k+1} = W x^k − α y^k
    y^{k+1} = W y^k + ∇F(x^{k+1}) − ∇F(x^k),    y^0 = ∇F(x^0)

``W = (I + W_MH)/2`` is by default the lazy Metropolis–Hastings matrix of the graph in
force (doubly stochastic, symmetric, eigenvalues in [0, 1]; ``mixing`` and ``lazy`` choose
others, see :func:`fedopt.topology.mixing.mixing_matrix`). The lazy form keeps the
default step 1/(4L) stable where ``W_MH`` has eigenvalues near −1 (e.g. on a
10×10 grid, where the plain ``W_MH`` diverged at that step). ``Σ_i y_i^k = Σ_i ∇f_i(x_i^k)`` for all k, so a fixed
point is a consensus on a stationary point of ``Σ f_i``: for a small enough
constant step the iterates converge linearly to ``x*`` (Nedić et al., Thm. 3.14;
Qu & Li, Thm. 1).

Counting: n gradients per round; one gossip round over every edge carries
``x`` and ``y`` (one communication of ``2d`` floats per edge).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field

from fedopt.algorithms.base import (
    Complexity,
    Context,
    Layout,
    Mix,
    RowBlock,
    RowRound,
    RowRoundAlgorithm,
    register_algorithm,
)
from fedopt.algorithms.decentralized.mixing import MixingParams, MixingPrepared, prepare_mixing
from fedopt.core.arrays import State
from fedopt.problems.base import Problem
from fedopt.topology.graph import Topology


class GradientTrackingParams(MixingParams):
    lazy: bool = Field(True, description="use (I + W)/2 (eigenvalues in [0, 1]; keeps the default step stable)")
    lr: float | None = Field(None, gt=0, description="step size α (default: 1/(4L) of the problem)")


@register_algorithm("gradient_tracking")
class GradientTracking(RowRoundAlgorithm):
    Params = GradientTrackingParams
    params: GradientTrackingParams
    layout = {"x": Layout.NODE, "y": Layout.NODE, "g": Layout.NODE}
    #: Koloskova, Lin and Stich, "An improved analysis of gradient tracking for decentralized
    #: machine learning", NeurIPS 2021 (noiseless, strongly convex): O(κ/(p·c) log 1/ε) rounds, p the
    #: spectral gap of W and c ≥ p tied to its negative eigenvalues (a constant for the lazy W).
    #: For the lazy Metropolis W, 1/p ∝ χ = λ_max/λ₂ of L_G up to the spread of the degrees
    #: (exactly χ + 1 on the hypercube), so the graph factor is declared as χ.
    complexity = (
        Complexity("messages", {"edges": 1.0, "chi": 1.0}, 1.0, "Koloskova et al. 2021, strongly convex, noiseless"),
        Complexity("grad_evals", {"n": 1.0, "chi": 1.0}, 1.0, "Koloskova et al. 2021, strongly convex, noiseless"),
    )

    prepared_type = MixingPrepared

    def prepare(self, problem: Problem, graphs: Sequence[Topology]) -> list[MixingPrepared]:
        return prepare_mixing(self.params, graphs)

    def _lr(self, ctx: Context) -> float:
        return self.params.lr if self.params.lr is not None else 1.0 / (4.0 * float(ctx.problem.L))

    def init(self, ctx: Context) -> State:
        x = np.tile(self.initial_point(ctx), (ctx.n, 1))
        g = ctx.oracle.grad_all(x)
        return {"x": x, "y": g.copy(), "g": g}

    def products(self, ctx: Context) -> int:
        return 1

    def round_rows(self, state: State, ctx: Context, block: RowBlock, r: int) -> RowRound:
        nodes = block.nodes
        x, y, g = block.take(state["x"]), block.take(state["y"]), block.take(state["g"])
        d = ctx.d
        edges = ctx.topology.edges[block.edges]
        ctx.channel.exchange(edges[:, 0], edges[:, 1], block.edges, 2 * d)
        Wxy = yield Mix("W", np.concatenate((x, y), axis=1))  # x and y travel in one message
        x_new = Wxy[:, :d] - self._lr(ctx) * y
        g_new = ctx.oracle.grad(x_new, nodes)
        ctx.oracle.local_step(nodes)
        return {"x": x_new, "y": Wxy[:, d:] + g_new - g, "g": g_new}
