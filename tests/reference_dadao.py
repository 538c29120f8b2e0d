"""DADAO written from the paper's equations, one event at a time: the reference for ``dadao``.

Nabli & Oyallon, "DADAO: Decoupled Accelerated Decentralized Asynchronous Optimization",
ICML 2023 (arXiv 2208.00779), Alg. 1 with the constants of the authors' public code, on
quadratics ``f_i(x) = ½ xᵀA_i x − b_iᵀx``. Independent of fedopt: the constants, χ1 of the
rate-weighted Laplacian (:mod:`reference_spectral`, dense numpy), the gradients, the
mixing flow and the event updates are all written here; only the event stream (times and
node ids) is an input.

Node ``i`` holds ``s_i = (x, x̃, y, ỹ, z, z̃)`` and its last-event time ``T_i``.

* Between events ``s_i`` follows ``ds/dt = M s`` with::

      x' = η(x̃ − x)      x̃' = η(x − x̃)
      y' = α(ỹ − y)      ỹ' = −θ(ν x̃ + y + z)
      z' = α(z̃ − z)      z̃' = α̃(z − z̃)

  applied when an event touches ``i``: ``s_i ← expm((t − T_i) M) s_i`` (``scipy.linalg.expm``
  of the 6×6 matrix, at every touch), ``T_i ← t``.
* Gradient event at ``i``: ``r = ∇f_i(x_i) − ν x_i − ỹ_i``; ``x_i −= γ r``, ``x̃_i −= γ̃ r``,
  ``ỹ_i += (δ + δ̃) r``.
* Communication event on ``(i, j)``: ``Δ = (y_i + z_i) − (y_j + z_j)``; ``z_i −= βΔ``,
  ``z_j += βΔ``, ``z̃_i −= β̃Δ``, ``z̃_j += β̃Δ``.

Constants (ν = μ/2): α = ¼√(ν/L), α̃ = η = ⅛√(ν/L), θ = ½√(L/ν), γ = 1/(4L),
γ̃ = 1/(4√(Lν)), δ = ¼√(ν/L), δ̃ = 1, β = ½, β̃ = 2 χ1(Λ) √(L/ν) with
``Λ = Σ_ij λ_ij (e_i − e_j)(e_i − e_j)ᵀ`` the Laplacian weighted by the gossip rates.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
from reference_spectral import chi1

#: Row of each variable in a node's 6 × d state block.
X, X_T, Y, Y_T, Z, Z_T = range(6)


class ReferenceDADAO:
    """Sequential DADAO on quadratics ``A`` (``[n, d, d]``), ``b`` (``[n, d]``) over a graph
    with edge list ``edges`` and gossip rates ``rates``, starting from ``x0`` (``[n, d]``)."""

    def __init__(self, A: np.ndarray, b: np.ndarray, edges: np.ndarray, rates: np.ndarray, x0: np.ndarray) -> None:
        self.A, self.b = np.asarray(A, dtype=np.float64), np.asarray(b, dtype=np.float64)
        n, d = self.b.shape
        eig = np.linalg.eigvalsh(self.A)
        self.L, self.mu = float(eig.max()), float(eig.min())
        self.chi1 = chi1(n, edges, rates)
        L, nu = self.L, self.mu / 2.0
        self.nu = nu
        self.alpha = 0.25 * math.sqrt(nu / L)
        self.alpha_t = 0.125 * math.sqrt(nu / L)
        self.eta = 0.125 * math.sqrt(nu / L)
        self.theta = 0.5 * math.sqrt(L / nu)
        self.gamma = 1.0 / (4.0 * L)
        self.gamma_t = 1.0 / (4.0 * math.sqrt(L * nu))
        self.delta = 0.25 * math.sqrt(nu / L)
        self.delta_t = 1.0
        self.beta = 0.5
        self.beta_t = 2.0 * self.chi1 * math.sqrt(L / nu)
        self.M = self.ode_matrix()
        self.S = np.zeros((n, 6, d))
        self.S[:, X] = x0
        self.T = np.zeros(n)

    def ode_matrix(self) -> np.ndarray:
        """``M`` of the mixing ODE, row by row from the equations above."""
        M = np.zeros((6, 6))
        M[X, X], M[X, X_T] = -self.eta, self.eta
        M[X_T, X], M[X_T, X_T] = self.eta, -self.eta
        M[Y, Y], M[Y, Y_T] = -self.alpha, self.alpha
        M[Y_T, X_T], M[Y_T, Y], M[Y_T, Z] = -self.theta * self.nu, -self.theta, -self.theta
        M[Z, Z], M[Z, Z_T] = -self.alpha, self.alpha
        M[Z_T, Z], M[Z_T, Z_T] = self.alpha_t, -self.alpha_t
        return M

    def mix(self, i: int, t: float) -> None:
        """Flow node ``i`` from ``T_i`` to ``t``."""
        self.S[i] = scipy.linalg.expm((t - self.T[i]) * self.M) @ self.S[i]
        self.T[i] = t

    def gradient_event(self, i: int, t: float) -> None:
        self.mix(i, t)
        s = self.S[i]
        r = (self.A[i] @ s[X] - self.b[i]) - self.nu * s[X] - s[Y_T]
        s[X] -= self.gamma * r
        s[X_T] -= self.gamma_t * r
        s[Y_T] += (self.delta + self.delta_t) * r

    def communication_event(self, i: int, j: int, t: float) -> None:
        self.mix(i, t)
        self.mix(j, t)
        si, sj = self.S[i], self.S[j]
        diff = (si[Y] + si[Z]) - (sj[Y] + sj[Z])
        si[Z] -= self.beta * diff
        sj[Z] += self.beta * diff
        si[Z_T] -= self.beta_t * diff
        sj[Z_T] += self.beta_t * diff

    def run(self, t: np.ndarray, node_a: np.ndarray, node_b: np.ndarray) -> None:
        """Apply events in order: event ``k`` at time ``t[k]`` is a gradient event at
        ``node_a[k]`` when ``node_b[k] < 0``, else a communication on ``(node_a[k], node_b[k])``."""
        for tk, a, b in zip(t.tolist(), node_a.tolist(), node_b.tolist()):
            if b < 0:
                self.gradient_event(a, tk)
            else:
                self.communication_event(a, b, tk)

    def synchronize(self, t: float) -> None:
        """Flow every node to time ``t``."""
        for i in range(self.S.shape[0]):
            self.mix(i, t)
