"""FedAvg with finite-difference gradients ("FedZO" in FZooS's comparison).

Shu et al., arXiv 2308.04077, eq. (2) with γ = 0 and the FD estimator of eq. (3), as in
their comparison (Appx 11; code ``--zo_opt rgf --correction none``): ``Q = 20``
orthonormalized Gaussian directions, ``μ = 0.01``, ``1/Q`` scaling, Adam with lr 0.01
reset every round, ``T`` local steps, server average ``x_r = (1/N) Σ_i x_i``.

Counting per client and round: ``1 + T(Q + 1)`` queries (:mod:`.zo_base`), one ``d``-float
broadcast and one ``d``-float upload.
"""

from __future__ import annotations

import numpy as np

from fedopt.algorithms.base import Context, Layout, register_algorithm
from fedopt.algorithms.federated.zo_base import ZOFederated
from fedopt.core.arrays import FloatArray, IntArray, State


class ZOAverage(ZOFederated):
    """Local corrected FD steps, uploads of the local models, plain server average."""

    layout = {"x": Layout.SERVER}

    def init(self, ctx: Context) -> State:
        return {"x": self.initial_point(ctx)}

    def configure(self, state: State, ctx: Context, r: int) -> tuple[IntArray, dict[str, np.ndarray]]:
        clients = self.sample_clients(ctx)
        ctx.channel.broadcast(clients, ctx.d)
        return clients, {"x": state["x"]}

    def client_update(self, payload: dict[str, np.ndarray], state: State, ctx: Context, clients: IntArray,
                      r: int) -> tuple[FloatArray, FloatArray]:
        X, _ = self.local_steps(payload, state, ctx, clients)
        ctx.channel.send(clients, ctx.d)
        return X, np.ones(len(clients))

    def aggregate(self, state: State, ctx: Context, weighted_sum: FloatArray, weight_total: float, r: int) -> State:
        return {"x": weighted_sum / weight_total}


@register_algorithm("zo_fedavg")
class ZOFedAvg(ZOAverage):
    """FedAvg on FD estimates (γ = 0 in eq. (2))."""
