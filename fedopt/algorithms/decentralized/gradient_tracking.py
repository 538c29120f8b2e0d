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

from fedopt.algorithms.base import Context, Layout, RoundAlgorithm, register_algorithm
from fedopt.algorithms.decentralized.mixing import MixingParams, MixingPrepared, prepare_mixing
from fedopt.core.arrays import State
from fedopt.problems.base import Problem
from fedopt.topology.graph import Topology


class GradientTrackingParams(MixingParams):
    lazy: bool = Field(True, description="use (I + W)/2 (eigenvalues in [0, 1]; keeps the default step stable)")
    lr: float | None = Field(None, gt=0, description="step size α (default: 1/(4L) of the problem)")


@register_algorithm("gradient_tracking")
class GradientTracking(RoundAlgorithm):
    Params = GradientTrackingParams
    params: GradientTrackingParams
    layout = {"x": Layout.NODE, "y": Layout.NODE, "g": Layout.NODE}

    def prepare(self, problem: Problem, graphs: Sequence[Topology]) -> list[MixingPrepared]:
        return prepare_mixing(self.params, graphs)

    def _lr(self, ctx: Context) -> float:
        return self.params.lr if self.params.lr is not None else 1.0 / (4.0 * float(ctx.problem.L))

    def init(self, ctx: Context) -> State:
        x = np.tile(self.initial_point(ctx), (ctx.n, 1))
        g = ctx.oracle.grad_all(x)
        return {"x": x, "y": g.copy(), "g": g}

    def round(self, state: State, ctx: Context, r: int) -> State:
        W = ctx.prepared_as(MixingPrepared).W
        x, y, g = state["x"], state["y"], state["g"]
        top = ctx.topology
        ctx.channel.exchange(top.edges[:, 0], top.edges[:, 1], np.arange(top.m), 2 * ctx.d)
        x_new = W @ x - self._lr(ctx) * y
        g_new = ctx.oracle.grad_all(x_new)
        ctx.oracle.local_step_all()
        return {"x": x_new, "y": W @ y + g_new - g, "g": g_new}
