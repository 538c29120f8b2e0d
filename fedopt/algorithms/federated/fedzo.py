"""FedZO (Fang, Yu, Jiang, Shi & Jones, "Communication-efficient stochastic zeroth-order
optimization for federated learning", IEEE TSP 2022, arXiv 2201.09531, Alg. 1).

Each round the server samples clients; each runs ``H`` local steps
``x ← x − η (d / (μ b₂)) Σ_{j ≤ b₂} [f_i(x + μ u_j) − f_i(x)] u_j`` with ``u_j`` uniform on
the unit sphere (eq. (4); the objectives here are deterministic, so ``b₁`` plays no role),
and the server averages the local models. Defaults are the authors' code
(``noobyzy/FedZO``): ``b₂ = 5`` directions, ``μ = 0.001``, SGD with lr 0.1, ``H = 10``.
It is :class:`~fedopt.algorithms.federated.zo_fedavg.ZOFedAvg` with these defaults; FZooS's
comparison re-implements FedZO as ``zo_fedavg`` (Q = 20 orthonormal, μ = 0.01, Adam).

Counting: ``1 + H(b₂ + 1)`` queries per sampled client and round; one ``d``-float broadcast
and upload per sampled client.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fedopt.algorithms.base import register_algorithm
from fedopt.algorithms.federated.zo_base import ZOParams
from fedopt.algorithms.federated.zo_fedavg import ZOAverage


class FedZOParams(ZOParams):
    lr: float = Field(0.1, gt=0, description="local step size η")
    optimizer: Literal["adam", "sgd"] = Field("sgd", description="local optimizer (FedZO: SGD)")
    directions: Literal["gaussian", "orthonormal", "sphere"] = Field("sphere", description="FD directions")
    num_dirs: int = Field(5, ge=1, description="directions b₂ per estimate")
    mu: float = Field(0.001, gt=0, description="FD smoothing μ")
    fd_scale: Literal["1/Q", "d/Q"] = Field("d/Q", description="d/(μ b₂) scaling of eq. (4)")


@register_algorithm("fedzo")
class FedZO(ZOAverage):
    Params = FedZOParams
    params: FedZOParams
