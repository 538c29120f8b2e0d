"""Optimal gossip rates: symmetry, the barbell references, closed forms, feasibility,
the first-order path against the SDP, DADAO with optimized rates, errors."""

from __future__ import annotations

import dataclasses
import math

import networkx as nx
import numpy as np
import pytest
import reference_spectral as ref_spec

from fedopt.algorithms import make_algorithm
from fedopt.engines.base import RunSpec, Simulation, StopCriteria
from fedopt.problems.quadratic import random_quadratic
from fedopt.topology import spectral
from fedopt.topology.graph import Topology
from fedopt.topology.rates import (
    OBJECTIVES, RateObjective, optimize_rates, optimized_topology, register_objective, total_resistance,
)
from fedopt.topology.spec import resolve_topology

ACCURATE = "clarabel"


def _top(name: str, g: nx.Graph) -> Topology:
    return Topology.from_networkx(name, g)


def _rgg(n: int, radius: float, seed: int = 0) -> Topology:
    s = seed
    while True:
        g = nx.random_geometric_graph(n, radius, seed=s)
        if nx.is_connected(g):
            return _top(f"rgg{n}", g)
        s += 1


SYMMETRIC = {
    "complete6": lambda: nx.complete_graph(6),
    "cycle8": lambda: nx.cycle_graph(8),
    "star7": lambda: nx.star_graph(6),
    "hypercube3": lambda: nx.hypercube_graph(3),
}


@pytest.fixture(scope="module")
def barbell() -> Topology:
    return _top("barbell_8_0", nx.barbell_graph(8, 0))


@pytest.fixture(scope="module")
def barbell_solution(barbell: Topology):  # type: ignore[no-untyped-def]
    return optimize_rates(barbell, "dadao", solver=ACCURATE, method="sdp")


def test_registry() -> None:
    assert set(OBJECTIVES) >= {"dadao", "max_connectivity", "min_total_resistance", "fastest_mixing"}
    with pytest.raises(ValueError, match="already registered"):
        register_objective(OBJECTIVES["dadao"])
    assert all(isinstance(o, RateObjective) for o in OBJECTIVES.values())


# ---- by symmetry, uniform rates are optimal ---------------------------------------------------
@pytest.mark.parametrize("graph", sorted(SYMMETRIC))
@pytest.mark.parametrize("objective", ["dadao", "max_connectivity", "min_total_resistance", "fastest_mixing"])
def test_uniform_optimal_on_edge_transitive_graphs(graph: str, objective: str) -> None:
    top = _top(graph, SYMMETRIC[graph]())
    sol = optimize_rates(top, objective, solver=ACCURATE, method="sdp")
    assert sol.improvement == pytest.approx(1.0, abs=2e-4), (graph, objective, sol.objective, sol.uniform_objective)
    assert sol.status.startswith("optimal")
    assert sol.duality_gap is not None and sol.duality_gap < 1e-4
    assert sol.objective == pytest.approx(_uniform_value(top, objective), rel=2e-4, abs=1e-9)


def _uniform_value(top: Topology, objective: str) -> float:
    """The objective of the best uniform rates, from the spectrum of ``L_G`` (dense numpy).

    dadao: ``λ_tot = √(2 χ1 χ2)`` of ``L_G/|E|``; max_connectivity: ``λ2(L_G)`` (budget
    ``Σλ = |E|``); min_total_resistance: ``n Σ_{k≥2} 1/λ_k(L_G)``; fastest_mixing:
    ``W = I − a L_G`` with ``a = min(2/(λ2 + λ_n), 1/d_max)`` (the best constant weight
    that keeps ``W`` stochastic), SLEM ``max(|1 − a λ2|, |1 − a λ_n|)``.
    """
    ev = np.linalg.eigvalsh(ref_spec.laplacian(top.n, top.edges))
    if objective == "dadao":
        return ref_spec.dadao_uniform_total_rate(top.n, top.edges)
    if objective == "max_connectivity":
        return float(ev[1])
    if objective == "min_total_resistance":
        return float(top.n * np.sum(1.0 / ev[1:]))
    a = min(2.0 / (ev[1] + ev[-1]), 1.0 / float(np.diag(ref_spec.laplacian(top.n, top.edges)).max()))
    return float(max(abs(1 - a * ev[1]), abs(1 - a * ev[-1])))


# ---- the two joined cliques ---------------------------------------------------------------------------
def test_barbell_dadao_improvement(barbell: Topology, barbell_solution) -> None:  # type: ignore[no-untyped-def]
    sol = barbell_solution
    assert sol.improvement >= 3.5
    assert sol.improvement == pytest.approx(3.83, rel=0.01)  # independent reference
    assert sol.objective == pytest.approx(float(sol.rates.sum()))
    assert sol.uniform_objective == pytest.approx(ref_spec.dadao_uniform_total_rate(barbell.n, barbell.edges), rel=1e-9)


def test_barbell_with_path_reference() -> None:
    top = _top("barbell_8_8", nx.barbell_graph(8, 8))
    sol = optimize_rates(top, "dadao", method="first_order")
    assert sol.improvement == pytest.approx(2.78, rel=0.01)


def test_sdp_and_first_order_agree_on_dadao(barbell: Topology, barbell_solution) -> None:  # type: ignore[no-untyped-def]
    fo = optimize_rates(barbell, "dadao", method="first_order")
    assert fo.objective == pytest.approx(barbell_solution.objective, rel=0.01)
    scs = optimize_rates(barbell, "dadao", solver="scs", method="sdp")
    assert scs.objective == pytest.approx(barbell_solution.objective, rel=1e-3)


# ---- feasibility, recomputed independently ------------------------------------------------------------
@pytest.mark.parametrize("graph", ["barbell", "lollipop", "grid", "rgg"])
def test_dadao_rates_feasible(graph: str) -> None:
    g = {"barbell": lambda: nx.barbell_graph(5, 0), "lollipop": lambda: nx.lollipop_graph(6, 4),
         "grid": lambda: nx.grid_2d_graph(3, 3), "rgg": lambda: _rgg(20, 0.4).graph}[graph]()
    top = _top(graph, g)
    sol = optimize_rates(top, "dadao", solver=ACCURATE)
    assert (sol.rates >= 0).all() and (sol.rates > 0).all()  # DADAO needs every λ_e > 0
    c1, c2 = spectral.chi1(top, sol.rates), spectral.chi2(top, sol.rates)
    # independent recomputation: dense eigenvalues and pseudo-inverse
    ref1, ref2 = ref_spec.chi1(top.n, top.edges, sol.rates), ref_spec.chi2(top.n, top.edges, sol.rates)
    assert c1 == pytest.approx(ref1, rel=1e-8) and c2 == pytest.approx(ref2, rel=1e-8)
    assert 2 * ref1 * ref2 == pytest.approx(1.0, rel=1e-6)  # on the condition, not above it
    assert sol.chi1 == pytest.approx(c1) and sol.chi2 == pytest.approx(c2)
    assert sol.improvement >= 1 - 1e-4


@pytest.mark.parametrize("objective", ["max_connectivity", "min_total_resistance", "fastest_mixing"])
def test_other_objectives_feasible(objective: str) -> None:
    top = _top("lollipop", nx.lollipop_graph(5, 3))
    sol = optimize_rates(top, objective, solver=ACCURATE)
    assert (sol.rates >= 0).all()
    if objective == "fastest_mixing":
        deg = np.bincount(top.edges.ravel(), weights=np.repeat(sol.rates, 2), minlength=top.n)
        assert deg.max() <= 1 + 1e-6
        assert sol.objective == pytest.approx(ref_spec.slem(top.n, top.edges, sol.rates), rel=1e-9)
    else:
        assert float(sol.rates.sum()) == pytest.approx(top.m)  # budget Σλ = Σ c_e = m
        ev = np.linalg.eigvalsh(ref_spec.laplacian(top.n, top.edges, sol.rates))
        value = ev[1] if objective == "max_connectivity" else top.n * np.sum(1.0 / ev[1:])
        assert sol.objective == pytest.approx(float(value), rel=1e-9)
    assert sol.improvement > 1.0


# ---- closed forms -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [6, 9])
def test_max_connectivity_path_closed_form(n: int) -> None:
    top = _top(f"path{n}", nx.path_graph(n))
    sol = optimize_rates(top, "max_connectivity", solver=ACCURATE, method="sdp")
    k = np.arange(1, n)
    expected = k * (n - k) / np.sum(k * (n - k)) * top.m
    np.testing.assert_allclose(sol.rates, expected, rtol=2e-3)
    assert sol.objective == pytest.approx(ref_spec.lambda2(top.n, top.edges, expected), rel=1e-5)


def test_total_resistance_matches_pairwise_sum() -> None:
    top = _rgg(12, 0.5)
    w = np.random.default_rng(0).uniform(0.5, 2.0, top.m)
    Lp = np.linalg.pinv(top.laplacian(w))
    pair = sum(Lp[i, i] + Lp[j, j] - 2 * Lp[i, j] for i in range(top.n) for j in range(i + 1, top.n))
    assert total_resistance(top, w) == pytest.approx(pair, rel=1e-9)


# ---- the large-graph path against the SDP -------------------------------------------------------------------
@pytest.mark.parametrize("objective", ["max_connectivity", "min_total_resistance"])
def test_first_order_matches_sdp_midsize(objective: str) -> None:
    top = _rgg(40, 0.3)
    sdp = optimize_rates(top, objective, solver="scs", method="sdp")
    fo = optimize_rates(top, objective, method="first_order")
    assert fo.objective == pytest.approx(sdp.objective, rel=0.01)
    assert fo.method == "first_order" and fo.duality_gap is None


# ---- fastest mixing: the projected-gradient path ----------------------------------------------------------
def _degree_sums(top: Topology, w: np.ndarray) -> np.ndarray:
    return np.bincount(top.edges.ravel(), weights=np.repeat(w, 2), minlength=top.n)


def test_fastest_mixing_first_order_matches_sdp() -> None:
    top = _rgg(30, 0.3)
    sdp = optimize_rates(top, "fastest_mixing", solver=ACCURATE, method="sdp")
    fo = optimize_rates(top, "fastest_mixing", method="first_order")
    assert fo.method == "first_order" and fo.duality_gap is None
    assert fo.objective == pytest.approx(sdp.objective, rel=1e-3)  # the SLEM
    assert (1 - fo.objective) == pytest.approx(1 - sdp.objective, rel=0.01)  # the spectral gap
    assert (fo.rates >= 0).all() and _degree_sums(top, fo.rates).max() <= 1 + 1e-12
    assert fo.objective == pytest.approx(ref_spec.slem(top.n, top.edges, fo.rates), rel=1e-9)


@pytest.mark.parametrize("n", [8, 13])
def test_fastest_mixing_path_closed_form(n: int) -> None:
    # Boyd, Diaconis, Sun & Xiao (2006): on a path the fastest chain moves with probability
    # 1/2 along every edge, SLEM = cos(π/n).
    top = _top(f"path{n}", nx.path_graph(n))
    sol = optimize_rates(top, "fastest_mixing", method="first_order")
    assert sol.objective == pytest.approx(math.cos(math.pi / n), abs=1e-5)
    np.testing.assert_allclose(sol.rates, 0.5, atol=5e-3)


def test_fastest_mixing_sparse_path_agrees_with_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    top = _rgg(40, 0.3)
    dense = optimize_rates(top, "fastest_mixing", method="first_order")
    monkeypatch.setattr(spectral, "SPARSE_THRESHOLD", 10)  # Lanczos ends of the spectrum, grounded LU
    sparse = optimize_rates(top, "fastest_mixing", method="first_order")
    assert (1 - sparse.objective) == pytest.approx(1 - dense.objective, rel=0.01)


def test_top_bound_certifies_lambda_max_and_shift_invert_finds_the_top(monkeypatch: pytest.MonkeyPatch) -> None:
    from fedopt.topology.rates.fastest_mixing import TopBound
    from fedopt.topology.rates.linalg import WeightedLaplacian

    top = _rgg(40, 0.3)
    rng = np.random.default_rng(5)
    w1 = rng.uniform(0.02, 0.1, top.m)
    tb = TopBound(top)
    tb.update(w1, float(np.linalg.eigvalsh(top.laplacian(w1))[-1]))
    monkeypatch.setattr(spectral, "SPARSE_THRESHOLD", 10)
    for scale in (1e-4, 1e-2, 0.5):
        w2 = w1 * np.exp(scale * rng.standard_normal(top.m))  # positive: the graph stays connected
        ev = np.linalg.eigvalsh(top.laplacian(w2))
        bound = tb.bound(w2)
        assert bound is not None and bound >= ev[-1]
        hi, _ = WeightedLaplacian(top, w2).largest(6, above=bound)
        np.testing.assert_allclose(hi, ev[::-1][:6], rtol=1e-9)


def test_degree_polytope_projection_is_exact() -> None:
    import cvxpy as cp

    from fedopt.topology.rates.fastest_mixing import DegreePolytope

    top = _rgg(25, 0.35)
    C = DegreePolytope(top)
    rng = np.random.default_rng(3)
    for _ in range(3):
        y = rng.uniform(-0.2, 0.7, top.m)
        w = C.project(y)
        assert (w >= 0).all() and (C.A @ w).max() <= 1 + 1e-12
        x = cp.Variable(top.m)
        ref = cp.Problem(cp.Minimize(cp.sum_squares(x - y)), [x >= 0, C.A @ x <= 1]).solve(solver="CLARABEL")
        assert float(np.sum((w - y) ** 2)) <= ref + 1e-7


def test_first_order_sparse_path_runs() -> None:
    g = nx.connected_watts_strogatz_graph(600, 4, 0.1, seed=0)
    top = _top("ws600", g)
    assert top.n >= spectral.SPARSE_THRESHOLD
    sol = optimize_rates(top, "max_connectivity")
    assert sol.method == "first_order" and sol.improvement > 1.0
    assert (sol.rates >= 0).all() and float(sol.rates.sum()) == pytest.approx(top.m)
    # reproducible to the bit: Lanczos starts from a fixed vector, not ARPACK's own generator
    np.testing.assert_array_equal(optimize_rates(top, "max_connectivity").rates, sol.rates)


def test_cost_weighted_dadao_shifts_rate_off_expensive_edges() -> None:
    top = _top("lollipop", nx.lollipop_graph(5, 2))
    plain = optimize_rates(top, "dadao", method="first_order")
    costs = np.ones(top.m)
    costs[:4] = 10.0  # edges of node 0 are expensive
    cw = optimize_rates(top, "dadao", costs=costs, method="first_order")
    assert cw.objective == pytest.approx(float(costs @ cw.rates))
    assert float(cw.rates[:4].sum()) < float(plain.rates[:4].sum())
    assert 2 * ref_spec.chi1(top.n, top.edges, cw.rates) * ref_spec.chi2(top.n, top.edges, cw.rates) <= 1 + 1e-6


# ---- errors ------------------------------------------------------------------------------------------------------
def test_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    g = nx.Graph([(0, 1), (2, 3)])
    with pytest.raises(ValueError, match="disconnected"):
        optimize_rates(g, "dadao")
    top = _top("c5", nx.cycle_graph(5))
    with pytest.raises(ValueError, match="unknown rate objective"):
        optimize_rates(top, "fastest")
    with pytest.raises(ValueError, match="unknown solver"):
        optimize_rates(top, "dadao", solver="mosek", method="sdp")
    sdp_only = dataclasses.replace(OBJECTIVES["fastest_mixing"], name="sdp_only", first_order=None)
    monkeypatch.setitem(OBJECTIVES, "sdp_only", sdp_only)
    with pytest.raises(ValueError, match="no first-order path"):
        optimize_rates(top, "sdp_only", method="first_order")
    with pytest.raises(ValueError, match="unknown method"):
        optimize_rates(top, "dadao", method="newton")
    with pytest.raises(ValueError, match="one value per edge"):
        optimize_rates(top, "dadao", costs=np.ones(3))
    import cvxpy as cp

    monkeypatch.setattr(cp, "installed_solvers", lambda: ["CLARABEL"])
    with pytest.raises(ValueError, match="not installed"):
        optimize_rates(top, "dadao", solver="scs", method="sdp")


# ---- configs and DADAO ------------------------------------------------------------------------------------------------
def test_config_rates_key_optimizes_on_the_fly() -> None:
    top = resolve_topology({"name": "barbell", "n": 16, "rates": {"objective": "dadao", "method": "first_order"}})
    assert top.rates is not None
    assert 2 * ref_spec.chi1(top.n, top.edges, top.rates) * ref_spec.chi2(top.n, top.edges, top.rates) <= 1 + 1e-6
    again = optimized_topology(resolve_topology({"name": "barbell", "n": 16}), "dadao", method="first_order")
    np.testing.assert_array_equal(again.rates, top.rates)


def _dadao(top: Topology, t_end: float) -> list[dict[str, float]]:
    prob = random_quadratic(top.n, 3, mu=1.0, L=10.0, seed=1)
    spec = RunSpec("r", prob, top, make_algorithm("dadao", init_noise=1.0), 0, StopCriteria(time=t_end), record_every=t_end / 4)
    res = Simulation(spec).run()
    assert res.status == "ok", res.message
    return res.rows


def test_dadao_with_optimized_rates_communicates_less(barbell: Topology, barbell_solution) -> None:  # type: ignore[no-untyped-def]
    t_end = 120.0
    uni = _dadao(barbell, t_end)
    opt = _dadao(barbell_solution.apply(barbell), t_end)
    # same accuracy per unit time (decay rates within a factor), far fewer communications
    rate = lambda rows: math.log(rows[0]["dist_opt"] / rows[-1]["dist_opt"]) / rows[-1]["time"]  # noqa: E731
    assert rate(opt) >= 0.75 * rate(uni) and rate(opt) > 0.05
    assert uni[-1]["messages"] / opt[-1]["messages"] >= 3.0


# ---- the solver choice and DADAO's χ2 forms ---------------------------------------------------------------------------
def _n_nodes(n: int) -> Topology:
    return _top(f"path{n}", nx.path_graph(n))


# Expected solver="auto" choices, read off benchmarks/RESULTS_rates.md (not from the code's table).
@pytest.mark.parametrize(("objective", "n", "expected"), [
    ("dadao", 8, "clarabel"), ("dadao", 15, "clarabel"), ("dadao", 60, "clarabel"), ("dadao", 100, "clarabel"),
    ("max_connectivity", 8, "clarabel"), ("max_connectivity", 60, "clarabel"), ("max_connectivity", 61, "scs"),
    ("max_connectivity", 100, "scs"),
    ("min_total_resistance", 8, "scs"), ("min_total_resistance", 30, "scs"), ("min_total_resistance", 100, "scs"),
    ("fastest_mixing", 8, "clarabel"), ("fastest_mixing", 30, "clarabel"), ("fastest_mixing", 100, "clarabel"),
])
def test_auto_solver_table(objective: str, n: int, expected: str) -> None:
    assert OBJECTIVES[objective].choose_solver(_n_nodes(n)) == expected


@pytest.mark.parametrize("objective", ["dadao", "max_connectivity", "min_total_resistance", "fastest_mixing"])
def test_auto_solver_is_recorded_and_explicit_solver_overrides(objective: str) -> None:
    top = _top("lollipop", nx.lollipop_graph(4, 2))
    auto = optimize_rates(top, objective, method="sdp")
    assert auto.solver == OBJECTIVES[objective].choose_solver(top)
    assert auto.info["solver_selection"] == "auto" and auto.info["solver_iterations"] > 0
    other = "scs" if auto.solver == "clarabel" else "clarabel"
    explicit = optimize_rates(top, objective, method="sdp", solver=other)
    assert explicit.solver == other and explicit.info["solver_selection"] == "explicit"
    assert explicit.objective == pytest.approx(auto.objective, rel=1e-4)
    assert "solver_selection" not in optimize_rates(top, objective, method="first_order").info


def test_dadao_barbell_6_3_default_is_the_fast_solver() -> None:
    # SCS took tens of thousands of iterations here (benchmarks/RESULTS_rates.md); Clarabel on the flow form ~30
    top = _top("barbell_6_3", nx.barbell_graph(6, 3))
    sol = optimize_rates(top, "dadao")
    assert sol.method == "sdp" and sol.solver == "clarabel" and sol.info["form"] == "flow"
    assert sol.info["solver_iterations"] <= 100
    assert sol.status == "optimal" and sol.duality_gap is not None and sol.duality_gap < 1e-5
    assert 2 * spectral.chi1(top, sol.rates) * spectral.chi2(top, sol.rates) <= 1 + 1e-9
    assert sol.objective <= optimize_rates(top, "dadao", method="first_order").objective


@pytest.mark.parametrize("graph", ["barbell_3_2", "lollipop_5_3", "rgg10"])
def test_dadao_chi2_forms_reach_the_same_optimum(graph: str) -> None:
    g = {"barbell_3_2": lambda: nx.barbell_graph(3, 2), "lollipop_5_3": lambda: nx.lollipop_graph(5, 3),
         "rgg10": lambda: _rgg(10, 0.5).graph}[graph]()
    top = _top(graph, g)
    sols = {form: optimize_rates(top, "dadao", method="sdp", solver=ACCURATE, form=form)
            for form in ("flow", "edge_lmi", "block_lmi")}
    ref = sols["edge_lmi"].objective
    for form, sol in sols.items():
        assert sol.info["form"] == form and sol.status == "optimal"
        assert sol.objective == pytest.approx(ref, rel=1e-5), form


def _fixed_s_sdp(top: Topology, s: float) -> float:
    """DADAO notes §3, SDP(s): min Σλ s.t. Λ ⪰ (1/s)(I − 11ᵀ/n) on 1⊥, [[Λ + 11ᵀ/n, b_e], [b_eᵀ, 1/s]] ⪰ 0."""
    import cvxpy as cp

    n = top.n
    lam = cp.Variable(top.m)
    terms = []
    for k, (i, j) in enumerate(top.edges):
        b = np.zeros(n)
        b[i], b[j] = 1.0, -1.0
        terms.append(lam[k] * np.outer(b, b))
    Lam = cp.sum(terms)
    J = np.ones((n, n)) / n
    cons = [lam >= 0, Lam + J - (np.eye(n) - J) / s >> 0]
    for i, j in top.edges:
        b = np.zeros((n, 1))
        b[i], b[j] = 1.0, -1.0
        cons.append(cp.bmat([[Lam + J, b], [b.T, np.array([[1.0 / s]])]]) >> 0)
    prob = cp.Problem(cp.Minimize(cp.sum(lam)), cons)
    prob.solve(solver="CLARABEL")
    return float(prob.value)


def test_dadao_one_sdp_is_the_minimum_over_s_of_the_split_sdps() -> None:
    # 2χ1χ2 ≤ 1 ⟺ max_e r_e ≤ p ≤ λ2 for some p, jointly convex in (λ, p): the one SDP's optimum
    # is min over s of the notes' SDP(s) (p = 1/s), and s* = 1/p* attains it.
    top = _top("lollipop_5_3", nx.lollipop_graph(5, 3))
    sol = optimize_rates(top, "dadao", method="sdp", solver=ACCURATE)
    s_star = sol.info["s"]
    at = _fixed_s_sdp(top, s_star)
    assert sol.objective == pytest.approx(at, rel=1e-5)
    for f in (0.8, 1.25):
        assert _fixed_s_sdp(top, s_star * f) >= at * (1 - 1e-7)


def test_solver_choice_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    top = _top("c5", nx.cycle_graph(5))
    with pytest.raises(ValueError, match=r"unknown form 'tree' of rate objective 'dadao'; allowed: flow, edge_lmi, block_lmi"):
        optimize_rates(top, "dadao", method="sdp", form="tree")
    with pytest.raises(ValueError, match="unknown form 'flow' of rate objective 'max_connectivity'; allowed: none"):
        optimize_rates(top, "max_connectivity", method="sdp", form="flow")
    with pytest.raises(ValueError, match="needs method='sdp'"):
        optimize_rates(top, "dadao", method="first_order", form="flow")
    with pytest.raises(ValueError, match="choose one of: auto, scs, clarabel"):
        optimize_rates(top, "dadao", solver="mosek", method="sdp")
    # the chosen solver stopping short is an error naming the other solver, not a silent fallback
    with pytest.raises(ValueError, match=r"CLARABEL returned status .* on the dadao SDP .*try solver='scs'"):
        optimize_rates(top, "dadao", method="sdp", solver_opts={"max_iter": 1})
    import cvxpy as cp

    monkeypatch.setattr(cp, "installed_solvers", lambda: ["SCS"])
    with pytest.raises(ValueError, match=r"solver 'clarabel' \(CLARABEL\) is not installed .*solver='scs'"):
        optimize_rates(top, "dadao", method="sdp")
