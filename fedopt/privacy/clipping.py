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

The arithmetic (:func:`clip_per_sample`, :func:`clipped_node_sums`) lives in
:mod:`fedopt.core.clip`, where the problems' fused oracle
:meth:`~fedopt.problems.base.Problem.clipped_grad_sums` reaches it too; it is re-exported here.
"""

from __future__ import annotations

import numpy as np

from fedopt.core.arrays import FloatArray
from fedopt.core.clip import clip_per_sample, clipped_node_sums

__all__ = ["all_samples", "clip_per_sample", "clipped_node_means", "clipped_node_sums"]


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
