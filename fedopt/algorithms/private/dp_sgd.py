"""DP-SGD with Poisson subsampling at every node.

Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar & Zhang, "Deep learning with
differential privacy", CCS 2016, Algorithm 1, on ``P`` nodes with a trusted aggregator:
each round every node keeps each of its samples independently with probability ``q``
(its own per-node ``"sampling"`` stream: real Poisson sampling, batch sizes vary), sends
``(1/(q n_p)) Σ_{i ∈ B_p} clip(∇ℓ(x_r, z_{p,i}), C)`` (an unbiased estimate of its clipped
mean), and the server steps ``x_{r+1} = x_r − η ((1/P) Σ_p m_p + N(0, (C z u)² I))`` with
``u = 1/(q n_min P)``, the bound on one record's contribution.

Accounting: one ``PoissonSampledDpEvent(q, GaussianDpEvent(z))`` per round with
``dp-accounting`` (the subsampling amplification needs the Poisson sampling done here).
``relation: replace_one`` (record-level replace-one adjacency, as DIFF2's; PLD only) or
``add_or_remove_one``; ``z`` is relative to the per-record bound under either (the
accountants' convention for subsampled Gaussians). ``z`` is calibrated to the target
(ε, δ) for ``rounds`` planned rounds, or given (``noise_multiplier``, 1 by default).

Counting: ``|B_p| / n_p`` gradient evaluations per node and round (the samples drawn);
one ``d``-float broadcast and upload per node.
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
from fedopt.privacy.mechanism import GaussianMechanism
from fedopt.problems.base import Problem
from fedopt.topology.graph import Topology


class DPSGDParams(Params):
    lr: float = Field(0.5, gt=0, description="step size η")
    clip: float = Field(1.0, gt=0, description="per-sample gradient threshold C")
    sampling_rate: float = Field(0.1, gt=0, le=1, description="Poisson sampling rate q of each sample")
    epsilon: float | None = Field(None, gt=0, description="target ε (calibrates the noise)")
    noise_multiplier: float | None = Field(None, gt=0, description="z when no target ε is given (None: 1)")
    delta: float = Field(1e-5, gt=0, lt=1, description="target δ")
    rounds: int | None = Field(None, ge=1, description="planned rounds R the noise is calibrated for")
    accountant: Literal["pld", "rdp"] = Field("pld", description="dp-accounting accountant")
    relation: Literal["replace_one", "add_or_remove_one"] = Field("replace_one", description="adjacency")
    placement: Literal["central", "distributed"] = Field("central", description="who adds the noise")


@dataclass(frozen=True, eq=False)
class DPSGDPrepared(Prepared):
    n_samples: IntArray
    mechanism: GaussianMechanism


@register_algorithm("dp_sgd")
class DPSGD(FederatedAlgorithm):
    Params = DPSGDParams
    params: DPSGDParams
    layout = {"x": Layout.SERVER}
    needs_samples = True

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        p, where = self.params, f"algorithm {self.name!r}"
        check_noise_choice(p.epsilon, p.noise_multiplier, p.rounds, where)
        if p.accountant == "rdp" and p.relation == "replace_one":
            raise ValueError(f"{where}: relation: the rdp accountant has no Poisson-subsampled replace_one "
                             "events; allowed with rdp: add_or_remove_one")

    def prepare(self, problem: Problem, graphs: Sequence[Topology]) -> Sequence[Prepared]:
        p = self.params
        m = problem.n_samples().astype(np.int64)
        m.setflags(write=False)
        z = repeated_noise_multiplier(p.epsilon, p.noise_multiplier, p.rounds or 0, p.delta, p.sampling_rate,
                                      p.accountant, f"algorithm {self.name!r}", p.relation)
        unit = 1.0 / (p.sampling_rate * int(m.min()) * problem.n)
        prep = DPSGDPrepared(m, GaussianMechanism(z, unit, problem.n, p.placement, p.sampling_rate))
        return [prep for _ in graphs]

    def initial_point(self, ctx: Context) -> FloatArray:
        return initial_model(ctx)

    def init(self, ctx: Context) -> State:
        ctx.channel.open_privacy(PrivacyLedger(self.params.delta, self.params.accountant, self.params.relation))
        return {"x": self.initial_point(ctx)}

    def iterates(self, state: State, ctx: Context, t: float) -> FloatArray:
        return np.broadcast_to(state["x"], (ctx.n, ctx.d))

    def configure(self, state: State, ctx: Context, r: int) -> tuple[IntArray, dict[str, np.ndarray]]:
        clients = np.arange(ctx.n)
        ctx.channel.broadcast(clients, ctx.d)
        return clients, {"x": state["x"]}

    def client_update(self, payload: dict[str, np.ndarray], state: State, ctx: Context, clients: IntArray,
                      r: int) -> tuple[FloatArray, FloatArray]:
        p, prep = self.params, ctx.prepared_as(DPSGDPrepared)
        k = len(clients)
        n_p = prep.n_samples[clients]
        drawn = ctx.node_rng("sampling").random(clients, int(prep.n_samples.max()))
        keep = (drawn < p.sampling_rate) & (np.arange(drawn.shape[1])[None, :] < n_p[:, None])
        b = int(keep.sum(axis=1).max()) if k else 0
        sums = np.zeros((k, ctx.d))
        if b:
            order = np.argsort(~keep, axis=1, kind="stable")[:, :b]  # each node's drawn samples first
            mask = np.take_along_axis(keep, order, axis=1).astype(np.float64)
            idx = np.where(mask > 0, order, 0)
            X = np.tile(payload["x"], (k, 1))
            sums = ctx.oracle.clipped_grad_sums(X, clients, idx, p.clip, mask)
        msgs = sums / (p.sampling_rate * n_p[:, None])
        msgs = prep.mechanism.node_noise(msgs, p.clip, ctx.node_rng("noise"), clients)
        ctx.channel.send(clients, ctx.d)
        return msgs, np.ones(k)

    def aggregate(self, state: State, ctx: Context, weighted_sum: FloatArray, weight_total: float, r: int) -> State:
        mech = ctx.prepared_as(DPSGDPrepared).mechanism
        g = mech.release(weighted_sum / weight_total, self.params.clip, ctx.rng["noise"])
        mech.account(ctx.channel)
        return {"x": state["x"] - self.params.lr * g}
