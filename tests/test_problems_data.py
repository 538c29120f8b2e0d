"""Data sources: synthetic, scikit-learn bundled sets, LIBSVM files, the spec dispatcher."""

from __future__ import annotations

import numpy as np
import pytest

from fedopt.problems.data import (
    available_sources,
    load_dataset,
    load_libsvm,
    sklearn_dataset,
    synthetic_classification,
    synthetic_regression,
)


def test_synthetic_shapes_and_determinism() -> None:
    a, y = synthetic_classification(300, 7, seed=3)
    assert a.shape == (300, 7) and y.shape == (300,)
    assert a.dtype == np.float64 and y.dtype == np.float64
    assert set(np.unique(y)) == {0.0, 1.0}
    a2, y2 = synthetic_classification(300, 7, seed=3)
    assert np.array_equal(a, a2) and np.array_equal(y, y2)
    a3, _ = synthetic_classification(300, 7, rng=np.random.default_rng(3))
    assert np.array_equal(a, a3)
    r, t = synthetic_regression(50, 4, seed=1, noise=0.0)
    assert r.shape == (50, 4) and t.shape == (50,)
    # noiseless regression targets are exactly linear in the features
    w = np.linalg.lstsq(r, t, rcond=None)[0]
    assert np.allclose(r @ w, t)


@pytest.mark.parametrize(
    ("name", "shape", "n_classes"),
    [("breast_cancer", (569, 30), 2), ("digits", (1797, 64), 10), ("diabetes", (442, 10), None), ("wine", (178, 13), 3)],
)
def test_sklearn_bundled_sets(name: str, shape: tuple[int, int], n_classes: int | None) -> None:
    a, y = sklearn_dataset(name)
    assert a.shape == shape and y.shape == shape[:1]
    assert np.allclose(a.mean(axis=0), 0.0, atol=1e-10)
    std = a.std(axis=0)
    assert np.all(np.isclose(std, 1.0) | np.isclose(std, 0.0))
    if n_classes is not None:
        assert len(np.unique(y)) == n_classes


def test_sklearn_one_vs_rest() -> None:
    _, y = sklearn_dataset("digits")
    _, yb = sklearn_dataset("digits", binary="one_vs_rest")
    assert np.array_equal(yb, (y == 0).astype(float))
    _, y3 = sklearn_dataset("wine", binary="one_vs_rest", positive_class=2)
    assert set(np.unique(y3)) == {0.0, 1.0} and y3.sum() == (sklearn_dataset("wine")[1] == 2).sum()


def test_sklearn_errors() -> None:
    with pytest.raises(ValueError, match="unknown name 'mnist'.*breast_cancer"):
        sklearn_dataset("mnist")
    with pytest.raises(ValueError, match="unknown binary 'ovo'.*one_vs_rest"):
        sklearn_dataset("wine", binary="ovo")
    with pytest.raises(ValueError, match="positive_class 7"):
        sklearn_dataset("wine", binary="one_vs_rest", positive_class=7)
    with pytest.raises(ValueError, match="regression set"):
        sklearn_dataset("diabetes", binary="one_vs_rest")


def test_libsvm_loader(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "tiny.svm"
    f.write_text("+1 1:0.5 3:2\n-1 2:1.5\n# a comment line\n+1 1:1 2:-1 3:0.25  # trailing comment\n")
    a, y = load_libsvm(f)
    assert a.shape == (3, 3)
    assert np.array_equal(a, [[0.5, 0, 2], [0, 1.5, 0], [1, -1, 0.25]])
    assert np.array_equal(y, [1.0, 0.0, 1.0])
    a5, _ = load_libsvm(f, n_features=5)
    assert a5.shape == (3, 5)
    spec_a, spec_y = load_dataset({"source": "libsvm", "path": str(f)})
    assert np.array_equal(spec_a, a) and np.array_equal(spec_y, y)


def test_libsvm_multiclass_labels_kept(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "multi.svm"
    f.write_text("1 1:1\n2 1:2\n3 2:1\n")
    _, y = load_libsvm(f)
    assert np.array_equal(y, [1.0, 2.0, 3.0])


def test_libsvm_malformed_line_names_path_and_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "bad.svm"
    f.write_text("+1 1:0.5 3:2\n-1 2:1.5\n+1 1:1 two:3\n")
    with pytest.raises(ValueError, match=r"bad\.svm, line 3: token 'two:3'"):
        load_libsvm(f)
    g = tmp_path / "bad_label.svm"
    g.write_text("+1 1:0.5\nyes 2:1\n")
    with pytest.raises(ValueError, match=r"bad_label\.svm, line 2: label 'yes'"):
        load_libsvm(g)
    with pytest.raises(FileNotFoundError, match="missing.svm"):
        load_libsvm(tmp_path / "missing.svm")


def test_load_dataset_dispatch_and_errors() -> None:
    assert {"synthetic", "sklearn", "libsvm"} <= set(available_sources())
    a, y = load_dataset({"source": "synthetic", "n_samples": 100, "d": 10})
    assert a.shape == (100, 10)
    a_r, _ = load_dataset({"source": "synthetic", "task": "regression", "n_samples": 20, "d": 3, "seed": 5})
    assert a_r.shape == (20, 3)
    # an explicit seed wins over the caller's stream; without one the stream is used
    s1 = load_dataset({"source": "synthetic", "seed": 4}, rng=np.random.default_rng(0))[0]
    s2 = load_dataset({"source": "synthetic", "seed": 4}, rng=np.random.default_rng(1))[0]
    r1 = load_dataset({"source": "synthetic"}, rng=np.random.default_rng(0))[0]
    r2 = load_dataset({"source": "synthetic"}, rng=np.random.default_rng(1))[0]
    assert np.array_equal(s1, s2) and not np.array_equal(r1, r2)
    b, _ = load_dataset({"source": "sklearn", "name": "breast_cancer"})
    assert b.shape == (569, 30)
    with pytest.raises(ValueError, match="unknown source 'csv'.*libsvm.*sklearn.*synthetic"):
        load_dataset({"source": "csv"})
    with pytest.raises(ValueError, match="missing key 'source'"):
        load_dataset({"name": "wine"})
    with pytest.raises(ValueError, match="unknown key 'n_sample'.*n_samples"):
        load_dataset({"source": "synthetic", "n_sample": 10})
    with pytest.raises(ValueError, match="unknown key 'rng'"):
        load_dataset({"source": "synthetic", "rng": 1})
    with pytest.raises(ValueError, match="missing key 'name'"):
        load_dataset({"source": "sklearn"})
    with pytest.raises(ValueError, match="unknown task 'ranking'"):
        load_dataset({"source": "synthetic", "task": "ranking"})
