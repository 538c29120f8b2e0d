"""Synchronous rounds in the shards (DGD, gradient tracking, MSDA, ADOM+): the local engine's trace with
1, 2 and 3 shards, only the rows that cross a shard boundary travel, a time-varying
sequence changes the halo with the graph, recovery after a lost shard, and the contract
of a row round (its declared number of graph products) checked where it breaks."""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
from test_sharded_engine import LS_PROB, PROB, SEQUENCE, TOP, _LosingTransport, _spec, assert_same_rows, assert_same_run

from fedopt.algorithms import make_algorithm
from fedopt.algorithms.base import Context, Layout, Mix, RoundAlgorithm, RowBlock, RowRound
from fedopt.algorithms.decentralized.dgd import DGD
from fedopt.engines.base import make_engine
from fedopt.engines.sharded.halo import DenseHaloPlan, SparseHaloPlan, halo_plan
from fedopt.engines.sharded.inprocess import InProcessTransport
from fedopt.engines.sharded.partition import graph_shards
from fedopt.engines.sharded.simulation import ShardedSimulation
from fedopt.topology.graph import Topology

ROW_ALGOS = ["dgd", "gradient_tracking", "msda", "adom_plus"]
#: Floats per row (in units of d) of each algorithm's graph products (gradient tracking: x and y;
#: ADOM+: u and y_g + z_g).
ROW_WIDTH = {"dgd": 1, "gradient_tracking": 2, "msda": 1, "adom_plus": 2}


def products_per_round(name: str, topology=TOP, **params) -> int:
    """Graph products a round makes on the first graph (built here from the algorithm's own prepare)."""
    from fedopt.core.meter import Channel, Meter
    from fedopt.core.rng import RngStreams

    algo = make_algorithm(name, **params)
    graph = topology.topologies[0] if hasattr(topology, "topologies") else topology
    meter = Meter(n=PROB.n)
    ctx = Context(PROB, graph, RngStreams(0, PROB.n), meter, Channel(meter))
    ctx.prepared = algo.prepare(PROB, [graph])[0]
    return algo.products(ctx)


def cross_rows(edges: np.ndarray, shards: Sequence[np.ndarray], n: int) -> int:
    """Rows a product with a graph operator must move between shards: each node with a
    neighbour in another shard goes once to every such shard (from the edge list alone)."""
    owner = np.empty(n, dtype=np.int64)
    for k, s in enumerate(shards):
        owner[s] = k
    needed = set()
    for a, b in np.asarray(edges).tolist():
        if owner[a] != owner[b]:
            needed.add((a, owner[b]))
            needed.add((b, owner[a]))
    return len(needed)


@pytest.mark.parametrize("name", ROW_ALGOS)
@pytest.mark.parametrize("shards", [1, 2, 3])
def test_rounds_run_in_the_shards_with_the_local_trace(name: str, shards: int) -> None:
    ref = make_engine("local").run(_spec(name))
    sim = ShardedSimulation(_spec(name), InProcessTransport(shards))
    got = sim.run()
    assert_same_run(ref, got)
    assert got.message == ""
    assert sim.products == 6 * products_per_round(name)  # answered in the shards
    np.testing.assert_allclose(got.meter.per_node()["local_steps"], ref.meter.per_node()["local_steps"])
    assert got.meter.communications == ref.meter.communications


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_minibatch_dgd_draws_equal_local(shards: int) -> None:
    ref = make_engine("local").run(_spec("dgd", problem=LS_PROB, batch_size=3))
    got = make_engine("sharded", num_shards=shards).run(_spec("dgd", problem=LS_PROB, batch_size=3))
    assert_same_run(ref, got)


@pytest.mark.parametrize("name", ROW_ALGOS)
@pytest.mark.parametrize("shards", [2, 3])
def test_only_boundary_rows_travel(name: str, shards: int) -> None:
    sim = ShardedSimulation(_spec(name), InProcessTransport(shards))
    sim.run()
    per_product = cross_rows(TOP.edges, sim.shards, TOP.n)
    assert 0 < per_product < (shards - 1) * TOP.n
    assert sim.products == 6 * products_per_round(name)
    assert sim.halo_rows == sim.products * per_product
    assert sim.halo_bytes == sim.halo_rows * ROW_WIDTH[name] * PROB.d * 8


class _CountingTransport(InProcessTransport):
    """Counts the rows that reach each ``row_step`` call (what travels between shards)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.rows_in = 0

    def submit(self, shard, method, *args):
        if method == "row_step":
            got = [a.value if hasattr(a, "value") else a for a in args[4:]]
            self.rows_in += sum(v.shape[0] for v in got if v is not None)
        return super().submit(shard, method, *args)


@pytest.mark.parametrize("shards", [2, 3])
def test_a_shard_receives_only_the_rows_it_needs(shards: int) -> None:
    """With three shards too, a shard gets only the rows sent to it, not a peer's whole output."""
    transport = _CountingTransport(shards)
    sim = ShardedSimulation(_spec("dgd"), transport)
    sim.run()
    assert transport.rows_in == sim.products * cross_rows(TOP.edges, sim.shards, TOP.n) == sim.halo_rows


@pytest.mark.parametrize("name", ROW_ALGOS)
def test_time_varying_sequence_changes_the_halo(name: str) -> None:
    """The rgg graph, then the complete graph (period 1): the halo follows the graph in
    force, and the trace and per-edge counts are the local engine's."""
    ref = make_engine("local").run(_spec(name, topology=SEQUENCE))
    sim = ShardedSimulation(_spec(name, topology=SEQUENCE), InProcessTransport(3))
    got = sim.run()
    assert_same_run(ref, got)
    assert set(got.meter.per_edge()) - {tuple(e) for e in TOP.edges.tolist()}
    complete = SEQUENCE.topologies[1]
    # the sequence cycles: rounds 0, 2, 4 on the rgg graph, rounds 1, 3, 5 on the complete graph
    on_rgg, on_complete = cross_rows(TOP.edges, sim.shards, TOP.n), cross_rows(complete.edges, sim.shards, TOP.n)
    assert on_complete > on_rgg
    k_rgg, k_complete = products_per_round(name, TOP), products_per_round(name, complete)
    assert sim.halo_rows == 3 * on_rgg * k_rgg + 3 * on_complete * k_complete


def test_recovery_after_a_lost_shard_in_synchronous_rounds() -> None:
    """A shard lost between chained round steps: heal, roll back to the last record point,
    replay; the minibatch draws and counts are the local engine's."""
    def spec():
        return _spec("dgd", seed=5, problem=LS_PROB, batch_size=3)

    ref = make_engine("local").run(spec())
    transport = _LosingTransport(3, lose_at={4})
    got = ShardedSimulation(spec(), transport).run()
    assert transport.heals == 1
    assert got.message == "recovered from 1 lost shard(s)"
    assert_same_rows(ref.rows, got.rows)
    np.testing.assert_allclose(got.final_state["x"], ref.final_state["x"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.meter.per_node()["grad_evals"], ref.meter.per_node()["grad_evals"])


def test_adom_plus_multi_consensus_makes_k_products_per_round_in_the_shards() -> None:
    params = {"multi_consensus": True}
    K = products_per_round("adom_plus", **params)
    assert K > 1
    ref = make_engine("local").run(_spec("adom_plus", **params))
    sim = ShardedSimulation(_spec("adom_plus", **params), InProcessTransport(3))
    assert_same_run(ref, sim.run())
    assert sim.products == 6 * K
    assert sim.halo_rows == sim.products * cross_rows(TOP.edges, sim.shards, TOP.n)


class _DriverRounds(RoundAlgorithm):
    """Synchronous rounds without round_rows: ``x ← x − 0.1 ∇f(x)`` on every node."""

    name = "driver_rounds"
    layout = {"x": Layout.NODE}

    def init(self, ctx: Context):
        return {"x": np.zeros((ctx.n, ctx.d))}

    def round(self, state, ctx: Context, r: int):
        return {"x": state["x"] - 0.1 * ctx.oracle.grad_all(state["x"])}


def test_rounds_without_round_rows_run_on_the_driver_and_say_so() -> None:
    spec = _spec("dgd")
    spec.algorithm = _DriverRounds()
    ref = make_engine("local").run(spec)
    assert ref.message == ""
    got = make_engine("sharded", num_shards=2).run(spec)
    assert_same_rows(ref.rows, got.rows)
    assert got.message == ("sharded engine: the synchronous rounds of 'driver_rounds' ran on the driver, "
                           "not in shards (it has no round_rows)")


@pytest.mark.parametrize("dense", [False, True])
def test_halo_plan_products_equal_the_full_product(dense: bool) -> None:
    """Each shard's block product from its own rows and the rows the others send it equals
    its rows of ``op @ X``, for a nonsymmetric, read-only operator (sparse, or dense as the
    mixing matrices of small graphs are) and an unbalanced partition. A dense operator gets
    dense blocks (BLAS products, as the local engine's ``W @ X``), a sparse one a CSR block
    whose products equal the local engine's bit for bit; taking the inner product ahead
    changes no bit."""
    rng = np.random.default_rng(0)
    n = 23
    op = (sp.random(n, n, density=0.15, random_state=1, format="csr") + sp.identity(n)).tocsr()
    for a in (op.data, op.indices, op.indptr):  # as a transport may deliver it (zero-copy, read-only)
        a.setflags(write=False)
    if dense:
        op = op.toarray()
        op.setflags(write=False)
    X = rng.standard_normal((n, 3))
    shards = [np.sort(s) for s in np.split(rng.permutation(n), [4, 15])]
    plans = [halo_plan(op, shards, i) for i in range(len(shards))]
    full = op @ X
    for plan in plans:
        if dense:
            assert isinstance(plan, DenseHaloPlan)
            assert all(isinstance(b, np.ndarray) for b in (plan.own, *(b for _, b in plan.halo.values())))
        else:
            assert isinstance(plan, SparseHaloPlan) and sp.issparse(plan.block)
    for i, (own, plan) in enumerate(zip(shards, plans)):
        received = {j: X[shards[j]][plans[j].send[i]] for j in plan.recv}
        for j in plan.recv:
            assert i in plans[j].send
        got = plan.product(X[own], received)
        np.testing.assert_allclose(got, full[own], rtol=1e-12, atol=1e-12)
        if not dense:
            assert np.array_equal(got, full[own])
        assert np.array_equal(plan.product(X[own], received, plan.inner_product(X[own])), got)
        needed = {int(c) for c in op[own].nonzero()[1]} - set(own.tolist())
        assert sum(plan.recv.values()) == len(needed)


class _TwoProductsDGD(DGD):
    """Declares one graph product per round but makes two."""

    def round_rows(self, state, ctx: Context, block: RowBlock, r: int) -> RowRound:
        x = block.take(state["x"])
        yield Mix("W", x)
        Wx = yield Mix("W", x)
        return {"x": Wx}


@pytest.mark.parametrize("engine", ["local", "sharded"])
def test_a_round_with_more_products_than_declared_is_an_error(engine: str) -> None:
    spec = _spec("dgd")
    spec.algorithm = _TwoProductsDGD()
    got = make_engine(engine).run(spec)
    assert got.status == "error"
    assert "algorithm 'dgd': round_rows made" in got.message.splitlines()[0]
    assert "products() declares 1" in got.message.splitlines()[0]


def test_the_partition_keeps_the_halo_small_on_a_geometric_graph() -> None:
    g = nx.random_geometric_graph(400, 0.08, seed=2)
    top = Topology.from_networkx("rgg", g)
    shards = graph_shards(top.edges, top.n, 2, seed=0)
    W = make_algorithm("dgd").prepare(PROB, [top])[0].W
    sent = sum(len(p) for i in range(2) for p in halo_plan(W, shards, i).send.values())
    assert sent == cross_rows(top.edges, shards, top.n)
    assert sent < 0.25 * top.n


class _FewerProductsDGD(DGD):
    """Declares two graph products per round but makes one."""

    def products(self, ctx: Context) -> int:
        return 2


@pytest.mark.parametrize("engine", ["local", "sharded"])
def test_a_round_with_fewer_products_than_declared_is_an_error(engine: str) -> None:
    spec = _spec("dgd")
    spec.algorithm = _FewerProductsDGD()
    got = make_engine(engine).run(spec)
    assert got.status == "error"
    assert got.message.splitlines()[0] == ("ValueError: algorithm 'dgd': round_rows made 1 graph product(s); "
                                           "products() declares 2")


@pytest.mark.parametrize("name", ["dgd", "msda"])
def test_a_record_sends_and_copies_the_iterate_rows_once(name: str) -> None:
    """Where an algorithm's iterates are one of its state keys (DGD's ``x``), a shard's
    snapshot names that key instead of sending the same rows twice, and the driver reads the
    iterates from the assembled state; the checkpoint shares the freshly assembled rows
    instead of copying them. Where they are computed (MSDA's ``∇f*``), they still travel. The
    trace is the local engine's either way."""
    spec = _spec(name)
    sim = ShardedSimulation(spec, InProcessTransport(2))
    got = sim.run()
    assert_same_run(make_engine("local").run(_spec(name)), got)
    snap = sim.transport.workers[0].snapshot(sim.t, True, sim.row_keys)
    if name == "dgd":
        assert snap["X_key"] == "x" and "X" not in snap
    else:
        assert "X_key" not in snap and snap["X"].shape == (len(sim.shards[0]), PROB.d)
    assert all(sim._ckpt["state"][k] is sim.state[k] for k in sim.row_keys)
