"""The fused oracle of the private algorithms: sums of clipped per-sample gradients (or of
clipped per-sample gradient differences) per node.

The torch problems' fused kernels (layerwise and vmap) and the default numpy path
(per-sample gradients, then clipping) all equal an independent reference: per-sample
gradients from plain autograd on the module, one sample at a time, clipped and summed in
Python. Masks, unequal node sizes, thresholds inf / 0 / per node, tiny steps (the clip bound
holds without cancellation), sample chunking, shard views, the counting, and the private
algorithms' use of the fused kernel (no ``[k, b, d]`` block comes back to the host)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from fedopt.algorithms import make_algorithm
from fedopt.core.meter import Meter
from fedopt.engines.base import RunSpec, Simulation, StopCriteria
from fedopt.problems import problem_factory
from fedopt.problems.base import CountingOracle, Evaluation, Problem
from fedopt.problems.torch_model import TorchModelProblem, make_kernels
from fedopt.topology.generators import make_topology

P = 4
#: Unequal node sizes (6, 6, 6, 5 after an iid split of 23 samples): padding in play.
def _regression(clipping: str = "auto") -> TorchModelProblem:
    prob = problem_factory("mlp_regression")(n=P, data={"source": "teacher", "n_samples": 23, "d": 3}, hidden=4,
                                             device="cpu", dtype="float64", seed=3)
    prob._kernels = make_kernels(prob.module, prob._loss, prob.unflatten, prob.flatten, (3,), clipping)
    return prob


PROB = _regression()
#: The same problem with the materializing (vmap) clipping kernels.
PROB_VMAP = _regression("vmap")
#: A ReLU network with the cross-entropy (the layerwise kernels on another activation and loss).
CLASSES = problem_factory("mlp_classification")(n=P, hidden=5, device="cpu", dtype="float64", seed=1)
KINDS = {"layerwise": PROB, "vmap": PROB_VMAP}


def _padded(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every sample of each node padded to the largest node (index repeated, mask 0)."""
    b = int(m.max())
    idx = np.array([[min(j, int(mi) - 1) for j in range(b)] for mi in m])
    mask = np.array([[1.0 if j < mi else 0.0 for j in range(b)] for mi in m])
    return idx, mask


def _autograd_sample_grad(problem: TorchModelProblem, x: np.ndarray, node: int, j: int) -> np.ndarray:
    """The gradient of sample ``j`` of ``node`` at ``x`` by plain autograd on a copy of the module."""
    module = copy.deepcopy(problem.module)
    params = list(module.parameters())
    torch.nn.utils.vector_to_parameters(torch.as_tensor(x, dtype=torch.float64), params)
    for p in params:
        p.requires_grad_(True)
    a = problem._inputs[node, j].unsqueeze(0)
    y = problem._targets[node, j]
    out = module(a).squeeze(0)
    if problem.loss_name == "mse":
        loss = ((out - y) ** 2).sum()
    else:  # softmax cross-entropy of the class id y
        loss = torch.logsumexp(out, dim=0) - out[int(y.item())]
    grads = torch.autograd.grad(loss, params)
    return torch.cat([g.reshape(-1) for g in grads]).numpy().copy()


def _reference(problem: TorchModelProblem, X: np.ndarray, nodes: np.ndarray, idx: np.ndarray, c: object,
               mask: np.ndarray, X_prev: np.ndarray | None) -> np.ndarray:
    cs = np.broadcast_to(np.asarray(c, dtype=float), (len(nodes),))
    out = np.zeros((len(nodes), problem.d))
    for k, node in enumerate(nodes):
        for j in range(idx.shape[1]):
            if mask[k, j] == 0:
                continue
            g = _autograd_sample_grad(problem, X[k], int(node), int(idx[k, j]))
            if X_prev is not None:
                g = g - _autograd_sample_grad(problem, X_prev[k], int(node), int(idx[k, j]))
            norm = math.sqrt(float(g @ g))
            if norm > cs[k]:
                g = g * (cs[k] / norm)
            out[k] += g
    return out


def _points(seed: int = 0, step: float = 0.05, problem: TorchModelProblem = PROB) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = problem.initial_parameters() + 0.5 * rng.standard_normal((P, problem.d))
    return X, X + step * rng.standard_normal((P, problem.d))


THRESHOLDS = {"inf": math.inf, "zero": 0.0, "active": 0.2, "per node": np.array([0.05, math.inf, 0.0, 0.4])}


def test_the_layerwise_kernels_serve_linear_activation_stacks_only() -> None:
    assert PROB._kernels.clipping == CLASSES._kernels.clipping == "layerwise"
    assert PROB_VMAP._kernels.clipping == "vmap"
    cnn = problem_factory("cnn_classification")(n=2, channels=2, device="cpu", seed=0)
    assert cnn._kernels.clipping == "vmap"
    with pytest.raises(ValueError, match="layerwise clipping kernels need a Sequential of Linear layers"):
        make_kernels(cnn.module, cnn._loss, cnn.unflatten, cnn.flatten, (1, 8, 8), "layerwise")
    with pytest.raises(ValueError, match="clipping kernels must be one of auto, layerwise, vmap"):
        make_kernels(cnn.module, cnn._loss, cnn.unflatten, cnn.flatten, (1, 8, 8), "ghost")


@pytest.mark.parametrize("diff", [False, True])
@pytest.mark.parametrize("which", list(THRESHOLDS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_and_numpy_paths_equal_an_autograd_reference(kind: str, which: str, diff: bool) -> None:
    prob, c = KINDS[kind], THRESHOLDS[which]
    X, X_prev = _points()
    X_prev = X_prev if diff else None
    nodes = np.array([2, 0, 3, 1])  # not in order: the rows follow nodes
    idx, mask = _padded(prob.m[nodes])
    mask[1, 2] = 0.0  # a sample left out (a Poisson draw that missed)
    want = _reference(prob, X, nodes, idx, c, mask, X_prev)
    fused = prob.clipped_grad_sums(X, nodes, idx, c, mask, X_prev)
    numpy_path = Problem.clipped_grad_sums(prob, X, nodes, idx, c, mask, X_prev)
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(fused, want, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(numpy_path, want, rtol=0, atol=1e-12 * scale)
    if which == "active":  # the threshold bites: clipped and unclipped sums differ
        assert np.abs(want - _reference(prob, X, nodes, idx, math.inf, mask, X_prev)).max() > 1e-3
    if which == "zero":
        assert not fused.any()


@pytest.mark.parametrize("diff", [False, True])
def test_layerwise_kernels_on_a_relu_classifier(diff: bool) -> None:
    X, X_prev = _points(5, problem=CLASSES)
    nodes = np.array([3, 1])
    idx = np.array([[0, 5, 9, 2], [7, 1, 1, 4]])
    mask = np.array([[1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    for c in (0.3, math.inf):
        want = _reference(CLASSES, X[:2], nodes, idx, c, mask, X_prev[:2] if diff else None)
        got = CLASSES.clipped_grad_sums(X[:2], nodes, idx, c, mask, X_prev[:2] if diff else None)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_clipped_difference_keeps_its_bound_after_a_tiny_step(kind: str) -> None:
    """A step of 1e-9: each sample's gradient difference is ~1e-9 of its gradients, and its
    clipped norm is the threshold (to 1e-6), not what a cancellation of the two gradients'
    full-size norms would leave."""
    prob = KINDS[kind]
    X, X_prev = _points(6, step=1e-9)
    nodes = np.arange(P)
    idx = np.array([[0], [3], [1], [4]])  # one sample per row: the sum is that sample's clipped difference
    raw = _reference(prob, X, nodes, idx, math.inf, np.ones((P, 1)), X_prev)
    norms = np.linalg.norm(raw, axis=1)
    assert (norms > 0).all() and (norms < 1e-7).all()
    c = 0.5 * norms
    got = prob.clipped_grad_sums(X, nodes, idx, c, X_prev=X_prev)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), c, rtol=1e-6)
    np.testing.assert_allclose(got, 0.5 * raw, rtol=0, atol=1e-6 * float(norms.max()))


def test_without_a_mask_every_indexed_sample_counts_once() -> None:
    X, X_prev = _points(1)
    nodes = np.array([1, 3])
    idx = np.array([[0, 4, 4, 2], [3, 1, 0, 0]])  # repeats count as often as they appear
    want = _reference(PROB, X[:2], nodes, idx, 0.3, np.ones(idx.shape), X_prev[:2])
    got = PROB.clipped_grad_sums(X[:2], nodes, idx, 0.3, X_prev=X_prev[:2])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("diff", [False, True])
@pytest.mark.parametrize("kind", list(KINDS))
def test_chunked_samples_give_the_unchunked_sums(kind: str, diff: bool) -> None:
    X, X_prev = _points(2)
    nodes = np.arange(P)
    idx, mask = _padded(PROB.m)
    whole = KINDS[kind].clipped_grad_sums(X, nodes, idx, 0.2, mask, X_prev if diff else None)
    chunked = _regression(kind)
    calls = []
    kern = chunked._kernels
    field = "clipped_diff_sums" if diff else "clipped_sums"
    inner = getattr(kern, field)
    chunked._kernels = kern._replace(**{field: lambda *a: calls.append(a[-4].shape[1]) or inner(*a)})
    chunked.clip_block = P * kern.sample_width * 4  # chunks of 4 samples: 6 = 4 + 2
    got = chunked.clipped_grad_sums(X, nodes, idx, 0.2, mask, X_prev if diff else None)
    assert calls == [4, 2]
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-12 * max(1.0, float(np.abs(whole).max())))


def test_a_shard_view_gives_the_full_problems_sums_bit_for_bit() -> None:
    X, X_prev = _points(3)
    view = PROB.shard_view(np.array([1, 3]))
    for nodes in (np.array([1, 3]), np.array([0, 2]), np.array([3, 0])):
        idx, mask = _padded(PROB.m[nodes])
        a = view.clipped_grad_sums(X[nodes], nodes, idx, 0.2, mask, X_prev[nodes])
        b = PROB.clipped_grad_sums(X[nodes], nodes, idx, 0.2, mask, X_prev[nodes])
        np.testing.assert_array_equal(a, b)


# ---- kept evaluations ------------------------------------------------------------------------
def test_the_layerwise_kernels_keep_the_outputs_gradients_and_inner_inputs() -> None:
    """Per sample: δ of both Linear layers (4 + 1) and the hidden layer's input (4); the data,
    the first layer's input, are not kept. The vmap kernels and data-free problems keep none."""
    assert PROB.evaluation_width() == 4 + 1 + 4
    assert CLASSES.evaluation_width() == 5 + 10 + 5
    assert PROB_VMAP.evaluation_width() == 0
    assert PROB.shard_view(np.array([2])).evaluation_width() == 9
    X, _ = _points()
    idx, mask = _padded(PROB.m)
    with pytest.raises(TypeError, match="the vmap clipping kernels keep no evaluations"):
        PROB_VMAP.clipped_grad_sums_keeping(X, np.arange(P), idx, 1.0, mask)
    with pytest.raises(ValueError, match=r"kept must be \[k, b, w\] = \[4, 6, 9\], got \[4, 5, 9\]"):
        PROB.clipped_grad_sums_keeping(X, np.arange(P), idx, 1.0, mask, kept=np.zeros((P, 5, 9)))


@pytest.mark.parametrize("problem", [PROB, CLASSES], ids=["softplus-mse", "relu-cross-entropy"])
@pytest.mark.parametrize("stale", [[], [1, 3], [0, 1, 2, 3]], ids=["none stale", "some stale", "all stale"])
def test_a_kept_evaluation_is_reused_only_at_its_own_point(problem: TorchModelProblem, stale: list[int]) -> None:
    """A difference against a kept evaluation equals the two-point sums (the independent
    autograd reference, and the fused two-point kernel to 1e-12) and counts one pass per row;
    a row whose evaluation belongs to another point (its samples overwritten with garbage
    here) evaluates the previous point again and counts two. What comes back is the
    evaluation at the new point, reused by the next difference."""
    rng = np.random.default_rng(7)
    X_prev = problem.initial_parameters() + 0.5 * rng.standard_normal((P, problem.d))
    X = X_prev + 0.05 * rng.standard_normal((P, problem.d))
    X_next = X + 0.05 * rng.standard_normal((P, problem.d))
    nodes = np.arange(P)
    idx, mask = _padded(np.minimum(problem.m, 6))  # (at most) the first 6 samples of each node
    c = THRESHOLDS["per node"]
    meter = Meter(n=P)
    oracle = CountingOracle(problem, meter)
    _, kept = oracle.clipped_grad_sums_keeping(X_prev, nodes, idx, c, mask, None)
    np.testing.assert_array_equal(kept.at, X_prev)
    at, samples = kept.at.copy(), kept.samples.copy()
    at[stale] += 1e-3  # these rows' evaluations belong to another point
    samples[stale] = 7.0
    before = meter.grad_evals.values.copy()
    got, new = oracle.clipped_grad_sums_keeping(X, nodes, idx, c, mask, X_prev, Evaluation(at, samples))
    want = _reference(problem, X, nodes, idx, c, mask, X_prev)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    two_point = problem.clipped_grad_sums(X, nodes, idx, c, mask, X_prev)
    np.testing.assert_allclose(got, two_point, rtol=0, atol=1e-12)
    fresh = np.isin(nodes, stale)
    np.testing.assert_allclose(meter.grad_evals.values - before, (1.0 + fresh) * mask.sum(axis=1) / problem.m,
                               rtol=1e-15)
    np.testing.assert_array_equal(new.at, X)
    before = meter.grad_evals.values.copy()
    got, _ = oracle.clipped_grad_sums_keeping(X_next, nodes, idx, c, mask, X, new)
    np.testing.assert_allclose(got, _reference(problem, X_next, nodes, idx, c, mask, X), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(meter.grad_evals.values - before, mask.sum(axis=1) / problem.m, rtol=1e-15)


def test_kept_evaluations_of_chunked_samples_and_shard_views_are_the_whole_ones() -> None:
    """Samples in chunks give the unchunked sums and evaluations; a shard view gives the full
    problem's, bit for bit."""
    X, X_prev = _points(5)
    nodes = np.arange(P)
    idx, mask = _padded(PROB.m)
    s0, E0 = PROB.clipped_grad_sums_keeping(X_prev, nodes, idx, 0.2, mask)
    s1, E1 = PROB.clipped_grad_sums_keeping(X, nodes, idx, 0.2, mask, kept=E0)
    chunked = _regression()
    chunked.clip_block = P * chunked._kernels.sample_width * 4  # chunks of 4 samples: 6 = 4 + 2
    c0, F0 = chunked.clipped_grad_sums_keeping(X_prev, nodes, idx, 0.2, mask)
    c1, F1 = chunked.clipped_grad_sums_keeping(X, nodes, idx, 0.2, mask, kept=F0)
    for a, b in ((c0, s0), (F0, E0), (c1, s1), (F1, E1)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * max(1.0, float(np.abs(b).max())))
    view, own = PROB.shard_view(np.array([1, 3])), np.array([1, 3])
    i2, m2 = _padded(PROB.m[own])
    a = view.clipped_grad_sums_keeping(X[own], own, i2, 0.2, m2, X_prev[own])
    b = PROB.clipped_grad_sums_keeping(X[own], own, i2, 0.2, m2, X_prev[own])
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_an_evaluation_is_written_where_asked_even_over_the_kept_one() -> None:
    """``out`` receives the evaluation (the kept rows themselves may be overwritten: each chunk
    is read before it is written); a float32 problem keeps its evaluation as float64 numbers."""
    X, X_prev = _points(8)
    nodes = np.arange(P)
    idx, mask = _padded(PROB.m)
    _, E0 = PROB.clipped_grad_sums_keeping(X_prev, nodes, idx, 0.2, mask)
    want, E1 = PROB.clipped_grad_sums_keeping(X, nodes, idx, 0.2, mask, kept=E0.copy())
    chunked = _regression()
    chunked.clip_block = P * chunked._kernels.sample_width * 4  # chunks of 4 samples: 6 = 4 + 2
    buf = E0.copy()
    got, E = chunked.clipped_grad_sums_keeping(X, nodes, idx, 0.2, mask, kept=buf, out=buf)
    assert E is buf
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(buf, E1, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"out must be a writable float64 array \[k, b, w\] = \[4, 6, 9\]"):
        PROB.clipped_grad_sums_keeping(X, nodes, idx, 0.2, mask, out=np.zeros((P, 6, 9), dtype=np.float32))
    single = problem_factory("mlp_regression")(n=P, data={"source": "teacher", "n_samples": 23, "d": 3}, hidden=4,
                                               device="cpu", dtype="float32", seed=3)
    _, F0 = single.clipped_grad_sums_keeping(X_prev, nodes, idx, 0.2, mask)
    assert F0.dtype == np.float64
    got, _ = single.clipped_grad_sums_keeping(X, nodes, idx, 0.2, mask, kept=F0)
    np.testing.assert_allclose(got, single.clipped_grad_sums(X, nodes, idx, 0.2, mask, X_prev), rtol=1e-5, atol=1e-5)


def test_bad_thresholds_and_masks_are_clear_errors() -> None:
    X, _ = _points()
    nodes = np.arange(P)
    idx, mask = _padded(PROB.m)
    with pytest.raises(ValueError, match="clipping threshold must be >= 0"):
        PROB.clipped_grad_sums(X, nodes, idx, -1.0, mask)
    with pytest.raises(ValueError, match=r"one number or one per node \(\[4\]\)"):
        PROB.clipped_grad_sums(X, nodes, idx, np.ones(3), mask)
    with pytest.raises(ValueError, match=r"mask must be \[k, b\] = \[4, 6\]"):
        PROB.clipped_grad_sums(X, nodes, idx, 1.0, mask[:, :5])


@pytest.mark.parametrize("diff", [False, True])
def test_counted_as_the_per_sample_gradients_it_is_made_of(diff: bool) -> None:
    X, X_prev = _points(4)
    nodes = np.array([0, 2, 3])
    idx, mask = _padded(PROB.m[nodes])
    mask[0, 1] = 0.0
    fused, apart = Meter(n=P), Meter(n=P)
    CountingOracle(PROB, fused).clipped_grad_sums(X[:3], nodes, idx, 0.5, mask, X_prev[:3] if diff else None)
    oracle = CountingOracle(PROB, apart)
    oracle.sample_grads(X[:3], nodes, idx, mask)
    if diff:
        oracle.sample_grads(X_prev[:3], nodes, idx, mask)
    np.testing.assert_array_equal(fused.grad_evals.values, apart.grad_evals.values)
    want = (1 + diff) * mask.sum(axis=1) / PROB.m[nodes]
    np.testing.assert_allclose(fused.grad_evals.values[nodes], want, rtol=1e-15)
    assert fused.grad_evals.values[1] == 0


@pytest.mark.parametrize(("name", "params"), [
    ("diff2", {"lr": 0.2, "restart_every": 3, "clip_grad": 1.0, "clip_diff": 3.0, "epsilon": 3.0, "rounds": 6}),
    ("diff2", {"lr": 0.2, "restart_every": 3, "clip_grad": 1.0, "clip_diff": 3.0, "epsilon": 3.0, "rounds": 6,
               "keep_evaluations": False}),
    ("diff2", {"lr": 0.05, "restart_every": 3, "clip_grad": 1.0, "clip_diff": 3.0, "routine": "bvr_local_sgd",
               "local_steps": 3, "batch_size": 4}),
    ("dp_gd", {"lr": 0.2, "clip": 1.0, "epsilon": 3.0, "rounds": 6}),
    ("dp_sgd", {"lr": 0.2, "clip": 1.0, "sampling_rate": 0.5, "noise_multiplier": 1.0}),
    ("dp_fedavg", {"level": "record", "lr": 0.05, "local_steps": 2, "noise_multiplier": 1.0}),
])
def test_private_algorithms_use_the_fused_kernel(name: str, params: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """No per-sample block comes back to the host: the private algorithms never call
    ``sample_grads`` on a torch problem, and their gradient counts are what the per-sample
    gradients they use amount to (one pass per restart; two per difference round, one where
    the evaluation at the previous iterate is kept from the round before)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("sample_grads called: a [k, b, d] block came back to the host")

    monkeypatch.setattr(TorchModelProblem, "sample_grads", refuse)
    top = make_topology("complete", n=P)
    sim = Simulation(RunSpec(name, PROB, top, make_algorithm(name, **params), 0, StopCriteria(rounds=6)))
    sim.start()
    sim.apply_rounds(6)
    assert np.isfinite(sim.state["x"]).all() and np.abs(sim.state["x"] - PROB.initial_parameters()).max() > 1e-4
    if name == "diff2" and "routine" not in params:  # restarts at rounds 0 and 3, differences at the rest
        per_difference = 1 if params.get("keep_evaluations", True) else 2
        np.testing.assert_allclose(sim.meter.grad_evals.values, np.full(P, 2 * 1 + 4 * per_difference), rtol=1e-15)
