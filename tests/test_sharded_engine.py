"""The engine-neutral sharded core over its in-process transport (``engine: sharded``):
the local engine's rows for every registered algorithm with 1, 2 and 3 shards, and the
single run loop's recovery from a lost shard, without Ray."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from equivalence import assert_same_rows, equivalence_spec

from fedopt.algorithms import algorithm_class, available_algorithms, make_algorithm
from fedopt.engines.base import RunSpec, ShardLost, StopCriteria, available_engines, make_engine
from fedopt.engines.sharded.inprocess import InProcessTransport
from fedopt.engines.sharded.simulation import ShardedSimulation
from fedopt.engines.sharded.worker import ShardWorker
from fedopt.problems.empirical import least_squares
from fedopt.problems.quadratic import random_quadratic
from fedopt.topology.graph import Topology
from fedopt.topology.time_varying import TimeVaryingTopology

N, D = 14, 4
TOP = Topology.from_networkx("rgg", nx.random_geometric_graph(N, 0.5, seed=3))
PROB = random_quadratic(N, D, mu=1.0, L=5.0, seed=1)
#: A problem with data (20 samples per node) for minibatch draws.
LS_PROB = least_squares(N, {"source": "synthetic", "task": "regression", "n_samples": 20 * N, "d": D}, reg=0.1, seed=1)
#: The rgg graph, then the complete graph: the later graph has more edges (and more cut edges).
SEQUENCE = TimeVaryingTopology([TOP, Topology.from_networkx("complete", nx.complete_graph(N))], period=1.0)
MINIBATCH = {
    "gossip_sgd": {"lr": 0.05, "batch_size": 3},
    "fedavg": {"clients_per_round": 5, "batch_size": 3, "local_steps": 3},
}


def _spec(name: str, seed: int = 3, problem=PROB, topology=TOP, **params) -> RunSpec:
    return equivalence_spec(name, seed, problem, topology, **params)


def assert_same_run(ref, got) -> None:
    assert ref.status == "ok", ref.message
    assert got.status == "ok", got.message
    assert "random streams" not in got.message, got.message
    assert_same_rows(ref.rows, got.rows)
    assert set(got.final_state) == set(ref.final_state)
    for k, v in ref.final_state.items():
        np.testing.assert_allclose(got.final_state[k], v, rtol=1e-9, atol=1e-12)
    for name in ("grad_evals", "messages_sent"):
        np.testing.assert_allclose(got.meter.per_node()[name], ref.meter.per_node()[name])
    assert got.meter.per_edge() == ref.meter.per_edge()


def test_the_engine_is_registered() -> None:
    assert "sharded" in available_engines()
    with pytest.raises(ValueError, match=r"sharded engine: num_shards must be an integer of at least 1, got 0"):
        make_engine("sharded", num_shards=0)


@pytest.mark.parametrize("name", available_algorithms())
@pytest.mark.parametrize("shards", [1, 2, 3])
def test_same_rows_as_local(name: str, shards: int) -> None:
    problem = LS_PROB if algorithm_class(name).needs_samples else PROB
    ref = make_engine("local").run(_spec(name, problem=problem))
    assert_same_run(ref, make_engine("sharded", num_shards=shards).run(_spec(name, problem=problem)))


@pytest.mark.parametrize("name", ["gossip_sgd", "dadao", "fedavg", "continuized"])
def test_time_varying_sequence_equals_local(name: str) -> None:
    """The shards switch graphs by the driver's period rule: the per-edge counts of the
    later graph's pairs merge into the local engine's."""
    ref = make_engine("local").run(_spec(name, topology=SEQUENCE))
    got = make_engine("sharded", num_shards=3).run(_spec(name, topology=SEQUENCE))
    assert_same_run(ref, got)
    if name != "fedavg":
        assert set(got.meter.per_edge()) - {tuple(e) for e in TOP.edges.tolist()}


@pytest.mark.parametrize("name", sorted(MINIBATCH))
@pytest.mark.parametrize("shards", [1, 2, 3])
def test_minibatch_draws_equal_local(name: str, shards: int) -> None:
    """Gossip SGD with minibatches and FedAvg with client sampling and minibatches: every
    node draws from its own stream, so any number of shards gives the local trace."""
    ref = make_engine("local").run(_spec(name, problem=LS_PROB, **MINIBATCH[name]))
    got = make_engine("sharded", num_shards=shards).run(_spec(name, problem=LS_PROB, **MINIBATCH[name]))
    assert_same_run(ref, got)


class _LosingTransport(InProcessTransport):
    """An in-process transport that loses shard 1 (its worker forgets everything) at the
    gathers listed in ``lose_at``, and sets up a fresh worker for it when healed."""

    def __init__(self, size: int, lose_at: set[int]) -> None:
        super().__init__(size)
        self.lose_at = set(lose_at)
        self.gathers = 0
        self.heals = 0

    def open(self, spec, prepared, shards) -> None:
        super().open(spec, prepared, shards)
        self._opened = (spec, prepared, shards)

    def gather(self, handles):
        self.gathers += 1
        if self.gathers in self.lose_at:
            self.workers[1] = ShardWorker()  # a replacement process: nothing set up
            raise ShardLost("shard 1 went away")
        return super().gather(handles)

    def heal(self) -> None:
        self.heals += 1
        spec, prepared, shards = self._opened
        if not hasattr(self.workers[1], "state"):
            self.workers[1].setup(spec, prepared, 1, shards[1])


@pytest.mark.parametrize("name", ["gossip_sgd", "fedavg"])
def test_the_run_loop_recovers_from_a_lost_shard(name: str) -> None:
    """The loop asks the transport to heal, rolls every shard and the driver back to the
    last record point and replays: the trace equals an undisturbed run's, per-node
    counters of the minibatch draws included."""
    def spec() -> RunSpec:
        return _spec(name, seed=5, problem=LS_PROB, **MINIBATCH[name])

    ref = make_engine("local").run(spec())
    transport = _LosingTransport(3, lose_at={4})
    got = ShardedSimulation(spec(), transport).run()
    assert transport.heals == 1
    assert got.status == "ok", got.message
    assert got.message == "recovered from 1 lost shard(s)"
    assert_same_rows(ref.rows, got.rows)
    for k, v in ref.final_state.items():
        np.testing.assert_allclose(got.final_state[k], v, rtol=1e-9, atol=1e-12)


def test_diff2_keeps_its_evaluations_through_a_lost_shard() -> None:
    """DIFF2 on a torch model keeps each node's evaluation at the last iterate in its
    per-client rows: the record points hold them, a lost shard gets them back with the
    checkpoint, and the replay reuses them as the undisturbed run does (one gradient
    evaluation per node and round, the same rows and state)."""
    from fedopt.problems import problem_factory

    prob = problem_factory("mlp_regression")(n=5, data={"source": "teacher", "n_samples": 53, "d": 3}, hidden=4,
                                             device="cpu", seed=2)
    top = Topology.from_networkx("complete", nx.complete_graph(5))

    def spec() -> RunSpec:
        algo = make_algorithm("diff2", lr=0.3, restart_every=4, clip_grad=0.5, clip_diff=2.0, epsilon=3.0, rounds=9)
        return RunSpec("d2", prob, top, algo, 5, StopCriteria(rounds=9), record_every=3.0)

    ref = make_engine("local").run(spec())
    assert {"kept_at", "kept"} <= set(ref.final_state)
    np.testing.assert_allclose(ref.meter.grad_evals.values, 9.0, rtol=1e-15)
    transport = _LosingTransport(3, lose_at={9})  # rolled back to round 3, a difference round
    got = ShardedSimulation(spec(), transport).run()
    assert transport.heals == 1
    assert got.message == "recovered from 1 lost shard(s)"
    assert_same_run(ref, got)


def test_a_run_that_loses_too_many_shards_is_an_error() -> None:
    transport = _LosingTransport(2, lose_at={3, 5})
    got = ShardedSimulation(_spec("gossip_sgd"), transport, max_restarts=1).run()
    assert got.status == "error"
    assert got.message.startswith("ShardLost: shard 1 went away; gave up after 1 restart(s) at time ")
    assert got.rows  # the rows up to the last record point are kept


def test_a_wrong_declaration_names_the_engine() -> None:
    import layout_algorithms as la

    spec = RunSpec("s", PROB, TOP, la.GossipEdgeState(), 3, StopCriteria(time=3.0))
    got = make_engine("sharded", num_shards=2).run(spec)
    assert got.status == "error"
    assert got.message.splitlines()[0] == (
        "ValueError: sharded engine: algorithm 'gossip_sgd': state key 'w' is declared edge; the sharded engine "
        "places node and server state of event-based algorithms")


def test_shards_share_no_array_with_the_driver() -> None:
    """What a shard gets is a copy (as between processes): a worker that writes its server
    arrays fails on its own read-only copy and never touches the driver's state."""
    transport = InProcessTransport(2)
    sim = ShardedSimulation(_spec("fedavg"), transport)
    sim.start()
    server = sim.state["server"]
    h = transport.share({"server": server})
    assert transport.gather([h])[0]["server"] is not server
    for w in transport.workers:
        assert w.state["server"] is not server
        assert not w.state["server"].flags.writeable


def test_a_config_runs_on_the_sharded_engine(tmp_path) -> None:
    """``engine: {name: sharded, num_shards: 3}`` in a config: the same results table as
    the local engine's; an unknown option names the key."""
    import pandas as pd
    from test_experiment_config import write_config

    from fedopt.cli import main
    from fedopt.experiment.config import ConfigError, parse_config

    cfg = {"name": "shards", "problem": {"name": "quadratic", "n": 8, "d": 2}, "topology": ["cycle"],
           "algorithms": [{"name": "gossip_sgd", "params": {"lr": 0.05}}, {"name": "fedavg"}],
           "stop": {"time": 3.0, "rounds": 3}}
    tables = {}
    for engine in ("local", {"name": "sharded", "num_shards": 3}):
        out = tmp_path / ("local" if engine == "local" else "sharded")
        path = write_config(tmp_path, {**cfg, "engine": engine}, f"{out.name}.yaml")
        assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 0
        tables[out.name] = pd.read_parquet(out / "results.parquet").drop(columns=["wall_s"])
    assert len(tables["local"]) > 2
    pd.testing.assert_frame_equal(tables["local"], tables["sharded"], rtol=1e-9, atol=1e-12)
    with pytest.raises(ConfigError, match=r"^config: engine.num_actors: unknown option of engine 'sharded'"):
        parse_config({**cfg, "engine": {"name": "sharded", "num_actors": 2}})
