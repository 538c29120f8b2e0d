"""Partitions: exact cover, non-empty nodes, heterogeneity, spec validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedopt.problems.partition import (
    available_partitions,
    class_ids,
    dirichlet,
    feature_scales,
    iid,
    label_skew,
    label_sorted,
    make_partition,
)


def _assert_cover(indices: list[np.ndarray], N: int, n: int) -> None:
    assert len(indices) == n
    assert all(len(ix) >= 1 for ix in indices)
    assert all(ix.dtype == np.int64 for ix in indices)
    assert np.array_equal(np.sort(np.concatenate(indices)), np.arange(N))


@settings(max_examples=40, deadline=None)
@given(
    N=st.integers(1, 400),
    n=st.integers(1, 40),
    n_classes=st.integers(1, 12),
    alpha=st.floats(1e-3, 100.0),
    shards=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_kind_covers_each_sample_once(N: int, n: int, n_classes: int, alpha: float, shards: int, seed: int) -> None:
    if N < n * shards:
        return
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=N).astype(float)
    _assert_cover(iid(labels, n, rng), N, n)
    _assert_cover(label_sorted(labels, n, rng, shards_per_node=shards), N, n)
    _assert_cover(dirichlet(labels, n, rng, alpha=alpha), N, n)


def test_iid_sizes_balanced() -> None:
    parts = iid(np.zeros(103), 10, np.random.default_rng(0))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_label_sorted_is_contiguous_in_label() -> None:
    labels = np.random.default_rng(1).integers(0, 5, size=500).astype(float)
    parts = label_sorted(labels, 10, np.random.default_rng(2))
    for a, b in zip(parts[:-1], parts[1:]):
        assert labels[a].max() <= labels[b].min()
    # two shards per node: each node sees at most 2 label runs -> few classes
    parts2 = label_sorted(labels, 10, np.random.default_rng(2), shards_per_node=2)
    assert max(len(np.unique(labels[p])) for p in parts2) <= 4


def test_dirichlet_heterogeneity_decreases_with_alpha() -> None:
    labels = np.random.default_rng(0).integers(0, 10, size=5000).astype(float)
    rng = np.random.default_rng(3)
    skew_iid = label_skew(labels, iid(labels, 20, rng))
    skew_small = label_skew(labels, dirichlet(labels, 20, rng, alpha=0.1))
    skew_large = label_skew(labels, dirichlet(labels, 20, rng, alpha=100.0))
    assert skew_small > 0.5 > 0.1 > skew_iid
    assert skew_small > skew_large > skew_iid * 0.5
    assert skew_large < 0.1


def test_dirichlet_tiny_alpha_still_fills_every_node() -> None:
    labels = np.zeros(60)  # one class, 50 nodes: almost all mass on one node
    parts = dirichlet(labels, 50, np.random.default_rng(0), alpha=1e-3)
    _assert_cover(parts, 60, 50)


def test_regression_targets_are_binned() -> None:
    t = np.random.default_rng(0).normal(size=1000)
    cls = class_ids(t)
    assert cls.min() == 0 and cls.max() == 9
    _assert_cover(dirichlet(t, 8, np.random.default_rng(1), alpha=0.5), 1000, 8)


def test_partitions_are_pure_functions_of_rng() -> None:
    labels = np.random.default_rng(0).integers(0, 3, size=200).astype(float)
    spec = {"kind": "dirichlet", "alpha": 0.3, "feature_scale": 5.0}
    p1 = make_partition(labels, 7, spec, np.random.default_rng(11))
    p2 = make_partition(labels, 7, spec, np.random.default_rng(11))
    assert all(np.array_equal(a, b) for a, b in zip(p1.indices, p2.indices))
    assert np.array_equal(p1.scales, p2.scales)


def test_feature_scales_log_uniform() -> None:
    s = feature_scales(20000, 10.0, np.random.default_rng(0))
    assert s.min() >= 0.1 and s.max() <= 10.0
    logs = np.log(s)
    assert abs(logs.mean()) < 0.05 and abs(logs.std() - np.log(10) / np.sqrt(3)) < 0.05
    assert np.array_equal(feature_scales(5, 1.0, np.random.default_rng(0)), np.ones(5))
    with pytest.raises(ValueError, match="feature_scale"):
        feature_scales(5, 0.5, np.random.default_rng(0))


def test_make_partition_specs_and_errors() -> None:
    labels = np.arange(30) % 3
    rng = np.random.default_rng(0)
    assert set(available_partitions()) >= {"iid", "label_sorted", "dirichlet"}
    p = make_partition(labels, 3, "iid", rng)
    assert p.n == 3 and p.sizes.sum() == 30 and np.array_equal(p.scales, np.ones(3))
    assert make_partition(labels, 3, {"kind": "label_sorted", "shards_per_node": 2}, rng).n == 3
    with pytest.raises(ValueError, match="unknown kind 'pathological'.*dirichlet.*iid.*label_sorted"):
        make_partition(labels, 3, "pathological", rng)
    with pytest.raises(ValueError, match="unknown key 'beta'.*alpha"):
        make_partition(labels, 3, {"kind": "dirichlet", "beta": 0.5}, rng)
    with pytest.raises(ValueError, match="unknown key 'alpha'"):
        make_partition(labels, 3, {"kind": "iid", "alpha": 0.5}, rng)
    with pytest.raises(ValueError, match="missing key 'kind'"):
        make_partition(labels, 3, {"alpha": 0.5}, rng)
    with pytest.raises(ValueError, match="alpha must be positive"):
        make_partition(labels, 3, {"kind": "dirichlet", "alpha": 0.0}, rng)
    with pytest.raises(ValueError, match="4 nodes"):
        make_partition(np.zeros(3), 4, "iid", rng)
