"""Shared parts of the federated zeroth-order methods: Adam over clients, the FD local loop.

Shu, Lin, Dai & Low ("Federated zeroth-order optimization using trajectory-informed
surrogate gradients", arXiv 2308.04077, eq. (2)) write every method as local steps on

    ĝ_i(x) = g_i(x) + correction_i(x),      x ← x − η ĝ   (or an Adam step),

with a finite-difference estimate ``g_i`` (eq. (3), :mod:`fedopt.estimators.finite_diff`)
and a method-specific correction: none (FedZO / FedAvg), ``γ (x − x_{r−1})`` (FedProx),
control variates (SCAFFOLD types I and II). The local optimizer is Adam with its state
reset at every round (the paper's "General Settings" and its code: ``optax.adam`` is
re-initialized at each client update); plain SGD is the alternative. Iterates are not
projected (the objectives clip their inputs, as in the paper's code).

Queries per client and round (``T`` local steps, ``Q`` directions, forward differences):
``f(x_{r−1})`` once at the start, then per step ``Q`` perturbed points and ``f`` at the new
iterate (which the next step's difference reuses): ``1 + T(Q + 1)``, all counted
(``2TQ + 1`` with central differences, which do not reuse ``f(x)``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from fedopt.algorithms.base import Context, FederatedAlgorithm, Params
from fedopt.core.arrays import FloatArray, IntArray, State
from fedopt.estimators.finite_diff import fd_gradient, sample_directions


class ZOParams(Params):
    lr: float = Field(0.01, gt=0, description="local step size η (Adam's learning rate)")
    local_steps: int = Field(10, ge=1, description="local steps T per round")
    optimizer: Literal["adam", "sgd"] = Field("adam", description="local optimizer (Adam reset every round)")
    beta1: float = Field(0.9, ge=0, lt=1, description="Adam β1")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam β2")
    adam_eps: float = Field(1e-8, gt=0, description="Adam ε")
    directions: Literal["gaussian", "orthonormal", "sphere"] = Field(
        "orthonormal", description="FD directions (orthonormalized Gaussian: the FZooS code)")
    num_dirs: int = Field(20, ge=1, description="directions Q per estimate")
    mu: float = Field(0.01, gt=0, description="FD smoothing μ")
    scheme: Literal["forward", "central"] = Field("forward", description="forward or central differences")
    fd_scale: Literal["1/Q", "d/Q"] = Field(
        "1/Q", description="1/Q: the FZooS code (≈ ∇f/d for unit directions); d/Q: unbiased for unit directions")
    clients_per_round: int | None = Field(None, ge=1, description="sampled clients per round (None: all)")


class Adam:
    """Adam (Kingma & Ba 2015, Alg. 1) on a block of rows, state created fresh (a round's)."""

    def __init__(self, shape: tuple[int, ...], p: ZOParams) -> None:
        self.p = p
        self.m = np.zeros(shape)
        self.v = np.zeros(shape)
        self.t = 0

    def step(self, X: FloatArray, G: FloatArray) -> FloatArray:
        """The new rows ``X − lr · m̂ / (√v̂ + ε)`` (plain ``X − lr·G`` for SGD)."""
        p = self.p
        if p.optimizer == "sgd":
            return X - p.lr * G
        self.t += 1
        self.m = p.beta1 * self.m + (1.0 - p.beta1) * G
        self.v = p.beta2 * self.v + (1.0 - p.beta2) * G * G
        mhat = self.m / (1.0 - p.beta1**self.t)
        vhat = self.v / (1.0 - p.beta2**self.t)
        return X - p.lr * mhat / (np.sqrt(vhat) + p.adam_eps)


def problem_start(ctx: Context) -> FloatArray:
    """The problem's own initial point ``x0`` where it has one (the black-box problems draw
    it with the problem, as the FZooS code does), else zeros."""
    x0 = getattr(ctx.problem, "x0", None)
    return np.zeros(ctx.d) if x0 is None else np.array(x0, dtype=np.float64)


class ZOFederated(FederatedAlgorithm):
    """Federated finite-difference methods: :meth:`correction` is the method's term."""

    Params = ZOParams
    params: ZOParams

    def initial_point(self, ctx: Context) -> FloatArray:
        return problem_start(ctx)

    def iterates(self, state: State, ctx: Context, t: float) -> FloatArray:
        return np.broadcast_to(state["x"], (ctx.n, ctx.d))

    def sample_clients(self, ctx: Context) -> IntArray:
        k = self.params.clients_per_round
        if k is None or k >= ctx.n:
            return np.arange(ctx.n)
        return np.sort(ctx.rng["sampling"].choice(ctx.n, size=k, replace=False))

    def fd_scale(self, ctx: Context) -> float:
        return 1.0 if self.params.fd_scale == "1/Q" else float(ctx.d)

    def estimate(self, ctx: Context, X: FloatArray, clients: IntArray,
                 fx: FloatArray | None) -> tuple[FloatArray, FloatArray | None]:
        """The FD estimate at ``X`` (``fx``: the known ``f(X)`` for forward differences)."""
        p = self.params
        U = sample_directions(p.directions, ctx.node_rng("directions"), clients, p.num_dirs, ctx.d)
        return fd_gradient(ctx.oracle, X, clients, U, p.mu, p.scheme, self.fd_scale(ctx), fx)

    def correction(self, payload: dict[str, np.ndarray], state: State, ctx: Context, clients: IntArray,
                   X: FloatArray, x_start: FloatArray) -> FloatArray | None:
        """The method's correction term at ``X`` (``None``: none)."""
        return None

    def local_steps(self, payload: dict[str, np.ndarray], state: State, ctx: Context,
                    clients: IntArray) -> tuple[FloatArray, FloatArray]:
        """``T`` corrected FD steps from the broadcast ``x``: ``(X_T [k, d], mean of the
        uncorrected estimates [k, d])``."""
        p = self.params
        x0 = payload["x"]
        X = np.tile(x0, (len(clients), 1))
        fx = ctx.oracle.query(X, clients) if p.scheme == "forward" else None
        opt = Adam(X.shape, p)
        g_sum = np.zeros_like(X)
        for _ in range(p.local_steps):
            G, _ = self.estimate(ctx, X, clients, fx)
            g_sum += G
            corr = self.correction(payload, state, ctx, clients, X, x0)
            X = opt.step(X, G if corr is None else G + corr)
            ctx.oracle.local_step(clients)
            fx = ctx.oracle.query(X, clients)
        return X, g_sum / p.local_steps
