"""The ray engine places state by the algorithms' declared layout: a wrong declaration or a
step that breaks the split is an error naming the algorithm and the key (never a quiet switch
to running rounds on the driver), and per-client rows and server arrays of any shape run in
the shards with the local engine's trace."""

from __future__ import annotations

import math

import layout_algorithms as la
import networkx as nx
import numpy as np
import pytest

import ray  # a dependency: a missing ray is a failure, not a skip
import ray.cloudpickle
from fedopt.algorithms.base import EventAlgorithm
from fedopt.engines.base import RunSpec, StopCriteria, make_engine
from fedopt.engines.sharded.worker import ShardWorker
from fedopt.problems.quadratic import random_quadratic
from fedopt.topology.graph import Topology
from fedopt.topology.time_varying import TimeVaryingTopology

N, D = 12, 3
TOP = Topology.from_networkx("rgg", nx.random_geometric_graph(N, 0.55, seed=4))
PROB = random_quadratic(N, D, mu=1.0, L=5.0, seed=2)


def _spec(algo, rounds: int = 4) -> RunSpec:
    stop = StopCriteria(time=3.0) if isinstance(algo, EventAlgorithm) else StopCriteria(rounds=rounds)
    return RunSpec("s", PROB, TOP, algo, 3, stop, record_every=1.0)


@pytest.fixture(scope="module")
def engine():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(la)  # the actors cannot import the tests' modules
    eng = make_engine("ray", num_actors=2, num_cpus_per_actor=0.5)
    yield eng
    eng.close()
    ray.shutdown()


@pytest.mark.parametrize("cls", [la.FedAvgExtraKey, la.FedAvgShortRows, la.GossipEdgeRows])
def test_a_wrong_declaration_is_a_clear_error_at_start(engine, cls: type) -> None:
    local = make_engine("local").run(_spec(cls()))
    got = engine.run(_spec(cls()))
    assert got.status == "error" and got.rows == []
    assert got.message.splitlines()[0] == local.message.splitlines()[0]
    assert got.message.startswith(f"ValueError: algorithm '{cls.name}': state")


def test_per_edge_state_is_refused_by_name(engine) -> None:
    assert make_engine("local").run(_spec(la.GossipEdgeState())).status == "ok"
    got = engine.run(_spec(la.GossipEdgeState()))
    assert got.status == "error"
    assert got.message.splitlines()[0] == (
        "ValueError: ray engine: algorithm 'gossip_sgd': state key 'w' is declared edge; the ray engine "
        "places node and server state of event-based algorithms")


@pytest.mark.parametrize(("cls", "text"), [
    (la.ConfigureReadsClients, "algorithm 'fedavg': configure reads state key 'c', declared client"),
    (la.ClientWritesServer, "read-only"),
    (la.ClientReplacesServer, "algorithm 'fedavg': client_update replaces state key 'server', declared server"),
    (la.AggregateReturnsMore, "algorithm 'fedavg': aggregate returns state keys ['extra_key', 'server']"),
    (la.GossipWritesServer, "read-only"),
    (la.GossipReplacesServer, "algorithm 'gossip_sgd': the node handlers replace state key 'scale', declared server"),
])
def test_a_step_that_breaks_the_split_is_an_error_not_a_driver_run(engine, cls: type, text: str) -> None:
    got = engine.run(_spec(cls()))
    assert got.status == "error", got.message
    assert text in got.message
    assert "rounds ran on the driver" not in got.message


def _assert_same(ref, got) -> None:
    assert len(ref.rows) == len(got.rows) > 1
    for a, b in zip(ref.rows, got.rows):
        assert set(a) == set(b)
        for k, v in a.items():
            if k == "wall_s":
                continue
            if v is None or (isinstance(v, float) and math.isnan(v)):
                assert b[k] is None if v is None else math.isnan(b[k]), k
            else:
                assert b[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    assert set(ref.final_state) == set(got.final_state)
    for k, v in ref.final_state.items():
        np.testing.assert_allclose(got.final_state[k], v, rtol=1e-9, atol=1e-12)


def test_client_rows_and_a_server_table_with_n_rows_run_in_the_shards(engine) -> None:
    """A server array with one entry per client is the server's (it used to be taken for
    per-client rows by its shape, and the rounds then ran on the driver); the per-client rows
    live in the shards and come back at every record point."""
    spec = _spec(la.ScaffoldLite(clients_per_round=5))
    ref = make_engine("local").run(spec)
    got = engine.run(_spec(la.ScaffoldLite(clients_per_round=5)))
    assert ref.status == got.status == "ok", got.message
    assert got.message == ""
    _assert_same(ref, got)
    assert got.final_state["seen"].sum() == 20


def test_server_arrays_of_event_algorithms_are_read_in_the_shards(engine) -> None:
    ref = make_engine("local").run(_spec(la.ScaledGossip()))
    got = engine.run(_spec(la.ScaledGossip()))
    assert ref.status == got.status == "ok", got.message
    _assert_same(ref, got)


def test_the_shards_use_the_drivers_prepared_objects_for_the_graph_in_force() -> None:
    """The worker takes the precomputations it is given (one per graph of the run) and switches
    them with the graph; it does not build its own."""
    from fedopt.algorithms import make_algorithm
    from fedopt.algorithms.base import PreparedRun

    seq = TimeVaryingTopology([TOP, Topology.from_networkx("complete", nx.complete_graph(N))], period=1.0)
    spec = RunSpec("tv", PROB, seq, make_algorithm("dadao"), 0, StopCriteria(time=2.0))
    shipped = PreparedRun.build(spec.algorithm, PROB, seq).prepared
    worker = ShardWorker()
    worker.setup(spec, shipped, 0, np.arange(N))
    assert worker.ctx.sequence is seq and worker.ctx.prepared is shipped[0]
    worker._set_period(1)
    assert worker.ctx.topology is seq.topologies[1] and worker.ctx.prepared is shipped[1]
