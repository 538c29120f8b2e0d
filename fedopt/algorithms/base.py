"""Algorithm interfaces and the algorithm registry.

An algorithm is a small object over explicit state (optax's init/update pair,
Flower's ``Strategy``): it declares its hyper-parameters as a pydantic model,
builds its state (a dict of arrays, ``[n, d]`` each for per-node vectors) in
:meth:`Algorithm.init`, and updates it in pure, vectorized handlers. It never
loops over nodes in Python and never knows which engine runs it; the engine
owns the loop, the clock, placement and (through :class:`Context`) counting.

Three kinds:

* :class:`RoundAlgorithm` — synchronous rounds (DGD, gradient tracking, ADOM+);
  one round advances simulated time by one unit.
* :class:`FederatedAlgorithm` — a round split Flower-style into
  ``configure`` (server: pick clients, build the broadcast), ``client_update``
  (vectorized over a block of clients; an engine may run blocks on different
  workers) and ``aggregate`` (server: combine the sum of weighted updates).
* :class:`EventAlgorithm` — asynchronous: Poisson clocks per node (compute) and
  per edge (gossip); the engine calls ``on_compute`` for a batch of compute
  events and ``gossip_message`` / ``on_gossip`` for a batch of gossip events,
  the batch's events touching pairwise-disjoint nodes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from fedopt.core.arrays import FloatArray, IntArray, State
from fedopt.core.meter import Channel, Meter
from fedopt.core.rng import NodeStream, RngStreams
from fedopt.problems.base import CountingOracle, Problem
from fedopt.topology.graph import Topology


class Params(BaseModel):
    """Base of every algorithm's hyper-parameter model (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Context:
    """What an algorithm may use: oracles, the graph, the channel, random streams.

    ``oracle`` counts every gradient / query in ``meter``; ``channel`` counts
    every message. ``rng`` hands out the run-level named streams (``"init"``,
    ``"clocks"``, a server's ``"sampling"``, ...) for draws made once for the run;
    draws made at nodes inside handlers (minibatches, noise, directions) come from
    :meth:`node_rng`. ``topology`` is the graph in force (it changes at the
    switching times of a time-varying topology).
    """

    problem: Problem
    topology: Topology
    rng: RngStreams
    meter: Meter
    channel: Channel
    oracle: CountingOracle = field(init=False)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.oracle = CountingOracle(self.problem, self.meter)

    @property
    def n(self) -> int:
        return self.problem.n

    @property
    def d(self) -> int:
        return self.problem.d

    def node_rng(self, name: str) -> NodeStream:
        """The per-node stream ``name``: ``ctx.node_rng("sampling").integers(nodes, high, size)``
        returns ``[k, *size]`` draws keyed by (seed, stream, node) and advances each node's
        counter, so the draws do not depend on batching or on how nodes are sharded
        (:mod:`fedopt.core.rng`)."""
        streams = self.rng.per_node
        if streams is None or streams.n != self.n:
            have = "none" if streams is None else f"n = {streams.n}"
            raise ValueError(f"context: the run's random streams have no per-node streams for n = {self.n} "
                             f"nodes ({have}); build them with RngStreams(seed, n_nodes={self.n})")
        return streams[name]


P = TypeVar("P", bound=Params)


class Algorithm(ABC):
    """Common part of all algorithms: name, parameters, state, readout."""

    name: ClassVar[str] = ""
    #: pydantic model of the hyper-parameters (validated with clear errors).
    Params: ClassVar[type[Params]] = Params
    #: True for first-order methods that need L/μ of the problem.
    needs_strong_convexity: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params(**params)
        except ValidationError as exc:
            raise ValueError(_format_validation(f"algorithm {self.name!r}", exc)) from None

    @abstractmethod
    def init(self, ctx: Context) -> State:
        """The initial state (a dict of arrays)."""

    def iterates(self, state: State, ctx: Context, t: float) -> FloatArray:
        """The nodes' current models ``[n, d]`` at simulated time ``t`` (read-only use)."""
        return state["x"]

    def initial_point(self, ctx: Context) -> FloatArray:
        """Common starting point ``x_0`` (all nodes), from the ``"init"`` stream."""
        return np.zeros(ctx.d)


class RoundAlgorithm(Algorithm):
    """Synchronous algorithms: one call of :meth:`round` per round."""

    @abstractmethod
    def round(self, state: State, ctx: Context, r: int) -> State:
        """Run round ``r`` (0-based) and return the new state."""


class FederatedAlgorithm(RoundAlgorithm):
    """Server/client algorithms split Flower-style so an engine can spread clients.

    ``round`` composes the three steps; a distributed engine instead runs
    ``client_update`` on blocks of clients where their data live, sums
    ``weights[:, None] * updates`` per block and calls ``aggregate`` once.
    """

    @abstractmethod
    def configure(self, state: State, ctx: Context, r: int) -> tuple[IntArray, dict[str, np.ndarray]]:
        """Pick the round's clients and the payload broadcast to them."""

    @abstractmethod
    def client_update(
        self, payload: dict[str, np.ndarray], state: State, ctx: Context, clients: IntArray, r: int
    ) -> tuple[FloatArray, FloatArray]:
        """Local work of ``clients`` (vectorized). Returns ``(updates [k, p], weights [k])``
        and may update per-client rows of ``state`` (e.g. control variates)."""

    @abstractmethod
    def aggregate(self, state: State, ctx: Context, weighted_sum: FloatArray, weight_total: float, r: int) -> State:
        """Server step from ``Σ_k w_k u_k`` and ``Σ_k w_k``."""

    def round(self, state: State, ctx: Context, r: int) -> State:
        clients, payload = self.configure(state, ctx, r)
        updates, weights = self.client_update(payload, state, ctx, clients, r)
        return self.aggregate(state, ctx, weights @ updates, float(weights.sum()), r)


class EventAlgorithm(Algorithm):
    """Asynchronous algorithms driven by Poisson clocks (per node and per edge)."""

    @abstractmethod
    def clock_rates(self, ctx: Context) -> tuple[FloatArray, FloatArray]:
        """``(node_rates [n], edge_rates [m])`` for the topology in force."""

    @abstractmethod
    def on_compute(self, state: State, ctx: Context, nodes: IntArray, t: FloatArray) -> None:
        """Compute events at distinct ``nodes`` at times ``t`` (in place)."""

    @abstractmethod
    def gossip_message(self, state: State, ctx: Context, nodes: IntArray, t: FloatArray) -> FloatArray:
        """The message ``[k, p]`` each node sends at its gossip event (may advance
        the node's own lazy state to ``t``, in place)."""

    @abstractmethod
    def on_gossip(
        self, state: State, ctx: Context, nodes: IntArray, t: FloatArray, own: FloatArray, peer: FloatArray
    ) -> None:
        """Apply gossip events (in place). Rows come in pairs: row ``k`` and row
        ``k + K`` (``K = len(nodes) // 2``) are the two endpoints of one edge;
        ``own`` is the row's own message and ``peer`` the other endpoint's."""

    def synchronize(self, state: State, ctx: Context, t: float) -> None:
        """Bring every node's lazy state to time ``t`` (default: nothing to do)."""


# ---- registry -------------------------------------------------------------------
_ALGORITHMS: dict[str, type[Algorithm]] = {}
A = TypeVar("A", bound=type[Algorithm])


def register_algorithm(name: str) -> Callable[[A], A]:
    """Class decorator: register an algorithm under ``name``."""

    def deco(cls: A) -> A:
        if name in _ALGORITHMS:
            raise ValueError(f"algorithm {name!r} registered twice")
        cls.name = name
        _ALGORITHMS[name] = cls
        return cls

    return deco


def available_algorithms() -> list[str]:
    import fedopt.algorithms  # noqa: F401  (registers the built-ins)

    return sorted(_ALGORITHMS)


def algorithm_class(name: str) -> type[Algorithm]:
    import fedopt.algorithms  # noqa: F401

    try:
        return _ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; choose one of: {', '.join(sorted(_ALGORITHMS))}") from None


def make_algorithm(name: str, **params: Any) -> Algorithm:
    return algorithm_class(name)(**params)


def _format_validation(where: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return f"{where}: " + "; ".join(parts)
