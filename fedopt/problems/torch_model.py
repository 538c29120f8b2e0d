"""Neural-network objectives: a torch model per node, oracles vectorized over nodes.

Node ``i`` holds ``m_i`` samples ``(a_j, y_j)`` and the same architecture (an
:class:`torch.nn.Module` built by a factory); its objective is the mean of
per-sample losses of the model with parameters ``x``,

    f_i(x) = (1/m_i) Σ_{j ∈ node i} ℓ(model(x; a_j), y_j),

and the global objective is ``f = (1/n) Σ_i f_i``. A node's iterate ``x`` is the
model's flat parameter vector (the order of ``named_parameters``), so the state
stays a numpy ``[n, d]`` block and every algorithm runs unchanged. The data live
on the problem's device once, padded to ``[n, m_max, ...]`` with a weight mask
``w [n, m_max]`` equal to ``1/m_i`` on node ``i``'s valid rows and 0 on padding
(as :mod:`fedopt.problems.empirical` does in numpy). Oracles are
:func:`torch.func.functional_call` under :func:`torch.func.vmap` over the nodes of
a block (and over samples for per-sample gradients), with
:func:`torch.func.grad`: no Python loop over nodes or samples. A block of
iterates is moved to the device once per oracle call; results come back as
float64 numpy arrays. The private algorithms' oracle, sums of clipped per-sample
gradients (or gradient differences), is one fused kernel that keeps the per-sample
block on the device and returns ``[k, d]`` (:meth:`_VmapOracles.clipped_grad_sums`).

A shard of a distributed run reads the problem through :meth:`TorchModelProblem.shard_view`
(:class:`TorchShardView`): its own nodes' data copied once, contiguously, to the device
the engine placed the shard on (a GPU Ray gave its actor), with a copy of the module
there, and the same kernels. A pickled problem carries its tensors in host memory and
goes back to its device only when it computes itself, so the full copy a shard
receives with its run spec stays off the shard's device.

torch is imported when a problem of this module is built, not when
:mod:`fedopt.problems` is imported.

Registered problems:

``mlp_regression``  Linear → softplus → Linear with a squared loss (the network
                    of the DIFF2 paper's experiments: Murata & Suzuki 2021, *Bias-
                    variance reduced local SGD for less heterogeneous federated
                    learning*, ICML, §6) on teacher-network data or scikit-learn's
                    diabetes set, split over nodes by a partition. Nonconvex:
                    ``L = mu = None``, no ``x*``.
``mlp_classification``  Linear → ReLU → Linear with the softmax cross-entropy on
                    scikit-learn's bundled digits (8×8, 10 classes), a stratified
                    held-out test split (the ``test_accuracy`` column).
``cnn_classification``  a small CNN (3×3 convolution → ReLU → 2×2 max-pool → linear)
                    on the same digits as ``[1, 8, 8]`` images.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from fedopt.core.arrays import FloatArray, IntArray
from fedopt.core.clip import clip_thresholds
from fedopt.core.rng import NodeStream
from fedopt.problems.base import Problem, ProblemParamError, ShardView, param_error, register_problem
from fedopt.problems.data import load_dataset
from fedopt.problems.partition import Partition, partition_samples

if TYPE_CHECKING:
    import torch
    from torch import nn

#: Values of the ``device`` parameter (``cuda:K`` names GPU ``K``).
DEVICES = ("auto", "cpu", "cuda", "cuda:K")
#: Values of the ``dtype`` parameter (``auto``: float64 on CPU, float32 on CUDA).
DTYPES = ("auto", "float32", "float64")
#: Per-sample losses by name: ``ℓ(prediction, target)`` of one sample.
LOSSES = ("mse", "cross_entropy")


def resolve_device(device: str, owner: str = "problem") -> "torch.device":
    """The torch device a ``device`` parameter names: ``auto`` (CUDA when torch sees a GPU,
    else the CPU), ``cpu``, ``cuda`` or ``cuda:K``. CUDA asked for and absent is a
    :class:`ProblemParamError` keyed ``device``, never a silent CPU run."""
    import torch

    if not isinstance(device, str):
        raise ProblemParamError("device", f"{owner}: device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ProblemParamError(
                "device",
                f"{owner}: device {device!r} asked for but torch {torch.__version__} sees no CUDA device "
                "(torch.cuda.is_available() is False); use device: cpu or auto, or install a CUDA build of torch",
            )
        if device != "cuda" and int(device[5:]) >= torch.cuda.device_count():
            raise ProblemParamError(
                "device",
                f"{owner}: device {device!r} asked for but torch sees {torch.cuda.device_count()} CUDA device(s) "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})",
            )
        return torch.device(device)
    raise ProblemParamError("device", f"{owner}: device must be one of {', '.join(DEVICES)}, got {device!r}")


def resolve_dtype(dtype: str, device: "torch.device", owner: str = "problem") -> "torch.dtype":
    """``float32`` / ``float64``, or ``auto``: float64 on the CPU (exact tests), float32 on CUDA."""
    import torch

    if dtype == "auto":
        return torch.float64 if device.type == "cpu" else torch.float32
    if dtype in ("float32", "float64"):
        return getattr(torch, dtype)  # type: ignore[no-any-return]
    raise ProblemParamError("dtype", f"{owner}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


def _mse(pred: "torch.Tensor", target: "torch.Tensor") -> "torch.Tensor":
    """Squared error of one sample, summed over outputs: ``‖pred − y‖²``."""
    return ((pred - target) ** 2).sum()


def _cross_entropy(logits: "torch.Tensor", target: "torch.Tensor") -> "torch.Tensor":
    """Softmax cross-entropy of one sample: ``logsumexp(z) − z_y`` for logits ``z [C]`` and
    the class id ``y`` (a one-element target holding an integer ``0..C-1``)."""
    import torch

    classes = torch.arange(logits.shape[-1], device=logits.device, dtype=target.dtype)
    picked = (logits * (classes == target).to(logits.dtype)).sum()  # z_y without data-dependent indexing
    return torch.logsumexp(logits, dim=-1) - picked


_LOSS_FNS: dict[str, Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]] = {
    "mse": _mse, "cross_entropy": _cross_entropy,
}

#: How the fused clipping kernels get per-sample gradient norms and sums (see :func:`make_kernels`).
CLIPPING_KERNELS = ("auto", "layerwise", "vmap")


class Kernels(NamedTuple):
    """The vmapped kernels of a module (see :func:`make_kernels`); ``clipping`` names the
    method of the two fused clipping kernels (``layerwise`` or ``vmap``) and ``sample_width``
    the elements they hold per sample and evaluation point (``d`` for ``vmap``; the Linear
    layers' input and output widths for ``layerwise``). The layerwise kernels also keep an
    evaluation (``kept_width`` floats per sample; 0 and ``None`` kernels for ``vmap``):
    ``clipped_sums_keep(X, A, Y, w, t) -> (sums, parts)``, ``evaluate(X, A, Y) -> E`` and
    ``clipped_diff_sums_kept(X, E_prev, A, Y, w, t) -> (sums, parts)``, the difference against
    the point where ``E_prev`` was evaluated; ``parts`` are the blocks of ``E``'s last axis in
    order (the caller writes them where ``E`` is kept, without a packed copy)."""

    value: Callable[..., "torch.Tensor"]
    grad: Callable[..., "torch.Tensor"]
    sample_grads: Callable[..., "torch.Tensor"]
    clipped_sums: Callable[..., "torch.Tensor"]
    clipped_diff_sums: Callable[..., "torch.Tensor"]
    clipping: str
    sample_width: int
    clipped_sums_keep: Callable[..., tuple["torch.Tensor", tuple["torch.Tensor", ...]]] | None = None
    clipped_diff_sums_kept: Callable[..., tuple["torch.Tensor", tuple["torch.Tensor", ...]]] | None = None
    evaluate: Callable[..., "torch.Tensor"] | None = None
    kept_width: int = 0
    #: Full-batch gradients of a Linear/activation stack with batched matrix products
    #: (:func:`_stack_grad_kernel`), ``None`` for other modules (``grad`` is used).
    stack_grad: Callable[..., dict[str, "torch.Tensor"]] | None = None


def _clip_scale(sq_norms: "torch.Tensor", t: "torch.Tensor") -> "torch.Tensor":
    """Clip factors ``min(1, t/‖g‖)`` of per-sample rows with squared norms ``sq_norms [b]``
    (a zero row keeps factor 1, ``t = 0`` gives 0 to every nonzero row, ``t = inf`` 1 to all)."""
    import torch

    norms = torch.sqrt(sq_norms)
    one = torch.ones_like(norms)
    return torch.where(norms > t, t / torch.where(norms > 0, norms, one), one)


def _clipped_sum(G: "torch.Tensor", w: "torch.Tensor", t: "torch.Tensor") -> "torch.Tensor":
    """``Σ_j w_j · clip(G_j, t)`` of one node's per-sample rows ``G [b, d]``."""
    return (_clip_scale((G * G).sum(dim=-1), t) * w) @ G


#: Modules that act on each entry alone (activations): the layerwise kernels pass samples
#: through them unchanged in shape.
_ELEMENTWISE = ("ReLU", "Softplus", "Tanh", "Sigmoid", "GELU", "SiLU", "ELU", "LeakyReLU", "Identity")


def layerwise_plan(module: "nn.Module") -> list[tuple[str, "nn.Module"]] | None:
    """The layers of ``module`` when the layerwise clipping kernels apply to it: an
    :class:`torch.nn.Sequential` of :class:`torch.nn.Linear` layers and elementwise
    activations (:data:`_ELEMENTWISE`), at least one Linear; else ``None``."""
    from torch import nn

    if not isinstance(module, nn.Sequential):
        return None
    layers = list(module.named_children())
    ok = all(isinstance(m, nn.Linear) or (type(m).__name__ in _ELEMENTWISE and type(m).__module__.startswith("torch.nn"))
             for _, m in layers)
    return layers if ok and any(isinstance(m, nn.Linear) for _, m in layers) else None


def _layerwise_kernels(
    layers: list[tuple[str, "nn.Module"]],
    loss: Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"],
    unflatten: Callable[["torch.Tensor"], dict[str, "torch.Tensor"]],
    flatten: Callable[[Mapping[str, "torch.Tensor"]], "torch.Tensor"],
) -> tuple[Callable[..., Any], ...]:
    """The fused clipping kernels of a Linear/activation stack without per-sample gradients.

    A Linear layer ``z = W a + b`` gives sample ``j`` the gradients ``δ_j a_jᵀ`` (``W``) and
    ``δ_j`` (``b``), ``δ_j = ∂ℓ_j/∂z_j``; one batched backward gives every ``δ_j`` (the samples
    do not interact), and ``‖δ aᵀ‖² = ‖δ‖²‖a‖²`` (Goodfellow 2015, *Efficient per-example
    gradient computations*; "ghost clipping", Li, Tramèr, Liang & Hashimoto, ICLR 2022).
    The clipped sum of a layer is one matmul, ``(s∘δ)ᵀ A`` with the clip factors ``s``.
    For a difference between ``x`` and ``x'`` (``δ', a'`` at ``x'``, ``Δδ = δ − δ'``,
    ``Δa = a − a'``): ``δaᵀ − δ'a'ᵀ = Δδ aᵀ + δ' Δaᵀ``, so
    ``‖·‖² = ‖Δδ‖²‖a‖² + 2(Δδ·δ')(a·Δa) + ‖δ'‖²‖Δa‖²`` and the sum is
    ``(s∘Δδ)ᵀA + (s∘δ')ᵀΔA``, both from differences (no cancellation of the two
    gradients' full size). The cost is about a full-batch gradient per evaluation point.

    An evaluation point is all a difference needs of it in ``δ`` and ``a`` of every Linear
    layer (``a`` of a first Linear layer is the data, not kept): the kernels that keep an
    evaluation pack them as ``E [b, w]`` per sample (:func:`make_kernels`' ``kept_width``),
    and a difference against a kept ``E`` evaluates only the new point, with the arithmetic
    of a difference whose earlier point is evaluated alone (:func:`evaluate`) in the same
    call. Returns ``(clipped_sums, clipped_diff_sums, clipped_sums_keep,
    clipped_diff_sums_kept, evaluate, kept_width)``, vmapped over nodes."""
    import torch
    from torch import nn
    from torch.func import grad, vmap

    linear = [(name, m) for name, m in layers if isinstance(m, nn.Linear)]
    first_is_linear = isinstance(layers[0][1], nn.Linear)

    def total_loss(params: dict[str, "torch.Tensor"], A: "torch.Tensor", Y: "torch.Tensor",
                   biases: tuple["torch.Tensor", ...]) -> tuple["torch.Tensor", tuple["torch.Tensor", ...]]:
        """``Σ_j ℓ_j`` with each Linear's bias given per sample (``biases[l] [b, out]``: its
        gradient is ``δ``), and the Linear inputs ``a``."""
        h, inputs, k = A, [], 0
        for name, m in layers:
            if isinstance(m, nn.Linear):
                inputs.append(h)
                h = h @ params[f"{name}.weight"].T + biases[k]
                k += 1
            else:
                h = m(h)
        return vmap(loss)(h, Y).sum(), tuple(inputs)

    def deltas(flat: "torch.Tensor", A: "torch.Tensor", Y: "torch.Tensor"
               ) -> tuple[tuple["torch.Tensor", ...], tuple["torch.Tensor", ...]]:
        params, b = unflatten(flat), A.shape[0]
        biases = tuple(params[f"{name}.bias"].expand(b, m.out_features) if m.bias is not None
                       else torch.zeros((b, m.out_features), dtype=A.dtype, device=A.device) for name, m in linear)
        return grad(total_loss, argnums=3, has_aux=True)(params, A, Y, biases)

    def assemble(parts: list[tuple["torch.Tensor", "torch.Tensor"]]) -> "torch.Tensor":
        out: dict[str, torch.Tensor] = {}
        for (name, m), (gw, gb) in zip(linear, parts):
            out[f"{name}.weight"] = gw
            if m.bias is not None:
                out[f"{name}.bias"] = gb
        return flatten(out)

    def sq(v: "torch.Tensor") -> "torch.Tensor":
        return torch.linalg.vector_norm(v, dim=-1) ** 2

    def sums_of(ds: tuple["torch.Tensor", ...], acts: tuple["torch.Tensor", ...], w: "torch.Tensor",
                t: "torch.Tensor") -> "torch.Tensor":
        """``Σ_j w_j clip(g_j, t)`` from the ``δ`` and ``a`` of every Linear at one point."""
        norm2 = torch.zeros_like(w)
        for (_, m), d, a in zip(linear, ds, acts):
            dd = sq(d)
            norm2 = norm2 + dd * (sq(a) + (1.0 if m.bias is not None else 0.0))
        s = (_clip_scale(norm2, t) * w)[:, None]
        return assemble([(sd.T @ a, sd.sum(dim=0)) for sd, a in ((s * d, a) for d, a in zip(ds, acts))])

    def diff_sums(ds: tuple["torch.Tensor", ...], acts: tuple["torch.Tensor", ...], ds_p: tuple["torch.Tensor", ...],
                  acts_p: tuple["torch.Tensor", ...], w: "torch.Tensor", t: "torch.Tensor") -> "torch.Tensor":
        """``Σ_j w_j clip(g_j − g'_j, t)`` from the ``δ``, ``a`` at the new point and ``δ'``, ``a'``
        at the earlier one."""
        norm2 = torch.zeros_like(w)
        terms = []
        for l, ((_, m), d, dp, a, ap) in enumerate(zip(linear, ds, ds_p, acts, acts_p)):
            ddl = d - dp
            n_dd = sq(ddl)
            norm2 = norm2 + n_dd * (sq(a) + (1.0 if m.bias is not None else 0.0))
            if l == 0 and first_is_linear:  # the data are the input: Δa = 0
                terms.append((ddl, dp, a, None))
                continue
            dal = a - ap
            norm2 = norm2 + 2.0 * (ddl * dp).sum(dim=-1) * (a * dal).sum(dim=-1) + sq(dp) * sq(dal)
            terms.append((ddl, dp, a, dal))
        s = (_clip_scale(torch.clamp(norm2, min=0.0), t) * w)[:, None]
        parts = []
        for ddl, dp, a, dal in terms:
            sd = s * ddl
            gw = sd.T @ a if dal is None else sd.T @ a + (s * dp).T @ dal
            parts.append((gw, sd.sum(dim=0)))
        return assemble(parts)

    def clipped_sums(flat: "torch.Tensor", A: "torch.Tensor", Y: "torch.Tensor", w: "torch.Tensor",
                     t: "torch.Tensor") -> "torch.Tensor":
        return sums_of(*deltas(flat, A, Y), w, t)

    def clipped_diff_sums(flat: "torch.Tensor", prev: "torch.Tensor", A: "torch.Tensor", Y: "torch.Tensor",
                          w: "torch.Tensor", t: "torch.Tensor") -> "torch.Tensor":
        both = vmap(deltas, in_dims=(0, None, None))(torch.stack([flat, prev]), A, Y)  # both points at once
        ds, acts = tuple(d[0] for d in both[0]), tuple(a[0] for a in both[1])
        ds_p, acts_p = tuple(d[1] for d in both[0]), tuple(a[1] for a in both[1])
        return diff_sums(ds, acts, ds_p, acts_p, w, t)

    # what an evaluation point keeps per sample: δ of every Linear, then a of every Linear but a first one
    keep_a = [l for l in range(len(linear)) if not (l == 0 and first_is_linear)]
    widths = [m.out_features for _, m in linear] + [linear[l][1].in_features for l in keep_a]

    def pack(ds: tuple["torch.Tensor", ...], acts: tuple["torch.Tensor", ...]) -> tuple["torch.Tensor", ...]:
        """The kept quantities in their order in ``E``'s last axis (the caller writes them there)."""
        return (*ds, *(acts[l] for l in keep_a))

    def unpack(E: "torch.Tensor", A: "torch.Tensor"
               ) -> tuple[tuple["torch.Tensor", ...], tuple["torch.Tensor", ...]]:
        parts = torch.split(E, widths, dim=-1)
        ds, kept_a = parts[:len(linear)], dict(zip(keep_a, parts[len(linear):]))
        return tuple(ds), tuple(kept_a.get(l, A) for l in range(len(linear)))

    def clipped_sums_keep(flat: "torch.Tensor", A: "torch.Tensor", Y: "torch.Tensor", w: "torch.Tensor",
                          t: "torch.Tensor") -> tuple["torch.Tensor", tuple["torch.Tensor", ...]]:
        ds, acts = deltas(flat, A, Y)
        return sums_of(ds, acts, w, t), pack(ds, acts)

    def evaluate(flat: "torch.Tensor", A: "torch.Tensor", Y: "torch.Tensor") -> "torch.Tensor":
        return torch.cat(pack(*deltas(flat, A, Y)), dim=-1)

    def clipped_diff_sums_kept(flat: "torch.Tensor", E_prev: "torch.Tensor", A: "torch.Tensor", Y: "torch.Tensor",
                               w: "torch.Tensor", t: "torch.Tensor"
                               ) -> tuple["torch.Tensor", tuple["torch.Tensor", ...]]:
        ds, acts = deltas(flat, A, Y)
        ds_p, acts_p = unpack(E_prev, A)
        return diff_sums(ds, acts, ds_p, acts_p, w, t), pack(ds, acts)

    return (vmap(clipped_sums), vmap(clipped_diff_sums), vmap(clipped_sums_keep), vmap(clipped_diff_sums_kept),
            vmap(evaluate), sum(widths))


def _stack_grad_kernel(
    layers: list[tuple[str, "nn.Module"]],
    loss: Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"],
) -> Callable[..., dict[str, "torch.Tensor"]]:
    """Full-batch gradients of a Linear/activation stack (:func:`layerwise_plan`) for a block
    of nodes with plain batched matrix products, not ``grad`` under ``vmap``.

    ``stack_grad(params, A [k, b, in], Y [k, b, out], w [k, b], out=None)``: ``params`` maps
    each parameter name to the block's ``[k, *shape]`` tensor (views of the iterates). The
    forward pass is one ``baddbmm`` per Linear layer (``z = b + a Wᵀ``, every node with its
    own ``W``); the backward pass is written out: ``δ_L = ∂/∂z_L Σ_j w_j ℓ(z_Lj, y_j)``
    (autograd of the weighted losses), ``∇W = δᵀ a`` (one ``bmm``), ``∇b = Σ_j δ_j``,
    ``δ ← (δ W) ∘ σ'(z)`` (the activation's vector-Jacobian product), the same products a
    per-node ``backward()`` makes, batched over the nodes, with no gradient of the data. The
    gradients are written into ``out`` (``{name: [k, *shape]}`` tensors, reused buffers)
    where given, else into new tensors; returns the gradient dict."""
    import torch
    from torch import nn
    from torch.func import vmap

    def d_loss(z: "torch.Tensor", Y: "torch.Tensor", w: "torch.Tensor") -> "torch.Tensor":
        """``∂/∂z Σ_kj w_kj ℓ(z_kj, y_kj)`` (plain autograd on the last layer's outputs)."""
        with torch.enable_grad():
            z = z.detach().requires_grad_()
            total = (w * vmap(vmap(loss))(z, Y)).sum()
        return torch.autograd.grad(total, z)[0]

    def act_vjp(m: "nn.Module", z: "torch.Tensor") -> tuple["torch.Tensor", Callable[..., Any]]:
        """``σ(z)`` and the map ``δ ↦ δ ∘ σ'(z)`` of an elementwise activation (autograd)."""
        with torch.enable_grad():
            z = z.detach().requires_grad_()
            a = m(z)
        return a.detach(), lambda delta: torch.autograd.grad(a, z, delta)

    n_linear = sum(isinstance(m, nn.Linear) for _, m in layers)

    def stack_grad(params: Mapping[str, "torch.Tensor"], A: "torch.Tensor", Y: "torch.Tensor", w: "torch.Tensor",
                   out: Mapping[str, "torch.Tensor"] | None = None) -> dict[str, "torch.Tensor"]:
        h, tape = A, []
        for name, m in layers:  # a loop over layers
            if isinstance(m, nn.Linear):
                W, b = params[f"{name}.weight"], params.get(f"{name}.bias")
                Wt = W.transpose(1, 2)
                z = torch.bmm(h, Wt) if b is None else torch.baddbmm(b.unsqueeze(1), h, Wt)
                tape.append((name, m, h, W))
                h = z
            else:
                h, back = act_vjp(m, h)
                tape.append(back)
        delta = d_loss(h, Y, w)
        grads: dict[str, torch.Tensor] = {}
        left = n_linear
        for entry in reversed(tape):
            if left == 0:  # below the first Linear layer: the data, no gradient
                break
            if not isinstance(entry, tuple):
                (delta,) = entry(delta)
                continue
            name, m, a, W = entry
            key = f"{name}.weight"
            grads[key] = torch.bmm(delta.transpose(1, 2), a, out=None if out is None else out[key])
            if m.bias is not None:
                key = f"{name}.bias"
                grads[key] = torch.sum(delta, dim=1, out=None if out is None else out[key])
            left -= 1
            if left:
                delta = torch.bmm(delta, W)
        return grads

    return stack_grad


def make_kernels(
    module: "nn.Module",
    loss: Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"],
    unflatten: Callable[["torch.Tensor"], dict[str, "torch.Tensor"]],
    flatten: Callable[[Mapping[str, "torch.Tensor"]], "torch.Tensor"],
    sample_shape: tuple[int, ...] | None = None,
    clipping: str = "auto",
) -> Kernels:
    """The oracles of ``module`` with per-sample ``loss`` as vmapped functions of a block:
    ``value(X [k, d], A [k, b, *in], Y [k, b, *out], w [k, b]) -> [k]`` (the weighted loss
    sums ``Σ_j w_kj ℓ(model(X_k; A_kj), Y_kj)``), ``grad(X, A, Y, w) -> {name: [k, *shape]}``
    (their gradients, as the module's parameter dict: the oracles copy each block once,
    straight into the float64 result, :meth:`_VmapOracles._flat_out`, instead of
    concatenating a ``[k, d]`` tensor first and converting it after), ``sample_grads(X, A, Y)
    -> {name: [k, b, *shape]}`` (per-sample gradients, likewise), and the fused
    clipping kernels ``clipped_sums(X, A, Y, w, t) -> [k, d]`` (``Σ_j w_kj clip(g_j(X_k), t_k)``)
    and ``clipped_diff_sums(X, X_prev, A, Y, w, t) -> [k, d]`` (``Σ_j w_kj clip(g_j(X_k) −
    g_j(X_prev_k), t_k)``), which keep the per-sample block inside the kernel;
    ``unflatten`` / ``flatten`` map a flat parameter vector to the module's parameter dict
    and back. Gradients are taken with respect to the parameter dict and flattened once
    (differentiating through the slices of the flat vector would add a zero-filled
    ``[d]`` tensor per parameter tensor to every gradient).

    ``clipping``: how the fused kernels work. ``vmap`` materializes each chunk's per-sample
    gradients ``[b, d]`` per node, clips and sums them (any module); ``layerwise`` never
    forms them (:func:`_layerwise_kernels`: a Linear/activation stack, :func:`layerwise_plan`,
    on flat samples, ``sample_shape = (d_in,)``); ``auto`` takes ``layerwise`` where it applies.
    Such a stack also gets ``stack_grad`` (:func:`_stack_grad_kernel`), which the oracles
    use for full-batch and minibatch gradients instead of ``grad``."""
    from torch import nn
    from torch.func import functional_call, grad, vmap

    if clipping not in CLIPPING_KERNELS:
        raise ValueError(f"clipping kernels must be one of {', '.join(CLIPPING_KERNELS)}, got {clipping!r}")
    plan = layerwise_plan(module) if sample_shape is not None and len(sample_shape) == 1 else None
    if clipping == "layerwise" and plan is None:
        raise ValueError(f"layerwise clipping kernels need a Sequential of Linear layers and elementwise "
                         f"activations on flat samples; got {type(module).__name__} on samples {sample_shape}")

    def sample_loss(params: dict[str, "torch.Tensor"], a: "torch.Tensor", y: "torch.Tensor") -> "torch.Tensor":
        pred = functional_call(module, params, (a.unsqueeze(0),))
        return loss(pred.squeeze(0), y)

    def weighted_loss(params: dict[str, "torch.Tensor"], A: "torch.Tensor", Y: "torch.Tensor",
                      w: "torch.Tensor") -> "torch.Tensor":
        per_sample = vmap(sample_loss, in_dims=(None, 0, 0))(params, A, Y)
        return (w * per_sample).sum()

    def value(flat: "torch.Tensor", A: "torch.Tensor", Y: "torch.Tensor", w: "torch.Tensor") -> "torch.Tensor":
        return weighted_loss(unflatten(flat), A, Y, w)

    def node_grad(flat: "torch.Tensor", A: "torch.Tensor", Y: "torch.Tensor",
                  w: "torch.Tensor") -> dict[str, "torch.Tensor"]:
        return grad(weighted_loss)(unflatten(flat), A, Y, w)  # type: ignore[no-any-return]

    def node_sample_grads(flat: "torch.Tensor", A: "torch.Tensor", Y: "torch.Tensor") -> dict[str, "torch.Tensor"]:
        params = unflatten(flat)
        return vmap(lambda a, y: grad(sample_loss)(params, a, y))(A, Y)  # type: ignore[no-any-return]

    def flat_sample_grads(flat: "torch.Tensor", A: "torch.Tensor", Y: "torch.Tensor") -> "torch.Tensor":
        params = unflatten(flat)
        return vmap(lambda a, y: flatten(grad(sample_loss)(params, a, y)))(A, Y)  # [b, d]

    def node_clipped_sum(flat: "torch.Tensor", A: "torch.Tensor", Y: "torch.Tensor", w: "torch.Tensor",
                         t: "torch.Tensor") -> "torch.Tensor":
        return _clipped_sum(flat_sample_grads(flat, A, Y), w, t)

    def node_clipped_diff_sum(flat: "torch.Tensor", prev: "torch.Tensor", A: "torch.Tensor", Y: "torch.Tensor",
                              w: "torch.Tensor", t: "torch.Tensor") -> "torch.Tensor":
        return _clipped_sum(flat_sample_grads(flat, A, Y) - flat_sample_grads(prev, A, Y), w, t)

    if plan is not None and clipping != "vmap":
        sums, diff_sums, sums_keep, diff_sums_kept, evaluate, kept_width = _layerwise_kernels(plan, loss, unflatten,
                                                                                            flatten)
        kind, width = "layerwise", sum(m.in_features + m.out_features for _, m in plan if isinstance(m, nn.Linear))
        return Kernels(vmap(value), vmap(node_grad), vmap(node_sample_grads), sums, diff_sums, kind, width,
                       sums_keep, diff_sums_kept, evaluate, kept_width, _stack_grad_kernel(plan, loss))
    sums, diff_sums = vmap(node_clipped_sum), vmap(node_clipped_diff_sum)
    kind, width = "vmap", sum(int(p.numel()) for p in module.parameters())
    stack = None if plan is None else _stack_grad_kernel(plan, loss)
    return Kernels(vmap(value), vmap(node_grad), vmap(node_sample_grads), sums, diff_sums, kind, width,
                   stack_grad=stack)


class _VmapOracles(ABC):
    """The oracles of a torch model problem, given where its data are read (shared by
    :class:`TorchModelProblem` and its :class:`TorchShardView`): a subclass sets ``d``,
    ``m``, ``device``, ``dtype``, ``_kernels`` and implements :meth:`_rows` and
    :meth:`_samples`. Numpy in, float64 numpy out; one transfer of the iterates per call."""

    d: int
    m: IntArray
    device: "torch.device"
    dtype: "torch.dtype"
    param_names: tuple[str, ...]
    param_shapes: tuple[tuple[int, ...], ...]
    param_sizes: tuple[int, ...]
    _kernels: Kernels
    #: Gradient buffers reused on the CPU (:meth:`_workspace`); scratch, never pickled.
    _scratch: "tuple[int, torch.Tensor | None, dict[str, torch.Tensor]] | None" = None
    #: Elements one call of the fused clipping kernels holds per evaluation point (``[k, chunk, d]``
    #: per-sample gradients for the vmap kernels): :meth:`clipped_grad_sums` runs over the samples
    #: in chunks of that size.
    clip_block: int = 1 << 22
    #: Most entries of the iterate / gradient block one gradient kernel call converts and
    #: returns (and of its activations, ``samples ×`` the Linear widths, for a Linear stack):
    #: larger blocks of nodes are evaluated in chunks of nodes that stay in cache (converting
    #: a block of hundreds of MB to the device dtype and back costs as much as the gradients
    #: of a large model; a chunk of a few tens of MB, in reused buffers, does not).
    grad_block: int = 1 << 23

    @abstractmethod
    def _rows(self, nodes: IntArray) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
        """``(A [k, m_max, *in], Y [k, m_max, *out], w [k, m_max])`` of ``nodes`` on the device."""

    @abstractmethod
    def _samples(self, nodes: IntArray, idx: IntArray) -> tuple["torch.Tensor", "torch.Tensor"]:
        """Samples ``idx [k, b]`` (checked) of each node on the device: ``(A [k, b, *in], Y [k, b, *out])``."""

    def _to_device(self, X: FloatArray, k: int) -> "torch.Tensor":
        """The block ``X [k, d]`` on the device and dtype (one transfer)."""
        import torch

        X = np.asarray(X)
        if X.shape != (k, self.d):
            raise ValueError(f"{type(self).__name__}: iterates must be [{k}, {self.d}] (one row per node), "
                             f"got shape {X.shape}")
        return torch.as_tensor(X, dtype=self.dtype, device=self.device)

    @staticmethod
    def _out(t: "torch.Tensor") -> FloatArray:
        return t.detach().cpu().numpy().astype(np.float64, copy=False)

    def _flat_out(self, grads: Mapping[str, "torch.Tensor"], lead: tuple[int, ...],
                  out: FloatArray | None = None) -> FloatArray:
        """The float64 block ``[*lead, d]`` of gradient blocks ``{name: [*lead, *shape]}``, in
        the order of the flat vector: each block copied once, converting as it goes (into
        ``out`` where given)."""
        if out is None:
            out = np.empty((*lead, self.d))
        start = 0
        for name, size in zip(self.param_names, self.param_sizes):  # a loop over parameter tensors
            out[..., start:start + size] = grads[name].detach().reshape(*lead, size).cpu().numpy()
            start += size
        return out

    def _checked_samples(self, nodes: IntArray, idx: IntArray) -> tuple["torch.Tensor", "torch.Tensor"]:
        idx = np.asarray(idx, dtype=np.int64)
        if idx.ndim != 2 or idx.shape[0] != len(nodes):
            raise ValueError(f"sample_grads: idx must be [k, b] with k = {len(nodes)}, got shape {idx.shape}")
        if (idx < 0).any() or (idx >= self.m[nodes][:, None]).any():
            raise IndexError("sample_grads: a sample index is outside its node's 0..m_i-1")
        return self._samples(nodes, idx)

    def n_samples(self) -> IntArray:
        return self.m.copy()

    def value(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        nodes = np.asarray(nodes, dtype=np.int64)
        if not len(nodes):
            return np.zeros(0)
        rows = self._rows(nodes)
        return self._out(self._kernels.value(self._to_device(X, len(nodes)), *rows))

    def grad(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        nodes = np.asarray(nodes, dtype=np.int64)
        if not len(nodes):
            return np.zeros((0, self.d))
        X = self._checked_block(X, len(nodes))
        out = np.empty((len(nodes), self.d))
        for s, e in self._node_chunks(len(nodes), int(self.m[nodes].max())):
            self._grad_chunk(X[s:e], *self._rows(nodes[s:e]), out[s:e])
        return out

    def _checked_block(self, X: FloatArray, k: int) -> FloatArray:
        X = np.asarray(X)
        if X.shape != (k, self.d):
            raise ValueError(f"{type(self).__name__}: iterates must be [{k}, {self.d}] (one row per node), "
                             f"got shape {X.shape}")
        return X

    def _node_chunks(self, k: int, samples: int) -> list[tuple[int, int]]:
        """``(start, end)`` of the chunks of a block of ``k`` nodes with ``samples`` samples
        each whose iterates, gradients and (for a Linear stack) activations hold at most
        :attr:`grad_block` entries: chunk sizes follow from the model's size (a loop over
        chunks, each a batched call, never over nodes)."""
        per_node = self.d
        if self._kernels.stack_grad is not None:
            per_node = max(per_node, samples * self._kernels.sample_width)
        chunk = max(1, self.grad_block // per_node)
        return [(s, min(k, s + chunk)) for s in range(0, k, chunk)]

    def _workspace(self, k: int) -> tuple["torch.Tensor | None", dict[str, "torch.Tensor"]]:
        """Buffers reused by every gradient call on the CPU: the iterates of a chunk in the
        device dtype (``None`` in float64: the float64 iterates are read in place) and its
        gradient blocks ``{name: [k, *shape]}``. Large fresh tensors cost page faults on each
        call (the allocator returns them to the system), which a loop over small per-node
        tensors never pays; these scratch buffers hold no state between calls."""
        import torch

        ws = self._scratch
        if ws is None or ws[0] < k:
            X = None if self.dtype == torch.float64 else torch.empty((k, self.d), dtype=self.dtype)
            G = {name: torch.empty((k, *shape), dtype=self.dtype)
                 for name, shape in zip(self.param_names, self.param_shapes)}
            ws = self._scratch = (k, X, G)
        return (None if ws[1] is None else ws[1][:k]), {name: g[:k] for name, g in ws[2].items()}

    def _grad_chunk(self, X: FloatArray, A: "torch.Tensor", Y: "torch.Tensor", w: "torch.Tensor",
                    out: FloatArray) -> None:
        """The gradients of one chunk of nodes (``X [k, d]``, their samples ``A, Y, w``) into
        the float64 rows ``out``: the batched matrix products of a Linear stack
        (:func:`_stack_grad_kernel`, into reused buffers on the CPU), else ``grad`` under ``vmap``."""
        import torch

        k = X.shape[0]
        stack = self._kernels.stack_grad
        if stack is None:
            self._flat_out(self._kernels.grad(self._to_device(X, k), A, Y, w), (k,), out)
            return
        if self.device.type != "cpu":
            Xt, space = self._to_device(X, k), None
        else:
            Xw, space = self._workspace(k)
            if Xw is None:
                Xt = self._to_device(X, k)
            else:
                np.copyto(Xw.numpy(), X, casting="same_kind")  # the one conversion, into the reused buffer
                Xt = Xw
        params, start = {}, 0
        for name, shape, size in zip(self.param_names, self.param_shapes, self.param_sizes):
            params[name] = Xt[:, start:start + size].view(k, *shape)  # views of the iterates
            start += size
        self._flat_out(stack(params, A, Y, w, space), (k,), out)

    def sample_grads(self, X: FloatArray, nodes: IntArray, idx: IntArray) -> FloatArray:
        nodes = np.asarray(nodes, dtype=np.int64)
        A, Y = self._checked_samples(nodes, idx)
        return self._flat_out(self._kernels.sample_grads(self._to_device(X, len(nodes)), A, Y), tuple(A.shape[:2]))

    def _clip_inputs(self, nodes: IntArray, idx: IntArray, c: float | FloatArray, mask: FloatArray | None
                     ) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor", "torch.Tensor"]:
        """``(A [k, b, *in], Y, w [k, b], t [k])`` of a clipping call on the device (checked).

        Every sample of each node in order, padded as :func:`fedopt.privacy.clipping.all_samples`
        pads (``idx[p, i] = min(i, m_p − 1)``, ``mask`` 0 on the padding) reads the nodes' rows
        where they are (no gather): there the padding holds zeros instead of repeats of the last
        sample, which changes nothing, as masked samples add exact zeros."""
        import torch

        k = len(nodes)
        t = torch.as_tensor(clip_thresholds(c, k), dtype=self.dtype, device=self.device)
        idx = np.asarray(idx)
        b = idx.shape[1] if idx.ndim == 2 else -1
        m = self.m[nodes][:, None] if idx.ndim == 2 and idx.shape[0] == k else None
        ar = np.arange(b)[None, :]
        if (m is not None and mask is not None and np.shape(mask) == (k, b) and b <= int(self.m.max())
                and np.array_equal(idx, np.minimum(ar, m - 1)) and not np.asarray(mask)[ar >= m].any()):
            A, Y, _ = self._rows(nodes)
            A, Y = A[:, :b], Y[:, :b]
        else:
            A, Y = self._checked_samples(nodes, idx)
        b = A.shape[1]
        if mask is None:
            w = torch.ones((k, b), dtype=self.dtype, device=self.device)
        else:
            mask = np.asarray(mask, dtype=np.float64)
            if mask.shape != (k, b):
                raise ValueError(f"clipped_grad_sums: mask must be [k, b] = [{k}, {b}] like idx, got {mask.shape}")
            w = torch.as_tensor(mask, dtype=self.dtype, device=self.device)
        return A, Y, w, t

    def clipped_grad_sums(self, X: FloatArray, nodes: IntArray, idx: IntArray, c: float | FloatArray,
                          mask: FloatArray | None = None, X_prev: FloatArray | None = None) -> FloatArray:
        """Sums of clipped per-sample gradients or gradient differences (the arithmetic of
        :meth:`Problem.clipped_grad_sums`) in one fused kernel on the device: the per-sample
        gradients (at ``X`` and ``X_prev``), their difference, norms, clip factors and the masked
        sum are computed there, in chunks of samples that hold at most :attr:`clip_block`
        elements per evaluation point (``k × chunk ×`` the kernels' ``sample_width``: ``d`` when
        the per-sample block ``[k, b, d]`` is materialized), and only ``[k, d]`` comes back."""
        import torch

        nodes = np.asarray(nodes, dtype=np.int64)
        k = len(nodes)
        A, Y, w, t = self._clip_inputs(nodes, idx, c, mask)
        b = A.shape[1]
        Xt = self._to_device(X, k)
        prev = None if X_prev is None else self._to_device(X_prev, k)
        out = torch.zeros((k, self.d), dtype=self.dtype, device=self.device)
        chunk = max(1, self.clip_block // max(1, k * self._kernels.sample_width))
        for s in range(0, b, chunk):  # a loop over sample chunks (memory), not over nodes
            part = (A[:, s:s + chunk], Y[:, s:s + chunk], w[:, s:s + chunk], t)
            out += (self._kernels.clipped_sums(Xt, *part) if prev is None
                    else self._kernels.clipped_diff_sums(Xt, prev, *part))
        return self._out(out)

    def evaluation_width(self) -> int:
        """Floats per sample an evaluation keeps (:meth:`clipped_grad_sums_keeping`): the
        layerwise kernels' ``δ`` of every Linear layer and the inputs ``a`` of every Linear
        layer but a first one (21 for the DIFF2 network with ``d_in = hidden = 10``); 0 with
        the vmap kernels (they would keep ``d`` floats per sample: a difference there always
        evaluates both points)."""
        return self._kernels.kept_width

    def clipped_grad_sums_keeping(self, X: FloatArray, nodes: IntArray, idx: IntArray, c: float | FloatArray,
                                  mask: FloatArray | None = None, X_prev: FloatArray | None = None,
                                  kept: FloatArray | None = None,
                                  out: FloatArray | None = None) -> tuple[FloatArray, FloatArray]:
        """:meth:`clipped_grad_sums` in the same fused kernel, also returning the evaluation at
        ``X`` (``[k, b, w]``: each sample's ``δ`` and Linear inputs, :func:`_layerwise_kernels`);
        a difference against ``kept`` (an earlier call's evaluation on the same ``idx``)
        evaluates ``X`` only. The difference against ``X_prev`` evaluates ``X_prev`` alone
        first, so both ways give the same numbers bit for bit. ``out``: where to write the
        evaluation (see :meth:`Problem.clipped_grad_sums_keeping`); on a float64 CPU problem
        the kernels write into it directly, chunk by chunk, each chunk after its ``kept``
        rows were read (``out`` may be ``kept`` itself)."""
        import torch

        kern = self._kernels
        if not kern.kept_width:
            raise TypeError(f"{type(self).__name__}: the {kern.clipping} clipping kernels keep no evaluations "
                            "(evaluation_width() is 0): use clipped_grad_sums")
        if X_prev is not None and kept is not None:
            raise ValueError("clipped_grad_sums_keeping: a difference is against X_prev or against kept, not both")
        nodes = np.asarray(nodes, dtype=np.int64)
        k = len(nodes)
        A, Y, w, t = self._clip_inputs(nodes, idx, c, mask)
        b = A.shape[1]
        E_prev = None
        if kept is not None:
            kept = np.asarray(kept)
            if kept.shape != (k, b, kern.kept_width):
                raise ValueError(f"clipped_grad_sums_keeping: kept must be [k, b, w] = [{k}, {b}, {kern.kept_width}], "
                                 f"got {list(kept.shape)}")
            E_prev = torch.as_tensor(kept, dtype=self.dtype, device=self.device)
        shape = (k, b, kern.kept_width)
        if out is None:
            out = np.empty(shape)
        elif not (isinstance(out, np.ndarray) and out.shape == shape and out.dtype == np.float64
                  and out.flags.writeable):
            raise ValueError(f"clipped_grad_sums_keeping: out must be a writable float64 array [k, b, w] = "
                             f"{list(shape)}, got {getattr(out, 'shape', type(out).__name__)}")
        direct = self.device.type == "cpu" and self.dtype == torch.float64
        E = torch.from_numpy(out) if direct else torch.empty(shape, dtype=self.dtype, device=self.device)
        Xt = self._to_device(X, k)
        prev = None if X_prev is None else self._to_device(X_prev, k)
        total = torch.zeros((k, self.d), dtype=self.dtype, device=self.device)
        chunk = max(1, self.clip_block // max(1, k * kern.sample_width))
        assert kern.clipped_sums_keep is not None and kern.clipped_diff_sums_kept is not None
        assert kern.evaluate is not None
        for s in range(0, b, chunk):  # a loop over sample chunks (memory), not over nodes
            sl = slice(s, s + chunk)
            part = (A[:, sl], Y[:, sl], w[:, sl], t)
            E_p = kern.evaluate(prev, A[:, sl], Y[:, sl]) if prev is not None else \
                None if E_prev is None else E_prev[:, sl]
            sums, parts = (kern.clipped_sums_keep(Xt, *part) if E_p is None
                           else kern.clipped_diff_sums_kept(Xt, E_p, *part))
            total += sums
            o = 0
            for q in parts:  # a loop over the kept blocks (δ of each Linear, inner inputs), into E's rows
                E[:, sl, o:o + q.shape[-1]] = q
                o += q.shape[-1]
        if not direct:
            out[...] = self._out(E)
        return self._out(total), out

    def stochastic_grad(self, X: FloatArray, nodes: IntArray, rng: NodeStream, batch: int) -> FloatArray:
        """Minibatch gradient: the gradient of the mean loss of ``batch`` samples drawn
        uniformly with replacement from each node's samples (the same draws from the
        per-node stream as :meth:`Problem.stochastic_grad`), in one vmapped call."""
        import torch

        nodes = np.asarray(nodes, dtype=np.int64)
        idx = rng.integers(nodes, self.m[nodes], batch)
        A, Y = self._checked_samples(nodes, idx)
        w = torch.full(idx.shape, 1.0 / batch, dtype=self.dtype, device=self.device)
        X = self._checked_block(X, len(nodes))
        out = np.empty((len(nodes), self.d))
        for s, e in self._node_chunks(len(nodes), batch):
            self._grad_chunk(X[s:e], A[s:e], Y[s:e], w[s:e], out[s:e])
        return out


class TorchModelProblem(_VmapOracles, Problem):
    """Per-node objectives ``f_i(x) = Σ_j w_ij ℓ(model(x; a_ij), y_ij)`` of one torch
    architecture, ``x`` its flat parameter vector.

    Parameters
    ----------
    module_factory : builds the architecture (called once, with torch's generator seeded
        by ``init_seed`` inside a forked RNG, so the global torch stream is untouched); its
        forward must map a batch ``[b, *in]`` to ``[b, *out]``.
    inputs : ``[n, m_max, *in]`` features; rows ``m_i..m_max-1`` of node ``i`` are padding.
    targets : ``[n, m_max, *out]`` targets (padding ignored).
    m : ``[n]`` samples per node, each ``≥ 1``.
    loss : per-sample loss, one of :data:`LOSSES`.
    device : ``auto | cpu | cuda | cuda:K`` (see :func:`resolve_device`); ``auto`` also lets
        a shard follow the engine's placement (:meth:`shard_placement`).
    dtype : ``auto | float32 | float64`` (see :func:`resolve_dtype`).
    """

    L = None  # type: ignore[assignment]  # nonconvex: no smoothness constant is claimed
    #: Tensors that live on the problem's device (pickled in host memory, see :meth:`__getstate__`).
    _DEVICE_TENSORS: tuple[str, ...] = ("_inputs", "_targets", "_w")
    mu = None

    def __init__(
        self,
        module_factory: Callable[[], "nn.Module"],
        inputs: FloatArray,
        targets: FloatArray,
        m: IntArray,
        loss: str = "mse",
        device: str = "auto",
        dtype: str = "auto",
        init_seed: int = 0,
    ) -> None:
        import torch

        name = type(self).__name__
        inputs = np.asarray(inputs, dtype=np.float64)
        targets = np.asarray(targets, dtype=np.float64)
        m = np.asarray(m, dtype=np.int64)
        if inputs.ndim < 3 or targets.shape[:2] != inputs.shape[:2] or m.shape != inputs.shape[:1]:
            raise ValueError(f"{name}: need inputs [n, m_max, ...], targets [n, m_max, ...], m [n]; "
                             f"got {inputs.shape}, {targets.shape}, {m.shape}")
        if (m < 1).any() or (m > inputs.shape[1]).any():
            raise ValueError(f"{name}: every node needs 1 <= m_i <= m_max = {inputs.shape[1]} samples")
        if not np.isfinite(inputs).all() or not np.isfinite(targets).all():
            raise ValueError(f"{name}: data contain NaN or inf")
        if loss not in _LOSS_FNS:
            raise ProblemParamError("loss", f"{name}: loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if loss == "cross_entropy" and (targets.shape[2:] != (1,) or (targets < 0).any()
                                        or (targets != np.round(targets)).any()):
            raise ValueError(f"{name}: cross_entropy needs targets [n, m_max, 1] holding class ids 0..C-1")
        self.device = resolve_device(device, name)
        self.dtype = resolve_dtype(dtype, self.device, name)
        self.requested_device, self.requested_dtype = device, dtype
        self.loss_name = loss
        self._loss = _LOSS_FNS[loss]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            module = module_factory()
        self.module = module.to(device=self.device, dtype=self.dtype)
        for p in self.module.parameters():
            p.requires_grad_(False)
        named = list(self.module.named_parameters())
        self.param_names = tuple(k for k, _ in named)
        self.param_shapes = tuple(tuple(p.shape) for _, p in named)
        self.param_sizes = tuple(int(p.numel()) for _, p in named)
        self.n, m_max = inputs.shape[:2]
        self.d = int(sum(self.param_sizes))
        self.m = m
        self.m.setflags(write=False)
        valid = np.arange(m_max)[None, :] < m[:, None]
        as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=self.dtype, device=self.device)  # noqa: E731
        pad = valid.reshape(valid.shape + (1,) * (inputs.ndim - 2))
        self._inputs = as_t(np.where(pad, inputs, 0.0))
        pad_t = valid.reshape(valid.shape + (1,) * (targets.ndim - 2))
        self._targets = as_t(np.where(pad_t, targets, 0.0))
        self._w = as_t(valid / m[:, None].astype(np.float64))
        self._placed = True
        self._init = self.flatten(dict(self.module.named_parameters())).detach().cpu().numpy().astype(np.float64)
        self._kernels = make_kernels(self.module, self._loss, self.unflatten, self.flatten,
                                     tuple(self._inputs.shape[2:]))

    # ---- flat parameters <-> parameter dicts ------------------------------------------
    def unflatten(self, flat: "torch.Tensor") -> dict[str, "torch.Tensor"]:
        """The parameter dict (views of ``flat``) of one flat vector ``[d]`` (or, under
        ``vmap``, of each row)."""
        out: dict[str, torch.Tensor] = {}
        start = 0
        for name, shape, size in zip(self.param_names, self.param_shapes, self.param_sizes):
            out[name] = flat[start:start + size].view(shape)
            start += size
        return out

    def flatten(self, params: Mapping[str, "torch.Tensor"]) -> "torch.Tensor":
        """The flat vector ``[d]`` of a parameter dict (the order of ``named_parameters``)."""
        import torch

        return torch.cat([params[name].reshape(-1) for name in self.param_names])

    def initial_parameters(self) -> FloatArray:
        """The module's own initialization (seeded by ``init_seed``) as a flat ``[d]`` vector."""
        return self._init.copy()

    # ---- pickling (shards of a distributed run get a copy) ----------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """The problem with its module and data in host memory (a process without the
        problem's GPU can unpickle it; :meth:`_place` moves them back on first own use)."""
        state = self.__dict__.copy()
        for key in ("_kernels", "_loss"):
            state.pop(key, None)  # closures: rebuilt from the module on unpickling
        state.pop("_scratch", None)  # reused gradient buffers: scratch
        if self.device.type != "cpu":
            state["module"] = copy.deepcopy(self.module).cpu()
            state.update({k: getattr(self, k).cpu() for k in self._DEVICE_TENSORS})
            state["_placed"] = False
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._loss = _LOSS_FNS[self.loss_name]
        self._kernels = make_kernels(self.module, self._loss, self.unflatten, self.flatten,
                                     tuple(self._inputs.shape[2:]))

    def _place(self) -> None:
        """Move the module and data to the problem's device if they are not there (an
        unpickled copy of a GPU problem arrives in host memory). A device this process
        cannot use is an error: such a copy serves only shard views on a device of its own."""
        if self._placed:
            return
        try:
            resolve_device(str(self.device), type(self).__name__)
        except ProblemParamError as exc:
            raise RuntimeError(
                f"{type(self).__name__}: this copy of a problem on {self.device} was sent to a process where "
                f"it cannot compute ({exc}); a shard reads it through shard_view(nodes, device=...) on a "
                "device of its own") from None
        self.module.to(device=self.device)
        for key in self._DEVICE_TENSORS:
            setattr(self, key, getattr(self, key).to(device=self.device))
        self._placed = True

    # ---- data access ----------------------------------------------------------------------
    def _data_rows(self, nodes: IntArray) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
        """``(A, Y, w)`` of ``nodes`` where the data are (a view for a run of consecutive nodes)."""
        import torch

        k = len(nodes)
        if k and int(nodes[-1]) - int(nodes[0]) == k - 1 and (k == 1 or bool((np.diff(nodes) == 1).all())):
            s = slice(int(nodes[0]), int(nodes[0]) + k)  # a run of consecutive nodes: a view, no copy
            return self._inputs[s], self._targets[s], self._w[s]
        idx = torch.as_tensor(nodes, device=self._inputs.device)
        return self._inputs[idx], self._targets[idx], self._w[idx]

    def _data_samples(self, nodes: IntArray, idx: IntArray) -> tuple["torch.Tensor", "torch.Tensor"]:
        """Samples ``idx [k, b]`` of each of ``nodes`` where the data are."""
        import torch

        ni = torch.as_tensor(nodes, device=self._inputs.device)[:, None]
        si = torch.as_tensor(idx, device=self._inputs.device)
        return self._inputs[ni, si], self._targets[ni, si]

    def _rows(self, nodes: IntArray) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
        self._place()
        return self._data_rows(nodes)

    def _samples(self, nodes: IntArray, idx: IntArray) -> tuple["torch.Tensor", "torch.Tensor"]:
        self._place()
        return self._data_samples(nodes, idx)

    # ---- shards ---------------------------------------------------------------------------
    def shard_placement(self, device: str | None) -> tuple["torch.device", "torch.dtype"]:
        """The device and dtype of a shard that an engine placed on ``device`` (``"cpu"``,
        ``"cuda"``; ``None``: not placed, the problem's own). A problem built with
        ``device: auto`` follows the placement, and ``dtype: auto`` then follows the device
        (float64 on the CPU, float32 on CUDA); an explicit device of another kind than the
        placement's is an error, never a quiet move."""
        if device is None:
            return self.device, self.dtype
        name, placed = type(self).__name__, str(device)
        asked = str(self.requested_device)
        if asked != "auto" and asked.split(":")[0] != placed.split(":")[0]:
            raise ProblemParamError(
                "device", f"{name}: device {asked!r} asked for, but the engine placed this shard on {placed!r}; "
                f"set the problem's device to auto to follow the engine's placement, or give the shards "
                f"{'GPUs (num_gpus_per_actor > 0)' if asked.startswith('cuda') else 'no GPU (num_gpus_per_actor: 0)'}")
        dev = resolve_device(placed, f"{name} shard")
        return dev, resolve_dtype(self.requested_dtype, dev, name)

    def shard_view(self, nodes: IntArray, device: str | None = None) -> "TorchShardView":
        """The problem as a shard holding ``nodes`` on ``device`` reads it (see
        :class:`TorchShardView` and :meth:`shard_placement`)."""
        return TorchShardView(self, nodes, device)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(
            model=type(self.module).__name__,
            loss=self.loss_name,
            device=str(self.device),
            dtype=str(self.dtype).removeprefix("torch."),
            samples=int(self.m.sum()),
            m_min=int(self.m.min()),
            m_max=int(self.m.max()),
            x_star_reason="nonconvex: no global minimizer is known (subopt and dist_opt are NaN)",
        )
        return out


class TorchShardView(_VmapOracles, ShardView):
    """A :class:`TorchModelProblem` seen from a shard that owns ``nodes``, on the device the
    engine placed the shard on (:meth:`TorchModelProblem.shard_placement`).

    The shard's own nodes' inputs, targets and weights are copied there once,
    contiguously, in the order of ``nodes``, with a copy of the module; the kernels are
    the full problem's (:func:`make_kernels`) over that module. A call on a run of own
    nodes (a whole-shard block) slices the copies; any other call (peer nodes, own nodes
    out of order) reads the full problem's data and moves them to the shard's device, so
    on the full problem's device and dtype every result equals the full problem's bit for
    bit. Samples of own nodes (minibatches, per-sample gradients) are gathered from the
    shard's copies.
    """

    full: TorchModelProblem

    def __init__(self, full: TorchModelProblem, nodes: IntArray, device: str | None = None) -> None:
        super().__init__(full, nodes)
        self.device, self.dtype = full.shard_placement(device)
        self.m = full.m
        self.module = copy.deepcopy(full.module).to(device=self.device, dtype=self.dtype)
        self._kernels = make_kernels(self.module, full._loss, full.unflatten, full.flatten,
                                     tuple(full._inputs.shape[2:]))
        self.param_names, self.param_shapes, self.param_sizes = full.param_names, full.param_shapes, full.param_sizes
        self._inputs, self._targets, self._w = (t.to(device=self.device, dtype=self.dtype, copy=True)
                                                for t in full._data_rows(self.nodes))

    def _moved(self, tensors: tuple["torch.Tensor", ...]) -> tuple["torch.Tensor", ...]:
        return tuple(t.to(device=self.device, dtype=self.dtype) for t in tensors)

    def _rows(self, nodes: IntArray) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
        s = self.own_run(nodes)
        if s is None:
            return self._moved(self.full._data_rows(nodes))  # type: ignore[return-value]
        return self._inputs[s], self._targets[s], self._w[s]

    def _samples(self, nodes: IntArray, idx: IntArray) -> tuple["torch.Tensor", "torch.Tensor"]:
        import torch

        loc = self.local[nodes]
        if len(nodes) and bool((loc >= 0).all()):
            li = torch.as_tensor(loc, device=self.device)[:, None]
            si = torch.as_tensor(idx, device=self.device)
            return self._inputs[li, si], self._targets[li, si]
        return self._moved(self.full._data_samples(nodes, idx))  # type: ignore[return-value]

    def data_bytes(self) -> int:
        """Bytes of per-node data this view holds on its device."""
        return sum(t.element_size() * t.numel() for t in (self._inputs, self._targets, self._w))

    def shard_view(self, nodes: IntArray, device: str | None = None) -> Problem:
        return self.full.shard_view(nodes, device)

    def query(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        """Zeroth-order values from the shard's copies (the full problem's own ``query``
        when it overrides the default, which is :meth:`value`)."""
        if type(self.full).query is Problem.query:
            return self.value(X, nodes)
        return self.full.query(X, nodes)


# ---- data and factories -----------------------------------------------------------------

#: Data sources of :func:`mlp_regression` with their parameters and defaults.
REGRESSION_SOURCES: dict[str, dict[str, Any]] = {
    "teacher": {"n_samples": 1000, "d": 10, "hidden": 8, "noise": 0.1},
    "diabetes": {},
}


def teacher_regression(
    n_samples: int, d: int, hidden: int, noise: float, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Teacher-network regression data: ``a ~ N(0, I_d)`` and
    ``y = w₂ᵀ softplus(W₁a + b₁) + b₂ + noise·ε``, ``ε ~ N(0, 1)``, with ``W₁ ~ N(0, 1/d)``,
    ``b₁ ~ N(0, 1)``, ``w₂ ~ N(0, 1/hidden)``, ``b₂ = 0`` (a student of the same shape can
    fit it to the noise level)."""
    W1 = rng.standard_normal((hidden, d)) / np.sqrt(d)
    b1 = rng.standard_normal(hidden)
    w2 = rng.standard_normal(hidden) / np.sqrt(hidden)
    A = rng.standard_normal((n_samples, d))
    y = np.logaddexp(0.0, A @ W1.T + b1) @ w2 + noise * rng.standard_normal(n_samples)
    return A, y


def _regression_data(data: Mapping[str, Any] | None, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Features ``[N, d]`` and targets ``[N]`` of a :func:`mlp_regression` data spec."""
    spec = dict(data) if data is not None else {"source": "teacher"}
    source = spec.pop("source", None)
    if source not in REGRESSION_SOURCES:
        raise ProblemParamError("data.source", f"mlp_regression: data.source must be one of "
                                f"{', '.join(REGRESSION_SOURCES)}, got {source!r}")
    allowed = REGRESSION_SOURCES[source]
    for key in spec:
        if key not in allowed:
            raise ProblemParamError(f"data.{key}", f"mlp_regression: unknown key of data source {source!r}; allowed: "
                                    f"{', '.join(['source', *allowed])}")
    if source == "diabetes":
        try:
            return load_dataset({"source": "sklearn", "name": "diabetes", "standardize_target": True}, rng=rng)
        except ValueError as exc:  # pragma: no cover - a bundled set
            raise param_error("data", exc) from exc
    params = {**allowed, **spec}
    for key in ("n_samples", "d", "hidden"):
        v = params[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ProblemParamError(f"data.{key}", f"mlp_regression: data.{key} must be a positive integer, got {v!r}")
    noise = params["noise"]
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not (np.isfinite(noise) and noise >= 0):
        raise ProblemParamError("data.noise", f"mlp_regression: data.noise must be a finite number >= 0, got {noise!r}")
    return teacher_regression(int(params["n_samples"]), int(params["d"]), int(params["hidden"]), float(noise), rng)


def mlp(d_in: int, hidden: int, d_out: int = 1) -> "nn.Module":
    """The DIFF2 network: ``Linear(d_in, hidden) → softplus → Linear(hidden, d_out)``."""
    from torch import nn

    return nn.Sequential(nn.Linear(d_in, hidden), nn.Softplus(), nn.Linear(hidden, d_out))


@register_problem("mlp_regression")
def mlp_regression(
    n: int,
    data: Mapping[str, Any] | None = None,
    hidden: int = 32,
    partition: str | Mapping[str, Any] = "iid",
    device: str = "auto",
    dtype: str = "auto",
    seed: int = 0,
    rng: np.random.Generator | None = None,
) -> TorchModelProblem:
    """A one-hidden-layer network (:func:`mlp`, width ``hidden``) with the squared loss over
    regression data split across ``n`` nodes by ``partition``.

    ``data``: ``{source: teacher, n_samples: 1000, d: 10, hidden: 8, noise: 0.1}``
    (:func:`teacher_regression`; the default) or ``{source: diabetes}`` (scikit-learn's
    bundled set, 442 samples, d = 10, features and target standardized); ``partition``: a
    partition spec (:func:`fedopt.problems.partition.make_partition`); ``device``:
    ``auto | cpu | cuda | cuda:K``; ``dtype``: ``auto | float32 | float64`` (``auto``:
    float64 on the CPU, float32 on CUDA); ``seed`` / ``rng``: randomness, split into
    independent data, partition and weight-initialization streams.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ProblemParamError("n", f"mlp_regression: n must be a positive integer, got {n!r}")
    if isinstance(hidden, bool) or not isinstance(hidden, (int, np.integer)) or hidden < 1:
        raise ProblemParamError("hidden", f"mlp_regression: hidden must be a positive integer, got {hidden!r}")
    if data is not None and not isinstance(data, Mapping):
        raise ProblemParamError("data", f"mlp_regression: data must be a mapping with a source "
                                f"({', '.join(REGRESSION_SOURCES)}), got {data!r}")
    dev = resolve_device(device, "mlp_regression")  # before any data are made: a bad device fails fast
    resolve_dtype(dtype, dev, "mlp_regression")
    rng = np.random.default_rng(seed) if rng is None else rng
    data_rng, part_rng, init_rng = rng.spawn(3)
    features, labels = _regression_data(data, data_rng)
    part = partition_samples(labels, n, partition, part_rng, "mlp_regression")
    sizes = part.sizes
    m_max, d_in = int(sizes.max()), features.shape[1]
    flat = np.concatenate(part.indices)
    node = np.repeat(np.arange(n), sizes)
    pos = np.arange(len(flat)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    inputs = np.zeros((n, m_max, d_in))
    inputs[node, pos] = features[flat] * part.scales[node, None]
    targets = np.zeros((n, m_max, 1))
    targets[node, pos, 0] = labels[flat]
    init_seed = int(init_rng.integers(2**63))
    width = int(hidden)
    return TorchModelProblem(partial(mlp, d_in, width), inputs, targets, sizes, loss="mse",
                             device=device, dtype=dtype, init_seed=init_seed)


# ---- classification: cross-entropy with a held-out test split -------------------------------


class TorchClassificationProblem(TorchModelProblem):
    """A :class:`TorchModelProblem` with the softmax cross-entropy loss (targets: class
    ids) and a held-out test split: :meth:`test_metrics` reports the accuracy of one model
    on it (the ``test_accuracy`` column).

    Parameters as :class:`TorchModelProblem` (``targets [n, m_max, 1]`` hold class ids
    ``0..C-1``), plus ``test_inputs [N_test, *in]`` and ``test_labels [N_test]`` (the
    split may be empty: ``test_metrics`` is then empty and the column NaN).
    """

    _DEVICE_TENSORS = (*TorchModelProblem._DEVICE_TENSORS, "_test_inputs", "_test_labels")

    def __init__(
        self,
        module_factory: Callable[[], "nn.Module"],
        inputs: FloatArray,
        targets: FloatArray,
        m: IntArray,
        test_inputs: FloatArray,
        test_labels: IntArray,
        device: str = "auto",
        dtype: str = "auto",
        init_seed: int = 0,
    ) -> None:
        import torch

        super().__init__(module_factory, inputs, targets, m, loss="cross_entropy", device=device, dtype=dtype,
                         init_seed=init_seed)
        test_inputs = np.asarray(test_inputs, dtype=np.float64)
        test_labels = np.asarray(test_labels)
        name = type(self).__name__
        if test_inputs.shape[1:] != tuple(np.shape(inputs)[2:]) or test_labels.shape != test_inputs.shape[:1]:
            raise ValueError(f"{name}: test inputs must be [N_test, {', '.join(map(str, np.shape(inputs)[2:]))}] "
                             f"with labels [N_test]; got {test_inputs.shape} and {test_labels.shape}")
        if len(test_labels) and ((test_labels < 0).any() or (test_labels != np.round(test_labels)).any()):
            raise ValueError(f"{name}: test labels must be class ids 0..C-1")
        self.n_test = len(test_labels)
        self._test_inputs = torch.as_tensor(test_inputs, dtype=self.dtype, device=self.device)
        self._test_labels = torch.as_tensor(test_labels.astype(np.int64), device=self.device)

    def test_metrics(self, x: FloatArray) -> dict[str, float]:
        """``{"test_accuracy": share of test samples whose largest logit is the true class}``
        for the model ``x [d]`` (empty without a test split)."""
        import torch
        from torch.func import functional_call

        if not self.n_test:
            return {}
        self._place()
        flat = torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(self.d), dtype=self.dtype, device=self.device)
        with torch.no_grad():
            logits = functional_call(self.module, self.unflatten(flat), (self._test_inputs,))
            correct = (logits.argmax(dim=-1) == self._test_labels).sum()
        return {"test_accuracy": int(correct) / self.n_test}

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(test_samples=self.n_test)
        return out


def stratified_split(labels: IntArray, fraction: float, rng: np.random.Generator) -> tuple[IntArray, IntArray]:
    """``(train, test)`` sample ids, sorted: ``round(fraction · N_c)`` random samples of each
    class ``c`` go to the test split (class proportions kept), the rest to training."""
    labels = np.asarray(labels)
    test_mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):  # a loop over classes, not nodes or samples
        members = rng.permutation(np.flatnonzero(labels == c))
        test_mask[members[: int(round(fraction * len(members)))]] = True
    return np.flatnonzero(~test_mask), np.flatnonzero(test_mask)


def digits_split(test_fraction: float, rng: np.random.Generator) -> tuple[FloatArray, IntArray, FloatArray, IntArray]:
    """scikit-learn's bundled digits (1797 images 8×8, 10 classes; nothing downloaded) as
    ``(train features [N, 64], train labels, test features, test labels)``: a stratified
    test split (:func:`stratified_split`), features standardized with the training split's
    mean and standard deviation (constant pixels only centred)."""
    from fedopt.problems.data import sklearn_dataset

    features, labels = sklearn_dataset("digits", standardize_features=False)
    labels = labels.astype(np.int64)
    train, test = stratified_split(labels, test_fraction, rng)
    mean, std = features[train].mean(axis=0), features[train].std(axis=0)
    std[std == 0] = 1.0
    scaled = (features - mean) / std
    return scaled[train], labels[train], scaled[test], labels[test]


def node_blocks(features: FloatArray, labels: np.ndarray, part: Partition) -> tuple[FloatArray, FloatArray]:
    """Per-node padded blocks of a partition: ``inputs [n, m_max, *feature shape]`` (each
    node's features times its partition scale) and ``targets [n, m_max, 1]``; padding is 0."""
    sizes = part.sizes
    n, m_max = len(sizes), int(sizes.max())
    flat = np.concatenate(part.indices)
    node = np.repeat(np.arange(n), sizes)
    pos = np.arange(len(flat)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    inputs = np.zeros((n, m_max, *features.shape[1:]))
    inputs[node, pos] = features[flat] * part.scales[node].reshape((-1,) + (1,) * (features.ndim - 1))
    targets = np.zeros((n, m_max, 1))
    targets[node, pos, 0] = labels[flat]
    return inputs, targets


def mlp_classifier(d_in: int, hidden: int, classes: int) -> "nn.Module":
    """``Linear(d_in, hidden) → ReLU → Linear(hidden, classes)`` (logits)."""
    from torch import nn

    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def small_cnn(channels: int, classes: int, side: int = 8) -> "nn.Module":
    """``Conv2d(1, channels, 3×3, padding 1) → ReLU → MaxPool 2×2 → Linear(channels·(side/2)², classes)``
    on ``[1, side, side]`` images (logits)."""
    from torch import nn

    half = side // 2
    return nn.Sequential(nn.Conv2d(1, channels, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(channels * half * half, classes))


def _positive_int(owner: str, key: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ProblemParamError(key, f"{owner}: {key} must be a positive integer, got {v!r}")
    return int(v)


def _digits_problem(
    owner: str,
    arch: Callable[[], "nn.Module"],
    image: bool,
    n: int,
    partition: str | Mapping[str, Any],
    test_fraction: float,
    device: str,
    dtype: str,
    seed: int,
    rng: np.random.Generator | None,
) -> TorchClassificationProblem:
    """A classification problem on the digits (:func:`digits_split`) split over ``n`` nodes."""
    _positive_int(owner, "n", n)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
            or not (0 <= test_fraction < 1):
        raise ProblemParamError("test_fraction", f"{owner}: test_fraction must be a number in [0, 1), "
                                f"got {test_fraction!r}")
    resolve_dtype(dtype, resolve_device(device, owner), owner)  # before any data are made: bad values fail fast
    rng = np.random.default_rng(seed) if rng is None else rng
    data_rng, part_rng, init_rng = rng.spawn(3)
    x_train, y_train, x_test, y_test = digits_split(float(test_fraction), data_rng)
    if image:
        x_train, x_test = x_train.reshape(-1, 1, 8, 8), x_test.reshape(-1, 1, 8, 8)
    part = partition_samples(y_train, n, partition, part_rng, owner)
    inputs, targets = node_blocks(x_train, y_train, part)
    return TorchClassificationProblem(arch, inputs, targets, part.sizes, x_test, y_test, device=device, dtype=dtype,
                                      init_seed=int(init_rng.integers(2**63)))


#: Classes of the digits data set.
DIGIT_CLASSES = 10


@register_problem("mlp_classification")
def mlp_classification(
    n: int,
    hidden: int = 32,
    partition: str | Mapping[str, Any] = "iid",
    test_fraction: float = 0.2,
    device: str = "auto",
    dtype: str = "auto",
    seed: int = 0,
    rng: np.random.Generator | None = None,
) -> TorchClassificationProblem:
    """A one-hidden-layer ReLU network (:func:`mlp_classifier`, width ``hidden``) with the
    softmax cross-entropy on scikit-learn's bundled digits (8×8 images as 64 standardized
    features, 10 classes), the training split spread over ``n`` nodes by ``partition``.

    ``partition``: a partition spec (:func:`fedopt.problems.partition.make_partition`;
    label skew: ``{kind: label_sorted, shards_per_node: 2}`` or ``{kind: dirichlet,
    alpha: 0.3}``); ``test_fraction``: the share of each class held out for the
    ``test_accuracy`` column (stratified; 0: no test split); ``device``, ``dtype``: as
    :func:`mlp_regression`; ``seed`` / ``rng``: randomness, split into independent
    test-split, partition and weight-initialization streams. Nonconvex: ``L = mu = None``.
    """
    width = _positive_int("mlp_classification", "hidden", hidden)
    arch = partial(mlp_classifier, 64, width, DIGIT_CLASSES)
    return _digits_problem("mlp_classification", arch, False, n, partition, test_fraction, device, dtype, seed, rng)


@register_problem("cnn_classification")
def cnn_classification(
    n: int,
    channels: int = 8,
    partition: str | Mapping[str, Any] = "iid",
    test_fraction: float = 0.2,
    device: str = "auto",
    dtype: str = "auto",
    seed: int = 0,
    rng: np.random.Generator | None = None,
) -> TorchClassificationProblem:
    """A small CNN (:func:`small_cnn`: ``channels`` 3×3 filters, ReLU, 2×2 max-pooling, a
    linear layer) with the softmax cross-entropy on the digits as ``[1, 8, 8]`` images
    (standardized per pixel, 10 classes); every other parameter as
    :func:`mlp_classification`. Nonconvex: ``L = mu = None``.
    """
    ch = _positive_int("cnn_classification", "channels", channels)
    arch = partial(small_cnn, ch, DIGIT_CLASSES)
    return _digits_problem("cnn_classification", arch, True, n, partition, test_fraction, device, dtype, seed, rng)
