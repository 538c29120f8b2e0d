"""The black-box problems on trained models: the objectives equal direct evaluations of the
models, the metrics equal scikit-learn's, class splits, seeds, keyed errors, runs."""

from __future__ import annotations

import math
import pickle

import networkx as nx
import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from fedopt.algorithms import make_algorithm
from fedopt.engines.base import RunSpec, Simulation, StopCriteria
from fedopt.problems import problem_factory
from fedopt.problems.base import ProblemParamError
from fedopt.problems.torch_model import mlp_classifier, small_cnn
from fedopt.problems.zo_blackbox import class_split, macro_scores
from fedopt.topology.graph import Topology

N = 4
ATTACK = problem_factory("blackbox_attack")(n=N, portion=0.7, hidden=8, images=6, train_steps=60, seed=3)
METRIC = problem_factory("metric_optimization")(n=N, hidden=4, train_steps=80, portion=0.5, seed=2)


def _module(prob, theta: np.ndarray, cnn: bool) -> torch.nn.Module:
    """Client model rebuilt from its flat parameters (torch's own parameter order)."""
    mod = small_cnn(8, 10) if cnn else mlp_classifier(64, 8, 10)
    mod = mod.double()
    torch.nn.utils.vector_to_parameters(torch.tensor(theta), mod.parameters())
    return mod


def _direct_attack_values(prob, u: np.ndarray, cnn: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Each client's mean margin and every client's log-probabilities, one model and image at a time."""
    delta = -prob.ub + 2 * prob.ub * np.clip(u, 0, 1)
    images, labels = prob.images.numpy(), prob.labels.numpy()
    vals, logp = [], []
    for i in range(prob.n):
        mod = _module(prob, prob.theta[i].numpy(), cnn)
        margins, lp = [], []
        for a, y in zip(images, labels):
            x = torch.tensor(np.clip(a + delta, 0, 1))
            with torch.no_grad():
                z = mod(x.reshape(1, 1, 8, 8) if cnn else x[None])[0].numpy()
            margins.append(z[y] - max(z[c] for c in range(10) if c != y))
            lp.append(z - np.log(np.exp(z - z.max()).sum()) - z.max())
        vals.append(np.mean(margins))
        logp.append(lp)
    return np.array(vals), np.array(logp)


def test_class_split_covers_every_sample_once_with_the_codes_class_counts() -> None:
    labels = np.repeat(np.arange(10), 31)
    part = class_split(labels, 10, 0.3, np.random.default_rng(0))
    flat = np.concatenate(part.indices)
    assert sorted(flat.tolist()) == list(range(len(labels)))
    for i in range(10):  # three passes: at most three classes (a pass may repeat one), 3 parts of 10 or 11
        assert len(np.unique(labels[part.indices[i]])) <= 3
        assert 30 <= part.sizes[i] <= 33
    # every class is cut into three parts of 10 or 11
    counts = np.array([[np.sum(labels[ix] == c) for c in range(10)] for ix in part.indices])
    assert (counts.sum(axis=0) == 31).all() and set(np.unique(counts)) <= {0, 10, 11, 20, 21, 22, 31}
    full = class_split(labels, 10, 1.0, np.random.default_rng(0))
    assert np.mean([len(np.unique(labels[ix])) for ix in full.indices]) > 5  # ten passes: most classes
    assert (full.sizes >= 30).all() and (full.sizes <= 40).all()


def test_attack_objective_is_the_models_margin_on_the_perturbed_images() -> None:
    U = np.random.default_rng(0).uniform(-0.2, 1.2, (3, ATTACK.d))
    nodes = np.array([2, 0, 3])
    got = ATTACK.value(U, nodes)
    for k, i in enumerate(nodes):
        want, _ = _direct_attack_values(ATTACK, U[k])
        assert got[k] == pytest.approx(want[i], rel=1e-12, abs=1e-12)
    # gradients of the clipped perturbation: central differences inside the box
    X = np.full((2, ATTACK.d), 0.5) + np.random.default_rng(1).uniform(-0.3, 0.3, (2, ATTACK.d))
    G = ATTACK.grad(X, np.array([1, 3]))
    h = 1e-6
    for j in (0, 17, 40):
        e = np.zeros(ATTACK.d)
        e[j] = h
        fd = (ATTACK.value(X + e, np.array([1, 3])) - ATTACK.value(X - e, np.array([1, 3]))) / (2 * h)
        np.testing.assert_allclose(G[:, j], fd, rtol=1e-5, atol=1e-7)


def test_attack_success_is_the_averaged_models_error_rate() -> None:
    assert ATTACK.test_metrics(ATTACK.x0) == {"attack_success": 0.0}  # the chosen images start classified right
    for u in (np.zeros(ATTACK.d), np.random.default_rng(2).uniform(0, 1, ATTACK.d)):
        _, logp = _direct_attack_values(ATTACK, u)
        want = float((logp.mean(axis=0).argmax(axis=1) != ATTACK.labels.numpy()).mean())
        assert ATTACK.test_metrics(u)["attack_success"] == want


def test_attack_with_the_cnn() -> None:
    prob = problem_factory("blackbox_attack")(n=3, portion=1.0, arch="cnn", images=3, train_steps=40, seed=1)
    u = np.random.default_rng(3).uniform(0, 1, prob.d)
    want, _ = _direct_attack_values(prob, u, cnn=True)
    np.testing.assert_allclose(prob.value(np.tile(u, (3, 1)), np.arange(3)), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("metric", ["f1", "precision", "recall", "jaccard"])
def test_macro_scores_equal_sklearn(metric: str) -> None:
    rng = np.random.default_rng(5)
    true = rng.integers(0, 4, (6, 25))           # classes 4..9 absent from the labels
    pred = rng.integers(0, 7, (6, 25))           # predictions of classes never seen
    mask = (np.arange(25)[None, :] < rng.integers(5, 26, 6)[:, None]).astype(float)
    got = macro_scores(true, pred, mask, 10)[metric]
    fn = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score,
          "jaccard": skm.jaccard_score}[metric]
    for k in range(6):
        m = int(mask[k].sum())
        assert got[k] == pytest.approx(fn(true[k, :m], pred[k, :m], average="macro", zero_division=0), abs=1e-14)


@pytest.mark.parametrize("metric", ["f1", "precision", "recall", "jaccard"])
def test_metric_objective_is_one_minus_sklearns_metric_of_the_predictions(metric: str) -> None:
    prob = problem_factory("metric_optimization")(n=N, hidden=4, train_steps=80, portion=0.5, metric=metric, seed=2)
    U = np.random.default_rng(1).uniform(0, 1, (5, prob.d))
    nodes = np.array([0, 1, 2, 3, 1])
    pred = prob.predictions(U, nodes)
    fn = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score,
          "jaccard": skm.jaccard_score}[metric]
    want = [1 - fn(prob.y[i, :prob.m[i]], pred[k, :prob.m[i]], average="macro", zero_division=0)
            for k, i in enumerate(nodes)]
    np.testing.assert_allclose(prob.value(U, nodes), want, atol=1e-14)


def test_metric_predictions_are_the_perturbed_last_layer() -> None:
    """Logits ``H(W + ΔW)ᵀ + b + Δb`` with ``Δ = −ε + 2εu`` (weights row-major, then the bias)."""
    u = np.random.default_rng(4).uniform(0, 1, METRIC.d)
    delta = -0.2 + 0.4 * u
    C, h = METRIC.W.shape
    W, b = METRIC.W + delta[:C * h].reshape(C, h), METRIC.b + delta[C * h:]
    for i in range(N):
        m = METRIC.m[i]
        np.testing.assert_array_equal(METRIC.predictions(u[None], np.array([i]))[0, :m],
                                      (METRIC.H[i, :m] @ W.T + b).argmax(axis=1))
    # the trained model is a classifier: the clients' labels are mostly predicted at δ = 0
    base = METRIC.predictions(np.full((N, METRIC.d), 0.5), np.arange(N))
    assert (base == METRIC.y)[METRIC.mask > 0].mean() > 0.5  # 4 hidden units, 80 steps: well above chance (0.1)


def test_metric_problem_has_no_gradient_oracle() -> None:
    with pytest.raises(TypeError, match="no gradient oracle"):
        METRIC.grad(np.zeros((1, METRIC.d)), np.array([0]))
    assert np.isnan(METRIC.global_grad(METRIC.x0)).all()


def test_seeds_fix_the_problem() -> None:
    again = problem_factory("metric_optimization")(n=N, hidden=4, train_steps=80, portion=0.5, seed=2)
    np.testing.assert_array_equal(again.H, METRIC.H)
    other = problem_factory("metric_optimization")(n=N, hidden=4, train_steps=80, portion=0.5, seed=3)
    assert other.H.shape != METRIC.H.shape or not np.array_equal(other.H, METRIC.H)
    a2 = problem_factory("blackbox_attack")(n=N, portion=0.7, hidden=8, images=6, train_steps=60, seed=3)
    np.testing.assert_array_equal(a2.theta.numpy(), ATTACK.theta.numpy())
    np.testing.assert_array_equal(a2.images.numpy(), ATTACK.images.numpy())


def test_a_pickled_problem_answers_the_same() -> None:
    U = np.random.default_rng(6).uniform(0, 1, (2, ATTACK.d))
    ATTACK.value(U, np.array([0, 1]))  # kernels built before pickling
    copy = pickle.loads(pickle.dumps(ATTACK))
    np.testing.assert_array_equal(copy.value(U, np.array([0, 1])), ATTACK.value(U, np.array([0, 1])))


@pytest.mark.parametrize("name,params,key,match", [
    ("blackbox_attack", {"arch": "resnet"}, "arch", "arch must be one of mlp, cnn"),
    ("blackbox_attack", {"portion": 0.0}, "portion", r"portion must be a number in \(0, 1\]"),
    ("blackbox_attack", {"eps": -1.0}, "eps", "eps must be a number > 0"),
    ("blackbox_attack", {"images": 10_000, "train_steps": 5}, "images", "held-out images are classified correctly"),
    ("blackbox_attack", {"n": 2000, "portion": 0.1, "train_steps": 1}, "n", "without data"),
    ("metric_optimization", {"metric": "auc"}, "metric", "metric must be one of f1, precision, recall, jaccard"),
    ("metric_optimization", {"hidden": 0}, "hidden", "hidden must be a positive integer"),
])
def test_bad_parameters_name_the_key(name: str, params: dict, key: str, match: str) -> None:
    with pytest.raises(ProblemParamError, match=match) as info:
        problem_factory(name)(**params)
    assert info.value.key == key


def test_zeroth_order_runs_report_the_attack_success_column() -> None:
    top = Topology.from_networkx("star", nx.star_graph(N - 1))
    algo = make_algorithm("fzoos", rff_features=200, history=150, local_steps=3)
    res = Simulation(RunSpec("a", ATTACK, top, algo, 0, StopCriteria(rounds=3), record_every=1)).run()
    assert res.status == "ok", res.message
    assert [r["attack_success"] for r in res.rows][0] == 0.0
    assert all(0.0 <= r["attack_success"] <= 1.0 for r in res.rows) and math.isnan(res.rows[-1]["subopt"])
    assert res.rows[-1]["train_loss"] < res.rows[0]["train_loss"]
    res = Simulation(RunSpec("m", METRIC, top, make_algorithm("zo_fedavg", local_steps=2), 0, StopCriteria(rounds=2),
                             record_every=1)).run()
    assert res.status == "ok", res.message
    assert math.isnan(res.rows[-1]["attack_success"]) and math.isnan(res.rows[-1]["grad_norm_sq"])
