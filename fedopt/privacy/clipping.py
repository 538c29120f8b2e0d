"""Per-sample clipping, vectorized over nodes and samples.

``clip(g, c) = g · min(1, c / ‖g‖)`` acts on each sample's gradient flattened over all
parameters (the problems' iterates are already flat ``[d]`` vectors), for a block
``G [k, b, d]`` of ``k`` nodes × ``b`` samples at once; the threshold is one number or one
per node (``[k]``: DIFF2's difference threshold ``C₂‖x_r − x_{r−1}‖`` is public and the
same at every node, DP-FedAvg's per-client thresholds need not be).

A node's mean is its clipped **sum divided by its sample count** ``n_p``
(:func:`clipped_node_means`), never a mean of batch means: with batches of unequal size a
mean of means weighs the samples of a small last batch more, and the sensitivity the
noise was calibrated for no longer holds.
"""

from __future__ import annotations

import numpy as np

from fedopt.core.arrays import FloatArray


def _thresholds(c: float | FloatArray, k: int) -> FloatArray:
    """``c`` as ``[k, 1]`` thresholds (checked non-negative; ``inf`` means no clipping)."""
    t = np.broadcast_to(np.asarray(c, dtype=np.float64), (k,))
    if np.isnan(t).any() or (t < 0).any():
        raise ValueError(f"clipping threshold must be >= 0 (inf: no clipping), got {c!r}")
    return t[:, None]


def clip_per_sample(G: FloatArray, c: float | FloatArray) -> FloatArray:
    """Every sample of ``G [k, b, d]`` clipped to L2 norm ``c`` (a number or ``[k]``, one per
    node): ``g · min(1, c / ‖g‖)``. A zero gradient stays zero; ``c = 0`` zeroes every sample;
    ``c = inf`` returns the samples unchanged (bit for bit)."""
    G = np.asarray(G, dtype=np.float64)
    if G.ndim != 3:
        raise ValueError(f"per-sample gradients must be [nodes, samples, d], got shape {G.shape}")
    t = _thresholds(c, G.shape[0])
    if np.isinf(t).all():
        return G
    norms = np.sqrt(np.einsum("kbd,kbd->kb", G, G))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(norms > t, t / np.where(norms > 0, norms, 1.0), 1.0)
    return G * scale[:, :, None]


def clipped_node_sums(G: FloatArray, c: float | FloatArray, mask: FloatArray | None = None) -> FloatArray:
    """``Σ_i clip(g_{p,i}, c)`` of each node ``[k, d]``; ``mask [k, b]`` (0/1) keeps only the
    samples a node drew (Poisson subsampling pads its draws to a common ``b``)."""
    C = clip_per_sample(G, c)
    if mask is None:
        return C.sum(axis=1)
    return np.einsum("kbd,kb->kd", C, np.asarray(mask, dtype=np.float64))


def clipped_node_means(G: FloatArray, c: float | FloatArray, n_p: FloatArray,
                       mask: FloatArray | None = None) -> FloatArray:
    """Each node's clipped mean ``(1/n_p) Σ_i clip(g_{p,i}, c)`` over all its ``n_p`` samples
    (rows of ``G [k, b, d]``; ``mask [k, b]`` marks the valid rows when nodes of unequal
    sizes are padded to a common ``b``). Sum / n_p: replacing one sample moves a node's
    mean by at most ``2c / n_p``."""
    n_p = np.asarray(n_p, dtype=np.float64)
    return clipped_node_sums(G, c, mask) / n_p[:, None]


def all_samples(n_p: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Every sample of nodes with ``n_p [k]`` samples, padded to ``b = max n_p``:
    ``(idx [k, b], mask [k, b])`` with ``idx[p, i] = min(i, n_p − 1)`` and ``mask[p, i] = 1``
    for ``i < n_p`` (0 on padding)."""
    n_p = np.asarray(n_p, dtype=np.int64)
    b = int(n_p.max()) if n_p.size else 0
    ar = np.arange(b)[None, :]
    return np.minimum(ar, n_p[:, None] - 1), (ar < n_p[:, None]).astype(np.float64)
