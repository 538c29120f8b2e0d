"""FZooS: federated zeroth-order optimization with trajectory-informed surrogate gradients.

Shu, Lin, Dai & Low, arXiv 2308.04077 (§4, eq. (4), "General Settings" of Appx 12). Each
client keeps its query history (per-client state, it never leaves the client's shard) and
runs ``T`` local Adam steps (state reset every round, lr 0.01) along

    ĝ_i(x) = ∇μ_i(x) + γ_t (∇μ̂_{r−1}(x) − ∇μ̂^{(i)}_{r−1}(x)),      γ_t = γ₀ / t,

where ``∇μ_i`` is the derived-GP gradient of the client's GP on its trajectory
(:class:`~fedopt.estimators.gp.BatchedGP`), ``∇μ̂^{(i)}`` its RFF surrogate of the previous
round (an ``M``-vector) and ``∇μ̂`` the server's average of those; round 1 has no
correction. After each step but the last the client queries the 5 candidates of largest
gradient uncertainty (trace of the derived-GP covariance) among 100 points ``x + δ``,
``δ ~ U[−0.01, 0.01]^d``. At the end of the round it fits its RFF weights on its history and
uploads them with its model (``d + M`` floats); the server averages both and broadcasts
``x_r`` and ``w_r`` (``d + M`` floats).

Where the paper and its code differ, the paper is the default and the code an option:

=====================  ======================================  =====================================
                       paper (default)                          code (option)
=====================  ======================================  =====================================
kernel                 SE, ``l = 1`` fixed                      ``kernel: matern52``, ``lengthscale_fit:
                                                                ml``: each client's ``l`` of largest
                                                                marginal likelihood on its window
                                                                (the code: 20 L-BFGS restarts every
                                                                step; here a batched grid + golden
                                                                search whenever the window is refit:
                                                                every step with ``window: nearest``,
                                                                at the round's start on the
                                                                trajectory); the RFF keeps the fixed
                                                                ``lengthscale`` (the code: 1.0)
noise σ²               ``noise``, ``rff_noise`` (1e-3: the      1e-6 (GP) and 0 (RFF): options; the
                       paper gives no value; queries cluster    near-singular systems then amplify
                       in 0.01-boxes, so smaller values make    rounding (shard layouts no longer
                       the solves ill-conditioned)              agree to 1e-9)
targets                constant prior mean (window mean)        ``y_scale: minmax`` ((y−min)/range,
                                                                gradients × range)
local GP data          the trajectory (the ``history`` most     ``window: nearest``: the
                       recent queries), block Cholesky updates  ``window_size`` (150) nearest to x,
                       as queries arrive within a round         refit every step
∇μ                     analytic                                 FD of the GP mean with step 1e-20
                                                                (zero where |x_k| ≲ 1e-4): not
                                                                reproduced
RFF fit                the trajectory, at the end of the        ``server_queries: true``: after the
                       local steps (one upload of d + M)        server average, f(x_r) and 50 active
                                                                queries of 200 points x_r + ρ_i
                                                                U[−1,1]^d (ρ_i = mean|x_r − x_i|/2)
                                                                then the fit on the
                                                                ``rff_window_size`` (500) nearest:
                                                                a second exchange (d down and up,
                                                                then M), every query counted
active-query score     trace of the derived-GP covariance on    the code scores coordinate 0 with
                       the current history                      second-derivative cross terms and a
                                                                broadcasting slip: not reproduced
initial queries        ``n_inits`` (10) at x0 + 0.01 U[−1,1]^d  same (the code's choice; the paper
                                                                does not say)
server                 plain average                            the code also rejects x_r when the
                                                                true F does not improve
                                                                (uncounted): not implemented
iterates               not projected (neither paper nor code    ``bounds: [0, 1]`` projects each local
                       says so; the objectives clip inputs      iterate onto the box (a coordinate
                       to [0, 1]^d)                             that leaves it meets a flat objective
                                                                and the surrogate cannot bring it
                                                                back)
=====================  ======================================  =====================================

Diagnostics (uncounted): with ``cosine`` the columns ``grad_cosine`` (cos(ĝ_i, ∇F)) and
``grad_cosine_local`` (cos(∇μ_i, ∇f_i)), averaged over the clients and the local steps of the
round, from the problem's exact gradients (the paper's Fig. 5).

Counting per client and round (``T`` steps, ``A = 5`` active queries per step): ``1 + T +
A(T − 1)`` queries (``+ n_inits`` once; ``+ 1 + 50`` with ``server_queries``); messages as
above. All clients take part every round (the histories stay aligned so a shard's clients
are one batched tensor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from fedopt.algorithms.base import Context, FederatedAlgorithm, Layout, Params, Prepared, register_algorithm
from fedopt.algorithms.federated.zo_base import problem_start
from fedopt.core.arrays import FloatArray, IntArray, State
from fedopt.estimators.gp import RFF, BatchedGP, Kernel, fit_lengthscale
from fedopt.problems.base import Problem
from fedopt.topology.graph import Topology


class FZooSParams(Params):
    lr: float = Field(0.01, gt=0, description="Adam learning rate η")
    local_steps: int = Field(10, ge=1, description="local steps T per round")
    beta1: float = Field(0.9, ge=0, lt=1, description="Adam β1")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam β2")
    adam_eps: float = Field(1e-8, gt=0, description="Adam ε")
    kernel: Literal["se", "matern52"] = Field("se", description="GP kernel (paper: se; code: matern52)")
    lengthscale: float = Field(1.0, gt=0, description="kernel lengthscale l (lengthscale_fit: fixed)")
    lengthscale_fit: Literal["fixed", "ml"] = Field(
        "fixed", description="local GP lengthscale: fixed (paper) or each client's marginal-likelihood fit on its "
        "window whenever the window is refit (code: every step, 20 L-BFGS restarts)")
    noise: float = Field(1e-3, ge=0, description="GP noise variance σ² (code: 1e-6)")
    y_scale: Literal["center", "minmax"] = Field("center", description="targets: minus their mean, or min-max")
    window: Literal["trajectory", "nearest"] = Field("trajectory", description="local GP data (code: nearest)")
    window_size: int = Field(150, ge=2, description="nearest-window size (window: nearest)")
    history: int = Field(600, ge=2, description="queries a client keeps (the trajectory window)")
    rff_features: int = Field(10000, ge=1, description="random Fourier features M")
    rff_seed: int = Field(0, ge=0, description="seed of the shared features")
    rff_noise: float = Field(1e-3, ge=0, description="noise variance of the RFF fit (code: 0)")
    rff_window: Literal["trajectory", "nearest"] = Field("trajectory", description="RFF fit data")
    rff_window_size: int = Field(500, ge=2, description="nearest-window size of the RFF fit")
    correction: bool = Field(True, description="apply γ_t (global RFF − own RFF)")
    gamma: float = Field(1.0, ge=0, description="γ₀ in γ_t = γ₀ / t")
    candidates: int = Field(100, ge=1, description="candidate points per local active query")
    radius: float = Field(0.01, gt=0, description="candidate box half-width")
    active: int = Field(5, ge=0, description="active queries per local step (not after the last)")
    n_inits: int = Field(10, ge=0, description="initial queries around x0 (once)")
    server_queries: bool = Field(False, description="code: active queries near x_r before the RFF fit")
    server_candidates: int = Field(200, ge=1, description="candidates near x_r (server_queries)")
    server_active: int = Field(50, ge=0, description="queries near x_r (server_queries)")
    device: str = Field("cpu", description="torch device of the surrogates")
    dtype: Literal["float64", "float32"] = Field(
        "float64", description="precision of the surrogates (float32: about 2x faster steps, looser solves)")
    bounds: tuple[float, float] | None = Field(
        None, description="project each local iterate onto [low, high]^d (the paper's domain X = [0, 1]^d); "
        "default: no projection, as in the paper's code")
    cosine: bool = Field(False, description="record grad_cosine and grad_cosine_local (the problem's exact "
                         "gradients, uncounted; NaN where it has none)")

    @field_validator("bounds")
    @classmethod
    def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError(f"need low < high, got {list(v)}")
        return v


@dataclass(frozen=True, eq=False)
class FZooSPrepared(Prepared):
    """The shared random Fourier features (drawn once per run from ``rff_seed``)."""

    rff: RFF


@register_algorithm("fzoos")
class FZooS(FederatedAlgorithm):
    Params = FZooSParams
    params: FZooSParams
    layout = {"x": Layout.SERVER, "w": Layout.SERVER, "ready": Layout.SERVER, "phase": Layout.SERVER,
              "hx": Layout.CLIENT, "hy": Layout.CLIENT, "hn": Layout.CLIENT, "wi": Layout.CLIENT,
              "xl": Layout.CLIENT, "cos": Layout.CLIENT}

    # ---- set-up -------------------------------------------------------------------------------
    def prepare(self, problem: Problem, graphs: list[Topology]) -> list[Prepared]:  # type: ignore[override]
        p = self.params
        rff = RFF.draw(problem.d, p.rff_features, p.lengthscale, p.rff_seed)
        return [FZooSPrepared(rff) for _ in graphs]

    def phases(self, ctx: Context) -> int:
        return 2 if self.params.server_queries else 1

    def init(self, ctx: Context) -> State:
        p, n, d = self.params, ctx.n, ctx.d
        return {"x": problem_start(ctx), "w": np.zeros(p.rff_features), "ready": np.array(False),
                "phase": np.array(0), "hx": np.zeros((n, p.history, d)), "hy": np.zeros((n, p.history)),
                "hn": np.zeros(n, dtype=np.int64), "wi": np.zeros((n, p.rff_features)), "xl": np.zeros((n, d)),
                "cos": np.full((n, 2), np.nan)}

    def iterates(self, state: State, ctx: Context, t: float) -> FloatArray:
        return np.broadcast_to(state["x"], (ctx.n, ctx.d))

    def diagnostics(self, state: State, ctx: Context) -> dict[str, float]:
        """The clients' mean cosines of the last round's local steps (``cosine``): the step
        direction ĝ_i against ∇F and the local GP gradient ∇μ_i against ∇f_i (Fig. 5 of the paper)."""
        if not self.params.cosine:
            return {}
        cos = state["cos"]
        return {"grad_cosine": float(cos[:, 0].mean()), "grad_cosine_local": float(cos[:, 1].mean())}

    # ---- server -------------------------------------------------------------------------------
    def configure(self, state: State, ctx: Context, r: int) -> tuple[IntArray, dict[str, np.ndarray]]:
        p, d, M = self.params, ctx.d, self.params.rff_features
        clients = np.arange(ctx.n)
        ready, phase = bool(state["ready"]), int(state["phase"])
        if not p.server_queries:
            floats = d + M if ready else d
        elif phase == 0:  # x_r already went out in the previous round's second exchange
            floats = M if ready else d
        else:
            floats = d
        ctx.channel.broadcast(clients, floats)
        return clients, {"x": state["x"], "w": state["w"], "ready": state["ready"], "phase": state["phase"]}

    def aggregate(self, state: State, ctx: Context, weighted_sum: FloatArray, weight_total: float, r: int) -> State:
        avg = weighted_sum / weight_total
        d = ctx.d
        if not self.params.server_queries:
            return {"x": avg[:d], "w": avg[d:], "ready": np.array(True), "phase": np.array(0)}
        if int(state["phase"]) == 0:
            return {"x": avg, "w": state["w"], "ready": state["ready"], "phase": np.array(1)}
        return {"x": state["x"], "w": avg, "ready": np.array(True), "phase": np.array(0)}

    # ---- clients ------------------------------------------------------------------------------
    def client_update(self, payload: dict[str, np.ndarray], state: State, ctx: Context, clients: IntArray,
                      r: int) -> tuple[FloatArray, FloatArray]:
        p = self.params
        counts = state["hn"][clients]
        if len(np.unique(counts)) != 1:
            raise ValueError("fzoos: the clients of a call hold histories of different lengths")
        tt = _Tensors(ctx.prepared_as(FZooSPrepared).rff, getattr(torch, p.dtype), p.device)
        if p.server_queries and int(payload["phase"]) == 1:
            W = self._server_side(payload, state, ctx, clients, tt)
            ctx.channel.send(clients, p.rff_features)
            return W, np.ones(len(clients))
        X = self._local(payload, state, ctx, clients, tt)
        state["xl"][clients] = X
        if p.server_queries:
            ctx.channel.send(clients, ctx.d)
            return X, np.ones(len(clients))
        W = self._fit_rff(state, clients, X, tt)
        state["wi"][clients] = W
        ctx.channel.send(clients, ctx.d + p.rff_features)
        return np.concatenate((X, W), axis=1), np.ones(len(clients))

    def _query(self, ctx: Context, state: State, clients: IntArray, P: FloatArray) -> FloatArray:
        """Query the points ``P [k, q, d]`` (counted) and add them to the histories."""
        k, q, d = P.shape
        y = ctx.oracle.query(P.reshape(k * q, d), np.repeat(clients, q)).reshape(k, q)
        _append(state, clients, P, y)
        return y

    def _local(self, payload: dict[str, np.ndarray], state: State, ctx: Context, clients: IntArray,
               tt: _Tensors) -> FloatArray:
        p, k, d = self.params, len(clients), ctx.d
        X = np.tile(payload["x"], (k, 1))
        if int(state["hn"][clients[0]]) == 0 and p.n_inits:
            box = 2.0 * ctx.node_rng("explore").random(clients, (p.n_inits, d)) - 1.0
            self._query(ctx, state, clients, X[:, None, :] + 0.01 * box)
        self._query(ctx, state, clients, X[:, None, :])
        gp = _LocalGP(p, tt, state, clients, X, window=p.window,
                      grow=(p.local_steps - 1) * (1 + p.active) if p.window == "trajectory" else 0)
        ready = bool(payload["ready"]) and p.correction
        if ready:
            wg = torch.tensor(np.asarray(payload["w"]), dtype=tt.dtype, device=tt.device).expand(k, -1)
            wd = wg - torch.as_tensor(state["wi"][clients], dtype=tt.dtype, device=tt.device)
        m, v = np.zeros_like(X), np.zeros_like(X)
        cos = np.zeros((k, 2))
        for t in range(1, p.local_steps + 1):
            xt = torch.as_tensor(X, dtype=tt.dtype, device=tt.device)
            g = gp.grad(xt)
            g_local = g
            if ready:
                g = g + (p.gamma / t) * tt.rff.grad(xt, wd, tt.V, tt.b)  # ∇μ̂ − ∇μ̂ᵢ: linear in w
            G = g.cpu().numpy()
            if p.cosine:
                cos += _cosines(ctx.problem, clients, X, G, g_local.cpu().numpy())
            m = p.beta1 * m + (1.0 - p.beta1) * G
            v = p.beta2 * v + (1.0 - p.beta2) * G * G
            X = X - p.lr * (m / (1.0 - p.beta1**t)) / (np.sqrt(v / (1.0 - p.beta2**t)) + p.adam_eps)
            if p.bounds is not None:
                X = np.clip(X, p.bounds[0], p.bounds[1])
            ctx.oracle.local_step(clients)
            new = X[:, None, :]
            ynew = self._query(ctx, state, clients, new)
            if t < p.local_steps and p.active:
                gp.add(new, ynew, state, clients, X)
                box = 2.0 * ctx.node_rng("explore").random(clients, (p.candidates, d)) - 1.0
                C = X[:, None, :] + p.radius * box
                pick = _top(gp.score(C), p.active)
                A = np.take_along_axis(C, pick[:, :, None], axis=1)
                yA = self._query(ctx, state, clients, A)
                gp.add(A, yA, state, clients, X)
            elif t < p.local_steps:
                gp.add(new, ynew, state, clients, X)
        if p.cosine:
            state["cos"][clients] = cos / p.local_steps
        return X

    def _server_side(self, payload: dict[str, np.ndarray], state: State, ctx: Context,
                     clients: IntArray, tt: _Tensors) -> FloatArray:
        """The code's second exchange: queries near ``x_r`` chosen by uncertainty, then the RFF fit."""
        p, k, d = self.params, len(clients), ctx.d
        X = np.tile(payload["x"], (k, 1))
        self._query(ctx, state, clients, X[:, None, :])
        rho = np.abs(X - state["xl"][clients]).mean(axis=1) / 2.0
        box = 2.0 * ctx.node_rng("explore").random(clients, (p.server_candidates, d)) - 1.0
        C = X[:, None, :] + rho[:, None, None] * box
        if p.server_active:
            gp = _LocalGP(p, tt, state, clients, X, window="nearest")
            pick = _top(gp.score(C), p.server_active)
            self._query(ctx, state, clients, np.take_along_axis(C, pick[:, :, None], axis=1))
        W = self._fit_rff(state, clients, X, tt, nearest=True)
        state["wi"][clients] = W
        return W

    def _fit_rff(self, state: State, clients: IntArray, X: FloatArray, tt: _Tensors,
                 nearest: bool = False) -> FloatArray:
        """Each client's RFF weights on its history (range-scaled for min-max targets)."""
        p = self.params
        size = p.rff_window_size if (nearest or p.rff_window == "nearest") else None
        Xw, yw = _window(state, clients, X, size)
        Xt = torch.as_tensor(Xw, dtype=tt.dtype, device=tt.device)
        y, m, s = _targets(torch.as_tensor(yw, dtype=tt.dtype, device=tt.device), p.y_scale)
        w = tt.rff.fit(Xt, y, p.rff_noise, tt.V, tt.b, mean=m)
        return (w * s[:, None]).cpu().numpy()  # type: ignore[no-any-return]


@dataclass
class _Tensors:
    """The shared features as tensors on the surrogates' device (built per client call)."""

    rff: RFF
    dtype: torch.dtype
    device: str

    def __post_init__(self) -> None:
        self.V, self.b = self.rff.tensors(self.dtype, self.device)


class _LocalGP:
    """A block of clients' local GPs on their windows, kept current as queries arrive."""

    def __init__(self, p: FZooSParams, tt: _Tensors, state: State, clients: IntArray, X: FloatArray,
                 window: str, grow: int = 0) -> None:
        self.p, self.tt, self.window, self.grow = p, tt, window, grow
        self._fit(state, clients, X)

    def _fit(self, state: State, clients: IntArray, X: FloatArray) -> None:
        p, tt = self.p, self.tt
        size = p.window_size if self.window == "nearest" else None
        Xw, yw = _window(state, clients, X, size)
        y, m, s = _targets(torch.as_tensor(yw, dtype=tt.dtype, device=tt.device), p.y_scale)
        self._shift = torch.as_tensor(yw.min(axis=1), dtype=tt.dtype, device=tt.device)
        Xt = torch.as_tensor(Xw, dtype=tt.dtype, device=tt.device)
        mean = None if p.y_scale == "center" else torch.zeros_like(s)
        if p.lengthscale_fit == "ml":  # client i's kernel with l_i on x is the kernel with l = 1 on x / l_i
            self._inv: torch.Tensor | None = 1.0 / fit_lengthscale(p.kernel, Xt, y, p.noise, mean=mean)
            Xt = Xt * self._inv[:, None, None]
            kern = Kernel(p.kernel, 1.0)
        else:
            self._inv = None
            kern = Kernel(p.kernel, p.lengthscale)
        self.gp = BatchedGP(kern, Xt, y, p.noise, mean=mean, capacity=Xt.shape[1] + self.grow)
        self.s = s

    def _scaled(self, P: torch.Tensor) -> torch.Tensor:
        """Points in the GP's inputs (``P / l_i`` for fitted lengthscales): ``P [k, ..., d]``."""
        if self._inv is None:
            return P
        return P * self._inv.reshape(-1, *([1] * (P.dim() - 1)))

    def add(self, P: FloatArray, y: FloatArray, state: State, clients: IntArray, X: FloatArray) -> None:
        """New points: a block update of the factor (trajectory), or a refit near ``X`` (nearest)."""
        if self.window == "nearest":
            self._fit(state, clients, X)
            return
        tt = self.tt
        yt = torch.as_tensor(y, dtype=tt.dtype, device=tt.device)
        if self.p.y_scale == "minmax":
            yt = (yt - self._shift[:, None]) / self.s[:, None]
        self.gp.append(self._scaled(torch.as_tensor(P, dtype=tt.dtype, device=tt.device)), yt)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """∇μ_i(x) (chain rule through ``x / l_i`` for fitted lengthscales)."""
        scale = self.s if self._inv is None else self.s * self._inv
        return self.gp.grad_mean(self._scaled(x)) * scale[:, None]

    def score(self, C: FloatArray) -> FloatArray:
        """tr ∂σ²(c, c) of the candidates (× 1/l_i² for fitted lengthscales)."""
        tt = self.tt
        v = self.gp.grad_var_trace(self._scaled(torch.as_tensor(C, dtype=tt.dtype, device=tt.device)))
        if self._inv is not None:
            v = v * (self._inv * self._inv)[:, None]
        return v.cpu().numpy()  # type: ignore[no-any-return]


def _targets(y: torch.Tensor, how: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(targets, prior mean, gradient scale)`` per client: centered (mean = window mean, scale
    1) or min-max ((y − min)/range, mean 0, scale range)."""
    ones = torch.ones(y.shape[0], dtype=y.dtype, device=y.device)
    if how == "center":
        return y, y.mean(dim=1), ones
    lo = y.min(dim=1).values
    rng = y.max(dim=1).values - lo
    rng = torch.where(rng > 0, rng, ones)
    return (y - lo[:, None]) / rng[:, None], torch.zeros_like(lo), rng


def _window(state: State, clients: IntArray, X: FloatArray, size: int | None) -> tuple[FloatArray, FloatArray]:
    """The clients' stored queries ``([k, n, d], [k, n])``: all of them, or the ``size`` nearest to ``X``."""
    n = int(state["hn"][clients[0]])
    hx, hy = state["hx"][clients, :n], state["hy"][clients, :n]
    if size is None or n <= size:
        return hx, hy
    dist = ((hx - X[:, None, :]) ** 2).sum(-1)
    idx = np.sort(np.argpartition(dist, size - 1, axis=1)[:, :size], axis=1)
    return np.take_along_axis(hx, idx[:, :, None], axis=1), np.take_along_axis(hy, idx, axis=1)


def _append(state: State, clients: IntArray, P: FloatArray, y: FloatArray) -> None:
    """Add ``P [k, q, d]``, ``y [k, q]`` to the clients' histories (the oldest drop out when full)."""
    hx, hy, hn = state["hx"], state["hy"], state["hn"]
    H = hx.shape[1]
    q = P.shape[1]
    n = int(hn[clients[0]])
    if q >= H:
        hx[clients], hy[clients] = P[:, -H:], y[:, -H:]
        hn[clients] = H
        return
    over = max(0, n + q - H)
    if over:
        hx[clients, : n - over] = hx[clients, over:n]
        hy[clients, : n - over] = hy[clients, over:n]
        n -= over
    hx[clients, n:n + q] = P
    hy[clients, n:n + q] = y
    hn[clients] = n + q


def _cosines(problem: Problem, clients: IntArray, X: FloatArray, G: FloatArray, G_local: FloatArray) -> FloatArray:
    """``[k, 2]``: cos(G_i, ∇F(X_i)) and cos(G_local_i, ∇f_i(X_i)) from the problem's exact
    gradients (uncounted: a diagnostic); NaN where the problem has no gradient oracle."""
    k, d = X.shape
    n = problem.n
    try:
        own = problem.grad(X, clients)
        every = problem.grad(np.repeat(X, n, axis=0), np.tile(np.arange(n), k)).reshape(k, n, d)
    except TypeError:  # a problem without gradients says so with a TypeError
        return np.full((k, 2), np.nan)
    return np.stack((_cos(G, every.mean(axis=1)), _cos(G_local, own)), axis=1)


def _cos(A: FloatArray, B: FloatArray) -> FloatArray:
    """Row-wise cosine similarity (NaN for a zero row)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (A * B).sum(axis=1) / (np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1))  # type: ignore[no-any-return]


def _top(scores: FloatArray, k: int) -> IntArray:
    """Indices of the ``k`` largest scores of each row (ties: the lower index first)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, :k]
