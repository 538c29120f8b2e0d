"""A shard's view of a problem (``Problem.shard_view``): its oracles equal the full problem's
bit for bit whatever the node list (the shard's own nodes in a run, own nodes out of
order, own and peer nodes mixed, peers only), a run of own nodes reads the shard's copy
of the data without a copy per call, and shard workers read their rows through it."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from fedopt.algorithms import make_algorithm
from fedopt.core.rng import NodeStreams
from fedopt.engines.base import RunSpec, StopCriteria
from fedopt.engines.sharded.inprocess import InProcessTransport
from fedopt.engines.sharded.simulation import ShardedSimulation
from fedopt.problems.base import Problem, ShardView
from fedopt.problems.empirical import EmpiricalProblem, LeastSquares, Logistic, NonconvexLogistic
from fedopt.problems.quadratic import Quadratic, random_quadratic
from fedopt.topology.graph import Topology

N, D, M = 12, 5, 7


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    m = rng.integers(1, M + 1, size=N)  # unequal sample counts: padding in play
    return rng.standard_normal((N, M, D)), rng.integers(0, 2, size=(N, M)).astype(float), m


def _problems() -> list[Problem]:
    X, y, m = _data()
    return [LeastSquares(X, y, m, reg=0.3), Logistic(X, y, m, reg=0.1), NonconvexLogistic(X, y, m, reg=0.2),
            random_quadratic(N, D, mu=1.0, L=4.0, seed=2)]


#: The shard's own nodes: sorted, not consecutive (as a graph partition gives them).
OWN = np.array([0, 2, 3, 5, 8, 9, 11])
PEERS = np.setdiff1d(np.arange(N), OWN)
NODE_LISTS = {
    "own, a run": OWN[1:5],
    "own, all": OWN,
    "own, one": OWN[3:4],
    "own, not a run": OWN[[0, 2, 5]],
    "own, reversed": OWN[::-1].copy(),
    "own and peer": np.array([OWN[1], PEERS[0], OWN[2]]),
    "peers": PEERS,
    "empty": np.array([], dtype=np.int64),
}


@pytest.fixture(params=_problems(), ids=lambda p: type(p).__name__)
def problem(request: pytest.FixtureRequest) -> Problem:
    return request.param


@pytest.mark.parametrize("which", list(NODE_LISTS))
def test_view_oracles_equal_full_bit_for_bit(problem: Problem, which: str) -> None:
    view = problem.shard_view(OWN)
    assert isinstance(view, ShardView)
    nodes = NODE_LISTS[which]
    X = np.random.default_rng(5).standard_normal((len(nodes), D))
    assert np.array_equal(view.grad(X, nodes), problem.grad(X, nodes))
    assert np.array_equal(view.value(X, nodes), problem.value(X, nodes))
    if isinstance(problem, EmpiricalProblem):
        assert np.array_equal(view.hessian(X, nodes), problem.hessian(X, nodes))
        for steps in (1, 3):
            Xa, Xb = X.copy(), X.copy()
            view.gd_steps(Xa, nodes, 0.05, steps)
            problem.gd_steps(Xb, nodes, 0.05, steps)
            assert np.array_equal(Xa, Xb)
        idx = np.random.default_rng(6).integers(0, problem.m[nodes][:, None], size=(len(nodes), 3))
        assert np.array_equal(view.sample_grads(X, nodes, idx), problem.sample_grads(X, nodes, idx))
        a, b = NodeStreams(9, N)["sampling"], NodeStreams(9, N)["sampling"]
        for _ in range(2):  # the per-node streams advance alike
            assert np.array_equal(view.stochastic_grad(X, nodes, a, 4), problem.stochastic_grad(X, nodes, b, 4))
        assert np.array_equal(a.counters, b.counters)


def test_gd_steps_blocks_read_the_shard_copy_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """With small cache blocks, each block of a whole-shard call is a run of local rows."""
    full = _problems()[0]
    assert isinstance(full, EmpiricalProblem)
    monkeypatch.setattr(EmpiricalProblem, "GD_BLOCK_BYTES", 2 * M * D * 8)
    view = full.shard_view(OWN)
    X = np.random.default_rng(1).standard_normal((len(OWN), D))
    Xa, Xb = X.copy(), X.copy()
    view.gd_steps(Xa, OWN, 0.05, 4)
    full.gd_steps(Xb, OWN, 0.05, 4)
    assert np.array_equal(Xa, Xb)


def test_global_quantities_are_the_full_problems(problem: Problem) -> None:
    view = problem.shard_view(OWN)
    assert view.n == problem.n and view.d == problem.d
    assert view.L == problem.L and view.mu == problem.mu
    assert view.x_star is problem.x_star  # the full problem's cached optimum, not a new solve
    assert view.f_star == problem.f_star
    np.testing.assert_array_equal(view.n_samples(), problem.n_samples())
    x = np.linspace(-1, 1, D)
    assert view.global_value(x) == problem.global_value(x)
    assert np.array_equal(view.global_grad(x), problem.global_grad(x))
    assert view.describe() == problem.describe()
    if isinstance(problem, Quadratic):
        U = np.random.default_rng(2).standard_normal((3, D))
        assert np.array_equal(view.conjugate_grad(U, OWN[:3]), problem.conjugate_grad(U, OWN[:3]))


def _rows(view: ShardView, nodes: np.ndarray) -> tuple[np.ndarray, ...]:
    """The per-node arrays an oracle call on ``nodes`` reads."""
    rows = getattr(view, "_rows", None) or getattr(view, "_data")
    return tuple(rows(nodes))


def test_a_run_of_own_nodes_reads_the_shard_copy_without_a_copy(problem: Problem) -> None:
    view = problem.shard_view(OWN)
    full_arrays = [problem.Xd, problem.y, problem.w] if isinstance(problem, EmpiricalProblem) else \
        [problem.A, problem.b, problem.c]  # type: ignore[attr-defined]
    local_arrays = [view.Xd, view.y, view.w] if isinstance(problem, EmpiricalProblem) else \
        [view.A, view.b, view.c]  # type: ignore[attr-defined]
    for nodes in (OWN, OWN[1:5], OWN[3:4]):
        for got, local, full in zip(_rows(view, nodes), local_arrays, full_arrays):
            assert np.shares_memory(got, local) and got.base is not None  # a slice of the shard's copy
            assert not np.shares_memory(got, full)
    for which in ("own, not a run", "own, reversed", "own and peer", "peers"):
        for got, local in zip(_rows(view, NODE_LISTS[which]), local_arrays):
            assert not np.shares_memory(got, local)  # read from the full problem
    # the shard's copy is made once and is not the full problem's memory
    for local, full in zip(local_arrays, full_arrays):
        assert not np.shares_memory(local, full) and not local.flags.writeable


def test_shard_view_rejects_bad_node_lists() -> None:
    full = _problems()[0]
    for bad in (np.array([1, 1]), np.array([N]), np.array([-1]), np.zeros((2, 2), dtype=np.int64)):
        with pytest.raises(ValueError, match="shard_view: nodes must be distinct ids in 0..11"):
            full.shard_view(bad)
    empty = full.shard_view(np.array([], dtype=np.int64))  # a shard without nodes reads the full problem
    X = np.ones((2, D))
    assert np.array_equal(empty.grad(X, OWN[:2]), full.grad(X, OWN[:2]))


def test_a_problem_without_per_node_data_is_its_own_view() -> None:
    class Sphere(Problem):
        n, d, L, mu = 3, 2, 1.0, 1.0

        def grad(self, X: np.ndarray, nodes: np.ndarray) -> np.ndarray:
            return X.copy()

        def value(self, X: np.ndarray, nodes: np.ndarray) -> np.ndarray:
            return 0.5 * (X * X).sum(axis=1)

    p = Sphere()
    assert p.shard_view(np.array([0, 2])) is p


@pytest.mark.parametrize("name", ["dgd", "gradient_tracking"])
def test_shard_workers_read_their_blocks_through_the_view(name: str) -> None:
    """Each worker's problem is a view of its own nodes, and its row block (the nodes a
    synchronous round hands the oracles) is a run of the view's local rows."""
    X, y, m = _data(3)
    prob = LeastSquares(X, y, m, reg=0.2)
    top = Topology.from_networkx("ws", nx.connected_watts_strogatz_graph(N, 4, 0.3, seed=4))
    spec = RunSpec(name, prob, top, make_algorithm(name), 0, StopCriteria(rounds=3))
    transport = InProcessTransport(2)
    sim = ShardedSimulation(spec, transport)
    sim.start()
    sim.apply_rounds(2)
    for worker, nodes in zip(transport.workers, sim.shards):
        view = worker.ctx.problem
        assert isinstance(view, ShardView) and np.array_equal(view.full.Xd, prob.Xd)  # (the spec travels pickled)
        np.testing.assert_array_equal(view.nodes, nodes)
        block = worker._block()
        assert view.own_run(block.nodes) == slice(0, len(nodes))
        assert np.shares_memory(view._rows(block.nodes)[0], view.Xd)
