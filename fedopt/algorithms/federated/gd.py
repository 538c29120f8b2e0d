"""Non-private gradient descent on the average of the nodes' objectives.

Each round every node computes its full local gradient at the server's iterate and
sends it; the server steps ``x_{r+1} = x_r − η (1/P) Σ_p ∇f_p(x_r)`` — gradient descent on
``f = (1/P) Σ_p f_p`` (the non-private baseline of DIFF2, Murata & Suzuki, ICML 2023, §6,
and the method DIFF2 reduces to without noise and clipping).

Counting: one gradient evaluation per node and round; one ``d``-float broadcast and one
``d``-float upload per node.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from fedopt.algorithms.base import Context, FederatedAlgorithm, Layout, Params, register_algorithm
from fedopt.core.arrays import FloatArray, IntArray, State


def initial_model(ctx: Context) -> FloatArray:
    """The starting point of a server model: the problem's own initialization
    (``initial_parameters``, e.g. a torch module's seeded weights) where it has one, else 0."""
    init = getattr(ctx.problem, "initial_parameters", None)
    return np.asarray(init(), dtype=np.float64) if init is not None else np.zeros(ctx.d)


class GDParams(Params):
    lr: float = Field(0.5, gt=0, description="step size η")


@register_algorithm("gd")
class GD(FederatedAlgorithm):
    Params = GDParams
    params: GDParams
    layout = {"x": Layout.SERVER}

    def initial_point(self, ctx: Context) -> FloatArray:
        return initial_model(ctx)

    def init(self, ctx: Context) -> State:
        return {"x": self.initial_point(ctx)}

    def iterates(self, state: State, ctx: Context, t: float) -> FloatArray:
        return np.broadcast_to(state["x"], (ctx.n, ctx.d))

    def configure(self, state: State, ctx: Context, r: int) -> tuple[IntArray, dict[str, np.ndarray]]:
        clients = np.arange(ctx.n)
        ctx.channel.broadcast(clients, ctx.d)
        return clients, {"x": state["x"]}

    def client_update(self, payload: dict[str, np.ndarray], state: State, ctx: Context, clients: IntArray,
                      r: int) -> tuple[FloatArray, FloatArray]:
        X = np.tile(payload["x"], (len(clients), 1))
        G = ctx.oracle.grad(X, clients)
        ctx.channel.send(clients, ctx.d)
        return G, np.ones(len(clients))

    def aggregate(self, state: State, ctx: Context, weighted_sum: FloatArray, weight_total: float, r: int) -> State:
        return {"x": state["x"] - self.params.lr * (weighted_sum / weight_total)}
