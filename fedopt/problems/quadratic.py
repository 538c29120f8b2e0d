"""Heterogeneous quadratics: ``f_i(x) = ½ xᵀA_i x − b_iᵀx`` with spectra in ``[μ, L]``.

The exact minimizer of ``Σ_i f_i`` is ``x* = (Σ_i A_i)⁻¹ Σ_i b_i`` (closed form),
which makes quadratics the reference problem for exact-convergence tests
(DADAO, Nabli & Oyallon 2023, §6 of fedopt's notes: "converges to the exact
minimizer (Σ A_i)⁻¹ Σ A_i b_i").
"""

from __future__ import annotations

import numpy as np

from fedopt.core.arrays import FloatArray, IntArray
from fedopt.problems.base import Problem, ProblemParamError, ShardView, register_problem


class Quadratic(Problem):
    """Quadratics from explicit ``A`` (``[n, d, d]``, symmetric) and ``b`` (``[n, d]``)."""

    def __init__(self, A: FloatArray, b: FloatArray, c: FloatArray | None = None) -> None:
        A = np.asarray(A, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if A.ndim != 3 or A.shape[1] != A.shape[2] or b.shape != A.shape[:2]:
            raise ValueError(f"quadratic: A must be [n, d, d] and b [n, d], got {A.shape} and {b.shape}")
        if not np.allclose(A, A.transpose(0, 2, 1)):
            raise ValueError("quadratic: every A_i must be symmetric")
        self.A, self.b = A, b
        self.c = np.zeros(A.shape[0]) if c is None else np.asarray(c, dtype=np.float64)
        self.n, self.d = b.shape
        eig = np.linalg.eigvalsh(A)
        self.L = float(eig.max())
        lo = float(eig.min())
        self.mu = lo if lo > 0 else None

    def grad(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        return self._grad_rows(X, self.A[nodes], self.b[nodes])

    def value(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        return self._value_rows(X, self.A[nodes], self.b[nodes], self.c[nodes])

    @staticmethod
    def _grad_rows(X: FloatArray, A: FloatArray, b: FloatArray) -> FloatArray:
        """Gradients of the rows' quadratics given their ``A [k, d, d]`` and ``b [k, d]``."""
        return np.einsum("kij,kj->ki", A, X) - b

    @staticmethod
    def _value_rows(X: FloatArray, A: FloatArray, b: FloatArray, c: FloatArray) -> FloatArray:
        """Values of the rows' quadratics given their ``A``, ``b`` and ``c [k]``."""
        AX = np.einsum("kij,kj->ki", A, X)
        return 0.5 * np.einsum("ki,ki->k", X, AX) - np.einsum("ki,ki->k", b, X) + c

    def shard_view(self, nodes: IntArray, device: str | None = None) -> QuadraticShardView:
        """A shard's view holding ``nodes``' ``A_i``, ``b_i``, ``c_i`` contiguously (``device``
        is ignored: numpy computes on the CPU)."""
        return QuadraticShardView(self, nodes)

    def hessian_sum(self) -> FloatArray:
        return self.A.sum(axis=0)

    def solve(self) -> FloatArray:
        return np.linalg.solve(self.A.sum(axis=0), self.b.sum(axis=0))


class QuadraticShardView(ShardView):
    """A :class:`Quadratic` seen from a shard that owns ``nodes``: their ``A_i``, ``b_i``,
    ``c_i`` are copied once, in the order of ``nodes``; a call on a run of them slices
    these copies, any other call reads the full problem's arrays. The same einsums run
    on the same values, so results equal the full problem's bit for bit."""

    full: Quadratic

    def __init__(self, full: Quadratic, nodes: IntArray) -> None:
        super().__init__(full, nodes)
        self.A = np.ascontiguousarray(full.A[self.nodes])
        self.b = np.ascontiguousarray(full.b[self.nodes])
        self.c = np.ascontiguousarray(full.c[self.nodes])
        for a in (self.A, self.b, self.c):
            a.setflags(write=False)

    def _data(self, nodes: IntArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        s = self.own_run(np.asarray(nodes, dtype=np.int64))
        if s is None:
            f = self.full
            return f.A[nodes], f.b[nodes], f.c[nodes]
        return self.A[s], self.b[s], self.c[s]

    def grad(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        A, b, _ = self._data(nodes)
        return self.full._grad_rows(X, A, b)

    def value(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        return self.full._value_rows(X, *self._data(nodes))

    def hessian_sum(self) -> FloatArray:
        return self.full.hessian_sum()


@register_problem("quadratic")
def random_quadratic(
    n: int,
    d: int = 10,
    mu: float = 1.0,
    L: float = 10.0,
    heterogeneity: float = 1.0,
    seed: int = 0,
    rng: np.random.Generator | None = None,
) -> Quadratic:
    """Random quadratics whose Hessian spectra lie in ``[mu, L]`` (both ends attained).

    Parameters
    ----------
    n, d : nodes and dimension.
    mu, L : strong convexity and smoothness of every ``f_i`` (``0 < mu <= L``).
    heterogeneity : 0 gives identical ``f_i``; 1 gives independent random
        eigenbases and linear terms per node; values in between interpolate the
        linear terms ``b_i = b + heterogeneity · δ_i``.
    seed / rng : randomness (the experiment passes its ``"problem"`` stream).
    """
    if not 0 < mu:
        raise ProblemParamError("mu", f"quadratic: need 0 < mu <= L, got mu={mu}, L={L}")
    if not mu <= L:
        raise ProblemParamError("L", f"quadratic: need 0 < mu <= L, got mu={mu}, L={L}")
    for key, value in (("n", n), ("d", d)):
        if value < 1:
            raise ProblemParamError(key, f"quadratic: n and d must be positive, got n={n}, d={d}")
    rng = np.random.default_rng(seed) if rng is None else rng
    spectra = rng.uniform(mu, L, size=(n, d))
    spectra[:, 0] = mu
    if d > 1:
        spectra[:, 1] = L
    else:
        spectra[::2, 0] = L
    if heterogeneity > 0:
        Q, _ = np.linalg.qr(rng.normal(size=(n, d, d)))
    else:
        Q = np.broadcast_to(np.linalg.qr(rng.normal(size=(d, d)))[0], (n, d, d))
    A = np.einsum("kij,kj,klj->kil", Q, spectra if heterogeneity > 0 else np.broadcast_to(spectra[0], (n, d)), Q)
    A = 0.5 * (A + A.transpose(0, 2, 1))
    b = rng.normal(size=d) + heterogeneity * rng.normal(size=(n, d))
    return Quadratic(A, b)
