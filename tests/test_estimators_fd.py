"""Randomized finite differences: unbiased for the smoothed gradient, exact where they should be,
one counted query per evaluated point."""

from __future__ import annotations

import numpy as np
import pytest

from fedopt.core.meter import Meter
from fedopt.core.rng import NodeStreams
from fedopt.estimators import coordinate_gradient, fd_gradient, sample_directions
from fedopt.problems.base import CountingOracle, Problem


class Cubic(Problem):
    """``f_i(x) = Σ_j (x_j − c_ij)³``: Gaussian smoothing adds ``3μ²(x_j − c_ij)``, ball
    smoothing ``3μ²(x_j − c_ij)/(d + 2)`` (E v_j² = μ²/(d+2) on the ball of radius μ)."""

    def __init__(self, c: np.ndarray) -> None:
        self.c = c
        self.n, self.d = c.shape
        self.L, self.mu = 1.0, None

    def value(self, X, nodes):
        return ((X - self.c[nodes]) ** 3).sum(axis=1)

    def grad(self, X, nodes):
        return 3.0 * (X - self.c[nodes]) ** 2


D = 6
C = np.array([[0.3, -0.2, 0.1, 0.0, 0.5, -0.4], [-0.1, 0.2, 0.0, 0.4, -0.3, 0.1]])
X0 = np.array([0.5, -0.5, 1.0, 0.2, -0.8, 0.3])
MU = 0.5


def _smoothed(kind: str) -> np.ndarray:
    """Gradient of the smoothed objective of node 1 at X0 (closed form, independent of the estimator)."""
    z = X0 - C[1]
    second = MU**2 if kind == "gaussian" else MU**2 / (D + 2)
    return 3.0 * z**2 + 3.0 * second


@pytest.mark.parametrize("kind", ["gaussian", "sphere", "orthonormal"])
@pytest.mark.parametrize("scheme", ["forward", "central"])
def test_unbiased_for_the_smoothed_gradient(kind: str, scheme: str) -> None:
    K, Q = 40000, 3
    oracle = CountingOracle(Cubic(C), Meter(2))
    nodes = np.ones(K, dtype=np.int64)
    U = sample_directions(kind, NodeStreams(7, 2)["directions"], nodes, Q, D)
    g, _ = fd_gradient(oracle, np.tile(X0, (K, 1)), nodes, U, MU, scheme,
                       scale=1.0 if kind == "gaussian" else float(D))
    mean, se = g.mean(axis=0), g.std(axis=0) / np.sqrt(K)
    want = _smoothed(kind)
    assert np.all(np.abs(mean - want) < 4.5 * se), (mean, want, se)
    # the test tells the smoothed gradient from the plain one
    assert np.max(np.abs(mean - 3.0 * (X0 - C[1]) ** 2) / se) > 8


def test_orthonormal_directions_are_orthonormal_frames() -> None:
    U = sample_directions("orthonormal", NodeStreams(1, 3)["directions"], np.array([0, 2, 1]), 4, 9)
    np.testing.assert_allclose(np.einsum("kqd,kpd->kqp", U, U), np.broadcast_to(np.eye(4), (3, 4, 4)), atol=1e-12)
    # Q > d: independent orthonormal blocks of d directions
    V = sample_directions("orthonormal", NodeStreams(1, 3)["directions"], np.array([0]), 11, 4)[0]
    for blk in (V[:4], V[4:8], V[8:]):
        np.testing.assert_allclose(blk @ blk.T, np.eye(len(blk)), atol=1e-12)


def test_draws_are_per_client() -> None:
    """A client's directions do not depend on which other clients share the call."""
    a = sample_directions("orthonormal", NodeStreams(5, 4)["directions"], np.array([0, 3]), 3, 5)
    b = sample_directions("orthonormal", NodeStreams(5, 4)["directions"], np.array([3]), 3, 5)
    np.testing.assert_array_equal(a[1], b[0])


def test_query_counts_per_row() -> None:
    meter = Meter(2)
    oracle = CountingOracle(Cubic(C), meter)
    nodes = np.array([0, 1, 1])
    X = np.tile(X0, (3, 1))
    U = sample_directions("gaussian", NodeStreams(0, 2)["directions"], nodes, 5, D)
    fd_gradient(oracle, X, nodes, U, 0.01)                                      # Q + 1
    fd_gradient(oracle, X, nodes, U, 0.01, "central")                           # 2Q
    fd_gradient(oracle, X, nodes, U, 0.01, f0=np.zeros(3))                      # Q
    coordinate_gradient(oracle, X, nodes, 0.01)                                  # d + 1
    np.testing.assert_array_equal(meter.per_node()["queries"], np.array([1, 2]) * (6 + 10 + 5 + D + 1))


def test_coordinate_central_differences_are_exact_on_a_quadratic_and_close_on_a_cubic() -> None:
    oracle = CountingOracle(Cubic(C), Meter(2))
    nodes = np.array([0, 1])
    X = np.stack([X0, -X0])
    g, fx = coordinate_gradient(oracle, X, nodes, 1e-4, "central")
    assert fx is None
    # central differences of a cubic: error μ² exactly (third derivative 6, /6)
    np.testing.assert_allclose(g, 3.0 * (X - C) ** 2 + 1e-8, atol=1e-7)


def test_bad_input_is_a_clear_error() -> None:
    oracle = CountingOracle(Cubic(C), Meter(2))
    U = np.ones((1, 1, D))
    with pytest.raises(ValueError, match="scheme 'backward'"):
        fd_gradient(oracle, X0[None], np.array([0]), U, 0.1, "backward")
    with pytest.raises(ValueError, match="'normal' is not one of gaussian"):
        sample_directions("normal", NodeStreams(0, 2)["directions"], np.array([0]), 1, D)
