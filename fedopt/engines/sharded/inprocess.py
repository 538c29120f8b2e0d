"""The ``sharded`` engine: the sharded core over an in-process transport.

Shards are plain :class:`~fedopt.engines.sharded.worker.ShardWorker` objects in the
driver's process and calls run at once, in submission order. Every argument and
result is copied through :mod:`pickle` on its way, as a transport between processes
would send it (a shared object once per shard), so a shard shares no array with the
driver or another shard. It runs
exactly what a distributed transport runs (partition, event plans, cross-shard
gossip, meter merge, checkpoints), without starting anything: a fast way to check
sharding, and the smallest example of a :class:`~fedopt.engines.sharded.transport.Transport`.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

from fedopt.algorithms.base import Prepared
from fedopt.core.arrays import IntArray
from fedopt.engines.base import Engine, RunResult, RunSpec, register_engine
from fedopt.engines.sharded.simulation import ShardedSimulation, run_on_driver
from fedopt.engines.sharded.split import split_for
from fedopt.engines.sharded.transport import Transport
from fedopt.engines.sharded.worker import ShardWorker


def _sent(obj: Any) -> Any:
    """``obj`` as the receiving end of a transport gets it (a deep copy through pickle)."""
    return pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


class _Handle:
    """A value held for later calls (a shared object, or a call's output)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Shared:
    """An object shared by many calls: each shard gets its own copy once, with its first
    call that takes it (as a transport between processes sends it once per process)."""

    __slots__ = ("copies", "value")

    def __init__(self, value: Any) -> None:
        self.value = value
        self.copies: dict[int, Any] = {}

    def for_shard(self, shard: int) -> Any:
        if shard not in self.copies:
            self.copies[shard] = _sent(self.value)
        return self.copies[shard]


class InProcessTransport(Transport):
    """``size`` shard workers in this process (see the module docstring)."""

    engine = "sharded"
    #: Calls run at once, so nothing overlaps here; the core still splits graph products into
    #: inner and boundary rows as for MPI, which the equivalence tests check bit for bit.
    overlaps = True

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"sharded engine: num_shards must be at least 1, got {size}")
        self._size = int(size)
        self.workers: list[ShardWorker] = []

    @property
    def size(self) -> int:
        return self._size

    def open(self, spec: RunSpec, prepared: tuple[Prepared, ...], shards: list[IntArray]) -> None:
        self.workers = [ShardWorker() for _ in shards]
        for i, (w, nodes) in enumerate(zip(self.workers, shards)):
            w.setup(_sent(spec), _sent(prepared), i, _sent(nodes))

    def share(self, obj: Any) -> _Shared:
        return _Shared(_sent(obj))

    def submit(self, shard: int, method: str, *args: Any) -> _Handle:
        given = [a.for_shard(shard) if isinstance(a, _Shared) else _sent(a.value) if isinstance(a, _Handle)
                 else _sent(a) for a in args]
        return _Handle(_sent(getattr(self.workers[shard], method)(*given)))

    def submit_parts(self, shard: int, method: str, parts: int, *args: Any) -> list[_Handle]:
        out = self.submit(shard, method, *args).value
        if len(out) != parts:
            raise ValueError(f"{method} returned {len(out)} parts, {parts} expected")
        return [_Handle(v) for v in out]

    def gather(self, handles: list[Any]) -> list[Any]:
        return [h.value for h in handles]

    def heal(self) -> None:
        """Nothing to do: a worker in this process is never lost."""


@register_engine("sharded")
class ShardedEngine(Engine):
    """Runs specs on the sharded core with ``num_shards`` shards in this process.

    Parameters
    ----------
    num_shards : int
        Shards of nodes (or clients); a run uses at most one per node. A synchronous
        round algorithm without ``round_rows`` runs on the driver (its message says so).
    """

    name = "sharded"

    def __init__(self, num_shards: int = 2) -> None:
        if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
            raise ValueError(f"sharded engine: num_shards must be an integer of at least 1, got {num_shards!r}")
        self.num_shards = num_shards

    def _run(self, spec: RunSpec, progress: Callable[[float], None] | None) -> RunResult:
        if split_for(spec.algorithm) is None:  # synchronous rounds without round_rows: on the driver
            return run_on_driver(spec, self.name, progress)
        return ShardedSimulation(spec, InProcessTransport(self.num_shards)).run(progress)
