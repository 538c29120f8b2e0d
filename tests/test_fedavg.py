"""FedAvg (McMahan et al. 2017, Alg. 1): reductions and accounting."""

from __future__ import annotations

import networkx as nx
import numpy as np

from fedopt.algorithms import make_algorithm
from fedopt.engines.base import RunSpec, Simulation, StopCriteria
from fedopt.problems.quadratic import random_quadratic
from fedopt.topology.graph import Topology

STAR = Topology.from_networkx("star", nx.star_graph(7))


def _run(prob, rounds: int, **params) -> Simulation:
    spec = RunSpec("r", prob, STAR, make_algorithm("fedavg", **params), 0, StopCriteria(rounds=rounds), record_every=1)
    sim = Simulation(spec)
    sim.run()
    return sim


def test_one_local_step_is_gradient_descent() -> None:
    prob = random_quadratic(8, 5, mu=1.0, L=4.0, seed=1)
    sim = _run(prob, 30, lr=0.2, local_steps=1)
    x = np.zeros(5)
    for _ in range(30):
        x = x - 0.2 * prob.global_grad(x)
    np.testing.assert_allclose(sim.state["server"], x, atol=1e-13)


def test_converges_on_identical_clients_and_counts() -> None:
    prob = random_quadratic(8, 5, mu=1.0, L=4.0, heterogeneity=0.0, seed=2)
    sim = _run(prob, 60, lr=0.2, local_steps=5, clients_per_round=3)
    assert sim.rows[-1]["dist_opt"] < 1e-12 * max(sim.rows[0]["dist_opt"], 1.0)
    tot = sim.meter.totals()
    assert tot["grad_evals"] == 60 * 3 * 5
    assert tot["messages"] == 60 * 3 * 2  # one broadcast and one upload per sampled client
    assert tot["bytes"] == 60 * 3 * 2 * 5 * 8


def test_client_drift_biases_local_steps() -> None:
    """With heterogeneous clients and many local steps FedAvg's fixed point is not x*
    (Charles & Konečný 2021); one local step has no such bias."""
    prob = random_quadratic(8, 5, mu=1.0, L=4.0, heterogeneity=1.0, seed=3)
    biased = _run(prob, 300, lr=0.2, local_steps=10).rows[-1]["dist_opt"]
    exact = _run(prob, 300, lr=0.2, local_steps=1).rows[-1]["dist_opt"]
    assert exact < 1e-20 and biased > 1e-6
