"""Mixing matrices of the synchronous algorithms: Metropolis, fastest mixing, the topology's
own rates; DGD and gradient tracking with the fastest-mixing weights."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from fedopt.algorithms import make_algorithm
from fedopt.engines.base import RunSpec, Simulation, StopCriteria
from fedopt.problems.quadratic import random_quadratic
from fedopt.topology import spectral
from fedopt.topology.graph import Topology
from fedopt.topology.mixing import metropolis_weights, mixing_matrix
from fedopt.topology.spec import resolve_topology

BARBELL = Topology.from_networkx("barbell", nx.barbell_graph(6, 2))
LOLLIPOP = Topology.from_networkx("lollipop", nx.lollipop_graph(6, 4))


def _slem(W: np.ndarray) -> float:
    return 1.0 - spectral.spectral_gap(W)


def test_metropolis_matches_the_formula() -> None:
    # independent: W_ij = 1/(1 + max(d_i, d_j)) on edges, W_ii = 1 − Σ_j W_ij, from networkx degrees
    g = nx.barbell_graph(6, 2)
    W = np.zeros((g.number_of_nodes(),) * 2)
    for i, j in g.edges():
        W[i, j] = W[j, i] = 1.0 / (1 + max(g.degree(i), g.degree(j)))
    W[np.diag_indices_from(W)] = 1.0 - W.sum(axis=1)
    np.testing.assert_allclose(mixing_matrix(BARBELL, "metropolis"), W, atol=1e-15)
    np.testing.assert_allclose(metropolis_weights(BARBELL), W, atol=1e-15)
    np.testing.assert_allclose(metropolis_weights(BARBELL, sparse=True).toarray(), W, atol=1e-15)


@pytest.mark.parametrize("top", [BARBELL, LOLLIPOP], ids=lambda t: t.name)
def test_fastest_mixing_is_doubly_stochastic_and_mixes_faster(top: Topology) -> None:
    W = mixing_matrix(top, "fastest_mixing")
    np.testing.assert_allclose(W, W.T, atol=1e-15)
    np.testing.assert_allclose(W.sum(axis=1), 1.0, atol=1e-12)
    assert W.min() >= -1e-12
    assert _slem(W) < _slem(mixing_matrix(top, "metropolis")) - 1e-3


def test_lazy_spectrum_in_unit_interval() -> None:
    ev = np.linalg.eigvalsh(mixing_matrix(LOLLIPOP, "fastest_mixing", lazy=True))
    assert ev.min() >= -1e-12 and ev.max() == pytest.approx(1.0)


def test_rates_mixing_from_a_spec_and_its_errors() -> None:
    top = resolve_topology({"name": "barbell", "n": 12, "rates": {"objective": "fastest_mixing"}})
    np.testing.assert_allclose(mixing_matrix(top, "rates"), mixing_matrix(top, "fastest_mixing"), atol=1e-12)
    with pytest.raises(ValueError, match="needs per-edge rates"):
        mixing_matrix(BARBELL, "rates")
    with pytest.raises(ValueError, match="sum to"):
        mixing_matrix(BARBELL.with_rates(np.ones(BARBELL.m)), "rates")
    with pytest.raises(ValueError, match="unknown mixing 'boyd'; choose one of: metropolis, fastest_mixing, rates"):
        mixing_matrix(BARBELL, "boyd")
    with pytest.raises(ValueError, match="choose one of"):
        make_algorithm("dgd", mixing="boyd")


def _rounds_to(tol: float, algo: str, top: Topology, **params: object) -> int:
    prob = random_quadratic(n=top.n, d=4, mu=1.0, L=10.0, seed=0)
    res = Simulation(RunSpec("r", prob, top, make_algorithm(algo, **params), 0, StopCriteria(rounds=3000),
                             record_every=10)).run()
    assert res.status == "ok", res.message
    d0 = res.rows[0]["dist_opt"]
    return next(r["round"] for r in res.rows if r["dist_opt"] <= tol * d0)


def test_gradient_tracking_converges_faster_with_fastest_mixing() -> None:
    # the bottleneck edge limits both; lazy weights throughout (the default step needs them)
    slow = _rounds_to(1e-2, "gradient_tracking", BARBELL)
    fast = _rounds_to(1e-2, "gradient_tracking", BARBELL, mixing="fastest_mixing")
    assert fast < 0.5 * slow, (fast, slow)


def _final_dist(algo: str, top: Topology, **params: object) -> float:
    prob = random_quadratic(n=top.n, d=4, mu=1.0, L=10.0, seed=0)
    res = Simulation(RunSpec("r", prob, top, make_algorithm(algo, **params), 0, StopCriteria(rounds=800),
                             record_every=100)).run()
    assert res.status == "ok", res.message
    return float(res.rows[-1]["dist_opt"])


def test_dgd_neighbourhood_shrinks_with_fastest_mixing() -> None:
    # constant-step DGD stalls at O(α/(1 − σ₂(W))) from x* (Yuan, Ling & Yin 2016, Thm. 4)
    metropolis = _final_dist("dgd", BARBELL, lr=0.02)
    fastest = _final_dist("dgd", BARBELL, lr=0.02, mixing="fastest_mixing")
    assert fastest < 0.9 * metropolis, (fastest, metropolis)


def test_finite_blow_up_is_reported_as_divergence() -> None:
    # W_fm of a path has an eigenvalue −cos(π/n) ≈ −0.98: DGD with α·L = 0.2 > 1 + λ_min(W)
    # is unstable; the iterates explode while staying finite for hundreds of rounds.
    path = Topology.from_networkx("path", nx.path_graph(16))
    prob = random_quadratic(n=16, d=4, mu=1.0, L=10.0, seed=0)
    spec = RunSpec("r", prob, path, make_algorithm("dgd", lr=0.02, mixing="fastest_mixing"), 0,
                   StopCriteria(rounds=1500), record_every=25)
    res = Simulation(spec).run()
    assert res.status == "diverged" and "blew up" in res.message
    assert np.isfinite(res.rows[-1]["dist_opt"])
    lazy = Simulation(RunSpec("r", prob, path, make_algorithm("dgd", lr=0.02, mixing="fastest_mixing", lazy=True),
                              0, StopCriteria(rounds=300), record_every=25)).run()
    assert lazy.status == "ok"
