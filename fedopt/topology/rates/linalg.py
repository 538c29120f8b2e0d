"""Linear algebra of one weighting ``Λ = B diag(w) Bᵀ`` for the large-graph solvers:
``Λ⁺`` solves, the two ends of the spectrum, edge resistances and ``Tr Λ⁺``; dense below
:data:`fedopt.topology.spectral.SPARSE_THRESHOLD` nodes, sparse (a grounded LU and Lanczos)
above."""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from fedopt.topology import spectral
from fedopt.topology.graph import Topology


class WeightedLaplacian:
    """``Λ⁺`` solves, the bottom of the spectrum and edge resistances of one weighting;
    dense below ``spectral.SPARSE_THRESHOLD`` nodes, sparse (grounded LU) above."""

    def __init__(self, top: Topology, w: np.ndarray) -> None:
        self.top, self.w, self.n = top, w, top.n
        self.sparse = top.n >= spectral.SPARSE_THRESHOLD
        if self.sparse:
            L = spectral.laplacian(top, w, sparse=True).tocsc()
            self.L = L
            self.c = float(L.diagonal().sum()) / self.n
            self._solve = spectral._grounded_solver(L, self.c, np.full(self.n, 1.0 / math.sqrt(self.n)))
        else:
            L = top.laplacian(w)
            self.L = L

    @cached_property
    def pinv(self) -> np.ndarray:
        """``Λ⁺ = (Λ + 11ᵀ/n)⁻¹ − 11ᵀ/n`` (dense only)."""
        return np.linalg.inv(self.L + np.full((self.n, self.n), 1.0 / self.n)) - 1.0 / self.n

    def solve(self, X: np.ndarray) -> np.ndarray:
        """``Λ⁺ X`` for columns ``X ⊥ 1``."""
        if self.sparse:
            Y = self._solve.matmat(X) if X.ndim == 2 else self._solve.matvec(X)
            return Y - Y.mean(axis=0)
        return self.pinv @ X

    def bottom(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` smallest positive eigenvalues of ``Λ`` and their eigenvectors."""
        k = min(k, self.n - 1)
        if not self.sparse:
            ev, U = sla.eigh(self.L, subset_by_index=[1, k])
            return ev, U
        # eigenvalues of the grounded inverse (Λ + c·uuᵀ)⁻¹: the largest are 1/λ2, 1/λ3, ...
        op = spla.LinearOperator((self.n, self.n), matvec=self._solve.matvec, dtype=np.float64)
        vals, U = spla.eigsh(op, k=k, which="LA", tol=1e-10, v0=spectral.lanczos_start(self.n))
        order = np.argsort(-vals)
        return 1.0 / vals[order], U[:, order]

    def resistances(self) -> np.ndarray:
        if self.sparse:
            return spectral.effective_resistances(self.top, self.w)
        i, j = self.top.edges[:, 0], self.top.edges[:, 1]
        M = self.pinv
        return M[i, i] + M[j, j] - 2.0 * M[i, j]

    def trace_pinv(self) -> float:
        if not self.sparse:
            return float(np.trace(self.pinv))
        # exact: Tr Λ⁺ = Σ_i e_iᵀ Λ⁺ e_i, in blocks
        n, tot = self.n, 0.0
        for s in range(0, n, 256):
            idx = np.arange(s, min(s + 256, n))
            E = np.zeros((n, idx.size))
            E[idx, np.arange(idx.size)] = 1.0
            E -= 1.0 / n
            tot += float(np.einsum("ij,ij->", E, self.solve(E)))
        return tot

    def incidence_columns(self, edges: np.ndarray) -> np.ndarray:
        """The dense columns ``b_e`` (``n × len(edges)``) of the listed edges."""
        Bk = np.zeros((self.n, edges.size))
        cols = np.arange(edges.size)
        Bk[self.top.edges[edges, 0], cols] = 1.0
        Bk[self.top.edges[edges, 1], cols] = -1.0
        return Bk

    def edge_quad(self, X: np.ndarray) -> np.ndarray:
        """``(b_fᵀ x)²`` for every edge ``f`` and column ``x`` of ``X`` (``m × k``)."""
        i, j = self.top.edges[:, 0], self.top.edges[:, 1]
        D = X[i] - X[j]
        return D * D


    def largest(self, k: int, above: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` largest eigenvalues of ``Λ`` (descending) and their eigenvectors.

        ``above``: a number known to be at least ``λ_max(Λ)``; the sparse path then uses
        shift-invert Lanczos at it (the eigenvalues nearest ``above`` are the largest),
        which converges in far fewer steps when the top eigenvalues cluster."""
        k = min(k, self.n - 1)
        if not self.sparse:
            ev, U = sla.eigh(self.L, subset_by_index=[self.n - k, self.n - 1])
        elif above is not None:
            # (Λ − σI)⁻¹ = −(σI − Λ)⁻¹, and σI − Λ is positive definite
            lu = spectral.spd_lu(above * sp.identity(self.n, format="csc") - self.L)
            inv = spla.LinearOperator((self.n, self.n), matvec=lambda x: -lu.solve(x), dtype=np.float64)
            ev, U = spla.eigsh(self.L, k=k, sigma=above, which="LM", tol=1e-10, OPinv=inv,
                               v0=spectral.lanczos_start(self.n))
        else:
            # a wide Krylov basis: the top eigenvalues cluster as the weights approach the optimum
            ev, U = spla.eigsh(self.L, k=k, which="LA", tol=1e-10, ncv=min(self.n - 1, max(4 * k, 20)),
                               v0=spectral.lanczos_start(self.n))
        order = np.argsort(-ev)
        return ev[order], U[:, order]

    def spectrum(self) -> tuple[np.ndarray, np.ndarray]:
        """All positive eigenvalues of ``Λ`` (ascending) and their eigenvectors (dense only)."""
        if self.sparse:
            raise ValueError("the full spectrum is only computed for dense (small) graphs")
        ev, U = np.linalg.eigh(self.L)
        return ev[1:], U[:, 1:]
