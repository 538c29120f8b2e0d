"""The :class:`Problem` interface: per-node objectives with oracles vectorized over nodes.

A problem has ``n`` nodes, dimension ``d`` and local objectives ``f_i``; the
global objective is ``f(x) = (1/n) Σ_i f_i(x)`` (same minimizer as ``Σ_i f_i``).
Every oracle takes a ``[k, d]`` block of iterates and the ``k`` node ids it
belongs to and returns one row per node. Oracles are pure; counting happens in
:class:`CountingOracle`, the object algorithms are given.
"""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from fedopt.core.arrays import FloatArray, IntArray
from fedopt.core.clip import clip_thresholds, clipped_node_sums
from fedopt.core.meter import Meter
from fedopt.core.rng import NodeStream

_PROBLEMS: dict[str, Callable[..., "Problem"]] = {}


@dataclass(frozen=True)
class Evaluation:
    """What a problem keeps of one evaluation of per-sample gradients over a block of nodes,
    so that a later clipped difference against the same points evaluates only the new ones
    (:meth:`CountingOracle.clipped_grad_sums_keeping`).

    ``at [k, d]``: the point of each row (a row of NaN: nothing kept); ``samples [k, b, w]``:
    the per-sample quantities there, ``w = `` :meth:`Problem.evaluation_width` floats for each
    of the ``b`` samples of the call that made them (their meaning is the problem's own: only
    the problem that made them reads them). Both are plain arrays with one row per node, so an
    algorithm keeps them in its explicit per-client state and they travel with the rows.
    """

    at: FloatArray
    samples: FloatArray


class ProblemParamError(ValueError):
    """A bad parameter of a problem factory; ``key`` is its path among the factory's
    parameters (``"d"``, ``"data.d"``, ``"partition.alpha"``; ``""`` for the whole
    mapping), so that a config can name ``problem.<key>``. The message is unchanged."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def param_error(prefix: str, exc: ValueError) -> ProblemParamError:
    """``exc`` as a :class:`ProblemParamError` under ``prefix``: ``"data"`` and an error
    keyed ``"d"`` give ``"data.d"``; an unkeyed error gets ``prefix`` itself."""
    inner = exc.key if isinstance(exc, ProblemParamError) else ""
    key = ".".join(k for k in (prefix, inner) if k)
    return ProblemParamError(key, str(exc))


def register_problem(name: str) -> Callable[[Callable[..., "Problem"]], Callable[..., "Problem"]]:
    """Register a problem factory under ``name`` (used by experiment configs)."""

    def deco(factory: Callable[..., "Problem"]) -> Callable[..., "Problem"]:
        if name in _PROBLEMS:
            raise ValueError(f"problem {name!r} registered twice")
        _PROBLEMS[name] = factory
        return factory

    return deco


def available_problems() -> list[str]:
    import fedopt.problems  # noqa: F401  (registers the built-ins)

    return sorted(_PROBLEMS)


def problem_factory(name: str) -> Callable[..., "Problem"]:
    import fedopt.problems  # noqa: F401

    try:
        return _PROBLEMS[name]
    except KeyError:
        raise ValueError(f"unknown problem {name!r}; choose one of: {', '.join(sorted(_PROBLEMS))}") from None


class Problem(ABC):
    """Local objectives ``f_i`` on ``n`` nodes in dimension ``d``.

    Subclasses implement :meth:`grad` and :meth:`value` (vectorized over nodes)
    and, where the problem has data, :meth:`sample_grads` (per-sample gradients
    for DP clipping) and :meth:`stochastic_grad`. ``L``/``mu`` are the smoothness
    and strong-convexity constants of every ``f_i`` (``None`` where undefined).
    """

    n: int
    d: int
    L: float
    mu: float | None

    # ---- oracles (pure, vectorized over nodes) --------------------------------
    @abstractmethod
    def grad(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        """``∇f_{nodes[k]}(X[k])`` for each row, shape ``[k, d]``."""

    @abstractmethod
    def value(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        """``f_{nodes[k]}(X[k])`` for each row, shape ``[k]``."""

    def query(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        """Zeroth-order value oracle: ``f_{nodes[k]}(X[k])`` for each row, shape ``[k]``.

        The oracle zeroth-order algorithms (gradient-free estimators) use; the
        default is :meth:`value`. A problem whose queries differ from exact values
        (noisy or quantized function evaluations) overrides it."""
        return self.value(X, nodes)

    def n_samples(self) -> IntArray:
        """Samples held by each node (1 for data-free problems)."""
        return np.ones(self.n, dtype=np.int64)

    def initial_parameters(self) -> FloatArray:
        """The common starting point ``x_0 [d]`` of every algorithm (a fresh array):
        zeros by default; a neural-network problem returns its module's own
        initialization."""
        return np.zeros(self.d)

    def test_metrics(self, x: FloatArray) -> dict[str, float]:
        """Held-out metrics of one model ``x [d]`` (e.g. ``{"test_accuracy": 0.93}``;
        keys among :data:`fedopt.core.trace.TEST_METRIC_COLUMNS`). Empty for a problem
        without a test split (the columns are then NaN)."""
        return {}

    def sample_grads(self, X: FloatArray, nodes: IntArray, idx: IntArray) -> FloatArray:
        """Per-sample gradients ``[k, b, d]`` of the samples ``idx[k, :]`` of each node
        (the local objective is the mean of per-sample losses plus any regularizer,
        which is included in every per-sample gradient)."""
        raise TypeError(f"{type(self).__name__} has no per-sample gradients (it holds no data)")

    def clipped_grad_sums(self, X: FloatArray, nodes: IntArray, idx: IntArray, c: float | FloatArray,
                          mask: FloatArray | None = None, X_prev: FloatArray | None = None) -> FloatArray:
        """Each node's sum of clipped per-sample gradients, ``[k, d]``:
        ``Σ_j mask_kj · clip(g_j(X[k]), c_k)``, or of clipped per-sample gradient differences
        ``Σ_j mask_kj · clip(g_j(X[k]) − g_j(X_prev[k]), c_k)`` when ``X_prev [k, d]`` is given,
        over the samples ``idx[k, :]`` of node ``nodes[k]`` (``g_j``: per-sample gradients as
        :meth:`sample_grads`; ``clip(g, c) = g · min(1, c/‖g‖)``; ``c``: one threshold or one per
        row ``[k]``, ``inf`` for none; ``mask [k, b]`` 0/1, all ones when ``None``).

        The default computes :meth:`sample_grads` (twice for a difference) and clips them
        with :func:`fedopt.core.clip.clipped_node_sums`; a problem that can keep the
        ``[k, b, d]`` per-sample block off the host (the torch problems) overrides it with a
        fused kernel of the same arithmetic."""
        t = clip_thresholds(c, len(nodes))
        G = self.sample_grads(X, nodes, idx)
        if X_prev is not None:
            G = G - self.sample_grads(X_prev, nodes, idx)
        return clipped_node_sums(G, t, mask)

    def evaluation_width(self) -> int:
        """Floats per sample that :meth:`clipped_grad_sums_keeping` keeps of one evaluation
        point; 0 (the default): this problem keeps nothing, and a clipped difference always
        evaluates both of its points."""
        return 0

    def clipped_grad_sums_keeping(self, X: FloatArray, nodes: IntArray, idx: IntArray, c: float | FloatArray,
                                  mask: FloatArray | None = None, X_prev: FloatArray | None = None,
                                  kept: FloatArray | None = None,
                                  out: FloatArray | None = None) -> tuple[FloatArray, FloatArray]:
        """:meth:`clipped_grad_sums`, and what it evaluated at ``X``: ``(sums [k, d], samples
        [k, b, w])`` with ``w`` = :meth:`evaluation_width`. A difference is taken against
        ``X_prev`` (evaluated here) or against ``kept [k, b, w]``, the ``samples`` an earlier
        call returned at the previous points on the same ``idx`` (not evaluated again; at most
        one of ``X_prev`` and ``kept``). Whether ``kept`` still belongs to the previous points
        is the caller's check (:meth:`CountingOracle.clipped_grad_sums_keeping` makes it).
        ``out``: a writable float64 ``[k, b, w]`` array the samples are written into and
        returned as (an algorithm's state rows; it may be ``kept`` itself), else a new array.
        A problem whose :meth:`evaluation_width` is 0 has no such oracle."""
        raise TypeError(f"{type(self).__name__} keeps no evaluations (evaluation_width() is 0): "
                        "use clipped_grad_sums")

    def stochastic_grad(self, X: FloatArray, nodes: IntArray, rng: NodeStream, batch: int) -> FloatArray:
        """Minibatch gradient: mean of ``batch`` per-sample gradients drawn uniformly
        with replacement from each node's samples (unbiased for ``∇f_i``); row ``k``'s
        sample indices are node ``nodes[k]``'s own draws from the per-node stream ``rng``."""
        idx = rng.integers(nodes, self.n_samples()[nodes], batch)
        return self.sample_grads(X, nodes, idx).mean(axis=1)

    def conjugate_grad(self, U: FloatArray, nodes: IntArray) -> FloatArray:
        """``∇f*_{nodes[k]}(U[k])``, the gradient of the Fenchel conjugate of each row's
        objective (the dual oracle of dual methods, e.g. MSDA), shape ``[k, d]``.

        Closed form for quadratic local objectives, ``∇f_i*(u) = A_i⁻¹(u + b_i)`` with
        ``∇f_i(x) = A_i x − b_i`` (:func:`quadratic_form`); any other problem is a clear error.
        """
        _, b, Ainv = quadratic_form(self)
        return np.einsum("kij,kj->ki", Ainv[nodes], U + b[nodes])

    # ---- global quantities ------------------------------------------------------
    def global_value(self, x: FloatArray) -> float:
        """``f(x) = (1/n) Σ_i f_i(x)``."""
        X = np.broadcast_to(x, (self.n, self.d))
        return float(self.value(np.ascontiguousarray(X), np.arange(self.n)).mean())

    def global_grad(self, x: FloatArray) -> FloatArray:
        X = np.broadcast_to(x, (self.n, self.d))
        return self.grad(np.ascontiguousarray(X), np.arange(self.n)).mean(axis=0)

    def solve(self) -> FloatArray | None:
        """The exact minimizer of ``f`` (closed form or to 1e-12); ``None`` if not defined."""
        return None

    @cached_property
    def x_star(self) -> FloatArray | None:
        return self.solve()

    @cached_property
    def f_star(self) -> float | None:
        xs = self.x_star
        return None if xs is None else self.global_value(xs)

    def describe(self) -> dict[str, Any]:
        return {"problem": type(self).__name__, "n": self.n, "d": self.d, "L": self.L, "mu": self.mu}

    def shard_view(self, nodes: IntArray, device: str | None = None) -> "Problem":
        """This problem as a shard holding ``nodes`` reads it: a problem with the same
        oracles (global node ids, the same numbers bit for bit) that serves those
        nodes' data without copying them on every call. Built once when a shard is
        set up. ``device``: where the engine placed the shard (``"cpu"``, ``"cuda"``;
        ``None``: not placed); problems that compute in numpy ignore it, torch problems
        put the shard's data there. The default is the problem itself (no per-node data
        to keep close); problems with per-node data return a :class:`ShardView`."""
        return self


class ShardView(Problem):
    """A problem seen from a shard that owns ``nodes``: their per-node data are stored
    once, contiguously, in the order of ``nodes`` (subclasses copy them in
    :meth:`_local`), and ``local[v]`` is node ``v``'s row there (``-1`` for the other
    nodes). Oracles take global node ids as the full problem's do; a call whose nodes
    are a run of consecutive local rows (a whole-shard block) reads a slice of the
    local arrays, any other call reads the full problem's data, and both run the full
    problem's arithmetic on the same values. Everything not per node (``L``, ``mu``,
    ``x_star``, ``f_star``, global values, conjugate gradients, per-sample gradients,
    zeroth-order queries, the initial parameters, held-out metrics) is the full
    problem's, cached there.
    """

    def __init__(self, full: Problem, nodes: IntArray) -> None:
        nodes = np.asarray(nodes, dtype=np.int64)
        if nodes.ndim != 1 or len(np.unique(nodes)) != len(nodes) \
                or (len(nodes) and (nodes.min() < 0 or nodes.max() >= full.n)):
            raise ValueError(f"{type(full).__name__}.shard_view: nodes must be distinct ids in 0..{full.n - 1}")
        self.full = full
        self.n, self.d = full.n, full.d
        self.nodes = nodes
        self.local = np.full(full.n, -1, dtype=np.int64)
        self.local[nodes] = np.arange(len(nodes))
        self.local.setflags(write=False)

    def own_run(self, nodes: IntArray) -> slice | None:
        """The slice of local rows holding ``nodes`` when they are the shard's own nodes in
        consecutive local rows (in order), else ``None``."""
        k = len(nodes)
        if not k:
            return None
        loc = self.local[nodes]
        first = int(loc[0])
        if first < 0 or int(loc[-1]) - first != k - 1 or (k > 1 and not bool((np.diff(loc) == 1).all())):
            return None
        return slice(first, first + k)

    @property  # type: ignore[override]
    def L(self) -> float:
        return self.full.L

    @property  # type: ignore[override]
    def mu(self) -> float | None:
        return self.full.mu

    @property
    def x_star(self) -> FloatArray | None:  # type: ignore[override]
        return self.full.x_star

    @property
    def f_star(self) -> float | None:  # type: ignore[override]
        return self.full.f_star

    def n_samples(self) -> IntArray:
        return self.full.n_samples()

    def query(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        return self.full.query(X, nodes)

    def initial_parameters(self) -> FloatArray:
        return self.full.initial_parameters()

    def test_metrics(self, x: FloatArray) -> dict[str, float]:
        return self.full.test_metrics(x)

    def sample_grads(self, X: FloatArray, nodes: IntArray, idx: IntArray) -> FloatArray:
        return self.full.sample_grads(X, nodes, idx)

    def clipped_grad_sums(self, X: FloatArray, nodes: IntArray, idx: IntArray, c: float | FloatArray,
                          mask: FloatArray | None = None, X_prev: FloatArray | None = None) -> FloatArray:
        return self.full.clipped_grad_sums(X, nodes, idx, c, mask, X_prev)

    def evaluation_width(self) -> int:
        return self.full.evaluation_width()

    def clipped_grad_sums_keeping(self, X: FloatArray, nodes: IntArray, idx: IntArray, c: float | FloatArray,
                                  mask: FloatArray | None = None, X_prev: FloatArray | None = None,
                                  kept: FloatArray | None = None,
                                  out: FloatArray | None = None) -> tuple[FloatArray, FloatArray]:
        return self.full.clipped_grad_sums_keeping(X, nodes, idx, c, mask, X_prev, kept, out)

    def stochastic_grad(self, X: FloatArray, nodes: IntArray, rng: NodeStream, batch: int) -> FloatArray:
        return self.full.stochastic_grad(X, nodes, rng, batch)

    def conjugate_grad(self, U: FloatArray, nodes: IntArray) -> FloatArray:
        return self.full.conjugate_grad(U, nodes)

    def global_value(self, x: FloatArray) -> float:
        return self.full.global_value(x)

    def global_grad(self, x: FloatArray) -> FloatArray:
        return self.full.global_grad(x)

    def solve(self) -> FloatArray | None:
        return self.full.solve()

    def describe(self) -> dict[str, Any]:
        return self.full.describe()

    def shard_view(self, nodes: IntArray, device: str | None = None) -> Problem:
        return self.full.shard_view(nodes, device)


#: Relative tolerance of the check that the local objectives are quadratic.
AFFINE_RTOL = 1e-8

_FORMS: "weakref.WeakKeyDictionary[Problem, tuple[FloatArray, FloatArray, FloatArray]]" = weakref.WeakKeyDictionary()


def quadratic_form(problem: Problem) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(A [n,d,d], b [n,d], A⁻¹)`` with ``∇f_i(x) = A_i x − b_i`` for quadratic local objectives.

    Read from the problem's gradient oracle (uncounted set-up: a quadratic is
    determined by ``d + 1`` gradients) and checked at a random point; a
    non-quadratic problem (e.g. logistic regression) is a clear error.
    """
    cached = _FORMS.get(problem)
    if cached is not None:
        return cached
    n, d = problem.n, problem.d
    nodes = np.arange(n)
    g0 = problem.grad(np.zeros((n, d)), nodes)
    A = np.empty((n, d, d))
    for j in range(d):
        e = np.zeros((n, d))
        e[:, j] = 1.0
        A[:, :, j] = problem.grad(e, nodes) - g0
    b = -g0
    X = np.random.default_rng(12345).standard_normal((n, d)) * 3.0
    pred = np.einsum("kij,kj->ki", A, X) - b
    actual = problem.grad(X, nodes)
    scale = max(1.0, float(np.abs(actual).max()))
    if not np.allclose(pred, actual, rtol=0, atol=AFFINE_RTOL * scale) or not np.allclose(
        A, A.transpose(0, 2, 1), atol=AFFINE_RTOL * max(1.0, float(np.abs(A).max()))
    ):
        raise ValueError(
            f"{type(problem).__name__}: this method needs local objectives whose conjugate gradient ∇f_i* has a "
            "closed form (quadratics / least squares); use problem 'least_squares' or 'quadratic'"
        )
    A = 0.5 * (A + A.transpose(0, 2, 1))
    Ainv = np.linalg.inv(A)
    _FORMS[problem] = (A, b, Ainv)
    return A, b, Ainv


class CountingOracle:
    """The oracles algorithms call: the problem's, with every call counted in a meter.

    This and the :class:`~fedopt.core.meter.Channel` are the only places that count.
    ``grad`` counts one gradient evaluation per row (one full local gradient);
    ``sample_grads``, ``clipped_grad_sums`` and ``clipped_grad_sums_keeping`` (at each point
    they evaluate: a kept evaluation they reuse is not evaluated again) and
    ``stochastic_grad`` count ``b / m_i`` per row, so curves against ``grad_evals``
    compare full-batch and stochastic methods in the same unit (passes over local data). ``conjugate_grad`` (a dual gradient) counts one
    gradient evaluation per row; ``gd_steps`` runs and counts whole local
    gradient steps. ``value`` and ``query`` count one function query per row. ``local_step``
    counts the model updates an algorithm makes (local steps).
    """

    def __init__(self, problem: Problem, meter: Meter) -> None:
        self.problem = problem
        self.meter = meter
        self._m = problem.n_samples().astype(np.float64)

    @property
    def n(self) -> int:
        return self.problem.n

    @property
    def d(self) -> int:
        return self.problem.d

    def grad(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        self.meter.grad_evals.add(nodes)
        return self.problem.grad(X, nodes)

    def grad_all(self, X: FloatArray) -> FloatArray:
        """Gradients of every node at once (a synchronous round)."""
        self.meter.grad_evals.add_all(1.0)
        return self.problem.grad(X, _arange(self.problem.n))

    def gd_steps(self, X: FloatArray, nodes: IntArray, lr: float, steps: int) -> FloatArray:
        """``steps`` full-gradient steps ``x ← x − lr·∇f_{nodes[k]}(x)`` on every row of
        ``X [k, d]``, in place (``X`` is returned): ``steps`` gradient evaluations and
        ``steps`` local steps per row. Runs the problem's fused kernel ``gd_steps`` where
        it has one (the same arithmetic, cache-blocked), else ``steps`` gradient calls."""
        nodes = np.asarray(nodes, dtype=np.int64)
        fused = getattr(self.problem, "gd_steps", None)
        if fused is not None:
            fused(X, nodes, lr, steps)
        else:
            for _ in range(steps):
                X -= lr * self.problem.grad(X, nodes)
        self.meter.grad_evals.add(nodes, float(steps))
        self.meter.local_steps.add(nodes, float(steps))
        return X

    def conjugate_grad(self, U: FloatArray, nodes: IntArray) -> FloatArray:
        """Dual gradients ``∇f_i*(u)`` (:meth:`Problem.conjugate_grad`): one gradient
        evaluation per row, as dual methods count a local computation."""
        self.meter.grad_evals.add(nodes)
        return self.problem.conjugate_grad(U, nodes)

    def local_step(self, nodes: IntArray, count: float = 1.0) -> None:
        """Count ``count`` local steps (model updates) at each of ``nodes``."""
        self.meter.local_steps.add(nodes, count)

    def local_step_all(self, count: float = 1.0) -> None:
        """Count ``count`` local steps at every node (a synchronous round)."""
        self.meter.local_steps.add_all(count)

    def value(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        """Zeroth-order queries: one function query per row."""
        self.meter.queries.add(nodes)
        return self.problem.value(X, nodes)

    def query(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        """Zeroth-order queries (:meth:`Problem.query`, the oracle of gradient-free
        methods): one function query per row, as :meth:`value` counts."""
        self.meter.queries.add(nodes)
        return self.problem.query(X, nodes)

    def sample_grads(self, X: FloatArray, nodes: IntArray, idx: IntArray, mask: FloatArray | None = None) -> FloatArray:
        """Per-sample gradients ``[k, b, d]`` (:meth:`Problem.sample_grads`), ``b / m_i``
        gradient evaluations per row; with ``mask [k, b]`` (0/1: the samples a row really
        uses when rows of unequal sample counts are padded to one ``b``) ``Σ_j mask_kj / m_i``."""
        used = idx.shape[1] if mask is None else np.asarray(mask, dtype=np.float64).sum(axis=1)
        self.meter.grad_evals.add(nodes, used / self._m[nodes])
        return self.problem.sample_grads(X, nodes, idx)

    def clipped_grad_sums(self, X: FloatArray, nodes: IntArray, idx: IntArray, c: float | FloatArray,
                          mask: FloatArray | None = None, X_prev: FloatArray | None = None) -> FloatArray:
        """Sums of clipped per-sample gradients (or of their differences between ``X`` and
        ``X_prev``), ``[k, d]`` (:meth:`Problem.clipped_grad_sums`), counted as the per-sample
        gradients they are made of: ``b / m_i`` gradient evaluations per row (``Σ_j mask_kj / m_i``
        with a mask) at each evaluation point, so twice with ``X_prev``."""
        used = idx.shape[1] if mask is None else np.asarray(mask, dtype=np.float64).sum(axis=1)
        nodes = np.asarray(nodes, dtype=np.int64)
        for _ in range(1 if X_prev is None else 2):
            self.meter.grad_evals.add(nodes, used / self._m[nodes])
        return self.problem.clipped_grad_sums(X, nodes, idx, c, mask, X_prev)

    def clipped_grad_sums_keeping(self, X: FloatArray, nodes: IntArray, idx: IntArray, c: float | FloatArray,
                                  mask: FloatArray | None, X_prev: FloatArray | None,
                                  kept: Evaluation | None = None,
                                  out: FloatArray | None = None) -> tuple[FloatArray, Evaluation]:
        """:meth:`clipped_grad_sums` that also returns what it evaluated at ``X`` (an
        :class:`Evaluation` at ``X``), and that reuses ``kept`` for the difference against
        ``X_prev`` where it is still valid (the problem's
        :meth:`~Problem.clipped_grad_sums_keeping`; it needs :meth:`Problem.evaluation_width` > 0).

        ``kept`` is the :class:`Evaluation` an earlier call returned on the same samples
        ``idx``. A row uses it only when its ``kept.at`` row equals its ``X_prev`` row exactly
        (bit for bit; NaN never does): any other row, a stale one (an iterate that moved on,
        state restored without its evaluation), evaluates ``X_prev`` again, so the sums are
        always those of :meth:`clipped_grad_sums`. Counting says what was computed: ``b / m_i``
        gradient evaluations per row (``Σ_j mask_kj / m_i`` with a mask) at ``X``, and as many
        again at ``X_prev`` for a difference whose row did not reuse ``kept`` (a reused
        evaluation was counted by the call that made it). The kept samples a row does not use
        (``mask`` 0: padding) are zeros, so what is kept does not depend on which nodes shared
        the call. ``out``: a writable float64 ``[k, b, w]`` array that receives the new
        evaluation's samples (e.g. the caller's state rows, which may hold ``kept.samples``
        themselves), else a new array."""
        nodes = np.asarray(nodes, dtype=np.int64)
        k = len(nodes)
        used = idx.shape[1] if mask is None else np.asarray(mask, dtype=np.float64).sum(axis=1)
        fresh = np.ones(k, dtype=bool)  # rows that evaluate X_prev
        if X_prev is not None and kept is not None:
            want = (k, idx.shape[1], self.problem.evaluation_width())
            if np.shape(kept.at) != np.shape(X_prev) or np.shape(kept.samples) != want:
                raise ValueError(f"clipped_grad_sums_keeping: kept must hold at [k, d] = {list(np.shape(X_prev))} "
                                 f"and samples [k, b, w] = {list(want)}; got {list(np.shape(kept.at))} and "
                                 f"{list(np.shape(kept.samples))}")
            fresh = ~(np.asarray(kept.at) == np.asarray(X_prev)).all(axis=1)
        passes = np.where(fresh, 2.0, 1.0) if X_prev is not None else 1.0
        self.meter.grad_evals.add(nodes, passes * used / self._m[nodes])
        problem = self.problem
        if X_prev is None or kept is None or fresh.all():
            sums, samples = problem.clipped_grad_sums_keeping(X, nodes, idx, c, mask, X_prev, out=out)
        elif not fresh.any():
            sums, samples = problem.clipped_grad_sums_keeping(X, nodes, idx, c, mask, kept=np.asarray(kept.samples),
                                                              out=out)
        else:  # some rows reuse their evaluation, the others evaluate X_prev: one call for each group
            t = clip_thresholds(c, k)
            sums = np.empty((k, self.problem.d))
            samples = np.empty((k, idx.shape[1], problem.evaluation_width())) if out is None else out
            for rows, use in ((np.flatnonzero(~fresh), True), (np.flatnonzero(fresh), False)):  # two groups
                part = None if mask is None else np.asarray(mask)[rows]
                sums[rows], samples[rows] = problem.clipped_grad_sums_keeping(
                    np.asarray(X)[rows], nodes[rows], np.asarray(idx)[rows], t[rows], part,
                    None if use else np.asarray(X_prev)[rows], np.asarray(kept.samples)[rows] if use else None)
        if mask is not None:  # padding keeps zeros: what is kept does not depend on which nodes shared a call
            samples[np.asarray(mask) == 0] = 0.0
        return sums, Evaluation(np.array(X, dtype=np.float64), samples)

    def stochastic_grad(self, X: FloatArray, nodes: IntArray, rng: NodeStream, batch: int) -> FloatArray:
        """Minibatch gradients (:meth:`Problem.stochastic_grad`), ``batch / m_i`` gradient
        evaluations per row; ``rng`` is a per-node stream (``ctx.node_rng("sampling")``)."""
        self.meter.grad_evals.add(nodes, batch / self._m[nodes])
        return self.problem.stochastic_grad(X, nodes, rng, batch)


_ARANGE: dict[int, IntArray] = {}


def _arange(n: int) -> IntArray:
    a = _ARANGE.get(n)
    if a is None:
        a = _ARANGE[n] = np.arange(n)
        a.setflags(write=False)
    return a
