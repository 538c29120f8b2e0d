"""DP-GD: gradient descent on the noisy average of clipped full local gradients.

Each round every node sends ``(1/n_p) Σ_i clip(∇ℓ(x_r, z_{p,i}), C)`` and the server steps
``x_{r+1} = x_r − η ((1/P) Σ_p m_p + N(0, (Cσ)² I))``: the private baseline of DIFF2
(Murata & Suzuki, ICML 2023; utility Õ(√d/(nε)), their abstract), and exactly DIFF2 with
restart period ``T = 1`` (every round a restart), so it shares DIFF2's code, calibration
(all of the budget on the ``R`` restarts; the paper's closed form with ``c₁ = 4``) and
accounting (:mod:`fedopt.algorithms.private.diff2`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fedopt.algorithms.base import Params, register_algorithm
from fedopt.algorithms.private.diff2 import Diff2


class DPGDParams(Params):
    lr: float = Field(0.5, gt=0, description="step size η")
    clip: float | None = Field(None, gt=0, description="per-sample gradient threshold C (None: no clipping)")
    epsilon: float | None = Field(None, gt=0, description="target ε (None: not private)")
    delta: float = Field(1e-5, gt=0, lt=1, description="target δ")
    rounds: int | None = Field(None, ge=1, description="planned rounds R the noise is calibrated for")
    noise: Literal["calibrated", "paper"] = Field("calibrated", description="calibrated σ or the paper's closed form")
    accountant: Literal["pld", "rdp"] = Field("pld", description="dp-accounting accountant")
    placement: Literal["central", "distributed"] = Field("central", description="who adds the noise")


@register_algorithm("dp_gd")
class DPGD(Diff2):
    Params = DPGDParams  # type: ignore[assignment]
    params: DPGDParams  # type: ignore[assignment]
    _clip_grad_key = "clip"

    @property
    def restart_every(self) -> int:
        return 1

    @property
    def clip_grad(self) -> float | None:
        return self.params.clip

    @property
    def routine(self) -> str:
        return "gd"

    @property
    def restart_share(self) -> float:
        return 1.0

    @property
    def keep_evaluations(self) -> bool:
        return False  # every round a restart: no difference reads an earlier evaluation
