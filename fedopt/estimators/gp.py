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

    @property
    def grad_prior(self) -> float:
        """``c`` in ``∂_x∂_{x'}k(x, x) = c·I``."""
        l2 = self.lengthscale**2
        return self.variance / l2 if self.name == "se" else 5.0 * self.variance / (3.0 * l2)


class BatchedGP:
    """GP posteriors of ``k`` clients at once, each on ``n`` points (``X [k, n, d]``, ``y [k, n]``).

    ``mean`` is the constant prior mean of each client (``y``'s mean by default, or given).
    :meth:`append` adds points with a block update of the Cholesky factor.
    """

    def __init__(self, kernel: Kernel, X: torch.Tensor, y: torch.Tensor, noise: float,
                 mean: torch.Tensor | None = None) -> None:
        if noise < 0:
            raise ValueError(f"GP: noise variance must be >= 0, got {noise}")
        self.kernel, self.noise = kernel, float(noise)
        self.X, self.y = X, y
        self._auto_mean = mean is None
        self.m = y.mean(dim=1) if mean is None else mean
        self._XX = X @ X.transpose(-1, -2)
        self._A: torch.Tensor | None = None
        K = kernel.k(X, X)
        self.L = torch.linalg.cholesky(K + self.noise * torch.eye(X.shape[1], dtype=X.dtype, device=X.device))
        self._solve()

    def _solve(self) -> None:
        r = (self.y - self.m[:, None]).unsqueeze(-1)
        self.alpha = torch.cholesky_solve(r, self.L).squeeze(-1)

    def append(self, Xn: torch.Tensor, yn: torch.Tensor) -> None:
        """Add ``Xn [k, q, d]``, ``yn [k, q]``: the factor grows by a block (no refit)."""
        K12 = self.kernel.k(self.X, Xn)                                        # [k, n, q]
        K22 = self.kernel.k(Xn, Xn) + self.noise * torch.eye(Xn.shape[1], dtype=Xn.dtype, device=Xn.device)
        B = torch.linalg.solve_triangular(self.L, K12, upper=False).transpose(-1, -2)  # [k, q, n]
        C = torch.linalg.cholesky(K22 - B @ B.transpose(-1, -2))
        k, n, q = self.L.shape[0], self.L.shape[1], Xn.shape[1]
        L = torch.zeros((k, n + q, n + q), dtype=self.L.dtype, device=self.L.device)
        L[:, :n, :n] = self.L
        L[:, n:, :n] = B
        L[:, n:, n:] = C
        A = self._A
        if A is not None:  # the inverse by blocks (Schur complement S = CCᵀ): O(n²q), no refit
            AK = A @ K12                                                       # [k, n, q]
            eye = torch.eye(q, dtype=L.dtype, device=L.device).expand(k, q, q)
            Sinv = torch.cholesky_solve(eye, C)
            top = -AK @ Sinv
            A2 = torch.empty_like(L)
            torch.baddbmm(A, AK @ Sinv, AK.transpose(-1, -2), out=A2[:, :n, :n])  # one pass over A
            A2[:, :n, n:] = top
            A2[:, n:, :n] = top.transpose(-1, -2)
            A2[:, n:, n:] = Sinv
        self.L = L
        XXn = self.X @ Xn.transpose(-1, -2)
        XX = torch.empty_like(L)
        XX[:, :n, :n] = self._XX
        XX[:, :n, n:] = XXn
        XX[:, n:, :n] = XXn.transpose(-1, -2)
        XX[:, n:, n:] = Xn @ Xn.transpose(-1, -2)
        self.X = torch.cat((self.X, Xn), dim=1)
        self.y = torch.cat((self.y, yn), dim=1)
        if self._auto_mean:
            self.m = self.y.mean(dim=1)
        self._solve()
        self._XX = XX
        self._A = A2 if A is not None else None

    def grad_mean(self, x: torch.Tensor) -> torch.Tensor:
        """``∇μ(x)`` for one point per client, ``x [k, d]`` → ``[k, d]``."""
        _, w = self.kernel.k_and_w(x[:, None, :], self.X)                      # [k, 1, n]
        aw = (self.alpha * w[:, 0, :])                                         # [k, n]
        return x * aw.sum(dim=1, keepdim=True) - torch.einsum("kn,knd->kd", aw, self.X)

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """``μ(x)`` for ``x [k, c, d]`` → ``[k, c]``."""
        return self.m[:, None] + torch.einsum("kcn,kn->kc", self.kernel.k(x, self.X), self.alpha)

    def _inverse(self) -> torch.Tensor:
        if self._A is None:
            eye = torch.eye(self.L.shape[1], dtype=self.L.dtype, device=self.L.device).expand_as(self.L)
            self._A = torch.cholesky_solve(eye, self.L)
        return self._A

    def grad_cov(self, x: torch.Tensor) -> torch.Tensor:
        """The derived-GP gradient covariance ``∂σ²(x, x)``, ``x [k, d]`` → ``[k, d, d]``."""
        _, w = self.kernel.k_and_w(x[:, None, :], self.X)
        J = w[:, 0, :, None] * (x[:, None, :] - self.X)                         # [k, n, d]
        V = torch.linalg.solve_triangular(self.L, J, upper=False)
        eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        return self.kernel.grad_prior * eye - V.transpose(-1, -2) @ V

    def grad_var_trace(self, C: torch.Tensor) -> torch.Tensor:
        """``tr ∂σ²(c, c)`` for candidates ``C [k, c, d]`` → ``[k, c]`` (``O(n²)`` each)."""
        A = self._inverse()                                                    # [k, n, n]
        AXX = A * self._XX
        _, w = self.kernel.k_and_w(C, self.X)                                  # [k, c, n]
        p = C @ self.X.transpose(-1, -2)                                       # [k, c, n]
        Aw = w @ A                                                             # [k, c, n] (A symmetric)
        quad = (w * Aw).sum(-1)
        cross = (w * p * Aw).sum(-1)
        inner = (w * (w @ AXX)).sum(-1)
        d = C.shape[-1]
        return d * self.kernel.grad_prior - ((C * C).sum(-1) * quad - 2.0 * cross + inner)


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
    times). Every client is fitted on its own data alone, so a client's ``l`` does not depend
    on which clients share the call.

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
        return log_marginal_likelihood(name, X, y, torch.exp(t), noise, variance, mean)

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
        """``∇μ̂(x) = −√(2/M) Σ_j w_j sin(v_jᵀx + b_j) v_j`` for ``x [k, d]`` and ``w [k, M]``."""
        k = x.shape[0]
        s = torch.sin(torch.bmm(x[:, None, :], V.expand(k, *V.shape)) + b) * w[:, None, :]   # [k, 1, M]
        return -math.sqrt(2.0 / self.M) * torch.bmm(s, V.T.expand(k, *V.T.shape))[:, 0, :]

    def mean(self, x: torch.Tensor, w: torch.Tensor, V: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``Σ_j w_j φ_j(x)`` (without the prior mean) for ``x [k, c, d]`` → ``[k, c]``."""
        return torch.einsum("kcm,km->kc", self.features(x, V, b), w)
