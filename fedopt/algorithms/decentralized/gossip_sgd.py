"""Asynchronous gossip SGD: Poisson gradient steps per node, Poisson pairwise averaging per edge.

The randomized gossip of Boyd, Ghosh, Prabhakar and Shah ("Randomized gossip
algorithms", IEEE Trans. Inf. Theory 2006, eq. (4): on edge (i, j),
``x_i, x_j ← (x_i + x_j)/2``) interleaved with local (stochastic) gradient
steps ``x_i ← x_i − γ g_i(x_i)`` on each node's own Poisson clock, the
asynchronous decentralized SGD analyzed e.g. by Even, Hendrikx and Massoulié
("Asynchronous speedup in decentralized optimization", 2021). With a constant
step it converges linearly to a neighborhood of ``x*`` whose size grows with
the step and the heterogeneity of the ``f_i``.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from fedopt.algorithms.base import Context, EventAlgorithm, Layout, Params, register_algorithm
from fedopt.core.arrays import FloatArray, IntArray, State


class GossipSGDParams(Params):
    lr: float = Field(0.05, gt=0, description="step size γ of each gradient event")
    compute_rate: float = Field(1.0, gt=0, description="gradient events per node per unit time")
    comm_rate: float | None = Field(
        None, gt=0, description="total gossip events per unit time, split evenly over edges "
        "(default: n; ignored when the topology carries per-edge rates)"
    )
    batch_size: int | None = Field(None, ge=1, description="minibatch size (None: full local gradient)")


@register_algorithm("gossip_sgd")
class GossipSGD(EventAlgorithm):
    Params = GossipSGDParams
    params: GossipSGDParams
    layout = {"x": Layout.NODE}

    def init(self, ctx: Context) -> State:
        return {"x": np.tile(self.initial_point(ctx), (ctx.n, 1))}

    def clock_rates(self, ctx: Context) -> tuple[FloatArray, FloatArray]:
        top = ctx.topology
        node = np.full(ctx.n, self.params.compute_rate)
        if top.rates is not None:
            return node, top.rates
        total = self.params.comm_rate if self.params.comm_rate is not None else float(ctx.n)
        return node, np.full(top.m, total / max(top.m, 1))

    def on_compute(self, state: State, ctx: Context, nodes: IntArray, t: FloatArray) -> None:
        x = state["x"]
        xs = x[nodes]
        if self.params.batch_size is None:
            g = ctx.oracle.grad(xs, nodes)
        else:
            g = ctx.oracle.stochastic_grad(xs, nodes, ctx.node_rng("sampling"), self.params.batch_size)
        x[nodes] = xs - self.params.lr * g
        ctx.oracle.local_step(nodes)

    def gossip_message(self, state: State, ctx: Context, nodes: IntArray, t: FloatArray) -> FloatArray:
        return state["x"][nodes]

    def on_gossip(
        self, state: State, ctx: Context, nodes: IntArray, t: FloatArray, own: FloatArray, peer: FloatArray
    ) -> None:
        state["x"][nodes] = 0.5 * (own + peer)
