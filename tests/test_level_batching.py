"""Level-batched events equal the one-event-at-a-time loop (exactness of core.levels)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from reference_loop import run_batched, run_sequential

from fedopt.algorithms import make_algorithm
from fedopt.core.clocks import EventBlock, PoissonClocks
from fedopt.core.levels import assign_levels, schedule_levels
from fedopt.core.rng import RngStreams
from fedopt.engines.base import RunSpec, StopCriteria
from fedopt.problems.empirical import least_squares
from fedopt.problems.quadratic import random_quadratic
from fedopt.topology.graph import Topology

GRAPHS = {
    "cycle": lambda: nx.cycle_graph(12),
    "star": lambda: nx.star_graph(11),
    "complete": lambda: nx.complete_graph(9),
    "rgg": lambda: nx.random_geometric_graph(30, 0.45, seed=3),
}


@pytest.mark.parametrize("graph", sorted(GRAPHS))
@pytest.mark.parametrize("seed", [0, 7])
def test_batched_equals_sequential(graph: str, seed: int) -> None:
    g = GRAPHS[graph]()
    assert nx.is_connected(g)
    top = Topology.from_networkx(graph, g)
    prob = random_quadratic(top.n, 4, mu=1.0, L=5.0, seed=seed)
    def spec() -> RunSpec:
        return RunSpec("r", prob, top, make_algorithm("gossip_sgd", lr=0.05), seed, StopCriteria(time=30.0))
    a = run_sequential(spec(), 30.0)
    b = run_batched(spec(), 30.0)
    assert a.n_events == b.n_events > 100
    np.testing.assert_allclose(b.state["x"], a.state["x"], rtol=0, atol=1e-12)
    assert a.meter.totals() == b.meter.totals()
    np.testing.assert_array_equal(a.meter.grad_evals.values, b.meter.grad_evals.values)


@pytest.mark.parametrize("name", ["gossip_sgd", "dadao"])
def test_batched_equals_sequential_with_minibatch_draws(name: str) -> None:
    """Minibatches come from per-node streams: levels draw for many nodes in one call, the
    one-event loop for one node at a time, and both give every node the same samples."""
    top = Topology.from_networkx("rgg", GRAPHS["rgg"]())
    data = {"source": "synthetic", "task": "regression", "n_samples": 20 * top.n, "d": 4}
    prob = least_squares(top.n, data, reg=0.1, seed=2)
    params = {"lr": 0.05} if name == "gossip_sgd" else {}

    def spec() -> RunSpec:
        return RunSpec("r", prob, top, make_algorithm(name, batch_size=3, **params), 4, StopCriteria(time=10.0))

    a = run_sequential(spec(), 10.0)
    b = run_batched(spec(), 10.0)
    assert a.n_events == b.n_events > 100
    key = "x" if name == "gossip_sgd" else "s"
    np.testing.assert_allclose(b.state[key], a.state[key], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(a.meter.grad_evals.values, b.meter.grad_evals.values)
    per_node = b.rng.per_node
    assert per_node is not None and a.rng.per_node is not None
    np.testing.assert_array_equal(per_node["sampling"].counters, a.rng.per_node["sampling"].counters)
    assert per_node["sampling"].counters.sum() > 0


def test_levels_are_conflict_free_and_respect_node_order() -> None:
    rng = np.random.default_rng(0)
    edges = np.array([[0, 1], [1, 2], [2, 3], [0, 3]])
    block = PoissonClocks(np.ones(4), edges, np.full(4, 2.0)).sample(rng, 0.0, 500)
    level = assign_levels(block, 4)
    sched = schedule_levels(block, 4)
    b = sched.bounds
    for lv in range(sched.n_levels):
        ev = sched.events.take(slice(b[2 * lv], b[2 * lv + 2]))
        touched = np.concatenate([ev.node_a, ev.node_b[ev.node_b >= 0]])
        assert len(np.unique(touched)) == len(touched)
        assert not ev.is_gossip[: b[2 * lv + 1] - b[2 * lv]].any()
    # per-node order of events is preserved
    for v in range(4):
        orig = np.flatnonzero((block.node_a == v) | (block.node_b == v))
        assert (np.diff(level[orig]) > 0).all()


def test_clock_marks_follow_rates() -> None:
    edges = np.array([[0, 1], [1, 2]])
    clocks = PoissonClocks(np.array([1.0, 2.0, 3.0]), edges, np.array([4.0, 0.0]))
    ev = clocks.sample(np.random.default_rng(1), 0.0, 200_000)
    rate = len(ev) / ev.t[-1]
    assert abs(rate - 10.0) / 10.0 < 0.01
    frac = np.bincount(ev.node_a[ev.node_b < 0], minlength=3) / len(ev)
    np.testing.assert_allclose(frac, [0.1, 0.2, 0.3], atol=0.005)
    assert (ev.edge != 1).all()


def test_streams_are_independent() -> None:
    a, b = RngStreams(5), RngStreams(5)
    a["noise"].random(1000)
    assert a["clocks"].random() == b["clocks"].random()
    assert RngStreams(5)["clocks"].random() != RngStreams(6)["clocks"].random()


def test_event_stream_independent_of_slicing() -> None:
    from fedopt.core.clocks import EventStream

    clocks = PoissonClocks(np.ones(5), np.array([[0, 1], [1, 2], [3, 4], [2, 3]]), np.ones(4))
    s1 = EventStream(clocks, np.random.default_rng(3), block=64)
    s2 = EventStream(clocks, np.random.default_rng(3), block=64)
    one = s1.until(50.0)
    parts = EventBlock.concat([s2.until(t) for t in np.linspace(0.7, 50.0, 37)])
    np.testing.assert_array_equal(one.t, parts.t)
    np.testing.assert_array_equal(one.node_a, parts.node_a)
