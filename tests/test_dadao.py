"""DADAO (Nabli & Oyallon 2023): exact mixing, exact convergence, acceleration, counting, invariants."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import reference_spectral as ref_spec
import scipy.linalg
from reference_dadao import ReferenceDADAO
from reference_loop import run_batched, run_sequential

from fedopt.algorithms import make_algorithm
from fedopt.algorithms.decentralized.dadao import DADAO, DADAOConstants, mixing_matrices, normalized_rate
from fedopt.core.clocks import EventStream, PoissonClocks
from fedopt.engines.base import RunSpec, Simulation, StopCriteria
from fedopt.problems.base import Problem
from fedopt.problems.quadratic import Quadratic, random_quadratic
from fedopt.topology.graph import Topology
from fedopt.topology.time_varying import TimeVaryingTopology

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


# ---- the paper's equations, one event at a time -------------------------------------------
REFERENCE_GRAPHS = {
    "cycle6": (lambda: nx.cycle_graph(6), 30.0),
    "star5": (lambda: nx.star_graph(4), 40.0),
    "rgg8": (lambda: _rgg(8, 0.6), 25.0),
}


def _reference_quadratic(n: int, d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``A_i = Q_i diag(spectrum in [1, 10], both ends attained) Q_iᵀ`` and ``b_i ~ N(0, I)``."""
    Q, _ = np.linalg.qr(rng.normal(size=(n, d, d)))
    spectra = rng.uniform(1.0, 10.0, size=(n, d))
    spectra[:, 0], spectra[:, 1] = 1.0, 10.0
    A = np.einsum("kij,kj,klj->kil", Q, spectra, Q)
    return 0.5 * (A + A.transpose(0, 2, 1)), rng.normal(size=(n, d))


@pytest.mark.parametrize("rates", ["uniform", "given"])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("graph", sorted(REFERENCE_GRAPHS))
def test_states_equal_the_independent_reference(graph: str, seed: int, rates: str) -> None:
    """The engine's level-batched DADAO and a plain one-event-at-a-time implementation of
    the paper's equations (scipy's expm for the mixing ODE, its own constants, χ1 and
    rates) on the same event stream: the full state (x, x̃, y, ỹ, z, z̃) and the last-event
    times agree to 1e-10, before and after synchronizing every node."""
    make, t_end = REFERENCE_GRAPHS[graph]
    top = Topology.from_networkx(graph, make())
    rng = np.random.default_rng([seed, 17])
    A, b = _reference_quadratic(top.n, 3, rng)
    x0 = rng.normal(size=(top.n, 3))
    lam_uniform = ref_spec.dadao_uniform_total_rate(top.n, top.edges) / top.m
    if rates == "uniform":
        lam = np.full(top.m, lam_uniform)
    else:  # random rates scaled 10 % above the condition 2·χ1(Λ)·χ2(Λ) = 1
        w = rng.uniform(0.3, 3.0, top.m)
        lam = 1.1 * w * math.sqrt(2 * ref_spec.chi1(top.n, top.edges, w) * ref_spec.chi2(top.n, top.edges, w))
        top = top.with_rates(lam)
    sim = Simulation(RunSpec("ref", Quadratic(A, b), top, make_algorithm("dadao"), seed, StopCriteria(time=t_end)))
    sim.start()
    sim.state["s"][:, 0] = x0
    node_rates, edge_rates = sim.algo.clock_rates(sim.ctx)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(node_rates, 1.0)
    np.testing.assert_allclose(edge_rates, lam, rtol=1e-12)
    # the engine's event stream: the same clocks on the run's "clocks" stream
    block = EventStream(PoissonClocks(node_rates, top.edges, edge_rates), sim.rng.fresh("clocks")).until(t_end)
    sim.apply_events(t_end)
    assert sim.n_events == len(block)
    assert 300 < len(block) < 1500 and 0 < int(block.is_gossip.sum()) < len(block)

    ref = ReferenceDADAO(A, b, top.edges, lam, x0)
    assert isinstance(sim.algo, DADAO)
    assert sim.algo.constants(sim.ctx).beta_t == pytest.approx(ref.beta_t, rel=1e-12)
    ref.run(block.t, block.node_a, block.node_b)
    S = sim.state["s"]  # rows x, x̃, y, ỹ, z, z̃
    assert np.abs(ref.S[:, 5]).max() > 0.1 and np.abs(ref.S[:, 0] - x0).max() > 0.1  # the states moved
    np.testing.assert_array_equal(sim.state["T"], ref.T)
    np.testing.assert_allclose(S, ref.S, rtol=0, atol=1e-10)
    sim.algo.synchronize(sim.state, sim.ctx, t_end)
    ref.synchronize(t_end)
    np.testing.assert_allclose(S, ref.S, rtol=0, atol=1e-10)


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
def _uniform_rate_closed_form(graph: str, n: int) -> float:
    """DADAO's uniform total rate ``λ_tot = √(2 χ1 χ2)`` of ``L_G/|E|`` from known spectra.

    ``χ1(L_G/m) = m/λ2`` and ``χ2(L_G/m) = m R/2`` (``R`` the effective resistance of
    every edge), so ``λ_tot = m √(R/λ2)``: complete ``λ2 = n``, ``R = 2/n``,
    ``m = n(n−1)/2``; star ``λ2 = 1``, ``R = 1``, ``m = n−1``; cycle
    ``λ2 = 2 − 2cos(2π/n)``, ``R = (n−1)/n``, ``m = n``.
    """
    m, resistance, lam2 = {
        "complete": (n * (n - 1) / 2, 2 / n, float(n)),
        "star": (n - 1, 1.0, 1.0),
        "cycle": (n, (n - 1) / n, 2 - 2 * math.cos(2 * math.pi / n)),
    }[graph]
    return m * math.sqrt(resistance / lam2)


@pytest.mark.parametrize("graph", ["complete", "cycle", "star"])
def test_communications_and_gradients_per_unit_time(graph: str) -> None:
    top = _top(graph)
    lam = normalized_rate(top)
    assert lam == pytest.approx(_uniform_rate_closed_form(graph, N), rel=1e-9)
    prob = random_quadratic(top.n, 2, mu=1.0, L=10.0, seed=0)
    T = 60000.0 / lam
    rows = _run(prob, top, T, T)
    # Poisson counts of mean 60000 and ≥ 90000: 5 standard deviations are under 2 %
    assert rows[-1]["messages"] / T == pytest.approx(lam, rel=0.02)
    assert rows[-1]["grad_evals"] / T == pytest.approx(top.n, rel=0.02)


def test_rate_condition_is_enforced() -> None:
    top = _top("cycle")
    prob = random_quadratic(top.n, 2, mu=1.0, L=10.0, seed=0)
    lam = _uniform_rate_closed_form("cycle", N)
    sub = top.with_rates(np.full(top.m, 0.8 * lam / top.m))
    with pytest.raises(ValueError, match="2·χ1"):
        _run(prob, sub, 1.0, 1.0)
    with pytest.raises(ValueError, match="rate_scale"):
        _run(prob, top, 1.0, 1.0, rate_scale=0.9)
    _run(prob, sub, 1.0, 1.0, allow_subcritical=True)
    ok = top.with_rates(np.full(top.m, 1.2 * lam / top.m))
    rows = _run(prob, ok, 50.0, 50.0)
    assert rows[-1]["messages"] / 50.0 == pytest.approx(1.2 * lam, rel=0.1)
    # β̃ = 2 χ1(Λ) √(L/ν) with χ1 of the rate-weighted Laplacian Λ = (1.2 λ_tot/N) L_cycle,
    # λ2(L_cycle) = 2 − 2cos(2π/N); L = 10 and ν = μ/2 = 1/2 (both ends of the spectrum attained)
    algo = make_algorithm("dadao")
    sim = Simulation(RunSpec("r", prob, ok, algo, 0, StopCriteria(time=1.0)))
    sim.start()
    assert isinstance(algo, DADAO)
    chi1_rates = 1.0 / (1.2 * lam / N * (2 - 2 * math.cos(2 * math.pi / N)))
    assert algo.constants(sim.ctx).beta_t == pytest.approx(2 * chi1_rates * math.sqrt(10.0 / 0.5), rel=1e-12)


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
    tops = [Topology.from_networkx(f"rgg{k}", _rgg(N, 0.45, seed=10 * k)) for k in range(4)]
    tv = _Sequence(tops, period=2.0)
    prob = random_quadratic(N, 3, mu=1.0, L=4.0, seed=1)
    algo = make_algorithm("dadao", init_noise=1.0)
    sim = Simulation(RunSpec("tv", prob, tv, algo, 0, StopCriteria(time=350.0), record_every=50.0))
    res = sim.run()
    assert res.status == "ok", res.message
    assert res.rows[-1]["dist_opt"] < 1e-10 * res.rows[0]["dist_opt"]
    # uniform rates from the worst-case χ's of L_norm over the sequence, per graph λ_tot/|E_k|
    norm = [np.full(t.m, 1 / t.m) for t in tops]
    lam = math.sqrt(2 * max(ref_spec.chi1(t.n, t.edges, w) for t, w in zip(tops, norm))
                    * max(ref_spec.chi2(t.n, t.edges, w) for t, w in zip(tops, norm)))
    assert isinstance(algo, DADAO)
    plan = algo.rate_plan(sim.ctx)
    for t in tops:
        np.testing.assert_allclose(plan.rates_for(t), lam / t.m, rtol=1e-12)
    worst = max(ref_spec.chi1(t.n, t.edges, np.full(t.m, lam / t.m)) for t in tops)
    assert 2 * worst * max(ref_spec.chi2(t.n, t.edges, np.full(t.m, lam / t.m)) for t in tops) <= 1 + 1e-9
    # β̃ = 2 · (worst χ1 of the rate-weighted Laplacians) · √(L/ν), L = 4, ν = μ/2 = 1/2
    assert algo.constants(sim.ctx).beta_t == pytest.approx(2 * worst * math.sqrt(8.0), rel=1e-12)


def test_time_varying_communications_per_period_follow_the_graph_in_force() -> None:
    """Three graphs gossiping at 1×, 3× and 9× the sequence's worst-case uniform total rate,
    switching every unit of time: the communications of every period are a Poisson count
    of the rate of the graph in force then (5 standard deviations; the three bands are
    disjoint, so a run that never switched, or switched graphs without switching clocks,
    fails), and the gradients stay at one per node per unit time."""
    graphs = [Topology.from_networkx(f"rgg{k}", _rgg(N, 0.45, seed=10 * k)) for k in range(3)]
    norm = [np.full(t.m, 1 / t.m) for t in graphs]
    lam_w = math.sqrt(2 * max(ref_spec.chi1(t.n, t.edges, w) for t, w in zip(graphs, norm))
                      * max(ref_spec.chi2(t.n, t.edges, w) for t, w in zip(graphs, norm)))
    scales = (1.0, 3.0, 9.0)
    tops = [t.with_rates(np.full(t.m, s * lam_w / t.m)) for t, s in zip(graphs, scales)]
    period, periods = 1.0, 60
    tv = TimeVaryingTopology(tops, period)
    prob = random_quadratic(N, 2, mu=1.0, L=4.0, seed=1)
    algo = make_algorithm("dadao", init_noise=1.0)
    sim = Simulation(RunSpec("tv", prob, tv, algo, 7, StopCriteria(time=periods * period), record_every=period))
    res = sim.run()
    assert res.status == "ok", res.message
    assert [r["time"] for r in res.rows] == pytest.approx(np.arange(periods + 1) * period)
    # the given rates are used as they are; β̃ from the worst χ1 of the rate-weighted Laplacians
    assert isinstance(algo, DADAO)
    plan = algo.rate_plan(sim.ctx)
    for t in tops:
        np.testing.assert_array_equal(plan.rates_for(t), t.rates)
    worst = max(ref_spec.chi1(t.n, t.edges, t.rates) for t in tops)
    assert algo.constants(sim.ctx).beta_t == pytest.approx(2 * worst * math.sqrt(8.0), rel=1e-12)
    counts = np.diff([r["messages"] for r in res.rows])
    grads = np.diff([r["grad_evals"] for r in res.rows])
    mean = np.array([scales[k % len(tops)] * lam_w * period for k in range(periods)])
    bands = [(m - 5 * math.sqrt(m), m + 5 * math.sqrt(m)) for m in sorted(set(mean.tolist()))]
    assert bands[0][1] < bands[1][0] and bands[1][1] < bands[2][0]  # each graph is told apart
    assert (np.abs(counts - mean) <= 5 * np.sqrt(mean)).all(), list(zip(counts.tolist(), mean.round(1).tolist()))
    assert (np.abs(grads - N * period) <= 5 * math.sqrt(N * period)).all()
    for k in range(len(tops)):  # all periods of one graph together
        total, expected = counts[k :: len(tops)].sum(), mean[k :: len(tops)].sum()
        assert abs(total - expected) <= 5 * math.sqrt(expected), (k, total, expected)
