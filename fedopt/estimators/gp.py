"""Trajectory-informed GP surrogates batched over clients (torch), and their RFF version.

FZooS (Shu, Lin, Dai & Low, arXiv 2308.04077, §4.1, after ZoRD, Shu et al. ICLR 2023)
conditions a GP ``f_i ~ GP(m, k)`` on client ``i``'s own queries ``(X, y)`` and uses the
*derived GP* of its gradient:

* mean ``∇μ(x) = ∂_x k(x, X) α`` with ``α = (K + σ²I)⁻¹(y − m)`` (the gradient estimate);
* covariance ``∂σ²(x, x) = ∂_x∂_{x'}k(x, x) − ∂_x k(x, X)(K + σ²I)⁻¹∂_{x'}k(X, x)`` (its
  uncertainty; the score of a candidate query is the trace, the sum of the ``d``
  per-coordinate variances).

Kernels (``k(x, x') = s²·κ(r/l)``, ``r = ‖x − x'‖``): squared exponential
``κ = exp(−r²/2l²)`` (the paper's, ``l = 1``) and Matérn-5/2 ``κ = (1 + √5r/l + 5r²/3l²)
exp(−√5r/l)`` (the code's, with a fitted ``l``). Both have ``∂_x k(x, x') = w(r)(x − x')``
with ``w = −k/l²`` (SE) or ``w = −s²(5/3l²)(1 + √5r/l)exp(−√5r/l)`` (Matérn), and
``∂_x∂_{x'}k(x, x) = c·I`` with ``c = s²/l²`` or ``5s²/3l²``; so the uncertainty trace of a
candidate ``x`` is ``d·c − ‖x‖²·wᵀAw + 2(w∘p)ᵀAw − wᵀ(A∘XXᵀ)w`` with ``A = (K + σ²I)⁻¹``,
``p = Xx``: ``O(n²)`` per candidate, never a ``[n, d]`` Jacobian per candidate.

Every client of a block has the same number of points (the synchronous protocol queries
alike), so a block is one ``[k, n, d]`` tensor: one batched Cholesky, one batched solve.
Points arriving during a round extend the factor by a block (``L' = [[L, 0], [B, C]]``,
``B = K₂₁L⁻ᵀ``, ``C = chol(K₂₂ + σ²I − BBᵀ)``: ``O(n²k)``) instead of a refit.

Exactness: an SE or Matérn GP with a constant prior mean does not reproduce a quadratic, so its
posterior-mean gradient is not exact on one even once the history spans the space (the issue's
"exact to 1e-6" cannot hold for these kernels); on a quadratic sampled in a box of half-width
``h`` around ``x`` the error falls as ``h²`` (checked in ``tests/test_estimators_gp.py``).

Random Fourier features (Rahimi & Recht 2007): ``φ(x) = √(2/M) cos(Vᵀx + b)`` with
``V ~ N(0, I/l²)``, ``b ~ U[0, 2π]`` (the paper's appendix prints ``2/√M``; its proof and
its code use ``√(2/M)``), shared by every client and the server. A client's surrogate is the
``M``-vector ``w = Φᵀ(ΦΦᵀ + σ²I)⁻¹(y − m)`` (dual form, ``n ≪ M``); its gradient is
``∇μ̂(x) = −√(2/M) Σ_j w_j sin(v_jᵀx + b_j) v_j``; weights are averaged over clients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from fedopt.core.arrays import FloatArray

KernelName = Literal["se", "matern52"]
KERNELS: tuple[str, ...] = ("se", "matern52")
_RFF_BLOCK = 2048  # features per block of the RFF gradient (fixed: a client's sums do not depend on k)


@dataclass(frozen=True)
class Kernel:
    """A stationary kernel ``s²·κ(r/l)`` (``name``: ``se`` or ``matern52``)."""

    name: str = "se"
    lengthscale: float = 1.0
    variance: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in KERNELS:
            raise ValueError(f"kernel: {self.name!r} is not one of {', '.join(KERNELS)}")
        if not (self.lengthscale > 0 and self.variance > 0):
            raise ValueError(f"kernel: lengthscale and variance must be positive, got {self.lengthscale}, "
                             f"{self.variance}")

    def _sq(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        d2 = (A * A).sum(-1)[..., :, None] + (B * B).sum(-1)[..., None, :] - 2.0 * A @ B.transpose(-1, -2)
        return d2.clamp_min(0.0)

    def k(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        """``k(A, B)``: ``[..., n, m]`` for ``A [..., n, d]``, ``B [..., m, d]``."""
        return self._from_sq(self._sq(A, B))[0]

    def _from_sq(self, d2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(k, w)`` from squared distances: the kernel and ``w`` with ``∂_x k = w·(x − x')``."""
        l2, s2 = self.lengthscale**2, self.variance
        if self.name == "se":
            kv = s2 * torch.exp(-0.5 * d2 / l2)
            return kv, -kv / l2
        a = math.sqrt(5.0) * torch.sqrt(d2) / self.lengthscale
        e = torch.exp(-a)
        return s2 * (1.0 + a + a * a / 3.0) * e, -s2 * (5.0 / (3.0 * l2)) * (1.0 + a) * e

    def k_and_w(self, A: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._from_sq(self._sq(A, B))

    def _w_from_sq_(self, d2: torch.Tensor) -> torch.Tensor:
        """``w`` alone from squared distances, computed in place in ``d2`` (which it returns)."""
        l2, s2 = self.lengthscale**2, self.variance
        if self.name == "se":
            return d2.mul_(-0.5 / l2).exp_().mul_(-s2 / l2)
        a = d2.sqrt_().mul_(math.sqrt(5.0) / self.lengthscale)
        e = torch.exp(-a)
        return a.add_(1.0).mul_(e).mul_(-s2 * 5.0 / (3.0 * l2))

    @property
    def grad_prior(self) -> float:
        """``c`` in ``∂_x∂_{x'}k(x, x) = c·I``."""
        l2 = self.lengthscale**2
        return self.variance / l2 if self.name == "se" else 5.0 * self.variance / (3.0 * l2)


class BatchedGP:
    """GP posteriors of ``k`` clients at once, each on ``n`` points (``X [k, n, d]``, ``y [k, n]``).

    ``mean`` is the constant prior mean of each client (``y``'s mean by default, or given).
    :meth:`append` adds points without a refit. The points, their Gram matrix and, once the
    scoring has asked for it, the inverse ``A = (K + σ²I)⁻¹`` live in buffers of ``capacity``
    rows (grown when full) that the updates fill in place, so a step never copies ``[k, n, n]``
    matrices. The Cholesky factor grows by row blocks ``[B C]`` (``B`` by forward substitution
    over the earlier blocks), joined into one matrix only when :attr:`L` is read; ``α`` is solved
    through it by forward and back substitution over the blocks. While ``A`` is carried (the
    scoring reads it), an append updates it by blocks (Schur complement ``CCᵀ``) in place.

    Every product is batched per client (the client is the batch dimension; nothing is one product
    over stacked clients or a reduction over clients), so a client's numbers do not depend on which
    clients share its call beyond the rounding BLAS/LAPACK kernels give a slice by its alignment.
    """

    def __init__(self, kernel: Kernel, X: torch.Tensor, y: torch.Tensor, noise: float,
                 mean: torch.Tensor | None = None, capacity: int | None = None) -> None:
        if noise < 0:
            raise ValueError(f"GP: noise variance must be >= 0, got {noise}")
        self.kernel, self.noise = kernel, float(noise)
        k, n, d = X.shape
        self._n, self._cap = n, max(n, capacity or n)
        self._Xb = X.new_zeros((k, self._cap, d))
        self._yb = y.new_zeros((k, self._cap))
        self._xxb = X.new_zeros((k, self._cap))          # ‖x_τ‖²
        self._XXb = X.new_zeros((k, self._cap, self._cap))
        self._Xb[:, :n], self._yb[:, :n] = X, y
        self._xxb[:, :n] = (X * X).sum(-1)
        self._XXb[:, :n, :n] = X @ X.transpose(-1, -2)
        self._auto_mean = mean is None
        self.m = y.mean(dim=1) if mean is None else mean
        self._Ab: torch.Tensor | None = None               # [k, cap, 2 cap]: A, then A∘XXᵀ from column n
        self._L = torch.linalg.cholesky(kernel.k(X, X) + self.noise * self._eye(n))
        self._rows: list[tuple[torch.Tensor, torch.Tensor]] = []  # the factor's appended row blocks [B C]
        self._alpha: torch.Tensor | None = None

    # ---- buffers --------------------------------------------------------------------------------
    @property
    def X(self) -> torch.Tensor:
        """The points ``[k, n, d]``."""
        return self._Xb[:, :self._n]

    @property
    def y(self) -> torch.Tensor:
        """The values ``[k, n]``."""
        return self._yb[:, :self._n]

    @property
    def L(self) -> torch.Tensor:
        """The Cholesky factor of ``K + σ²I``, ``[k, n, n]`` (its row blocks joined into one matrix)."""
        if self._rows:
            L = self._L.new_zeros((self._L.shape[0], self._n, self._n))
            m = self._L.shape[1]
            L[:, :m, :m] = self._L
            for B, C in self._rows:
                q = C.shape[1]
                L[:, m:m + q, :m], L[:, m:m + q, m:m + q] = B, C
                m += q
            self._L, self._rows = L, []
        return self._L

    def _forward(self, R: torch.Tensor) -> torch.Tensor:
        """``L⁻¹R`` for ``R [k, n, q]`` by forward substitution over the factor's row blocks."""
        m = self._L.shape[1]
        Z = torch.empty_like(R)
        Z[:, :m] = torch.linalg.solve_triangular(self._L, R[:, :m], upper=False)
        for B, C in self._rows:
            q = C.shape[1]
            Z[:, m:m + q] = torch.linalg.solve_triangular(C, R[:, m:m + q] - B @ Z[:, :m], upper=False)
            m += q
        return Z

    def _eye(self, q: int) -> torch.Tensor:
        return torch.eye(q, dtype=self._Xb.dtype, device=self._Xb.device)

    def _grow(self, size: int) -> None:
        """Re-allocate the buffers with room for ``size`` points (a quarter more than asked)."""
        cap, n = max(size, self._cap + self._cap // 4), self._n
        k, d = self._Xb.shape[0], self._Xb.shape[2]
        Xb, yb, xxb = self._Xb.new_zeros((k, cap, d)), self._yb.new_zeros((k, cap)), self._xxb.new_zeros((k, cap))
        XXb = self._XXb.new_zeros((k, cap, cap))
        Xb[:, :n], yb[:, :n], xxb[:, :n], XXb[:, :n, :n] = self.X, self.y, self._xxb[:, :n], self._XXb[:, :n, :n]
        if self._Ab is not None:
            Ab = self._Ab.new_zeros((k, cap, 2 * cap))
            Ab[:, :n, :n] = self._Ab[:, :n, :n]
            self._Ab = Ab
        self._Xb, self._yb, self._xxb, self._XXb, self._cap = Xb, yb, xxb, XXb, cap

    def _kernel_from(self, aa: torch.Tensor, bb: torch.Tensor, ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(k, w)`` from the squared norms ``aa [..., a]``, ``bb [..., b]`` and inner products ``ab``."""
        return self.kernel._from_sq((aa[..., :, None] + bb[..., None, :] - 2.0 * ab).clamp_min(0.0))

    def _backward(self, Z: torch.Tensor) -> torch.Tensor:
        """``L⁻ᵀZ`` for ``Z [k, n, q]`` by back substitution over the factor's row blocks."""
        R = Z.clone()
        ends = [self._n]
        for _, C in reversed(self._rows):
            ends.append(ends[-1] - C.shape[1])
        for (B, C), e in zip(reversed(self._rows), ends):
            s = e - C.shape[1]
            a = torch.linalg.solve_triangular(C.transpose(-1, -2), R[:, s:e], upper=True)
            R[:, s:e] = a
            R[:, :s].sub_(torch.bmm(B.transpose(-1, -2), a))
        m = self._L.shape[1]
        R[:, :m] = torch.linalg.solve_triangular(self._L.transpose(-1, -2), R[:, :m], upper=True)
        return R

    @property
    def alpha(self) -> torch.Tensor:
        """``α = (K + σ²I)⁻¹(y − m)`` ``[k, n]``, solved when first read after an append (a step
        appends twice and reads it once) through the factor, by forward and back substitution over
        its row blocks: the factor is backward stable where the carried inverse, of norm up to
        ``1/σ²``, would amplify rounding (and with it the differences between shard layouts)."""
        if self._alpha is None:
            r = (self.y - self.m[:, None]).unsqueeze(-1)
            self._alpha = self._backward(self._forward(r)).squeeze(-1)
        return self._alpha

    def append(self, Xn: torch.Tensor, yn: torch.Tensor) -> None:
        """Add ``Xn [k, q, d]``, ``yn [k, q]``: block updates in place (no refit)."""
        n, q = self._n, Xn.shape[1]
        if n + q > self._cap:
            self._grow(n + q)
        xxn = (Xn * Xn).sum(-1)
        XXn = torch.bmm(Xn, self.X.transpose(-1, -2))                          # [k, q, n]
        XXnn = torch.bmm(Xn, Xn.transpose(-1, -2))
        K21 = self._kernel_from(xxn, self._xxb[:, :n], XXn)[0]                 # [k, q, n]
        K22 = self._kernel_from(xxn, xxn, XXnn)[0] + self.noise * self._eye(q)
        self._Xb[:, n:n + q], self._yb[:, n:n + q], self._xxb[:, n:n + q] = Xn, yn, xxn
        self._XXb[:, :n, n:n + q] = XXn.transpose(-1, -2)
        self._XXb[:, n:n + q, :n] = XXn
        self._XXb[:, n:n + q, n:n + q] = XXnn
        self._n = n + q
        if self._auto_mean:
            self.m = self.y.mean(dim=1)
        B = self._forward(K21.transpose(-1, -2)).transpose(-1, -2)             # [k, q, n]
        C = torch.linalg.cholesky(K22 - torch.bmm(B, B.transpose(-1, -2)))    # the Schur complement's factor
        self._rows.append((B, C))                                              # L' = [[L, 0], [B, C]]
        if self._Ab is not None:
            # the inverse by blocks (Schur complement S = CCᵀ, O(n²q)); the rows K₂₁A = (AK₁₂)ᵀ
            # are one read of A (symmetric)
            A = self._Ab[:, :n, :n]
            KA = torch.bmm(K21, A)                                             # [k, q, n]
            Sinv = torch.cholesky_inverse(C)
            top = torch.bmm(Sinv, KA)                                          # [k, q, n] = (AK S⁻¹)ᵀ
            A.baddbmm_(top.transpose(-1, -2), KA)                              # one pass over A, in place
            self._Ab[:, :n, n:n + q] = -top.transpose(-1, -2)
            self._Ab[:, n:n + q, :n] = -top
            self._Ab[:, n:n + q, n:n + q] = Sinv
        self._alpha = None

    def grad_mean(self, x: torch.Tensor) -> torch.Tensor:
        """``∇μ(x)`` for one point per client, ``x [k, d]`` → ``[k, d]``."""
        X = self.X
        _, w = self._kernel_from((x * x).sum(-1)[:, None], self._xxb[:, :self._n],
                                 torch.bmm(x[:, None, :], X.transpose(-1, -2)))      # [k, 1, n]
        aw = (self.alpha * w[:, 0, :])                                         # [k, n]
        return x * aw.sum(dim=1, keepdim=True) - torch.einsum("kn,knd->kd", aw, X)

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """``μ(x)`` for ``x [k, c, d]`` → ``[k, c]``."""
        return self.m[:, None] + torch.einsum("kcn,kn->kc", self.kernel.k(x, self.X), self.alpha)

    def _inverse(self) -> torch.Tensor:
        """``A = (K + σ²I)⁻¹`` ``[k, n, n]`` (a view of the buffer the appends then update)."""
        n = self._n
        if self._Ab is None:
            L = self.L
            self._Ab = L.new_zeros((L.shape[0], self._cap, 2 * self._cap))
            self._Ab[:, :n, :n] = torch.cholesky_inverse(L)
        return self._Ab[:, :n, :n]

    def grad_cov(self, x: torch.Tensor) -> torch.Tensor:
        """The derived-GP gradient covariance ``∂σ²(x, x)``, ``x [k, d]`` → ``[k, d, d]``."""
        _, w = self.kernel.k_and_w(x[:, None, :], self.X)
        J = w[:, 0, :, None] * (x[:, None, :] - self.X)                         # [k, n, d]
        V = torch.linalg.solve_triangular(self.L, J, upper=False)
        eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        return self.kernel.grad_prior * eye - V.transpose(-1, -2) @ V

    def grad_var_trace(self, C: torch.Tensor) -> torch.Tensor:
        """``tr ∂σ²(c, c)`` for candidates ``C [k, c, d]`` → ``[k, c]`` (``O(n²)`` each).

        ``d·c₀ − Σ_τ w_τ[(‖c‖² − 2p_τ)(Aw)_τ + ((A∘XXᵀ)w)_τ]``: ``A∘XXᵀ`` is written beside ``A``
        in the inverse's buffer (columns ``n`` to ``2n``), so ``[wA | w(A∘XXᵀ)]`` is one batched
        product over contiguous columns."""
        A, n = self._inverse(), self._n
        assert self._Ab is not None
        torch.mul(A, self._XXb[:, :n, :n], out=self._Ab[:, :n, n:2 * n])      # A∘XXᵀ beside A
        p = torch.bmm(C, self.X.transpose(-1, -2))                             # [k, c, n]
        cc = (C * C).sum(-1)[..., None]                                        # [k, c, 1]
        d2 = torch.add(cc, self._xxb[:, None, :n]).add_(p, alpha=-2.0).clamp_min_(0.0)
        w = self.kernel._w_from_sq_(d2)                                        # [k, c, n]
        both = torch.bmm(w, self._Ab[:, :n, :2 * n])                          # [wA | w(A∘XXᵀ)] in one product
        u = p.mul_(-2.0).add_(cc).mul_(both[..., :n]).add_(both[..., n:])
        return C.shape[-1] * self.kernel.grad_prior - (w * u).sum(-1)


# ---- marginal-likelihood fit of the lengthscale --------------------------------------------------------
def log_marginal_likelihood(name: str, X: torch.Tensor, y: torch.Tensor, lengthscale: torch.Tensor, noise: float,
                            variance: float = 1.0, mean: torch.Tensor | None = None) -> torch.Tensor:
    """``log p(y | X, l)`` of each client under ``GP(m, s²κ(r/l)) + N(0, σ²)``: ``X [k, n, d]``,
    ``y [k, n]``, ``lengthscale [k]`` → ``[k]`` (``m``: ``mean`` or ``y``'s mean)::

        −½ (y − m)ᵀ(K + σ²I)⁻¹(y − m) − ½ log det(K + σ²I) − (n/2) log 2π
    """
    m = y.mean(dim=1) if mean is None else mean
    sq = Kernel(name)._sq(X, X)
    n = X.shape[1]
    kern = Kernel(name, 1.0, variance)
    K = kern._from_sq(sq / (lengthscale * lengthscale)[:, None, None])[0]
    L = torch.linalg.cholesky(K + noise * torch.eye(n, dtype=X.dtype, device=X.device))
    r = (y - m[:, None]).unsqueeze(-1)
    a = torch.linalg.solve_triangular(L, r, upper=False).squeeze(-1)
    logdet = torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    return -0.5 * (a * a).sum(-1) - logdet - 0.5 * n * math.log(2.0 * math.pi)


def fit_lengthscale(name: str, X: torch.Tensor, y: torch.Tensor, noise: float, variance: float = 1.0,
                    mean: torch.Tensor | None = None, bounds: tuple[float, float] = (1e-2, 1e2),
                    grid: int = 25, iters: int = 30) -> torch.Tensor:
    """Each client's lengthscale of largest marginal likelihood (:func:`log_marginal_likelihood`),
    ``X [k, n, d]``, ``y [k, n]`` → ``[k]``, within ``bounds``.

    A batched search on ``log l``: the best of ``grid`` log-spaced values (for all clients at
    once: one batched Cholesky per value), then ``iters`` golden-section steps inside the
    bracket of its two neighbours (the likelihood in one variable is often multimodal, which a
    single gradient run from one start misses; the code of the paper restarts L-BFGS 20
    times). Every client is fitted on its own data alone, and the likelihoods are compared in
    float32 (the float64 values of one client differ in their last bits with the clients that
    share a batched, threaded kernel), so a client's ``l`` does not depend on which clients
    share the call.

    gpytorch / botorch are not used for this: neither is a dependency of fedopt, and their fits
    run one optimiser (Adam steps, or botorch's L-BFGS through ``fit_gpytorch_mll``) on the
    batch's summed likelihood over constrained raw parameters. A joint run couples the clients
    through its line search and stopping rule, so a client's ``l`` would depend on its shard and
    the engines would no longer agree to 1e-9. A single start also misses the other modes of a
    one-dimensional likelihood, and the whole search here is a few lines of batched Cholesky.
    """
    lo, hi = bounds
    if not 0 < lo < hi:
        raise ValueError(f"fit_lengthscale: bounds must satisfy 0 < low < high, got {bounds}")
    if grid < 3 or iters < 0:
        raise ValueError(f"fit_lengthscale: need grid >= 3 and iters >= 0, got grid={grid}, iters={iters}")
    k = X.shape[0]
    logs = torch.linspace(math.log(lo), math.log(hi), grid, dtype=X.dtype, device=X.device)

    def lml(t: torch.Tensor) -> torch.Tensor:
        # compared in float32: the search's comparisons must not turn on the last bits of the
        # float64 linear algebra, which batched (and threaded) kernels round differently for a
        # client depending on the clients that share its call
        return log_marginal_likelihood(name, X, y, torch.exp(t), noise, variance, mean).to(torch.float32)

    vals = torch.stack([lml(t.expand(k)) for t in logs], dim=1)                 # [k, grid]
    vals = torch.nan_to_num(vals, nan=-math.inf)
    best = vals.argmax(dim=1)
    a = logs[(best - 1).clamp_min(0)]
    b = logs[(best + 1).clamp_max(grid - 1)]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = lml(c), lml(d)
    for _ in range(iters):  # keep the bracket of the larger value (maximization)
        left = fc >= fd
        a, b = torch.where(left, a, c), torch.where(left, d, b)
        c_new = torch.where(left, b - ratio * (b - a), d)
        d_new = torch.where(left, c, a + ratio * (b - a))
        f_new = lml(torch.where(left, c_new, d_new))
        fc, fd = torch.where(left, f_new, fd), torch.where(left, fc, f_new)
        c, d = c_new, d_new
    return torch.exp(torch.where(fc >= fd, c, d))


# ---- random Fourier features -------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class RFF:
    """Shared random Fourier features of the SE kernel with lengthscale ``l``: ``V [d, M]``, ``b [M]``."""

    V: FloatArray
    b: FloatArray

    @classmethod
    def draw(cls, d: int, M: int, lengthscale: float, seed: int) -> RFF:
        """The features of seed ``seed`` (the same everywhere: every client and the server)."""
        rng = np.random.default_rng(seed)
        V = rng.standard_normal((d, M)) / lengthscale
        b = rng.uniform(0.0, 2.0 * math.pi, M)
        V.setflags(write=False)
        b.setflags(write=False)
        return cls(V, b)

    @property
    def M(self) -> int:
        return int(self.b.shape[0])

    def tensors(self, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.tensor(self.V, dtype=dtype, device=device),
                torch.tensor(self.b, dtype=dtype, device=device))

    def features(self, X: torch.Tensor, V: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``φ(X)``: ``[k, n, M]`` for ``X [k, n, d]`` (one product per client, so a client's
        numbers do not depend on how many clients share the call)."""
        return math.sqrt(2.0 / self.M) * torch.cos(torch.bmm(X, V.expand(X.shape[0], *V.shape)) + b)

    def fit(self, X: torch.Tensor, y: torch.Tensor, noise: float, V: torch.Tensor, b: torch.Tensor,
            mean: torch.Tensor | None = None) -> torch.Tensor:
        """Weights ``w = Φᵀ(ΦΦᵀ + σ²I)⁻¹(y − m)`` of each client: ``X [k, n, d]`` → ``[k, M]``."""
        m = y.mean(dim=1) if mean is None else mean
        Phi = self.features(X, V, b)                                           # [k, n, M]
        G = Phi @ Phi.transpose(-1, -2) + noise * torch.eye(X.shape[1], dtype=X.dtype, device=X.device)
        beta = torch.linalg.solve(G, (y - m[:, None]).unsqueeze(-1)).squeeze(-1)
        return torch.einsum("knm,kn->km", Phi, beta)

    def grad(self, x: torch.Tensor, w: torch.Tensor, V: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``∇μ̂(x) = −√(2/M) Σ_j w_j sin(v_jᵀx + b_j) v_j`` for ``x [k, d]`` and ``w [k, M]``.

        Linear in ``w``: the correction's difference of two surrogates is one call with the
        difference of their weights. Each client's products are its own (batched over clients,
        never one product over stacked clients), so its numbers do not depend on which clients
        share the call; the features are taken in blocks of ``_RFF_BLOCK`` columns (a fixed
        size), so that a block of ``V`` stays in cache while every client reads it."""
        k, d = x.shape
        g = x.new_zeros((k, 1, d))
        xr = x[:, None, :]
        for j in range(0, self.M, _RFF_BLOCK):
            Vj = V[:, j:j + _RFF_BLOCK]
            s = torch.sin(torch.bmm(xr, Vj.expand(k, *Vj.shape)) + b[j:j + _RFF_BLOCK]) * w[:, None, j:j + _RFF_BLOCK]
            g.baddbmm_(s, Vj.T.expand(k, *Vj.T.shape))
        return -math.sqrt(2.0 / self.M) * g[:, 0, :]

    def mean(self, x: torch.Tensor, w: torch.Tensor, V: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``Σ_j w_j φ_j(x)`` (without the prior mean) for ``x [k, c, d]`` → ``[k, c]``."""
        return torch.einsum("kcm,km->kc", self.features(x, V, b), w)
