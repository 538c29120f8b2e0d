"""Data sources for the empirical (finite-sum) problems.

Every source returns ``(features, labels)``: ``features`` a dense ``[N, d]``
float64 array and ``labels`` an ``[N]`` float64 array (class ids as integral
floats for classification sets, real targets for regression sets). Sources are
registered by name with :func:`register_source`; :func:`load_dataset` turns a
config mapping such as ``{"source": "sklearn", "name": "breast_cancer"}`` into
data, rejecting unknown keys with a message that names the key and the allowed
ones.

Sources
-------
``synthetic``
    :func:`synthetic_classification` (``task: classification``, the default) or
    :func:`synthetic_regression` (``task: regression``), plain numpy draws from
    an explicit :class:`numpy.random.Generator`.
``sklearn``
    :func:`sklearn_dataset`: the data sets *bundled* with scikit-learn
    (breast_cancer, digits, diabetes, wine); nothing is downloaded.
``libsvm``
    :func:`load_libsvm`: a file in LIBSVM / SVMlight format, e.g. the binary
    sets a9a or w8a of the LIBSVM collection (Chang & Lin 2011,
    https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy.special import expit

from fedopt.core.arrays import FloatArray
from fedopt.problems.base import ProblemParamError

Dataset = tuple[FloatArray, FloatArray]

_SOURCES: dict[str, Callable[..., Dataset]] = {}
_PATH_KEYS: dict[str, tuple[str, ...]] = {}


def register_source(
    name: str, paths: tuple[str, ...] = ()
) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Register a data source under ``name`` (the ``source`` key of a data spec);
    ``paths`` names its parameters that are file paths (an experiment config
    resolves them against the config file's folder)."""

    def deco(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        if name in _SOURCES:
            raise ValueError(f"data source {name!r} registered twice")
        _SOURCES[name] = fn
        _PATH_KEYS[name] = tuple(paths)
        return fn

    return deco


def available_sources() -> list[str]:
    return sorted(_SOURCES)


def source_path_keys(source: str) -> tuple[str, ...]:
    """The parameters of data source ``source`` that are file paths (none for an unknown source)."""
    return _PATH_KEYS.get(source, ())


# ---- helpers ----------------------------------------------------------------------


def standardize(features: FloatArray) -> FloatArray:
    """Zero mean, unit variance per column; constant columns are only centred."""
    features = np.asarray(features, dtype=np.float64)
    mean = features.mean(axis=0)
    std = features.std(axis=0)
    std[std == 0] = 1.0
    return (features - mean) / std


def _generator(seed: int, rng: np.random.Generator | None) -> np.random.Generator:
    return np.random.default_rng(seed) if rng is None else rng


def _check_positive(source: str, **values: int) -> None:
    for key, v in values.items():
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ProblemParamError(key, f"data source {source!r}: {key} must be a positive integer, got {v!r}")


# ---- synthetic --------------------------------------------------------------------


def synthetic_classification(
    n_samples: int = 1000,
    d: int = 10,
    seed: int = 0,
    rng: np.random.Generator | None = None,
    signal: float = 2.0,
) -> Dataset:
    """Binary labels from a logistic model (plain numpy).

    ``a_j ~ N(0, I_d)``, ``w_true ~ N(0, I_d) · signal/√d`` and
    ``y_j ~ Bernoulli(σ(a_jᵀ w_true))`` with ``σ`` the logistic function, so the
    labels are noisy (the data are almost surely not linearly separable when
    ``n_samples ≫ d``) and the Bayes-optimal classifier is ``w_true``.
    ``signal`` sets ``‖w_true‖ ≈ signal`` (larger: cleaner labels).

    Returns ``(features [n_samples, d], labels [n_samples] in {0, 1})``.
    """
    _check_positive("synthetic", n_samples=n_samples, d=d)
    g = _generator(seed, rng)
    w_true = g.normal(size=d) * (signal / np.sqrt(d))
    a = g.normal(size=(n_samples, d))
    y = (g.random(n_samples) < expit(a @ w_true)).astype(np.float64)
    return a, y


def synthetic_regression(
    n_samples: int = 1000,
    d: int = 10,
    seed: int = 0,
    rng: np.random.Generator | None = None,
    noise: float = 0.1,
) -> Dataset:
    """A noisy linear model (plain numpy).

    ``a_j ~ N(0, I_d)``, ``w_true ~ N(0, I_d)/√d``, ``y_j = a_jᵀ w_true + noise · ε_j``
    with ``ε_j ~ N(0, 1)``. Returns ``(features [n_samples, d], targets [n_samples])``.
    """
    _check_positive("synthetic", n_samples=n_samples, d=d)
    if noise < 0:
        raise ProblemParamError("noise", f"data source 'synthetic': noise must be >= 0, got {noise!r}")
    g = _generator(seed, rng)
    w_true = g.normal(size=d) / np.sqrt(d)
    a = g.normal(size=(n_samples, d))
    y = a @ w_true + noise * g.normal(size=n_samples)
    return a, y


_SYNTHETIC_TASKS: dict[str, Callable[..., Dataset]] = {
    "classification": synthetic_classification,
    "regression": synthetic_regression,
}


@register_source("synthetic")
def synthetic(
    task: str = "classification",
    n_samples: int = 1000,
    d: int = 10,
    seed: int = 0,
    rng: np.random.Generator | None = None,
    signal: float = 2.0,
    noise: float = 0.1,
) -> Dataset:
    """Synthetic data: ``task`` is ``classification`` (:func:`synthetic_classification`,
    uses ``signal``) or ``regression`` (:func:`synthetic_regression`, uses ``noise``)."""
    if task == "classification":
        return synthetic_classification(n_samples, d, seed, rng, signal=signal)
    if task == "regression":
        return synthetic_regression(n_samples, d, seed, rng, noise=noise)
    raise ProblemParamError(
        "task", f"data source 'synthetic': unknown task {task!r}; choose one of: {', '.join(_SYNTHETIC_TASKS)}"
    )


# ---- scikit-learn bundled sets --------------------------------------------------

#: name -> (loader name in sklearn.datasets, is_classification)
_SKLEARN_SETS: dict[str, tuple[str, bool]] = {
    "breast_cancer": ("load_breast_cancer", True),
    "digits": ("load_digits", True),
    "diabetes": ("load_diabetes", False),
    "wine": ("load_wine", True),
}

_BINARY_MODES = ("one_vs_rest",)


@register_source("sklearn")
def sklearn_dataset(
    name: str,
    binary: str | None = None,
    positive_class: int = 0,
    standardize_features: bool = True,
    standardize_target: bool = False,
) -> Dataset:
    """One of scikit-learn's bundled data sets (no download).

    ============== ========= ======= ==================================
    name           samples   d       labels
    ============== ========= ======= ==================================
    breast_cancer  569       30      {0, 1} (0 = malignant)
    digits         1797      64      10 classes 0..9
    diabetes       442       10      real target (regression)
    wine           178       13      3 classes 0..2
    ============== ========= ======= ==================================

    Features are standardized (zero mean, unit variance per column; constant
    columns, e.g. the blank border pixels of ``digits``, are only centred)
    unless ``standardize_features=False``. ``standardize_target`` does the same
    for the regression target of ``diabetes``.

    ``binary="one_vs_rest"`` turns a multi-class set into a binary one: label 1
    for ``positive_class`` (default class 0), label 0 for every other class.
    Binary problems such as ``logistic`` need this for ``digits`` and ``wine``.
    """
    try:
        loader_name, is_classification = _SKLEARN_SETS[name]
    except KeyError:
        raise ProblemParamError(
            "name", f"data source 'sklearn': unknown name {name!r}; choose one of: {', '.join(_SKLEARN_SETS)}"
        ) from None
    if binary is not None and binary not in _BINARY_MODES:
        raise ProblemParamError(
            "binary",
            f"data source 'sklearn': unknown binary {binary!r}; choose one of: {', '.join(_BINARY_MODES)} (or omit it)",
        )
    try:
        import sklearn.datasets as skd
    except ImportError as e:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError("data source 'sklearn' needs scikit-learn: pip install scikit-learn") from e
    bunch = getattr(skd, loader_name)()
    features = np.asarray(bunch.data, dtype=np.float64)
    labels = np.asarray(bunch.target, dtype=np.float64)
    if standardize_features:
        features = standardize(features)
    if binary is not None:
        if not is_classification:
            raise ProblemParamError(
                "binary", f"data source 'sklearn': binary applies to classification sets; {name!r} is a regression set"
            )
        classes = np.unique(labels)
        if positive_class not in classes:
            raise ProblemParamError(
                "positive_class",
                f"data source 'sklearn': positive_class {positive_class!r} is not a class of {name!r}; "
                f"choose one of: {', '.join(str(int(c)) for c in classes)}"
            )
        labels = (labels == positive_class).astype(np.float64)
    if standardize_target:
        if is_classification:
            raise ProblemParamError(
                "standardize_target",
                f"data source 'sklearn': standardize_target applies to regression sets; {name!r} is not one",
            )
        labels = (labels - labels.mean()) / labels.std()
    return features, labels


# ---- LIBSVM files ---------------------------------------------------------------


def _first_bad_line(path: str) -> tuple[int, str, str] | None:
    """``(line number, line, reason)`` of the first line that is not LIBSVM format."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            tokens = line.split()
            try:
                for lab in tokens[0].split(","):
                    float(lab)
            except ValueError:
                return lineno, raw.rstrip("\n"), f"label {tokens[0]!r} is not a number"
            prev = -1
            for tok in tokens[1:]:
                key, sep, val = tok.partition(":")
                if not sep:
                    return lineno, raw.rstrip("\n"), f"token {tok!r} is not index:value"
                if key == "qid":
                    continue
                try:
                    idx = int(key)
                    float(val)
                except ValueError:
                    return lineno, raw.rstrip("\n"), f"token {tok!r} is not index:value"
                if idx < 0:
                    return lineno, raw.rstrip("\n"), f"negative feature index in {tok!r}"
                if idx <= prev:
                    return lineno, raw.rstrip("\n"), "feature indices are not strictly increasing"
                prev = idx
    return None


@register_source("libsvm", paths=("path",))
def load_libsvm(
    path: str | os.PathLike[str],
    n_features: int | None = None,
    standardize_features: bool = False,
) -> Dataset:
    """A data file in LIBSVM / SVMlight format (``label idx:value idx:value ...``).

    Parsed with :func:`sklearn.datasets.load_svmlight_file` and densified (the
    simulator's problems use dense ``[n, m, d]`` arrays). ``n_features`` fixes
    the dimension (useful when a file does not mention the last feature, e.g. a
    test split). Labels of a set with exactly two distinct values are mapped to
    ``{0, 1}`` (smaller → 0, larger → 1; the LIBSVM binary sets a9a and w8a use
    ``±1``); sets with more values keep their labels. On a malformed file the
    error names the path, the line number and what is wrong with the line.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data source 'libsvm': no such file: {path}")
    from sklearn.datasets import load_svmlight_file

    try:
        sparse, labels = load_svmlight_file(path, n_features=n_features, dtype=np.float64)
    except Exception as e:
        bad = _first_bad_line(path)
        if bad is not None:
            lineno, line, reason = bad
            raise ValueError(f"data source 'libsvm': {path}, line {lineno}: {reason}: {line!r}") from e
        raise ValueError(f"data source 'libsvm': cannot read {path}: {e}") from e
    features = np.asarray(sparse.toarray(), dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if features.shape[0] == 0:
        raise ValueError(f"data source 'libsvm': {path} holds no samples")
    values = np.unique(labels)
    if len(values) == 2:
        labels = (labels == values[1]).astype(np.float64)
    if standardize_features:
        features = standardize(features)
    return features, labels


# ---- dispatcher -----------------------------------------------------------------


def load_dataset(spec: Mapping[str, Any], rng: np.random.Generator | None = None) -> Dataset:
    """Data from a spec such as ``{"source": "synthetic", "n_samples": 1000, "d": 10}``.

    ``spec["source"]`` names a registered source; every other key is a keyword
    argument of that source (an unknown key is a :class:`ValueError` naming it
    and the allowed keys). Random sources use ``spec["seed"]`` when given, else
    ``rng`` (the caller's data stream), else seed 0.
    """
    if not isinstance(spec, Mapping):
        raise ProblemParamError("", f"data: expected a mapping with a 'source' key, got {spec!r}")
    if "source" not in spec:
        raise ProblemParamError(
            "source", f"data: missing key 'source'; choose one of: {', '.join(available_sources())}"
        )
    source = spec["source"]
    fn = _SOURCES.get(source)
    if fn is None:
        raise ProblemParamError(
            "source", f"data: unknown source {source!r}; choose one of: {', '.join(available_sources())}"
        )
    params = inspect.signature(fn).parameters
    allowed = [p for p in params if p != "rng"]
    kwargs = {k: v for k, v in spec.items() if k != "source"}
    for key in kwargs:
        if key not in allowed:
            raise ProblemParamError(
                key, f"data (source {source!r}): unknown key {key!r}; allowed keys: {', '.join(allowed)}"
            )
    required = [
        p.name for p in params.values() if p.default is inspect.Parameter.empty and p.name not in kwargs and p.name != "rng"
    ]
    if required:
        raise ProblemParamError(required[0], f"data (source {source!r}): missing key {required[0]!r}")
    if "rng" in params and "seed" not in kwargs and rng is not None:
        kwargs["rng"] = rng
    return fn(**kwargs)
