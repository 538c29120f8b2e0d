"""Unregistered variants of FedAvg and gossip SGD whose state layout is declared wrongly, or
whose steps break the declared split, or which hold per-client and server arrays of every
shape; shared by the local and the ray engine's layout tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from fedopt.algorithms import Layout, make_algorithm
from fedopt.algorithms.base import Context
from fedopt.algorithms.federated.fedavg import FedAvg

GossipSGD: Any = type(make_algorithm("gossip_sgd"))


# ---- wrong declarations --------------------------------------------------------------------------
class FedAvgExtraKey(FedAvg):
    """``init`` returns a key the layout does not declare."""

    name = "fedavg"

    def init(self, ctx: Context) -> Any:
        return {**super().init(ctx), "c": np.zeros((ctx.n, ctx.d))}


class GossipNoLayout(GossipSGD):
    """No declaration at all."""

    name = "gossip_sgd"
    layout: dict[str, Layout] = {}


class FedAvgMissingKey(FedAvg):
    """The layout declares a key ``init`` does not return."""

    name = "fedavg"
    layout = {"server": Layout.SERVER, "c": Layout.CLIENT}


class FedAvgShortRows(FedAvg):
    """A per-client array with one row too few."""

    name = "fedavg"
    layout = {"server": Layout.SERVER, "c": Layout.CLIENT}

    def init(self, ctx: Context) -> Any:
        return {**super().init(ctx), "c": np.zeros((ctx.n - 1, ctx.d))}


class FedAvgNodeKey(FedAvg):
    """A federated algorithm declaring per-node state."""

    name = "fedavg"
    layout = {"server": Layout.NODE}


class FedAvgNotALayout(FedAvg):
    """A plain string where a :class:`Layout` belongs."""

    name = "fedavg"
    layout = {"server": "server"}  # type: ignore[dict-item]


class GossipEdgeRows(GossipSGD):
    """Per-edge state with first axis ``m`` (``rows_extra`` rows too many)."""

    name = "gossip_sgd"
    layout = {"x": Layout.NODE, "w": Layout.EDGE}
    rows_extra = 1

    def init(self, ctx: Context) -> Any:
        return {**super().init(ctx), "w": np.zeros(ctx.topology.m + self.rows_extra)}


class GossipEdgeState(GossipEdgeRows):
    """Well-declared per-edge state (which the ray engine does not place)."""

    rows_extra = 0


# ---- steps that break the split --------------------------------------------------------------------
class ConfigureReadsClients(FedAvg):
    name = "fedavg"
    layout = {"server": Layout.SERVER, "c": Layout.CLIENT}

    def init(self, ctx: Context) -> Any:
        return {**super().init(ctx), "c": np.zeros((ctx.n, ctx.d))}

    def configure(self, state: Any, ctx: Context, r: int) -> Any:
        state["c"]  # noqa: B018 - a per-client key read on the server
        return super().configure(state, ctx, r)


class ClientWritesServer(FedAvg):
    name = "fedavg"

    def client_update(self, payload: Any, state: Any, ctx: Context, clients: Any, r: int) -> Any:
        state["server"][0] = 1.0
        return super().client_update(payload, state, ctx, clients, r)


class ClientReplacesServer(FedAvg):
    name = "fedavg"

    def client_update(self, payload: Any, state: Any, ctx: Context, clients: Any, r: int) -> Any:
        state["server"] = state["server"] + 1.0
        return super().client_update(payload, state, ctx, clients, r)


class AggregateReturnsMore(FedAvg):
    name = "fedavg"

    def aggregate(self, state: Any, ctx: Context, weighted_sum: Any, weight_total: float, r: int) -> Any:
        return {**super().aggregate(state, ctx, weighted_sum, weight_total, r), "extra_key": np.zeros(1)}


class ScaledGossip(GossipSGD):
    """Gossip SGD whose compute events read a server array (a per-coordinate shrink factor)."""

    name = "gossip_sgd"
    layout = {"x": Layout.NODE, "scale": Layout.SERVER}

    def init(self, ctx: Context) -> Any:
        return {**super().init(ctx), "scale": np.linspace(0.1, 0.9, ctx.d)}

    def on_compute(self, state: Any, ctx: Context, nodes: Any, t: Any) -> None:
        super().on_compute(state, ctx, nodes, t)
        state["x"][nodes] *= 1.0 - 1e-2 * state["scale"]


class GossipWritesServer(ScaledGossip):
    def on_compute(self, state: Any, ctx: Context, nodes: Any, t: Any) -> None:
        state["scale"][0] = 1.0


class GossipReplacesServer(ScaledGossip):
    def on_compute(self, state: Any, ctx: Context, nodes: Any, t: Any) -> None:
        state["scale"] = 2.0 * state["scale"]


# ---- a federated algorithm with per-client rows and a server table of n rows -----------------------------
class ScaffoldLite(FedAvg):
    """FedAvg with a per-client drift memory ``c`` (rows updated by ``client_update``) and a
    server-side participation count ``seen`` with one entry per client (updated in place by
    ``configure``, read by the clients): a server array whose first axis is ``n``."""

    name = "fedavg"
    layout = {"server": Layout.SERVER, "seen": Layout.SERVER, "c": Layout.CLIENT}

    def init(self, ctx: Context) -> Any:
        return {**super().init(ctx), "seen": np.zeros(ctx.n), "c": np.zeros((ctx.n, ctx.d))}

    def configure(self, state: Any, ctx: Context, r: int) -> Any:
        clients, payload = super().configure(state, ctx, r)
        state["seen"][clients] += 1.0
        return clients, payload

    def client_update(self, payload: Any, state: Any, ctx: Context, clients: Any, r: int) -> Any:
        X, w = super().client_update(payload, state, ctx, clients, r)
        state["c"][clients] = 0.5 * state["c"][clients] + (X - payload["x"])
        return X + 0.1 * state["c"][clients], w / state["seen"][clients]

    def aggregate(self, state: Any, ctx: Context, weighted_sum: Any, weight_total: float, r: int) -> Any:
        return {**super().aggregate(state, ctx, weighted_sum, weight_total, r), "seen": state["seen"]}
