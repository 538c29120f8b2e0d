"""How each kind of algorithm is spread over shards, from its declared state layout."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fedopt.algorithms.base import Algorithm, EventAlgorithm, FederatedAlgorithm, Layout, RowRoundAlgorithm
from fedopt.core.arrays import IntArray
from fedopt.engines.sharded.partition import contiguous_shards, graph_shards
from fedopt.topology.graph import Topology


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
#: Synchronous rounds written in rows (:class:`~fedopt.algorithms.base.RowRoundAlgorithm`): per-node
#: rows placed by the graph partition, graph products by halo exchange (:mod:`fedopt.engines.sharded.halo`).
ROW_SPLIT = ShardSplit("row-round", Layout.NODE, _node_shards, False)


def split_for(algo: Algorithm) -> ShardSplit | None:
    """The split of ``algo``'s kind; ``None`` for synchronous rounds that run on the driver
    (a round algorithm without :meth:`~fedopt.algorithms.base.RowRoundAlgorithm.round_rows`)."""
    if isinstance(algo, EventAlgorithm):
        return NODE_SPLIT
    if isinstance(algo, FederatedAlgorithm):
        return CLIENT_SPLIT
    if isinstance(algo, RowRoundAlgorithm):
        return ROW_SPLIT
    return None


def run_on_driver_note(algo: Algorithm, engine: str) -> str:
    """What a run's message says when ``engine`` runs ``algo``'s rounds on the driver."""
    return (f"{engine} engine: the synchronous rounds of {algo.name!r} ran on the driver, not in shards "
            "(it has no round_rows)")
