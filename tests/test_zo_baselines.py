"""Federated finite-difference baselines: a per-client reference loop, reductions between the
methods, and query / message counts equal to their formulas."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from fedopt.algorithms import make_algorithm
from fedopt.core.rng import RngStreams
from fedopt.engines.base import RunSpec, Simulation, StopCriteria
from fedopt.problems import problem_factory
from fedopt.problems.base import Problem
from fedopt.topology.graph import Topology

N, D = 3, 8
STAR = Topology.from_networkx("star", nx.star_graph(N - 1))
PROB = problem_factory("dirichlet_quadratic")(n=N, d=D, C=5.0, seed=4)


def _run(name: str, rounds: int, seed: int = 0, prob=PROB, **params) -> Simulation:
    spec = RunSpec("r", prob, STAR, make_algorithm(name, **params), seed, StopCriteria(rounds=rounds),
                   record_every=1)
    sim = Simulation(spec)
    sim.run()
    return sim


class ScaledQueries(Problem):
    """``base`` whose zeroth-order oracle :meth:`query` returns ``scale·f_i`` (its values and
    gradients stay ``base``'s)."""

    def __init__(self, base, scale: float) -> None:
        self.base, self.scale = base, scale
        self.n, self.d, self.L, self.mu, self.x0 = base.n, base.d, base.L, base.mu, base.x0

    def value(self, X, nodes):
        return self.base.value(X, nodes)

    def grad(self, X, nodes):
        return self.base.grad(X, nodes)

    def query(self, X, nodes):
        return self.scale * self.base.value(X, nodes)

    def solve(self):
        return self.base.solve()


def _reference_zo_fedavg(prob, rounds: int, T: int, Q: int, mu: float, lr: float, seed: int) -> np.ndarray:
    """FedAvg + Adam on orthonormal-direction forward differences, one client at a time."""
    streams = RngStreams(seed, prob.n).per_node["directions"]
    x = prob.x0.copy()
    for _ in range(rounds):
        finals = []
        for i in range(prob.n):
            xi = x.copy()
            m, v = np.zeros(D), np.zeros(D)
            f = lambda z: float(prob.value(z[None], np.array([i]))[0])  # noqa: E731
            fx = f(xi)
            for t in range(1, T + 1):
                G = streams.standard_normal(np.array([i]), (Q, D))[0]
                basis: list[np.ndarray] = []
                for u in G:  # classical Gram–Schmidt
                    for b in basis:
                        u = u - (u @ b) * b
                    basis.append(u / np.linalg.norm(u))
                g = sum((f(xi + mu * u) - fx) / mu * u for u in basis) / Q
                m = 0.9 * m + 0.1 * g
                v = 0.999 * v + 0.001 * g * g
                xi = xi - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
                fx = f(xi)
            finals.append(xi)
        x = np.mean(finals, axis=0)
    return x


def test_zo_fedavg_matches_a_per_client_reference() -> None:
    sim = _run("zo_fedavg", 3, seed=2, local_steps=4, num_dirs=5, mu=0.01, lr=0.05)
    ref = _reference_zo_fedavg(PROB, 3, 4, 5, 0.01, 0.05, seed=2)
    np.testing.assert_allclose(sim.state["x"], ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["zo_fedavg", "zo_scaffold1", "zo_scaffold2"])
def test_the_estimates_use_the_query_oracle(name: str) -> None:
    """Queries that return 2·f_i double every finite difference: SGD with step η on them is SGD with
    step 2η on f_i (the estimates read :meth:`Problem.query`, not :meth:`Problem.value`)."""
    kw = {"local_steps": 3, "num_dirs": 4, "optimizer": "sgd"}
    scaled = _run(name, 2, prob=ScaledQueries(PROB, 2.0), lr=0.01, **kw).state["x"]
    direct = _run(name, 2, lr=0.02, **kw).state["x"]
    np.testing.assert_allclose(scaled, direct, rtol=1e-12, atol=1e-14)
    assert not np.allclose(_run(name, 2, lr=0.01, **kw).state["x"], direct, rtol=1e-6)


def test_fedprox_with_zero_gamma_is_fedavg_and_gamma_pulls_towards_the_server_point() -> None:
    base = _run("zo_fedavg", 3, local_steps=5, num_dirs=4).state["x"]
    np.testing.assert_array_equal(_run("zo_fedprox", 3, local_steps=5, num_dirs=4, gamma=0.0).state["x"], base)
    prox = _run("zo_fedprox", 3, local_steps=5, num_dirs=4, gamma=1.0).state["x"]
    assert not np.array_equal(prox, base)


def test_scaffold_first_round_has_no_correction() -> None:
    base = _run("zo_fedavg", 1, local_steps=5, num_dirs=4).state["x"]
    for name in ("zo_scaffold1", "zo_scaffold2"):
        np.testing.assert_array_equal(_run(name, 1, local_steps=5, num_dirs=4).state["x"], base)
        assert not np.array_equal(_run(name, 2, local_steps=5, num_dirs=4).state["x"],
                                  _run("zo_fedavg", 2, local_steps=5, num_dirs=4).state["x"])


def test_scaffold2_control_variates_are_the_previous_round_means() -> None:
    """With a 1-step round, c_i is the client's one uncorrected estimate at x_{r−1}."""
    sim = _run("zo_scaffold2", 1, local_steps=1, num_dirs=8, optimizer="sgd", lr=0.1)
    x0 = PROB.x0
    # SGD step: x_i = x0 − lr·c_i, so the server average is x0 − lr·c
    np.testing.assert_allclose(sim.state["x"], x0 - 0.1 * sim.state["c"], atol=1e-14)
    np.testing.assert_allclose(sim.state["c"], sim.state["ci"].mean(axis=0), atol=1e-15)


@pytest.mark.parametrize("scheme", ["forward", "central"])
@pytest.mark.parametrize("name,extra_queries,down,up", [
    ("zo_fedavg", 0, lambda r, d: r * d, lambda r, d: r * d),
    ("fedzo", 0, lambda r, d: r * d, lambda r, d: r * d),
    ("zo_fedprox", 0, lambda r, d: r * d, lambda r, d: r * d),
    ("zo_scaffold2", 0, lambda r, d: d + (r - 1) * 2 * d, lambda r, d: r * 2 * d),
    ("zo_scaffold1", 1, lambda r, d: d + (r - 1) * 2 * d + r * d, lambda r, d: r * 2 * d),
])
def test_query_and_message_counts_equal_the_formula(name, extra_queries, down, up, scheme) -> None:
    R, T, Q = 4, 3, 5
    sim = _run(name, R, local_steps=T, num_dirs=Q, scheme=scheme)
    per = sim.meter.per_node()
    # forward: f(x_r) + T(Q perturbed + new iterate) [+ (Q + 1) at x_r for type I];
    # central: T·2Q perturbed + new iterates (no start query) [+ 2Q]
    if scheme == "forward":
        want = R * (1 + T * (Q + 1)) + extra_queries * R * (Q + 1)
    else:
        want = R * (T * (2 * Q + 1)) + extra_queries * R * 2 * Q
    np.testing.assert_array_equal(per["queries"], np.full(N, want))
    uploads = 2 if name == "zo_scaffold1" else 1
    np.testing.assert_array_equal(per["messages_sent"], np.full(N, R * uploads))
    np.testing.assert_array_equal(per["floats_sent"], np.full(N, up(R, D)))
    assert sim.meter.server_floats == N * down(R, D)
    assert sim.meter.totals()["messages"] == N * R * 2 * uploads
    np.testing.assert_array_equal(per["local_steps"], np.full(N, R * T))


def test_partial_participation_counts_only_sampled_clients() -> None:
    sim = _run("fedzo", 5, local_steps=2, num_dirs=3, clients_per_round=2)
    per = sim.meter.per_node()
    assert per["queries"].sum() == 5 * 2 * (1 + 2 * 4)
    assert per["messages_sent"].sum() == 10


def test_zo_fedavg_decreases_the_gap_on_the_synthetic_quadratic() -> None:
    prob = problem_factory("dirichlet_quadratic")(n=5, d=30, C=5.0, seed=0)
    rows = _run("zo_fedavg", 20, prob=prob).rows
    assert rows[-1]["subopt"] < 0.5 * rows[0]["subopt"]


def test_bad_parameters_name_the_key() -> None:
    with pytest.raises(ValueError, match="directions"):
        make_algorithm("zo_fedavg", directions="normal")
    with pytest.raises(ValueError, match="fd_scale"):
        make_algorithm("zo_scaffold1", fd_scale="d")
