"""Black-box objectives of trained torch models: FZooS's attack and metric experiments on the digits.

Shu, Lin, Dai & Low (arXiv 2308.04077, §6, Appx 12.2–12.3) optimize, through function
values only, a perturbation ``x`` of something a set of trained classifiers sees. Both
problems here are scaled-down versions on scikit-learn's bundled digits (8×8 images, 10
classes, nothing downloaded) and share the conventions of :mod:`fedopt.problems.zo_synthetic`:
an input ``u`` is clipped to ``[0, 1]^d`` and mapped to ``δ = −ε + 2ε·u``, and every
algorithm starts at ``u₀ = 1/2`` (``δ = 0``, the paper's ``x₀ = 0``).

**Class splits** (the FZooS code's ``generate_noniid_data``): each client holds
``c = max(1, ⌊portion·C⌋)`` of the ``C`` classes. In each of ``c`` passes a random
permutation of the classes gives client ``i`` class ``perm[i mod C]``; every class's
samples are shuffled and cut into equal parts, one per (client, pass) that drew it.
``portion = 1`` spreads every class over all clients (the least heterogeneity); small
portions leave each client a few classes.

``blackbox_attack``  (paper Fig. 3, the MNIST/CIFAR-10 attack). Client ``i`` trains its own
    classifier (:func:`~fedopt.problems.torch_model.mlp_classifier` or
    :func:`~fedopt.problems.torch_model.small_cnn` on pixels in ``[0, 1]``; full-batch Adam
    for ``train_steps`` steps, vectorized over clients) on its class split of the training
    images. The attacked images are ``images`` held-out images that the averaged models
    classify correctly (attack success 0 at ``δ = 0``). The paper asks for images correct for
    every model and the code for a mean margin ≥ 0; on these small models neither leaves 15
    images for most seeds once a client has seen fewer than all classes (a model is wrong on
    the classes it never saw). One
    perturbation ``δ ∈ [−ε, ε]^64`` (``ε = 0.3`` as on MNIST) is added to every image, the
    result clipped to ``[0, 1]``, and client ``i``'s objective is its model's mean margin

        f_i(u) = (1/J) Σ_j [z_{y_j} − max_{c ≠ y_j} z_c](model_i(clip(a_j + δ, 0, 1)))

    (the code's untargeted loss), seen only through its value. ``test_metrics`` reports
    ``attack_success``: the share of the images the averaged models (mean of the clients'
    log-softmax outputs, as the paper's models output log-probabilities) misclassify.
    Gradients (for first-order references) are exact, by automatic differentiation.

``metric_optimization``  (paper Fig. 4, Covertype with a pretrained MLP). One MLP
    (``64 → hidden → ReLU → 10``) is trained on the training half of the digits; the clients
    hold class splits of the other half (the code splits the test half). ``u`` perturbs the
    last layer (weights then bias, ``d = 10·hidden + 10``, ``ε = 0.2`` as in the code) and

        f_i(u) = 1 − macro-metric(y_i, argmax of the perturbed model on client i's samples)

    for ``metric`` ∈ {f1, precision, recall, jaccard}; macro averages run over the classes
    present in the client's labels or predictions with 0 for an empty denominator, as
    ``sklearn.metrics`` does with ``average="macro"``. The objective is piecewise constant:
    it has no gradient oracle (a first-order method on it is an error; ``grad_norm_sq`` is NaN).

Neither problem has a known optimum (``subopt`` is NaN); ``train_loss`` is ``F(x̄)``.
Differences from the paper: the digits instead of MNIST / CIFAR-10 / Covertype (so
``d = 64`` and ``d = 170`` instead of 784–1024 and the code's ``dim``), small models trained at
set-up instead of checkpoints, and an MLP of the digits instead of the pretrained Covertype one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from fedopt.core.arrays import FloatArray, IntArray
from fedopt.problems.base import ProblemParamError, register_problem
from fedopt.problems.partition import Partition
from fedopt.problems.torch_model import (
    DIGIT_CLASSES,
    TorchModelProblem,
    mlp_classifier,
    node_blocks,
    small_cnn,
    stratified_split,
)
from fedopt.problems.zo_synthetic import BoxProblem

if TYPE_CHECKING:
    import torch
    from torch import nn

#: Classifier architectures of ``blackbox_attack``.
ATTACK_ARCHS = ("mlp", "cnn")
#: Metrics of ``metric_optimization`` (macro averages over classes).
METRICS = ("f1", "precision", "recall", "jaccard")


# ---- shared set-up -----------------------------------------------------------------------------
def class_split(labels: IntArray, n: int, portion: float, rng: np.random.Generator,
                classes: int = DIGIT_CLASSES) -> Partition:
    """The FZooS code's class split of ``labels`` over ``n`` clients (see the module docstring):
    ``max(1, ⌊portion·classes⌋)`` passes of a random class permutation, each class cut into equal
    parts for the (client, pass) pairs that drew it."""
    labels = np.asarray(labels)
    per_client = max(1, int(portion * classes))
    owners: list[list[int]] = [[] for _ in range(classes)]
    for _ in range(per_client):
        perm = rng.permutation(classes)
        for i in range(n):
            owners[int(perm[i % classes])].append(i)
    parts: list[list[IntArray]] = [[] for _ in range(n)]
    for c in range(classes):  # a loop over classes, not clients or samples
        members = rng.permutation(np.flatnonzero(labels == c))
        if not owners[c]:
            continue
        for chunk, i in zip(np.array_split(members, len(owners[c])), owners[c]):
            parts[i].append(chunk)
    indices = [np.sort(np.concatenate(p)) if p else np.zeros(0, dtype=np.int64) for p in parts]
    return Partition(indices, np.ones(n))


def _digits_pixels() -> tuple[FloatArray, IntArray]:
    """The bundled digits as pixels in ``[0, 1]`` (``[1797, 64]``) and labels."""
    from fedopt.problems.data import sklearn_dataset

    features, labels = sklearn_dataset("digits", standardize_features=False)
    return features / 16.0, labels.astype(np.int64)


def train_classifiers(arch: Callable[[], "nn.Module"], inputs: FloatArray, labels: IntArray,
                      part: Partition, steps: int, lr: float, init_seed: int) -> tuple[TorchModelProblem, FloatArray]:
    """One classifier per block of ``part`` (the same initialization), trained by ``steps``
    full-batch Adam steps (lr ``lr``) on its cross-entropy, all blocks at once:
    ``(the model problem, parameters [n, p])``."""
    X, Y = node_blocks(inputs, labels, part)
    net = TorchModelProblem(arch, X, Y, part.sizes, loss="cross_entropy", device="cpu", dtype="float64",
                            init_seed=init_seed)
    nodes = np.arange(part.n)
    theta = np.tile(net.initial_parameters(), (part.n, 1))
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t in range(1, steps + 1):
        g = net.grad(theta, nodes)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        theta = theta - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return net, theta


def _check_common(owner: str, n: Any, portion: Any, eps: Any, train_steps: Any, lr: Any) -> None:
    for key, v in (("n", n), ("train_steps", train_steps)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ProblemParamError(key, f"{owner}: {key} must be a positive integer, got {v!r}")
    for key, v, hi in (("portion", portion, 1.0), ("eps", eps, math.inf), ("lr", lr, math.inf)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v <= hi):
            rng = "in (0, 1]" if hi == 1.0 else "> 0"
            raise ProblemParamError(key, f"{owner}: {key} must be a number {rng}, got {v!r}")


def _margins(z: "torch.Tensor", y: "torch.Tensor") -> "torch.Tensor":
    """``z_y − max_{c≠y} z_c`` over the last axis of ``z [..., C]`` for labels ``y`` (broadcast)."""
    import torch

    hot = torch.nn.functional.one_hot(y, z.shape[-1]).to(torch.bool)
    true = (z * hot).sum(-1)
    other = torch.where(hot, torch.full_like(z, -torch.inf), z).amax(-1)
    return true - other


# ---- the federated black-box attack ----------------------------------------------------------------
class BlackBoxAttack(BoxProblem):
    """One shared perturbation of ``J`` images against ``n`` client classifiers (see the module
    docstring). ``net`` holds the architecture, ``theta [n, p]`` the clients' parameters,
    ``images [J, 64]`` (pixels in ``[0, 1]``) and ``labels [J]`` the attacked images."""

    def __init__(self, net: TorchModelProblem, theta: FloatArray, images: FloatArray, labels: IntArray,
                 eps: float, image_shape: tuple[int, ...]) -> None:
        import torch

        self.net = net
        self.n, self.d = theta.shape[0], images.shape[1]
        self.lb, self.ub = -float(eps), float(eps)
        self.x0 = np.full(self.d, 0.5)
        self.L, self.mu = math.nan, None
        self.image_shape = tuple(image_shape)
        self.theta = torch.as_tensor(theta, dtype=torch.float64)
        self.images = torch.as_tensor(images, dtype=torch.float64)
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_kernels", None)  # closures: rebuilt on first use
        return state

    def _logits(self, theta: "torch.Tensor", delta: "torch.Tensor") -> "torch.Tensor":
        """Logits ``[J, C]`` of one model on the perturbed images."""
        from torch.func import functional_call

        x = (self.images + delta).clamp(0.0, 1.0).reshape((-1, *self.image_shape))
        return functional_call(self.net.module, self.net.unflatten(theta), (x,))

    def _loss(self, theta: "torch.Tensor", delta: "torch.Tensor") -> "torch.Tensor":
        return _margins(self._logits(theta, delta), self.labels).mean()

    @property
    def _k(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        ks = self.__dict__.get("_kernels")
        if ks is None:
            from torch.func import grad, vmap

            ks = self.__dict__["_kernels"] = (vmap(self._loss), vmap(grad(self._loss, argnums=1)))
        return ks  # type: ignore[no-any-return]

    def _f(self, Z: FloatArray, nodes: IntArray) -> FloatArray:
        import torch

        with torch.no_grad():
            out = self._k[0](self.theta[torch.as_tensor(nodes)], torch.as_tensor(Z, dtype=torch.float64))
        return out.numpy().astype(np.float64)

    def _df(self, Z: FloatArray, nodes: IntArray) -> FloatArray:
        import torch

        out = self._k[1](self.theta[torch.as_tensor(nodes)], torch.as_tensor(Z, dtype=torch.float64))
        return out.detach().numpy().astype(np.float64)

    def outputs(self, x: FloatArray) -> FloatArray:
        """The clients' log-softmax outputs ``[n, J, C]`` on the images perturbed by ``x [d]``."""
        import torch
        from torch.func import vmap

        delta = torch.as_tensor(self._project(np.asarray(x, dtype=np.float64)), dtype=torch.float64)
        with torch.no_grad():
            z = vmap(self._logits, in_dims=(0, None))(self.theta, delta)
        return torch.log_softmax(z, dim=-1).numpy()  # type: ignore[no-any-return]

    def test_metrics(self, x: FloatArray) -> dict[str, float]:
        """``{"attack_success": share of the images the averaged models misclassify}`` at ``x``."""
        pred = self.outputs(x).mean(axis=0).argmax(axis=-1)
        return {"attack_success": float((pred != self.labels.numpy()).mean())}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "images": int(self.images.shape[0]), "eps": self.ub,
                "x_star_reason": "no known optimum (subopt is NaN); attack_success is the share of fooled images"}


@register_problem("blackbox_attack")
def blackbox_attack(n: int = 10, portion: float = 0.7, arch: str = "mlp", hidden: int = 32, channels: int = 8,
                    images: int = 15, eps: float = 0.3, train_steps: int = 300, lr: float = 0.01,
                    test_fraction: float = 0.2, seed: int = 0,
                    rng: np.random.Generator | None = None) -> BlackBoxAttack:
    """The federated black-box adversarial attack on the digits (see the module docstring).

    Parameters
    ----------
    n : clients, each with its own classifier (the paper: 10).
    portion : share of the 10 classes each client's training data covers (heterogeneity;
        the paper's P: 0.5 on CIFAR-10, 0.7 on MNIST).
    arch, hidden, channels : the classifier (``mlp``: ``hidden`` units; ``cnn``: ``channels`` filters).
    images : attacked held-out images J (the paper: 15).
    eps : the perturbation box ``[−eps, eps]^64`` in pixel units (the paper: 0.3 on MNIST).
    train_steps, lr : full-batch Adam training of the classifiers at set-up.
    test_fraction : share of each class held out (the attacked images come from it).
    seed / rng : randomness, split into independent held-out split, class split,
        initialization and image-choice streams.
    """
    owner = "blackbox_attack"
    _check_common(owner, n, portion, eps, train_steps, lr)
    if arch not in ATTACK_ARCHS:
        raise ProblemParamError("arch", f"{owner}: arch must be one of {', '.join(ATTACK_ARCHS)}, got {arch!r}")
    for key, v in (("hidden", hidden), ("channels", channels), ("images", images)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ProblemParamError(key, f"{owner}: {key} must be a positive integer, got {v!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ProblemParamError("test_fraction", f"{owner}: test_fraction must be a number in (0, 1), "
                                f"got {test_fraction!r}")
    rng = np.random.default_rng(seed) if rng is None else rng
    data_rng, split_rng, init_rng, pick_rng = rng.spawn(4)
    pixels, labels = _digits_pixels()
    train, test = stratified_split(labels, float(test_fraction), data_rng)
    part = class_split(labels[train], int(n), float(portion), split_rng)
    if (part.sizes == 0).any():
        raise ProblemParamError("n", f"{owner}: {n} clients leave client(s) {np.flatnonzero(part.sizes == 0).tolist()} "
                                "without data; use fewer clients or a larger portion")
    if arch == "mlp":
        factory, shape, inputs = partial(mlp_classifier, 64, int(hidden), DIGIT_CLASSES), (64,), pixels[train]
    else:
        factory, shape = partial(small_cnn, int(channels), DIGIT_CLASSES), (1, 8, 8)
        inputs = pixels[train].reshape(-1, *shape)
    net, theta = train_classifiers(factory, inputs, labels[train], part, int(train_steps), float(lr),
                                   int(init_rng.integers(2**63)))
    probe = BlackBoxAttack(net, theta, pixels[test], labels[test], float(eps), shape)
    averaged = probe.outputs(probe.x0).mean(axis=0)                  # [N_test, C] at δ = 0
    valid = np.flatnonzero(averaged.argmax(axis=-1) == labels[test])
    if len(valid) < images:
        raise ProblemParamError("images", f"{owner}: only {len(valid)} held-out images are classified correctly by "
                                f"the averaged models; ask for at most that many images")
    pick = np.sort(pick_rng.choice(valid, size=int(images), replace=False))
    return BlackBoxAttack(net, theta, pixels[test][pick], labels[test][pick], float(eps), shape)


# ---- non-differentiable metric optimization ------------------------------------------------------------
def macro_scores(true: IntArray, pred: IntArray, mask: FloatArray, classes: int) -> dict[str, FloatArray]:
    """Macro precision, recall, F1 and Jaccard of the rows of ``pred [k, m]`` against ``true [k, m]``
    over the valid entries (``mask [k, m]``, 0/1), each ``[k]``: per class ``TP/(TP+FP)``,
    ``TP/(TP+FN)``, ``2TP/(2TP+FP+FN)``, ``TP/(TP+FP+FN)`` (0 for an empty denominator), averaged
    over the classes present among the row's labels or predictions (``sklearn.metrics``'
    ``average="macro"``)."""
    eye = np.eye(classes)
    T = eye[true] * mask[..., None]
    P = eye[pred] * mask[..., None]
    tp = (T * P).sum(axis=1)
    npred, ntrue = P.sum(axis=1), T.sum(axis=1)
    present = (npred + ntrue) > 0
    count = present.sum(axis=1)

    def avg(num: FloatArray, den: FloatArray) -> FloatArray:
        per = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        return (per * present).sum(axis=1) / count  # type: ignore[no-any-return]

    return {"precision": avg(tp, npred), "recall": avg(tp, ntrue), "f1": avg(2 * tp, npred + ntrue),
            "jaccard": avg(tp, npred + ntrue - tp)}


class MetricOptimization(BoxProblem):
    """``1 −`` a macro metric of one MLP with a perturbed last layer on each client's samples
    (see the module docstring): ``H [n, m_max, hidden]`` the clients' hidden activations,
    ``y [n, m_max]`` their labels, ``m [n]`` their counts, ``W [C, hidden]``, ``b [C]`` the
    trained last layer."""

    def __init__(self, H: FloatArray, y: IntArray, m: IntArray, W: FloatArray, b: FloatArray, metric: str,
                 eps: float) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric_optimization: metric must be one of {', '.join(METRICS)}, got {metric!r}")
        self.H, self.y, self.m = np.asarray(H, dtype=np.float64), np.asarray(y, dtype=np.int64), np.asarray(m)
        self.W, self.b = np.asarray(W, dtype=np.float64), np.asarray(b, dtype=np.float64)
        self.classes, hidden = self.W.shape
        self.metric = metric
        self.n, self.d = self.H.shape[0], self.classes * hidden + self.classes
        self.lb, self.ub = -float(eps), float(eps)
        self.x0 = np.full(self.d, 0.5)
        self.L, self.mu = math.nan, None
        self.mask = (np.arange(self.H.shape[1])[None, :] < self.m[:, None]).astype(np.float64)

    def predictions(self, X: FloatArray, nodes: IntArray) -> IntArray:
        """Predicted classes ``[k, m_max]`` of the perturbed models ``X [k, d]`` on the clients' samples."""
        Z = self._project(np.asarray(X, dtype=np.float64))
        C, h = self.W.shape
        W = self.W + Z[:, : C * h].reshape(-1, C, h)
        b = self.b + Z[:, C * h:]
        logits = np.einsum("kmh,kch->kmc", self.H[nodes], W) + b[:, None, :]
        return logits.argmax(axis=-1)  # type: ignore[no-any-return]

    def value(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        nodes = np.asarray(nodes, dtype=np.int64)
        scores = macro_scores(self.y[nodes], self.predictions(X, nodes), self.mask[nodes], self.classes)
        return 1.0 - scores[self.metric]

    def grad(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        raise TypeError("metric_optimization: the objective is piecewise constant and has no gradient oracle; "
                        "use a zeroth-order algorithm (fzoos, zo_fedavg, ...)")

    def global_grad(self, x: FloatArray) -> FloatArray:
        """Undefined (NaN): the ``grad_norm_sq`` column is NaN."""
        return np.full(self.d, math.nan)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "metric": self.metric, "samples": int(self.m.sum()),
                "x_star_reason": "no known optimum (subopt is NaN)"}


@register_problem("metric_optimization")
def metric_optimization(n: int = 10, metric: str = "f1", portion: float = 0.5, hidden: int = 16, eps: float = 0.2,
                        train_steps: int = 300, lr: float = 0.01, seed: int = 0,
                        rng: np.random.Generator | None = None) -> MetricOptimization:
    """Non-differentiable metric optimization on the digits (see the module docstring).

    Parameters
    ----------
    n : clients (the code: 7, one per Covertype class).
    metric : ``f1``, ``precision``, ``recall`` or ``jaccard`` (macro); the objective is 1 − metric.
    portion : share of the 10 classes each client's samples cover (heterogeneity).
    hidden : hidden units of the MLP (``d = 10·hidden + 10``).
    eps : the perturbation box ``[−eps, eps]^d`` of the last-layer parameters (the code: 0.2).
    train_steps, lr : full-batch Adam training of the MLP on the training half at set-up.
    seed / rng : randomness, split into independent halves, class split and initialization streams.
    """
    owner = "metric_optimization"
    _check_common(owner, n, portion, eps, train_steps, lr)
    if metric not in METRICS:
        raise ProblemParamError("metric", f"{owner}: metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if isinstance(hidden, bool) or not isinstance(hidden, (int, np.integer)) or hidden < 1:
        raise ProblemParamError("hidden", f"{owner}: hidden must be a positive integer, got {hidden!r}")
    rng = np.random.default_rng(seed) if rng is None else rng
    data_rng, split_rng, init_rng = rng.spawn(3)
    pixels, labels = _digits_pixels()
    train, held = stratified_split(labels, 0.5, data_rng)
    whole = Partition([np.arange(len(train))], np.ones(1))
    net, theta = train_classifiers(partial(mlp_classifier, 64, int(hidden), DIGIT_CLASSES), pixels[train],
                                   labels[train], whole, int(train_steps), float(lr), int(init_rng.integers(2**63)))
    sizes = np.cumsum(net.param_sizes)[:-1]
    W1, b1, W2, b2 = (a.reshape(s) for a, s in zip(np.split(theta[0], sizes), net.param_shapes))
    part = class_split(labels[held], int(n), float(portion), split_rng)
    if (part.sizes == 0).any():
        raise ProblemParamError("n", f"{owner}: {n} clients leave client(s) {np.flatnonzero(part.sizes == 0).tolist()} "
                                "without data; use fewer clients or a larger portion")
    hid = np.maximum(pixels[held] @ W1.T + b1, 0.0)
    H, Y = node_blocks(hid, labels[held], part)
    return MetricOptimization(H, Y[:, :, 0].astype(np.int64), part.sizes, W2, b2, metric, float(eps))
