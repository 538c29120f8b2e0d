"""Spectral facts of a (rate-weighted) graph Laplacian.

For per-edge weights ``λ_e`` the weighted Laplacian is ``Λ = Σ_e λ_e b_e b_eᵀ`` with
``b_e = e_i − e_j``. DADAO (Nabli & Oyallon, ICML 2023, §2 of the notes) uses

* ``χ1(Λ) = 1 / λ₂⁺(Λ)``, one over the smallest positive eigenvalue;
* ``χ2(Λ) = max_e ½ b_eᵀ Λ⁺ b_e``, half the largest edge effective resistance;

and runs at the rate condition ``2 χ1 χ2 ≤ 1``. With uniform rates ``Λ = λ_tot L_norm``
(``L_norm = L_G / |E|``), which gives ``λ_tot = sqrt(2 χ1(L_norm) χ2(L_norm))``
(:func:`normalized_laplacian_rate`).

``Λ⁺`` is never formed with a pseudo-inverse: for a connected graph
``Λ⁺ = (Λ + J/n)⁻¹ − J/n`` with ``J = 11ᵀ`` (exact, and a well-conditioned solve).
Graphs with ``n ≥ SPARSE_THRESHOLD`` nodes use sparse matrices: ``λ₂`` by shift-invert
Lanczos and the edge resistances by a sparse LU factorization of ``Λ + J/n`` written
as a low-rank update (the grounded Laplacian).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from fedopt.topology.graph import Topology

#: Graphs with at least this many nodes use sparse linear algebra.
SPARSE_THRESHOLD = 500


def _weights(top: Topology, weights: np.ndarray | None) -> np.ndarray:
    if weights is None:
        return np.ones(top.m) if top.rates is None else np.asarray(top.rates, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (top.m,):
        raise ValueError(f"weights must have one value per edge ({top.m}), got shape {w.shape}")
    if (w < 0).any() or not np.isfinite(w).all():
        raise ValueError("weights must be finite and non-negative")
    return w


def laplacian(top: Topology, weights: np.ndarray | None = None, sparse: bool | None = None) -> np.ndarray | sp.csr_matrix:
    """Weighted Laplacian ``Λ = B diag(w) Bᵀ``; weights default to the topology's rates
    (or ones when it has none). Sparse CSR when ``sparse`` (default: ``n ≥ 500``)."""
    w = _weights(top, weights)
    if sparse is None:
        sparse = top.n >= SPARSE_THRESHOLD
    if not sparse:
        return top.laplacian(w)
    i, j = top.edges[:, 0], top.edges[:, 1]
    deg = np.bincount(i, weights=w, minlength=top.n) + np.bincount(j, weights=w, minlength=top.n)
    rows = np.concatenate([i, j, np.arange(top.n)])
    cols = np.concatenate([j, i, np.arange(top.n)])
    vals = np.concatenate([-w, -w, deg])
    return sp.csr_matrix((vals, (rows, cols)), shape=(top.n, top.n))


def lanczos_start(n: int) -> np.ndarray:
    """A fixed starting vector for ARPACK (``eigsh(v0=...)``): without one ARPACK draws it
    from a process-wide generator, and the same graph could give (slightly) different
    eigenvectors, hence rates, from run to run."""
    return np.random.default_rng(0x5EED).standard_normal(n)


def lambda2(top: Topology, weights: np.ndarray | None = None) -> float:
    """Algebraic connectivity ``λ₂(Λ)`` (0 when the weighted graph is disconnected)."""
    if top.n < 2:
        return float("inf")
    if top.n < SPARSE_THRESHOLD:
        ev = sla.eigvalsh(laplacian(top, weights, sparse=False), subset_by_index=[1, 1])
        return float(max(ev[0], 0.0))
    L = laplacian(top, weights, sparse=True).tocsc()
    # A = Λ + c·uuᵀ (u = 1/√n, c = trace Λ ≥ λ_max) moves the constant eigenvector's 0 up to
    # c and keeps every other eigenvalue, so λ₂(Λ) = λ_min(A) = 1/λ_max(A⁻¹).
    n = top.n
    c = float(L.diagonal().sum())
    if c <= 0:
        return 0.0
    Ainv = _grounded_solver(L, c, np.full(n, 1.0 / np.sqrt(n)))
    try:
        val = spla.eigsh(Ainv, k=1, which="LA", return_eigenvectors=False, tol=1e-12, v0=lanczos_start(n))
    except RuntimeError:  # singular grounded matrix: disconnected weighting
        return 0.0
    return float(1.0 / val[0]) if val[0] > 0 and np.isfinite(val[0]) else 0.0


def spd_lu(A: sp.spmatrix) -> spla.SuperLU:
    """Sparse LU of a symmetric positive definite matrix with a symmetric fill-reducing order
    and no pivoting (on a 1000-node graph of average degree 38: 2.4x faster to factor and
    1.7x faster to solve than SuperLU's default column order with partial pivoting)."""
    return spla.splu(sp.csc_matrix(A), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                     options={"SymmetricMode": True})


def _grounded_solver(L: sp.csc_matrix, c: float, one: np.ndarray) -> spla.LinearOperator:
    """``x ↦ (Λ + c·11ᵀ/n)⁻¹ x`` via a sparse LU of the grounded Laplacian.

    ``Λ + c uuᵀ`` (``u = 1/√n``) is symmetric positive definite for a connected graph.
    Grounding node 0 (adding ``c`` to ``Λ₀₀``) gives a sparse SPD matrix ``G = Λ + c e₀e₀ᵀ``;
    the Sherman–Morrison–Woodbury identity turns the rank-2 difference into two extra
    solves per call.
    """
    n = L.shape[0]
    G = L.tolil(copy=True)
    G[0, 0] = G[0, 0] + c
    lu = spd_lu(G)
    e0 = np.zeros(n)
    e0[0] = 1.0
    # A = G + U C Uᵀ with U = [u, e0], C = diag(c, −c).
    U = np.stack([one, e0], axis=1)
    GiU = np.stack([lu.solve(U[:, 0]), lu.solve(U[:, 1])], axis=1)
    Cinv = np.diag([1.0 / c, -1.0 / c])
    S = Cinv + U.T @ GiU

    def solve(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            y = lu.solve(x)
            return y - GiU @ np.linalg.solve(S, U.T @ y)
        y = lu.solve(x)
        return y - GiU @ np.linalg.solve(S, U.T @ y)

    return spla.LinearOperator((n, n), matvec=solve, matmat=solve, dtype=np.float64)


def chi1(top: Topology, weights: np.ndarray | None = None) -> float:
    """``χ1(Λ) = 1/λ₂⁺(Λ)`` (DADAO notes §2); ``inf`` for a disconnected weighting."""
    l2 = lambda2(top, weights)
    return float("inf") if l2 <= 1e-14 * max(1.0, float(_weights(top, weights).sum())) else 1.0 / l2


def effective_resistances(top: Topology, weights: np.ndarray | None = None) -> np.ndarray:
    """Edge effective resistances ``r_e = b_eᵀ Λ⁺ b_e`` (no ½ factor), one per edge.

    Dense: one solve with ``Λ + J/n``. Sparse (``n ≥ 500``): a sparse LU of the grounded
    Laplacian and blocked solves for the columns of the n nodes (not one per edge).
    """
    w = _weights(top, weights)
    n, i, j = top.n, top.edges[:, 0], top.edges[:, 1]
    if top.m == 0:
        return np.zeros(0)
    if n < SPARSE_THRESHOLD:
        A = top.laplacian(w) + np.full((n, n), 1.0 / n)
        try:
            Ainv = sla.inv(A, check_finite=True)
        except sla.LinAlgError as exc:
            raise ValueError(f"topology {top.name!r}: the weighted graph is disconnected") from exc
        Ainv -= 1.0 / n
        r = Ainv[i, i] + Ainv[j, j] - 2.0 * Ainv[i, j]
        if not np.isfinite(r).all() or (r <= 0).any():
            raise ValueError(f"topology {top.name!r}: the weighted graph is disconnected")
        return r
    L = laplacian(top, w, sparse=True).tocsc()
    c = float(L.diagonal().sum()) / n
    solver = _grounded_solver(L, c, np.full(n, 1.0 / np.sqrt(n)))
    # r_e = A⁻¹[i,i] + A⁻¹[j,j] − 2 A⁻¹[j,i] with A = Λ + J/n: solve for the columns of the
    # nodes (n solves, not m), a block at a time, and read the entries each edge needs.
    diag = np.empty(n)
    cross = np.empty(top.m)
    order = np.argsort(i, kind="stable")
    starts = np.searchsorted(i[order], np.arange(n + 1))
    block = 256
    for s0 in range(0, n, block):
        s1 = min(s0 + block, n)
        E = np.zeros((n, s1 - s0))
        E[np.arange(s0, s1), np.arange(s1 - s0)] = 1.0
        X = solver.matmat(E)
        diag[s0:s1] = X[np.arange(s0, s1), np.arange(s1 - s0)]
        idx = order[starts[s0]:starts[s1]]
        cross[idx] = X[j[idx], i[idx] - s0]
    out = diag[i] + diag[j] - 2.0 * cross
    if not np.isfinite(out).all() or (out <= 0).any():
        raise ValueError(f"topology {top.name!r}: the weighted graph is disconnected")
    return out


def chi2(top: Topology, weights: np.ndarray | None = None) -> float:
    """``χ2(Λ) = max_e ½ b_eᵀ Λ⁺ b_e`` (DADAO notes §2, with the ½ factor)."""
    return 0.5 * float(effective_resistances(top, weights).max())


def normalized_weights(top: Topology) -> np.ndarray:
    """Uniform weights ``1/|E|`` per edge: ``L_norm = L_G / |E|``."""
    return np.full(top.m, 1.0 / top.m)


def normalized_laplacian_rate(top: Topology) -> float:
    """Total uniform gossip rate at DADAO's condition: ``λ_tot = sqrt(2 χ1 χ2)`` of
    ``L_norm = L_G/|E|`` (notes §2). Star: ``n−1``; complete: ``(n−1)/√2``."""
    w = normalized_weights(top)
    return float(np.sqrt(2.0 * chi1(top, w) * chi2(top, w)))


def spectral_gap(W: np.ndarray) -> float:
    """``1 − max(|λ₂(W)|, |λ_n(W)|)`` of a symmetric mixing matrix (dense)."""
    ev = np.linalg.eigvalsh(np.asarray(W))
    return float(1.0 - max(abs(ev[0]), abs(ev[-2]))) if ev.size > 1 else 1.0


@dataclass(frozen=True)
class SpectralSummary:
    """What ``fedopt topology`` prints."""

    name: str
    n: int
    edges: int
    degree_min: int
    degree_max: int
    lambda2: float
    chi1: float
    chi2: float
    rate_tot: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def summarize(top: Topology, weights: np.ndarray | None = None) -> SpectralSummary:
    """n, |E|, degree range, and ``λ2``, ``χ1``, ``χ2`` of the weighted Laplacian
    (weights: given, else the topology's rates, else ones) and the uniform DADAO rate."""
    deg = top.degrees()
    w = _weights(top, weights)
    return SpectralSummary(
        name=top.name, n=top.n, edges=top.m,
        degree_min=int(deg.min()) if top.n else 0, degree_max=int(deg.max()) if top.n else 0,
        lambda2=lambda2(top, w), chi1=chi1(top, w), chi2=chi2(top, w) if top.m else 0.0,
        rate_tot=normalized_laplacian_rate(top) if top.m else 0.0,
    )
