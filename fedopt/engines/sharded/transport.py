"""What the sharded core needs from a transport (Ray actors, MPI ranks, the driver's own process).

A transport places :class:`~fedopt.engines.sharded.worker.ShardWorker` s somewhere,
runs their methods and moves arguments and results; the core
(:class:`~fedopt.engines.sharded.simulation.ShardedSimulation`) decides what runs where
and when, records and stops. A call's arguments may be *handles*: of an object shared
with many calls (:meth:`Transport.share`, sent once) or of the output of an earlier
call on another shard (:meth:`Transport.submit`): the transport delivers that output
to the call before it runs, so cross-shard messages need not pass through the driver.
Checkpoints are the workers' ``snapshot`` / ``restore`` calls, kept by the core; a
transport that loses a shard raises :class:`~fedopt.engines.base.ShardLost` from
:meth:`Transport.gather` and sets up a replacement in :meth:`Transport.heal`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from fedopt.algorithms.base import Prepared
from fedopt.core.arrays import IntArray
from fedopt.engines.base import RunSpec, ShardLost

__all__ = ["ShardLost", "Transport"]


class Transport(ABC):
    """Places shard workers and runs their methods (see the module docstring).

    ``engine``: the engine's name and ``shard_word``: what holds a shard (``"actor"``,
    ``"rank"``), for messages; ``size``: how many shards it can hold (a run uses at most
    one per node); ``overlaps``: see the attribute.
    """

    engine: str = ""
    shard_word: str = "shard"
    #: Whether a worker runs its next queued call while the inputs of a later one travel
    #: (then the core has every shard multiply the rows of a graph product that need no
    #: halo row in a call of its own, before the call that receives the halo).
    overlaps: bool = False

    @property
    @abstractmethod
    def size(self) -> int:
        """How many shards this transport can hold."""

    @abstractmethod
    def open(self, spec: RunSpec, prepared: tuple[Prepared, ...], shards: list[IntArray]) -> None:
        """Set up one worker per entry of ``shards`` (its node or client rows) for the run
        ``spec``, with the driver's per-run ``prepared`` objects and the worker's device."""

    @abstractmethod
    def share(self, obj: Any) -> Any:
        """A handle of ``obj`` that any number of calls may take as an argument (sent once)."""

    @abstractmethod
    def submit(self, shard: int, method: str, *args: Any) -> Any:
        """Start ``method(*args)`` on worker ``shard`` and return a handle of its output.

        ``args`` may hold handles from :meth:`share` and :meth:`submit` (at the top level);
        the worker gets their values. Calls on one worker run in submission order."""

    @abstractmethod
    def submit_parts(self, shard: int, method: str, parts: int, *args: Any) -> list[Any]:
        """Like :meth:`submit` for a ``method`` whose output is a list of ``parts`` values
        (``parts >= 2``): one handle per value, so that each can go to another call alone
        (e.g. the rows a shard sends to each other shard)."""

    @abstractmethod
    def gather(self, handles: list[Any]) -> list[Any]:
        """The outputs of the calls ``handles``, in that order; a worker's error is raised as
        is, and a lost worker as :class:`ShardLost`."""

    def wait(self, handles: list[Any]) -> None:
        """Return once the calls ``handles`` have run (their outputs are not needed), raising
        as :meth:`gather` does. This default gathers them; a transport that can tell a call
        ran without sending its output back (MPI) overrides it."""
        self.gather(handles)

    def reduce_sum(self, handles: list[Any]) -> dict[str, Any]:
        """The sum of the outputs of the calls ``handles``: dicts with the same keys, whose
        values (arrays, numbers) add key by key. This default gathers them and adds them in
        the order of ``handles``; a transport with a reduction of its own (MPI) overrides it
        (the sum may then be taken in another order)."""
        parts = self.gather(handles)
        total = dict(parts[0])
        for part in parts[1:]:
            for key in total:
                total[key] = total[key] + part[key]
        return total

    @abstractmethod
    def heal(self) -> None:
        """Replace every lost worker with a fresh one set up as in :meth:`open` (the core then
        restores every worker to its last checkpoint)."""
