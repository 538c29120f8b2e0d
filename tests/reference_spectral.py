"""Dense reference values of graph constants, kept as the reference for ``fedopt.topology``.

Independent of fedopt: plain numpy on an edge list, straight from the definitions
(Nabli & Oyallon, ICML 2023; Boyd et al. for the SLEM). For nodes ``0..n-1``, edges
``(i_e, j_e)`` and weights ``w_e``:

* ``Λ(w) = Σ_e w_e b_e b_eᵀ`` with ``b_e = e_i − e_j`` (built from the incidence matrix);
* ``λ2`` the second-smallest eigenvalue of ``Λ`` (``numpy.linalg.eigvalsh``) and
  ``χ1 = 1/λ2``;
* ``χ2 = ½ max_e b_eᵀ Λ⁺ b_e`` with ``Λ⁺`` from ``numpy.linalg.pinv``;
* DADAO's total uniform rate ``λ_tot = √(2 χ1 χ2)`` of ``L_G/|E|``;
* the SLEM of ``W = I − Λ``: the 2-norm of ``W − 11ᵀ/n``.
"""

from __future__ import annotations

import math

import numpy as np


def laplacian(n: int, edges: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """``Λ(w) = B diag(w) Bᵀ`` (unit weights by default)."""
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    B = np.zeros((n, e.shape[0]))
    B[e[:, 0], np.arange(e.shape[0])] = 1.0
    B[e[:, 1], np.arange(e.shape[0])] = -1.0
    weights = np.ones(e.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    return (B * weights) @ B.T


def lambda2(n: int, edges: np.ndarray, w: np.ndarray | None = None) -> float:
    """Algebraic connectivity: the second-smallest eigenvalue of ``Λ(w)``."""
    return float(np.linalg.eigvalsh(laplacian(n, edges, w))[1])


def chi1(n: int, edges: np.ndarray, w: np.ndarray | None = None) -> float:
    """``χ1 = 1/λ2(Λ(w))``."""
    return 1.0 / lambda2(n, edges, w)


def edge_resistances(n: int, edges: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """``b_eᵀ Λ(w)⁺ b_e`` for every edge (dense pseudo-inverse)."""
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    P = np.linalg.pinv(laplacian(n, e, w), hermitian=True)
    i, j = e[:, 0], e[:, 1]
    return P[i, i] + P[j, j] - 2.0 * P[i, j]


def chi2(n: int, edges: np.ndarray, w: np.ndarray | None = None) -> float:
    """``χ2 = ½ max_e b_eᵀ Λ(w)⁺ b_e``."""
    return 0.5 * float(edge_resistances(n, edges, w).max())


def dadao_uniform_total_rate(n: int, edges: np.ndarray) -> float:
    """``λ_tot = √(2 χ1 χ2)`` of ``L_G/|E|``: uniform rates at DADAO's condition."""
    m = np.asarray(edges).reshape(-1, 2).shape[0]
    w = np.full(m, 1.0 / m)
    return math.sqrt(2.0 * chi1(n, edges, w) * chi2(n, edges, w))


def slem(n: int, edges: np.ndarray, w: np.ndarray) -> float:
    """Second-largest eigenvalue modulus of ``W = I − Λ(w)``: ``‖W − 11ᵀ/n‖₂``."""
    W = np.eye(n) - laplacian(n, edges, w)
    return float(np.linalg.norm(W - np.full((n, n), 1.0 / n), 2))
