"""Privacy accounting with Google's ``dp-accounting``: DP events of the releases and ε.

A private run releases a deterministic sequence of Gaussian mechanisms (DIFF2: ``⌈R/T⌉``
restarts and the rest gradient differences; DP-SGD: Poisson-subsampled Gaussians; ...).
Each release is a ``dp_accounting`` event whose ``noise_multiplier`` is

    z = (noise standard deviation) / (L2 distance between the outputs on neighbouring data),

and the run's ε at a round is the composition of the events released so far, computed
by a privacy-loss-distribution accountant (``pld``, the default: tight) or a Rényi one
(``rdp``, with ``dp-accounting``'s improved conversion). Nothing here is a hand-written
accountant.

**Neighbouring relation.** Record-level replace-one adjacency for unsampled Gaussians is
expressed with the accountants' default relation ``add_or_remove_one`` and the *full*
replace distance in ``z`` (``z = std / (2C/(n_min·P))`` for an average of ``P`` clipped
node means): ``dp-accounting``'s PLD accountant under ``replace_one`` reads ``z`` relative to
the per-record bound instead (it shifts both distributions by ± the sensitivity), and the
RDP accountant ignores the relation for an unsampled Gaussian, so the add/remove form is
the one both accountants read alike. Poisson-subsampled events use the relation of the
adjacency they model (``replace_one`` with PLD only, ``add_or_remove_one`` with either).

:class:`PrivacyLedger` is a run's record of its releases: the server step of a private
algorithm records each release (counts of distinct events, in the order first released),
and the meter's ``epsilon`` column is :meth:`PrivacyLedger.epsilon`, computed at record
points only (a run of ``R`` rounds does not run the accountant ``R`` times).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import dp_accounting as dpa
from dp_accounting import pld, rdp

if TYPE_CHECKING:
    from dp_accounting import PrivacyAccountant

#: Accountants by name: privacy-loss distributions (default) or Rényi DP.
ACCOUNTANTS = ("pld", "rdp")
#: Neighbouring relations by name.
RELATIONS = ("add_or_remove_one", "replace_one")
#: PLD discretization of the privacy loss (dp-accounting's default).
PLD_DISCRETIZATION = 1e-4

_RELATIONS = {"add_or_remove_one": dpa.NeighboringRelation.ADD_OR_REMOVE_ONE,
              "replace_one": dpa.NeighboringRelation.REPLACE_ONE}


def _check(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def make_accountant(accountant: str = "pld", relation: str = "add_or_remove_one",
                    discretization: float = PLD_DISCRETIZATION) -> PrivacyAccountant:
    """A fresh ``dp-accounting`` accountant: ``pld`` (``PLDAccountant`` with
    ``value_discretization_interval = discretization``) or ``rdp`` (``RdpAccountant``)."""
    _check("accountant", accountant, ACCOUNTANTS)
    _check("relation", relation, RELATIONS)
    rel = _RELATIONS[relation]
    if accountant == "pld":
        return pld.PLDAccountant(neighboring_relation=rel, value_discretization_interval=discretization)
    return rdp.RdpAccountant(neighboring_relation=rel)


def gaussian_event(noise_multiplier: float, sampling_rate: float | None = None) -> dpa.DpEvent:
    """One Gaussian release with multiplier ``z`` (std / neighbouring distance); with
    ``sampling_rate = q`` the release of a Poisson-subsampled sum (each record in with
    probability ``q``, independently)."""
    z = float(noise_multiplier)
    if not z >= 0:
        raise ValueError(f"noise multiplier must be >= 0, got {noise_multiplier!r}")
    event: dpa.DpEvent = dpa.GaussianDpEvent(z)
    if sampling_rate is not None:
        q = float(sampling_rate)
        if not 0 < q <= 1:
            raise ValueError(f"sampling rate must be in (0, 1], got {sampling_rate!r}")
        event = dpa.PoissonSampledDpEvent(q, event)
    return event


def compose(parts: Sequence[tuple[dpa.DpEvent, int]]) -> dpa.DpEvent:
    """The composition of ``count`` releases of each ``event`` (parts with count 0 left out)."""
    events = [dpa.SelfComposedDpEvent(e, int(k)) for e, k in parts if int(k) > 0]
    if any(int(k) < 0 for _, k in parts):
        raise ValueError("a release count must be >= 0")
    return dpa.ComposedDpEvent(events)


def epsilon_of(event: dpa.DpEvent, delta: float, accountant: str = "pld", relation: str = "add_or_remove_one",
               discretization: float = PLD_DISCRETIZATION) -> float:
    """ε at ``delta`` of ``event`` with a fresh accountant (0 for an empty composition)."""
    if isinstance(event, dpa.ComposedDpEvent) and not event.events:
        return 0.0
    acc = make_accountant(accountant, relation, discretization)
    return float(acc.compose(event).get_epsilon(float(delta)))


class PrivacyLedger:
    """The releases of one private run and their cumulative ε (the ``epsilon`` column).

    ``record(event, count)`` adds releases (counts of distinct events, kept in the order
    first recorded); :meth:`epsilon` composes them with a fresh accountant of the ledger's
    kind at ``delta`` (memoized on the counts, so repeated reads between releases are
    free, and across ledgers: another run with the same releases reuses the answer). Only
    the server step of an algorithm records: a distributed engine's shards never account,
    and the driver's ledger is the run's.
    """

    def __init__(self, delta: float, accountant: str = "pld", relation: str = "add_or_remove_one",
                 discretization: float = PLD_DISCRETIZATION) -> None:
        if not 0 < float(delta) < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        _check("accountant", accountant, ACCOUNTANTS)
        _check("relation", relation, RELATIONS)
        self.delta = float(delta)
        self.accountant = accountant
        self.relation = relation
        self.discretization = float(discretization)
        self.counts: dict[dpa.DpEvent, int] = {}
        self._memo: tuple[tuple[tuple[dpa.DpEvent, int], ...], float] | None = None

    def record(self, event: dpa.DpEvent, count: int = 1) -> None:
        """Add ``count`` releases of ``event``."""
        if int(count) < 0:
            raise ValueError(f"a release count must be >= 0, got {count!r}")
        self.counts[event] = self.counts.get(event, 0) + int(count)

    def releases(self) -> int:
        """How many releases were recorded."""
        return sum(self.counts.values())

    def event(self) -> dpa.DpEvent:
        """The composition of every release so far."""
        return compose(list(self.counts.items()))

    def epsilon(self) -> float:
        """ε at :attr:`delta` of the releases so far (0 before the first)."""
        key = tuple(self.counts.items())
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1]
        eps = _releases_epsilon(key, self.delta, self.accountant, self.relation, self.discretization)
        self._memo = (key, eps)
        return eps

    def __repr__(self) -> str:
        return (f"PrivacyLedger(delta={self.delta}, accountant={self.accountant!r}, relation={self.relation!r}, "
                f"releases={self.releases()})")


@lru_cache(maxsize=4096)
def _releases_epsilon(releases: tuple[tuple[dpa.DpEvent, int], ...], delta: float, accountant: str, relation: str,
                      discretization: float) -> float:
    """ε of the composition of ``(event, count)`` releases, memoized across ledgers (the events
    are immutable and hashable, ε a pure function of the arguments): the runs of a sweep that
    release the same sequence (every seed and step size of one calibrated method) run the
    accountant once per checkpoint between them."""
    return epsilon_of(compose(list(releases)), delta, accountant, relation, discretization)
