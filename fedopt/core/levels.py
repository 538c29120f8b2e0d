"""Exact level batching of an event stream.

Events that touch disjoint node sets commute, so only the per-node order of
events matters. The *level* of an event is one more than the largest level of
any earlier event sharing a node with it (an ASAP schedule of the dependency
DAG). Events of one level share no node and every event comes after all the
events it depends on, so applying the levels in order, each as one vectorized
call, gives the same iterates as the one-event-at-a-time simulation.

Within a level the events are ordered compute-first then gossip, so a level is
``order[start:mid]`` (compute events) and ``order[mid:end]`` (gossip events).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from fedopt.core.clocks import EventBlock


@numba.njit(cache=True)
def _levels(node_a: np.ndarray, node_b: np.ndarray, n: int) -> np.ndarray:  # pragma: no cover - jitted
    last = np.zeros(n, dtype=np.int64)
    level = np.empty(node_a.shape[0], dtype=np.int64)
    for k in range(node_a.shape[0]):
        a = node_a[k]
        b = node_b[k]
        lv = last[a]
        if b >= 0 and last[b] > lv:
            lv = last[b]
        lv += 1
        last[a] = lv
        if b >= 0:
            last[b] = lv
        level[k] = lv - 1
    return level


@numba.njit(cache=True)
def _schedule(level: np.ndarray, node_b: np.ndarray, n_levels: int):  # pragma: no cover - jitted
    # counting sort by (level, is_gossip), stable within each bucket
    m = level.shape[0]
    counts = np.zeros(2 * n_levels + 1, dtype=np.int64)
    for k in range(m):
        counts[2 * level[k] + (1 if node_b[k] >= 0 else 0) + 1] += 1
    for i in range(1, counts.shape[0]):
        counts[i] += counts[i - 1]
    bounds = counts.copy()
    order = np.empty(m, dtype=np.int64)
    for k in range(m):
        key = 2 * level[k] + (1 if node_b[k] >= 0 else 0)
        order[counts[key]] = k
        counts[key] += 1
    return order, bounds


@dataclass(frozen=True)
class LevelSchedule:
    """Events of a block reordered by level.

    ``events`` is the block in schedule order; level ``l`` is compute events
    ``[bounds[2l], bounds[2l+1])`` and gossip events ``[bounds[2l+1], bounds[2l+2])``.
    """

    events: EventBlock
    bounds: np.ndarray

    @property
    def n_levels(self) -> int:
        return (self.bounds.shape[0] - 1) // 2


def assign_levels(block: EventBlock, n: int) -> np.ndarray:
    """Level of each event (0-based)."""
    if len(block) == 0:
        return np.zeros(0, dtype=np.int64)
    return _levels(block.node_a, block.node_b, n)


def schedule_levels(block: EventBlock, n: int) -> LevelSchedule:
    """Cut a time-ordered block into dependency levels (see module docstring)."""
    if len(block) == 0:
        return LevelSchedule(block, np.zeros(1, dtype=np.int64))
    level = _levels(block.node_a, block.node_b, n)
    n_levels = int(level.max()) + 1
    order, bounds = _schedule(level, block.node_b, n_levels)
    return LevelSchedule(block.take(order), bounds)
