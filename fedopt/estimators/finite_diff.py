"""Randomized finite-difference gradient estimators, vectorized over clients.

For directions ``u_1..u_Q`` and smoothing ``μ`` the forward estimate at ``x`` is

    g(x) = (s / Q) Σ_q [f(x + μ u_q) − f(x)] / μ · u_q

and the central one replaces the difference by ``[f(x + μu_q) − f(x − μu_q)] / (2μ)``.
With Gaussian directions ``u ~ N(0, I)`` and ``s = 1`` it is an unbiased estimate of
the gradient of the Gaussian smoothing ``f_μ(x) = E f(x + μu)`` (Nesterov & Spokoiny,
"Random gradient-free minimization of convex functions", FoCM 2017, eq. (21)–(22));
with directions uniform on the unit sphere and ``s = d`` it is unbiased for the gradient
of the ball smoothing ``f̂_μ(x) = E_{v ~ U(ball)} f(x + μv)`` (Flaxman, Kalai &
McMahan 2005, Lemma 1). Orthonormalized Gaussian directions (Gram–Schmidt of ``Q ≤ d``
Gaussian vectors, the choice of the FZooS code, Shu et al. 2023 §3) are a uniformly
random orthonormal frame: each ``u_q`` is uniform on the sphere, so ``s = d`` gives the
same unbiasedness with less variance. The FZooS code scales by ``1/Q`` (``s = 1``), about
``(1/d)·∇f`` in expectation; ``scale`` chooses.

Every function value is a zeroth-order query through the counting oracle
(:meth:`~fedopt.problems.base.CountingOracle.query`): a forward estimate costs ``Q``
queries per row plus one at ``x`` unless ``f(x)`` is passed in, a central one ``2Q``; the
coordinate-wise estimate costs ``d`` (+1) or ``2d``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from fedopt.core.arrays import FloatArray, IntArray
from fedopt.core.rng import NodeStream
from fedopt.problems.base import CountingOracle

Direction = Literal["gaussian", "orthonormal", "sphere"]
Scheme = Literal["forward", "central"]
DIRECTIONS: tuple[str, ...] = ("gaussian", "orthonormal", "sphere")
SCHEMES: tuple[str, ...] = ("forward", "central")


def sample_directions(kind: str, rng: NodeStream, nodes: IntArray, Q: int, d: int) -> FloatArray:
    """``[k, Q, d]`` directions for the rows of ``nodes`` from the per-node stream ``rng``.

    ``gaussian``: i.i.d. ``N(0, I)``; ``sphere``: uniform on the unit sphere;
    ``orthonormal``: Gram–Schmidt of Gaussian vectors (a Haar-random frame, signs fixed so
    that it does not depend on the QR routine's sign choice), in independent blocks of at
    most ``d`` when ``Q > d`` (the FZooS code's Gram–Schmidt has no direction left then).
    """
    if kind not in DIRECTIONS:
        raise ValueError(f"directions: {kind!r} is not one of {', '.join(DIRECTIONS)}")
    if Q < 1:
        raise ValueError(f"directions: Q must be at least 1, got {Q}")
    G = rng.standard_normal(nodes, (Q, d))
    if kind == "gaussian":
        return G
    if kind == "sphere":
        return G / np.linalg.norm(G, axis=2, keepdims=True)
    return np.concatenate([_orthonormalize(G[:, s:s + d]) for s in range(0, Q, d)], axis=1)


def _orthonormalize(G: FloatArray) -> FloatArray:
    """Gram–Schmidt of the rows of every ``G[k]`` (``[k, q, d]``, ``q <= d``) as one batched QR."""
    Qm, R = np.linalg.qr(G.transpose(0, 2, 1))  # [k, d, q], R [k, q, q]
    sign = np.sign(np.diagonal(R, axis1=1, axis2=2))
    sign[sign == 0] = 1.0
    return (Qm * sign[:, None, :]).transpose(0, 2, 1)  # type: ignore[no-any-return]


def fd_gradient(oracle: CountingOracle, X: FloatArray, nodes: IntArray, U: FloatArray, mu: float,
                scheme: str = "forward", scale: float = 1.0,
                f0: FloatArray | None = None) -> tuple[FloatArray, FloatArray | None]:
    """The finite-difference estimate along ``U [k, Q, d]`` at the rows ``X [k, d]``.

    Returns ``(g [k, d], f(X) [k])`` (``f(X)`` is ``None`` for central differences,
    which do not query ``x``); a given ``f0`` is used instead of querying ``f(X)``.
    All points of the call go to the oracle in one block (one query per point).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"finite differences: scheme {scheme!r} is not one of {', '.join(SCHEMES)}")
    if mu <= 0:
        raise ValueError(f"finite differences: mu must be positive, got {mu}")
    k, Q, d = U.shape
    nodes = np.asarray(nodes, dtype=np.int64)
    rep = np.repeat(nodes, Q)
    plus = (X[:, None, :] + mu * U).reshape(k * Q, d)
    if scheme == "central":
        minus = (X[:, None, :] - mu * U).reshape(k * Q, d)
        vals = oracle.query(np.concatenate((plus, minus)), np.concatenate((rep, rep)))
        diff = (vals[: k * Q] - vals[k * Q:]).reshape(k, Q) / (2.0 * mu)
        fx = None
    else:
        if f0 is None:
            vals = oracle.query(np.concatenate((X, plus)), np.concatenate((nodes, rep)))
            fx, fp = vals[:k], vals[k:].reshape(k, Q)
        else:
            fx = np.asarray(f0, dtype=np.float64)
            fp = oracle.query(plus, rep).reshape(k, Q)
        diff = (fp - fx[:, None]) / mu
    return (scale / Q) * np.einsum("kq,kqd->kd", diff, U), fx


def coordinate_gradient(oracle: CountingOracle, X: FloatArray, nodes: IntArray, mu: float,
                        scheme: str = "forward",
                        f0: FloatArray | None = None) -> tuple[FloatArray, FloatArray | None]:
    """Coordinate-wise finite differences along ``e_1..e_d`` (``d`` or ``2d`` queries per row,
    plus ``f(X)`` for forward differences unless ``f0`` is given): ``(g [k, d], f(X))``."""
    k, d = X.shape
    E = np.broadcast_to(np.eye(d), (k, d, d))
    return fd_gradient(oracle, X, nodes, E, mu, scheme, scale=float(d), f0=f0)
