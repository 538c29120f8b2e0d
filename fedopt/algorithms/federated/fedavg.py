"""FedAvg: local SGD on sampled clients, weighted model averaging at the server.

McMahan, Moore, Ramage, Hampson & Agüera y Arcas, "Communication-efficient
learning of deep networks from decentralized data", AISTATS 2017, Algorithm 1:
each round the server samples ``C·K`` clients, each runs ``E`` local steps
``w ← w − η ∇ℓ(w; b)`` from the global model, and the server sets
``w ← Σ_k (n_k / n) w_k``. ``server_lr`` generalizes the last step to
``w ← w + η_s (Σ_k p_k w_k − w)`` (Reddi et al. 2021, "Adaptive federated
optimization", Alg. 1 with plain SGD at the server); ``server_lr = 1`` is FedAvg.

Counting: ``E`` gradient evaluations and ``E`` local steps per sampled client and
round (``b/m_k`` passes per step with minibatches), all through the counting oracle;
one ``d``-float broadcast and one ``d``-float upload per sampled client.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from fedopt.algorithms.base import Context, FederatedAlgorithm, Layout, Params, register_algorithm
from fedopt.core.arrays import FloatArray, IntArray, State


class FedAvgParams(Params):
    lr: float = Field(0.1, gt=0, description="client step size η")
    local_steps: int = Field(5, ge=1, description="local steps E per round")
    clients_per_round: int | None = Field(None, ge=1, description="sampled clients per round (None: all)")
    batch_size: int | None = Field(None, ge=1, description="minibatch size (None: full local gradient)")
    server_lr: float = Field(1.0, gt=0, description="server step η_s (1: plain FedAvg)")


@register_algorithm("fedavg")
class FedAvg(FederatedAlgorithm):
    Params = FedAvgParams
    params: FedAvgParams
    layout = {"server": Layout.SERVER}

    def init(self, ctx: Context) -> State:
        return {"server": self.initial_point(ctx)}

    def iterates(self, state: State, ctx: Context, t: float) -> FloatArray:
        return np.broadcast_to(state["server"], (ctx.n, ctx.d))

    def configure(self, state: State, ctx: Context, r: int) -> tuple[IntArray, dict[str, np.ndarray]]:
        k = self.params.clients_per_round
        if k is None or k >= ctx.n:
            clients = np.arange(ctx.n)
        else:
            clients = np.sort(ctx.rng["sampling"].choice(ctx.n, size=k, replace=False))
        ctx.channel.broadcast(clients, ctx.d)
        return clients, {"x": state["server"]}

    def client_update(
        self, payload: dict[str, np.ndarray], state: State, ctx: Context, clients: IntArray, r: int
    ) -> tuple[FloatArray, FloatArray]:
        p = self.params
        X = np.tile(payload["x"], (len(clients), 1))
        if p.batch_size is None:
            # full-batch local GD: the oracle runs and counts the E steps (fused and
            # cache-blocked over clients where the problem has such a kernel)
            ctx.oracle.gd_steps(X, clients, p.lr, p.local_steps)
        else:
            for _ in range(p.local_steps):
                X -= p.lr * ctx.oracle.stochastic_grad(X, clients, ctx.node_rng("sampling"), p.batch_size)
                ctx.oracle.local_step(clients)
        ctx.channel.send(clients, ctx.d)
        return X, ctx.problem.n_samples()[clients].astype(np.float64)

    def aggregate(self, state: State, ctx: Context, weighted_sum: FloatArray, weight_total: float, r: int) -> State:
        x = state["server"]
        avg = weighted_sum / weight_total
        return {"server": avg if self.params.server_lr == 1.0 else x + self.params.server_lr * (avg - x)}
