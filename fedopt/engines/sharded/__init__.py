"""The engine-neutral sharded core of the distributed engines (it imports no transport).

* :mod:`~fedopt.engines.sharded.partition` — graph partitions that keep edges inside shards;
* :mod:`~fedopt.engines.sharded.plan` — event blocks cut into per-shard calls with
  explicit cross-shard dependencies;
* :mod:`~fedopt.engines.sharded.split` — what lives in the shards for each kind of algorithm,
  from its declared state layout;
* :mod:`~fedopt.engines.sharded.worker` — the shard worker (state rows, meter, streams);
* :mod:`~fedopt.engines.sharded.meters` — the shards' meters merged into the run's;
* :mod:`~fedopt.engines.sharded.transport` — what the core needs from a transport;
* :mod:`~fedopt.engines.sharded.simulation` — :class:`ShardedSimulation`, the driver of a
  sharded run (the run loop itself is :meth:`fedopt.engines.base.Simulation.run`);
* :mod:`~fedopt.engines.sharded.inprocess` — the ``sharded`` engine: shards in this process.

A transport (Ray actors in :mod:`fedopt.engines.ray`) only places workers and moves
arguments and results.
"""

from __future__ import annotations

from fedopt.engines.base import ShardLost
from fedopt.engines.sharded.meters import merge_meters
from fedopt.engines.sharded.simulation import ShardedSimulation
from fedopt.engines.sharded.split import CLIENT_SPLIT, NODE_SPLIT, ShardSplit, split_for
from fedopt.engines.sharded.transport import Transport
from fedopt.engines.sharded.worker import ShardWorker

__all__ = ["CLIENT_SPLIT", "NODE_SPLIT", "ShardLost", "ShardSplit", "ShardWorker", "ShardedSimulation",
           "Transport", "merge_meters", "split_for"]
