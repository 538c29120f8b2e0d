"""FedProx with finite-difference gradients (Shu et al., arXiv 2308.04077, §3 and Appx 11).

Local direction ``ĝ_i(x) = Δ_i(x) + γ (x − x_{r−1})`` (eq. (2) with the proximal
correction; Li et al., "Federated optimization in heterogeneous networks", MLSys 2020,
eq. (2)); the FZooS code uses ``γ = 1`` (``--correction prox``) and applies it from the
second round on (round 1 has no correction there); ``prox_from_first_round`` applies it
from the first. Counting as :mod:`.zo_fedavg`.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from fedopt.algorithms.base import Context, register_algorithm
from fedopt.algorithms.federated.zo_base import ZOParams
from fedopt.algorithms.federated.zo_fedavg import ZOAverage
from fedopt.core.arrays import FloatArray, IntArray, State


class ZOFedProxParams(ZOParams):
    gamma: float = Field(1.0, ge=0, description="proximal weight γ")
    prox_from_first_round: bool = Field(False, description="apply the term in round 1 too (code: from round 2)")


@register_algorithm("zo_fedprox")
class ZOFedProx(ZOAverage):
    Params = ZOFedProxParams
    params: ZOFedProxParams

    def configure(self, state: State, ctx: Context, r: int) -> tuple[IntArray, dict[str, np.ndarray]]:
        clients, payload = super().configure(state, ctx, r)
        on = r > 0 or self.params.prox_from_first_round
        return clients, {**payload, "prox": np.array(1.0 if on else 0.0)}

    def correction(self, payload: dict[str, np.ndarray], state: State, ctx: Context, clients: IntArray,
                   X: FloatArray, x_start: FloatArray) -> FloatArray | None:
        if not float(payload["prox"]):
            return None
        return self.params.gamma * (X - x_start)
