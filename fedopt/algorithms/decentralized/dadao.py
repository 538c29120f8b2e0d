"""DADAO: decoupled, accelerated, asynchronous, decentralized optimization.

Nabli & Oyallon, "DADAO: Decoupled Accelerated Decentralized Asynchronous
Optimization", ICML 2023 (arXiv 2208.00779), Algorithm 1, with the constants
of the authors' public implementation. Every node ``i`` holds six vectors
``s_i = (x, x̃, y, ỹ, z, z̃)`` and a last-event time ``T_i``:

* between two events touching ``i``, ``s_i`` follows the linear ODE
  ``ds/dt = M s`` (Alg. 1, the "mixing" dynamics)::

      x' = η(x̃ − x)           x̃' = η(x − x̃)
      y' = α(ỹ − y)           ỹ' = −θ(ν x̃ + y + z)
      z' = α(z̃ − z)           z̃' = α̃(z − z̃)

  integrated exactly and lazily, ``s_i ← exp((t − T_i) M) s_i`` when an event
  touches ``i`` (closed form in :func:`mixing_matrices`);
* a gradient event at ``i`` (Poisson clock of rate 1 per node) takes
  ``r = ∇f_i(x_i) − ν x_i − ỹ_i`` and sets ``x_i −= γ r``, ``x̃_i −= γ̃ r``,
  ``ỹ_i += (δ + δ̃) r``;
* a communication event on edge ``(i, j)`` (Poisson clock of rate ``λ_ij``)
  exchanges ``y + z`` and, with ``Δ = (y_i + z_i) − (y_j + z_j)``, sets
  ``z_i −= βΔ, z_j += βΔ`` and ``z̃_i −= β̃Δ, z̃_j += β̃Δ``.

Constants (ν = μ/2): α = ¼√(ν/L), α̃ = η = ⅛√(ν/L), θ = ½√(L/ν), γ = 1/(4L),
γ̃ = 1/(4√(Lν)), δ = ¼√(ν/L), δ̃ = 1, β = ½ and β̃ = 2 χ₁(Λ) √(L/ν), where
``Λ = Σ_ij λ_ij (e_i − e_j)(e_i − e_j)ᵀ`` is the rate-weighted Laplacian. The
rates must satisfy the paper's sufficient condition ``2 χ₁(Λ) χ₂(Λ) ≤ 1``
(χ₁ = 1/λ₂⁺(Λ), χ₂ = max edge effective resistance with the factor ½). By
default the rates are uniform over edges at equality, ``λ_tot = √(2χ₁χ₂)`` of
``L_G/|E|``. With these, the method needs O(n√κ log 1/ε) gradients and
O(n√(χ₁χ₂)√κ log 1/ε) communications (paper, abstract and Thm. 1), and it
converges linearly to the exact minimizer (``Σ_i z_i = Σ_i z̃_i = 0`` is
invariant, which makes the fixed point unbiased).

Time-varying graphs (paper §4.3): χ₁, χ₂ are the worst case over the
sequence; the rates of every graph are set from them and β̃ uses the
worst-case χ₁ of the rate-weighted Laplacians.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
from pydantic import Field

from fedopt.algorithms.base import Complexity, Context, EventAlgorithm, Layout, Params, Prepared, register_algorithm
from fedopt.core.arrays import FloatArray, IntArray, State
from fedopt.problems.base import Problem
from fedopt.topology.graph import Topology

#: Row order of the six per-node vectors in ``state["s"]``.
VARIABLES = ("x", "x_tilde", "y", "y_tilde", "z", "z_tilde")
#: Slack on the rate condition ``2 χ₁ χ₂ ≤ 1`` (rates given to a few digits).
RATE_CONDITION_RTOL = 1e-6


class DADAOParams(Params):
    rate_scale: float = Field(
        1.0, gt=0, description="multiply every gossip rate (uniform or given) by this factor"
    )
    allow_subcritical: bool = Field(
        False, description="accept rates that violate 2·χ1(Λ)·χ2(Λ) ≤ 1 (the paper's guarantee is lost)"
    )
    batch_size: int | None = Field(None, ge=1, description="minibatch size of gradient events (None: full local gradient)")
    init_noise: float = Field(
        0.0, ge=0, description="x_i(0) = x_0 + init_noise · N(0, I) per node (the paper's code: random x_i)"
    )


@dataclass(frozen=True)
class DADAOConstants:
    """The scalar constants of Alg. 1 (see the module docstring)."""

    L: float
    mu: float
    chi1: float  # χ₁(Λ) of the rate-weighted Laplacian (worst case over a sequence)
    nu: float
    alpha: float
    alpha_t: float
    eta: float
    theta: float
    gamma: float
    gamma_t: float
    delta: float
    delta_t: float
    beta: float
    beta_t: float

    @classmethod
    def from_problem(cls, L: float, mu: float, chi1: float) -> "DADAOConstants":
        nu = mu / 2.0
        s = math.sqrt(nu / L)
        return cls(
            L=L, mu=mu, chi1=chi1, nu=nu,
            alpha=s / 4.0, alpha_t=s / 8.0, eta=s / 8.0, theta=0.5 / s,
            gamma=1.0 / (4.0 * L), gamma_t=1.0 / (4.0 * math.sqrt(L * nu)),
            delta=s / 4.0, delta_t=1.0, beta=0.5, beta_t=2.0 * chi1 / s,
        )

    def ode_vector(self) -> FloatArray:
        """``(η, α, α̃, θ, ν)``: what the mixing kernels need."""
        return np.array([self.eta, self.alpha, self.alpha_t, self.theta, self.nu])

    def ode_matrix(self) -> FloatArray:
        """The 6×6 matrix ``M`` of the mixing ODE (order :data:`VARIABLES`)."""
        e, a, at, th, nu = self.eta, self.alpha, self.alpha_t, self.theta, self.nu
        return np.array([
            [-e, e, 0, 0, 0, 0],
            [e, -e, 0, 0, 0, 0],
            [0, 0, -a, a, 0, 0],
            [0, -th * nu, -th, 0, -th, 0],
            [0, 0, 0, 0, -a, a],
            [0, 0, 0, 0, at, -at],
        ], dtype=np.float64)


# ---- exact mixing: closed form of exp(Δt·M) ------------------------------------------
@numba.njit(cache=True)
def _phi(dt: float, c: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - jitted
    """``out[6, 6] = exp(dt·M)`` in closed form.

    (x, x̃): the mean is conserved and x − x̃ decays as e^{−2η dt}.
    (z, z̃): c = (α̃z + αz̃)/(α+α̃) is conserved, z − z̃ decays as e^{−(α+α̃)dt}.
    (y, ỹ): v' = A v + B u(t) with A = [[−α, α], [−θ, 0]], B = (0, −θ)ᵀ and the
    forcing u = νx̃ + z = u₀ + u₁e^{−a t} + u₂e^{−b t} (a = 2η, b = α+α̃); so
    v(dt) = E v₀ + P₀u₀ + P_a u₁ + P_b u₂ with E = e^{A dt} (underdamped,
    e^{−α dt/2}[cos ω dt · I + sin ω dt/ω · (A + α/2 I)], ω² = αθ − α²/4),
    P₀ = A⁻¹(E − I)B and P_r = (A + rI)⁻¹(E − e^{−r dt}I)B.
    """
    eta = c[0]
    al = c[1]
    alt = c[2]
    th = c[3]
    nu = c[4]
    for i in range(6):
        for j in range(6):
            out[i, j] = 0.0
    a = 2.0 * eta
    ex = math.exp(-a * dt)
    out[0, 0] = 0.5 * (1.0 + ex)
    out[0, 1] = 0.5 * (1.0 - ex)
    out[1, 0] = 0.5 * (1.0 - ex)
    out[1, 1] = 0.5 * (1.0 + ex)
    b = al + alt
    ez = math.exp(-b * dt)
    out[4, 4] = (alt + al * ez) / b
    out[4, 5] = al * (1.0 - ez) / b
    out[5, 4] = alt * (1.0 - ez) / b
    out[5, 5] = (al + alt * ez) / b
    # E = exp(A dt)
    om = math.sqrt(al * th - 0.25 * al * al)
    damp = math.exp(-0.5 * al * dt)
    co = damp * math.cos(om * dt)
    si = damp * math.sin(om * dt) / om
    e00 = co - 0.5 * al * si
    e01 = al * si
    e10 = -th * si
    e11 = co + 0.5 * al * si
    # (E − rI)B with B = (0, −θ): column 1 of (E − rI) times −θ
    # P0 = A⁻¹ (E − I) B, A⁻¹ = [[0, −α], [θ, −α]] / (αθ)
    w0 = -th * e01
    w1 = -th * (e11 - 1.0)
    det = al * th
    p0y = (-al * w1) / det
    p0t = (th * w0 - al * w1) / det
    # P_a = (A + aI)⁻¹ (E − e^{−a dt} I) B, (A + aI)⁻¹ = [[a, −α], [θ, a − α]] / det_a
    w0 = -th * e01
    w1 = -th * (e11 - ex)
    det = a * (a - al) + al * th
    pay = (a * w0 - al * w1) / det
    pat = (th * w0 + (a - al) * w1) / det
    w1 = -th * (e11 - ez)
    det = b * (b - al) + al * th
    pby = (b * w0 - al * w1) / det
    pbt = (th * w0 + (b - al) * w1) / det
    # u0 = ν(x + x̃)/2 + (α̃ z + α z̃)/b,  u1 = −ν(x − x̃)/2,  u2 = α(z − z̃)/b
    hn = 0.5 * nu
    out[2, 0] = hn * (p0y - pay)
    out[2, 1] = hn * (p0y + pay)
    out[2, 2] = e00
    out[2, 3] = e01
    out[2, 4] = (alt * p0y + al * pby) / b
    out[2, 5] = (al * p0y - al * pby) / b
    out[3, 0] = hn * (p0t - pat)
    out[3, 1] = hn * (p0t + pat)
    out[3, 2] = e10
    out[3, 3] = e11
    out[3, 4] = (alt * p0t + al * pbt) / b
    out[3, 5] = (al * p0t - al * pbt) / b


@numba.njit(cache=True)
def _mixing_matrices(dts: np.ndarray, c: np.ndarray) -> np.ndarray:  # pragma: no cover - jitted
    out = np.empty((dts.shape[0], 6, 6))
    for k in range(dts.shape[0]):
        _phi(dts[k], c, out[k])
    return out


def mixing_matrices(dt: FloatArray, const: DADAOConstants) -> FloatArray:
    """``exp(Δt_k · M)`` for a batch of ``Δt`` (``[k, 6, 6]``), in closed form."""
    return _mixing_matrices(np.ascontiguousarray(dt, dtype=np.float64).reshape(-1), const.ode_vector())


@numba.njit(cache=True)
def _apply_phi(S: np.ndarray, i: int, P: np.ndarray) -> None:  # pragma: no cover - jitted
    """``S[i] ← P S[i]`` for the block structure of ``exp(Δt·M)``."""
    for q in range(S.shape[2]):
        x = S[i, 0, q]
        xt = S[i, 1, q]
        y = S[i, 2, q]
        yt = S[i, 3, q]
        z = S[i, 4, q]
        zt = S[i, 5, q]
        S[i, 0, q] = P[0, 0] * x + P[0, 1] * xt
        S[i, 1, q] = P[1, 0] * x + P[1, 1] * xt
        S[i, 2, q] = P[2, 0] * x + P[2, 1] * xt + P[2, 2] * y + P[2, 3] * yt + P[2, 4] * z + P[2, 5] * zt
        S[i, 3, q] = P[3, 0] * x + P[3, 1] * xt + P[3, 2] * y + P[3, 3] * yt + P[3, 4] * z + P[3, 5] * zt
        S[i, 4, q] = P[4, 4] * z + P[4, 5] * zt
        S[i, 5, q] = P[5, 4] * z + P[5, 5] * zt


@numba.njit(cache=True)
def _mix_nodes(S: np.ndarray, T: np.ndarray, nodes: np.ndarray, t: np.ndarray, c: np.ndarray) -> None:  # pragma: no cover
    P = np.empty((6, 6))
    for k in range(nodes.shape[0]):
        i = nodes[k]
        dt = t[k] - T[i]
        if dt != 0.0:
            _phi(dt, c, P)
            _apply_phi(S, i, P)
            T[i] = t[k]


@numba.njit(cache=True)
def _mix_read(S: np.ndarray, T: np.ndarray, nodes: np.ndarray, t: np.ndarray, c: np.ndarray, row: int) -> np.ndarray:  # pragma: no cover
    """Mix ``nodes`` to ``t``; return ``x`` (``row = 0``) or ``y + z`` (``row = 2``)."""
    _mix_nodes(S, T, nodes, t, c)
    d = S.shape[2]
    out = np.empty((nodes.shape[0], d))
    for k in range(nodes.shape[0]):
        i = nodes[k]
        if row == 0:
            for q in range(d):
                out[k, q] = S[i, 0, q]
        else:
            for q in range(d):
                out[k, q] = S[i, 2, q] + S[i, 4, q]
    return out


@numba.njit(cache=True)
def _gradient_step(S: np.ndarray, nodes: np.ndarray, g: np.ndarray, nu: float, gamma: float, gamma_t: float,
                   delta: float) -> None:  # pragma: no cover
    for k in range(nodes.shape[0]):
        i = nodes[k]
        for q in range(S.shape[2]):
            r = g[k, q] - nu * S[i, 0, q] - S[i, 3, q]
            S[i, 0, q] -= gamma * r
            S[i, 1, q] -= gamma_t * r
            S[i, 3, q] += delta * r


@numba.njit(cache=True)
def _gossip_step(S: np.ndarray, T: np.ndarray, nodes: np.ndarray, t: np.ndarray, c: np.ndarray, own: np.ndarray,
                 peer: np.ndarray, beta: float, beta_t: float) -> None:  # pragma: no cover
    _mix_nodes(S, T, nodes, t, c)  # no-op after gossip_message (Δt = 0)
    for k in range(nodes.shape[0]):
        i = nodes[k]
        for q in range(S.shape[2]):
            dlt = own[k, q] - peer[k, q]
            S[i, 4, q] -= beta * dlt
            S[i, 5, q] -= beta_t * dlt


# ---- rates and constants ----------------------------------------------------------------
def _chis(top: Topology, weights: FloatArray | None) -> tuple[float, float]:
    from fedopt.topology.spectral import chi1, chi2

    return float(chi1(top, weights)), float(chi2(top, weights))


def normalized_rate(top: Topology) -> float:
    """``λ_tot = √(2 χ₁ χ₂)`` of ``L_norm = L_G/|E|`` (the total uniform rate at the condition)."""
    c1, c2 = _chis(top, np.full(top.m, 1.0 / top.m))
    return math.sqrt(2.0 * c1 * c2)


@dataclass(frozen=True, eq=False)
class RatePlan:
    """Per-graph edge rates (``rates[k]`` of ``topologies[k]``) and the worst-case χ's of
    their rate-weighted Laplacians."""

    rates: tuple[FloatArray, ...]
    chi1: float
    chi2: float
    topologies: tuple[Topology, ...] = ()

    def rates_for(self, top: Topology) -> FloatArray:
        """The edge rates of ``top``: one of :attr:`topologies`, or a graph with the same
        nodes, edges and given rates (the rates are a function of those)."""
        for cand, r in zip(self.topologies, self.rates):
            if cand is top:
                return r
        for cand, r in zip(self.topologies, self.rates):
            if cand.n == top.n and np.array_equal(cand.edges, top.edges) and _same_rates(cand.rates, top.rates):
                return r
        raise ValueError(
            f"dadao: topology {top.name!r} is not one of the graphs its rates were planned for "
            f"({', '.join(repr(t.name) for t in self.topologies)})"
        )


def _same_rates(a: FloatArray | None, b: FloatArray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def plan_rates(tops: Sequence[Topology], scale: float, allow_subcritical: bool) -> RatePlan:
    """Edge rates of every graph of ``tops`` (uniform at the condition unless given)."""
    lam_tot = math.nan
    if any(t.rates is None for t in tops):
        # worst-case χ's of L_norm over the graphs without given rates (paper §4.3)
        chis = [_chis(t, np.full(t.m, 1.0 / t.m)) for t in tops if t.rates is None]
        lam_tot = math.sqrt(2.0 * max(c[0] for c in chis) * max(c[1] for c in chis))
    rates: list[FloatArray] = []
    c1w = c2w = 0.0
    for t in tops:
        r = (t.rates if t.rates is not None else np.full(t.m, lam_tot / t.m)) * scale
        if (r <= 0).any():
            raise ValueError(f"dadao: topology {t.name!r} has non-positive gossip rates; every edge needs λ_ij > 0")
        c1, c2 = _chis(t, r)
        c1w, c2w = max(c1w, c1), max(c2w, c2)
        rates.append(r)
    cond = 2.0 * c1w * c2w
    if cond > 1.0 + RATE_CONDITION_RTOL and not allow_subcritical:
        raise ValueError(
            f"dadao: gossip rates violate the condition 2·χ1(Λ)·χ2(Λ) ≤ 1 (got {cond:.4g}); "
            f"scale them up by at least {math.sqrt(cond):.4g} (rate_scale) or pass allow_subcritical=True"
        )
    return RatePlan(tuple(rates), c1w, c2w, tuple(tops))


@dataclass(frozen=True, eq=False)
class DADAOPrepared(Prepared):
    """The run's rate plan and constants, the edge rates of one graph, and the constants
    the kernels take as plain floats (``vec``: :meth:`DADAOConstants.ode_vector`;
    ``delta`` = δ + δ̃, the ỹ step of a gradient event)."""

    plan: RatePlan
    const: DADAOConstants
    rates: FloatArray
    vec: FloatArray
    nu: float
    gamma: float
    gamma_t: float
    delta: float
    beta: float
    beta_t: float

    @classmethod
    def build(cls, plan: RatePlan, const: DADAOConstants, rates: FloatArray) -> DADAOPrepared:
        return cls(plan, const, rates, const.ode_vector(), const.nu, const.gamma, const.gamma_t,
                   const.delta + const.delta_t, const.beta, const.beta_t)


# ---- the algorithm --------------------------------------------------------------------
@register_algorithm("dadao")
class DADAO(EventAlgorithm):
    """DADAO (Nabli & Oyallon 2023, Alg. 1); see the module docstring.

    State: ``s [n, 6, d]`` (rows in :data:`VARIABLES` order) and the last-event
    times ``T [n]``, both per node.
    """

    Params = DADAOParams
    params: DADAOParams
    needs_strong_convexity = True
    layout = {"s": Layout.NODE, "T": Layout.NODE}
    #: Thm. 1 with uniform rates at 2χ1χ2 = 1: time O(√κ log 1/ε) (n gradients per unit) at
    #: λ_tot = √(2χ1χ2) of L_G/|E| = √2·|E|·√(χ1χ2) of L_G communications per unit time.
    complexity = (
        Complexity("messages", {"edges": 1.0, "sqrt_chi1_chi2": 1.0}, 0.5,
                   "Nabli & Oyallon 2023, Thm. 1 (uniform rates λ_tot = √(2χ1χ2) of L_G/|E|)"),
        Complexity("grad_evals", {"n": 1.0}, 0.5, "Nabli & Oyallon 2023, Thm. 1"),
    )

    def prepare(self, problem: Problem, graphs: Sequence[Topology]) -> list[DADAOPrepared]:
        """Rates of every graph (uniform at the condition from the worst-case χ's over the
        graphs, unless given) and the constants with the worst χ₁ (paper §4.3)."""
        if problem.mu is None or not problem.mu > 0:
            raise ValueError("dadao: needs a strongly convex problem (problem.mu > 0)")
        plan = plan_rates(graphs, self.params.rate_scale, self.params.allow_subcritical)
        const = DADAOConstants.from_problem(float(problem.L), float(problem.mu), plan.chi1)
        return [DADAOPrepared.build(plan, const, r) for r in plan.rates]

    def constants(self, ctx: Context) -> DADAOConstants:
        return ctx.prepared_as(DADAOPrepared).const

    def rate_plan(self, ctx: Context) -> RatePlan:
        return ctx.prepared_as(DADAOPrepared).plan

    def init(self, ctx: Context) -> State:
        n, d = ctx.n, ctx.d
        s = np.zeros((n, 6, d))
        s[:, 0] = self.initial_point(ctx)
        if self.params.init_noise > 0:
            s[:, 0] += self.params.init_noise * ctx.rng["init"].standard_normal((n, d))
        return {"s": s, "T": np.zeros(n)}

    def clock_rates(self, ctx: Context) -> tuple[FloatArray, FloatArray]:
        return np.ones(ctx.n), ctx.prepared_as(DADAOPrepared).rates

    def on_compute(self, state: State, ctx: Context, nodes: IntArray, t: FloatArray) -> None:
        run = ctx.prepared_as(DADAOPrepared)
        S = state["s"]
        X = _mix_read(S, state["T"], nodes, t, run.vec, 0)
        if self.params.batch_size is None:
            g = ctx.oracle.grad(X, nodes)
        else:
            g = ctx.oracle.stochastic_grad(X, nodes, ctx.node_rng("sampling"), self.params.batch_size)
        _gradient_step(S, nodes, g, run.nu, run.gamma, run.gamma_t, run.delta)
        ctx.oracle.local_step(nodes)

    def gossip_message(self, state: State, ctx: Context, nodes: IntArray, t: FloatArray) -> FloatArray:
        return _mix_read(state["s"], state["T"], nodes, t, ctx.prepared_as(DADAOPrepared).vec, 2)  # type: ignore[no-any-return]

    def on_gossip(
        self, state: State, ctx: Context, nodes: IntArray, t: FloatArray, own: FloatArray, peer: FloatArray
    ) -> None:
        run = ctx.prepared_as(DADAOPrepared)
        _gossip_step(state["s"], state["T"], nodes, t, run.vec, own, peer, run.beta, run.beta_t)

    def synchronize(self, state: State, ctx: Context, t: float) -> None:
        n = state["T"].shape[0]
        _mix_nodes(state["s"], state["T"], np.arange(n), np.full(n, float(t)), ctx.prepared_as(DADAOPrepared).vec)

    def iterates(self, state: State, ctx: Context, t: float) -> FloatArray:
        """``x_i`` propagated to ``t`` (the (x, x̃) block is autonomous; the state is not changed)."""
        eta = ctx.prepared_as(DADAOPrepared).const.eta
        S = state["s"]
        ex = np.exp(-2.0 * eta * (t - state["T"]))[:, None]
        return 0.5 * (1.0 + ex) * S[:, 0] + 0.5 * (1.0 - ex) * S[:, 1]
