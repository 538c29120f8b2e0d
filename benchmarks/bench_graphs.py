"""Graphs shared by the benchmark scripts."""

from __future__ import annotations

import networkx as nx
import numpy as np

from fedopt.topology.graph import Topology


def rgg(n: int, seed: int = 1) -> Topology:
    """A connected random geometric graph of ``n`` nodes, mean degree about 13 (the radius
    grows by 5 % until the graph is connected)."""
    radius = np.sqrt(13.0 / (np.pi * n))
    while True:
        g = nx.random_geometric_graph(n, radius, seed=seed)
        if nx.is_connected(g):
            return Topology.from_networkx("random_geometric", g)
        radius *= 1.05
