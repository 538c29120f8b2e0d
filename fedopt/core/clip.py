"""Per-sample clipping arithmetic, vectorized over nodes and samples.

``clip(g, c) = g · min(1, c / ‖g‖)`` acts on each sample's gradient flattened over all
parameters, for a block ``G [k, b, d]`` of ``k`` nodes × ``b`` samples at once; the
threshold is one number or one per node (``[k]``). It lives in the core because two layers
use it: the problems' default :meth:`~fedopt.problems.base.Problem.clipped_grad_sums` and
:mod:`fedopt.privacy.clipping` (which re-exports it with the privacy-facing helpers).
"""

from __future__ import annotations

import numpy as np

from fedopt.core.arrays import FloatArray


def clip_thresholds(c: float | FloatArray, k: int) -> FloatArray:
    """``c`` as ``[k]`` thresholds (a fresh array), checked non-negative (``inf`` means no
    clipping); one number is the same threshold at every node."""
    try:
        t = np.array(np.broadcast_to(np.asarray(c, dtype=np.float64), (k,)))
    except ValueError:
        raise ValueError(f"clipping threshold must be one number or one per node ([{k}]), got {c!r}") from None
    if np.isnan(t).any() or (t < 0).any():
        raise ValueError(f"clipping threshold must be >= 0 (inf: no clipping), got {c!r}")
    return t


def clip_per_sample(G: FloatArray, c: float | FloatArray) -> FloatArray:
    """Every sample of ``G [k, b, d]`` clipped to L2 norm ``c`` (a number or ``[k]``, one per
    node): ``g · min(1, c / ‖g‖)``. A zero gradient stays zero; ``c = 0`` zeroes every sample;
    ``c = inf`` returns the samples unchanged (bit for bit)."""
    G = np.asarray(G, dtype=np.float64)
    if G.ndim != 3:
        raise ValueError(f"per-sample gradients must be [nodes, samples, d], got shape {G.shape}")
    t = clip_thresholds(c, G.shape[0])[:, None]
    if np.isinf(t).all():
        return G
    norms = np.sqrt(np.einsum("kbd,kbd->kb", G, G))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(norms > t, t / np.where(norms > 0, norms, 1.0), 1.0)
    return G * scale[:, :, None]


def clipped_node_sums(G: FloatArray, c: float | FloatArray, mask: FloatArray | None = None) -> FloatArray:
    """``Σ_i clip(g_{p,i}, c)`` of each node ``[k, d]``; ``mask [k, b]`` (0/1) keeps only the
    samples a node uses (padding of nodes with fewer samples, Poisson subsampling's draws)."""
    C = clip_per_sample(G, c)
    if mask is None:
        return C.sum(axis=1)
    return np.einsum("kbd,kb->kd", C, np.asarray(mask, dtype=np.float64))
