"""Finite-sum problems over partitioned data: least squares and logistic regression.

Node ``i`` holds ``m_i`` samples ``(a_j, y_j)`` and its objective is the mean of
per-sample losses plus a regularizer,

    f_i(x) = (1/m_i) Σ_{j ∈ node i} φ(a_jᵀx, y_j) + r(x),

and the global objective is ``f = (1/n) Σ_i f_i`` (a mean over nodes of
per-node means: with unequal ``m_i`` a sample of a small node weighs more).
The data live in padded arrays ``Xd [n, m_max, d]``, ``y [n, m_max]`` with a
weight mask ``w [n, m_max]`` equal to ``1/m_i`` on node ``i``'s valid rows and
0 on padding, so every oracle is a batched matrix product over nodes
(no Python loop over nodes) and padding never contributes.

Registered problems (factories ``name(n, data, partition="iid", ...)``, see
:mod:`fedopt.problems.data` for ``data`` specs and
:mod:`fedopt.problems.partition` for ``partition`` specs):

``least_squares``  ``φ(z, y) = (z − y)²``, ``r = (reg/2)‖x‖²``; closed-form ``x*``.
``logistic``       ``φ(z, y) = log(1 + e^z) − y z`` (labels in {0, 1}),
                   ``r = (reg/2)‖x‖²``; ``x*`` by Newton's method.
``nonconvex_logistic``  logistic loss, ``r = reg · Σ_j x_j²/(1 + x_j²)``.
``fedavg_anchor``  the synthetic federated logistic-regression workload of the
                   FedAvg anchor benchmark (100 clients × 200 samples, d = 100).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
from scipy.special import expit

from fedopt.core.arrays import FloatArray, IntArray
from fedopt.problems.base import Problem, ProblemParamError, ShardView, param_error, register_problem
from fedopt.problems.data import load_dataset
from fedopt.problems.partition import Partition, partition_samples

#: Gradient-norm tolerance the iterative solvers aim for, and the one they guarantee.
SOLVE_TOL = 1e-12
SOLVE_GUARANTEE = 1e-10

_E = TypeVar("_E", bound="EmpiricalProblem")
#: A node list → its data rows ``(A [k, m, d], y [k, m], w [k, m])``.
RowsOf = Callable[[IntArray], tuple[FloatArray, FloatArray, FloatArray]]


class EmpiricalProblem(Problem):
    """Base class: a per-sample loss ``φ(z, y)`` of the margin ``z = aᵀx`` plus a
    separable regularizer, over padded per-node data.

    Subclasses define the elementwise ``_loss``, ``_dloss`` (``∂φ/∂z``),
    ``_d2loss`` (``∂²φ/∂z²``) and may override the regularizer hooks (default
    ``(reg/2)‖x‖²``).

    Parameters
    ----------
    Xd : ``[n, m_max, d]`` features; rows ``m_i..m_max-1`` of node ``i`` are padding.
    y : ``[n, m_max]`` labels / targets (padding ignored).
    m : ``[n]`` samples per node, each ``≥ 1``.
    reg : regularization coefficient (its meaning is the subclass's).
    """

    def __init__(self, Xd: FloatArray, y: FloatArray, m: IntArray, reg: float = 0.0) -> None:
        Xd = np.ascontiguousarray(Xd, dtype=np.float64)
        y = np.ascontiguousarray(y, dtype=np.float64)
        m = np.asarray(m, dtype=np.int64)
        name = type(self).__name__
        if Xd.ndim != 3 or y.shape != Xd.shape[:2] or m.shape != Xd.shape[:1]:
            raise ValueError(f"{name}: need Xd [n, m_max, d], y [n, m_max], m [n]; got {Xd.shape}, {y.shape}, {m.shape}")
        if (m < 1).any() or (m > Xd.shape[1]).any():
            raise ValueError(f"{name}: every node needs 1 <= m_i <= m_max = {Xd.shape[1]} samples")
        if not np.isfinite(Xd).all() or not np.isfinite(y).all():
            raise ValueError(f"{name}: data contain NaN or inf")
        if not (np.isfinite(reg) and reg >= 0):
            raise ProblemParamError("reg", f"{name}: reg must be >= 0, got {reg!r}")
        self.n, m_max, self.d = Xd.shape
        valid = np.arange(m_max)[None, :] < m[:, None]
        self.Xd = Xd * valid[:, :, None]
        self.y = np.where(valid, y, 0.0)
        self.w = valid / m[:, None].astype(np.float64)
        self.m = m
        self.reg = float(reg)
        self._all = np.arange(self.n)
        for a in (self.Xd, self.y, self.w, self.m):
            a.setflags(write=False)
        self._check_labels()
        self._lam_max, self._lam_min = self._gram_extremes()

    # ---- construction from a data set and a partition ----------------------------
    @classmethod
    def from_partition(
        cls: type[_E],
        features: FloatArray,
        labels: FloatArray,
        partition: Partition,
        *,
        bias: bool = False,
        **kwargs: Any,
    ) -> _E:
        """Pad ``features[partition.indices[i]] · partition.scales[i]`` into node ``i``'s
        rows; ``bias`` appends a constant-1 column (after scaling, so it stays 1)."""
        features = np.asarray(features, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.float64)
        if features.ndim != 2 or labels.shape != features.shape[:1]:
            raise ValueError(f"{cls.__name__}: need features [N, d] and labels [N]; got {features.shape}, {labels.shape}")
        sizes = partition.sizes
        n, m_max, d = len(sizes), int(sizes.max()), features.shape[1]
        flat = np.concatenate(partition.indices)
        node = np.repeat(np.arange(n), sizes)
        pos = np.arange(len(flat)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        Xd = np.zeros((n, m_max, d + int(bias)))
        Xd[node, pos, :d] = features[flat] * partition.scales[node, None]
        if bias:
            Xd[node, pos, d] = 1.0
        y = np.zeros((n, m_max))
        y[node, pos] = labels[flat]
        return cls(Xd, y, sizes, **kwargs)

    # ---- per-sample loss and regularizer (subclass hooks) ------------------------
    @abstractmethod
    def _loss(self, z: FloatArray, y: FloatArray) -> FloatArray:
        """Per-sample loss ℓ(z, y) of the margins ``z = ⟨a, x⟩``."""

    @abstractmethod
    def _dloss(self, z: FloatArray, y: FloatArray) -> FloatArray:
        """∂ℓ/∂z."""

    @abstractmethod
    def _d2loss(self, z: FloatArray, y: FloatArray) -> FloatArray:
        """∂²ℓ/∂z² (for L and the Newton solve of x*)."""

    def _check_labels(self) -> None:
        """Raise if the labels do not suit the loss (default: any real labels)."""

    def _reg_value(self, X: FloatArray) -> FloatArray:
        return 0.5 * self.reg * np.einsum("ki,ki->k", X, X)

    def _reg_grad(self, X: FloatArray) -> FloatArray:
        return self.reg * X

    def _reg_hess_diag(self, X: FloatArray) -> FloatArray:
        return np.full_like(X, self.reg)

    # ---- data access ---------------------------------------------------------------
    def _rows(self, nodes: IntArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        k = len(nodes)
        if k and int(nodes[-1]) - int(nodes[0]) == k - 1 and (k == 1 or bool((np.diff(nodes) == 1).all())):
            s = slice(int(nodes[0]), int(nodes[0]) + k)  # a run of consecutive nodes (e.g. all): a view, no copy
            return self.Xd[s], self.y[s], self.w[s]
        return self.Xd[nodes], self.y[nodes], self.w[nodes]

    def n_samples(self) -> IntArray:
        return self.m.copy()

    def _gram_extremes(self) -> tuple[FloatArray, FloatArray]:
        """Per node, the largest and smallest eigenvalue of ``(1/m_i) A_iᵀA_i``
        (from the smaller of the ``d × d`` and ``m_max × m_max`` Gram matrices;
        the smallest is 0 when ``m_i < d``)."""
        B = self.Xd * np.sqrt(self.w)[:, :, None]
        m_max = B.shape[1]
        if m_max >= self.d:
            eig = np.linalg.eigvalsh(np.einsum("kmd,kme->kde", B, B, optimize=True))
            lo = np.where(self.m >= self.d, eig[:, 0], 0.0)
        else:
            eig = np.linalg.eigvalsh(np.einsum("kmd,kld->kml", B, B, optimize=True))
            lo = np.zeros(self.n)
        hi = np.maximum(eig[:, -1], 0.0)
        lo = np.where(lo <= 1e-12 * np.maximum(hi, 1e-300), 0.0, lo)
        return hi, lo

    # ---- oracles ---------------------------------------------------------------------
    def value(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        nodes = np.asarray(nodes, dtype=np.int64)
        return self._value_rows(X, *self._rows(nodes))

    def _value_rows(self, X: FloatArray, A: FloatArray, y: FloatArray, w: FloatArray) -> FloatArray:
        """Values of the rows' objectives given their data ``A [k, m, d]``, ``y``, ``w [k, m]``."""
        z = np.matmul(A, X[:, :, None])[:, :, 0]
        return np.einsum("km,km->k", w, self._loss(z, y)) + self._reg_value(X)

    def grad(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        nodes = np.asarray(nodes, dtype=np.int64)
        return self._grad_rows(X, *self._rows(nodes))

    def _grad_rows(self, X: FloatArray, A: FloatArray, y: FloatArray, w: FloatArray) -> FloatArray:
        """Gradients of the rows' objectives given their data ``A [k, m, d]``, ``y``, ``w [k, m]``."""
        z = np.matmul(A, X[:, :, None])[:, :, 0]
        coef = self._dloss(z, y)
        coef *= w
        g = np.matmul(coef[:, None, :], A)[:, 0, :]
        if self.reg != 0.0 or type(self)._reg_grad is not EmpiricalProblem._reg_grad:
            g += self._reg_grad(X)  # (the default reg·x vanishes at reg = 0)
        return g

    #: Node data (bytes) that one block of :meth:`gd_steps` works on; it stays in the
    #: per-core cache across the block's steps.
    GD_BLOCK_BYTES = 1 << 20

    def gd_steps(self, X: FloatArray, nodes: IntArray, lr: float, steps: int) -> FloatArray:
        """``steps`` full-gradient steps ``x ← x − lr·∇f_{nodes[k]}(x)`` on every row of
        ``X [k, d]``, in place (``X`` is returned). The same arithmetic as ``steps``
        calls of :meth:`grad` (bit for bit), but cache-blocked: the nodes are taken in
        blocks of about :attr:`GD_BLOCK_BYTES` of data and a block does all its steps
        before the next is read, so each node's data come from memory once rather than
        twice per step. Uncounted, like every oracle here: the caller counts ``steps``
        gradient evaluations per row."""
        return self._gd_steps(X, np.asarray(nodes, dtype=np.int64), lr, steps, self._rows)

    def _gd_steps(self, X: FloatArray, nodes: IntArray, lr: float, steps: int, rows: RowsOf) -> FloatArray:
        """:meth:`gd_steps` reading each block's data with ``rows`` (a node list → its data)."""
        k = len(nodes)
        if X.shape != (k, self.d):
            raise ValueError(f"gd_steps: X must be [{k}, {self.d}], got {X.shape}")
        per_node = self.Xd.shape[1] * self.d * self.Xd.itemsize
        block = max(1, min(k, self.GD_BLOCK_BYTES // per_node))
        for s in range(0, k, block):
            Xb = X[s : s + block]
            A, y, w = rows(nodes[s : s + block])  # one gather per block, a view for a run of nodes
            for _ in range(steps):
                g = self._grad_rows(Xb, A, y, w)
                g *= lr
                Xb -= g
        return X

    def hessian(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        """``∇²f_{nodes[k]}(X[k])``, shape ``[k, d, d]`` (for tests and solvers)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        return self._hessian_rows(X, *self._rows(nodes))

    def _hessian_rows(self, X: FloatArray, A: FloatArray, y: FloatArray, w: FloatArray) -> FloatArray:
        z = np.matmul(A, X[:, :, None])[:, :, 0]
        coef = w * self._d2loss(z, y)
        H = np.matmul(A.transpose(0, 2, 1) * coef[:, None, :], A)
        H[:, np.arange(self.d), np.arange(self.d)] += self._reg_hess_diag(X)
        return H

    def sample_grads(self, X: FloatArray, nodes: IntArray, idx: IntArray) -> FloatArray:
        nodes = np.asarray(nodes, dtype=np.int64)
        idx = np.asarray(idx, dtype=np.int64)
        if idx.ndim != 2 or idx.shape[0] != len(nodes):
            raise ValueError(f"sample_grads: idx must be [k, b] with k = {len(nodes)}, got shape {idx.shape}")
        if (idx < 0).any() or (idx >= self.m[nodes][:, None]).any():
            raise IndexError("sample_grads: a sample index is outside its node's 0..m_i-1")
        A = self.Xd[nodes[:, None], idx]  # [k, b, d]
        z = np.einsum("kbd,kd->kb", A, X)
        g = self._dloss(z, self.y[nodes[:, None], idx])
        return g[:, :, None] * A + self._reg_grad(X)[:, None, :]

    # ---- the global objective on the flattened data (for solvers) --------------
    def _flat(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """All rows ``[n·m_max, d]``, labels and weights ``w/n`` of ``f = (1/n) Σ f_i``."""
        return self.Xd.reshape(-1, self.d), self.y.reshape(-1), self.w.reshape(-1) / self.n

    def _global_fgh(self, x: FloatArray, hess: bool = True) -> tuple[float, FloatArray, FloatArray | None]:
        A, y, w = self._flat()
        z = A @ x
        X = x[None, :]
        f = float(w @ self._loss(z, y) + self._reg_value(X)[0])
        g = A.T @ (w * self._dloss(z, y)) + self._reg_grad(X)[0]
        H = None
        if hess:
            H = (A.T * (w * self._d2loss(z, y))) @ A
            H[np.arange(self.d), np.arange(self.d)] += self._reg_hess_diag(X)[0]
        return f, g, H

    def _newton(self, max_iter: int = 100) -> tuple[FloatArray, float, int]:
        """Damped Newton's method with the exact Hessian and Armijo backtracking
        (Boyd & Vandenberghe 2004, *Convex Optimization*, Alg. 9.5); full steps once
        the Newton decrement is tiny (quadratic phase, where ``f`` differences are
        below rounding). Stops at ``‖∇f‖ ≤`` :data:`SOLVE_TOL` or on stagnation."""
        x = np.zeros(self.d)
        best, stall = np.inf, 0
        it = 0
        gn = np.inf
        for it in range(1, max_iter + 1):
            f, g, H = self._global_fgh(x)
            assert H is not None
            gn = float(np.linalg.norm(g))
            if gn <= SOLVE_TOL:
                break
            stall = stall + 1 if gn >= 0.5 * best else 0
            best = min(best, gn)
            if stall >= 5:
                break
            try:
                p = -np.linalg.solve(H, g)
            except np.linalg.LinAlgError:
                p = -np.linalg.lstsq(H, g, rcond=None)[0]
            slope = float(g @ p)
            t = 1.0
            if -slope > 1e-14 * max(1.0, abs(f)):
                while t > 1e-12 and self._global_fgh(x + t * p, hess=False)[0] > f + 0.25 * t * slope:
                    t *= 0.5
            x = x + t * p
        else:
            gn = float(np.linalg.norm(self._global_fgh(x, hess=False)[1]))
        return x, gn, it

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(reg=self.reg, samples=int(self.m.sum()), m_min=int(self.m.min()), m_max=int(self.m.max()))
        return out

    def shard_view(self, nodes: IntArray, device: str | None = None) -> EmpiricalShardView:
        """A shard's view holding ``nodes``' data rows contiguously (see :class:`EmpiricalShardView`);
        ``device`` is ignored (numpy computes on the CPU)."""
        return EmpiricalShardView(self, nodes)


class EmpiricalShardView(ShardView):
    """An :class:`EmpiricalProblem` seen from a shard that owns ``nodes``: their rows of
    ``Xd``, ``y``, ``w`` are copied once, in the order of ``nodes``; a call on a run of
    them (a whole-shard block) slices these copies, any other call (peer rows, nodes
    out of order) gathers from the full problem. Either way the full problem's
    kernels run on the same values, so every result equals the full problem's bit for bit.
    """

    full: EmpiricalProblem

    def __init__(self, full: EmpiricalProblem, nodes: IntArray) -> None:
        super().__init__(full, nodes)
        self.Xd = np.ascontiguousarray(full.Xd[self.nodes])
        self.y = np.ascontiguousarray(full.y[self.nodes])
        self.w = np.ascontiguousarray(full.w[self.nodes])
        for a in (self.Xd, self.y, self.w):
            a.setflags(write=False)

    def _rows(self, nodes: IntArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        s = self.own_run(nodes)
        if s is None:
            return self.full._rows(nodes)
        return self.Xd[s], self.y[s], self.w[s]

    def value(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        return self.full._value_rows(X, *self._rows(np.asarray(nodes, dtype=np.int64)))

    def grad(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        return self.full._grad_rows(X, *self._rows(np.asarray(nodes, dtype=np.int64)))

    def gd_steps(self, X: FloatArray, nodes: IntArray, lr: float, steps: int) -> FloatArray:
        """:meth:`EmpiricalProblem.gd_steps`, each block read from the shard's rows where it can be."""
        return self.full._gd_steps(X, np.asarray(nodes, dtype=np.int64), lr, steps, self._rows)

    def hessian(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        return self.full._hessian_rows(X, *self._rows(np.asarray(nodes, dtype=np.int64)))


class LeastSquares(EmpiricalProblem):
    """``f_i(x) = (1/m_i) Σ_j (a_jᵀx − y_j)² + (reg/2)‖x‖²``.

    ``∇²f_i = (2/m_i) A_iᵀA_i + reg·I`` is constant: ``L = max_i λ_max``,
    ``μ = min_i λ_min`` (``None`` when 0, e.g. ``reg = 0`` and ``m_i < d``).
    ``x*`` solves the normal equations of ``f = (1/n) Σ_i f_i``,

        ((2/n) Σ_i (1/m_i) A_iᵀA_i + reg·I) x = (2/n) Σ_i (1/m_i) A_iᵀ y_i,

    (the minimum-norm solution when singular) with one step of iterative refinement.
    """

    def __init__(self, Xd: FloatArray, y: FloatArray, m: IntArray, reg: float = 0.0) -> None:
        super().__init__(Xd, y, m, reg)
        self.L = float(2.0 * self._lam_max.max() + self.reg)
        mu = float(2.0 * self._lam_min.min() + self.reg)
        self.mu = mu if mu > 0 else None

    def _loss(self, z: FloatArray, y: FloatArray) -> FloatArray:
        return (z - y) ** 2

    def _dloss(self, z: FloatArray, y: FloatArray) -> FloatArray:
        return 2.0 * (z - y)

    def _d2loss(self, z: FloatArray, y: FloatArray) -> FloatArray:
        return np.full_like(z, 2.0)

    def solve(self) -> FloatArray:
        A, y, w = self._flat()
        H = 2.0 * (A.T * w) @ A
        H[np.arange(self.d), np.arange(self.d)] += self.reg
        b = 2.0 * A.T @ (w * y)
        x = np.linalg.lstsq(H, b, rcond=None)[0]
        for _ in range(2):  # iterative refinement: Newton steps on the exact quadratic
            g = self._global_fgh(x, hess=False)[1]
            x = x - np.linalg.lstsq(H, g, rcond=None)[0]
        gn = float(np.linalg.norm(self._global_fgh(x, hess=False)[1]))
        scale = max(1.0, float(np.linalg.norm(b)))
        if gn > SOLVE_GUARANTEE * scale:
            raise RuntimeError(f"least_squares: normal equations solved only to ‖∇f‖ = {gn:.3g} (ill-conditioned data)")
        return x


class Logistic(EmpiricalProblem):
    """ℓ2-regularized logistic regression, labels in {0, 1}:

        f_i(x) = (1/m_i) Σ_j [log(1 + e^{a_jᵀx}) − y_j a_jᵀx] + (reg/2)‖x‖².

    Evaluated stably with ``logaddexp`` and ``expit``. Since ``σ' ≤ 1/4``,
    ``L = max_i λ_max(A_iᵀA_i)/(4 m_i) + reg`` and ``μ = reg`` (``None`` if 0).
    ``x*`` is found by damped Newton's method to ``‖∇f‖ ≤ 1e-12``; a result with
    ``‖∇f‖ > 1e-10`` raises, and so does ``reg = 0`` with linearly separable
    data (detected as an iterate that classifies every sample correctly: then
    there is no minimizer). See e.g. Bottou, Curtis & Nocedal 2018, *Optimization
    methods for large-scale machine learning*, SIAM Review, §2.
    """

    def __init__(self, Xd: FloatArray, y: FloatArray, m: IntArray, reg: float = 0.0) -> None:
        super().__init__(Xd, y, m, reg)
        self.L = float(self._lam_max.max() / 4.0 + self._smoothness_of_reg())
        self.mu = self.reg if self.reg > 0 else None

    def _smoothness_of_reg(self) -> float:
        return self.reg

    def _check_labels(self) -> None:
        valid = self.w > 0
        bad = valid & (self.y != 0.0) & (self.y != 1.0)
        if bad.any():
            vals = np.unique(self.y[valid])
            shown = ", ".join(f"{v:g}" for v in vals[:6]) + (", ..." if len(vals) > 6 else "")
            raise ValueError(
                f"{type(self).__name__}: labels must be in {{0, 1}}, got values {shown}; "
                "for a multi-class set use the data key binary: one_vs_rest (with positive_class)"
            )

    def _loss(self, z: FloatArray, y: FloatArray) -> FloatArray:
        return np.logaddexp(0.0, z) - y * z

    def _dloss(self, z: FloatArray, y: FloatArray) -> FloatArray:
        return expit(z) - y

    def _d2loss(self, z: FloatArray, y: FloatArray) -> FloatArray:
        s = expit(z)
        return s * (1.0 - s)

    def solve(self) -> FloatArray | None:
        x, gn, it = self._newton()
        if gn > SOLVE_GUARANTEE:
            hint = "; with reg = 0 the data may be linearly separable (no minimizer): use reg > 0" if self.reg == 0 else ""
            raise RuntimeError(
                f"{type(self).__name__}: Newton's method reached only ‖∇f‖ = {gn:.3g} > {SOLVE_GUARANTEE:g} "
                f"after {it} iterations{hint}"
            )
        if self.reg == 0:
            A, y, w = self._flat()
            signed = (2.0 * y - 1.0) * (A @ x)
            if np.all(signed[w > 0] > 0):  # x separates the data: f → 0 along x, no minimizer
                raise RuntimeError(
                    f"{type(self).__name__}: the data are linearly separable and reg = 0, so f has no minimizer "
                    "(Newton's method only drove ‖x‖ up until ∇f underflowed): use reg > 0"
                )
        return x


class NonconvexLogistic(Logistic):
    """Logistic loss with the nonconvex regularizer ``reg · Σ_j x_j²/(1 + x_j²)``
    (Antoniadis, Gijbels & Nikolova 2011, *Penalized likelihood regression for
    generalized linear models with non-quadratic penalties*; a standard nonconvex
    test problem, e.g. Wang et al. 2019, *SpiderBoost*, NeurIPS, §5).

    The regularizer's second derivative ``2 reg (1 − 3t²)/(1 + t²)³`` lies in
    ``[−reg/2, 2 reg]``, so ``L = max_i λ_max(A_iᵀA_i)/(4 m_i) + 2·reg``;
    ``mu = None`` and ``x* = None`` (no global minimizer is known; :meth:`solve`
    returns ``None``).
    """

    def __init__(self, Xd: FloatArray, y: FloatArray, m: IntArray, reg: float = 0.1) -> None:
        super().__init__(Xd, y, m, reg)
        self.mu = None

    def _smoothness_of_reg(self) -> float:
        return 2.0 * self.reg

    def _reg_value(self, X: FloatArray) -> FloatArray:
        X2 = X * X
        return self.reg * (X2 / (1.0 + X2)).sum(axis=1)

    def _reg_grad(self, X: FloatArray) -> FloatArray:
        return 2.0 * self.reg * X / (1.0 + X * X) ** 2

    def _reg_hess_diag(self, X: FloatArray) -> FloatArray:
        X2 = X * X
        return 2.0 * self.reg * (1.0 - 3.0 * X2) / (1.0 + X2) ** 3

    def solve(self) -> None:
        return None


# ---- factories ------------------------------------------------------------------------

DataArg = Mapping[str, Any] | tuple[FloatArray, FloatArray]


def _build(
    cls: type[_E],
    n: int,
    data: DataArg,
    partition: str | Mapping[str, Any],
    bias: bool,
    seed: int,
    rng: np.random.Generator | None,
    **kwargs: Any,
) -> _E:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ProblemParamError("n", f"{cls.__name__}: n must be a positive integer, got {n!r}")
    rng = np.random.default_rng(seed) if rng is None else rng
    data_rng, part_rng = rng.spawn(2)  # independent: re-partitioning never moves the data
    if isinstance(data, tuple):
        features, labels = data
    else:
        try:
            features, labels = load_dataset(data, rng=data_rng)
        except ValueError as exc:
            raise param_error("data", exc) from exc
    part = partition_samples(labels, n, partition, part_rng, cls.__name__)
    try:
        return cls.from_partition(features, labels, part, bias=bias, **kwargs)
    except ProblemParamError:
        raise
    except ValueError as exc:  # labels that do not suit the loss, non-finite data
        raise param_error("data", exc) from exc


@register_problem("least_squares")
def least_squares(
    n: int,
    data: DataArg,
    partition: str | Mapping[str, Any] = "iid",
    reg: float = 0.0,
    bias: bool = False,
    seed: int = 0,
    rng: np.random.Generator | None = None,
) -> LeastSquares:
    """Least squares over ``data`` split across ``n`` nodes by ``partition``.

    ``data``: a data spec (``{"source": "synthetic", "task": "regression", ...}``,
    ``{"source": "sklearn", "name": "diabetes"}``, ...) or a ``(features, labels)``
    pair; ``partition``: a partition spec; ``reg``: ℓ2 coefficient; ``bias``: add a
    constant-1 feature; ``seed`` / ``rng``: randomness (split into independent
    data and partition streams).
    """
    return _build(LeastSquares, n, data, partition, bias, seed, rng, reg=reg)


@register_problem("logistic")
def logistic(
    n: int,
    data: DataArg,
    partition: str | Mapping[str, Any] = "iid",
    reg: float = 1e-3,
    bias: bool = False,
    seed: int = 0,
    rng: np.random.Generator | None = None,
) -> Logistic:
    """ℓ2-regularized logistic regression (labels in {0, 1}) over ``data`` split
    across ``n`` nodes, e.g. ``logistic(n=10, data={"source": "sklearn", "name":
    "breast_cancer"}, partition={"kind": "dirichlet", "alpha": 0.5}, reg=1e-3)``.
    Arguments as for :func:`least_squares`."""
    return _build(Logistic, n, data, partition, bias, seed, rng, reg=reg)


@register_problem("nonconvex_logistic")
def nonconvex_logistic(
    n: int,
    data: DataArg,
    partition: str | Mapping[str, Any] = "iid",
    reg: float = 0.1,
    bias: bool = False,
    seed: int = 0,
    rng: np.random.Generator | None = None,
) -> NonconvexLogistic:
    """Logistic loss plus ``reg · Σ_j x_j²/(1 + x_j²)`` (see :class:`NonconvexLogistic`).
    Arguments as for :func:`least_squares`."""
    return _build(NonconvexLogistic, n, data, partition, bias, seed, rng, reg=reg)


def fedavg_anchor_data(
    n: int = 100, samples_per_node: int = 200, d: int = 100, seed: int = 12345
) -> tuple[FloatArray, FloatArray]:
    """The FedAvg anchor workload's data, ``(X [n, m, d], Y [n, m])``.

    Ground truth ``w_true = N(0, I_d) · 2/√d`` from ``default_rng([seed, 10**6])``.
    Node ``k`` draws, from its own stream ``default_rng([seed, k])`` (so any process
    can rebuild one node's data alone): a mean ``μ_k ~ N(0, I_d)``, a scale
    ``s_k ~ U(0.5, 1.5)``, features ``x = μ_k + s_k · N(0, I_d)`` and labels
    ``y = 1[xᵀw_true + ε > 0]`` with ``ε ~ Logistic(0, 1)``, i.e.
    ``y ~ Bernoulli(σ(xᵀw_true))``.
    """
    w_true = np.random.default_rng([seed, 10**6]).normal(size=d) * (2.0 / np.sqrt(d))
    X = np.empty((n, samples_per_node, d))
    Y = np.empty((n, samples_per_node))
    for k in range(n):  # one generator per node by construction (data set-up, not an oracle)
        g = np.random.default_rng([seed, k])
        mu = g.normal(size=d)
        scale = g.uniform(0.5, 1.5)
        X[k] = mu + scale * g.normal(size=(samples_per_node, d))
        eps = g.logistic(size=samples_per_node)
        Y[k] = (X[k] @ w_true + eps > 0).astype(np.float64)
    return X, Y


@register_problem("fedavg_anchor")
def fedavg_anchor(n: int = 100, samples_per_node: int = 200, d: int = 100, seed: int = 12345) -> Logistic:
    """Unregularized logistic regression on :func:`fedavg_anchor_data` (no bias term):
    ``f_i`` is the mean logistic loss of node ``i``'s ``samples_per_node`` samples.
    The defaults reproduce the FedAvg anchor benchmark (100 clients × 200 samples,
    d = 100, seed 12345). The data depend on ``seed`` only (there is no ``rng``):
    every run of an experiment gets the same data whatever its own seed."""
    for key, value in (("n", n), ("samples_per_node", samples_per_node), ("d", d)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ProblemParamError(key, f"fedavg_anchor: {key} must be a positive integer, got {value!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ProblemParamError("seed", f"fedavg_anchor: seed must be a non-negative integer, got {seed!r}")
    X, Y = fedavg_anchor_data(n, samples_per_node, d, seed)
    return Logistic(X, Y, np.full(n, samples_per_node, dtype=np.int64), reg=0.0)
