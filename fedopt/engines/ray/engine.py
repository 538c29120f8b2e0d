"""The ``ray`` engine: the sharded core (:mod:`fedopt.engines.sharded`) over Ray actors.

Everything about how a run is spread over shards — partition, event plans,
cross-shard gossip, federated rounds, meter merge, checkpoints and the rollback
after a lost shard — is the engine-neutral core's
(:class:`~fedopt.engines.sharded.simulation.ShardedSimulation`). This module only
talks to Ray: a pool of actors that host :class:`~fedopt.engines.sharded.worker.ShardWorker` s
(created once, reused by every run, replaced when they die), the object store for
arguments shared by many calls and for peer messages passed from actor to actor
(:class:`RayTransport`), placement (``num_cpus_per_actor`` / ``num_gpus_per_actor``),
and joining a cluster (:mod:`fedopt.engines.ray.cluster`).

If an actor dies, the transport raises :class:`ActorLost` (a
:class:`~fedopt.engines.base.ShardLost`); the run loop asks it to replace the
actor, rolls every shard and the driver back to the last record point and replays
from there: the trace equals an undisturbed run's. After ``max_restarts`` failed
attempts the run ends with ``status="error"`` and the reason.

GPU placement: ``num_gpus_per_actor`` (fractional allowed) reserves GPUs
through Ray; Ray sets ``CUDA_VISIBLE_DEVICES`` in the actor, and the actor tells
its worker at set-up which device it got (:func:`actor_device`: ``"cuda"`` or
``"cpu"``). The worker builds its shard's problem there: a torch problem
(:class:`~fedopt.problems.torch_model.TorchModelProblem` with ``device: auto``) puts
the shard's nodes' data and its module on the actor's GPU and runs the shard's
oracles there (an explicit ``device: cuda`` on an actor given no GPU, or ``cpu`` on
one given a GPU, is an error); numpy problems stay on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from fedopt.algorithms.base import Prepared
from fedopt.core.arrays import IntArray
from fedopt.engines.base import Engine, RunResult, RunSpec, ShardLost
from fedopt.engines.ray.cluster import join_cluster
from fedopt.engines.sharded.simulation import ShardedSimulation, run_on_driver
from fedopt.engines.sharded.split import split_for
from fedopt.engines.sharded.transport import Transport
from fedopt.engines.sharded.worker import ShardWorker, gpu_device


class ActorLost(ShardLost):
    """An actor of the pool died (the run may recover from its last checkpoint)."""


def actor_device() -> str:
    """The device of a worker in this actor: ``"cuda"`` when Ray gave the actor a GPU,
    ``"cpu"`` when it gave none (or outside Ray); a GPU that torch cannot use is an error
    (see :func:`~fedopt.engines.sharded.worker.gpu_device`)."""
    gpus = ray.get_gpu_ids() if ray.is_initialized() else []
    return gpu_device(gpus, "ray engine: Ray", "set num_gpus_per_actor: 0")


class RayShardWorker(ShardWorker):
    """A :class:`ShardWorker` in a Ray actor: set up on the device Ray gave the actor."""

    def setup(self, spec: Any, prepared: tuple[Prepared, ...], shard: int, nodes: IntArray,
              device: str | None = None) -> int:
        return super().setup(spec, prepared, shard, nodes, actor_device() if device is None else device)


class ActorPool:
    """The engine's actors (created once, reused by every run, replaced when they die)."""

    def __init__(self, size: int, num_cpus: float, num_gpus: float) -> None:
        self._cls = ray.remote(RayShardWorker).options(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=0)
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


class RayTransport(Transport):
    """The shards of a run in the actors of ``pool``: calls are actor method calls, handles
    are object references (Ray feeds a call's referenced inputs to it from other actors)."""

    engine = "ray"
    shard_word = "actor"

    def __init__(self, pool: ActorPool) -> None:
        self.pool = pool
        self.actors: list[Any] = []
        self.shards: list[IntArray] = []
        self._spec_ref: Any = None
        self._prepared_ref: Any = None

    @property
    def size(self) -> int:
        return len(self.pool.actors)

    def open(self, spec: RunSpec, prepared: tuple[Prepared, ...], shards: list[IntArray]) -> None:
        self.actors = self.pool.actors[:len(shards)]
        self.shards = shards
        self._spec_ref = ray.put(spec)
        self._prepared_ref = ray.put(prepared)
        self.gather([a.setup.remote(self._spec_ref, self._prepared_ref, i, s)
                     for i, (a, s) in enumerate(zip(self.actors, shards))])

    def share(self, obj: Any) -> Any:
        return ray.put(obj)

    def submit(self, shard: int, method: str, *args: Any) -> Any:
        return getattr(self.actors[shard], method).remote(*args)

    def submit_parts(self, shard: int, method: str, parts: int, *args: Any) -> list[Any]:
        if parts < 2:
            raise ValueError(f"ray transport: submit_parts needs at least 2 parts, got {parts}")
        return list(getattr(self.actors[shard], method).options(num_returns=parts).remote(*args))

    def gather(self, handles: list[Any]) -> list[Any]:
        try:
            return ray.get(handles)
        except RayActorError as exc:
            raise ActorLost(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
        except ray.exceptions.RayTaskError as exc:
            # a failed input (a dead peer) surfaces as a task error: find out which
            if any(not self.pool.alive(i, timeout=10.0) for i in range(len(self.actors))):
                raise ActorLost(f"an actor died ({type(exc.cause).__name__})") from exc
            raise exc.as_instanceof_cause() from None

    def heal(self) -> None:
        for i in range(len(self.actors)):
            if not self.pool.alive(i):
                self.pool.replace(i)
                self.actors[i] = self.pool.actors[i]
                ray.get(self.actors[i].setup.remote(self._spec_ref, self._prepared_ref, i, self.shards[i]))


class RaySimulation(ShardedSimulation):
    """A :class:`ShardedSimulation` whose shards live in the actors of ``pool``."""

    def __init__(self, spec: RunSpec, pool: ActorPool, hook: Callable[[str, int], None] | None = None,
                 max_restarts: int = 3) -> None:
        super().__init__(spec, RayTransport(pool), hook, max_restarts)
        self.pool = pool


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
        if split_for(spec.algorithm) is None:  # synchronous rounds without round_rows: on the driver
            return run_on_driver(spec, self.name, progress)
        return RaySimulation(spec, self._ensure_pool(), self.fault_hook, self.max_restarts).run(progress)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False


__all__ = ["ActorLost", "ActorPool", "RayEngine", "RaySimulation", "RayShardWorker", "RayTransport", "actor_device"]
