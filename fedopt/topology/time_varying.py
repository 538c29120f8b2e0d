"""Time-varying topologies: a periodic sequence of graphs on the same nodes.

A :class:`TimeVaryingTopology` holds graphs ``G_0, …, G_{K−1}`` and a switching period
``τ``: on ``[kτ, (k+1)τ)`` the graph in force is ``G_{k mod K}`` (the sequence cycles).
The engines only need ``at(t)`` and ``period``; algorithms that set worst-case
constants (DADAO, ADOM+) read ``topologies``.

Switching every ``1/χ1`` (``switch: inverse_chi1``)
------------------------------------------------------
With uniform rates DADAO (Nabli & Oyallon, ICML 2023, §4.3) gossips on graph ``k`` with

    Λ_k = λ_tot · L_{G_k} / |E_k|,   λ_tot = sqrt(2 · max_k χ1(L_norm,k) · max_k χ2(L_norm,k)),

where ``L_norm,k = L_{G_k}/|E_k|``. The reference implementation switches graphs every
``1/χ1`` time units, ``χ1 = max_k χ1(Λ_k)`` the worst case over the sequence. Since
``χ1(cΛ) = χ1(Λ)/c`` this is ``χ1 = max_k χ1(L_norm,k) / λ_tot``, so the period is
``λ_tot / max_k χ1(L_norm,k) = sqrt(2 · max χ2 / max χ1)`` (:func:`inverse_chi1_period`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fedopt.topology.graph import Topology
from fedopt.topology.spectral import chi1, chi2

WeightsFn = Callable[[Topology], np.ndarray]


def _norm_weights(top: Topology) -> np.ndarray:
    """``L_norm = L_G/|E|``: weight ``1/|E|`` on every edge."""
    return np.full(top.m, 1.0 / top.m)


def dadao_uniform_rate(topologies: Sequence[Topology]) -> float:
    """``λ_tot = sqrt(2 · max_k χ1(L_norm,k) · max_k χ2(L_norm,k))`` over the sequence."""
    c1 = max(chi1(t, _norm_weights(t)) for t in topologies)
    c2 = max(chi2(t, _norm_weights(t)) for t in topologies)
    return math.sqrt(2.0 * c1 * c2)


def inverse_chi1_period(topologies: Sequence[Topology]) -> float:
    """``1/χ1`` with ``χ1 = max_k χ1(Λ_k)``, ``Λ_k = λ_tot L_{G_k}/|E_k|`` (module docstring)."""
    lam = dadao_uniform_rate(topologies)
    worst = max(chi1(t, lam * _norm_weights(t)) for t in topologies)
    return 1.0 / worst


class TimeVaryingTopology:
    """A periodic sequence of graphs with the same ``n``, switching every ``period``.

    Parameters
    ----------
    topologies : list of Topology
        the graphs, visited in order and then again from the first.
    period : float or "inverse_chi1"
        time each graph stays in force (> 0), or ``"inverse_chi1"`` for ``1/χ1`` of the
        DADAO uniform-rate Laplacians (module docstring).
    name : str
        display name.
    """

    def __init__(self, topologies: Sequence[Topology], period: float | str, name: str = "time_varying",
                 params: dict[str, Any] | None = None) -> None:
        tops = list(topologies)
        if not tops:
            raise ValueError(f"time-varying topology {name!r}: needs at least one graph")
        ns = {t.n for t in tops}
        if len(ns) != 1:
            raise ValueError(f"time-varying topology {name!r}: all graphs must have the same n, got {sorted(ns)}")
        if any(t.m == 0 for t in tops) and tops[0].n > 1:
            raise ValueError(f"time-varying topology {name!r}: a graph has no edges")
        self.topologies: list[Topology] = tops
        self.name = name
        self.params: dict[str, Any] = dict(params or {})
        if isinstance(period, str):
            if period != "inverse_chi1":
                raise ValueError(f"time-varying topology {name!r}: period must be a positive number or 'inverse_chi1', got {period!r}")
            period = inverse_chi1_period(tops)
            self.params.setdefault("switch", "inverse_chi1")
        period = float(period)
        if not (math.isfinite(period) and period > 0):
            raise ValueError(f"time-varying topology {name!r}: period must be a positive number, got {period}")
        self.period: float = period

    @property
    def n(self) -> int:
        return self.topologies[0].n

    def __len__(self) -> int:
        return len(self.topologies)

    def __repr__(self) -> str:
        return f"TimeVaryingTopology({self.name!r}, count={len(self)}, n={self.n}, period={self.period:.6g})"

    def index_at(self, t: float) -> int:
        """Index of the graph in force at time ``t`` (``⌊t/period⌋ mod count``)."""
        return int(math.floor(float(t) / self.period)) % len(self.topologies)

    def at(self, t: float) -> Topology:
        """The graph in force at time ``t``."""
        return self.topologies[self.index_at(t)]

    def _worst(self, fn: Callable[[Topology, np.ndarray], float], weights_fn: WeightsFn | None) -> float:
        wf = weights_fn or _norm_weights
        return max(float(fn(t, wf(t))) for t in self.topologies)

    def worst_chi1(self, weights_fn: WeightsFn | None = None) -> float:
        """``max_k χ1`` of the graphs weighted by ``weights_fn(G_k)`` (default ``1/|E_k|``)."""
        return self._worst(chi1, weights_fn)

    def worst_chi2(self, weights_fn: WeightsFn | None = None) -> float:
        """``max_k χ2`` of the graphs weighted by ``weights_fn(G_k)`` (default ``1/|E_k|``)."""
        return self._worst(chi2, weights_fn)

    def dadao_rate(self) -> float:
        """DADAO's total uniform rate ``sqrt(2 · worst χ1 · worst χ2)`` of ``L_norm``."""
        return dadao_uniform_rate(self.topologies)

