"""Empirical problems: oracle correctness, solvers, constants, factories, the FedAvg anchor."""

from __future__ import annotations

import numpy as np
import pytest
from anchor_bench import load_bench_module

from fedopt.core.rng import NodeStreams
from fedopt.problems import problem_factory
from fedopt.problems.empirical import (
    EmpiricalProblem,
    LeastSquares,
    Logistic,
    NonconvexLogistic,
    fedavg_anchor,
    fedavg_anchor_data,
    least_squares,
    logistic,
    nonconvex_logistic,
)
from fedopt.problems.partition import make_partition

SYN_REG = {"source": "synthetic", "task": "regression", "n_samples": 240, "d": 6}
SYN_CLS = {"source": "synthetic", "n_samples": 300, "d": 5}
CANCER = {"source": "sklearn", "name": "breast_cancer"}


def _problems() -> dict[str, EmpiricalProblem]:
    het = {"kind": "dirichlet", "alpha": 0.5, "feature_scale": 3.0}
    return {
        "ls_synthetic": least_squares(5, SYN_REG, het, reg=0.01, bias=True, seed=1),
        "ls_unreg_sorted": least_squares(4, SYN_REG, "label_sorted", seed=2),
        "ls_cancer": least_squares(6, CANCER, {"kind": "dirichlet", "alpha": 0.3}, seed=3),
        "logistic_synthetic": logistic(4, SYN_CLS, het, reg=1e-2, bias=True, seed=4),
        "logistic_cancer": logistic(6, CANCER, {"kind": "dirichlet", "alpha": 0.5}, reg=1e-3, seed=5),
        "nonconvex": nonconvex_logistic(3, SYN_CLS, "iid", reg=0.5, seed=6),
        "anchor_small": fedavg_anchor(n=3, samples_per_node=40, d=4),
    }


PROBLEMS = _problems()
NAMES = sorted(PROBLEMS)


def _points(p: EmpiricalProblem, seed: int, scale: float = 1.0) -> np.ndarray:
    return scale * np.random.default_rng(seed).normal(size=(p.n, p.d))


@pytest.mark.parametrize("name", NAMES)
def test_grad_matches_finite_differences(name: str) -> None:
    p = PROBLEMS[name]
    X = _points(p, 0, 0.3)
    nodes = np.arange(p.n)
    G = p.grad(X, nodes)
    h = 1e-6
    fd = np.empty_like(X)
    for j in range(p.d):  # all nodes at once, one coordinate at a time
        E = np.zeros_like(X)
        E[:, j] = h
        fd[:, j] = (p.value(X + E, nodes) - p.value(X - E, nodes)) / (2 * h)
    assert np.allclose(G, fd, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(G).max()))


@pytest.mark.parametrize("name", NAMES)
def test_hessian_matches_finite_differences_of_grad(name: str) -> None:
    p = PROBLEMS[name]
    X = _points(p, 1, 0.3)
    nodes = np.arange(p.n)
    H = p.hessian(X, nodes)
    h = 1e-6
    for j in range(p.d):
        E = np.zeros_like(X)
        E[:, j] = h
        col = (p.grad(X + E, nodes) - p.grad(X - E, nodes)) / (2 * h)
        assert np.allclose(H[:, :, j], col, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(H).max()))


@pytest.mark.parametrize("name", NAMES)
def test_vectorized_rows_equal_single_rows(name: str) -> None:
    p = PROBLEMS[name]
    rng = np.random.default_rng(2)
    nodes = rng.integers(0, p.n, size=2 * p.n + 1)  # repeated, unordered node ids
    X = rng.normal(size=(len(nodes), p.d))
    V, G = p.value(X, nodes), p.grad(X, nodes)
    assert V.shape == (len(nodes),) and G.shape == (len(nodes), p.d)
    for r, i in enumerate(nodes):
        assert np.isclose(V[r], p.value(X[r : r + 1], nodes[r : r + 1])[0], rtol=1e-12)
        assert np.allclose(G[r], p.grad(X[r : r + 1], nodes[r : r + 1])[0], rtol=1e-12, atol=1e-14)
    # the all-nodes fast path gives the same answer as a permuted call
    Xa = rng.normal(size=(p.n, p.d))
    perm = rng.permutation(p.n)
    assert np.allclose(p.grad(Xa, np.arange(p.n))[perm], p.grad(Xa[perm], perm))


@pytest.mark.parametrize("name", NAMES)
def test_per_sample_grads_average_to_full_grad(name: str) -> None:
    p = PROBLEMS[name]
    X = _points(p, 3)
    m = p.n_samples()
    full = p.grad(X, np.arange(p.n))
    for i in range(p.n):
        sg = p.sample_grads(X[i : i + 1], np.array([i]), np.arange(m[i])[None, :])
        assert sg.shape == (1, m[i], p.d)
        assert np.allclose(sg.mean(axis=1)[0], full[i], rtol=1e-10, atol=1e-12)
    with pytest.raises(IndexError):
        p.sample_grads(X[:1], np.array([0]), np.array([[m[0]]]))


def test_per_sample_grads_vectorized_over_nodes() -> None:
    p = logistic(5, {"source": "synthetic", "n_samples": 100, "d": 4}, "iid", reg=0.1, seed=0)
    assert np.all(p.n_samples() == 20)
    X = _points(p, 4)
    sg = p.sample_grads(X, np.arange(5), np.tile(np.arange(20), (5, 1)))
    assert np.allclose(sg.mean(axis=1), p.grad(X, np.arange(5)))


@pytest.mark.parametrize("name", ["ls_synthetic", "logistic_cancer", "nonconvex"])
def test_stochastic_grad_is_unbiased(name: str) -> None:
    p = PROBLEMS[name]
    reps, batch = 3000, 4
    X0 = _points(p, 5, 0.5)
    nodes = np.repeat(np.arange(p.n), reps)
    X = np.repeat(X0, reps, axis=0)
    # each node draws reps minibatches in a row from its own stream (a node listed twice draws twice)
    sg = p.stochastic_grad(X, nodes, NodeStreams(6, p.n)["sampling"], batch).reshape(p.n, reps, p.d)
    mean, se = sg.mean(axis=1), sg.std(axis=1) / np.sqrt(reps)
    full = p.grad(X0, np.arange(p.n))
    assert np.all(np.abs(mean - full) <= 5 * se + 1e-12)


@pytest.mark.parametrize("name", ["ls_synthetic", "ls_unreg_sorted", "ls_cancer", "logistic_synthetic", "logistic_cancer"])
def test_x_star_is_stationary(name: str) -> None:
    p = PROBLEMS[name]
    xs = p.x_star
    assert xs is not None and xs.shape == (p.d,)
    assert np.linalg.norm(p.global_grad(xs)) <= 1e-10
    fs = p.f_star
    assert fs is not None
    rng = np.random.default_rng(7)
    for _ in range(5):
        assert p.global_value(xs + 1e-3 * rng.normal(size=p.d)) >= fs - 1e-12


def test_logistic_unregularized_x_star() -> None:
    p = PROBLEMS["anchor_small"]
    assert p.mu is None and p.reg == 0.0
    assert np.linalg.norm(p.global_grad(p.x_star)) <= 1e-10


def test_least_squares_closed_form_matches_lstsq() -> None:
    # equal node sizes: f = (1/N) Σ_j (a_jᵀx − y_j)², so x* is the plain least-squares solution
    a, y = np.random.default_rng(8).normal(size=(60, 3)), np.random.default_rng(9).normal(size=60)
    p = least_squares(4, (a, y), "iid", seed=0)
    assert np.allclose(p.x_star, np.linalg.lstsq(a, y, rcond=None)[0], atol=1e-12)


def test_unequal_nodes_weigh_samples_by_one_over_n_m_i() -> None:
    p = PROBLEMS["ls_cancer"]
    assert len(set(p.n_samples().tolist())) > 1
    x = np.random.default_rng(10).normal(size=p.d)
    per_node = p.value(np.tile(x, (p.n, 1)), np.arange(p.n))
    assert np.isclose(p.global_value(x), per_node.mean())


@pytest.mark.parametrize("name", NAMES)
def test_L_and_mu_bound_hessian_spectrum(name: str) -> None:
    p = PROBLEMS[name]
    lo = np.inf
    hi = -np.inf
    for seed, scale in [(11, 0.0), (12, 0.3), (13, 3.0)]:
        eig = np.linalg.eigvalsh(p.hessian(_points(p, seed, scale), np.arange(p.n)))
        lo, hi = min(lo, eig.min()), max(hi, eig.max())
        assert eig.max() <= p.L * (1 + 1e-9)
        if p.mu is not None:
            assert eig.min() >= p.mu * (1 - 1e-9) - 1e-12
    if isinstance(p, NonconvexLogistic):
        assert p.mu is None and p.x_star is None and p.solve() is None
        assert lo >= -p.reg / 2 - 1e-12
    if type(p) is LeastSquares:  # constant Hessian: both constants are attained
        assert np.isclose(hi, p.L)
        assert p.mu is None or np.isclose(lo, p.mu)


def test_least_squares_mu_none_when_rank_deficient() -> None:
    p = least_squares(4, {"source": "synthetic", "task": "regression", "n_samples": 20, "d": 8}, seed=0)
    assert p.mu is None
    assert np.linalg.norm(p.global_grad(p.x_star)) <= 1e-10


def test_feature_scale_and_bias_layout() -> None:
    a, y = np.random.default_rng(0).normal(size=(40, 3)), np.random.default_rng(1).normal(size=40)
    spec = {"kind": "iid", "feature_scale": 4.0}
    p = least_squares(4, (a, y), spec, bias=True, seed=5)
    part = make_partition(y, 4, spec, np.random.default_rng(5).spawn(2)[1])
    for i, ix in enumerate(part.indices):
        m = len(ix)
        assert np.allclose(p.Xd[i, :m, :3], a[ix] * part.scales[i])
        assert np.all(p.Xd[i, :m, 3] == 1.0) and np.all(p.Xd[i, m:] == 0.0)
        assert np.allclose(p.y[i, :m], y[ix])


def test_logistic_rejects_non_binary_labels() -> None:
    with pytest.raises(ValueError, match="labels must be in \\{0, 1\\}.*one_vs_rest"):
        logistic(3, {"source": "sklearn", "name": "wine"})
    p = logistic(3, {"source": "sklearn", "name": "wine", "binary": "one_vs_rest", "positive_class": 1}, reg=0.1)
    assert np.linalg.norm(p.global_grad(p.x_star)) <= 1e-10


def test_logistic_separable_without_reg_raises() -> None:
    a = np.array([[1.0], [2.0], [-1.0], [-2.0]])
    y = np.array([1.0, 1.0, 0.0, 0.0])
    p = logistic(2, (a, y), "iid", reg=0.0)
    with pytest.raises(RuntimeError, match="separable"):
        p.solve()


def test_factories_registered_and_validate_specs() -> None:
    for name in ("least_squares", "logistic", "nonconvex_logistic", "fedavg_anchor"):
        assert callable(problem_factory(name))
    p = problem_factory("logistic")(
        n=10, data=CANCER, partition={"kind": "dirichlet", "alpha": 0.5}, reg=1e-3, rng=np.random.default_rng(0)
    )
    assert isinstance(p, Logistic) and p.n == 10 and p.d == 30 and p.n_samples().sum() == 569
    assert p.mu == 1e-3
    with pytest.raises(ValueError, match="unknown key 'nsamples'"):
        logistic(2, {"source": "synthetic", "nsamples": 10})
    with pytest.raises(ValueError, match="unknown key 'a'"):
        logistic(2, SYN_CLS, {"kind": "dirichlet", "a": 0.1})
    with pytest.raises(ValueError, match="unknown kind 'shards'"):
        logistic(2, SYN_CLS, "shards")


def test_same_seed_same_problem_and_streams_independent() -> None:
    p1 = logistic(4, SYN_CLS, "iid", seed=3)
    p2 = logistic(4, SYN_CLS, "iid", seed=3)
    assert np.array_equal(p1.Xd, p2.Xd)
    # changing the partition does not move the data
    q = logistic(4, SYN_CLS, "label_sorted", seed=3)
    rows = lambda p: np.sort(p.Xd[p.w > 0], axis=0)  # noqa: E731
    assert np.array_equal(rows(p1), rows(q))


# ---- the FedAvg anchor workload ------------------------------------------------------


def test_fedavg_anchor_problem() -> None:
    X, Y = fedavg_anchor_data(n=5, samples_per_node=30, d=8)
    p = fedavg_anchor(n=5, samples_per_node=30, d=8)
    assert isinstance(p, Logistic) and p.reg == 0.0 and p.mu is None
    assert np.array_equal(p.Xd, X) and np.array_equal(p.y, Y)
    w = np.random.default_rng(0).normal(size=8) * 0.1
    z = X @ w
    assert np.isclose(p.global_value(w), np.mean(np.logaddexp(0.0, z) - Y * z))
    g = np.einsum("kmd,km->kd", X, 1 / (1 + np.exp(-z)) - Y) / 30
    assert np.allclose(p.grad(np.tile(w, (5, 1)), np.arange(5)), g)


def test_fedavg_anchor_matches_benchmark_workload() -> None:
    bench = load_bench_module("fedavg_common")
    Xb, Yb = bench.all_client_data()
    X, Y = fedavg_anchor_data()
    assert X.shape == (bench.NUM_CLIENTS, bench.N_PER_CLIENT, bench.D)
    assert np.array_equal(X, Xb) and np.array_equal(Y, Yb)
    p = Logistic(X, Y, np.full(X.shape[0], X.shape[1]), reg=0.0)  # = fedavg_anchor(), without re-drawing
    w = bench.true_weights()
    loss, _ = bench.global_loss_acc(w, Xb, Yb)
    assert np.isclose(p.global_value(w), loss, rtol=1e-12)
    w_local = bench.local_train(w, Xb[0], Yb[0])
    x = w.copy()
    for _ in range(bench.LOCAL_STEPS):
        x = x - bench.LR * p.grad(x[None, :], np.array([0]))[0]
    assert np.allclose(x, w_local, rtol=1e-12, atol=1e-14)
