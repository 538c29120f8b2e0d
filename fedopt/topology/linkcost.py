"""The link-cost model: how long a message takes on an edge.

A message of ``b`` bytes on an edge with latency ``ℓ`` (seconds) and bandwidth
``β`` (bytes per second) takes ``ℓ + b / β`` seconds. This one formula
(:func:`fedopt.core.meter.message_seconds`, re-exported here) is used by

* the meter's :class:`~fedopt.core.meter.Channel`, which sums it over every message
  into a run's ``link_time``;
* the gossip-rate problems of :mod:`fedopt.topology.rates`, as the edge cost ``c_e`` of
  one gossip exchange (two messages, one each way, as the channel counts them), so that
  ``Σ_e c_e λ_e`` is the expected link time per unit of simulated time.
"""

from __future__ import annotations

import numpy as np

from fedopt.core.meter import message_seconds
from fedopt.topology.graph import Topology

#: Default message size of the rate problems' edge costs (bytes): 125k float64 numbers.
DEFAULT_MESSAGE_BYTES = 1.0e6


def has_link_costs(top: Topology) -> bool:
    """Whether the topology carries latency and bandwidth for every edge."""
    return top.latency is not None and top.bandwidth is not None


def edge_costs(top: Topology, message_bytes: float = DEFAULT_MESSAGE_BYTES, messages_per_event: int = 2) -> np.ndarray:
    """Cost ``c_e`` of one gossip exchange on each edge, in seconds.

    ``messages_per_event`` messages of ``message_bytes`` bytes each (a symmetric gossip
    exchange sends one each way). A topology without latency/bandwidth costs 1 per edge.
    """
    if not has_link_costs(top):
        return np.ones(top.m)
    if message_bytes < 0:
        raise ValueError(f"message_bytes must be non-negative, got {message_bytes}")
    return messages_per_event * message_seconds(top.latency, top.bandwidth, message_bytes)  # type: ignore[arg-type]


__all__ = ["DEFAULT_MESSAGE_BYTES", "edge_costs", "has_link_costs", "message_seconds"]
