"""The ``ray`` engine: a pool of actors, each hosting a shard of logical nodes as arrays.

How a run is spread (the driver is the process that calls :meth:`RayEngine.run`):

* **Event-based algorithms** — the driver owns the seeded event stream and
  the virtual clock (the same :class:`~fedopt.engines.base.Simulation` draws
  it as in the local engine), cuts each block into dependency levels and
  hands every shard the plan of its events (:mod:`fedopt.engines.ray.events`):
  runs of levels without cross-shard gossip go in one call per shard, cross-shard
  gossip is done in two phases with the peer messages passed between shards
  as object references. Nodes are placed with a graph partition that keeps
  edges inside shards (:mod:`fedopt.engines.ray.partition`).
* **Federated algorithms** — the driver runs ``configure`` on the server keys,
  puts the payload (and the server's arrays) in the object store once per round,
  each shard runs ``client_update`` for its selected clients, vectorized, and
  returns ``(Σ w_k u_k, Σ w_k)``; the driver sums the partial sums in shard order
  and runs ``aggregate`` on the server keys. The per-client keys (e.g. control
  variates) stay in the shards.
* **Other round-based algorithms** (DGD, gradient tracking, ...) — a round is
  one matrix step over all nodes, so the round runs on the driver-side state
  with the counted channel, as in the local engine (exact; no actors are used).

What lives where follows the algorithm's declared state layout
(:class:`~fedopt.algorithms.base.Layout`), never the arrays' shapes: the rows of
the per-node (event-based) or per-client (federated) keys live in the shards,
the server keys on the driver, and the shards get the server arrays read-only
(:class:`ShardSplit`). A step that breaks the split (``configure`` reading a
per-client key, ``client_update`` replacing a server array, a declaration the
engine cannot place) is an error that names the algorithm and the key.
The algorithm's per-run precomputations (:class:`~fedopt.algorithms.base.Prepared`)
are built once on the driver and shipped to the shards with the run.

Every shard counts into its own :class:`~fedopt.core.meter.Meter`; at record
points the driver sums them (with its own counts) into the row's meter and
takes the shards' state rows as a checkpoint. If an actor dies, the run
replaces it, rolls every shard and the driver back to the last record point
and replays from there: the trace equals an undisturbed run's. After
``max_restarts`` failed attempts the run ends with ``status="error"`` and the
reason.

Random draws inside handlers (minibatches with ``batch_size``, noise,
estimator directions) come from the per-node streams ``ctx.node_rng(name)``,
keyed by ``(seed, stream, node)`` with per-node counters that each shard
keeps for its own nodes (in its checkpoints too): 1, 2 or 3 shards give the
local engine's draws. Draws on the driver (event clocks, ``configure``'s
client sampling, ``init``) are the local engine's. A handler that draws from a
run-level stream ``ctx.rng[name]`` instead gets a per-shard stream keyed by
``(seed, stream, shard)``: such a run is valid but not draw-for-draw the local
engine's, and its message says which streams were drawn. A ``configure`` or
``aggregate`` that draws from per-node streams is an error on every engine (server
steps draw from the run-level streams).

GPU placement: ``num_gpus_per_actor`` (fractional allowed) reserves GPUs
through Ray; Ray sets ``CUDA_VISIBLE_DEVICES`` in the actor, so a torch-based
problem that puts its tensors on ``"cuda"`` runs its shard's oracles there
(numpy problems stay on the CPU).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
from ray.exceptions import GetTimeoutError, RayActorError

from fedopt.algorithms.base import (
    Algorithm,
    EventAlgorithm,
    FederatedAlgorithm,
    Layout,
    aggregate_step,
    configure_step,
    keys_of,
)
from fedopt.core.arrays import IntArray
from fedopt.core.levels import schedule_levels
from fedopt.core.meter import NODE_COUNTERS, Channel, Meter
from fedopt.core.trace import checkpoint_row
from fedopt.engines.base import Engine, RunResult, RunSpec, Simulation, divergence_message
from fedopt.engines.ray.cluster import join_cluster
from fedopt.engines.ray.events import plan_block
from fedopt.engines.ray.partition import contiguous_shards, cut_edges, graph_shards, owner_of
from fedopt.engines.ray.worker import ShardWorker, topology_for_period
from fedopt.topology.graph import Topology


class ActorLost(Exception):
    """An actor of the pool died (the run may recover from its last checkpoint)."""


def merge_meters(driver: Meter, shards: list[dict[str, Any]]) -> Meter:
    """The run's meter: the driver's counts plus every shard's (per-node counters add up
    node by node, per-edge counts pair by pair)."""
    d = driver.state_dict()
    eps = [s["epsilon"] for s in shards if s["epsilon"] is not None]
    for s in shards:
        for name in (*NODE_COUNTERS, "communications", "server_floats", "link_time"):
            d[name] = d[name] + s[name]  # type: ignore[operator]
    for name in ("edge_pairs", "edge_messages"):  # a pair counted by several shards adds up on loading
        d[name] = np.concatenate([d[name], *(s[name] for s in shards)])  # type: ignore[list-item]
    if d["epsilon"] is None and eps:
        d["epsilon"] = max(eps)
    out = Meter(n=driver.n, bytes_per_float=driver.bytes_per_float)
    out.load_state_dict(d)
    return out


def _node_shards(top: Topology, n: int, k: int, seed: int) -> list[IntArray]:
    return graph_shards(top.edges, n, k, seed=seed)


def _client_shards(top: Topology, n: int, k: int, seed: int) -> list[IntArray]:
    return contiguous_shards(n, k)


@dataclass(frozen=True)
class ShardSplit:
    """How one kind of algorithm is spread over the shards.

    ``rows``: the layout whose rows live in the shards (the other keys are server
    keys, kept on the driver and read-only in the shards); ``partition(top, n, k,
    seed)``: the shards' rows; ``iterates_in_shards``: the iterates at a record
    point are read in the shards (lazy per-node state) rather than on the driver.
    """

    kind: str
    rows: Layout
    partition: Callable[[Topology, int, int, int], list[IntArray]]
    iterates_in_shards: bool


#: Event-based algorithms: per-node rows, placed by a graph partition that keeps edges inside shards.
NODE_SPLIT = ShardSplit("event-based", Layout.NODE, _node_shards, True)
#: Federated algorithms: per-client rows in contiguous blocks of clients.
CLIENT_SPLIT = ShardSplit("federated", Layout.CLIENT, _client_shards, False)


def split_for(algo: Algorithm) -> ShardSplit | None:
    """The split of ``algo``'s kind; ``None`` for synchronous rounds that run on the driver."""
    if isinstance(algo, EventAlgorithm):
        return NODE_SPLIT
    if isinstance(algo, FederatedAlgorithm):
        return CLIENT_SPLIT
    return None


class ActorPool:
    """The engine's actors (created once, reused by every run, replaced when they die)."""

    def __init__(self, size: int, num_cpus: float, num_gpus: float) -> None:
        self._cls = ray.remote(ShardWorker).options(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=0)
        self.actors = [self._cls.remote() for _ in range(size)]

    def alive(self, k: int, timeout: float = 60.0) -> bool:
        try:
            ray.get(self.actors[k].ping.remote(), timeout=timeout)
            return True
        except (RayActorError, GetTimeoutError):
            return False

    def replace(self, k: int) -> None:
        try:
            ray.kill(self.actors[k])
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.actors[k] = self._cls.remote()

    def close(self) -> None:
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []


class RaySimulation(Simulation):
    """A :class:`Simulation` whose rounds and events run in the shards of an actor pool."""

    def __init__(self, spec: RunSpec, pool: ActorPool, hook: Callable[[str, int], None] | None = None) -> None:
        super().__init__(spec)
        split = split_for(self.algo)
        if split is None:
            raise TypeError(f"ray engine: algorithm {self.algo.name!r} runs its rounds on the driver "
                            "(a plain Simulation), not in shards")
        self.split = split
        self.pool = pool
        self.hook = hook
        self.notes: list[str] = []
        self.cut = 0
        self.rng_used: set[str] = set()
        self.restarts = 0
        self.cross_events = 0
        self._dispatches = 0
        self._shard_meters: list[dict[str, Any]] = []
        self._shard_rng: list[dict[str, Any]] = []
        self._ckpt: dict[str, Any] | None = None

    # ---- set-up -------------------------------------------------------------------------
    def start(self) -> None:
        super().start()
        split = self.split
        for key, kind in self.layout.items():
            if kind not in (split.rows, Layout.SERVER):
                raise ValueError(f"ray engine: algorithm {self.algo.name!r}: state key {key!r} is declared "
                                 f"{kind.value}; the ray engine places {split.rows.value} and server state "
                                 f"of {split.kind} algorithms")
        n = self.spec.problem.n
        k = min(len(self.pool.actors), n)
        top = self.ctx.topology
        self.shards = split.partition(top, n, k, self.spec.seed)
        self.owner = owner_of(self.shards, n)
        if split.rows is Layout.NODE:
            self.cut = cut_edges(top.edges, self.owner)
        self.actors = self.pool.actors[:k]
        self.row_keys = keys_of(self.layout, split.rows)
        assert self.prepared is not None
        self._spec_ref = ray.put(self.spec)
        self._prepared_ref = ray.put(self.prepared.prepared)
        ray.get([a.setup.remote(self._spec_ref, self._prepared_ref, i, s)
                 for i, (a, s) in enumerate(zip(self.actors, self.shards))])
        self._shard_meters = [Meter(n=n).state_dict() for _ in self.actors]

    def _heal(self) -> None:
        """Replace dead actors and bring every shard back to the last checkpoint."""
        ck = self._ckpt
        assert ck is not None
        for i in range(len(self.actors)):
            if not self.pool.alive(i):
                self.pool.replace(i)
                self.actors[i] = self.pool.actors[i]
                ray.get(self.actors[i].setup.remote(self._spec_ref, self._prepared_ref, i, self.shards[i]))
        state_ref = ray.put(ck["state"])
        ray.get([a.restore.remote(state_ref, ck["shard_meters"][i], ck["shard_rng"][i], ck["period_index"])
                 for i, a in enumerate(self.actors)])
        self._restore_driver(ck)

    def _get(self, refs: list[Any]) -> list[Any]:
        try:
            return ray.get(refs)
        except RayActorError as exc:
            raise ActorLost(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
        except ray.exceptions.RayTaskError as exc:
            # a failed input (a dead peer) surfaces as a task error: find out which
            if any(not self.pool.alive(i, timeout=10.0) for i in range(len(self.actors))):
                raise ActorLost(f"an actor died ({type(exc.cause).__name__})") from exc
            raise exc.as_instanceof_cause() from None

    def _tick(self, stage: str) -> None:
        self._dispatches += 1
        if self.hook is not None:
            self.hook(stage, self._dispatches)

    # ---- checkpoints ----------------------------------------------------------------------
    def _snapshot_driver(self) -> dict[str, Any]:
        keep = {id(self.spec.problem): self.spec.problem, id(self.algo): self.algo,
                id(self.spec.topology): self.spec.topology, id(self.ctx.topology): self.ctx.topology}
        mutable = copy.deepcopy({"stream": self._stream, "rng": self.rng, "meter": self.meter, "state": self.state}, keep)
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

    def record(self) -> dict[str, Any]:
        in_shards = self.split.iterates_in_shards
        keys = self.row_keys
        snaps = self._get([a.snapshot.remote(self.t, in_shards, keys) for a in self.actors])
        n = self.spec.problem.n
        state = dict(self.state)
        for k in keys:
            full = np.array(self.state[k])
            for s, snap in zip(self.shards, snaps):
                full[s] = snap["rows"][k]
            state[k] = full
        self.state = state
        if in_shards:
            X = np.empty((n, self.spec.problem.d))
            for s, snap in zip(self.shards, snaps):
                X[s] = snap["X"]
        else:
            X = self.algo.iterates(self.state, self.ctx, self.t)
        self._shard_meters = [snap["meter"] for snap in snaps]
        self._shard_rng = [snap["rng"] for snap in snaps]
        for snap in snaps:
            self.rng_used.update(snap["rng_used"])
        self.meter.sim_time = self.t
        merged = merge_meters(self.meter, self._shard_meters)
        row = checkpoint_row(self.spec.problem, X, merged, self.t, self.round, time.perf_counter() - self._wall0)
        row["events"] = self.n_events
        self.rows.append(row)
        self.merged_meter = merged
        self._ckpt = self._snapshot_driver()
        return row

    # ---- the parts that run in the shards --------------------------------------------------
    def apply_rounds(self, count: int) -> None:
        algo = self.algo
        assert isinstance(algo, FederatedAlgorithm)
        layout, ctx = self.layout, self.ctx
        server_keys = keys_of(layout, Layout.SERVER)
        for _ in range(count):
            r = self.round
            clients, payload = configure_step(algo, self.state, layout, ctx, r)
            bundle = ray.put({"payload": payload, "server": {k: self.state[k] for k in server_keys}})
            own = self.owner[clients]
            calls = [(i, clients[own == i]) for i in range(len(self.actors))]
            calls = [(i, c) for i, c in calls if len(c)] or [(0, clients)]
            refs = [self.actors[i].client_update.remote(bundle, c, r, self._period_index) for i, c in calls]
            self._tick("round")
            parts = self._get(refs)
            total = parts[0]["sum"]
            weight = parts[0]["weight"]
            for p in parts[1:]:
                total = total + p["sum"]
                weight += p["weight"]
            new = aggregate_step(algo, self.state, layout, ctx, total, weight, r)
            self.state = {**new, **{k: self.state[k] for k in self.row_keys}}
            self.round += 1
            self.meter.rounds = self.round

    def apply_events(self, t_end: float) -> None:
        assert isinstance(self.algo, EventAlgorithm) and self._stream is not None
        block = self._stream.until(t_end, self.spec.max_events - self.n_events)
        self.n_events += len(block)
        if len(block) == 0:
            return
        sched = schedule_levels(block, self.ctx.n)
        calls, n_cross = plan_block(sched, self.owner, len(self.actors))
        self.cross_events += n_cross
        refs: dict[tuple[int, int], Any] = {}
        for c in calls:
            inputs = [refs[i] for i in c.inputs]
            refs[(c.shard, c.index)] = self.actors[c.shard].run_segment.remote(self._period_index, c.plan, *inputs)
        self._tick("events")
        self._get(list(refs.values()))

    # ---- driver loop with recovery -------------------------------------------------------------
    def run(self, progress: Callable[[float], None] | None = None, max_restarts: int = 3) -> RunResult:
        self.start()
        row = self.record()
        status, message = "ok", ""
        while not self.spec.stop.reached(row):
            try:
                self.step_checkpoint()
                row = self.record()
            except ActorLost as exc:
                self.restarts += 1
                if self.restarts > max_restarts:
                    status = "error"
                    message = (f"ActorLost: {exc}; gave up after {max_restarts} restart(s) "
                               f"at time {self.t:g} (last record point)")
                    break
                try:
                    self._heal()
                except Exception as heal_exc:  # noqa: BLE001 - the run cannot go on
                    status, message = "error", f"ActorLost: {exc}; recovery failed: {type(heal_exc).__name__}: {heal_exc}"
                    break
                row = self.rows[-1]
                continue
            if progress is not None:
                progress(self.t)
            diverged = divergence_message(row, self.rows[0])
            if diverged:
                status, message = "diverged", diverged
                break
            if self.n_events >= self.spec.max_events:
                break
        notes = list(self.notes)
        if self.restarts:
            notes.append(f"recovered from {self.restarts} lost actor(s)")
        if self.rng_used:
            notes.append(f"handlers drew from run-level random streams {sorted(self.rng_used)} in separate shards "
                         "(ctx.node_rng gives draws keyed by node): not draw-for-draw equal to the local engine")
        note = "; ".join(notes)
        message = f"{message} [{note}]" if message and note else (message or note)
        meter = getattr(self, "merged_meter", self.meter)
        return RunResult(self.spec.run_id, self.rows, status, message, self.state, meter)


class RayEngine(Engine):
    """Runs specs on a pool of Ray actors, each hosting a shard of nodes.

    Parameters
    ----------
    num_actors : int, optional
        Actors in the pool (default: as many as the cluster's CPUs / GPUs allow
        at ``num_cpus_per_actor`` / ``num_gpus_per_actor`` each). A run uses at
        most one actor per node.
    num_cpus_per_actor, num_gpus_per_actor : float
        Ray resources each actor reserves (fractions allowed).
    address : str, optional
        Ray cluster to join (``"auto"``, ``"host:port"``, ``"ray://host:port"``; a
        token-authenticated cluster gets its token as in
        :func:`~fedopt.engines.ray.cluster.join_cluster`); default: the
        running Ray instance, or a new private local one (dashboard off).
    max_restarts : int
        Lost actors a run may recover from before it is marked ``status="error"``.
    fault_hook : callable, optional
        ``hook(stage, k)`` called after the ``k``-th dispatch (tests kill actors here).
    """

    name = "ray"

    def __init__(self, num_actors: int | None = None, num_cpus_per_actor: float = 1.0,
                 num_gpus_per_actor: float = 0.0, address: str | None = None, max_restarts: int = 3,
                 fault_hook: Callable[[str, int], None] | None = None) -> None:
        if num_actors is not None and num_actors < 1:
            raise ValueError(f"ray engine: num_actors must be at least 1, got {num_actors}")
        if num_cpus_per_actor < 0 or num_gpus_per_actor < 0:
            raise ValueError("ray engine: num_cpus_per_actor and num_gpus_per_actor must be non-negative")
        self.num_actors = num_actors
        self.num_cpus_per_actor = float(num_cpus_per_actor)
        self.num_gpus_per_actor = float(num_gpus_per_actor)
        self.address = address
        self.max_restarts = int(max_restarts)
        self.fault_hook = fault_hook
        self._pool: ActorPool | None = None
        self._owns_ray = False

    def _ensure_pool(self) -> ActorPool:
        if self._pool is None:
            if not ray.is_initialized():
                if self.address is None:
                    ray.init(include_dashboard=False, dashboard_host="127.0.0.1", log_to_driver=True)
                else:  # with the token a token-authenticated cluster asks for
                    join_cluster(self.address, key="engine.address", log_to_driver=True)
                self._owns_ray = True
            self._pool = ActorPool(self._pool_size(), self.num_cpus_per_actor, self.num_gpus_per_actor)
        return self._pool

    def _pool_size(self) -> int:
        if self.num_actors is not None:
            return self.num_actors
        res = ray.cluster_resources()
        sizes = [int(res.get("CPU", 1) // self.num_cpus_per_actor) if self.num_cpus_per_actor > 0 else 64]
        if self.num_gpus_per_actor > 0:
            sizes.append(int(res.get("GPU", 0) // self.num_gpus_per_actor))
        return max(1, min(sizes))

    @property
    def actors(self) -> list[Any]:
        """The pool's actor handles (created on first use)."""
        return self._ensure_pool().actors

    def _run(self, spec: RunSpec, progress: Callable[[float], None] | None) -> RunResult:
        if split_for(spec.algorithm) is None:  # synchronous rounds: one matrix step on the driver
            return Simulation(spec).run(progress)
        return RaySimulation(spec, self._ensure_pool(), self.fault_hook).run(progress, self.max_restarts)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False


__all__ = ["CLIENT_SPLIT", "NODE_SPLIT", "RayEngine", "RaySimulation", "ShardSplit", "merge_meters", "split_for",
           "topology_for_period"]
