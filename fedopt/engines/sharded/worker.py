"""The shard worker: a shard of logical nodes (or clients) as arrays, in whatever process a
transport puts it (a Ray actor, an MPI rank, or the driver's own process).

A worker rebuilds the run's context from the :class:`~fedopt.engines.base.RunSpec`
(problem, topology, algorithm, its own :class:`Meter` and random streams) and the
algorithm's per-run :class:`~fedopt.algorithms.base.Prepared` objects the driver
built, and holds a full-size copy of the algorithm state of which only its
shard's rows of the per-node (or per-client) keys are authoritative; the server
keys are read-only here. It never talks to other workers directly: the driver hands
it event plans (see :mod:`fedopt.engines.sharded.plan`) whose inputs may be other
workers' outputs, which the transport delivers before the call runs.

This module knows no transport: the transport tells the worker at set-up which device
it placed the shard on (:func:`gpu_device` for the GPUs it was given, or none), and the
worker reads the problem through ``problem.shard_view(nodes, device)``: a torch problem
puts the shard's nodes' data on that device, a numpy problem ignores it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from fedopt.algorithms.base import (
    Context,
    EventAlgorithm,
    FederatedAlgorithm,
    Layout,
    Prepared,
    PreparedRun,
    RowBlock,
    RowRoundAlgorithm,
    check_handlers_kept_layout,
    check_row_round,
    check_state_layout,
    client_step,
    keys_of,
    protect_server,
    run_graphs,
)
from fedopt.core.arrays import IntArray, State
from fedopt.core.meter import NODE_COUNTERS, Channel, Meter
from fedopt.core.rng import NodeStreams, RngStreams, stream_key
from fedopt.engines.base import apply_gossip_pairs, topology_for_period
from fedopt.engines.sharded.halo import HaloPlan, halo_plan

#: Spawn-key tag of the per-shard run-level streams (kept apart from the run's own streams).
SHARD_STREAM_TAG = 0x5348


class ShardStreams(RngStreams):
    """Random streams of one shard.

    The per-node streams (``ctx.node_rng(name)``) are the run's own: keyed by
    (seed, stream, node), this shard's nodes draw exactly what they draw in the
    local engine or in any other partition. The shard owns its nodes' counters
    (``owned`` rows of ``per_node``); :meth:`get_state` / :meth:`set_state` carry
    them by node rows. A handler that draws from a run-level stream
    ``ctx.rng[name]`` inside a worker gets a stream keyed by ``(seed, name,
    shard)``, so shards never reuse each other's numbers; those names are
    recorded (such a run is a valid sample of the algorithm, but not
    draw-for-draw the local engine's run).
    """

    def __init__(self, seed: int, shard: int, per_node: NodeStreams, owned: IntArray) -> None:
        super().__init__(seed)
        self.shard = int(shard)
        self.per_node = per_node
        self.owned = np.asarray(owned, dtype=np.int64)
        self.used: set[str] = set()

    def fresh(self, name: str, *sub: int) -> np.random.Generator:
        ss = np.random.SeedSequence(self.seed, spawn_key=(stream_key(name), *map(int, sub), SHARD_STREAM_TAG, self.shard))
        return np.random.Generator(np.random.PCG64(ss))

    def __getitem__(self, name: str) -> np.random.Generator:
        self.used.add(name)
        return super().__getitem__(name)

    def get_state(self) -> dict[str, Any]:
        """The run-level streams' states and the owned nodes' per-node counters."""
        return {"run": {name: g.bit_generator.state for name, g in self._cache.items()},
                "per_node": self.per_node.rows(self.owned)}

    def set_state(self, states: dict[str, Any]) -> None:
        self._cache.clear()
        for name, st in states["run"].items():
            g = self.fresh(name)
            g.bit_generator.state = st
            self._cache[name] = g
        self.per_node.set_rows(self.owned, states["per_node"])


def gpu_device(gpus: Sequence[int], given_by: str, remedy: str) -> str:
    """The torch device of a shard that ``given_by`` gave the GPUs ``gpus``: ``"cuda"``
    when it gave some, ``"cpu"`` when it gave none. A GPU that was given but torch cannot
    use (a CPU build of torch, a driver mismatch) is an error naming the GPU, torch and
    ``remedy``, not a quiet switch to the CPU that would hold the GPU idle."""
    if not gpus:
        return "cpu"
    import torch  # (imported here: only a shard given a GPU needs torch)

    if not torch.cuda.is_available():
        raise RuntimeError(
            f"{given_by} gave this shard GPU {', '.join(map(str, gpus))} "
            f"but torch {torch.__version__} cannot use it (torch.cuda.is_available() is False; "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')!r}): install a CUDA build "
            f"of torch on this node, or {remedy}"
        )
    return "cuda"


class ShardWorker:
    """State rows, meter and random streams of one shard of nodes (or clients)."""

    def ping(self) -> int:
        return os.getpid()

    # ---- set-up, checkpoints -------------------------------------------------------
    def setup(self, spec: Any, prepared: tuple[Prepared, ...], shard: int, nodes: IntArray,
              device: str | None = None) -> int:
        """Build the run's context and initial state; ``prepared``: the driver's
        :class:`Prepared` objects (one per graph of the run); ``nodes``: this shard's rows;
        ``device``: where the transport placed this shard (see :func:`gpu_device`; ``None``:
        the transport places nothing and the problem computes where it was built)."""
        self.spec = spec
        self.shard = int(shard)
        self.nodes = np.asarray(nodes, dtype=np.int64)
        self.period_index = 0
        top = topology_for_period(spec.topology, 0)
        self.meter = Meter(n=spec.problem.n)
        sequence = spec.topology if hasattr(spec.topology, "at") else None
        run_rng = RngStreams(spec.seed, spec.problem.n)
        # the problem as this shard reads it: its nodes' data kept contiguous (on the shard's
        # device), so a whole-shard block of rows reads them without a copy (same numbers as
        # the full problem on the same device)
        self.ctx = Context(spec.problem.shard_view(self.nodes, device), top, run_rng, self.meter,
                           Channel(self.meter, top.latency, top.bandwidth), sequence)
        self.prepared = PreparedRun(run_graphs(spec.topology), tuple(prepared))
        self.ctx.prepared = self.prepared.for_graph(top)
        self.algo = spec.algorithm
        state = self.algo.init(self.ctx)  # same draws as the driver's init
        self.meter.load_state_dict(Meter(n=spec.problem.n).state_dict())  # the driver counted init's work
        self.layout = check_state_layout(self.algo, state, self.ctx)
        self._hold(state)
        assert run_rng.per_node is not None
        self.rng = ShardStreams(spec.seed, self.shard, run_rng.per_node, self.nodes)
        self.ctx.rng = self.rng
        self._own_msgs: np.ndarray | None = None
        self._scratch: Meter | None = None
        self.device = str(getattr(self.ctx.problem, "device", device or "cpu"))  # where the oracles run
        self._row_round: Any = None
        self._inner: np.ndarray | None = None
        self._products = 0
        self._shards: list[IntArray] | None = None
        self._plans: dict[tuple[int, str], HaloPlan] = {}
        self._blocks: dict[int, RowBlock] = {}
        #: Rows and bytes this shard sent to other shards in halo exchanges (replays included).
        self.halo_rows_sent = 0
        self.halo_bytes_sent = 0
        return len(self.nodes)

    def _hold(self, state: State) -> None:
        """Keep ``state`` with read-only server arrays (handlers here only read them)."""
        self.state = protect_server(state, self.layout)
        self._server = {k: self.state[k] for k in keys_of(self.layout, Layout.SERVER)}

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "device": self.device, "nodes": int(len(self.nodes))}

    def snapshot(self, t: float, iterates: bool, keys: list[str], period_index: int = 0) -> dict[str, Any]:
        """This shard's rows of ``keys`` (and of the iterates at ``t``, read in the graph of
        switching period ``period_index``, as the driver reads them: ``X``, or ``X_key`` naming
        the key of ``keys`` whose array the iterates are), its meter and streams (with its
        nodes' per-node counters)."""
        self._set_period(period_index)
        check_handlers_kept_layout(self.algo, self.state, self.layout, self._server)
        out: dict[str, Any] = {}
        if iterates:
            X = np.asarray(self.algo.iterates(self.state, self.ctx, t))
            same = next((k for k in keys if self.state[k] is X), None)
            if same is None:
                out["X"] = np.array(X[self.nodes])
            else:  # the iterates are a state key whose rows go anyway: not sent twice
                out["X_key"] = same
        rows = {k: np.array(self.state[k][self.nodes]) for k in keys}
        out.update(rows=rows, meter=self.meter.state_dict(), rng=self.rng.get_state(), rng_used=sorted(self.rng.used),
                   halo={"rows": self.halo_rows_sent, "bytes": self.halo_bytes_sent})
        return out

    def restore(self, state: State, meter: dict[str, Any], rng: dict[str, Any], period_index: int) -> None:
        """Return to a checkpoint (the driver's assembled state; this shard's meter and streams,
        its nodes' per-node counters included)."""
        self._hold({k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in state.items()})
        self.meter.load_state_dict(meter)
        self.rng.set_state(rng)
        self._own_msgs = None
        self._row_round = None
        self._inner = None
        self._set_period(period_index)

    def _set_period(self, period_index: int) -> None:
        if period_index == self.period_index:
            return
        self.period_index = period_index
        top = topology_for_period(self.spec.topology, period_index)
        if top is not self.ctx.topology:
            self.ctx.topology = top
            self.ctx.channel = Channel(self.meter, top.latency, top.bandwidth)
            self.ctx.prepared = self.prepared.for_graph(top)

    @contextmanager
    def _scratch_meter(self) -> Iterator[Meter]:
        """Count into a scratch meter (handlers run on rows this shard does not own). The
        scratch meter is kept while nothing is counted into it (the usual case), so a call
        costs no new meter."""
        ctx, real = self.ctx, self.meter
        scratch = self._scratch
        if scratch is None or scratch.n != real.n or scratch.bytes_per_float != real.bytes_per_float:
            scratch = self._scratch = Meter(n=real.n, bytes_per_float=real.bytes_per_float)
        scratch.epsilon = real.epsilon
        ctx.meter = ctx.oracle.meter = ctx.channel.meter = scratch
        try:
            yield scratch
        finally:
            ctx.meter = ctx.oracle.meter = ctx.channel.meter = real

    def _keep_counts(self, scratch: Meter, nodes: IntArray, scalars: bool) -> None:
        """Add the scratch meter's counts of ``nodes`` (and with ``scalars`` its run-level
        counts) to the shard's meter; a scratch meter that counted anything is replaced."""
        real = self.meter
        if scalars:
            real.epsilon = scratch.epsilon
        if scratch.untouched():
            return
        self._scratch = None
        for name in NODE_COUNTERS:
            vals = getattr(scratch, name).values
            if vals.any():
                getattr(real, name).add(nodes, vals[nodes])
        if scalars:
            real.communications += scratch.communications
            real.server_floats += scratch.server_floats
            real.link_time += scratch.link_time
            pairs, counts = scratch.edge_messages.pairs(), scratch.edge_messages.values
            if len(pairs):
                real.edge_messages.add(pairs[:, 0], pairs[:, 1], counts)

    # ---- event-based algorithms ----------------------------------------------------------
    def run_segment(self, period_index: int, plan: dict[str, Any], seg: int,
                    *peer_outputs: np.ndarray) -> np.ndarray | None:
        """Call ``seg`` of this shard's ``plan`` of a block (see
        :func:`~fedopt.engines.sharded.plan.plan_block`): finish the cross-shard gossip of
        cross level ``seg - 1`` with the peers' messages ``peer_outputs`` (the outputs of the
        call's inputs), run the shard's compute and intra-shard gossip events of the levels
        up to cross level ``seg``, and return this shard's messages that start it (``None``
        after the last cross level).
        """
        algo = self.algo
        assert isinstance(algo, EventAlgorithm)
        self._set_period(period_index)
        state, ctx = self.state, self.ctx
        seg = int(seg)
        if seg > 0:
            self._finish_cross(plan, seg - 1, peer_outputs)
        r0, r1 = plan["seg_run"][seg:seg + 2].tolist()
        if r1 > r0:
            at = plan["run_at"][r0:r1 + 1].tolist()
            gossip = plan["run_g"][r0:r1].tolist()
            ev_a, ev_b, ev_t, ev_e = plan["ev_a"], plan["ev_b"], plan["ev_t"], plan["ev_e"]
            on_compute = algo.on_compute
            for i, g in enumerate(gossip):
                s, e = at[i], at[i + 1]
                if g:
                    apply_gossip_pairs(algo, state, ctx, ev_a[s:e], ev_b[s:e], ev_t[s:e], ev_e[s:e])
                else:
                    on_compute(state, ctx, ev_a[s:e], ev_t[s:e])
        x_at = plan["x_at"]
        if seg >= len(x_at) - 1:
            self._own_msgs = None
            return None
        x0, x1 = x_at[seg:seg + 2].tolist()
        msgs = np.array(algo.gossip_message(state, ctx, plan["x_mine"][x0:x1], plan["x_t"][x0:x1]))
        self._own_msgs = msgs
        return msgs

    def _finish_cross(self, plan: dict[str, Any], c: int, peer_outputs: tuple[np.ndarray, ...]) -> None:
        """``on_gossip`` for this shard's endpoints of the cross-shard edges of its cross
        level ``c`` (the plan's records ``[x_at[c], x_at[c + 1])``).

        Each side is called in the engine's pair layout (row ``k`` and ``k + K`` are
        the endpoints of one edge, first endpoints first): first the events whose first
        endpoint is here, then those whose second endpoint is here. The peer's rows are
        scratch rows here and their counts are dropped. The shard holding an edge's first
        endpoint counts the exchange and any run-level counter.
        """
        algo = self.algo
        assert isinstance(algo, EventAlgorithm) and self._own_msgs is not None
        own = self._own_msgs
        x0, x1 = plan["x_at"][c:c + 2].tolist()
        k0 = int(plan["x_first"][c])
        got = peer_outputs[0] if len(peer_outputs) == 1 else np.concatenate(peer_outputs)
        peer = np.asarray(got)[plan["x_pidx"][x0:x1]]
        mine, other = plan["x_mine"][x0:x1], plan["x_other"][x0:x1]
        t, edges = plan["x_t"][x0:x1], plan["x_edge"][x0:x1]
        concat = np.concatenate
        for first, sl in ((True, slice(0, k0)), (False, slice(k0, x1 - x0))):
            if sl.stop <= sl.start:
                continue
            o, p, tt = own[sl], peer[sl], t[sl]
            own_nodes, peer_nodes = mine[sl], other[sl]
            if first:
                nodes, mo, mp = concat((own_nodes, peer_nodes)), concat((o, p)), concat((p, o))
            else:
                nodes, mo, mp = concat((peer_nodes, own_nodes)), concat((p, o)), concat((o, p))
            with self._scratch_meter() as scratch:
                algo.on_gossip(self.state, self.ctx, nodes, concat((tt, tt)), mo, mp)
            self._keep_counts(scratch, own_nodes, scalars=first)
            if first:
                self.ctx.channel.exchange(own_nodes, peer_nodes, edges[sl], o.shape[1])
        self._own_msgs = None

    # ---- federated algorithms ----------------------------------------------------------------
    def client_update(self, bundle: dict[str, Any], clients: IntArray, r: int, period_index: int = 0) -> dict[str, Any]:
        """Local work of this shard's selected ``clients``: returns ``Σ w_k u_k`` and ``Σ w_k``.

        ``bundle`` holds the round's payload and the server's arrays (read-only here,
        see :func:`~fedopt.algorithms.base.client_step`); the clients' rows of the
        per-client keys are updated in this shard's state.
        """
        algo = self.algo
        assert isinstance(algo, FederatedAlgorithm)
        self._set_period(period_index)
        state = {**{k: self.state[k] for k in keys_of(self.layout, Layout.CLIENT)}, **bundle["server"]}
        updates, weights, rows = client_step(algo, bundle["payload"], state, self.layout, self.ctx,
                                             np.asarray(clients, dtype=np.int64), r)
        self.state.update(rows)
        return {"sum": weights @ updates, "weight": float(weights.sum())}

    # ---- synchronous rounds in rows ----------------------------------------------------------
    def _graph_index(self) -> int:
        top = self.ctx.topology
        return next(i for i, g in enumerate(self.prepared.graphs) if g is top)

    def _block(self) -> RowBlock:
        """This shard's :class:`RowBlock` in the graph in force: its nodes and the edges whose
        first endpoint it holds (it counts their exchanges)."""
        gi = self._graph_index()
        block = self._blocks.get(gi)
        if block is None:
            mine = np.zeros(self.spec.problem.n, dtype=bool)
            mine[self.nodes] = True
            block = RowBlock(self.nodes, np.flatnonzero(mine[self.ctx.topology.edges[:, 0]]))
            self._blocks[gi] = block
        return block

    def _plan(self, op: str) -> HaloPlan:
        """The halo plan of operator ``op`` of the graph in force (built on first use)."""
        assert isinstance(self.algo, RowRoundAlgorithm) and self._shards is not None
        key = (self._graph_index(), op)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = halo_plan(self.algo.operator(self.ctx, op), self._shards, self.shard)
        return plan

    def _advance(self, answer: np.ndarray | None) -> dict[int, np.ndarray] | None:
        """Run the pending row round to its next product: the rows to send to each shard that
        needs some (``None`` when the round returned; its rows are then written to the state)."""
        algo = self.algo
        assert isinstance(algo, RowRoundAlgorithm)
        try:
            mix = self._row_round.send(answer)
        except StopIteration as stop:
            self._row_round = None
            rows = stop.value
            check_row_round(algo, self.ctx, self._products, rows, self.state)
            for k, v in rows.items():
                self.state[k][self.nodes] = v
            return None
        self._products += 1
        self._mix = mix
        plan = self._plan(mix.op)
        out = {j: np.ascontiguousarray(mix.rows[p]) for j, p in plan.send.items()}
        for v in out.values():
            self.halo_rows_sent += v.shape[0]
            self.halo_bytes_sent += v.nbytes
        return out

    def row_inner(self, period_index: int) -> None:
        """The rows of the pending graph product that need no halo row (see
        :meth:`HaloPlan.inner_product`), computed ahead: a transport that runs this call
        while the halo rows travel overlaps the exchange with the product; the next
        :meth:`row_step` only multiplies the boundary rows."""
        self._set_period(period_index)
        if self._row_round is not None and self._shards is not None:
            self._inner = self._plan(self._mix.op).inner_product(self._mix.rows)

    def row_step(self, period_index: int, finish: bool, start: int, shards: list[IntArray] | None,
                 *received: np.ndarray | None) -> list[np.ndarray | None]:
        """One step of synchronous rounds in this shard's rows (:class:`RowRoundAlgorithm`).

        ``received``: the rows each other shard sent here in the previous step, in shard
        order (this shard left out; ``None`` from a shard that sent none); they complete
        the pending product. With ``finish`` that product is the round's last and the
        round must return; else it must ask for its next product. Then, with
        ``start >= 0``, round ``start`` begins and runs to its first product. Returns, for
        every shard in order, the rows this shard sends it (``None``: none, and always for
        itself). ``shards``: the partition (given on a run's first step and after a
        restore; the halo plans follow from it).
        """
        algo = self.algo
        assert isinstance(algo, RowRoundAlgorithm)
        self._set_period(period_index)
        if shards is not None:
            shards = [np.asarray(s, dtype=np.int64) for s in shards]
            if self._shards is None or any(not np.array_equal(a, b) for a, b in zip(self._shards, shards)):
                self._plans = {}
            self._shards = shards
        out: dict[int, np.ndarray] | None = None
        if self._row_round is not None:
            others = [j for j in range(len(received) + 1) if j != self.shard]
            rows = {j: v for j, v in zip(others, received) if v is not None}
            inner, self._inner = self._inner, None
            answer = self._plan(self._mix.op).product(self._mix.rows, rows, inner)
            out = self._advance(answer)
            if finish and out is not None:
                want = algo.products(self.ctx)
                raise ValueError(f"algorithm {algo.name!r}: round_rows made more than {want} graph product(s); "
                                 f"products() declares {want}")
            if not finish and out is None:
                check_row_round(algo, self.ctx, self._products, self.state, self.state)
        if start >= 0:
            self._products = 0
            self._row_round = algo.round_rows(self.state, self.ctx, self._block(), start)
            out = self._advance(None)
            if out is None:
                raise ValueError(f"algorithm {algo.name!r}: round_rows made no graph product; products() "
                                 f"declares {algo.products(self.ctx)}")
        k = len(self._shards) if self._shards is not None else 1
        return [None if out is None else out.get(j) for j in range(k)]
