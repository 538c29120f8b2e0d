"""Noise calibrated to a target (ε, δ), and the DIFF2 paper's closed-form noise.

:func:`calibrate_noise_multiplier` searches one noise multiplier with ``dp-accounting``'s
``calibrate_dp_mechanism`` (Brent's method) over an **explicit bracket**: the search never
tries a noise below the bracket, where a PLD accountant would allocate huge arrays, and a
target outside the bracket is an error that says which end to move.

:func:`calibrate_groups` calibrates a mix of unsampled Gaussian releases (DIFF2's
``K₁ = ⌈R/T⌉`` restarts and ``K₂ = R − K₁`` differences; the local steps of its BVR-L-SGD
routine) that splits the budget by documented **shares**: group ``k`` gets the noise
multiplier ``z_k = m·√(K_k / s_k)`` for one searched scale ``m``, so that its releases
spend the share ``s_k`` of the composition's Gaussian-DP budget (``K_k / z_k² = s_k / m²``,
``μ² = Σ_k K_k / z_k² = 1/m²``). The DIFF2 code's choice is a share ``1/u = 0.8`` for the
restarts.

:func:`paper_sigmas` are the closed forms of the DIFF2 authors' code (Rényi DP with an
integer order and the classic conversion; valid but conservative: an exact accountant
allows about 20–27 % less noise), kept for reproduction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache

import dp_accounting as dpa

from fedopt.privacy.accounting import PLD_DISCRETIZATION, compose, epsilon_of, gaussian_event, make_accountant

#: Default search interval of a noise multiplier ``z`` (std / neighbouring distance).
Z_BRACKET = (0.3, 100.0)
#: Default search interval of the scale ``m = 1/μ`` of :func:`calibrate_groups`.
SCALE_BRACKET = (0.05, 50.0)


def calibrate_noise_multiplier(make_event: Callable[[float], dpa.DpEvent], target_epsilon: float, delta: float,
                               accountant: str = "pld", relation: str = "add_or_remove_one",
                               bracket: tuple[float, float] = Z_BRACKET, tol: float = 1e-6,
                               discretization: float = PLD_DISCRETIZATION, narrow_with_rdp: bool = False) -> float:
    """The smallest parameter ``x`` in ``bracket`` (within ``tol``) whose event
    ``make_event(x)`` has ε ≤ ``target_epsilon`` at ``delta`` (ε decreasing in ``x``), found by
    ``calibrate_dp_mechanism`` over an ``ExplicitBracketInterval``.

    With ``narrow_with_rdp`` (unsampled Gaussian events), the PLD accountant and the
    add/remove relation, the bracket is first narrowed with
    the RDP accountant (milliseconds per evaluation, and never below PLD's ε): its answer
    ``x_rdp`` meets the target under PLD too, so the PLD search runs on
    ``[0.6·x_rdp, x_rdp]`` (each end checked, the given bracket's end where a check fails).
    A target outside ``bracket`` is a ``ValueError`` that says which end to move."""
    lo, hi = float(bracket[0]), float(bracket[1])
    if not 0 < lo < hi:
        raise ValueError(f"calibration bracket must be 0 < low < high, got {bracket!r}")
    if not target_epsilon > 0 or not 0 < delta < 1:
        raise ValueError(f"calibration needs epsilon > 0 and 0 < delta < 1, got {target_epsilon!r}, {delta!r}")

    def eps(x: float, kind: str = accountant) -> float:
        return epsilon_of(make_event(x), delta, kind, relation, discretization)

    def search(kind: str, a: float, b: float) -> float:
        return float(dpa.calibrate_dp_mechanism(
            lambda: make_accountant(kind, relation, discretization), make_event, float(target_epsilon),
            float(delta), bracket_interval=dpa.ExplicitBracketInterval(a, b), tol=tol))

    def too_little(e: float) -> ValueError:
        return ValueError(f"target epsilon {target_epsilon:g} needs more noise than the calibration bracket "
                          f"allows (epsilon {e:.4g} at its upper end {hi:g}); raise the upper end")

    def too_much() -> ValueError:
        return ValueError(f"target epsilon {target_epsilon:g} is met already at the lower end {lo:g} of the "
                          "calibration bracket; lower it")

    if not narrow_with_rdp or accountant != "pld" or relation != "add_or_remove_one":
        if (e := eps(hi)) > target_epsilon:
            raise too_little(e)
        if eps(lo) <= target_epsilon:
            raise too_much()
        return search(accountant, lo, hi)
    a, b = lo, hi
    if eps(hi, "rdp") > target_epsilon:
        if (e := eps(hi)) > target_epsilon:
            raise too_little(e)
    elif eps(lo, "rdp") <= target_epsilon:
        raise too_much()  # PLD's epsilon is at most RDP's
    else:
        x_rdp = search("rdp", lo, hi)
        if eps(x_rdp) <= target_epsilon:
            b = x_rdp
            if 0.6 * x_rdp > lo and eps(0.6 * x_rdp) > target_epsilon:
                a = 0.6 * x_rdp
    return search(accountant, a, b)


def calibrate_repeated(count: int, target_epsilon: float, delta: float, sampling_rate: float | None = None,
                       accountant: str = "pld", relation: str = "add_or_remove_one") -> float:
    """The noise multiplier of ``count`` identical Gaussian releases (Poisson-subsampled at
    ``sampling_rate`` when given) that together meet (``target_epsilon``, ``delta``):
    :func:`calibrate_noise_multiplier` over the default bracket, memoized on the arguments
    (every seed and step size of a sweep's calibrated DP-SGD or DP-FedAvg run asks the same)."""
    return _calibrate_repeated(int(count), float(target_epsilon), float(delta),
                               None if sampling_rate is None else float(sampling_rate), accountant, relation)


def check_noise_choice(epsilon: float | None, noise_multiplier: float | None, rounds: int | None, where: str) -> None:
    """The noise of a repeated-release algorithm is a target ``epsilon`` (with the planned
    ``rounds`` to calibrate for) or a ``noise_multiplier``, not both: a keyed error otherwise."""
    if epsilon is not None and noise_multiplier is not None:
        raise ValueError(f"{where}: noise_multiplier: give epsilon (with rounds) or noise_multiplier, not both")
    if epsilon is not None and rounds is None:
        raise ValueError(f"{where}: rounds: calibrating to epsilon needs the planned rounds R (an integer >= 1)")


def repeated_noise_multiplier(epsilon: float | None, noise_multiplier: float | None, count: int, delta: float,
                              sampling_rate: float | None, accountant: str, where: str,
                              relation: str = "add_or_remove_one") -> float:
    """The noise multiplier of ``count`` identical releases: calibrated to ``epsilon``
    (:func:`calibrate_repeated`) when it is given, else ``noise_multiplier`` (1 when ``None``)."""
    if epsilon is None:
        return 1.0 if noise_multiplier is None else float(noise_multiplier)
    try:
        return calibrate_repeated(count, epsilon, delta, sampling_rate, accountant, relation)
    except ValueError as exc:
        raise ValueError(f"{where}: epsilon: {exc}") from None


@lru_cache(maxsize=256)
def _calibrate_repeated(count: int, target_epsilon: float, delta: float, sampling_rate: float | None,
                        accountant: str, relation: str) -> float:
    return calibrate_noise_multiplier(lambda s: compose([(gaussian_event(s, sampling_rate), count)]), target_epsilon,
                                      delta, accountant, relation)


def group_multipliers(scale: float, counts: Sequence[int], shares: Sequence[float]) -> list[float]:
    """``z_k = scale · √(K_k / s_k)`` of each group (the shares renormalized over the groups
    that release anything, each of which needs a share > 0; a group without releases gets ``inf``)."""
    counts = [int(k) for k in counts]
    if len(counts) != len(shares) or any(k < 0 for k in counts) or any(not s > 0 for s, k in zip(shares, counts) if k):
        raise ValueError(f"need one share > 0 per group and counts >= 0, got counts {counts}, shares {list(shares)}")
    total = sum(s for s, k in zip(shares, counts) if k > 0)
    return [scale * math.sqrt(k / (s / total)) if k > 0 else math.inf for k, s in zip(counts, shares)]


def calibrate_groups(counts: Sequence[int], shares: Sequence[float], target_epsilon: float, delta: float,
                     accountant: str = "pld", bracket: tuple[float, float] = SCALE_BRACKET,
                     tol: float = 1e-6) -> list[float]:
    """Noise multipliers ``[z_k]`` of groups of ``K_k`` unsampled Gaussian releases that
    together meet (``target_epsilon``, ``delta``), the group ``k`` spending the share
    ``s_k`` of the budget (see the module docstring); ``bracket`` bounds the scale
    ``m = 1/μ``."""
    if sum(int(k) for k in counts) < 1:
        raise ValueError("calibration needs at least one release")
    return list(_calibrate_groups(tuple(int(k) for k in counts), tuple(float(s) for s in shares),
                                  float(target_epsilon), float(delta), accountant,
                                  (float(bracket[0]), float(bracket[1])), float(tol)))


@lru_cache(maxsize=256)
def _calibrate_groups(counts: tuple[int, ...], shares: tuple[float, ...], target_epsilon: float, delta: float,
                      accountant: str, bracket: tuple[float, float], tol: float) -> tuple[float, ...]:
    """:func:`calibrate_groups` (a pure function of its arguments, memoized: the runs of a
    sweep that differ only in seed or step size calibrate once)."""

    def event(m: float) -> dpa.DpEvent:
        zs = group_multipliers(m, counts, shares)
        return compose([(gaussian_event(z), k) for z, k in zip(zs, counts) if k > 0])

    m = calibrate_noise_multiplier(event, target_epsilon, delta, accountant, "add_or_remove_one", bracket, tol,
                                   narrow_with_rdp=True)
    return tuple(group_multipliers(m, counts, shares))


def diff2_counts(rounds: int, restart_every: int) -> tuple[int, int]:
    """DIFF2's releases in ``rounds`` rounds: ``(⌈R/T⌉ restarts, R − ⌈R/T⌉ differences)``
    (round 0 is a restart)."""
    if rounds < 1 or restart_every < 1:
        raise ValueError(f"need rounds >= 1 and restart_every >= 1, got {rounds}, {restart_every}")
    k1 = -(-int(rounds) // int(restart_every))
    return k1, int(rounds) - k1


def paper_sigmas(epsilon: float, delta: float, rounds: int, restart_every: int, n_min: int, n_nodes: int,
                 u: float = 1.25) -> tuple[float, float]:
    """The DIFF2 code's noise ``(σ₁, σ₂)`` (std per unit of clipping threshold on the node
    average): with the integer Rényi order ``α = 1 + ⌈2 ln(1/δ)/ε⌉``,
    ``σ₁ = √(c₁ α R / (T n_min² P² ε))`` (``c₁ = 4u``, or 4 when ``T = 1``) and
    ``σ₂ = √(4u/(u−1) · α R / (n_min² P² ε))``."""
    if not epsilon > 0 or not 0 < delta < 1 or not u > 1:
        raise ValueError(f"need epsilon > 0, 0 < delta < 1, u > 1; got {epsilon!r}, {delta!r}, {u!r}")
    alpha = 1 + math.ceil(2 * math.log(1 / delta) / epsilon)
    c1 = 4 * u if restart_every > 1 else 4.0
    n2p2 = float(n_min) ** 2 * float(n_nodes) ** 2
    s1 = math.sqrt(c1 * alpha * rounds / (restart_every * n2p2 * epsilon))
    s2 = math.sqrt(4 * u / (u - 1) * alpha * rounds / (n2p2 * epsilon))
    return s1, s2
