"""Algorithm interfaces and the algorithm registry.

An algorithm is a small object over explicit state (optax's init/update pair,
Flower's ``Strategy``): it declares its hyper-parameters as a pydantic model,
builds its state (a dict of arrays, ``[n, d]`` each for per-node vectors) in
:meth:`Algorithm.init`, and updates it in pure, vectorized handlers. It never
loops over nodes in Python and never knows which engine runs it; the engine
owns the loop, the clock, placement and (through :class:`Context`) counting.

Three kinds:

* :class:`RoundAlgorithm` — synchronous rounds (DGD, gradient tracking, ADOM+);
  one round advances simulated time by one unit. A :class:`RowRoundAlgorithm` writes
  its round as work on a block of rows plus graph products (:class:`Mix`), so a
  distributed engine can run it in shards.
* :class:`FederatedAlgorithm` — a round split Flower-style into
  ``configure`` (server: pick clients, build the broadcast), ``client_update``
  (vectorized over a block of clients; an engine may run blocks on different
  workers) and ``aggregate`` (server: combine the sum of weighted updates).
* :class:`EventAlgorithm` — asynchronous: Poisson clocks per node (compute) and
  per edge (gossip); the engine calls ``on_compute`` for a batch of compute
  events and ``gossip_message`` / ``on_gossip`` for a batch of gossip events,
  the batch's events touching pairwise-disjoint nodes.

Every algorithm declares the **layout** of its state (:class:`Layout`: per node,
per edge, per client, server), so an engine places each entry without guessing
from shapes; the shared driver checks the declaration against ``init``'s state
before the first step (:func:`check_state_layout`). What an algorithm computes
once per run from the problem and the graphs (mixing matrices, spectral
constants, gossip rates) is its :class:`Prepared` object, built by
:meth:`Algorithm.prepare` for every graph the run visits and handed to the
handlers as ``ctx.prepared`` (the one of the graph in force): no hidden caches,
and an engine ships it to its workers as it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from fedopt.core.arrays import FloatArray, IntArray, State
from fedopt.core.meter import Channel, Meter
from fedopt.core.rng import NodeStream, RngStreams
from fedopt.problems.base import CountingOracle, Problem
from fedopt.topology.graph import Topology

if TYPE_CHECKING:
    from fedopt.topology.time_varying import TimeVaryingTopology


class Params(BaseModel):
    """Base of every algorithm's hyper-parameter model (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Layout(str, Enum):
    """Where one entry of an algorithm's state lives (see :meth:`Algorithm.state_layout`).

    ``NODE``
        rows indexed by node (first axis ``n``); a node's rows live with the node
        (decentralized algorithms).
    ``EDGE``
        rows indexed by the edges of the graph in force (first axis ``m``, in the
        order of ``topology.edges``).
    ``CLIENT``
        rows indexed by client (first axis ``n``; federated algorithms): read and
        written by ``client_update`` only, they stay with the client's shard.
    ``SERVER``
        one copy, owned by the driver. Only the server's steps change it (``init``,
        ``configure``, ``aggregate``, and a synchronous ``round``, which sees the
        whole state); the handlers that run on nodes or clients (``client_update``,
        ``on_compute``, ``gossip_message``, ``on_gossip``) only read it and get
        read-only arrays. Per-run constants belong in :class:`Prepared` instead.
    """

    NODE = "node"
    EDGE = "edge"
    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True, eq=False)
class Prepared:
    """Base of the per-run quantities an algorithm precomputes for one graph (frozen).

    :meth:`Algorithm.prepare` returns one per graph the run visits; the engine
    hands the handlers the one of the graph in force as ``ctx.prepared``. An
    algorithm that precomputes nothing uses this empty base.
    """


PreparedT = TypeVar("PreparedT", bound=Prepared)


@dataclass
class Context:
    """What an algorithm may use: oracles, the graph, the channel, random streams.

    ``oracle`` counts every gradient / query in ``meter``; ``channel`` counts
    every message. ``rng`` hands out the run-level named streams (``"init"``,
    ``"clocks"``, a server's ``"sampling"``, ...) for draws made once for the run;
    draws made at nodes inside handlers (minibatches, noise, directions) come from
    :meth:`node_rng`. ``topology`` is the graph in force (it changes at the
    switching times of a time-varying topology); ``sequence`` is the whole
    time-varying topology of the run (``None`` for a fixed graph). ``prepared``
    is the algorithm's :class:`Prepared` object for the graph in force (set by
    the engine; read it with :meth:`prepared_as`).
    """

    problem: Problem
    topology: Topology
    rng: RngStreams
    meter: Meter
    channel: Channel
    sequence: TimeVaryingTopology | None = None
    prepared: Prepared = field(default_factory=Prepared)
    oracle: CountingOracle = field(init=False)

    def __post_init__(self) -> None:
        self.oracle = CountingOracle(self.problem, self.meter)

    @property
    def n(self) -> int:
        return self.problem.n

    @property
    def d(self) -> int:
        return self.problem.d

    def prepared_as(self, cls: type[PreparedT]) -> PreparedT:
        """``prepared``, checked to be the algorithm's own type ``cls``."""
        p = self.prepared
        if not isinstance(p, cls):
            raise TypeError(f"the context holds {type(p).__name__}, not the {cls.__name__} its algorithm needs: "
                            "build it with the algorithm's prepare (the engines' Simulation does)")
        return p

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


#: Graph quantities a :class:`Complexity` may name (computed by the experiment report on the
#: unweighted Laplacian ``L_G`` of the run's graph): ``n`` nodes, ``edges`` = |E|, ``lambda2`` =
#: λ₂(L_G), ``chi1`` = 1/λ₂, ``chi2`` = max_e ½ b_eᵀ L_G⁺ b_e, ``sqrt_chi1_chi2`` = √(χ1χ2),
#: ``chi`` = λ_max/λ₂ (the condition number of L_G) and ``diameter``.
GRAPH_QUANTITIES = ("n", "edges", "lambda2", "chi1", "chi2", "sqrt_chi1_chi2", "chi", "diameter")


@dataclass(frozen=True)
class Complexity:
    """A predicted cost to reach accuracy ε, as data: ``cost ∝ Π_q q^graph[q] · κ^kappa · log(1/ε)``.

    ``cost`` is a cost axis of the results table (``messages``, ``grad_evals``, ``round``);
    ``graph`` maps names of :data:`GRAPH_QUANTITIES` to exponents; ``kappa`` is the exponent of
    the condition number ``κ = L/μ``. ``constant`` is the leading constant when the paper
    states it, else ``None`` (unknown: a report fits it and only the slope is predicted).
    ``when`` restricts the prediction to runs whose parameters have these values (e.g.
    ``{"multi_consensus": True}``); ``reference`` says where it comes from.
    """

    cost: str
    graph: Mapping[str, float]
    kappa: float
    reference: str
    constant: float | None = None
    when: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = [q for q in self.graph if q not in GRAPH_QUANTITIES]
        if bad:
            raise ValueError(f"complexity: unknown graph quantity {bad[0]!r}; allowed: {', '.join(GRAPH_QUANTITIES)}")

    def applies(self, params: Mapping[str, Any]) -> bool:
        """Whether the run's parameters match :attr:`when`."""
        return all(params.get(k) == v for k, v in self.when.items())

    def formula(self) -> str:
        """The prediction in words, e.g. ``|E|·√(χ1χ2)·√κ·log(1/ε)``."""
        names = {"n": "n", "edges": "|E|", "lambda2": "λ2", "chi1": "χ1", "chi2": "χ2",
                 "sqrt_chi1_chi2": "√(χ1χ2)", "chi": "χ", "diameter": "diam"}
        parts = [names[q] if e == 1 else f"√{names[q]}" if e == 0.5 else f"{names[q]}^{e:g}"
                 for q, e in self.graph.items() if e]
        if self.kappa:
            parts.append("√κ" if self.kappa == 0.5 else "κ" if self.kappa == 1 else f"κ^{self.kappa:g}")
        parts.append("log(1/ε)")
        return "·".join(parts)


P = TypeVar("P", bound=Params)


class Algorithm(ABC):
    """Common part of all algorithms: name, parameters, state, readout."""

    name: ClassVar[str] = ""
    #: pydantic model of the hyper-parameters (validated with clear errors).
    Params: ClassVar[type[Params]] = Params
    #: True for first-order methods that need L/μ of the problem.
    needs_strong_convexity: ClassVar[bool] = False
    #: True for methods that need per-sample gradients (a problem that holds data).
    needs_samples: ClassVar[bool] = False
    #: The :class:`Layout` of every key of the state ``init`` returns (an algorithm whose
    #: layout depends on its parameters overrides :meth:`state_layout` instead).
    layout: ClassVar[Mapping[str, Layout]] = {}
    #: The layouts this kind of algorithm may declare.
    allowed_layouts: ClassVar[tuple[Layout, ...]] = (Layout.NODE, Layout.EDGE, Layout.SERVER)
    #: Predicted costs to reach accuracy ε (:class:`Complexity`), as the algorithm's paper states
    #: them; empty when it states none (a communication-complexity report then draws no theory line).
    complexity: ClassVar[tuple[Complexity, ...]] = ()

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params(**params)
        except ValidationError as exc:
            raise ValueError(_format_validation(f"algorithm {self.name!r}", exc)) from None

    @classmethod
    def predicted_complexity(cls, cost: str, params: Mapping[str, Any]) -> Complexity | None:
        """The declared :class:`Complexity` of ``cost`` for a run with ``params`` (``None``: none declared)."""
        for c in cls.complexity:
            if c.cost == cost and c.applies(params):
                return c
        return None

    def state_layout(self, ctx: Context) -> dict[str, Layout]:
        """The layout of each state key (default: the class's :attr:`layout`)."""
        return dict(self.layout)

    def prepare(self, problem: Problem, graphs: Sequence[Topology]) -> Sequence[Prepared]:
        """What the handlers need precomputed, one :class:`Prepared` per graph of ``graphs``.

        ``graphs`` are the graphs the run visits: the fixed topology, or every graph of
        a time-varying sequence, in order (worst-case constants over the sequence are
        computed here once). Called once per run by the engine, before :meth:`init`;
        it counts nothing. Default: nothing to precompute.
        """
        return [Prepared() for _ in graphs]

    @abstractmethod
    def init(self, ctx: Context) -> State:
        """The initial state (a dict of arrays, each key declared in :meth:`state_layout`)."""

    def iterates(self, state: State, ctx: Context, t: float) -> FloatArray:
        """The nodes' current models ``[n, d]`` at simulated time ``t`` (read-only use)."""
        return state["x"]

    def diagnostics(self, state: State, ctx: Context) -> dict[str, float]:
        """Uncounted diagnostic columns of a record point, read from ``state`` (keys among
        :data:`fedopt.core.trace.DIAGNOSTIC_COLUMNS`; the others are NaN). Default: none."""
        return {}

    def initial_point(self, ctx: Context) -> FloatArray:
        """Common starting point ``x_0`` of all nodes: the problem's
        :meth:`~fedopt.problems.base.Problem.initial_parameters` (zeros, or a torch
        module's own initialization), a fresh ``[d]`` array."""
        x0 = np.array(ctx.problem.initial_parameters(), dtype=np.float64)
        if x0.shape != (ctx.d,):
            raise ValueError(f"{type(ctx.problem).__name__}.initial_parameters: expected shape ({ctx.d},), "
                             f"got {x0.shape}")
        return x0


class RoundAlgorithm(Algorithm):
    """Synchronous algorithms: one call of :meth:`round` per round."""

    @abstractmethod
    def round(self, state: State, ctx: Context, r: int) -> State:
        """Run round ``r`` (0-based) and return the new state."""


@dataclass(frozen=True)
class Mix:
    """A graph product a row round asks for (see :class:`RowRoundAlgorithm`).

    ``op``: the name of the field of the algorithm's :class:`Prepared` object that holds
    the ``[n, n]`` operator (dense or scipy sparse); ``rows``: the operand's rows of the
    block's nodes, ``[len(nodes), p]``. The answer sent back is ``op[nodes] @ operand``,
    the operand being every node's rows.
    """

    op: str
    rows: FloatArray


@dataclass(frozen=True)
class RowBlock:
    """The nodes a row round works on: ``nodes`` (sorted) and ``edges``, the indices (in
    ``topology.edges`` of the graph in force) of the edges whose exchanges this block
    counts (those whose first endpoint is one of ``nodes``). ``whole``: every node."""

    nodes: IntArray
    edges: IntArray
    whole: bool = False

    @classmethod
    def every_node(cls, ctx: Context) -> RowBlock:
        """The block of all nodes and all edges (a round on one process)."""
        return cls(np.arange(ctx.n), np.arange(ctx.topology.m), True)

    def take(self, a: np.ndarray) -> np.ndarray:
        """The block's rows of ``a`` (``a`` itself for the whole graph)."""
        return a if self.whole else a[self.nodes]


RowRound = Generator[Mix, FloatArray, State]


class RowRoundAlgorithm(RoundAlgorithm):
    """A synchronous round written as local work on a block of rows plus graph products.

    :meth:`round_rows` works on the rows of ``block.nodes`` of every per-node key, counts
    its own nodes' work (gradients and local steps of ``block.nodes``, exchanges on
    ``block.edges``) and ``yield`` s a :class:`Mix` for each product with a graph
    operator, receiving ``op[nodes] @ operand``; it returns the block's new rows of every
    per-node key. It makes exactly :meth:`products` products per round. The local engine
    drives it on all nodes with a plain matrix product (:meth:`round`); the sharded core
    drives it in every shard on the shard's rows and answers each product with a halo
    exchange of the rows that cross a shard boundary. All state is per node.
    """

    allowed_layouts: ClassVar[tuple[Layout, ...]] = (Layout.NODE,)
    #: The type of the algorithm's :class:`Prepared` objects, whose fields hold the operators.
    prepared_type: ClassVar[type[Prepared]] = Prepared

    @abstractmethod
    def products(self, ctx: Context) -> int:
        """How many graph products a round makes (at least one)."""

    @abstractmethod
    def round_rows(self, state: State, ctx: Context, block: RowBlock, r: int) -> RowRound:
        """Round ``r`` on the rows of ``block`` (a generator, see the class docstring)."""

    def operator(self, ctx: Context, name: str) -> Any:
        """The ``[n, n]`` operator a :class:`Mix` names, for the graph in force."""
        prepared = ctx.prepared_as(self.prepared_type)
        op = getattr(prepared, name, None)
        if op is None or getattr(op, "shape", None) != (ctx.n, ctx.n):
            raise ValueError(f"algorithm {self.name!r}: Mix names operator {name!r}, which its prepared "
                             f"{type(prepared).__name__} does not hold as an [n, n] matrix")
        return op

    def round(self, state: State, ctx: Context, r: int) -> State:
        """Round ``r`` on every node (:meth:`round_rows` driven with plain products)."""
        gen = self.round_rows(state, ctx, RowBlock.every_node(ctx), r)
        answer: FloatArray | None = None
        made = 0
        while True:
            try:
                mix = gen.send(answer) if made else next(gen)
            except StopIteration as stop:
                rows: State = stop.value
                break
            made += 1
            answer = self.operator(ctx, mix.op) @ mix.rows
        check_row_round(self, ctx, made, rows, state)
        return {**state, **rows}


def check_row_round(algo: RowRoundAlgorithm, ctx: Context, made: int, rows: Mapping[str, Any],
                    state: Mapping[str, Any]) -> None:
    """A finished row round made :meth:`~RowRoundAlgorithm.products` products and returned
    every state key; else a ``ValueError`` naming the algorithm."""
    want = algo.products(ctx)
    if made != want:
        raise ValueError(f"algorithm {algo.name!r}: round_rows made {made} graph product(s); products() "
                         f"declares {want}")
    if set(rows) != set(state):
        raise ValueError(f"algorithm {algo.name!r}: round_rows returns state keys {sorted(rows)}; it returns "
                         f"the new rows of every per-node key: {sorted(state)}")


class FederatedAlgorithm(RoundAlgorithm):
    """Server/client algorithms split Flower-style so an engine can spread clients.

    ``round`` composes the three steps; a distributed engine instead runs
    ``client_update`` on blocks of clients where their data live, sums
    ``weights[:, None] * updates`` per block and calls ``aggregate`` once.

    The state is split by its declared layout: ``configure`` and ``aggregate``
    see the :attr:`Layout.SERVER` keys only; ``client_update`` sees the
    :attr:`Layout.CLIENT` keys (its clients' rows may change) and the server keys
    and the payload as read-only arrays (:func:`configure_step`,
    :func:`client_step`, :func:`aggregate_step` hold every engine to this).
    """

    allowed_layouts = (Layout.CLIENT, Layout.SERVER)

    @abstractmethod
    def configure(self, state: State, ctx: Context, r: int) -> tuple[IntArray, dict[str, np.ndarray]]:
        """Pick the round's clients and the payload broadcast to them (``state``: the server keys)."""

    @abstractmethod
    def client_update(
        self, payload: dict[str, np.ndarray], state: State, ctx: Context, clients: IntArray, r: int
    ) -> tuple[FloatArray, FloatArray]:
        """Local work of ``clients`` (vectorized). Returns ``(updates [k, p], weights [k])``
        and may update the clients' rows of the per-client keys of ``state`` (e.g. control
        variates); the server keys and ``payload`` are read-only."""

    @abstractmethod
    def aggregate(self, state: State, ctx: Context, weighted_sum: FloatArray, weight_total: float, r: int) -> State:
        """Server step from ``Σ_k w_k u_k`` and ``Σ_k w_k``: the new values of the server keys
        (``state``: the server keys)."""

    def phases(self, ctx: Context) -> int:
        """How many configure → client_update → aggregate exchanges make one round (default 1).

        An algorithm whose round needs a second upload after a server step (SCAFFOLD type I's
        control variates at the new server point, FZooS's surrogates fitted near it) declares
        more; it keeps the phase it is in in its server state (``configure`` reads it and
        tells the clients through the payload, ``aggregate`` advances it).
        """
        return 1

    def round(self, state: State, ctx: Context, r: int) -> State:
        layout = self.state_layout(ctx)
        for _ in range(self.phases(ctx)):
            clients, payload = configure_step(self, state, layout, ctx, r)
            updates, weights, client_rows = client_step(self, payload, state, layout, ctx, clients, r)
            server = aggregate_step(self, state, layout, ctx, weights @ updates, float(weights.sum()), r)
            state = {**server, **client_rows}
        return state


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


# ---- per-run preparation --------------------------------------------------------------
def run_graphs(topology: Topology | TimeVaryingTopology) -> tuple[Topology, ...]:
    """The graphs a run on ``topology`` visits: the graph itself, or a sequence's graphs in order."""
    if isinstance(topology, Topology):
        return (topology,)
    graphs = tuple(getattr(topology, "topologies", ()))
    if not graphs or not all(isinstance(g, Topology) for g in graphs):
        raise TypeError(f"a run's topology is a Topology or a time-varying sequence with a list of Topology "
                        f"'topologies'; got {type(topology).__name__}")
    return graphs


@dataclass(frozen=True, eq=False)
class PreparedRun:
    """An algorithm's :class:`Prepared` objects for one run: one per graph of :func:`run_graphs`.

    Built once per run (:meth:`build`); a process that receives the objects (a shard
    worker) pairs them with the graphs of its own copy of the run's topology.
    """

    graphs: tuple[Topology, ...]
    prepared: tuple[Prepared, ...]

    def __post_init__(self) -> None:
        if len(self.prepared) != len(self.graphs):
            raise ValueError(f"prepare returned {len(self.prepared)} object(s) for {len(self.graphs)} graph(s)")

    @classmethod
    def build(cls, algo: Algorithm, problem: Problem, topology: Topology | TimeVaryingTopology) -> PreparedRun:
        graphs = run_graphs(topology)
        prepared = tuple(algo.prepare(problem, graphs))
        bad = [type(p).__name__ for p in prepared if not isinstance(p, Prepared)]
        if bad:
            raise TypeError(f"algorithm {algo.name!r}: prepare must return Prepared objects, got {bad[0]}")
        try:
            return cls(graphs, prepared)
        except ValueError as exc:
            raise ValueError(f"algorithm {algo.name!r}: {exc}") from None

    def for_graph(self, top: Topology) -> Prepared:
        """The object of ``top`` (one of :attr:`graphs`, the graph in force)."""
        for g, p in zip(self.graphs, self.prepared):
            if g is top:
                return p
        raise ValueError(f"topology {top.name!r} is not one of the run's graphs "
                         f"({', '.join(repr(g.name) for g in self.graphs)})")


# ---- state layout ---------------------------------------------------------------------------
class LayoutError(KeyError):
    """A step reads a state key that its part of the declared layout does not hold."""

    def __str__(self) -> str:
        return str(self.args[0])


class StateView(dict[str, Any]):
    """The part of the state one step sees; reading any other key is a :class:`LayoutError`."""

    def __init__(self, data: Mapping[str, Any], algo: Algorithm, step: str, layout: Mapping[str, Layout],
                 sees: str) -> None:
        super().__init__(data)
        self._where = (algo.name, step, dict(layout), sees)

    def __missing__(self, key: str) -> Any:
        name, step, layout, sees = self._where
        declared = layout.get(key)
        what = "which state_layout does not declare" if declared is None else f"declared {declared.value}"
        raise LayoutError(f"algorithm {name!r}: {step} reads state key {key!r}, {what}; {step} sees {sees}")


def read_only(value: Any) -> Any:
    """A read-only view of an array (other values as they are)."""
    if isinstance(value, np.ndarray):
        view = value.view()
        view.setflags(write=False)
        return view
    return value


def keys_of(layout: Mapping[str, Layout], kind: Layout) -> list[str]:
    """The keys declared ``kind``, in declaration order."""
    return [k for k, v in layout.items() if v is kind]


def protect_server(state: State, layout: Mapping[str, Layout]) -> State:
    """``state`` with its server entries as read-only arrays (what node and client handlers get)."""
    return {k: read_only(v) if layout[k] is Layout.SERVER else v for k, v in state.items()}


def check_handlers_kept_layout(algo: Algorithm, state: Mapping[str, Any], layout: Mapping[str, Layout],
                               server: Mapping[str, Any]) -> None:
    """After node handlers ran on ``state``: its keys are still the declared ones and its
    server entries are still ``server`` (the read-only arrays they were given); else a
    ``ValueError`` naming the algorithm and the key."""
    where = f"algorithm {algo.name!r}: the node handlers"
    if set(state) != set(layout):
        changed = sorted(set(state) ^ set(layout))
        raise ValueError(f"{where} add or remove state key {changed[0]!r}; declared: {', '.join(layout)}")
    for k, v in server.items():
        if state[k] is not v:
            raise ValueError(f"{where} replace state key {k!r}, declared server: they only read the server keys")


def check_state_layout(algo: Algorithm, state: Mapping[str, Any], ctx: Context) -> dict[str, Layout]:
    """The declared layout of ``state`` (``init``'s), checked; a wrong or missing declaration
    is a ``ValueError`` naming the algorithm and the key.

    Every state key is declared and every declared key is in the state, with a layout
    of :attr:`Algorithm.allowed_layouts`; per-node and per-client entries are arrays
    with first axis ``n``, per-edge ones with first axis ``m`` of the graph in force.
    """
    where = f"algorithm {algo.name!r}"
    layout = algo.state_layout(ctx)
    allowed = ", ".join(v.value for v in algo.allowed_layouts)
    for key, kind in layout.items():
        if not isinstance(kind, Layout):
            raise ValueError(f"{where}: state_layout gives {kind!r} for state key {key!r}; allowed: {allowed}")
        if kind not in algo.allowed_layouts:
            raise ValueError(f"{where}: state key {key!r} is declared {kind.value}, which a "
                             f"{_kind_name(algo)} algorithm cannot hold; allowed: {allowed}")
    declared = ", ".join(layout) or "(nothing)"
    for key in state:
        if key not in layout:
            raise ValueError(f"{where}: state key {key!r} is not declared in state_layout; declared: {declared}")
    for key in layout:
        if key not in state:
            raise ValueError(f"{where}: state_layout declares {key!r}, which init does not return; "
                             f"state keys: {', '.join(state) or '(nothing)'}")
    rows = {Layout.NODE: ("n", ctx.n), Layout.CLIENT: ("n", ctx.n), Layout.EDGE: ("m", ctx.topology.m)}
    for key, kind in layout.items():
        if kind not in rows:
            continue
        axis, size = rows[kind]
        v = state[key]
        shape = v.shape if isinstance(v, np.ndarray) else None
        if shape is None or len(shape) == 0 or shape[0] != size:
            got = f"shape {shape}" if shape is not None else f"a {type(v).__name__}"
            raise ValueError(f"{where}: state key {key!r} is declared {kind.value} (an array with first axis "
                             f"{axis} = {size}) but is {got}")
    return dict(layout)


def _kind_name(algo: Algorithm) -> str:
    if isinstance(algo, FederatedAlgorithm):
        return "federated"
    return "event-based" if isinstance(algo, EventAlgorithm) else "round-based"


# ---- the federated split ------------------------------------------------------------------------
def configure_step(algo: FederatedAlgorithm, state: State, layout: Mapping[str, Layout], ctx: Context,
                   r: int) -> tuple[IntArray, dict[str, np.ndarray]]:
    """``configure`` on the server keys of ``state``: ``(clients, payload)``."""
    server = StateView({k: state[k] for k in keys_of(layout, Layout.SERVER)}, algo, "configure", layout,
                       "the server keys only")
    drawn = _node_draws(ctx)
    clients, payload = algo.configure(server, ctx, r)
    _check_no_node_draws(algo, "configure", ctx, drawn)
    return np.asarray(clients, dtype=np.int64), payload


def _node_draws(ctx: Context) -> int:
    streams = ctx.rng.per_node
    return -1 if streams is None else streams.draws()


def _check_no_node_draws(algo: Algorithm, step: str, ctx: Context, before: int) -> None:
    """Server steps draw from the run-level streams: per-node counters belong to the nodes' rows
    (a distributed engine keeps them in the shards), so a server draw from them is refused."""
    if _node_draws(ctx) != before:
        raise ValueError(f"algorithm {algo.name!r}: {step} draws from the per-node random streams "
                         "(ctx.node_rng); a server step draws from the run-level streams (ctx.rng[name])")


def client_step(algo: FederatedAlgorithm, payload: Mapping[str, np.ndarray], state: State,
                layout: Mapping[str, Layout], ctx: Context, clients: IntArray,
                r: int) -> tuple[FloatArray, FloatArray, State]:
    """``client_update`` of ``clients``: ``(updates, weights, per-client entries after it)``.

    It sees the per-client keys of ``state`` and read-only server arrays and payload;
    replacing a server entry, or adding or removing a key, is a ``ValueError``.
    """
    client_keys = keys_of(layout, Layout.CLIENT)
    server = {k: read_only(state[k]) for k in keys_of(layout, Layout.SERVER)}
    view = StateView({**{k: state[k] for k in client_keys}, **server}, algo, "client_update", layout,
                     "the per-client and server keys")
    updates, weights = algo.client_update({k: read_only(v) for k, v in payload.items()}, view, ctx, clients, r)
    where = f"algorithm {algo.name!r}: client_update"
    if set(view) != set(client_keys) | set(server):
        changed = sorted(set(view) ^ (set(client_keys) | set(server)))
        raise ValueError(f"{where} adds or removes state key {changed[0]!r}; it may only change the "
                         f"rows of the per-client keys ({', '.join(client_keys) or 'none declared'})")
    for k, v in server.items():
        if view[k] is not v:
            raise ValueError(f"{where} replaces state key {k!r}, declared server: the server keys are "
                             "read-only on the clients (change them in aggregate)")
    return np.asarray(updates), np.asarray(weights, dtype=np.float64), {k: view[k] for k in client_keys}


def aggregate_step(algo: FederatedAlgorithm, state: State, layout: Mapping[str, Layout], ctx: Context,
                   weighted_sum: FloatArray, weight_total: float, r: int) -> State:
    """``aggregate`` on the server keys of ``state``: the new server entries (exactly the server keys)."""
    server_keys = keys_of(layout, Layout.SERVER)
    server = StateView({k: state[k] for k in server_keys}, algo, "aggregate", layout, "the server keys only")
    drawn = _node_draws(ctx)
    new = algo.aggregate(server, ctx, weighted_sum, weight_total, r)
    _check_no_node_draws(algo, "aggregate", ctx, drawn)
    if set(new) != set(server_keys):
        raise ValueError(f"algorithm {algo.name!r}: aggregate returns state keys {sorted(new)}; it returns "
                         f"exactly the server keys of state_layout: {sorted(server_keys)}")
    return dict(new)


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
