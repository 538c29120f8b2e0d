"""The synthetic black-box objectives of FZooS (Shu, Lin, Dai & Low, arXiv 2308.04077, §6, Appx 12.1).

Every client sees only values of its ``f_i`` on the normalized box: an input ``u`` is
clipped to ``[0, 1]^d`` and mapped to ``x = lb + u·(ub − lb)`` (``[−10, 10]^d`` in the
paper) before the function is evaluated. Heterogeneity comes from Dirichlet draws: for
every coordinate ``j``, ``(a_1j, ..., a_Nj) ~ Dirichlet((1/N)·1)``, and a client's
coefficient is ``base + C·(a_ij − 1/N)``; since ``Σ_i a_ij = 1`` the average coefficient
is ``base`` for every ``C``, so ``C`` (``0.5, 5, 50`` in the paper) changes how different
the clients are but not the global objective.

* ``dirichlet_quadratic``: ``f_i(x) = (1/(10d)) Σ_j [(1 + C(a_ij − 1/N)) x_j² + (1 + C(b_ij − 1/N)) x_j]
  + 1/(10d)``; ``F(x) = (1/(10d)) Σ_j (x_j² + x_j) + 1/(10d)``, minimized at ``x_j = −1/2``
  (``u_j = 0.475``) with ``F* = −0.025 + 0.1/d`` (closed form).
* ``dirichlet_ackley`` / ``dirichlet_levy``: ``f_i(x) = g(s_i ⊙ (x − c_i))`` with scales
  ``s_ij = 0.1 + C(a_ij − 1/N)`` and shifts ``c_ij = C(b_ij − 1/N)``; ``g`` is Ackley
  (a = 20, b = 0.2, c = π) or Levy. Their global optimum has no closed form (``x*`` and
  ``f*`` are unknown: ``subopt`` is NaN, ``grad_norm_sq`` is exact).

The initial point of the paper's code, ``u_0 ~ U[0, 1]^d``, is drawn with the problem
(attribute ``x0``; the zeroth-order algorithms start there). Gradients (for first-order
references and diagnostics) are exact, with the clip's zero derivative outside the box.
"""

from __future__ import annotations

import math

import numpy as np

from fedopt.core.arrays import FloatArray, IntArray
from fedopt.problems.base import Problem, ProblemParamError, register_problem


class BoxProblem(Problem):
    """Objectives of ``x = lb + clip(u, 0, 1)·(ub − lb)`` (subclasses give ``_f`` and ``_df``
    of the rows' un-normalized inputs); ``x0`` is the problem's initial point in ``[0, 1]^d``."""

    lb: float
    ub: float
    x0: FloatArray

    def _project(self, X: FloatArray) -> FloatArray:
        return self.lb + np.clip(X, 0.0, 1.0) * (self.ub - self.lb)

    def _f(self, Z: FloatArray, nodes: IntArray) -> FloatArray:
        raise NotImplementedError

    def _df(self, Z: FloatArray, nodes: IntArray) -> FloatArray:
        raise NotImplementedError

    def value(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        return self._f(self._project(np.asarray(X, dtype=np.float64)), np.asarray(nodes, dtype=np.int64))

    def grad(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        X = np.asarray(X, dtype=np.float64)
        inside = (X > 0.0) & (X < 1.0)
        return self._df(self._project(X), np.asarray(nodes, dtype=np.int64)) * (self.ub - self.lb) * inside

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "lb": self.lb, "ub": self.ub}


def _dirichlet(rng: np.random.Generator, n: int, d: int) -> FloatArray:
    """``[n, d]``: column ``j`` is one draw of Dirichlet((1/n)·1) (each column sums to 1)."""
    return rng.dirichlet(np.full(n, 1.0 / n), size=d).T


def _check(name: str, n: int, d: int, C: float, lb: float, ub: float) -> None:
    if n < 1:
        raise ProblemParamError("n", f"{name}: n must be at least 1, got {n}")
    if d < 2:
        raise ProblemParamError("d", f"{name}: d must be at least 2, got {d}")
    if not C >= 0:
        raise ProblemParamError("C", f"{name}: the heterogeneity C must be >= 0, got {C}")
    if not ub > lb:
        raise ProblemParamError("ub", f"{name}: need lb < ub, got lb={lb}, ub={ub}")


class DirichletQuadratic(BoxProblem):
    """The FZooS synthetic quadratic (see the module docstring)."""

    def __init__(self, a: FloatArray, b: FloatArray, x0: FloatArray, lb: float = -10.0, ub: float = 10.0) -> None:
        self.a, self.b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        self.n, self.d = self.a.shape
        self.lb, self.ub, self.x0 = float(lb), float(ub), np.asarray(x0, dtype=np.float64)
        s = (self.ub - self.lb) ** 2 / (10.0 * self.d)
        self.L = float(2.0 * np.abs(self.a).max() * s)
        self.mu = None

    def _f(self, Z: FloatArray, nodes: IntArray) -> FloatArray:
        return (np.einsum("kj,kj->k", self.a[nodes], Z * Z) + np.einsum("kj,kj->k", self.b[nodes], Z) + 1.0) \
            / (10.0 * self.d)

    def _df(self, Z: FloatArray, nodes: IntArray) -> FloatArray:
        return (2.0 * self.a[nodes] * Z + self.b[nodes]) / (10.0 * self.d)

    def solve(self) -> FloatArray:
        """``u*``: ``x_j = −Σ_i b_ij / (2 Σ_i a_ij)`` (``−1/2`` for the Dirichlet coefficients), normalized."""
        x = -self.b.sum(axis=0) / (2.0 * self.a.sum(axis=0))
        u = (x - self.lb) / (self.ub - self.lb)
        if (u < 0).any() or (u > 1).any():
            raise ValueError("dirichlet_quadratic: the minimizer lies outside the box")
        return u


@register_problem("dirichlet_quadratic")
def dirichlet_quadratic(n: int = 5, d: int = 300, C: float = 5.0, lb: float = -10.0, ub: float = 10.0,
                        seed: int = 0, rng: np.random.Generator | None = None) -> DirichletQuadratic:
    """The FZooS synthetic quadratic (Shu et al. 2023, Appx 12.1) on ``n`` clients in dimension ``d``.

    Parameters
    ----------
    n, d : clients and dimension (the paper: 5 and 300).
    C : heterogeneity of the Dirichlet-perturbed coefficients (the paper: 0.5, 5, 50).
    lb, ub : the box ``[lb, ub]^d`` that ``[0, 1]^d`` maps to (the paper: −10, 10).
    seed / rng : randomness (coefficients, then the initial point ``x0 ~ U[0, 1]^d``).
    """
    _check("dirichlet_quadratic", n, d, C, lb, ub)
    rng = np.random.default_rng(seed) if rng is None else rng
    a = 1.0 + C * (_dirichlet(rng, n, d) - 1.0 / n)
    b = 1.0 + C * (_dirichlet(rng, n, d) - 1.0 / n)
    return DirichletQuadratic(a, b, rng.uniform(0.0, 1.0, d), lb, ub)


class ShiftedScaled(BoxProblem):
    """``f_i(x) = g(s_i ⊙ (x − c_i))`` for a test function ``g`` (Ackley or Levy)."""

    kind: str

    def __init__(self, kind: str, scale: FloatArray, shift: FloatArray, x0: FloatArray,
                 lb: float = -10.0, ub: float = 10.0) -> None:
        if kind not in ("ackley", "levy"):
            raise ValueError(f"shifted test function: kind {kind!r} is not one of ackley, levy")
        self.kind = kind
        self.s, self.c = np.asarray(scale, dtype=np.float64), np.asarray(shift, dtype=np.float64)
        self.n, self.d = self.s.shape
        self.lb, self.ub, self.x0 = float(lb), float(ub), np.asarray(x0, dtype=np.float64)
        self.L, self.mu = math.nan, None

    def _f(self, Z: FloatArray, nodes: IntArray) -> FloatArray:
        W = self.s[nodes] * (Z - self.c[nodes])
        return _ackley(W) if self.kind == "ackley" else _levy(W)

    def _df(self, Z: FloatArray, nodes: IntArray) -> FloatArray:
        s = self.s[nodes]
        W = s * (Z - self.c[nodes])
        return s * (_ackley_grad(W) if self.kind == "ackley" else _levy_grad(W))


_A, _B, _C = 20.0, 0.2, math.pi


def _ackley(W: FloatArray) -> FloatArray:
    d = W.shape[1]
    r = np.linalg.norm(W, axis=1)
    return -_A * np.exp(-_B / math.sqrt(d) * r) - np.exp(np.cos(_C * W).mean(axis=1)) + _A + math.e


def _ackley_grad(W: FloatArray) -> FloatArray:
    d = W.shape[1]
    r = np.linalg.norm(W, axis=1, keepdims=True)
    radial = _A * _B / math.sqrt(d) * np.exp(-_B / math.sqrt(d) * r) * np.divide(W, r, out=np.zeros_like(W),
                                                                                   where=r > 0)
    return radial + np.exp(np.cos(_C * W).mean(axis=1, keepdims=True)) * (_C / d) * np.sin(_C * W)


def _levy(W: FloatArray) -> FloatArray:
    w = 1.0 + (W - 1.0) / 4.0
    first = np.sin(math.pi * w[:, 0]) ** 2
    mid = ((w[:, 1:-1] - 1.0) ** 2 * (1.0 + 10.0 * np.sin(math.pi * w[:, 1:-1] + 1.0) ** 2)).sum(axis=1)
    last = (w[:, -1] - 1.0) ** 2 * (1.0 + np.sin(2.0 * math.pi * w[:, -1]) ** 2)
    return first + mid + last


def _levy_grad(W: FloatArray) -> FloatArray:
    w = 1.0 + (W - 1.0) / 4.0
    g = np.empty_like(w)
    g[:, 0] = math.pi * np.sin(2.0 * math.pi * w[:, 0])
    m = w[:, 1:-1]
    g[:, 1:-1] = 2.0 * (m - 1.0) * (1.0 + 10.0 * np.sin(math.pi * m + 1.0) ** 2) \
        + (m - 1.0) ** 2 * 10.0 * math.pi * np.sin(2.0 * (math.pi * m + 1.0))
    e = w[:, -1]
    g[:, -1] = 2.0 * (e - 1.0) * (1.0 + np.sin(2.0 * math.pi * e) ** 2) \
        + (e - 1.0) ** 2 * 2.0 * math.pi * np.sin(4.0 * math.pi * e)
    return g / 4.0


def _shifted(kind: str, n: int, d: int, C: float, lb: float, ub: float, seed: int,
             rng: np.random.Generator | None) -> ShiftedScaled:
    _check(f"dirichlet_{kind}", n, d, C, lb, ub)
    rng = np.random.default_rng(seed) if rng is None else rng
    scale = 0.1 + C * (_dirichlet(rng, n, d) - 1.0 / n)
    shift = C * (_dirichlet(rng, n, d) - 1.0 / n)
    return ShiftedScaled(kind, scale, shift, rng.uniform(0.0, 1.0, d), lb, ub)


@register_problem("dirichlet_ackley")
def dirichlet_ackley(n: int = 5, d: int = 300, C: float = 5.0, lb: float = -10.0, ub: float = 10.0,
                     seed: int = 0, rng: np.random.Generator | None = None) -> ShiftedScaled:
    """Ackley with Dirichlet-perturbed per-client scales and shifts (FZooS code's ``Ackley(div=C)``).

    Parameters as :func:`dirichlet_quadratic`; scales ``0.1 + C(a − 1/N)``, shifts ``C(b − 1/N)``.
    """
    return _shifted("ackley", n, d, C, lb, ub, seed, rng)


@register_problem("dirichlet_levy")
def dirichlet_levy(n: int = 5, d: int = 300, C: float = 5.0, lb: float = -10.0, ub: float = 10.0,
                   seed: int = 0, rng: np.random.Generator | None = None) -> ShiftedScaled:
    """Levy with Dirichlet-perturbed per-client scales and shifts (FZooS code's ``Levy(div=C)``).

    Parameters as :func:`dirichlet_quadratic`; scales ``0.1 + C(a − 1/N)``, shifts ``C(b − 1/N)``.
    """
    return _shifted("levy", n, d, C, lb, ub, seed, rng)
