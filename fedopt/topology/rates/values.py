"""Exact values of the rate problems (recomputed from the rates, never the solver's), input
checks, and the feasible rescalings and uniform rates each problem compares against."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import scipy.linalg as sla
import scipy.sparse.linalg as spla

from fedopt.topology import spectral
from fedopt.topology.graph import Topology
from fedopt.topology.rates.linalg import WeightedLaplacian

#: Rates below this fraction of the mean rate are raised to it (DADAO needs every λ_e > 0).
MIN_RATE_FRACTION = 1e-6


def as_topology(top: Topology | nx.Graph) -> Topology:
    """``top`` as a :class:`Topology`; raises for a disconnected graph."""
    if isinstance(top, nx.Graph):
        if top.number_of_nodes() < 2 or not nx.is_connected(top):
            raise ValueError("the graph is disconnected (or has fewer than 2 nodes): gossip rates need a connected graph")
        return Topology.from_networkx("graph", top)
    if top.n < 2 or top.m == 0 or not nx.is_connected(top.graph):
        raise ValueError(f"topology {top.name!r} is disconnected (or has fewer than 2 nodes): gossip rates need a connected graph")
    return top


def edge_costs_or_ones(top: Topology, costs: np.ndarray | None) -> np.ndarray:
    """The per-edge costs checked (one finite positive value per edge), default 1."""
    if costs is None:
        return np.ones(top.m)
    c = np.asarray(costs, dtype=np.float64)
    if c.shape != (top.m,):
        raise ValueError(f"costs must have one value per edge ({top.m}), got shape {c.shape}")
    if not np.isfinite(c).all() or (c <= 0).any():
        raise ValueError("edge costs must be finite and positive")
    return c


def condition(top: Topology, rates: np.ndarray) -> float:
    """``2 χ1(Λ) χ2(Λ)`` of the rates (≤ 1 is DADAO's condition)."""
    return 2.0 * spectral.chi1(top, rates) * spectral.chi2(top, rates)


def total_resistance(top: Topology, rates: np.ndarray) -> float:
    """``R_tot = Σ_{i<j} R_ij = n·Tr(Λ⁺)``."""
    n = top.n
    if n < spectral.SPARSE_THRESHOLD:
        ev = sla.eigvalsh(top.laplacian(rates))[1:]
        return float(n * np.sum(1.0 / ev)) if ev[0] > 0 else math.inf
    lin = WeightedLaplacian(top, rates)
    return float(n * lin.trace_pinv())


def extreme_eigenvalues(top: Topology, rates: np.ndarray | None = None) -> tuple[float, float]:
    """``(λ2, λ_max)`` of ``Λ(rates)`` (sparse Lanczos from ``spectral.SPARSE_THRESHOLD`` nodes)."""
    if top.n < spectral.SPARSE_THRESHOLD:
        ev = np.linalg.eigvalsh(spectral.laplacian(top, rates, sparse=False))
        return float(ev[1]), float(ev[-1])
    L = spectral.laplacian(top, rates, sparse=True)
    hi = spla.eigsh(L, k=1, which="LA", return_eigenvectors=False, tol=1e-12, v0=spectral.lanczos_start(top.n))
    return spectral.lambda2(top, rates), float(hi[0])


def slem(top: Topology, rates: np.ndarray) -> float:
    """Second-largest eigenvalue modulus ``‖I − Λ − 11ᵀ/n‖₂ = max(1 − λ2, λn − 1)`` of
    ``W = I − Λ``."""
    lo, hi = extreme_eigenvalues(top, rates)
    return float(max(abs(1.0 - lo), abs(1.0 - hi)))


def scale_to_budget(top: Topology, w: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``w ≥ 0`` rescaled to the budget ``cᵀw = Σ c``."""
    w = np.maximum(np.asarray(w, dtype=np.float64), 0.0)
    return w * (float(c.sum()) / float(c @ w))


def dadao_finalize(top: Topology, w: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The direction ``w ≥ 0`` scaled onto DADAO's condition ``2χ1χ2 = 1`` (every rate at
    least :data:`MIN_RATE_FRACTION` of the mean)."""
    w = np.maximum(np.asarray(w, dtype=np.float64), 0.0)
    w = np.maximum(w, MIN_RATE_FRACTION * w.mean())
    return w * math.sqrt(condition(top, w))


def uniform_dadao(top: Topology, c: np.ndarray) -> np.ndarray:
    """Equal rates scaled onto DADAO's condition."""
    return dadao_finalize(top, np.ones(top.m), c)


def best_constant_weight(top: Topology, c: np.ndarray | None = None) -> np.ndarray:
    """The best constant gossip weight ``min(2/(λ2+λn), 1/d_max)`` of ``L_G``."""
    lo, hi = extreme_eigenvalues(top)
    alpha = min(2.0 / (lo + hi), 1.0 / float(top.degrees().max()))
    return np.full(top.m, alpha)
