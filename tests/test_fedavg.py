"""FedAvg (McMahan et al. 2017, Alg. 1): reductions, accounting, exactness on the anchor workload."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from anchor_bench import load_bench_module
from reference_fedavg import fedavg_reference

from fedopt.algorithms import make_algorithm
from fedopt.core.meter import NODE_COUNTERS
from fedopt.engines.base import RunSpec, Simulation, StopCriteria, make_engine
from fedopt.problems.base import Problem
from fedopt.problems.empirical import fedavg_anchor, logistic
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


# ---- the FedAvg anchor workload: exactness against the per-client reference ----------


def _anchor_spec(prob, rounds: int, **params) -> RunSpec:
    star = Topology.from_networkx("star", nx.star_graph(prob.n - 1))
    algo = make_algorithm("fedavg", **{"lr": 0.1, "local_steps": 5, **params})
    return RunSpec("anchor", prob, star, algo, 0, StopCriteria(rounds=rounds), record_every=float(rounds))


class _NoFusedSteps(Problem):
    """The same problem seen only through the plain oracles (no fused ``gd_steps``)."""

    def __init__(self, inner: Problem) -> None:
        self.inner = inner
        self.n, self.d, self.L, self.mu = inner.n, inner.d, inner.L, inner.mu

    def grad(self, X, nodes):
        return self.inner.grad(X, nodes)

    def value(self, X, nodes):
        return self.inner.value(X, nodes)

    def n_samples(self):
        return self.inner.n_samples()

    def solve(self):
        return self.inner.x_star


def test_reduced_anchor_matches_per_client_reference() -> None:
    """10 clients × 50 samples, d = 100, 3 rounds of 5 local steps at lr 0.1: the final
    global weights equal the plain per-client loop (independent of fedopt) to 1e-10,
    through the local engine and through ``apply_rounds``."""
    prob = fedavg_anchor(n=10, samples_per_node=50, d=100)
    w_ref = fedavg_reference(clients=10, samples=50, d=100, rounds=3, steps=5, lr=0.1)
    res = make_engine("local").run(_anchor_spec(prob, 3))
    assert res.status == "ok", res.message
    assert np.abs(res.final_state["server"] - w_ref).max() <= 1e-10
    sim = Simulation(_anchor_spec(prob, 3))
    sim.start()
    sim.apply_rounds(3)
    assert np.abs(sim.state["server"] - w_ref).max() <= 1e-10
    assert np.abs(w_ref).max() > 1e-2  # the weights moved: the comparison is not vacuous


def test_anchor_accounting_per_client() -> None:
    """Per client and round: ``E`` gradient evaluations and local steps, one upload of
    ``d`` floats; the server sends one ``d``-float broadcast per client."""
    prob = fedavg_anchor(n=10, samples_per_node=50, d=20)
    rounds, steps = 4, 3
    sim = Simulation(_anchor_spec(prob, rounds, local_steps=steps))
    sim.run()
    per = sim.meter.per_node()
    assert np.array_equal(per["grad_evals"], np.full(10, rounds * steps))
    assert np.array_equal(per["local_steps"], np.full(10, rounds * steps))
    assert np.array_equal(per["messages_sent"], np.full(10, rounds))
    assert np.array_equal(per["floats_sent"], np.full(10, rounds * 20))
    tot = sim.meter.totals()
    assert tot["messages"] == rounds * 10 * 2
    assert tot["bytes"] == rounds * 10 * 2 * 20 * 8
    assert sim.rows[-1]["grad_evals"] == rounds * 10 * steps


@pytest.mark.parametrize("clients_per_round", [None, 7])
def test_fused_local_steps_equal_oracle_steps(clients_per_round: int | None) -> None:
    """The fused, cache-blocked local GD gives bit-identical weights and identical
    per-node counters to step-by-step oracle calls, with unequal local data sizes,
    a regularizer, sampled (non-contiguous) clients and several blocks."""
    prob = logistic(12, {"source": "synthetic", "n_samples": 600, "d": 6}, {"kind": "dirichlet", "alpha": 0.5}, reg=0.05, seed=3)
    assert len(set(prob.n_samples().tolist())) > 1
    prob.GD_BLOCK_BYTES = 3 * prob.Xd.shape[1] * prob.d * 8  # blocks of 3 clients
    sims = []
    for p in (prob, _NoFusedSteps(prob)):
        sim = Simulation(_anchor_spec(p, 6, local_steps=4, lr=0.3, clients_per_round=clients_per_round))
        sim.run()
        sims.append(sim)
    fused, plain = sims
    assert np.array_equal(fused.state["server"], plain.state["server"])
    for name in NODE_COUNTERS:
        assert np.array_equal(getattr(fused.meter, name).values, getattr(plain.meter, name).values), name
    assert fused.meter.totals() == plain.meter.totals()


@pytest.mark.parametrize("path", ["fused", "plain", "minibatch"])
def test_gradient_count_is_rounds_times_clients_times_steps(path: str) -> None:
    """R rounds, S sampled clients, K local steps: R·S·K gradient evaluations (in passes
    over local data: b/m each with minibatches of b of m samples), R·S·K local steps,
    every client's count a multiple of K, whichever way the local steps run."""
    R, S, K, m, b = 7, 4, 3, 50, 10
    anchor = fedavg_anchor(n=10, samples_per_node=m, d=6)
    prob = _NoFusedSteps(anchor) if path == "plain" else anchor
    params = {"local_steps": K, "clients_per_round": S, **({"batch_size": b} if path == "minibatch" else {})}
    res = make_engine("local").run(_anchor_spec(prob, R, **params))
    assert res.status == "ok", res.message
    per = res.meter.per_node()
    per_step = b / m if path == "minibatch" else 1.0
    assert res.rows[-1]["grad_evals"] == pytest.approx(R * S * K * per_step, rel=1e-12)
    assert per["local_steps"].sum() == R * S * K
    assert np.array_equal(per["local_steps"] % K, np.zeros(10)) and (per["local_steps"] > 0).sum() > S
    np.testing.assert_allclose(per["grad_evals"], per["local_steps"] * per_step, rtol=1e-12)
    assert res.meter.totals()["messages"] == R * S * 2


@pytest.mark.parametrize("fused", [True, False])
def test_oracle_runs_and_counts_local_gd_steps(fused: bool) -> None:
    """The counting oracle's ``gd_steps``: the steps of plain gradient calls, bit for bit,
    and ``steps`` gradient evaluations and local steps per row (repeated rows count twice)."""
    from fedopt.core.meter import Meter
    from fedopt.problems.base import CountingOracle

    anchor = fedavg_anchor(n=6, samples_per_node=20, d=4)
    prob = anchor if fused else _NoFusedSteps(anchor)
    meter = Meter(n=6)
    oracle = CountingOracle(prob, meter)
    nodes = np.array([5, 1, 1, 3])
    X0 = np.random.default_rng(0).normal(size=(4, 4))
    X = X0.copy()
    for _ in range(3):
        X -= 0.4 * anchor.grad(X, nodes)
    Y = X0.copy()
    assert oracle.gd_steps(Y, nodes, 0.4, 3) is Y
    assert np.array_equal(X, Y)
    np.testing.assert_array_equal(meter.per_node()["grad_evals"], [0, 6, 0, 3, 0, 3])
    np.testing.assert_array_equal(meter.per_node()["local_steps"], [0, 6, 0, 3, 0, 3])


def test_gd_steps_is_repeated_grad_and_checks_shape() -> None:
    prob = fedavg_anchor(n=9, samples_per_node=30, d=5)
    prob.GD_BLOCK_BYTES = 1  # one client per block
    nodes = np.array([8, 2, 3, 4, 0, 0])  # unordered, repeated, with a run of consecutive ids
    X0 = np.random.default_rng(1).normal(size=(len(nodes), 5)) * 0.3
    X = X0.copy()
    for _ in range(4):
        X -= 0.2 * prob.grad(X, nodes)
    Y = X0.copy()
    assert prob.gd_steps(Y, nodes, 0.2, 4) is Y
    assert np.array_equal(X, Y)
    with pytest.raises(ValueError, match="gd_steps"):
        prob.gd_steps(X0[:2], nodes, 0.2, 1)


def test_full_anchor_matches_the_benchmark_numpy_reference() -> None:
    """The whole anchor workload (100 clients × 200 samples, d = 100, 20 rounds of 5 local
    steps) against the anchor benchmark's own numpy code, imported from its folder: the
    per-client loop (``fedavg_loop``) and the vectorized run (``fedavg_vectorized``) on the
    benchmark's data; fedopt draws the same data itself (``fedavg_anchor``)."""
    bench = load_bench_module("numpy_fedavg")
    C = bench.C  # the workload module the benchmark itself imported
    X, Y = C.all_client_data()
    w0 = C.initial_weights()
    w_loop = bench.fedavg_loop(X, Y, w0, C.ROUNDS)
    np.testing.assert_allclose(bench.fedavg_vectorized(X, Y, w0, C.ROUNDS), w_loop, rtol=0, atol=1e-12)
    assert np.abs(w_loop).max() > 1e-2  # the weights moved: the comparison is not vacuous
    prob = fedavg_anchor(n=C.NUM_CLIENTS, samples_per_node=C.N_PER_CLIENT, d=C.D, seed=C.SEED)
    res = make_engine("local").run(_anchor_spec(prob, C.ROUNDS, lr=C.LR, local_steps=C.LOCAL_STEPS))
    assert res.status == "ok", res.message
    assert res.rows[-1]["round"] == C.ROUNDS
    np.testing.assert_allclose(res.final_state["server"], w_loop, rtol=0, atol=1e-10)


@pytest.mark.slow
def test_full_anchor_matches_per_client_reference() -> None:
    """The whole anchor workload (100 × 200, d = 100, 20 rounds) against the
    self-contained reference (the reduced test above covers the same property)."""
    prob = fedavg_anchor()
    sim = Simulation(_anchor_spec(prob, 20))
    sim.start()
    sim.apply_rounds(20)
    assert np.abs(sim.state["server"] - fedavg_reference()).max() <= 1e-10
