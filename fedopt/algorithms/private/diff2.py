"""DIFF2: differentially private optimization via gradient differences.

Murata & Suzuki, "DIFF2: Differential private optimization via gradient differences for
nonconvex distributed learning", ICML 2023 (arXiv 2302.03884). ``P`` nodes hold data sets
``D_p`` of ``n_p`` samples; ``f = (1/P) Σ_p f_p``, ``f_p = (1/n_p) Σ_i ℓ(x, z_{p,i})``. Each
round ``r`` the server releases the estimator

* **restart** (``r mod T = 0``, round 0 included):
  ``v_r = (1/P) Σ_p (1/n_p) Σ_i clip(∇ℓ(x_r, z_{p,i}), C₁) + N(0, (C₁σ₁)² I)``;
* **difference** (otherwise), with the public threshold ``c_r = C₂‖x_r − x_{r−1}‖`` on
  released iterates:
  ``v_r = v_{r−1} + (1/P) Σ_p (1/n_p) Σ_i clip(∇ℓ(x_r, z_{p,i}) − ∇ℓ(x_{r−1}, z_{p,i}), c_r)
  + N(0, (c_r σ₂)² I)``;

and moves by a routine: **GD**, ``x_{r+1} = x_r − η v_r`` (the paper's experiments), or
**BVR-L-SGD** (Murata & Suzuki, ICML 2021): a node ``p̂`` drawn uniformly starts at
``x_r`` with ``v_0 = v_r``, makes ``K`` local SARAH steps ``x_k = x_{k−1} − η v_k``,
``v_k = v_{k−1} + g_B(x_{k−1}) − g_B(x_{k−2})`` (``x_{−1} = x_0``, so the first step uses
``v_r``) on minibatches of ``b`` samples drawn without replacement, and ``x_K`` is the next
iterate. Its minibatch differences touch one node's raw data, so they are clipped to
``C₂‖x_{k−1} − x_{k−2}‖`` and noised like the difference rounds, with sensitivity ``2c/b``
(no ``1/P`` factor), and accounted as ``K − 1`` more releases per round.

Privacy: record-level (ε, δ)-DP of everything released under replace-one adjacency. The
average of ``P`` node means clipped at ``c`` moves by at most ``2c/(n_min·P)`` when one
sample is replaced, so every release is a Gaussian mechanism with multiplier
``z₁ = σ₁ n_min P / 2`` (restarts) or ``z₂ = σ₂ n_min P / 2`` (differences; ``c_r`` cancels);
the run releases ``⌈R/T⌉`` restarts and ``R − ⌈R/T⌉`` differences, accounted with
``dp-accounting`` (:mod:`fedopt.privacy.accounting`; a difference round whose iterates did
not move releases exactly zero and is still accounted, an upper bound). The noise is
calibrated to the target (ε, δ) for ``rounds`` planned rounds, the restarts taking the
share ``restart_share`` of the budget (:func:`~fedopt.privacy.calibration.calibrate_groups`),
or taken from the authors' closed forms (``noise: paper``,
:func:`~fedopt.privacy.calibration.paper_sigmas`). ``placement: central`` adds the noise once
to the average (a trusted aggregator, as in the paper); ``distributed`` has each node noise
its own message (:class:`~fedopt.privacy.mechanism.GaussianMechanism`). Node means are
sums / ``n_p`` over all the node's samples (the authors' code averages batch means, which
weighs a short last batch more and breaks the calibrated sensitivity).

Without ``epsilon`` the run is not private (no noise, ``epsilon`` column empty); without
clipping thresholds it does not clip, and then every ``v_r`` telescopes to ``∇f(x_r)``: DIFF2
with any ``T`` is GD. ``T = 1`` is DP-GD (:mod:`fedopt.algorithms.private.dp_gd`).

Reusing evaluations (``keep_evaluations``, on by default): a difference round needs the
per-sample gradients at ``x_{r−1}``, which the round before evaluated. Where the problem can
keep what a difference needs of an evaluation (:meth:`~fedopt.problems.base.Problem.evaluation_width`
> 0: the torch problems' layerwise kernels keep each sample's output gradients and Linear
inputs, 21 floats per sample for the paper's network), every node keeps its evaluation at
the round's ``x_r`` in its per-client state (``kept_at [n, d]``, ``kept [n, m_max, w]``;
they travel with the node's rows on every engine and in every checkpoint) and the next
difference round evaluates ``x_r`` only. The evaluation is used only where ``kept_at``
equals ``x_{r−1}`` bit for bit (:meth:`~fedopt.problems.base.CountingOracle.clipped_grad_sums_keeping`):
any other row (state restored without it, an iterate that moved otherwise) evaluates both
points, with the same numbers. ``keep_evaluations: false``, ``T = 1`` or a problem that keeps
nothing evaluate both points every difference round (no per-client state).

Counting: one gradient evaluation per node on restarts; on difference rounds one where the
evaluation at ``x_{r−1}`` is reused (it was counted in the round that made it), else two (at
``x_r`` and ``x_{r−1}``); ``b/n_p̂`` per local step of the routine; one ``d``-float broadcast
and one ``d``-float upload per node and round (and one of each with ``p̂`` for BVR-L-SGD).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from fedopt.algorithms.base import Context, FederatedAlgorithm, Layout, Params, Prepared, register_algorithm
from fedopt.algorithms.federated.gd import initial_model
from fedopt.core.arrays import FloatArray, IntArray, State
from fedopt.privacy.accounting import PrivacyLedger
from fedopt.privacy.calibration import calibrate_groups, diff2_counts, paper_sigmas
from fedopt.privacy.clipping import all_samples
from fedopt.privacy.mechanism import GaussianMechanism
from fedopt.problems.base import Evaluation, Problem
from fedopt.topology.graph import Topology


class Diff2Params(Params):
    lr: float = Field(0.5, gt=0, description="step size η")
    restart_every: int = Field(6, ge=1, description="restart period T (1: DP-GD)")
    clip_grad: float | None = Field(None, gt=0, description="per-sample gradient threshold C₁ (None: no clipping)")
    clip_diff: float | None = Field(None, gt=0, description="difference threshold factor C₂ (None: no clipping)")
    epsilon: float | None = Field(None, gt=0, description="target ε (None: not private)")
    delta: float = Field(1e-5, gt=0, lt=1, description="target δ")
    rounds: int | None = Field(None, ge=1, description="planned rounds R the noise is calibrated for")
    noise: Literal["calibrated", "paper"] = Field("calibrated", description="calibrated σ or the paper's closed form")
    restart_share: float = Field(0.8, gt=0, le=1, description="share of the budget spent on restarts")
    local_share: float = Field(0.1, gt=0, lt=1, description="share spent on BVR-L-SGD local steps")
    accountant: Literal["pld", "rdp"] = Field("pld", description="dp-accounting accountant")
    placement: Literal["central", "distributed"] = Field("central", description="who adds the noise")
    routine: Literal["gd", "bvr_local_sgd"] = Field("gd", description="how the estimator moves the iterate")
    local_steps: int = Field(5, ge=1, description="BVR-L-SGD local steps K")
    batch_size: int = Field(16, ge=1, description="BVR-L-SGD minibatch size b")
    keep_evaluations: bool = Field(True, description="keep each node's per-sample evaluation at x_r for the next "
                                   "difference round (one evaluation per round instead of two)")


@dataclass(frozen=True, eq=False)
class Diff2Prepared(Prepared):
    """Per-run constants: samples per node, and the mechanisms of the three kinds of release
    (``None`` when the run is not private)."""

    n_samples: IntArray
    restart: GaussianMechanism | None
    difference: GaussianMechanism | None
    local: GaussianMechanism | None


def _threshold(c: float | None) -> float:
    return math.inf if c is None else float(c)


def _rows(clients: IntArray) -> slice | IntArray:
    """The rows of ``clients`` in a per-client array: a slice (views, no copies) for a run of
    consecutive clients, else the ids."""
    k = len(clients)
    if k and int(clients[-1]) - int(clients[0]) == k - 1 and bool((np.diff(clients) == 1).all()):
        return slice(int(clients[0]), int(clients[0]) + k)
    return clients


@register_algorithm("diff2")
class Diff2(FederatedAlgorithm):
    Params = Diff2Params
    params: Diff2Params
    layout = {"x": Layout.SERVER, "x_prev": Layout.SERVER, "v": Layout.SERVER}
    needs_samples = True

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        p = self.params
        if p.epsilon is not None:
            where = f"algorithm {self.name!r}"
            if p.rounds is None:
                raise ValueError(f"{where}: rounds: a private run needs the planned rounds R its noise is "
                                 "calibrated for (an integer >= 1)")
            if self.clip_grad is None:
                raise ValueError(f"{where}: {self._clip_grad_key}: a private run needs a finite clipping threshold "
                                 "(a number > 0)")
            if self.restart_every > 1 and p.clip_diff is None:
                raise ValueError(f"{where}: clip_diff: a private run with restart_every > 1 needs a finite "
                                 "difference threshold C2 (a number > 0)")
            if self.routine == "bvr_local_sgd" and p.noise == "paper":
                raise ValueError(f"{where}: noise: the paper gives no closed form for the local steps of "
                                 "routine bvr_local_sgd; allowed with it: calibrated")
            if self.routine == "bvr_local_sgd" and p.restart_share + p.local_share >= 1:
                raise ValueError(f"{where}: local_share: restart_share + local_share must be < 1 with routine "
                                 f"bvr_local_sgd, got {p.restart_share} + {p.local_share}")

    # ---- the settings DP-GD fixes ----------------------------------------------------------
    _clip_grad_key = "clip_grad"

    @property
    def restart_every(self) -> int:
        return self.params.restart_every

    @property
    def clip_grad(self) -> float | None:
        return self.params.clip_grad

    @property
    def routine(self) -> str:
        return self.params.routine

    @property
    def restart_share(self) -> float:
        return self.params.restart_share

    @property
    def keep_evaluations(self) -> bool:
        return self.params.keep_evaluations

    def keeps(self, problem: Problem) -> bool:
        """Whether the nodes keep their evaluations for the next difference round (see the
        module docstring): asked for, there are difference rounds, and ``problem`` can."""
        return self.keep_evaluations and self.restart_every > 1 and problem.evaluation_width() > 0

    def state_layout(self, ctx: Context) -> dict[str, Layout]:
        layout = dict(self.layout)
        if self.keeps(ctx.problem):
            layout.update(kept_at=Layout.CLIENT, kept=Layout.CLIENT)
        return layout

    # ---- per-run set-up ---------------------------------------------------------------------
    def prepare(self, problem: Problem, graphs: Sequence[Topology]) -> Sequence[Prepared]:
        p = self.params
        m = problem.n_samples().astype(np.int64)
        m.setflags(write=False)
        if self.routine == "bvr_local_sgd" and p.batch_size > int(m.min()):
            raise ValueError(f"algorithm {self.name!r}: batch_size: {p.batch_size} is more than the smallest "
                             f"node's {int(m.min())} samples")
        mechs: list[GaussianMechanism | None] = [None, None, None]
        if p.epsilon is not None:
            assert p.rounds is not None
            n_min, P = int(m.min()), problem.n
            unit = 2.0 / (n_min * P)
            k1, k2 = diff2_counts(p.rounds, self.restart_every)
            if p.noise == "paper":
                s1, s2 = paper_sigmas(p.epsilon, p.delta, p.rounds, self.restart_every, n_min, P)
                zs = [s1 / unit, s2 / unit, math.inf]
            else:
                rho = self.restart_share
                counts, shares = [k1, k2], [rho, 1.0 - rho]
                if self.routine == "bvr_local_sgd":
                    counts.append(p.rounds * (p.local_steps - 1))
                    shares = [rho, 1.0 - rho - p.local_share, p.local_share]
                if k2 > 0 and rho == 1.0:
                    raise ValueError(f"algorithm {self.name!r}: restart_share: 1 leaves no budget for the "
                                     "difference rounds of restart_every > 1; allowed: 0 < restart_share < 1")
                try:
                    zs = [*calibrate_groups(counts, shares, p.epsilon, p.delta, p.accountant), math.inf][:3]
                except ValueError as exc:
                    raise ValueError(f"algorithm {self.name!r}: epsilon: {exc}") from None
            units = (unit, unit, 2.0 / p.batch_size if self.routine == "bvr_local_sgd" else math.inf)
            mechs = [GaussianMechanism(z, u, P if k < 2 else 1, p.placement if k < 2 else "central")
                     if math.isfinite(z) else None for k, (z, u) in enumerate(zip(zs, units))]
        prep = Diff2Prepared(m, *mechs)
        return [prep for _ in graphs]

    def init(self, ctx: Context) -> State:
        p = self.params
        if p.epsilon is not None:
            ctx.channel.open_privacy(PrivacyLedger(p.delta, p.accountant))
        x = self.initial_point(ctx)
        state = {"x": x, "x_prev": x.copy(), "v": np.zeros(ctx.d)}
        if self.keeps(ctx.problem):  # nothing kept yet: NaN points
            m_max = int(ctx.problem.n_samples().max())
            state.update(kept_at=np.full((ctx.n, ctx.d), np.nan),
                         kept=np.zeros((ctx.n, m_max, ctx.problem.evaluation_width())))
        return state

    def initial_point(self, ctx: Context) -> FloatArray:
        return initial_model(ctx)

    def iterates(self, state: State, ctx: Context, t: float) -> FloatArray:
        return np.broadcast_to(state["x"], (ctx.n, ctx.d))

    # ---- one round ----------------------------------------------------------------------------
    def _round_threshold(self, state: State, r: int) -> tuple[bool, float]:
        """``(restart?, clipping threshold)`` of round ``r`` (public: from released iterates)."""
        if r % self.restart_every == 0:
            return True, _threshold(self.clip_grad)
        c2 = self.params.clip_diff
        if c2 is None:
            return False, math.inf
        return False, float(c2) * float(np.linalg.norm(state["x"] - state["x_prev"]))

    def configure(self, state: State, ctx: Context, r: int) -> tuple[IntArray, dict[str, np.ndarray]]:
        restart, c = self._round_threshold(state, r)
        clients = np.arange(ctx.n)
        ctx.channel.broadcast(clients, ctx.d)
        return clients, {"x": state["x"], "x_prev": state["x_prev"], "restart": np.array(restart),
                         "clip": np.array(c)}

    def client_update(self, payload: dict[str, np.ndarray], state: State, ctx: Context, clients: IntArray,
                      r: int) -> tuple[FloatArray, FloatArray]:
        prep = ctx.prepared_as(Diff2Prepared)
        k = len(clients)
        n_p = prep.n_samples[clients]
        idx, mask = all_samples(n_p)
        restart, c = bool(payload["restart"]), float(payload["clip"])
        X, X_prev = np.tile(payload["x"], (k, 1)), None if restart else np.tile(payload["x_prev"], (k, 1))
        if self.keeps(ctx.problem):
            rows, b = _rows(clients), idx.shape[1]
            view = state["kept"][rows, :b] if isinstance(rows, slice) else None  # written in place
            kept = None if restart else Evaluation(state["kept_at"][rows], state["kept"][rows, :b])
            sums, new = ctx.oracle.clipped_grad_sums_keeping(X, clients, idx, c, mask, X_prev, kept, out=view)
            state["kept_at"][rows] = new.at
            if view is None:
                state["kept"][rows, :b] = new.samples
        else:
            sums = ctx.oracle.clipped_grad_sums(X, clients, idx, c, mask, X_prev)
        means = sums / n_p[:, None]  # sum / n_p over all the node's samples
        mech = prep.restart if restart else prep.difference
        if mech is not None:
            means = mech.node_noise(means, c, ctx.node_rng("noise"), clients)
        ctx.channel.send(clients, ctx.d)
        return means, np.ones(k)

    def aggregate(self, state: State, ctx: Context, weighted_sum: FloatArray, weight_total: float, r: int) -> State:
        prep = ctx.prepared_as(Diff2Prepared)
        restart, c = self._round_threshold(state, r)
        avg = weighted_sum / weight_total
        mech = prep.restart if restart else prep.difference
        if mech is not None:
            avg = mech.release(avg, c, ctx.rng["noise"])
            mech.account(ctx.channel)
        v = avg if restart else state["v"] + avg
        x = state["x"]
        x_new = x - self.params.lr * v if self.routine == "gd" else self._bvr_local_sgd(x, v, ctx, prep)
        return {"x": x_new, "x_prev": x.copy(), "v": v}

    def _bvr_local_sgd(self, x: FloatArray, v: FloatArray, ctx: Context, prep: Diff2Prepared) -> FloatArray:
        """The BVR-L-SGD routine at a node drawn uniformly (run-level ``"routine"`` stream; the
        server asks that node for it, so it runs in the server step on every engine)."""
        p = self.params
        rng = ctx.rng["routine"]
        node = np.array([int(rng.integers(ctx.n))])
        ctx.channel.broadcast(node, ctx.d)
        m = int(prep.n_samples[node[0]])
        x_old, x_cur = x, x - p.lr * v
        for _ in range(p.local_steps - 1):
            idx = np.sort(rng.choice(m, size=p.batch_size, replace=False))[None, :]
            c = math.inf if p.clip_diff is None else float(p.clip_diff) * float(np.linalg.norm(x_cur - x_old))
            g = ctx.oracle.clipped_grad_sums(x_cur[None, :], node, idx, c, X_prev=x_old[None, :])[0] / p.batch_size
            if prep.local is not None:
                g = prep.local.release(g, c, ctx.rng["noise"])
                prep.local.account(ctx.channel)
            v = v + g
            x_old, x_cur = x_cur, x_cur - p.lr * v
        ctx.oracle.local_step(node, float(p.local_steps))
        ctx.channel.send(node, ctx.d)
        return x_cur
