"""SCAFFOLD with finite-difference gradients, types I and II (Shu et al., arXiv 2308.04077,
§3 and Appx 11; Karimireddy et al., "SCAFFOLD", ICML 2020, Alg. 1 options I and II).

Local direction ``ĝ_i(x) = Δ_i(x) + c − c_i`` from the second round on (the FZooS code has
no correction in round 1):

* **type I** (``zo_scaffold1``; code ``--correction diff``): ``c_i = Δ_i(x_{r−1})``, a fresh FD
  estimate at the server point, ``c = (1/N) Σ_j c_j``. It takes a second exchange per round:
  after the server average the clients receive ``x_r``, estimate ``Δ_i(x_r)`` (``Q + 1``
  queries each, which the FZooS code makes on the server and does not count; here they are
  the clients' and counted) and upload it; the next round's broadcast carries ``c``.
* **type II** (``zo_scaffold2``; code ``--correction scaf``): ``c_i = (1/T) Σ_τ Δ_i(x_{r−1,τ})``,
  the mean of the client's uncorrected estimates of the previous round, uploaded with the
  model (``2d`` floats), ``c`` their average.

Counting per client and round (``T`` steps, ``Q`` directions, forward differences):
type II ``1 + T(Q + 1)`` queries, a ``d``-float broadcast in round 1 and ``2d`` after, a
``2d``-float upload; type I ``1 + T(Q + 1) + (Q + 1)`` queries, broadcasts of ``d`` (round 1)
or ``2d`` floats and then ``d`` floats (``x_r``), two ``d``-float uploads.
"""

from __future__ import annotations

import numpy as np

from fedopt.algorithms.base import Context, Layout, register_algorithm
from fedopt.algorithms.federated.zo_base import ZOFederated
from fedopt.core.arrays import FloatArray, IntArray, State


class _Scaffold(ZOFederated):
    def correction(self, payload: dict[str, np.ndarray], state: State, ctx: Context, clients: IntArray,
                   X: FloatArray, x_start: FloatArray) -> FloatArray | None:
        if not bool(payload["ready"]):
            return None
        return payload["c"][None, :] - state["ci"][clients]


@register_algorithm("zo_scaffold2")
class ZOScaffold2(_Scaffold):
    layout = {"x": Layout.SERVER, "c": Layout.SERVER, "ready": Layout.SERVER, "ci": Layout.CLIENT}

    def init(self, ctx: Context) -> State:
        return {"x": self.initial_point(ctx), "c": np.zeros(ctx.d), "ready": np.array(False),
                "ci": np.zeros((ctx.n, ctx.d))}

    def configure(self, state: State, ctx: Context, r: int) -> tuple[IntArray, dict[str, np.ndarray]]:
        clients = self.sample_clients(ctx)
        ready = bool(state["ready"])
        ctx.channel.broadcast(clients, 2 * ctx.d if ready else ctx.d)
        return clients, {"x": state["x"], "c": state["c"], "ready": state["ready"]}

    def client_update(self, payload: dict[str, np.ndarray], state: State, ctx: Context, clients: IntArray,
                      r: int) -> tuple[FloatArray, FloatArray]:
        X, g_mean = self.local_steps(payload, state, ctx, clients)
        state["ci"][clients] = g_mean
        ctx.channel.send(clients, 2 * ctx.d)
        return np.concatenate((X, g_mean), axis=1), np.ones(len(clients))

    def aggregate(self, state: State, ctx: Context, weighted_sum: FloatArray, weight_total: float, r: int) -> State:
        avg = weighted_sum / weight_total
        return {"x": avg[: ctx.d], "c": avg[ctx.d:], "ready": np.array(True)}


@register_algorithm("zo_scaffold1")
class ZOScaffold1(_Scaffold):
    layout = {"x": Layout.SERVER, "c": Layout.SERVER, "ready": Layout.SERVER, "phase": Layout.SERVER,
              "ci": Layout.CLIENT}

    def phases(self, ctx: Context) -> int:
        return 2

    def init(self, ctx: Context) -> State:
        return {"x": self.initial_point(ctx), "c": np.zeros(ctx.d), "ready": np.array(False),
                "phase": np.array(0), "ci": np.zeros((ctx.n, ctx.d))}

    def configure(self, state: State, ctx: Context, r: int) -> tuple[IntArray, dict[str, np.ndarray]]:
        if int(state["phase"]) == 0:
            clients = self.sample_clients(ctx)
            ctx.channel.broadcast(clients, 2 * ctx.d if bool(state["ready"]) else ctx.d)
        else:  # every client's control variate at the new server point
            clients = np.arange(ctx.n)
            ctx.channel.broadcast(clients, ctx.d)
        return clients, {"x": state["x"], "c": state["c"], "ready": state["ready"], "phase": state["phase"]}

    def client_update(self, payload: dict[str, np.ndarray], state: State, ctx: Context, clients: IntArray,
                      r: int) -> tuple[FloatArray, FloatArray]:
        ctx.channel.send(clients, ctx.d)
        if int(payload["phase"]) == 0:
            X, _ = self.local_steps(payload, state, ctx, clients)
            return X, np.ones(len(clients))
        X = np.tile(payload["x"], (len(clients), 1))
        fx = ctx.oracle.query(X, clients) if self.params.scheme == "forward" else None
        G, _ = self.estimate(ctx, X, clients, fx)
        state["ci"][clients] = G
        return G, np.ones(len(clients))

    def aggregate(self, state: State, ctx: Context, weighted_sum: FloatArray, weight_total: float, r: int) -> State:
        avg = weighted_sum / weight_total
        if int(state["phase"]) == 0:
            return {"x": avg, "c": state["c"], "ready": state["ready"], "phase": np.array(1)}
        return {"x": state["x"], "c": avg, "ready": np.array(True), "phase": np.array(0)}
