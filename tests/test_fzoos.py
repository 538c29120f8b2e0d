"""FZooS: reductions, accounting, history kept per client, the paper's win over FedZO."""

from __future__ import annotations

import math
import networkx as nx
import numpy as np
import pytest
import torch

from fedopt.algorithms import make_algorithm
from fedopt.engines.base import RunSpec, Simulation, StopCriteria, make_engine
from fedopt.estimators.gp import BatchedGP, Kernel
from fedopt.problems import problem_factory
from fedopt.topology.graph import Topology

N, D = 3, 6
STAR = Topology.from_networkx("star", nx.star_graph(N - 1))
PROB = problem_factory("dirichlet_quadratic")(n=N, d=D, C=5.0, seed=1)
SMALL = {"rff_features": 300, "local_steps": 4, "n_inits": 3, "history": 200}


def _run(rounds: int, prob=PROB, name: str = "fzoos", engine: str = "local", **params):
    spec = RunSpec("r", prob, STAR, make_algorithm(name, **{**SMALL, **params}), 0, StopCriteria(rounds=rounds),
                   record_every=1)
    if engine == "local":
        sim = Simulation(spec)
        sim.run()
        return sim
    return make_engine(engine, num_shards=2).run(spec)


def test_zero_correction_is_local_surrogate_descent() -> None:
    """γ₀ = 0 (or no correction) gives the same trace as clients descending their own GP surrogate;
    a reference loop re-derives client 0's first round from its history with a refit GP."""
    a = _run(3, gamma=0.0)
    b = _run(3, correction=False)
    np.testing.assert_array_equal(a.state["x"], b.state["x"])
    assert not np.array_equal(_run(3).state["x"], a.state["x"])
    # round 1 of client 0 by hand: Adam on the refit GP's gradient over the stored queries
    one = _run(1, correction=False)
    hx, hy, hn = one.state["hx"][0], one.state["hy"][0], int(one.state["hn"][0])
    k = SMALL["n_inits"] + 1  # inits and f(x0) come first, then per step: x_t and its 5 active queries
    x = PROB.x0.copy()
    m = v = np.zeros(D)
    for t in range(1, SMALL["local_steps"] + 1):
        gp = BatchedGP(Kernel("se", 1.0), torch.tensor(hx[None, :k]), torch.tensor(hy[None, :k]), 1e-3)
        g = gp.grad_mean(torch.tensor(x[None]))[0].numpy()
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        x = x - 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        np.testing.assert_allclose(hx[k], x, atol=1e-10)
        k += 1 + (5 if t < SMALL["local_steps"] else 0)
    assert k == hn


@pytest.mark.parametrize("server_queries", [False, True])
def test_query_and_message_counts_equal_the_formula(server_queries: bool) -> None:
    R, T, M, A = 3, SMALL["local_steps"], SMALL["rff_features"], 5
    sim = _run(R, server_queries=server_queries, history=400)
    per = sim.meter.per_node()
    per_round = 1 + T + A * (T - 1) + ((1 + 50) if server_queries else 0)
    np.testing.assert_array_equal(per["queries"], np.full(N, SMALL["n_inits"] + R * per_round))
    np.testing.assert_array_equal(per["messages_sent"], np.full(N, R * (2 if server_queries else 1)))
    np.testing.assert_array_equal(per["floats_sent"], np.full(N, R * (D + M)))
    # down: round 1 has no surrogate yet; with server queries x_r goes out in the second exchange
    # (d per round) and the round's first exchange carries the surrogate alone (M)
    down = D + R * D + (R - 1) * M if server_queries else D + (R - 1) * (D + M)
    assert sim.meter.server_floats == N * down
    assert sim.meter.totals()["messages"] == N * R * (4 if server_queries else 2)
    np.testing.assert_array_equal(sim.state["hn"], np.full(N, SMALL["n_inits"] + R * per_round))


@pytest.mark.parametrize("params", [{}, {"window": "nearest", "window_size": 20, "rff_window": "nearest",
                                         "rff_window_size": 30, "y_scale": "minmax", "kernel": "matern52"},
                                    {"server_queries": True}, {"cosine": True},
                                    {"lengthscale_fit": "ml", "window": "nearest", "window_size": 20}])
def test_sharded_engine_gives_the_same_table(params) -> None:
    ref = _run(3, engine="local", **params)
    got = _run(3, engine="sharded", **params)
    assert got.status == "ok", got.message
    for ra, rb in zip(ref.rows, got.rows):
        for key in ("subopt", "queries", "messages", "bytes", "grad_cosine", "grad_cosine_local"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-9, abs=1e-12, nan_ok=True)
    np.testing.assert_allclose(got.final_state["hx"], ref.state["hx"], rtol=1e-9, atol=1e-12)


def test_the_history_holds_query_values() -> None:
    """The surrogates are fitted on the zeroth-order oracle's answers (:meth:`Problem.query`)."""
    from test_zo_baselines import ScaledQueries

    sim = _run(2, prob=ScaledQueries(PROB, 2.0))
    for i in range(N):
        n = int(sim.state["hn"][i])
        np.testing.assert_allclose(sim.state["hy"][i, :n], 2.0 * PROB.value(sim.state["hx"][i, :n], np.full(n, i)),
                                   rtol=1e-13)


def test_history_keeps_the_most_recent_queries() -> None:
    from fedopt.algorithms.federated.fzoos import _append

    state = {"hx": np.zeros((3, 5, 2)), "hy": np.zeros((3, 5)), "hn": np.zeros(3, dtype=np.int64)}
    clients = np.array([0, 2])
    seen = []
    for step, q in enumerate((2, 2, 3, 1)):
        P = np.arange(2 * q * 2, dtype=float).reshape(2, q, 2) + 100 * step
        y = P[:, :, 0]
        _append(state, clients, P, y)
        seen.append(P)
    allP = np.concatenate(seen, axis=1)
    np.testing.assert_array_equal(state["hx"][clients], allP[:, -5:])
    np.testing.assert_array_equal(state["hy"][clients], allP[:, -5:, 0])
    assert state["hn"].tolist() == [5, 0, 5] and not state["hx"][1].any()


def test_fzoos_beats_fedzo_at_equal_rounds_and_queries() -> None:
    prob = problem_factory("dirichlet_quadratic")(n=5, d=30, C=5.0, seed=0)
    top = Topology.from_networkx("star", nx.star_graph(4))

    def rows(name, **params):
        spec = RunSpec("r", prob, top, make_algorithm(name, **params), 0, StopCriteria(rounds=6), record_every=1)
        return Simulation(spec).run().rows

    fz = rows("fzoos", rff_features=2000, history=200)
    fo = rows("zo_fedavg")
    assert fz[-1]["subopt"] < 0.5 * fo[-1]["subopt"]                          # equal rounds
    assert fz[-1]["queries"] < fo[-1]["queries"]                               # with fewer queries
    at = max(r["subopt"] for r in fo if r["queries"] <= fz[-1]["queries"])     # FedZO at FZooS's budget
    assert fz[-1]["subopt"] < at


def test_the_paper_defaults_run() -> None:
    """The defaults (M = 10,000 features, a 600-query history: the sizes of the paper's runs, which
    the every-algorithm engine tests shrink) on a small problem: two rounds, the second corrected by
    the averaged surrogate, progress made."""
    algo = make_algorithm("fzoos")
    assert algo.params.rff_features == 10000 and algo.params.history == 600
    spec = RunSpec("r", PROB, STAR, algo, 0, StopCriteria(rounds=2), record_every=1)
    res = Simulation(spec).run()
    assert res.status == "ok", res.message
    assert res.final_state["w"].shape == (10000,) and bool(res.final_state["ready"])
    assert np.abs(res.final_state["w"]).max() > 0
    assert res.rows[-1]["subopt"] < res.rows[0]["subopt"]


def test_float32_surrogates_follow_the_float64_run() -> None:
    """``dtype: float32`` runs the same method: the same queries, and iterates that part from the
    float64 run by a small share of the distance moved (single-precision solves with σ² = 1e-3 are
    loose, and Adam's normalized steps carry their errors)."""
    a, b = _run(2), _run(2, dtype="float32")
    np.testing.assert_array_equal(a.meter.per_node()["queries"], b.meter.per_node()["queries"])
    moved = np.linalg.norm(a.state["x"] - PROB.x0)
    assert 0 < np.linalg.norm(b.state["x"] - a.state["x"]) < 0.25 * moved


def _quadratic_grads(u: np.ndarray) -> np.ndarray:
    """``[n, d]``: ∇f_i(u) of the Dirichlet quadratic by hand (x = lb + 20u, f_i = (a_i x² + b_i x + 1)/(10d))."""
    x = -10.0 + 20.0 * u
    return 20.0 * (2.0 * PROB.a * x + PROB.b) / (10.0 * D)


def test_gradient_cosines_are_the_round_means_of_the_step_cosines() -> None:
    """``cosine: true`` records, per round, the mean over clients and local steps of cos(ĝ_i, ∇F)
    and cos(∇μ_i, ∇f_i); rebuilt for round 1 (no correction, so ĝ_i = ∇μ_i) from the stored
    queries with refit GPs and hand-written gradients; the option leaves the run unchanged."""
    sim = _run(2, cosine=True)
    assert np.array_equal(sim.state["x"], _run(2).state["x"])
    assert all(math.isnan(r["grad_cosine"]) for r in _run(1).rows)
    one = _run(1, correction=False)
    T = SMALL["local_steps"]
    glob, loc = [], []
    for i in range(N):
        hx, hy = one.state["hx"][i], one.state["hy"][i]
        k = SMALL["n_inits"] + 1
        x = PROB.x0.copy()
        for t in range(1, T + 1):
            gp = BatchedGP(Kernel("se", 1.0), torch.tensor(hx[None, :k]), torch.tensor(hy[None, :k]), 1e-3)
            g = gp.grad_mean(torch.tensor(x[None]))[0].numpy()
            true = _quadratic_grads(x)
            glob.append(g @ true.mean(0) / (np.linalg.norm(g) * np.linalg.norm(true.mean(0))))
            loc.append(g @ true[i] / (np.linalg.norm(g) * np.linalg.norm(true[i])))
            x = hx[k]
            k += 1 + (5 if t < T else 0)
    assert sim.rows[0]["round"] == 0 and math.isnan(sim.rows[0]["grad_cosine"])  # before any step
    row = sim.rows[1]
    assert row["grad_cosine"] == pytest.approx(np.mean(glob), abs=1e-9)
    assert row["grad_cosine_local"] == pytest.approx(np.mean(loc), abs=1e-9)
    assert sim.rows[2]["grad_cosine"] != pytest.approx(row["grad_cosine"])


def test_gradient_cosines_are_nan_without_a_gradient_oracle() -> None:
    class NoGrad(type(PROB)):
        def grad(self, X, nodes):
            raise TypeError("no gradient oracle")

        def global_grad(self, x):  # as metric_optimization: the grad_norm_sq column is NaN
            return np.full(self.d, np.nan)

    prob = NoGrad(PROB.a, PROB.b, PROB.x0)
    rows = _run(2, prob=prob, cosine=True).rows
    assert all(math.isnan(r["grad_cosine"]) and math.isnan(r["grad_cosine_local"]) for r in rows)


def test_fitted_lengthscales_give_each_client_the_gp_of_its_own_lengthscale() -> None:
    """``lengthscale_fit: ml``: client i's gradient and uncertainty scores are those of a GP with
    kernel lengthscale l_i (its marginal-likelihood fit) on the raw inputs, also after new points."""
    from fedopt.algorithms.federated.fzoos import FZooSParams, _LocalGP, _Tensors
    from fedopt.estimators.gp import RFF, fit_lengthscale

    rng = np.random.default_rng(0)
    k, n, d = 3, 40, 4
    hx = rng.uniform(0, 1, (k, 60, d)) * np.array([[[0.3]], [[1.0]], [[3.0]]])
    hy = np.sin(2 * hx).sum(-1) + 0.5 * (hx**2).sum(-1)
    state = {"hx": hx, "hy": hy, "hn": np.full(k, n)}
    clients = np.arange(k)
    X = hx[:, 0] + 0.05
    p = FZooSParams(kernel="matern52", lengthscale_fit="ml", noise=1e-4)
    gp = _LocalGP(p, _Tensors(RFF.draw(d, 5, 1.0, 0), torch.float64, "cpu"), state, clients, X, window="trajectory")
    t = torch.tensor
    ls = fit_lengthscale("matern52", t(hx[:, :n]), t(hy[:, :n]), 1e-4)
    assert len(set(np.round(ls.numpy(), 3))) == 3
    C = X[:, None, :] + 0.02 * rng.uniform(-1, 1, (k, 7, d))

    def check(m: int) -> None:
        for i in range(k):
            ref = BatchedGP(Kernel("matern52", float(ls[i])), t(hx[i:i + 1, :m]), t(hy[i:i + 1, :m]), 1e-4)
            np.testing.assert_allclose(gp.grad(t(X))[i].numpy(), ref.grad_mean(t(X[i:i + 1]))[0].numpy(),
                                       rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(gp.score(C)[i], ref.grad_var_trace(t(C[i:i + 1]))[0].numpy(), rtol=1e-8)

    check(n)
    gp.add(hx[:, n:n + 5], hy[:, n:n + 5], state, clients, X)
    check(n + 5)


def test_bounds_project_every_local_iterate_onto_the_box() -> None:
    """``bounds``: each local iterate is clipped onto [low, high]^d after its Adam step, so the
    queried iterates and the server's average stay inside; without it they leave the box."""
    lo, hi = 0.3, 0.7
    free, boxed = _run(2), _run(2, bounds=[lo, hi])
    T, A = SMALL["local_steps"], 5
    rows = [SMALL["n_inits"] + 1 + r * (1 + T + A * (T - 1)) + s * (1 + A) for r in range(2) for s in range(T)]
    for sim, inside in ((boxed, True), (free, False)):
        X = sim.state["hx"][:, rows]                                              # the iterates x_{r,t}
        assert bool(((X >= lo) & (X <= hi)).all()) == inside
    assert ((boxed.state["x"] >= lo) & (boxed.state["x"] <= hi)).all()
    with pytest.raises(ValueError, match="bounds.*low < high"):
        make_algorithm("fzoos", bounds=[1.0, 0.0])
