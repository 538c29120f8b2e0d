"""DADAO (Nabli & Oyallon 2023): exact mixing, exact convergence, acceleration, counting, invariants."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import scipy.linalg
from reference_loop import run_batched, run_sequential

from fedopt.algorithms import make_algorithm
from fedopt.algorithms.decentralized.dadao import DADAO, DADAOConstants, mixing_matrices, normalized_rate
from fedopt.engines.base import RunSpec, Simulation, StopCriteria
from fedopt.problems.base import Problem
from fedopt.problems.quadratic import random_quadratic
from fedopt.topology.graph import Topology

N = 16


def _rgg(n: int, radius: float, seed: int = 0) -> nx.Graph:
    s = seed
    while True:
        g = nx.random_geometric_graph(n, radius, seed=s)
        if nx.is_connected(g):
            return g
        s += 1


GRAPHS = {
    "complete": lambda: nx.complete_graph(N),
    "cycle": lambda: nx.cycle_graph(N),
    "star": lambda: nx.star_graph(N - 1),
    "rgg": lambda: _rgg(N, 0.5),
}


def _top(name: str) -> Topology:
    return Topology.from_networkx(name, GRAPHS[name]())


def _logistic(n: int, d: int, seed: int) -> Problem:
    """ℓ2-regularized logistic regression with μ = reg = 1 (as in the paper's code)."""
    from fedopt.problems.base import problem_factory

    return problem_factory("logistic")(n=n, data={"source": "synthetic", "n_samples": 20 * n, "d": d}, reg=1.0, seed=seed)


def _run(prob: Problem, top: Topology, t_end: float, every: float, **params: object) -> list[dict[str, float]]:
    spec = RunSpec("r", prob, top, make_algorithm("dadao", **params), 0, StopCriteria(time=t_end), record_every=every)
    res = Simulation(spec).run()
    assert res.status == "ok", res.message
    return res.rows


# ---- exact mixing ---------------------------------------------------------------------
@pytest.mark.parametrize("kappa", [1.0, 10.0, 1000.0])
def test_closed_form_mixing_equals_expm(kappa: float) -> None:
    const = DADAOConstants.from_problem(L=kappa, mu=1.0, chi1=2.5)
    M = const.ode_matrix()
    dts = np.array([0.0, 1e-12, 1e-6, 1e-3, 0.05, 0.7, 3.0, 17.0, 120.0, 900.0])
    P = mixing_matrices(dts, const)
    for k, dt in enumerate(dts):
        E = scipy.linalg.expm(dt * M)
        assert np.abs(P[k] - E).max() <= 1e-12 * max(1.0, np.abs(E).max()), (kappa, dt)
    np.testing.assert_array_equal(P[0], np.eye(6))
    # flows compose: exp(aM) exp(bM) = exp((a + b)M)
    a, b, ab = mixing_matrices(np.array([1.3, 2.9, 4.2]), const)
    np.testing.assert_allclose(a @ b, ab, rtol=0, atol=1e-12)


# ---- level batching is exact ---------------------------------------------------------------
@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_level_batched_equals_reference_loop(graph: str) -> None:
    top = _top(graph)
    prob = random_quadratic(top.n, 4, mu=1.0, L=20.0, seed=3)

    def spec() -> RunSpec:
        return RunSpec("r", prob, top, make_algorithm("dadao", init_noise=1.0), 5, StopCriteria(time=40.0))

    a = run_sequential(spec(), 40.0)
    b = run_batched(spec(), 40.0)
    assert a.n_events == b.n_events > 500
    np.testing.assert_allclose(b.state["s"], a.state["s"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(b.state["T"], a.state["T"])
    assert a.meter.totals() == b.meter.totals()


# ---- exact linear convergence ------------------------------------------------------------
@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_converges_to_exact_minimizer_quadratic(graph: str) -> None:
    top = _top(graph)
    prob = random_quadratic(top.n, 3, mu=1.0, L=4.0, seed=1)
    rows = _run(prob, top, 420.0, 20.0, init_noise=1.0)
    start, end = rows[0]["dist_opt"], rows[-1]["dist_opt"]
    assert end < 1e-10 * start, (graph, start, end)
    # linear: the error keeps decreasing geometrically (every 100 time units by > 10×)
    d = np.array([r["dist_opt"] for r in rows])
    assert (d[5::5] < 0.1 * d[:-5:5]).all()


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_converges_to_exact_minimizer_logistic(graph: str) -> None:
    top = _top(graph)
    prob = _logistic(top.n, 3, seed=2)
    kappa = prob.L / prob.mu
    rows = _run(prob, top, 160.0 * math.sqrt(2 * kappa), 20.0, init_noise=1.0)
    start, end = rows[0]["dist_opt"], rows[-1]["dist_opt"]
    assert end < 1e-10 * start, (graph, kappa, start, end)


# ---- acceleration: the time rate scales with sqrt(ν/L) ----------------------------------
def _decay_rate(rows: list[dict[str, float]]) -> float:
    t = np.array([r["time"] for r in rows])
    y = np.log(np.array([r["dist_opt"] for r in rows]))
    keep = t >= 0.2 * t[-1]
    return -float(np.polyfit(t[keep], y[keep], 1)[0])


def test_acceleration_rate_over_sqrt_nu_over_L_is_constant() -> None:
    top = _top("cycle")
    ratios = []
    for kappa in (10.0, 100.0, 1000.0):
        s = math.sqrt(0.5 / kappa)  # sqrt(ν/L), ν = μ/2
        prob = random_quadratic(top.n, 3, mu=1.0, L=kappa, seed=0)
        rows = _run(prob, top, 90.0 / s, 1.0 / s, init_noise=1.0)
        ratios.append(_decay_rate(rows) / s)
    ratios_a = np.array(ratios)
    assert ratios_a.max() / ratios_a.min() < 1.15, ratios
    assert 0.1 < ratios_a.mean() < 0.4, ratios  # ≈ 0.21 in the notes' independent simulation


# ---- counting ------------------------------------------------------------------------------
@pytest.mark.parametrize("graph", ["complete", "cycle", "star"])
def test_communications_and_gradients_per_unit_time(graph: str) -> None:
    top = _top(graph)
    lam = normalized_rate(top)
    from fedopt.topology.spectral import normalized_laplacian_rate

    assert lam == pytest.approx(normalized_laplacian_rate(top), rel=1e-9)
    known = {"complete": (N - 1) / math.sqrt(2), "star": N - 1.0, "cycle": 39.7}
    assert lam == pytest.approx(known[graph], rel=1e-9 if graph != "cycle" else 2e-3)
    prob = random_quadratic(top.n, 2, mu=1.0, L=10.0, seed=0)
    T = 60000.0 / lam
    rows = _run(prob, top, T, T)
    assert rows[-1]["messages"] / T == pytest.approx(lam, rel=0.05)
    assert rows[-1]["grad_evals"] / T == pytest.approx(top.n, rel=0.05)


def test_rate_condition_is_enforced() -> None:
    top = _top("cycle")
    prob = random_quadratic(top.n, 2, mu=1.0, L=10.0, seed=0)
    lam = normalized_rate(top)
    sub = top.with_rates(np.full(top.m, 0.8 * lam / top.m))
    with pytest.raises(ValueError, match="2·χ1"):
        _run(prob, sub, 1.0, 1.0)
    with pytest.raises(ValueError, match="rate_scale"):
        _run(prob, top, 1.0, 1.0, rate_scale=0.9)
    _run(prob, sub, 1.0, 1.0, allow_subcritical=True)
    ok = top.with_rates(np.full(top.m, 1.2 * lam / top.m))
    rows = _run(prob, ok, 50.0, 50.0)
    assert rows[-1]["messages"] / 50.0 == pytest.approx(1.2 * lam, rel=0.1)
    # β̃ uses χ1 of the rate-weighted Laplacian
    from fedopt.topology.spectral import chi1

    algo = make_algorithm("dadao")
    sim = Simulation(RunSpec("r", prob, ok, algo, 0, StopCriteria(time=1.0)))
    sim.start()
    assert isinstance(algo, DADAO)
    c = algo.constants(sim.ctx)
    assert c.beta_t == pytest.approx(2 * chi1(ok, ok.rates) * math.sqrt(c.L / c.nu), rel=1e-12)


# ---- invariants and lazy propagation -------------------------------------------------------
@pytest.mark.parametrize("graph", ["cycle", "rgg"])
def test_dual_sums_vanish_after_synchronizing(graph: str) -> None:
    top = _top(graph)
    prob = random_quadratic(top.n, 3, mu=1.0, L=10.0, seed=4)
    sim = run_batched(RunSpec("r", prob, top, make_algorithm("dadao", init_noise=1.0), 1, StopCriteria(time=80.0)), 80.0)
    s = sim.state["s"]
    assert np.abs(s[:, 4]).max() > 1e-2  # the dual variables are not trivially zero
    sim.algo.synchronize(sim.state, sim.ctx, 80.0)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(sim.state["T"], 80.0)
    assert np.abs(s[:, 4].sum(axis=0)).max() < 1e-10
    assert np.abs(s[:, 5].sum(axis=0)).max() < 1e-10


def test_synchronize_and_iterates_do_not_change_the_trajectory() -> None:
    top = _top("rgg")
    prob = random_quadratic(top.n, 3, mu=1.0, L=10.0, seed=4)

    def spec() -> RunSpec:
        return RunSpec("r", prob, top, make_algorithm("dadao", init_noise=1.0), 2, StopCriteria(time=60.0))

    plain = Simulation(spec())
    plain.start()
    plain.apply_events(60.0)
    synced = Simulation(spec())
    synced.start()
    for t in (7.0, 19.5, 33.0, 60.0):
        synced.apply_events(t)
        before = {k: v.copy() for k, v in synced.state.items()}
        X = synced.algo.iterates(synced.state, synced.ctx, t)
        for k in before:
            np.testing.assert_array_equal(synced.state[k], before[k])  # iterates is read-only
        synced.algo.synchronize(synced.state, synced.ctx, t)  # type: ignore[attr-defined]
        np.testing.assert_allclose(synced.state["s"][:, 0], X, rtol=0, atol=1e-12)
    plain.algo.synchronize(plain.state, plain.ctx, 60.0)  # type: ignore[attr-defined]
    np.testing.assert_allclose(synced.state["s"], plain.state["s"], rtol=0, atol=1e-10)


def test_stochastic_gradients_reach_a_neighbourhood() -> None:
    top = _top("cycle")
    prob = _logistic(top.n, 3, seed=0)
    rows = _run(prob, top, 300.0, 50.0, batch_size=4, init_noise=1.0)
    assert rows[-1]["dist_opt"] < 0.05 * rows[0]["dist_opt"]
    full = rows[-1]["grad_evals"]
    assert full < 0.5 * top.n * 300.0  # a minibatch counts b/m_i of a gradient


# ---- time-varying graphs -------------------------------------------------------------------
class _Sequence:
    """A minimal periodic sequence of graphs (what the engine needs: ``at`` and ``period``)."""

    def __init__(self, tops: list[Topology], period: float) -> None:
        self.topologies, self.period = tops, period

    def at(self, t: float) -> Topology:
        return self.topologies[int(t // self.period) % len(self.topologies)]


def test_time_varying_worst_case_constants_and_convergence() -> None:
    from fedopt.topology.spectral import chi1, chi2

    tops = [Topology.from_networkx(f"rgg{k}", _rgg(N, 0.45, seed=10 * k)) for k in range(4)]
    tv = _Sequence(tops, period=2.0)
    prob = random_quadratic(N, 3, mu=1.0, L=4.0, seed=1)
    algo = make_algorithm("dadao", init_noise=1.0)
    sim = Simulation(RunSpec("tv", prob, tv, algo, 0, StopCriteria(time=350.0), record_every=50.0))
    sim.ctx.extra["time_varying"] = tv
    res = sim.run()
    assert res.status == "ok", res.message
    assert res.rows[-1]["dist_opt"] < 1e-10 * res.rows[0]["dist_opt"]
    # uniform rates from the worst-case χ's of L_norm over the sequence, per graph λ_tot/|E_k|
    norm = [(chi1(t, np.full(t.m, 1 / t.m)), chi2(t, np.full(t.m, 1 / t.m))) for t in tops]
    lam = math.sqrt(2 * max(c[0] for c in norm) * max(c[1] for c in norm))
    assert isinstance(algo, DADAO)
    plan = algo.rate_plan(sim.ctx)
    for t in tops:
        np.testing.assert_allclose(plan.rates_for(t), lam / t.m, rtol=1e-12)
    worst = max(chi1(t, plan.rates_for(t)) for t in tops)
    assert 2 * worst * max(chi2(t, plan.rates_for(t)) for t in tops) <= 1 + 1e-9
    c = algo.constants(sim.ctx)
    assert c.beta_t == pytest.approx(2 * worst * math.sqrt(c.L / c.nu), rel=1e-12)
    # communications follow the graph in force: λ_tot per unit time throughout, on every graph
    assert res.rows[-1]["messages"] / 350.0 == pytest.approx(lam, rel=0.05)
