"""Partitions of a data set across ``n`` nodes, the usual heterogeneity knobs.

Every partition kind is a pure function ``kind(labels, n, rng, **params)`` of an
explicit :class:`numpy.random.Generator` that returns ``n`` index arrays
covering ``range(len(labels))`` exactly once, each non-empty. Kinds are
registered by name with :func:`register_partition`; :func:`make_partition`
turns a config value (``"iid"`` or ``{"kind": "dirichlet", "alpha": 0.5,
"feature_scale": 10}``) into a :class:`Partition`.

Kinds
-----
``iid``
    A uniformly random permutation cut into ``n`` near-equal parts.
``label_sorted``
    Samples sorted by label and cut into contiguous shards; with
    ``shards_per_node = s > 1``, ``n·s`` shards are dealt out at random,
    ``s`` per node (the "pathological non-IID" split of McMahan et al. 2017,
    *Communication-efficient learning of deep networks from decentralized
    data*, AISTATS, §3, which uses ``s = 2``).
``dirichlet``
    For each class ``c`` node proportions ``p_c ~ Dir(α·1_n)`` and class ``c``'s
    samples dealt out with multinomial counts ``Mult(N_c, p_c)`` (Yurochkin et
    al. 2019, *Bayesian nonparametric federated learning of neural networks*,
    ICML; Hsu, Qi & Brown 2019, *Measuring the effects of non-identical data
    distribution for federated visual classification*). Small ``α`` gives each
    node few classes; ``α → ∞`` approaches iid label proportions.

Any kind combines with ``feature_scale: s`` (``s ≥ 1``): node ``i``'s features
are multiplied by ``exp(u_i)``, ``u_i ~ U(−log s, log s)``, i.e. a factor drawn
log-uniformly in ``[1/s, s]`` — heterogeneous local curvature on top of label
skew.

Labels that are not class ids (regression targets: non-integral values or
more than :data:`MAX_CLASSES` distinct values) are grouped into
:data:`N_TARGET_BINS` quantile bins to form ``dirichlet``'s classes;
``label_sorted`` sorts by the raw value.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedopt.core.arrays import FloatArray, IntArray
from fedopt.problems.base import ProblemParamError, param_error

#: Labels with more distinct values than this are treated as regression targets.
MAX_CLASSES = 100
#: Number of quantile bins regression targets are grouped into (``dirichlet``).
N_TARGET_BINS = 10

PartitionFn = Callable[..., list[IntArray]]
_KINDS: dict[str, PartitionFn] = {}


def register_partition(name: str) -> Callable[[PartitionFn], PartitionFn]:
    """Register a partition kind under ``name`` (the ``kind`` key of a partition spec)."""

    def deco(fn: PartitionFn) -> PartitionFn:
        if name in _KINDS:
            raise ValueError(f"partition {name!r} registered twice")
        _KINDS[name] = fn
        return fn

    return deco


def available_partitions() -> list[str]:
    return sorted(_KINDS)


def _check_sizes(N: int, n: int, kind: str) -> None:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"partition {kind!r}: n must be a positive integer, got {n!r}")
    if N < n:
        raise ValueError(f"partition {kind!r}: cannot give each of {n} nodes a sample from only {N} samples")


def class_ids(labels: np.ndarray) -> IntArray:
    """Integer class ids ``0..C-1`` of ``labels``; regression targets (non-integral
    or more than :data:`MAX_CLASSES` values) become :data:`N_TARGET_BINS` quantile bins."""
    labels = np.asarray(labels)
    values, inverse = np.unique(labels, return_inverse=True)
    integral = np.all(np.isfinite(values)) and np.all(values == np.round(values))
    if integral and len(values) <= MAX_CLASSES:
        return inverse.astype(np.int64)
    edges = np.quantile(labels, np.linspace(0, 1, N_TARGET_BINS + 1)[1:-1])
    return np.searchsorted(edges, labels, side="right").astype(np.int64)


def _split_by_owner(owner: IntArray, n: int) -> list[IntArray]:
    """Index arrays ``{j : owner[j] == i}`` for each ``i``, sorted."""
    order = np.argsort(owner, kind="stable")
    counts = np.bincount(owner, minlength=n)
    return [a.astype(np.int64) for a in np.split(order, np.cumsum(counts)[:-1])]


@register_partition("iid")
def iid(labels: np.ndarray, n: int, rng: np.random.Generator) -> list[IntArray]:
    """A random permutation cut into ``n`` parts whose sizes differ by at most one."""
    N = len(labels)
    _check_sizes(N, n, "iid")
    return [np.sort(p).astype(np.int64) for p in np.array_split(rng.permutation(N), n)]


@register_partition("label_sorted")
def label_sorted(labels: np.ndarray, n: int, rng: np.random.Generator, shards_per_node: int = 1) -> list[IntArray]:
    """Sort by label (ties in random order), cut into ``n · shards_per_node``
    contiguous near-equal shards and deal ``shards_per_node`` shards to each node
    (at random when ``shards_per_node > 1``; in label order when it is 1)."""
    N = len(labels)
    _check_sizes(N, n, "label_sorted")
    if not isinstance(shards_per_node, (int, np.integer)) or shards_per_node < 1:
        raise ProblemParamError(
            "shards_per_node",
            f"partition 'label_sorted': shards_per_node must be a positive integer, got {shards_per_node!r}",
        )
    n_shards = n * shards_per_node
    if N < n_shards:
        raise ProblemParamError(
            "shards_per_node", f"partition 'label_sorted': {N} samples cannot fill {n_shards} shards"
        )
    perm = rng.permutation(N)
    order = perm[np.argsort(np.asarray(labels)[perm], kind="stable")]
    shards = np.array_split(order, n_shards)
    if shards_per_node == 1:
        return [np.sort(s).astype(np.int64) for s in shards]
    deal = rng.permutation(n_shards).reshape(n, shards_per_node)
    return [np.sort(np.concatenate([shards[j] for j in row])).astype(np.int64) for row in deal]


@register_partition("dirichlet")
def dirichlet(labels: np.ndarray, n: int, rng: np.random.Generator, alpha: float = 0.5) -> list[IntArray]:
    """Per-class Dirichlet(``alpha``) node proportions, multinomial counts.

    For each class ``c`` (see :func:`class_ids`) draw ``p_c ~ Dir(α·1_n)`` and
    give node ``i`` ``Mult(N_c, p_c)_i`` random samples of class ``c``.

    Every node gets at least one sample: afterwards, each empty node in turn
    takes one random sample from the node that currently holds the most. This
    moves at most ``n − 1`` samples (the label skew is otherwise untouched),
    always terminates (unlike re-drawing until no node is empty, which for small
    ``α`` and large ``n`` may take very long) and stays a pure function of ``rng``.
    """
    N = len(labels)
    _check_sizes(N, n, "dirichlet")
    if not (np.isfinite(alpha) and alpha > 0):
        raise ProblemParamError("alpha", f"partition 'dirichlet': alpha must be positive, got {alpha!r}")
    cls = class_ids(labels)
    n_classes = int(cls.max()) + 1
    owner = np.empty(N, dtype=np.int64)
    by_class = np.argsort(cls, kind="stable")
    class_counts = np.bincount(cls, minlength=n_classes)
    starts = np.concatenate([[0], np.cumsum(class_counts)])
    props = rng.dirichlet(np.full(n, float(alpha)), size=n_classes)  # [C, n]
    for c in range(n_classes):  # a loop over classes, not nodes
        members = rng.permutation(by_class[starts[c] : starts[c + 1]])
        counts = rng.multinomial(len(members), props[c] / props[c].sum())
        owner[members] = np.repeat(np.arange(n), counts)
    sizes = np.bincount(owner, minlength=n)
    for empty in np.flatnonzero(sizes == 0):
        donor = int(np.argmax(sizes))
        candidates = np.flatnonzero(owner == donor)
        owner[candidates[rng.integers(len(candidates))]] = empty
        sizes[donor] -= 1
        sizes[empty] += 1
    return _split_by_owner(owner, n)


def feature_scales(n: int, s: float, rng: np.random.Generator) -> FloatArray:
    """Per-node feature scale factors drawn log-uniformly in ``[1/s, s]`` (``s ≥ 1``)."""
    if not (np.isfinite(s) and s >= 1):
        raise ProblemParamError("feature_scale", f"partition: feature_scale must be a number >= 1, got {s!r}")
    if s == 1:
        return np.ones(n)
    return np.exp(rng.uniform(-np.log(s), np.log(s), size=n))


@dataclass(frozen=True)
class Partition:
    """``indices[i]``: the sample ids of node ``i``; ``scales[i]``: its feature factor."""

    indices: list[IntArray]
    scales: FloatArray

    @property
    def n(self) -> int:
        return len(self.indices)

    @property
    def sizes(self) -> IntArray:
        return np.array([len(ix) for ix in self.indices], dtype=np.int64)


def make_partition(
    labels: np.ndarray, n: int, spec: str | Mapping[str, Any], rng: np.random.Generator
) -> Partition:
    """A :class:`Partition` of ``len(labels)`` samples over ``n`` nodes from a spec.

    ``spec`` is a kind name (``"iid"``) or a mapping with key ``kind`` plus that
    kind's parameters and optionally ``feature_scale``. The index arrays are drawn
    first, then the scales, both from ``rng``. Unknown kinds or keys raise a
    :class:`ValueError` naming them and the allowed values.
    """
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, Mapping):
        raise ProblemParamError("", f"partition: expected a kind name or a mapping with key 'kind', got {spec!r}")
    if "kind" not in spec:
        raise ProblemParamError(
            "kind", f"partition: missing key 'kind'; choose one of: {', '.join(available_partitions())}"
        )
    kind = spec["kind"]
    fn = _KINDS.get(kind)
    if fn is None:
        raise ProblemParamError(
            "kind", f"partition: unknown kind {kind!r}; choose one of: {', '.join(available_partitions())}"
        )
    params = [p for p in inspect.signature(fn).parameters if p not in ("labels", "n", "rng")]
    allowed = ["kind", *params, "feature_scale"]
    for key in spec:
        if key not in allowed:
            raise ProblemParamError(
                key, f"partition (kind {kind!r}): unknown key {key!r}; allowed keys: {', '.join(allowed)}"
            )
    kwargs = {k: spec[k] for k in params if k in spec}
    indices = fn(np.asarray(labels), n, rng, **kwargs)
    scales = feature_scales(n, float(spec.get("feature_scale", 1.0)), rng)
    return Partition(indices=indices, scales=scales)


def label_skew(labels: np.ndarray, indices: list[IntArray]) -> float:
    """Mean total-variation distance between each node's class histogram and the
    global one (0 for identical proportions, → 1 when nodes hold disjoint classes)."""
    cls = class_ids(labels)
    C = int(cls.max()) + 1
    glob = np.bincount(cls, minlength=C) / len(cls)
    n = len(indices)
    owner = np.empty(len(cls), dtype=np.int64)
    owner[np.concatenate(indices)] = np.repeat(np.arange(n), [len(ix) for ix in indices])
    hist = np.zeros((n, C))
    np.add.at(hist, (owner, cls), 1.0)
    hist /= hist.sum(axis=1, keepdims=True)
    return float(0.5 * np.abs(hist - glob).sum(axis=1).mean())


def partition_samples(labels: np.ndarray, n: int, spec: Any, rng: np.random.Generator, owner: str) -> Partition:
    """``make_partition`` for a problem factory: fewer samples than nodes is an error keyed ``n``,
    a bad partition spec one keyed ``partition`` (``owner`` names the problem in the message)."""
    if len(labels) < n:
        raise ProblemParamError("n", f"{owner}: {n} nodes but the data hold only {len(labels)} samples")
    try:
        return make_partition(labels, n, spec, rng)
    except ValueError as exc:
        raise param_error("partition", exc) from exc
