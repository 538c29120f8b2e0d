"""The Gaussian mechanism every private algorithm uses: clip → aggregate → noise → account.

A private algorithm releases, each round, an aggregate of per-sample contributions
clipped to a threshold ``c`` (a number the server knows: ``C₁``, or DIFF2's
``C₂‖x_r − x_{r−1}‖`` on released iterates). :class:`GaussianMechanism` fixes what the
release's privacy rests on:

``noise_multiplier`` ``z``
    the accounted multiplier of one release (std / neighbouring distance), the number a
    calibration returns;
``unit_sensitivity`` ``u``
    the distance between the aggregates of neighbouring data sets per unit of ``c``:
    ``2/(n_min·P)`` for the average of ``P`` clipped node means under replace-one;
    ``1/(q·n_min·P)`` (the per-record bound) for a Poisson-subsampled sum scaled by
    ``1/(q·n_p)`` at each node;
``placement``
    ``central`` (the trusted aggregator of DIFF2's paper: the server adds
    ``N(0, (c·z·u)²)`` once to the average, from its run-level ``"noise"`` stream) or
    ``distributed`` (each node adds ``N(0, (c·z·u·P)²)`` to its own message from its
    per-node ``"noise"`` stream, so each message alone is a release with multiplier ``z``
    about its node's records; the average then carries ``√P`` times the central noise);
``sampling_rate``
    ``q`` of a Poisson-subsampled release (``None``: every record takes part).

The client side is :meth:`node_means` / :meth:`node_sums` (per-sample clipping,
vectorized over nodes × samples) and :meth:`node_noise`; the server side is
:meth:`release` and :meth:`account` (the event goes into the run's
:class:`~fedopt.privacy.accounting.PrivacyLedger`, on the driver only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import dp_accounting as dpa
import numpy as np

from fedopt.core.arrays import FloatArray, IntArray
from fedopt.core.meter import Channel
from fedopt.core.rng import NodeStream
from fedopt.privacy.accounting import gaussian_event
from fedopt.privacy.clipping import clipped_node_means, clipped_node_sums

#: Where the noise is added.
PLACEMENTS = ("central", "distributed")


@dataclass(frozen=True)
class GaussianMechanism:
    """One kind of release of a private algorithm (see the module docstring).

    ``noise_multiplier = inf`` is a release without privacy cost that still clips (not
    used by the algorithms, which skip the mechanism when they run without privacy).
    """

    noise_multiplier: float
    unit_sensitivity: float
    n_nodes: int
    placement: str = "central"
    sampling_rate: float | None = None

    def __post_init__(self) -> None:
        if not self.noise_multiplier > 0:
            raise ValueError(f"noise multiplier must be > 0, got {self.noise_multiplier!r}")
        if not self.unit_sensitivity > 0 or self.n_nodes < 1:
            raise ValueError("unit sensitivity must be > 0 and n_nodes >= 1")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, got {self.placement!r}")

    # ---- what the noise is ------------------------------------------------------------
    @property
    def sigma(self) -> float:
        """Std of the noise on the released aggregate per unit of threshold: ``z·u`` central,
        ``z·u·√P`` distributed (the average of ``P`` independent node noises)."""
        s = self.noise_multiplier * self.unit_sensitivity
        return s if self.placement == "central" else s * math.sqrt(self.n_nodes)

    @property
    def node_sigma(self) -> float:
        """Std of one node's noise per unit of threshold (distributed placement): ``z·u·P``."""
        return self.noise_multiplier * self.unit_sensitivity * self.n_nodes

    def event(self) -> dpa.DpEvent:
        """The DP event of one release."""
        return gaussian_event(self.noise_multiplier, self.sampling_rate)

    # ---- client side --------------------------------------------------------------------
    @staticmethod
    def node_means(G: FloatArray, c: float | FloatArray, n_p: FloatArray, mask: FloatArray | None = None) -> FloatArray:
        """Clip every sample of ``G [k, b, d]`` to ``c`` and take each node's sum / ``n_p``."""
        return clipped_node_means(G, c, n_p, mask)

    @staticmethod
    def node_sums(G: FloatArray, c: float | FloatArray, mask: FloatArray | None = None) -> FloatArray:
        """Clip every sample of ``G [k, b, d]`` to ``c`` and sum each node's (``mask``ed) samples."""
        return clipped_node_sums(G, c, mask)

    def node_noise(self, messages: FloatArray, c: float, rng: NodeStream, nodes: IntArray) -> FloatArray:
        """The nodes' messages ``[k, d]`` with their own noise ``N(0, (c·z·u·P)²)`` drawn from the
        per-node stream ``rng`` (distributed placement), or unchanged (central)."""
        if self.placement == "central":
            return messages
        return messages + (c * self.node_sigma) * rng.standard_normal(nodes, messages.shape[1])

    # ---- server side ------------------------------------------------------------------
    def release(self, aggregate: FloatArray, c: float, rng: np.random.Generator) -> FloatArray:
        """The aggregate with the server's noise ``N(0, (c·z·u)²)`` (central placement; the
        distributed placement's noise came with the messages)."""
        if self.placement == "distributed":
            return aggregate
        return aggregate + (c * self.sigma) * rng.standard_normal(np.shape(aggregate))

    def account(self, channel: Channel, count: int = 1) -> None:
        """Record ``count`` releases in the run's ledger, through the channel that counts them."""
        channel.account(self.event(), count)
