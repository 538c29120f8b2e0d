"""Shards of logical nodes: graph partitions that keep edges inside shards.

Gossip on an edge whose endpoints live in two shards costs a synchronization
between those shards (see :mod:`fedopt.engines.sharded.plan`), so the engine
places nodes with a balanced partition that cuts few edges: recursive
bisection, each cut seeded by a breadth-first order (contiguous regions of the
graph) and refined with Kernighan–Lin swaps (Kernighan & Lin, "An efficient
heuristic procedure for partitioning graphs", Bell Syst. Tech. J. 1970), which
keep the part sizes. Clients of a federated algorithm share no edge and are
split into contiguous, balanced blocks. The partition only changes speed,
never results.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from fedopt.core.arrays import IntArray

#: Above this many nodes the Kernighan–Lin refinement (quadratic per pass) is skipped.
KL_MAX_NODES = 4000


def contiguous_shards(n: int, parts: int) -> list[IntArray]:
    """``parts`` blocks of consecutive node ids whose sizes differ by at most one."""
    parts = max(1, min(parts, n))
    return [np.asarray(b, dtype=np.int64) for b in np.array_split(np.arange(n), parts)]


def _bfs_order(g: nx.Graph, nodes: list[int]) -> list[int]:
    sub = g.subgraph(nodes)
    order: list[int] = []
    seen: set[int] = set()
    for start in sorted(nodes, key=lambda v: (sub.degree(v), v)):
        if start in seen:
            continue
        for v in nx.bfs_tree(sub, start, sort_neighbors=sorted):
            if v not in seen:
                seen.add(v)
                order.append(v)
    return order


def _bisect(g: nx.Graph, nodes: list[int], left_size: int, seed: int) -> tuple[list[int], list[int]]:
    order = _bfs_order(g, nodes)
    a, b = order[:left_size], order[left_size:]
    if len(nodes) <= KL_MAX_NODES and a and b:
        sub = g.subgraph(nodes)
        a_set, b_set = nx.community.kernighan_lin_bisection(sub, partition=(set(a), set(b)), max_iter=10, seed=seed)
        if len(a_set) != left_size:  # the refinement keeps the two sizes, not their order
            a_set, b_set = b_set, a_set
        if len(a_set) == left_size:
            a, b = sorted(a_set), sorted(b_set)
    return sorted(a), sorted(b)


def graph_shards(edges: IntArray, n: int, parts: int, seed: int = 0) -> list[IntArray]:
    """A balanced ``parts``-way partition of nodes ``0..n-1`` that cuts few edges.

    Recursive bisection with target sizes proportional to the number of parts
    on each side; falls back to :func:`contiguous_shards` for a graph without edges.
    """
    parts = max(1, min(parts, n))
    if parts == 1:
        return [np.arange(n, dtype=np.int64)]
    if np.size(edges) == 0:
        return contiguous_shards(n, parts)
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(map(tuple, np.asarray(edges).reshape(-1, 2).tolist()))
    sizes = [len(b) for b in np.array_split(np.arange(n), parts)]

    def split(nodes: list[int], k0: int, k1: int) -> list[list[int]]:
        if k1 - k0 == 1:
            return [nodes]
        km = (k0 + k1) // 2
        a, b = _bisect(g, nodes, sum(sizes[k0:km]), seed + k0)
        return split(a, k0, km) + split(b, km, k1)

    return [np.asarray(p, dtype=np.int64) for p in split(list(range(n)), 0, parts)]


def owner_of(shards: list[IntArray], n: int) -> IntArray:
    """``owner[v]`` = index of the shard holding node ``v``."""
    owner = np.full(n, -1, dtype=np.int64)
    for k, s in enumerate(shards):
        owner[s] = k
    if (owner < 0).any():
        raise ValueError("shards do not cover every node")
    return owner


def cut_edges(edges: IntArray, owner: IntArray) -> int:
    """How many of ``edges`` join nodes of two different shards."""
    e = np.asarray(edges).reshape(-1, 2)
    return int((owner[e[:, 0]] != owner[e[:, 1]]).sum())
