"""Gossip (mixing) matrices of the synchronous decentralized algorithms (DGD, gradient tracking).

Every matrix here is ``W = I − Λ(w) = I − B diag(w) Bᵀ`` for edge weights ``w ≥ 0`` with
``Σ_{e∋i} w_e ≤ 1``: symmetric, doubly stochastic, supported on the graph. The weights come
from a registry (:data:`MIXING_WEIGHTS`, extend it with :func:`register_mixing`):

``metropolis``
    ``w_e = 1/(1 + max(d_i, d_j))`` (Metropolis–Hastings; Xiao & Boyd 2004, eq. 6).
``fastest_mixing``
    the weights with the smallest second-largest eigenvalue modulus ``‖W − 11ᵀ/n‖₂``
    (Boyd, Diaconis & Xiao 2004), from :func:`fedopt.topology.rates.optimize_rates` (the SDP
    on small graphs, accelerated projected gradient on large ones; cached by graph).
``rates``
    the topology's own per-edge rates, e.g. from a spec with
    ``rates: {objective: fastest_mixing}`` or the output of ``fedopt rates``.

``lazy=True`` returns ``(I + W)/2``, whose eigenvalues lie in ``[0, 1]``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from fedopt.topology import spectral
from fedopt.topology.graph import Topology
from fedopt.topology.rates import optimized_topology

#: Registered mixing weights by name: ``top -> w`` (one weight per edge).
MIXING_WEIGHTS: dict[str, Callable[[Topology], np.ndarray]] = {}


def register_mixing(name: str) -> Callable[[Callable[[Topology], np.ndarray]], Callable[[Topology], np.ndarray]]:
    """Decorator adding a weight rule to :data:`MIXING_WEIGHTS`."""

    def add(fn: Callable[[Topology], np.ndarray]) -> Callable[[Topology], np.ndarray]:
        if name in MIXING_WEIGHTS:
            raise ValueError(f"mixing {name!r} is already registered")
        MIXING_WEIGHTS[name] = fn
        return fn

    return add


def check_mixing(name: str) -> str:
    """``name`` if it is a registered mixing rule; a ``ValueError`` naming the choices if not."""
    if name not in MIXING_WEIGHTS:
        raise ValueError(f"unknown mixing {name!r}; choose one of: {', '.join(MIXING_WEIGHTS)}")
    return name


@register_mixing("metropolis")
def metropolis(top: Topology) -> np.ndarray:
    deg = top.degrees()
    return 1.0 / (1.0 + np.maximum(deg[top.edges[:, 0]], deg[top.edges[:, 1]]))


@register_mixing("fastest_mixing")
def fastest_mixing(top: Topology) -> np.ndarray:
    rates = optimized_topology(top, "fastest_mixing").rates
    assert rates is not None
    return rates


@register_mixing("rates")
def topology_rates(top: Topology) -> np.ndarray:
    if top.rates is None:
        raise ValueError(f"mixing 'rates' needs per-edge rates on topology {top.name!r} "
                         "(e.g. rates: {objective: fastest_mixing} in its spec)")
    return np.asarray(top.rates, dtype=np.float64)


def mixing_matrix(top: Topology, mixing: str = "metropolis", lazy: bool = False,
                  sparse: bool | None = None) -> np.ndarray | sp.csr_matrix:
    """``W = I − Λ(w)`` (or ``(I + W)/2`` if ``lazy``) for the registered rule ``mixing``;
    dense below ``spectral.SPARSE_THRESHOLD`` nodes unless ``sparse`` says otherwise.
    Raises ``ValueError`` when the weights are negative or a node's weights sum above 1."""
    w = MIXING_WEIGHTS[check_mixing(mixing)](top)
    if w.shape != (top.m,) or not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"mixing {mixing!r}: weights must be finite, non-negative, one per edge")
    sums = top.weighted_degrees(w)
    if sums.max() > 1.0 + 1e-9:
        raise ValueError(f"mixing {mixing!r}: the weights at node {int(sums.argmax())} sum to "
                         f"{sums.max():.6g} > 1, so I − Λ is not a mixing matrix")
    if sparse is None:
        sparse = top.n >= spectral.SPARSE_THRESHOLD
    W = sp.identity(top.n, format="csr") - spectral.laplacian(top, w, sparse=True)
    if lazy:
        W = 0.5 * (sp.identity(top.n, format="csr") + W)
    return W.tocsr() if sparse else W.toarray()


def metropolis_weights(top: Topology, sparse: bool | None = None) -> np.ndarray | sp.csr_matrix:
    """Metropolis–Hastings mixing matrix: ``W_ij = 1/(1 + max(d_i, d_j))`` on edges,
    ``W_ii = 1 − Σ_j W_ij`` (symmetric, doubly stochastic; Xiao & Boyd 2004)."""
    return mixing_matrix(top, "metropolis", sparse=sparse)


__all__ = ["MIXING_WEIGHTS", "check_mixing", "metropolis_weights", "mixing_matrix", "register_mixing"]
