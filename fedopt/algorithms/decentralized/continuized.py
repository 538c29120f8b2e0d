"""Accelerated continuized gossip for decentralized optimization (dual, asynchronous).

Even, Berthier, Bach, Flammarion, Gaillard, Hendrikx, Massoulié and Taylor,
"A Continuized View on Nesterov Acceleration for Stochastic Gradient Descent
and Randomized Gossip", NeurIPS 2021 (arXiv 2106.07644), Appendix H
(accelerated asynchronous decentralized optimization, eqs. (61)–(63)), in the
form used by the DADAO paper's comparison (with the factor 2 of eq. (63)
moved to the numerator, the typo noted there).

Each node holds dual variables ``(y_i, z_i)``; between events they mix by the
ODE ``y' = η(z − y)``, ``z' = η(y − z)`` (integrated exactly and lazily). Edges
fire at total rate 1 (uniformly, ``P_ij = 1/|E|``); at an event on ``(i, j)``
both nodes compute a dual gradient and exchange it::

    G = ∇f_i*(y_i) − ∇f_j*(y_j)
    y_i −= γ R_ij G,  y_j += γ R_ij G,  z_i −= γ̃ G,  z_j += γ̃ G

with ``R_ij = (e_i − e_j)ᵀ L_norm⁺ (e_i − e_j)`` (no ½ factor),
``L_norm = L_G/|E|``, ``μ_g = λ₂⁺(L_norm)``, ``R = max_ij R_ij`` and
``η = √(μ_g/R)·√(μ/L)``, ``γ = μ/(2R)``, ``γ̃ = √(Lμ/(2μ_g R))``. The primal
estimate of node i is ``∇f_i*(z_i)``. Communications per unit of "√κ log 1/ε"
are ``√(2χ₁χ₂)`` of ``L_norm`` (DADAO paper, §4 table), with 2 dual gradients
per communication.

Only for local objectives with a closed-form conjugate gradient (least squares
/ quadratics; see :meth:`fedopt.problems.base.Problem.conjugate_grad`).
``event_rate`` rescales time only (the ODE rate scales with it), so the
sequence of states after each event has the same law for every value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from fedopt.algorithms.base import Complexity, Context, EventAlgorithm, Layout, Params, Prepared, register_algorithm
from fedopt.algorithms.decentralized.adom_plus import laplacian_spectrum
from fedopt.core.arrays import FloatArray, IntArray, State
from fedopt.problems.base import Problem, quadratic_form
from fedopt.topology.graph import Topology
from fedopt.topology.spectral import effective_resistances


class ContinuizedParams(Params):
    event_rate: float = Field(1.0, gt=0, description="total communication events per unit time (paper: 1)")


@dataclass(frozen=True, eq=False)
class ContinuizedPrepared(Prepared):
    """The constants of App. H for one graph: edge resistances ``R_ij`` (keyed by
    ``i·n + j``, ``i < j``, in edge order), ``η``, ``γ``, ``γ̃``."""

    R_edge: FloatArray
    keys: IntArray
    eta: float
    gamma: float
    gamma_t: float


@register_algorithm("continuized")
class Continuized(EventAlgorithm):
    Params = ContinuizedParams
    params: ContinuizedParams
    needs_strong_convexity = True
    layout = {"y": Layout.NODE, "z": Layout.NODE, "T": Layout.NODE}
    #: App. H: rate η = √(μ_g/R)·√(μ/L) at one communication per unit time (event_rate rescales
    #: time only), so O(√(R/μ_g)·√κ log 1/ε) = O(√(2χ1χ2) of L_G/|E|) = O(|E|·√(χ1χ2) of L_G)
    #: communications, two dual gradients each.
    complexity = (
        Complexity("messages", {"edges": 1.0, "sqrt_chi1_chi2": 1.0}, 0.5, "Even et al. 2021, App. H"),
        Complexity("grad_evals", {"edges": 1.0, "sqrt_chi1_chi2": 1.0}, 0.5, "Even et al. 2021, App. H"),
    )

    def prepare(self, problem: Problem, graphs: Sequence[Topology]) -> list[ContinuizedPrepared]:
        if problem.mu is None or not problem.mu > 0:
            raise ValueError("continuized: needs a strongly convex problem (problem.mu > 0)")
        quadratic_form(problem)
        return [self._prepare_graph(float(problem.L), float(problem.mu), top) for top in graphs]

    def _prepare_graph(self, L: float, mu: float, top: Topology) -> ContinuizedPrepared:
        w = np.full(top.m, 1.0 / top.m)
        # edge resistances b_eᵀ L_norm⁺ b_e without the ½ factor (their App. H)
        Re = effective_resistances(top, w)
        i, j = top.edges[:, 0], top.edges[:, 1]
        R = float(Re.max())
        mu_g = laplacian_spectrum(top, w)[0]
        return ContinuizedPrepared(
            R_edge=Re, keys=i * top.n + j,
            eta=math.sqrt(mu_g / R) * math.sqrt(mu / L) * self.params.event_rate,
            gamma=mu / (2 * R), gamma_t=math.sqrt(L * mu / (2 * mu_g * R)),
        )

    def init(self, ctx: Context) -> State:
        z = np.zeros((ctx.n, ctx.d))
        return {"y": z, "z": z.copy(), "T": np.zeros(ctx.n)}

    def clock_rates(self, ctx: Context) -> tuple[FloatArray, FloatArray]:
        m = ctx.topology.m
        return np.zeros(ctx.n), np.full(m, self.params.event_rate / m)

    def on_compute(self, state: State, ctx: Context, nodes: IntArray, t: FloatArray) -> None:
        """No compute clock (gradients are taken at communication events)."""

    @staticmethod
    def _mixed(state: State, eta: float, nodes: IntArray, t: FloatArray) -> tuple[FloatArray, FloatArray]:
        y, z = state["y"][nodes], state["z"][nodes]
        e = np.exp(-2.0 * eta * (t - state["T"][nodes]))[:, None]
        mean, half = 0.5 * (y + z), 0.5 * (y - z) * e
        return mean + half, mean - half

    def gossip_message(self, state: State, ctx: Context, nodes: IntArray, t: FloatArray) -> FloatArray:
        y, z = self._mixed(state, ctx.prepared_as(ContinuizedPrepared).eta, nodes, t)
        state["y"][nodes], state["z"][nodes], state["T"][nodes] = y, z, t
        return ctx.oracle.conjugate_grad(y, nodes)

    def on_gossip(
        self, state: State, ctx: Context, nodes: IntArray, t: FloatArray, own: FloatArray, peer: FloatArray
    ) -> None:
        s = ctx.prepared_as(ContinuizedPrepared)
        K = len(nodes) // 2
        a, b = nodes[:K], nodes[K:]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        R = s.R_edge[np.searchsorted(s.keys, lo * ctx.n + hi)]
        R = np.concatenate((R, R))[:, None]
        G = own - peer
        state["y"][nodes] -= s.gamma * R * G
        state["z"][nodes] -= s.gamma_t * G

    def synchronize(self, state: State, ctx: Context, t: float) -> None:
        nodes = np.arange(ctx.n)
        y, z = self._mixed(state, ctx.prepared_as(ContinuizedPrepared).eta, nodes, np.full(ctx.n, float(t)))
        state["y"][:], state["z"][:], state["T"][:] = y, z, float(t)

    def iterates(self, state: State, ctx: Context, t: float) -> FloatArray:
        """Primal estimates ``∇f_i*(z_i)`` at time ``t`` (state unchanged)."""
        nodes = np.arange(ctx.n)
        _, z = self._mixed(state, ctx.prepared_as(ContinuizedPrepared).eta, nodes, np.full(ctx.n, float(t)))
        return ctx.problem.conjugate_grad(z, nodes)
