"""DP-FedAvg at the record level or at the client level.

``level: client`` — McMahan, Ramage, Talwar & Zhang, "Learning differentially private
recurrent language models", ICLR 2018, Algorithm 1 (DP-FedAvg with the fixed-denominator
estimator): each round the server keeps each client independently with probability
``q`` (Poisson user sampling, from its run-level ``"sampling"`` stream); a kept client
runs ``E`` local gradient steps from ``x_r`` and sends its update ``Δ_p`` clipped to norm
``S`` (``clip``); the server steps
``x_{r+1} = x_r + η_s ((1/(qP)) Σ_p clip(Δ_p, S) + N(0, (z S/(qP))² I))``. Adding or
removing one client's data moves the sum by at most ``S``: one
``PoissonSampledDpEvent(q, GaussianDpEvent(z))`` per round (add/remove-one-client
adjacency; unsampled when ``q = 1``).

``level: record`` — record-level DP without a trusted server: every client takes part,
and each of its ``E`` local steps is a DP-GD step on its own data,
``x ← x − η ((1/n_p) Σ_i clip(∇ℓ(x, z_{p,i}), C) + N(0, (2Cz/n_p)² I))`` (the node adds its own
noise: replacing one of its records moves its clipped mean by at most ``2C/n_p``); the
server averages the models (post-processing). A record is touched only by its own node's
releases: ``E·R`` Gaussian releases with multiplier ``z`` (replace-one, the full replace
distance in ``z``).

``z`` is calibrated to the target (ε, δ) for ``rounds`` planned rounds, or given
(``noise_multiplier``, 1 by default). Counting as FedAvg: ``E`` gradient evaluations and local steps per
kept client; one broadcast and one upload of ``d`` floats per kept client.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from fedopt.algorithms.base import Context, FederatedAlgorithm, Layout, Params, Prepared, register_algorithm
from fedopt.algorithms.federated.gd import initial_model
from fedopt.core.arrays import FloatArray, IntArray, State
from fedopt.privacy.accounting import PrivacyLedger
from fedopt.privacy.calibration import check_noise_choice, repeated_noise_multiplier
from fedopt.privacy.clipping import all_samples, clip_per_sample
from fedopt.privacy.mechanism import GaussianMechanism
from fedopt.problems.base import Problem
from fedopt.topology.graph import Topology


class DPFedAvgParams(Params):
    level: Literal["client", "record"] = Field("client", description="what a neighbouring data set changes")
    lr: float = Field(0.1, gt=0, description="client step size η")
    local_steps: int = Field(5, ge=1, description="local steps E per round")
    server_lr: float = Field(1.0, gt=0, description="server step η_s")
    clip: float = Field(1.0, gt=0, description="update norm S (client level) or per-sample threshold C (record level)")
    client_rate: float = Field(1.0, gt=0, le=1, description="Poisson user sampling rate q (client level)")
    epsilon: float | None = Field(None, gt=0, description="target ε (calibrates the noise)")
    noise_multiplier: float | None = Field(None, gt=0, description="z when no target ε is given (None: 1)")
    delta: float = Field(1e-5, gt=0, lt=1, description="target δ")
    rounds: int | None = Field(None, ge=1, description="planned rounds R the noise is calibrated for")
    accountant: Literal["pld", "rdp"] = Field("pld", description="dp-accounting accountant")


@dataclass(frozen=True, eq=False)
class DPFedAvgPrepared(Prepared):
    n_samples: IntArray
    mechanism: GaussianMechanism


@register_algorithm("dp_fedavg")
class DPFedAvg(FederatedAlgorithm):
    Params = DPFedAvgParams
    params: DPFedAvgParams
    layout = {"x": Layout.SERVER}
    needs_samples = True

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        p, where = self.params, f"algorithm {self.name!r}"
        check_noise_choice(p.epsilon, p.noise_multiplier, p.rounds, where)
        if p.level == "record" and p.client_rate != 1.0:
            raise ValueError(f"{where}: client_rate: record-level DP-FedAvg has every client take part "
                             f"(client_rate 1), got {p.client_rate}; user sampling is for level: client")

    def _per_round(self) -> tuple[float | None, int]:
        """``(sampling rate, releases)`` of one round."""
        p = self.params
        if p.level == "client":
            return (None if p.client_rate == 1.0 else p.client_rate), 1
        return None, p.local_steps

    def prepare(self, problem: Problem, graphs: Sequence[Topology]) -> Sequence[Prepared]:
        p = self.params
        m = problem.n_samples().astype(np.int64)
        m.setflags(write=False)
        q, per_round = self._per_round()
        z = repeated_noise_multiplier(p.epsilon, p.noise_multiplier, (p.rounds or 0) * per_round, p.delta, q,
                                      p.accountant, f"algorithm {self.name!r}")
        if p.level == "client":
            mech = GaussianMechanism(z, 1.0 / (p.client_rate * problem.n), problem.n, "central", q)
        else:  # each node's own release, sensitivity 2C/n_p: the node's noise is set per node below
            mech = GaussianMechanism(z, 2.0 / int(m.min()), 1, "central")
        prep = DPFedAvgPrepared(m, mech)
        return [prep for _ in graphs]

    def initial_point(self, ctx: Context) -> FloatArray:
        return initial_model(ctx)

    def init(self, ctx: Context) -> State:
        ctx.channel.open_privacy(PrivacyLedger(self.params.delta, self.params.accountant))
        return {"x": self.initial_point(ctx)}

    def iterates(self, state: State, ctx: Context, t: float) -> FloatArray:
        return np.broadcast_to(state["x"], (ctx.n, ctx.d))

    def configure(self, state: State, ctx: Context, r: int) -> tuple[IntArray, dict[str, np.ndarray]]:
        p = self.params
        if p.level == "client" and p.client_rate < 1.0:
            clients = np.flatnonzero(ctx.rng["sampling"].random(ctx.n) < p.client_rate)
        else:
            clients = np.arange(ctx.n)
        ctx.channel.broadcast(clients, ctx.d)
        return clients, {"x": state["x"]}

    def client_update(self, payload: dict[str, np.ndarray], state: State, ctx: Context, clients: IntArray,
                      r: int) -> tuple[FloatArray, FloatArray]:
        p, prep = self.params, ctx.prepared_as(DPFedAvgPrepared)
        k = len(clients)
        X = np.tile(payload["x"], (k, 1))
        if p.level == "client":
            ctx.oracle.gd_steps(X, clients, p.lr, p.local_steps)
            delta = clip_per_sample((X - payload["x"])[:, None, :], p.clip)[:, 0, :]
        else:
            n_p = prep.n_samples[clients]
            idx, mask = all_samples(n_p)
            std = (2.0 * p.clip * prep.mechanism.noise_multiplier) / n_p[:, None]
            for _ in range(p.local_steps):
                g = ctx.oracle.clipped_grad_sums(X, clients, idx, p.clip, mask) / n_p[:, None]
                X -= p.lr * (g + std * ctx.node_rng("noise").standard_normal(clients, ctx.d))
                ctx.oracle.local_step(clients)
            delta = X - payload["x"]
        ctx.channel.send(clients, ctx.d)
        return delta, np.ones(k)

    def aggregate(self, state: State, ctx: Context, weighted_sum: FloatArray, weight_total: float, r: int) -> State:
        p, mech = self.params, ctx.prepared_as(DPFedAvgPrepared).mechanism
        if p.level == "client":
            step = mech.release(weighted_sum / (p.client_rate * ctx.n), p.clip, ctx.rng["noise"])
            mech.account(ctx.channel)
        else:
            step = weighted_sum / weight_total
            mech.account(ctx.channel, p.local_steps)
        return {"x": state["x"] + p.server_lr * step}
