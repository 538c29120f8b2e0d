"""Spectral constants against closed forms; dense and sparse paths agree."""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference_spectral as ref_spec

from fedopt.topology import spectral
from fedopt.topology.generators import make_topology
from fedopt.topology.mixing import metropolis_weights
from fedopt.topology.spectral import (
    chi1,
    chi2,
    effective_resistances,
    lambda2,
    normalized_laplacian_rate,
    spectral_gap,
    summarize,
)


@pytest.mark.parametrize("n", [5, 16, 33])
def test_cycle_lambda2_closed_form(n: int) -> None:
    assert lambda2(make_topology("cycle", n=n)) == pytest.approx(2 - 2 * math.cos(2 * math.pi / n), rel=1e-10)


@pytest.mark.parametrize("n", [4, 10, 25])
def test_complete_lambda2_and_resistances(n: int) -> None:
    top = make_topology("complete", n=n)
    assert lambda2(top) == pytest.approx(n, rel=1e-10)
    np.testing.assert_allclose(effective_resistances(top), 2.0 / n, rtol=1e-10)
    assert chi2(top) == pytest.approx(1.0 / n)


def test_path_and_star_and_hypercube_lambda2() -> None:
    n = 12
    assert lambda2(make_topology("path", n=n)) == pytest.approx(2 - 2 * math.cos(math.pi / n), rel=1e-10)
    assert lambda2(make_topology("star", n=n)) == pytest.approx(1.0, rel=1e-10)
    assert lambda2(make_topology("hypercube", n=16)) == pytest.approx(2.0, rel=1e-10)
    # a tree: every edge is a bridge, resistance 1
    np.testing.assert_allclose(effective_resistances(make_topology("binary_tree", n=n)), 1.0, rtol=1e-10)


def _cycle_rate(n: int) -> float:
    """``λ_tot = m √(R/λ2)`` with ``m = n``, edge resistance ``R = (n−1)/n``, ``λ2 = 2 − 2cos(2π/n)``."""
    return math.sqrt(n * (n - 1) / (2 - 2 * math.cos(2 * math.pi / n)))


def _path_rate(n: int) -> float:
    """``λ_tot = m √(R/λ2)`` with ``m = n − 1``, ``R = 1`` (every edge a bridge), ``λ2 = 2 − 2cos(π/n)``."""
    return (n - 1) / math.sqrt(2 - 2 * math.cos(math.pi / n))


@pytest.mark.parametrize(
    ("name", "n", "rate"),
    [
        ("star", 10, 9.0),
        ("star", 31, 30.0),
        ("complete", 10, 9 / math.sqrt(2)),
        ("complete", 20, 19 / math.sqrt(2)),
        ("cycle", 16, _cycle_rate(16)),
        ("path", 16, _path_rate(16)),
        ("cycle", 100, _cycle_rate(100)),
    ],
)
def test_normalized_rate_closed_forms(name: str, n: int, rate: float) -> None:
    """``λ_tot = √(2 χ1 χ2)`` of ``L_G/|E|``; with ``χ1(L_G/m) = m/λ2`` and ``χ2(L_G/m) = m R_max/2``
    it is ``m √(R_max/λ2)`` (the notes' worked values: cycle 16 ≈ 39.70, path 16 ≈ 76.52, cycle 100 ≈ 1584)."""
    got = normalized_laplacian_rate(make_topology(name, n=n))
    assert got == pytest.approx(rate, rel=1e-9)


@pytest.mark.parametrize("name", ["cycle", "star", "grid2d", "random_geometric", "barbell", "watts_strogatz"])
def test_chi2_at_most_chi1(name: str) -> None:
    top = make_topology(name, n=16)
    rng = np.random.default_rng(0)
    for w in (None, rng.uniform(0.1, 3.0, top.m)):
        assert chi2(top, w) <= chi1(top, w) * (1 + 1e-12)


def test_homogeneity() -> None:
    top = make_topology("random_geometric", n=30, seed=2)
    w = np.random.default_rng(1).uniform(0.5, 2.0, top.m)
    for c in (0.1, 3.0, 250.0):
        assert chi1(top, c * w) == pytest.approx(chi1(top, w) / c, rel=1e-10)
        assert chi2(top, c * w) == pytest.approx(chi2(top, w) / c, rel=1e-10)
        assert lambda2(top, c * w) == pytest.approx(c * lambda2(top, w), rel=1e-10)
    # the uniform rate does not depend on a scaling of the graph's rates
    assert normalized_laplacian_rate(top.with_rates(5 * w)) == pytest.approx(normalized_laplacian_rate(top))


def test_rates_are_the_default_weights() -> None:
    top = make_topology("cycle", n=10)
    w = np.linspace(1.0, 2.0, top.m)
    c1, c2 = ref_spec.chi1(top.n, top.edges, w), ref_spec.chi2(top.n, top.edges, w)  # dense numpy
    assert c1 != pytest.approx(ref_spec.chi1(top.n, top.edges), rel=1e-3)  # unit weights would differ
    assert chi1(top.with_rates(w)) == pytest.approx(c1, rel=1e-10)
    assert chi2(top.with_rates(w)) == pytest.approx(c2, rel=1e-10)
    s = summarize(top.with_rates(w))
    assert s.chi1 == pytest.approx(c1, rel=1e-10) and s.chi2 == pytest.approx(c2, rel=1e-10)


def test_weights_are_checked() -> None:
    top = make_topology("cycle", n=6)
    with pytest.raises(ValueError, match="one value per edge"):
        chi1(top, np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        chi1(top, -np.ones(6))


def test_dense_and_sparse_paths_agree_with_pinv() -> None:
    n = spectral.SPARSE_THRESHOLD + 100
    top = make_topology("random_geometric", n=n, radius=0.1, seed=3)
    assert top.n >= spectral.SPARSE_THRESHOLD
    w = np.random.default_rng(0).uniform(0.5, 2.0, top.m)
    L = top.laplacian(w)
    P = np.linalg.pinv(L)
    i, j = top.edges[:, 0], top.edges[:, 1]
    r_ref = P[i, i] + P[j, j] - 2 * P[i, j]
    np.testing.assert_allclose(effective_resistances(top, w), r_ref, rtol=1e-8)
    assert lambda2(top, w) == pytest.approx(np.linalg.eigvalsh(L)[1], rel=1e-8)
    sp_L = spectral.laplacian(top, w)
    assert hasattr(sp_L, "tocsc")  # sparse above the threshold
    np.testing.assert_allclose(sp_L.toarray(), L)


def test_dense_path_agrees_with_pinv_on_a_small_graph() -> None:
    top = make_topology("watts_strogatz", n=40, seed=4)
    w = np.random.default_rng(2).uniform(0.5, 2.0, top.m)
    P = np.linalg.pinv(top.laplacian(w))
    i, j = top.edges[:, 0], top.edges[:, 1]
    np.testing.assert_allclose(effective_resistances(top, w), P[i, i] + P[j, j] - 2 * P[i, j], rtol=1e-9)


@pytest.mark.parametrize("name", ["star", "random_geometric", "grid2d", "barbell"])
def test_metropolis_weights_doubly_stochastic(name: str) -> None:
    top = make_topology(name, n=16)
    W = metropolis_weights(top)
    np.testing.assert_allclose(W, W.T)
    np.testing.assert_allclose(W.sum(axis=0), 1.0)
    np.testing.assert_allclose(W.sum(axis=1), 1.0)
    assert (W >= -1e-15).all()
    assert 0 < spectral_gap(W) <= 1
    Ws = metropolis_weights(top, sparse=True)
    np.testing.assert_allclose(Ws.toarray(), W)


def test_summary() -> None:
    s = summarize(make_topology("star", n=8))
    assert (s.n, s.edges, s.degree_min, s.degree_max) == (8, 7, 1, 7)
    assert s.lambda2 == pytest.approx(1.0) and s.chi1 == pytest.approx(1.0)
    assert s.chi2 == pytest.approx(0.5)
    assert s.rate_tot == pytest.approx(7.0)
    assert s.as_dict()["name"] == "star"
