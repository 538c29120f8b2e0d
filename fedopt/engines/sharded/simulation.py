"""The driver of a sharded run: one :class:`ShardedSimulation` for every transport.

How a run is spread (the driver is the process that runs the simulation):

* **Event-based algorithms** — the driver owns the seeded event stream and
  the virtual clock (the same :class:`~fedopt.engines.base.Simulation` draws
  it as in the local engine), cuts each block into dependency levels and
  hands every shard the plan of its events, once per block
  (:mod:`fedopt.engines.sharded.plan`): runs of levels without cross-shard gossip go
  in one call per shard, cross-shard gossip is done in two phases with the peer
  messages passed between shards as handles of the calls' outputs (a call carries
  only its index in the plan and those messages). Nodes are placed with a graph partition that
  keeps edges inside shards (:mod:`fedopt.engines.sharded.partition`).
* **Federated algorithms** — the driver runs ``configure`` on the server keys,
  shares the payload (and the server's arrays) once per round, each shard runs
  ``client_update`` for its selected clients, vectorized, and returns
  ``(Σ w_k u_k, Σ w_k)``; the transport reduces the partial sums
  (:meth:`~fedopt.engines.sharded.transport.Transport.reduce_sum`: in shard order by
  default, a reduction tree over the ranks in MPI) and the driver runs ``aggregate``
  on the server keys. The per-client keys (e.g. control
  variates) stay in the shards.
* **Synchronous rounds written in rows** (DGD, gradient tracking, MSDA, ADOM+:
  :class:`~fedopt.algorithms.base.RowRoundAlgorithm`) — every shard runs the round on
  its own rows (gradients, counting) and answers each graph product with a halo
  exchange (:mod:`fedopt.engines.sharded.halo`): it sends only its boundary rows to
  the shards whose block touches them, receives its halo rows, and multiplies its
  block ``op[own, own ∪ halo]``; with a transport that runs a shard's next call while
  the halo travels (:attr:`~fedopt.engines.sharded.transport.Transport.overlaps`), a call
  of its own multiplies the rows that need no halo row first, and the step that receives
  the halo only the boundary rows. The driver chains the steps of a run of rounds
  (each step takes the other shards' outputs of the previous one as handles, so the
  rows go from shard to shard) and waits only at the end; checkpoints stay at round
  boundaries. Nodes are placed with the graph partition, so the halo is small.
  A round algorithm without ``round_rows`` runs on the driver as the local engine
  runs it, and the run's message says so
  (:func:`~fedopt.engines.sharded.split.split_for` gives no split).

What lives where follows the algorithm's declared state layout
(:class:`~fedopt.algorithms.base.Layout`), never the arrays' shapes: the rows of
the per-node (event-based) or per-client (federated) keys live in the shards,
the server keys on the driver, and the shards get the server arrays read-only
(:class:`~fedopt.engines.sharded.split.ShardSplit`). A step that breaks the split
is an error that names the algorithm and the key. The algorithm's per-run
precomputations (:class:`~fedopt.algorithms.base.Prepared`) are built once on the
driver and shipped to the shards with the run.

Every shard counts into its own :class:`~fedopt.core.meter.Meter`; at record
points the driver sums them (with its own counts) into the row's meter and
takes the shards' state rows as a checkpoint. If the transport loses a shard
(:class:`~fedopt.engines.base.ShardLost`), the run loop asks the transport to
heal, rolls every shard and the driver back to the last record point and replays
from there: the trace equals an undisturbed run's. After ``max_restarts`` lost
shards the run ends with ``status="error"`` and the reason.

Random draws inside handlers come from the per-node streams ``ctx.node_rng(name)``,
keyed by ``(seed, stream, node)``, with per-node counters that each shard keeps
for its own nodes (in its checkpoints too): any number of shards gives the local
engine's draws. A handler that draws from a run-level stream ``ctx.rng[name]``
instead gets a per-shard stream (see :class:`~fedopt.engines.sharded.worker.ShardStreams`):
such a run is valid but not draw-for-draw the local engine's, and its message says
which streams were drawn.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fedopt.algorithms.base import (
    EventAlgorithm,
    FederatedAlgorithm,
    Layout,
    RowRoundAlgorithm,
    aggregate_step,
    configure_step,
    keys_of,
)
from fedopt.core.levels import schedule_levels
from fedopt.core.meter import Channel, Meter
from fedopt.core.trace import checkpoint_row
from fedopt.engines.base import RunResult, RunSpec, ShardLost, Simulation
from fedopt.engines.sharded.meters import merge_meters
from fedopt.engines.sharded.partition import cut_edges, owner_of
from fedopt.engines.sharded.plan import plan_block
from fedopt.engines.sharded.split import ROW_SPLIT, run_on_driver_note, split_for
from fedopt.engines.sharded.transport import Transport


class ShardedSimulation(Simulation):
    """A :class:`~fedopt.engines.base.Simulation` whose rounds and events run in the shards
    of ``transport`` (see the module docstring).

    ``hook(stage, k)`` is called after the ``k``-th dispatch of work to the shards (tests
    lose shards there); ``max_restarts``: lost shards the run may recover from.
    """

    def __init__(self, spec: RunSpec, transport: Transport, hook: Callable[[str, int], None] | None = None,
                 max_restarts: int = 3) -> None:
        super().__init__(spec)
        split = split_for(self.algo)
        if split is None:
            raise TypeError(f"{transport.engine} engine: algorithm {self.algo.name!r} runs its rounds on the "
                            "driver (a plain Simulation), not in shards")
        self.split = split
        self.transport = transport
        self.hook = hook
        self.max_restarts = int(max_restarts)
        self.notes: list[str] = []
        self.cut = 0
        self.rng_used: set[str] = set()
        self.restarts = 0
        self.cross_events = 0
        self._dispatches = 0
        self._shard_meters: list[dict[str, Any]] = []
        self._shard_rng: list[dict[str, Any]] = []
        self._ckpt: dict[str, Any] | None = None
        #: Rows and bytes the shards sent each other in halo exchanges, and the graph products
        #: they answered (synchronous rounds in rows; replays after a lost shard included).
        self.halo_rows = 0
        self.halo_bytes = 0
        self.products = 0
        self._send_shards = True

    # ---- set-up -------------------------------------------------------------------------
    def start(self) -> None:
        super().start()
        split, engine = self.split, self.transport.engine
        for key, kind in self.layout.items():
            if kind not in (split.rows, Layout.SERVER):
                raise ValueError(f"{engine} engine: algorithm {self.algo.name!r}: state key {key!r} is declared "
                                 f"{kind.value}; the {engine} engine places {split.rows.value} and server state "
                                 f"of {split.kind} algorithms")
        n = self.spec.problem.n
        k = min(self.transport.size, n)
        top = self.ctx.topology
        self.shards = split.partition(top, n, k, self.spec.seed)
        self.owner = owner_of(self.shards, n)
        if split.rows is Layout.NODE:
            self.cut = cut_edges(top.edges, self.owner)
        self.row_keys = keys_of(self.layout, split.rows)
        assert self.prepared is not None
        self.transport.open(self.spec, self.prepared.prepared, self.shards)
        self._shard_meters = [Meter(n=n).state_dict() for _ in self.shards]

    def _calls(self, method: str, args: list[tuple[Any, ...]]) -> list[Any]:
        """``method(*args[i])`` on every shard ``i``, gathered."""
        tr = self.transport
        return tr.gather([tr.submit(i, method, *a) for i, a in enumerate(args)])

    def _tick(self, stage: str) -> None:
        self._dispatches += 1
        if self.hook is not None:
            self.hook(stage, self._dispatches)

    # ---- checkpoints and recovery ---------------------------------------------------------
    def _snapshot_driver(self) -> dict[str, Any]:
        keep = {id(self.spec.problem): self.spec.problem, id(self.algo): self.algo,
                id(self.spec.topology): self.spec.topology, id(self.ctx.topology): self.ctx.topology}
        # the shards' row keys were assembled afresh by record() and the driver never writes
        # into them: the checkpoint shares them (a restore copies them again)
        for k in self.row_keys:
            keep[id(self.state[k])] = self.state[k]
        mutable = copy.deepcopy({"stream": self._stream, "rng": self.rng, "meter": self.meter, "state": self.state},
                                keep)
        return {**mutable, "t": self.t, "round": self.round, "n_events": self.n_events,
                "period_index": self._period_index, "topology": self.ctx.topology,
                "shard_meters": self._shard_meters, "shard_rng": self._shard_rng}

    def _restore_driver(self, ck: dict[str, Any]) -> None:
        keep = {id(self.spec.problem): self.spec.problem, id(self.algo): self.algo,
                id(self.spec.topology): self.spec.topology, id(ck["topology"]): ck["topology"]}
        m = copy.deepcopy({"stream": ck["stream"], "rng": ck["rng"], "meter": ck["meter"], "state": ck["state"]}, keep)
        self._stream, self.rng, self.meter, self.state = m["stream"], m["rng"], m["meter"], m["state"]
        self.t, self.round, self.n_events, self._period_index = ck["t"], ck["round"], ck["n_events"], ck["period_index"]
        ctx = self.ctx
        ctx.rng, ctx.meter, ctx.oracle.meter, ctx.topology = self.rng, self.meter, self.meter, ck["topology"]
        ctx.channel = Channel(self.meter, ctx.topology.latency, ctx.topology.bandwidth)
        assert self.prepared is not None
        ctx.prepared = self.prepared.for_graph(ctx.topology)
        self._shard_meters, self._shard_rng = ck["shard_meters"], ck["shard_rng"]

    def _heal(self) -> None:
        """Replace lost shards and bring every shard and the driver back to the last checkpoint."""
        ck = self._ckpt
        assert ck is not None
        self.transport.heal()
        state = self.transport.share(ck["state"])
        self._calls("restore", [(state, ck["shard_meters"][i], ck["shard_rng"][i], ck["period_index"])
                                for i in range(len(self.shards))])
        self._send_shards = True
        self._restore_driver(ck)

    def recover(self, lost: ShardLost) -> str:
        self.restarts += 1
        name = type(lost).__name__
        if self.restarts > self.max_restarts:
            return (f"{name}: {lost}; gave up after {self.max_restarts} restart(s) "
                    f"at time {self.t:g} (last record point)")
        try:
            self._heal()
        except Exception as exc:  # noqa: BLE001 - the run cannot go on
            return f"{name}: {lost}; recovery failed: {type(exc).__name__}: {exc}"
        return ""

    def result(self, status: str, message: str) -> RunResult:
        notes = list(self.notes)
        if self.restarts:
            notes.append(f"recovered from {self.restarts} lost {self.transport.shard_word}(s)")
        if self.rng_used:
            notes.append(f"handlers drew from run-level random streams {sorted(self.rng_used)} in separate shards "
                         "(ctx.node_rng gives draws keyed by node): not draw-for-draw equal to the local engine")
        note = "; ".join(notes)
        message = f"{message} [{note}]" if message and note else (message or note)
        meter = getattr(self, "merged_meter", self.meter)
        return RunResult(self.spec.run_id, self.rows, status, message, self.state, meter)

    def record(self) -> dict[str, Any]:
        in_shards = self.split.iterates_in_shards
        keys = self.row_keys
        snaps = self._calls("snapshot", [(self.t, in_shards, keys, self._period_index)] * len(self.shards))
        n = self.spec.problem.n
        state = dict(self.state)
        covered = sum(len(s) for s in self.shards)
        for k in keys:
            # every row comes from a shard where the shards hold all of them
            full = np.empty_like(self.state[k]) if covered == len(self.state[k]) else np.array(self.state[k])
            for s, snap in zip(self.shards, snaps):
                full[s] = snap["rows"][k]
            state[k] = full
        self.state = state
        if in_shards:
            x_keys = {snap.get("X_key") for snap in snaps}
            x_key = x_keys.pop() if len(x_keys) == 1 else None
            if x_key is not None and covered == n:
                X = state[x_key]  # the iterates are that key (read-only use below)
            else:
                X = np.empty((n, self.spec.problem.d))
                for s, snap in zip(self.shards, snaps):
                    X[s] = snap["rows"][snap["X_key"]] if "X_key" in snap else snap["X"]
        else:
            X = self.algo.iterates(self.state, self.ctx, self.t)
        self._shard_meters = [snap["meter"] for snap in snaps]
        self._shard_rng = [snap["rng"] for snap in snaps]
        for snap in snaps:
            self.rng_used.update(snap["rng_used"])
        self.halo_rows = sum(snap["halo"]["rows"] for snap in snaps)
        self.halo_bytes = sum(snap["halo"]["bytes"] for snap in snaps)
        self.meter.sim_time = self.t
        merged = merge_meters(self.meter, self._shard_meters)
        row = checkpoint_row(self.spec.problem, X, merged, self.t, self.round, time.perf_counter() - self._wall0,
                             self.algo.diagnostics(self.state, self.ctx))
        row["events"] = self.n_events
        self.rows.append(row)
        self.merged_meter = merged
        self._ckpt = self._snapshot_driver()
        return row

    # ---- the parts that run in the shards --------------------------------------------------
    def apply_rounds(self, count: int) -> None:
        if self.split is ROW_SPLIT:
            self._apply_row_rounds(count)
            return
        algo = self.algo
        assert isinstance(algo, FederatedAlgorithm)
        layout, ctx, tr = self.layout, self.ctx, self.transport
        server_keys = keys_of(layout, Layout.SERVER)
        for _ in range(count):
            r = self.round
            for _phase in range(algo.phases(ctx)):
                clients, payload = configure_step(algo, self.state, layout, ctx, r)
                bundle = tr.share({"payload": payload, "server": {k: self.state[k] for k in server_keys}})
                own = self.owner[clients]
                calls = [(i, clients[own == i]) for i in range(len(self.shards))]
                calls = [(i, c) for i, c in calls if len(c)] or [(0, clients)]
                handles = [tr.submit(i, "client_update", bundle, c, r, self._period_index) for i, c in calls]
                self._tick("round")
                reduced = tr.reduce_sum(handles)
                new = aggregate_step(algo, self.state, layout, ctx, reduced["sum"], reduced["weight"], r)
                self.state = {**new, **{k: self.state[k] for k in self.row_keys}}
            self.round += 1
            self.meter.rounds = self.round

    def _apply_row_rounds(self, count: int) -> None:
        """``count`` synchronous rounds in the shards' rows, chained step by step (see the
        module docstring): a round of K products is K steps per shard, each taking the other
        shards' outputs of the step before; a last step finishes the last round."""
        algo = self.algo
        assert isinstance(algo, RowRoundAlgorithm)
        K = algo.products(self.ctx)
        if K < 1:
            raise ValueError(f"algorithm {algo.name!r}: products() is {K}; a row round makes at least one")
        steps = [(s == 0 and q > 0, self.round + q if s == 0 else -1) for q in range(count) for s in range(K)]
        steps.append((True, -1))
        tr, k = self.transport, len(self.shards)
        shards = [np.asarray(s) for s in self.shards] if self._send_shards else None
        # sent[p][i]: the handle of the rows shard p sends to shard i in the previous step
        sent: list[list[Any]] = [[None] * k for _ in range(k)]
        last: list[Any] = []
        for j, (finish, start) in enumerate(steps):
            first = shards if j == 0 else None
            args = [(self._period_index, finish, start, first, *[sent[p][i] for p in range(k) if p != i])
                    for i in range(k)]
            if k == 1:
                last = [tr.submit(0, "row_step", *args[0])]
            else:
                sent = [tr.submit_parts(i, "row_step", k, *args[i]) for i in range(k)]
                last = [part for parts in sent for part in parts]
                if tr.overlaps and j < len(steps) - 1:  # (the last step leaves no product pending)
                    for i in range(k):  # the inner rows of the next product while the halo travels
                        tr.submit(i, "row_inner", self._period_index)
        self._tick("round")
        tr.gather(last)
        self._send_shards = False
        self.products += count * K
        self.round += count
        self.meter.rounds = self.round

    def apply_events(self, t_end: float) -> None:
        assert isinstance(self.algo, EventAlgorithm) and self._stream is not None
        block = self._stream.until(t_end, self.spec.max_events - self.n_events)
        self.n_events += len(block)
        if len(block) == 0:
            return
        sched = schedule_levels(block, self.ctx.n)
        bp = plan_block(sched, self.owner, len(self.shards))
        self.cross_events += bp.n_cross
        tr = self.transport
        plans: dict[int, Any] = {}  # each shard's plan of the block, sent once
        handles: dict[tuple[int, int], Any] = {}
        for c in bp.calls:
            plan = plans.get(c.shard)
            if plan is None:
                plan = plans[c.shard] = tr.share(bp.plans[c.shard])
            inputs = [handles[i] for i in c.inputs]
            handles[(c.shard, c.index)] = tr.submit(c.shard, "run_segment", self._period_index, plan, c.index, *inputs)
        self._tick("events")
        tr.wait(list(handles.values()))


def run_on_driver(spec: RunSpec, engine: str, progress: Callable[[float], None] | None = None) -> RunResult:
    """Run ``spec`` (synchronous rounds without a split) on the driver, as the local engine
    runs it; the result's message says so."""
    res = Simulation(spec).run(progress)
    note = run_on_driver_note(spec.algorithm, engine)
    res.message = f"{res.message} [{note}]" if res.message else note
    return res
