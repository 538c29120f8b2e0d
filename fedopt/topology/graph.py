"""The :class:`Topology`: a connected graph with per-edge gossip rates and link costs."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx
import numpy as np


@dataclass(frozen=True, eq=False)
class Topology:
    """A connected undirected graph on nodes ``0..n-1`` with per-edge attributes.

    Attributes
    ----------
    name : str
        Display name (e.g. ``"cycle"`` or the spec file's name).
    edges : (m, 2) int array
        Edge list with ``edges[e, 0] < edges[e, 1]``, sorted lexicographically.
    rates : (m,) float array or None
        Per-edge gossip rates ``λ_e``; ``None`` means "not set" (algorithms then
        pick their own, e.g. DADAO's uniform rates at its condition).
    latency : (m,) float array
        Link latency of each edge in seconds (link-cost model).
    bandwidth : (m,) float array
        Link bandwidth of each edge in bytes per second (link-cost model).
    """

    name: str
    n: int
    edges: np.ndarray
    rates: np.ndarray | None = None
    latency: np.ndarray | None = None
    bandwidth: np.ndarray | None = None
    params: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        e = np.asarray(self.edges, dtype=np.int64).reshape(-1, 2)
        e = np.sort(e, axis=1)
        if e.size and (e[:, 0] == e[:, 1]).any():
            raise ValueError(f"topology {self.name!r}: self-loops are not allowed")
        order = np.lexsort((e[:, 1], e[:, 0]))
        e = e[order]
        if e.size and (np.diff(e, axis=0) == 0).all(axis=1).any():
            raise ValueError(f"topology {self.name!r}: duplicate edges")
        if e.size and (e.min() < 0 or e.max() >= self.n):
            raise ValueError(f"topology {self.name!r}: edge endpoint outside 0..{self.n - 1}")
        object.__setattr__(self, "edges", e)
        for attr in ("rates", "latency", "bandwidth"):
            v = getattr(self, attr)
            if v is not None:
                v = np.asarray(v, dtype=np.float64)
                if v.shape != (e.shape[0],):
                    raise ValueError(f"topology {self.name!r}: {attr} must have one value per edge ({e.shape[0]})")
                object.__setattr__(self, attr, v[order])
        if self.n < 1:
            raise ValueError("a topology needs at least one node")
        if self.n > 1 and not nx.is_connected(self.graph):
            raise ValueError(f"topology {self.name!r} is not connected")

    @property
    def m(self) -> int:
        return int(self.edges.shape[0])

    @cached_property
    def graph(self) -> nx.Graph:
        g = nx.Graph()
        g.add_nodes_from(range(self.n))
        g.add_edges_from(map(tuple, self.edges.tolist()))
        return g

    @classmethod
    def from_networkx(cls, name: str, g: nx.Graph, **kw: object) -> "Topology":
        """Relabel ``g``'s nodes to ``0..n-1`` (sorted order) and read edge attributes
        ``rate``, ``latency``, ``bandwidth`` where every edge has them."""
        g = nx.convert_node_labels_to_integers(g, ordering="sorted")
        edges = np.array(list(g.edges()), dtype=np.int64).reshape(-1, 2)
        attrs: dict[str, np.ndarray | None] = {}
        for key, attr in (("rate", "rates"), ("latency", "latency"), ("bandwidth", "bandwidth")):
            vals = [d.get(key) for _, _, d in g.edges(data=True)]
            attrs[attr] = np.array(vals, dtype=np.float64) if vals and all(v is not None for v in vals) else None
        return cls(name=name, n=g.number_of_nodes(), edges=edges, **attrs, **kw)  # type: ignore[arg-type]

    def with_rates(self, rates: np.ndarray) -> "Topology":
        """A copy with per-edge gossip rates set (in this topology's edge order)."""
        return Topology(self.name, self.n, self.edges, np.asarray(rates, dtype=np.float64),
                        self.latency, self.bandwidth, dict(self.params))

    def laplacian(self, weights: np.ndarray | None = None) -> np.ndarray:
        """Dense weighted Laplacian ``Σ_e w_e (e_i − e_j)(e_i − e_j)ᵀ`` (unit weights by default)."""
        w = np.ones(self.m) if weights is None else np.asarray(weights, dtype=np.float64)
        L = np.zeros((self.n, self.n))
        i, j = self.edges[:, 0], self.edges[:, 1]
        np.add.at(L, (i, j), -w)
        np.add.at(L, (j, i), -w)
        np.add.at(L, (i, i), w)
        np.add.at(L, (j, j), w)
        return L

    def degrees(self) -> np.ndarray:
        return np.bincount(self.edges.ravel(), minlength=self.n)

    def weighted_degrees(self, weights: np.ndarray) -> np.ndarray:
        """``Σ_{e∋i} w_e`` for every node ``i`` (the diagonal of ``Λ(w)``)."""
        return np.bincount(self.edges.ravel(), weights=np.repeat(np.asarray(weights, dtype=np.float64), 2),
                           minlength=self.n)

    def incidence(self) -> np.ndarray:
        """Dense ``n × m`` signed incidence matrix ``B`` with ``Λ = B diag(λ) Bᵀ``."""
        B = np.zeros((self.n, self.m))
        B[self.edges[:, 0], np.arange(self.m)] = 1.0
        B[self.edges[:, 1], np.arange(self.m)] = -1.0
        return B
