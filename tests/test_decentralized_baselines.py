"""Baselines of the DADAO comparison: ADOM+, MSDA, accelerated continuized gossip, gradient tracking."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

from fedopt.algorithms import make_algorithm
from fedopt.engines.base import RunSpec, Simulation, StopCriteria
from fedopt.problems.base import Problem, problem_factory, quadratic_form
from fedopt.problems.quadratic import random_quadratic
from fedopt.topology.graph import Topology
from fedopt.topology.time_varying import TimeVaryingTopology


def _least_squares(n: int, d: int, seed: int) -> Problem:
    """Least squares with heterogeneous local data (the dual methods' problem)."""
    return problem_factory("least_squares")(n=n, data=_data(n, d), seed=seed)


def _logistic(n: int, d: int, seed: int) -> Problem:
    return problem_factory("logistic")(n=n, data=_data(n, d), reg=1.0, seed=seed)


def _data(n: int, d: int) -> dict[str, object]:
    return {"source": "synthetic", "n_samples": 20 * n, "d": d}


def _run(prob: Problem, top: Topology, algo: str, stop: StopCriteria, every: float, **params: object) -> list[dict]:
    res = Simulation(RunSpec("r", prob, top, make_algorithm(algo, **params), 0, stop, record_every=every)).run()
    assert res.status == "ok", res.message
    return res.rows


def _rel(rows: list[dict]) -> float:
    return rows[-1]["dist_opt"] / rows[0]["dist_opt"]


CYCLE = Topology.from_networkx("cycle", nx.cycle_graph(10))
STAR = Topology.from_networkx("star", nx.star_graph(9))
COMPLETE = Topology.from_networkx("complete", nx.complete_graph(10))


# ---- dual oracle -----------------------------------------------------------------------
def test_conjugate_gradient_inverts_the_gradient() -> None:
    prob = _least_squares(6, 4, seed=0)
    A, b, _ = quadratic_form(prob)
    X = np.random.default_rng(0).normal(size=(6, 4))
    nodes = np.arange(6)
    np.testing.assert_allclose(prob.conjugate_grad(prob.grad(X, nodes), nodes), X, atol=1e-10)
    with pytest.raises(ValueError, match="closed form"):
        quadratic_form(_logistic(4, 3, seed=0))


# ---- convergence to x* -------------------------------------------------------------------
@pytest.mark.parametrize("top", [CYCLE, STAR, COMPLETE], ids=lambda t: t.name)
def test_msda_converges_to_minimizer(top: Topology) -> None:
    rows = _run(_least_squares(top.n, 3, seed=1), top, "msda", StopCriteria(rounds=150), 50)
    assert _rel(rows) < 1e-12


@pytest.mark.parametrize("top", [CYCLE, STAR, COMPLETE], ids=lambda t: t.name)
def test_continuized_converges_to_minimizer(top: Topology) -> None:
    prob = _least_squares(top.n, 3, seed=1)
    rows = _run(prob, top, "continuized", StopCriteria(time=40.0), 10.0, event_rate=200.0)
    assert _rel(rows) < 1e-12
    last = rows[-1]
    assert last["grad_evals"] == 2 * last["messages"]  # two dual gradients per communication
    assert last["messages"] / last["time"] == pytest.approx(200.0, rel=0.05)


@pytest.mark.parametrize("top", [CYCLE, STAR], ids=lambda t: t.name)
def test_adom_plus_multi_consensus_converges(top: Topology) -> None:
    prob = random_quadratic(top.n, 3, mu=1.0, L=5.0, seed=2)
    rows = _run(prob, top, "adom_plus", StopCriteria(rounds=1500), 500, multi_consensus=True)
    assert _rel(rows) < 1e-8


def test_adom_plus_converges() -> None:
    prob = random_quadratic(COMPLETE.n, 3, mu=1.0, L=5.0, seed=2)
    rows = _run(prob, COMPLETE, "adom_plus", StopCriteria(rounds=600), 200)
    assert _rel(rows) < 1e-10
    # without multi-consensus it still converges on a sparse graph, χ times slower
    rows = _run(random_quadratic(8, 2, mu=1.0, L=3.0, seed=2), Topology.from_networkx("c", nx.cycle_graph(8)),
                "adom_plus", StopCriteria(rounds=6000), 2000)
    assert _rel(rows) < 1e-6
    d = [r["dist_opt"] for r in rows]
    assert d[3] < 0.1 * d[2] < 0.01 * d[1]


@pytest.mark.parametrize("top", [CYCLE, STAR], ids=lambda t: t.name)
def test_gradient_tracking_converges_on_least_squares(top: Topology) -> None:
    rows = _run(_least_squares(top.n, 3, seed=3), top, "gradient_tracking", StopCriteria(rounds=2000), 500)
    assert _rel(rows) < 1e-12


def test_gradient_tracking_logistic() -> None:
    prob = _logistic(CYCLE.n, 3, seed=0)
    rows = _run(prob, CYCLE, "gradient_tracking", StopCriteria(rounds=1500), 500)
    assert _rel(rows) < 1e-12


# ---- counting (the DADAO notes' §4 table, n = 100) -----------------------------------------
def _one_round(top: Topology, algo: str, **params: object) -> dict:
    prob = random_quadratic(top.n, 2, mu=1.0, L=4.0, seed=0)
    return _run(prob, top, algo, StopCriteria(rounds=1), 1, **params)[-1]


@pytest.mark.parametrize(
    "graph, adom_mc, msda",
    [
        (nx.star_graph(99), 6930, 990),
        (nx.complete_graph(100), 4950, 4950),
        (nx.cycle_graph(100), 70300, 3100),
        (nx.grid_2d_graph(10, 10), 10080, 1440),
    ],
    ids=["star", "complete", "cycle", "grid"],
)
def test_communications_per_round_match_the_table(graph: nx.Graph, adom_mc: int, msda: int) -> None:
    top = Topology.from_networkx("g", graph)
    row = _one_round(top, "adom_plus", multi_consensus=True)
    assert row["messages"] == adom_mc and row["grad_evals"] == top.n
    row = _one_round(top, "msda")
    assert row["messages"] == msda and row["grad_evals"] == top.n
    row = _one_round(top, "adom_plus")
    assert row["messages"] == top.m
    row = _one_round(top, "gradient_tracking")
    assert row["messages"] == top.m and row["grad_evals"] == 2 * top.n  # includes ∇F(x⁰)


def test_msda_needs_a_conjugate() -> None:
    prob = _logistic(CYCLE.n, 3, seed=0)
    with pytest.raises(ValueError, match="least_squares"):
        Simulation(RunSpec("r", prob, CYCLE, make_algorithm("msda"), 0, StopCriteria(rounds=2))).start()


def test_gradient_tracking_default_step_is_stable_on_a_grid() -> None:
    """The plain Metropolis matrix has eigenvalues near −1 on a 10×10 grid and diverged at
    the default step 1/(4L); the lazy matrix converges there."""
    from fedopt.engines.base import RunSpec, Simulation, StopCriteria
    from fedopt.problems import problem_factory
    from fedopt.topology.generators import make_topology

    prob = problem_factory("logistic")(n=100, data={"source": "synthetic", "n_samples": 2000, "d": 10},
                                       partition="iid", reg=1.0, seed=0)
    spec = RunSpec("gt", prob, make_topology("grid2d", n=100), make_algorithm("gradient_tracking"), 0,
                   StopCriteria(rounds=400), record_every=400)
    rows = Simulation(spec).run().rows
    assert rows[-1]["dist_opt"] < 0.05 * rows[0]["dist_opt"]


# ---- counting by the papers' definitions ----------------------------------------------------
def _laplacian_eigenvalues(graph: nx.Graph) -> np.ndarray:
    return np.linalg.eigvalsh(nx.laplacian_matrix(graph, nodelist=range(graph.number_of_nodes())).toarray().astype(float))


@pytest.mark.parametrize("graph", [nx.cycle_graph(12), nx.path_graph(9), nx.star_graph(9)], ids=["cycle", "path", "star"])
def test_msda_counts_follow_the_paper(graph: nx.Graph) -> None:
    """Scaman et al. 2017, Alg. 2: each round every node computes one dual gradient
    ∇f_i*(x_i) (n gradient evaluations, one local step each) and the accelerated gossip
    runs K = ⌊1/√γ⌋ steps over every edge, γ = λ₂/λ_max of the Laplacian."""
    top = Topology.from_networkx("g", graph)
    ev = _laplacian_eigenvalues(graph)
    K = math.floor(1.0 / math.sqrt(ev[1] / ev[-1]))
    rounds = 6
    res = Simulation(RunSpec("msda", _least_squares(top.n, 3, seed=1), top, make_algorithm("msda"), 0,
                             StopCriteria(rounds=rounds), record_every=1)).run()
    assert res.status == "ok", res.message
    for r, row in enumerate(res.rows):
        assert row["grad_evals"] == r * top.n
        assert row["messages"] == r * K * top.m
    per = res.meter.per_node()
    assert np.array_equal(per["grad_evals"], np.full(top.n, rounds))
    assert np.array_equal(per["local_steps"], np.full(top.n, rounds))


# ---- ADOM+ multi-consensus on a time-varying sequence ----------------------------------------
#: χ = λ_max/λ₂ is 1, 10.5, 10 and 39.9: multi-consensus steps ⌈χ ln 2⌉ = 1, 8, 7, 28.
TV_GRAPHS = [nx.complete_graph(10), nx.cycle_graph(10), nx.star_graph(9), nx.path_graph(10)]


def _tv_sequence() -> TimeVaryingTopology:
    return TimeVaryingTopology([Topology.from_networkx(f"g{k}", g) for k, g in enumerate(TV_GRAPHS)], period=1.0)


def _mc_steps(graph: nx.Graph) -> int:
    ev = _laplacian_eigenvalues(graph)
    return max(1, math.ceil(ev[-1] / ev[1] * math.log(2)))


def _communications_per_round(rule: str | None, rounds: int) -> list[float]:
    params: dict[str, object] = {"multi_consensus": True}
    if rule is not None:
        params["multi_consensus_rounds"] = rule
    prob = random_quadratic(10, 2, mu=1.0, L=4.0, seed=0)
    res = Simulation(RunSpec("tv", prob, _tv_sequence(), make_algorithm("adom_plus", **params), 0,
                             StopCriteria(rounds=rounds), record_every=1)).run()
    assert res.status == "ok", res.message
    return np.diff([row["messages"] for row in res.rows]).tolist()


@pytest.mark.parametrize("rule", [None, "worst_case"], ids=["default", "worst_case"])
def test_adom_plus_multi_consensus_uses_the_worst_case_steps_on_every_graph(rule: str | None) -> None:
    """The published rule (the default): K = ⌈χ ln 2⌉ with χ the worst over the sequence
    (from the graphs' Laplacians here), the same K in every round whatever graph is in force."""
    K = max(_mc_steps(g) for g in TV_GRAPHS)
    assert K == 28
    per_round = _communications_per_round(rule, 8)
    edges = [TV_GRAPHS[r % 4].number_of_edges() for r in range(8)]
    assert per_round == [K * m for m in edges]


def test_adom_plus_multi_consensus_per_graph_follows_the_graph_in_force() -> None:
    per_round = _communications_per_round("per_graph", 8)
    expected = [_mc_steps(TV_GRAPHS[r % 4]) * TV_GRAPHS[r % 4].number_of_edges() for r in range(8)]
    assert expected[:4] == [45 * 1, 10 * 8, 9 * 7, 9 * 28]
    assert per_round == expected


@pytest.mark.parametrize("rule", ["worst_case", "per_graph"])
def test_adom_plus_multi_consensus_converges_on_a_sequence(rule: str) -> None:
    prob = random_quadratic(10, 2, mu=1.0, L=4.0, seed=0)
    res = Simulation(RunSpec("tv", prob, _tv_sequence(),
                             make_algorithm("adom_plus", multi_consensus=True, multi_consensus_rounds=rule), 0,
                             StopCriteria(rounds=600), record_every=300)).run()
    assert res.status == "ok", res.message
    assert _rel(res.rows) < 1e-8


def test_adom_plus_rejects_an_unknown_multi_consensus_rule() -> None:
    with pytest.raises(ValueError, match="multi_consensus_rounds.*'worst_case' or 'per_graph'"):
        make_algorithm("adom_plus", multi_consensus=True, multi_consensus_rounds="graph")
