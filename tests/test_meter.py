"""The meter: per-edge counts keyed by node pair across a time-varying sequence, state
round trips, and counting failures that end a run as an error."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from fedopt.algorithms import make_algorithm
from fedopt.algorithms.base import Context, Layout, RoundAlgorithm
from fedopt.core.arrays import State
from fedopt.core.meter import NODE_COUNTERS, Channel, Meter
from fedopt.engines.base import RunSpec, StopCriteria, make_engine
from fedopt.problems.quadratic import random_quadratic
from fedopt.topology.graph import Topology
from fedopt.topology.time_varying import TimeVaryingTopology

N = 8
#: A cycle, then the complete graph: the later graph has more edges (8, then 28).
SPARSE = Topology.from_networkx("cycle", nx.cycle_graph(N))
DENSE = Topology.from_networkx("complete", nx.complete_graph(N))
SEQUENCE = TimeVaryingTopology([SPARSE, DENSE], period=1.0)
PROB = random_quadratic(N, 3, mu=1.0, L=10.0, seed=0)


def _edge_set(g: nx.Graph) -> set[tuple[int, int]]:
    return {(min(i, j), max(i, j)) for i, j in g.edges()}


def _round_trip(meter: Meter) -> Meter:
    copy = Meter(n=meter.n, bytes_per_float=meter.bytes_per_float)
    copy.load_state_dict(meter.state_dict())
    return copy


def test_per_edge_counts_are_keyed_by_pair_across_graphs() -> None:
    """DGD for 5 rounds on cycle, complete, cycle, complete, cycle: every round sends two
    messages over each edge of the graph in force; a cycle edge (also in the complete
    graph) accumulates over all 5 rounds, a chord over the 2 complete rounds."""
    rounds = 5
    res = make_engine("local").run(RunSpec("tv", PROB, SEQUENCE, make_algorithm("dgd"), 0,
                                           StopCriteria(rounds=rounds), record_every=1.0))
    assert res.status == "ok", res.message
    graphs = [nx.cycle_graph(N) if r % 2 == 0 else nx.complete_graph(N) for r in range(rounds)]
    expected: dict[tuple[int, int], float] = {}
    for g in graphs:
        for e in _edge_set(g):
            expected[e] = expected.get(e, 0.0) + 2.0
    assert res.meter is not None
    assert res.meter.per_edge() == expected
    assert res.meter.per_edge()[(0, 1)] == 2.0 * rounds and res.meter.per_edge()[(0, 2)] == 4.0
    assert sum(expected.values()) == 2 * res.rows[-1]["messages"]


def test_state_dict_round_trips_after_a_sequence_with_more_edges_later() -> None:
    """The meter of an event-based run over the sequence saves and restores exactly, and
    its per-edge counts agree with the per-node message counts."""
    res = make_engine("local").run(RunSpec("tv", PROB, SEQUENCE, make_algorithm("gossip_sgd", lr=0.05), 0,
                                           StopCriteria(time=4.0), record_every=1.0))
    assert res.status == "ok", res.message
    meter = res.meter
    assert meter is not None
    copy = _round_trip(meter)
    per_edge = meter.per_edge()
    assert set(per_edge) <= _edge_set(nx.complete_graph(N))
    assert set(per_edge) - _edge_set(nx.cycle_graph(N))  # chords: gossip on the later graph was counted
    assert all(i < j for i, j in per_edge)
    sent = np.zeros(N)
    for (i, j), c in per_edge.items():  # each exchange: one message from each end
        sent[i] += c / 2
        sent[j] += c / 2
    np.testing.assert_array_equal(sent, meter.per_node()["messages_sent"])
    assert copy.per_edge() == per_edge
    assert copy.totals() == meter.totals()
    for name in NODE_COUNTERS:
        np.testing.assert_array_equal(copy.per_node()[name], meter.per_node()[name])


def test_pair_counts_unit() -> None:
    meter = Meter(n=5)
    ch = Channel(meter)
    ch.exchange(np.array([3, 0]), np.array([1, 4]), None, 2)
    ch.exchange(np.array([1]), np.array([3]), None, 2)  # the same edge, endpoints swapped
    assert meter.per_edge() == {(0, 4): 2.0, (1, 3): 4.0}
    sd = meter.state_dict()
    np.testing.assert_array_equal(sd["edge_pairs"], [[0, 4], [1, 3]])
    # a pair listed twice (meters of two shards) adds up
    sd2 = dict(sd, edge_pairs=np.array([[1, 3], [0, 4], [1, 3]]), edge_messages=np.array([1.0, 2.0, 3.0]))
    merged = Meter(n=5)
    merged.load_state_dict(sd2)
    assert merged.per_edge() == {(0, 4): 2.0, (1, 3): 4.0}
    assert Meter(n=5).per_edge() == {} and _round_trip(Meter(n=5)).per_edge() == {}


@pytest.mark.parametrize("a, b", [(2, 2), (0, 5), (-1, 3)])
def test_a_bad_pair_fails_when_counts_are_reduced(a: int, b: int) -> None:
    meter = Meter(n=5)
    meter.edge_messages.add(np.array([a]), np.array([b]))
    with pytest.raises(ValueError, match="per-edge count"):
        meter.flush()


class _SelfGossip(RoundAlgorithm):
    """A broken algorithm: it 'exchanges' between node 0 and itself."""

    name = "self_gossip"
    layout = {"x": Layout.NODE}

    def init(self, ctx: Context) -> State:
        return {"x": np.zeros((ctx.n, ctx.d))}

    def round(self, state: State, ctx: Context, r: int) -> State:
        ctx.channel.exchange(np.array([0]), np.array([0]), np.array([0]), ctx.d)
        return state


def test_a_count_that_cannot_be_recorded_makes_the_run_an_error() -> None:
    """Counts are reduced at every record point, so a bad count ends the run with
    status 'error' there (it used to surface only when the meter was read after an 'ok')."""
    res = make_engine("local").run(RunSpec("bad", PROB, SPARSE, _SelfGossip(), 0, StopCriteria(rounds=3), 1.0))
    assert res.status == "error"
    assert "per-edge count" in res.message and "(0, 0)" in res.message


def test_a_node_outside_the_run_fails_when_counts_are_reduced() -> None:
    meter = Meter(n=3)
    meter.grad_evals.add(np.array([0, 3]))
    with pytest.raises(ValueError, match=r"per-node count: node 3 is outside 0\.\.2"):
        meter.flush()


def test_batch_weights_mix_numbers_and_arrays() -> None:
    meter = Meter(n=4)
    meter.grad_evals.add(np.array([0, 1]))
    meter.grad_evals.add(np.array([1, 2, 3]), np.array([0.5, 0.25, 2.0]))
    meter.grad_evals.add(np.array([3]), 3)
    meter.grad_evals.add_all(1.0)
    np.testing.assert_array_equal(meter.per_node()["grad_evals"], [2.0, 2.5, 1.25, 6.0])
