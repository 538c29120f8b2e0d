"""Decentralized gradient descent (DGD) with a mixing matrix.

``x_i^{k+1} = Σ_j W_ij x_j^k − α_k ∇f_i(x_i^k)`` (Nedić & Ozdaglar, "Distributed
subgradient methods for multi-agent optimization", IEEE TAC 2009, eq. (3);
Yuan, Ling & Yin, "On the convergence of decentralized gradient descent",
SIAM J. Optim. 2016, eq. (2.2)). ``W = I − Λ(w)`` comes from
:func:`fedopt.topology.mixing.mixing_matrix` (``mixing``: Metropolis–Hastings by default,
``fastest_mixing`` for the SLEM-optimal weights, ``rates`` for the topology's own). With a
constant step the iterates converge linearly to a neighbourhood of ``x*`` of size O(α/(1−σ₂(W))) (Yuan et al., Thm. 4); with ``α_k = α₀/(k+1)^p``,
``p ∈ (½, 1]``, they converge to ``x*``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field

from fedopt.algorithms.base import Context, Layout, Mix, RowBlock, RowRound, RowRoundAlgorithm, register_algorithm
from fedopt.algorithms.decentralized.mixing import MixingParams, MixingPrepared, prepare_mixing
from fedopt.core.arrays import State
from fedopt.problems.base import Problem
from fedopt.topology.graph import Topology


class DGDParams(MixingParams):
    lr: float = Field(0.1, gt=0, description="step size α₀")
    decay: float = Field(0.0, ge=0, le=1, description="α_k = α₀/(k+1)^decay (0: constant step)")
    batch_size: int | None = Field(None, ge=1, description="minibatch size (None: full local gradient)")


@register_algorithm("dgd")
class DGD(RowRoundAlgorithm):
    Params = DGDParams
    params: DGDParams
    layout = {"x": Layout.NODE}
    #: None declared: with a constant step the iterates stall at a distance O(α/(1−σ₂(W))) from x*
    #: (Yuan et al. 2016, Thm. 4), and with α_k → 0 the rate is sublinear, so there is no
    #: log(1/ε) cost to reach an arbitrary target to predict.
    complexity = ()

    prepared_type = MixingPrepared

    def prepare(self, problem: Problem, graphs: Sequence[Topology]) -> list[MixingPrepared]:
        return prepare_mixing(self.params, graphs)

    def init(self, ctx: Context) -> State:
        return {"x": np.tile(self.initial_point(ctx), (ctx.n, 1))}

    def products(self, ctx: Context) -> int:
        return 1

    def round_rows(self, state: State, ctx: Context, block: RowBlock, r: int) -> RowRound:
        nodes = block.nodes
        x = block.take(state["x"])
        lr = self.params.lr / (r + 1) ** self.params.decay
        if self.params.batch_size is None:
            g = ctx.oracle.grad(x, nodes)
        else:
            g = ctx.oracle.stochastic_grad(x, nodes, ctx.node_rng("sampling"), self.params.batch_size)
        edges = ctx.topology.edges[block.edges]
        ctx.channel.exchange(edges[:, 0], edges[:, 1], block.edges, ctx.d)
        ctx.oracle.local_step(nodes)
        Wx = yield Mix("W", x)
        return {"x": Wx - lr * g}
