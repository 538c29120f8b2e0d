"""The mixing-matrix options shared by the synchronous gossip algorithms (DGD, gradient
tracking): which weights (:mod:`fedopt.topology.mixing`) and whether lazy."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from fedopt.algorithms.base import Context, Params
from fedopt.topology.mixing import check_mixing, mixing_matrix


class MixingParams(Params):
    mixing: str = Field("metropolis", description="gossip weights: metropolis | fastest_mixing | rates")
    lazy: bool = Field(False, description="use (I + W)/2 (eigenvalues in [0, 1])")

    @field_validator("mixing")
    @classmethod
    def _known_mixing(cls, v: str) -> str:
        return check_mixing(v)


def mixing_of(params: MixingParams, ctx: Context) -> Any:
    """The run's mixing matrix for the topology in force (built once per topology)."""
    key = ("mixing", params.mixing, params.lazy, id(ctx.topology))
    W = ctx.extra.get(key)
    if W is None:
        W = ctx.extra[key] = mixing_matrix(ctx.topology, params.mixing, params.lazy)
    return W
