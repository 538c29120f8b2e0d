"""The mixing-matrix options shared by the synchronous gossip algorithms (DGD, gradient
tracking): which weights (:mod:`fedopt.topology.mixing`) and whether lazy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from fedopt.algorithms.base import Params, Prepared
from fedopt.topology.graph import Topology
from fedopt.topology.mixing import check_mixing, mixing_matrix


class MixingParams(Params):
    mixing: str = Field("metropolis", description="gossip weights: metropolis | fastest_mixing | rates")
    lazy: bool = Field(False, description="use (I + W)/2 (eigenvalues in [0, 1])")

    @field_validator("mixing")
    @classmethod
    def _known_mixing(cls, v: str) -> str:
        return check_mixing(v)


@dataclass(frozen=True, eq=False)
class MixingPrepared(Prepared):
    """The mixing matrix ``W`` of one graph (dense, or sparse on large graphs)."""

    W: Any


def prepare_mixing(params: MixingParams, graphs: Sequence[Topology]) -> list[MixingPrepared]:
    """The mixing matrix of every graph of the run (built once per run)."""
    return [MixingPrepared(mixing_matrix(top, params.mixing, params.lazy)) for top in graphs]
