"""The ray engine: same rows as the local engine for every registered algorithm, and recovery
from a lost actor with the trace of an undisturbed run."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import ray  # a dependency: a missing ray is a failure, not a skip
from equivalence import assert_same_rows, equivalence_spec

from fedopt.algorithms import algorithm_class, available_algorithms, make_algorithm
from fedopt.core.meter import Channel, Meter
from fedopt.engines.base import RunSpec, StopCriteria, make_engine
from fedopt.engines.sharded.meters import merge_meters
from fedopt.engines.sharded.partition import contiguous_shards, cut_edges, graph_shards, owner_of
from fedopt.engines.sharded.plan import plan_block
from fedopt.problems import problem_factory
from fedopt.problems.empirical import least_squares
from fedopt.problems.quadratic import random_quadratic
from fedopt.topology.graph import Topology
from fedopt.topology.time_varying import TimeVaryingTopology

N, D = 14, 4
TOP = Topology.from_networkx("rgg", nx.random_geometric_graph(N, 0.5, seed=3))
PROB = random_quadratic(N, D, mu=1.0, L=5.0, seed=1)
#: A problem with data (20 samples per node) for minibatch draws.
LS_PROB = least_squares(N, {"source": "synthetic", "task": "regression", "n_samples": 20 * N, "d": D}, reg=0.1, seed=1)


class _Engines:
    """One ray engine alive at a time (the machine has few cores): ``engines[k]`` has k actors."""

    def __init__(self) -> None:
        self.k = 0
        self.engine = None

    def __getitem__(self, k: int):
        if k != self.k:
            self.close()
            self.engine, self.k = make_engine("ray", num_actors=k, num_cpus_per_actor=0.5), k
        return self.engine

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.engine, self.k = None, 0


@pytest.fixture(scope="module")
def engines():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    made = _Engines()
    yield made
    made.close()
    ray.shutdown()


def _spec(name: str, seed: int = 3, problem=PROB, **params) -> RunSpec:
    return equivalence_spec(name, seed, problem, TOP, **params)


@pytest.mark.parametrize("name", available_algorithms())
@pytest.mark.parametrize("actors", [2, 3])
def test_same_rows_as_local(engines, name: str, actors: int) -> None:
    problem = LS_PROB if algorithm_class(name).needs_samples else PROB
    ref = make_engine("local").run(_spec(name, problem=problem))
    assert ref.status == "ok", f"{name} must run on the small problem with its test parameters: {ref.message}"
    got = engines[actors].run(_spec(name, problem=problem))
    assert got.status == "ok", got.message
    # every registered algorithm's default handlers are deterministic: no per-shard draws
    assert "random streams" not in got.message, got.message
    assert_same_rows(ref.rows, got.rows)
    for k, v in ref.final_state.items():
        np.testing.assert_allclose(got.final_state[k], v, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.meter.per_node()["grad_evals"], ref.meter.per_node()["grad_evals"])
    np.testing.assert_allclose(got.meter.per_node()["messages_sent"], ref.meter.per_node()["messages_sent"])
    assert got.meter.per_edge() == ref.meter.per_edge()


#: Zeroth-order runs on FZooS's synthetic quadratic (a client's query history is per-client
#: state that stays in its actor): FZooS as in the paper, FZooS with the reference code's options
#: (a second exchange with server-side queries, nearest windows, min-max targets, Matérn), and the
#: finite-difference SCAFFOLD of type I (server-side queries at x_r).
ZO_PROB = problem_factory("dirichlet_quadratic")(n=N, d=6, C=5.0, seed=2)
ZO_RUNS = {
    "fzoos": ("fzoos", {"rff_features": 300, "history": 150, "local_steps": 4}),
    "fzoos-code": ("fzoos", {"rff_features": 300, "history": 150, "local_steps": 4, "server_queries": True,
                             "window": "nearest", "window_size": 40, "rff_window": "nearest",
                             "rff_window_size": 60, "y_scale": "minmax", "kernel": "matern52"}),
    "zo_scaffold1": ("zo_scaffold1", {"local_steps": 4, "num_dirs": 5}),
}


@pytest.mark.parametrize("run", list(ZO_RUNS))
def test_zeroth_order_runs_equal_local(engines, run: str) -> None:
    """Two actors give the local engine's table (queries, messages, bytes, gap) to 1e-9 and the
    same per-client histories."""
    name, params = ZO_RUNS[run]

    def spec() -> RunSpec:
        return RunSpec(run, ZO_PROB, TOP, make_algorithm(name, **params), 4, StopCriteria(rounds=4), 1)

    ref = make_engine("local").run(spec())
    assert ref.status == "ok", ref.message
    got = engines[2].run(spec())
    assert got.status == "ok", got.message
    assert_same_rows(ref.rows, got.rows)
    assert ref.rows[-1]["queries"] > 0 and ref.rows[-1]["subopt"] < ref.rows[0]["subopt"]
    for k, v in ref.final_state.items():
        np.testing.assert_allclose(got.final_state[k], v, rtol=1e-9, atol=1e-12, err_msg=k)
    np.testing.assert_array_equal(got.meter.per_node()["queries"], ref.meter.per_node()["queries"])


#: The rgg graph, then the complete graph: the later graph has more edges (and more cut edges).
SEQUENCE = TimeVaryingTopology([TOP, Topology.from_networkx("complete", nx.complete_graph(N))], period=1.0)


def _tv_spec(name: str, seed: int = 3, **params) -> RunSpec:
    spec = _spec(name, seed, **params)
    return RunSpec(f"tv-{spec.run_id}", PROB, SEQUENCE, spec.algorithm, seed, spec.stop, spec.record_every)


@pytest.mark.parametrize("name", ["gossip_sgd", "dadao", "dgd"])
def test_time_varying_per_edge_counts_equal_local(engines, name: str) -> None:
    """Per-edge counts keyed by node pair over a sequence whose later graph has more edges:
    the shards' meters merge pair by pair into the local engine's counts."""
    assert SEQUENCE.topologies[1].m > TOP.m
    ref = make_engine("local").run(_tv_spec(name))
    assert ref.status == "ok", ref.message
    got = engines[3].run(_tv_spec(name))
    assert got.status == "ok", got.message
    assert_same_rows(ref.rows, got.rows)
    per_edge = got.meter.per_edge()
    assert per_edge == ref.meter.per_edge()
    assert set(per_edge) - {tuple(e) for e in TOP.edges.tolist()}  # pairs of the later graph were counted
    np.testing.assert_allclose(got.meter.per_node()["messages_sent"], ref.meter.per_node()["messages_sent"])


def test_recovery_on_a_time_varying_sequence_restores_per_edge_counts(engines) -> None:
    """Shard meters (with their per-pair counts) go through state_dict / load_state_dict on
    recovery: a run that loses an actor ends with the undisturbed run's counts."""
    eng = engines[3]
    ref = eng.run(_tv_spec("gossip_sgd", seed=5))
    got = _kill_and_compare(eng, ref, lambda: _tv_spec("gossip_sgd", seed=5))
    assert got.meter.per_edge() == ref.meter.per_edge()


def test_merge_meters_adds_counts_pair_by_pair() -> None:
    driver, a, b = Meter(n=4), Meter(n=4), Meter(n=4)
    Channel(a).exchange(np.array([0, 2]), np.array([1, 3]), None, 3)
    Channel(b).exchange(np.array([1, 3]), np.array([0, 1]), None, 3)
    Channel(driver).send(np.array([2]), 5)
    merged = merge_meters(driver, [a.state_dict(), b.state_dict()])
    assert merged.per_edge() == {(0, 1): 4.0, (2, 3): 2.0, (1, 3): 2.0}
    np.testing.assert_array_equal(merged.per_node()["messages_sent"], [2, 3, 2, 2])
    np.testing.assert_array_equal(merged.per_node()["floats_sent"], [6, 9, 8, 6])
    assert merged.totals()["messages"] == 5


def test_cross_shard_gossip_on_a_cycle(engines) -> None:
    """Contiguous shards of a cycle: most levels have cross-shard gossip (two-phase exchange)."""
    top = Topology.from_networkx("cycle", nx.cycle_graph(N))

    def spec() -> RunSpec:
        return RunSpec("c", PROB, top, make_algorithm("gossip_sgd", lr=0.05), 11, StopCriteria(time=5.0), 0.5)

    ref = make_engine("local").run(spec())
    got = engines[3].run(spec())
    assert_same_rows(ref.rows, got.rows)


#: Algorithms with random draws inside their handlers: minibatches (and FedAvg's client
#: sampling on the driver) from streams keyed by (seed, stream, node).
MINIBATCH = {
    "gossip_sgd": {"lr": 0.05, "batch_size": 3},
    "fedavg": {"clients_per_round": 5, "batch_size": 3, "local_steps": 3},
    "dadao": {"batch_size": 3},
    "dgd": {"batch_size": 3},
}


@pytest.mark.parametrize("name", sorted(MINIBATCH))
@pytest.mark.parametrize("actors", [1, 2, 3])
def test_minibatch_draws_equal_local(engines, name: str, actors: int) -> None:
    """1, 2 or 3 shards draw each node's minibatches from its own stream: the local
    engine's trace, draw for draw, and no per-shard streams."""
    ref = make_engine("local").run(_spec(name, problem=LS_PROB, **MINIBATCH[name]))
    assert ref.status == "ok", ref.message
    got = engines[actors].run(_spec(name, problem=LS_PROB, **MINIBATCH[name]))
    assert got.status == "ok", got.message
    assert "random streams" not in got.message, got.message
    assert_same_rows(ref.rows, got.rows)
    for k, v in ref.final_state.items():
        np.testing.assert_allclose(got.final_state[k], v, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.meter.per_node()["grad_evals"], ref.meter.per_node()["grad_evals"])


def test_client_sampling_on_the_driver_is_exact(engines) -> None:
    ref = make_engine("local").run(_spec("fedavg", clients_per_round=5))
    got = engines[2].run(_spec("fedavg", clients_per_round=5))
    assert "random streams" not in got.message
    assert_same_rows(ref.rows, got.rows)


class _NoisyGossip(type(make_algorithm("gossip_sgd"))):  # type: ignore[misc]
    """Gossip SGD with gradient noise drawn inside the compute handler (not registered)."""

    def on_compute(self, state, ctx, nodes, t) -> None:
        super().on_compute(state, ctx, nodes, t)
        state["x"][nodes] += 1e-3 * ctx.rng["noise"].normal(size=(len(nodes), ctx.d))


class _NodeNoisyGossip(type(make_algorithm("gossip_sgd"))):  # type: ignore[misc]
    """Gossip SGD with gradient noise from the per-node ``"noise"`` stream (not registered)."""

    def on_compute(self, state, ctx, nodes, t) -> None:
        super().on_compute(state, ctx, nodes, t)
        state["x"][nodes] += 1e-3 * ctx.node_rng("noise").standard_normal(nodes, ctx.d)


def test_per_node_draws_inside_handlers_equal_local(engines) -> None:
    import sys

    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import this file

    def spec() -> RunSpec:
        return RunSpec("node-noise", PROB, TOP, _NodeNoisyGossip(), 3, StopCriteria(time=3.0), 1.0)

    ref = make_engine("local").run(spec())
    for k in (2, 3):
        got = engines[k].run(spec())
        assert got.status == "ok" and "random streams" not in got.message, got.message
        assert_same_rows(ref.rows, got.rows)


class _CoinFedAvg(type(make_algorithm("fedavg"))):  # type: ignore[misc]
    """FedAvg whose server flips a coin per client from the per-node stream its clients'
    minibatches also come from (not registered)."""

    def configure(self, state, ctx, r):
        coins = ctx.node_rng("sampling").random(np.arange(ctx.n))
        clients = np.flatnonzero(coins < 0.5)
        clients = clients if len(clients) else np.arange(ctx.n)
        ctx.channel.broadcast(clients, ctx.d)
        return clients, {"x": state["server"]}


def test_per_node_draws_in_a_server_step_are_an_error_on_every_engine(engines) -> None:
    """The per-node counters belong to the nodes' rows (the shards own them): a ``configure``
    that draws from them is refused, with the same one-line error on local and on ray."""
    import sys

    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

    def spec() -> RunSpec:
        return RunSpec("coin", LS_PROB, TOP, _CoinFedAvg(batch_size=3, local_steps=2), 3, StopCriteria(rounds=6), 2.0)

    for got in (make_engine("local").run(spec()), engines[2].run(spec())):
        assert got.status == "error"
        assert "configure draws from the per-node random streams" in got.message, got.message


def test_draws_inside_handlers_are_flagged_and_independent_per_shard(engines) -> None:
    import sys

    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import this file
    spec = RunSpec("noisy", PROB, TOP, _NoisyGossip(), 3, StopCriteria(time=3.0), 1.0)
    got = engines[2].run(spec)
    assert got.status == "ok"
    assert "random streams ['noise']" in got.message
    again = engines[2].run(RunSpec("noisy", PROB, TOP, _NoisyGossip(), 3, StopCriteria(time=3.0), 1.0))
    assert_same_rows(got.rows, again.rows)  # reproducible for a fixed number of actors


@pytest.mark.parametrize("name", ["gossip_sgd", "fedavg", "dgd", "gradient_tracking"])
def test_recovers_from_a_killed_actor(engines, name: str) -> None:
    eng = engines[3]
    ref = eng.run(_spec(name, seed=5))
    _kill_and_compare(eng, ref, lambda: _spec(name, seed=5))


@pytest.mark.parametrize("name", ["gossip_sgd", "fedavg", "dgd"])
def test_recovery_rolls_back_per_node_counters(engines, name: str) -> None:
    """A lost actor's nodes and every other shard go back to the checkpoint's per-node
    counters: the replayed minibatches are the local engine's."""
    ref = make_engine("local").run(_spec(name, seed=5, problem=LS_PROB, **MINIBATCH[name]))
    _kill_and_compare(engines[3], ref, lambda: _spec(name, seed=5, problem=LS_PROB, **MINIBATCH[name]))


@pytest.mark.parametrize("name", ["dgd", "gradient_tracking"])
def test_synchronous_rounds_run_in_two_actors_with_a_halo_exchange(engines, name: str) -> None:
    """DGD and gradient tracking run in the actors: the local engine's trace, and only
    the rows of nodes with a neighbour in the other actor travel (once per round)."""
    from fedopt.engines.ray.engine import RaySimulation

    ref = make_engine("local").run(_spec(name))
    sim = RaySimulation(_spec(name), engines[2]._ensure_pool())
    got = sim.run()
    assert got.status == "ok" and got.message == "", got.message
    assert_same_rows(ref.rows, got.rows)
    assert got.meter.per_edge() == ref.meter.per_edge()
    owner = owner_of(sim.shards, N)
    cut = TOP.edges[owner[TOP.edges[:, 0]] != owner[TOP.edges[:, 1]]]
    per_round = len(set(cut.ravel().tolist()))  # two shards: each end of a cut edge goes once to the other
    assert 0 < per_round < N
    assert sim.products == 6 and sim.halo_rows == 6 * per_round


def _kill_and_compare(eng, ref, spec):
    """Run ``spec()`` killing actor 1 at the third dispatch: the run recovers and equals ``ref``."""
    killed = []

    def hook(stage: str, k: int) -> None:
        if k == 3 and not killed:
            victim = eng.actors[1]
            killed.append(victim)
            ray.kill(victim)

    eng.fault_hook = hook
    try:
        got = eng.run(spec())
    finally:
        eng.fault_hook = None
    assert killed and got.status == "ok", got.message
    assert "recovered from 1 lost actor" in got.message
    assert_same_rows(ref.rows, got.rows)
    return got


def test_unrecoverable_run_is_an_error(engines) -> None:
    engines.close()
    eng = make_engine("ray", num_actors=2, num_cpus_per_actor=0.5, max_restarts=0)
    eng.fault_hook = lambda stage, k: ray.kill(eng.actors[0]) if k == 2 else None
    try:
        got = eng.run(_spec("gossip_sgd"))
    finally:
        eng.close()
    assert got.status == "error"
    assert "ActorLost" in got.message and "gave up" in got.message
    assert len(got.rows) >= 1  # rows up to the last record point are kept


def test_partition_keeps_edges_inside_shards() -> None:
    g = nx.connected_caveman_graph(4, 6)
    top = Topology.from_networkx("caves", g)
    shards = graph_shards(top.edges, top.n, 4)
    assert sorted(len(s) for s in shards) == [6, 6, 6, 6]
    owner = owner_of(shards, top.n)
    assert cut_edges(top.edges, owner) <= 4  # only the ring links between caves
    contiguous = owner_of(contiguous_shards(top.n, 3), top.n)
    assert np.bincount(contiguous).tolist() == [8, 8, 8]
    three = graph_shards(top.edges, top.n, 3)
    assert sorted(len(s) for s in three) == [8, 8, 8]


def test_plan_orders_calls_by_dependency() -> None:
    from fedopt.core.clocks import PoissonClocks
    from fedopt.core.levels import schedule_levels

    top = Topology.from_networkx("cycle", nx.cycle_graph(8))
    block = PoissonClocks(np.ones(8), top.edges, np.ones(8)).sample(np.random.default_rng(0), 0.0, 200)
    owner = owner_of(contiguous_shards(8, 3), 8)
    bp = plan_block(schedule_levels(block, 8), owner, 3)
    assert bp.n_cross > 0
    seen = set()
    for c in bp.calls:
        assert all(i in seen for i in c.inputs)
        seen.add((c.shard, c.index))
    per_shard_events = sum(len(p["ev_a"]) for p in bp.plans)
    assert per_shard_events + bp.n_cross == len(block)
