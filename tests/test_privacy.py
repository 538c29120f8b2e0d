"""fedopt.privacy: per-sample clipping, the run's ledger against independent dp-accounting and
Gaussian-DP computations, calibration to a target (ε, δ), and the injected noise's std."""

from __future__ import annotations

import math

import dp_accounting as dpa
import numpy as np
import pytest
from dp_accounting import pld
from scipy import optimize, stats

from fedopt.privacy import GaussianMechanism, PrivacyLedger, calibrate_groups, clip_per_sample, paper_sigmas
from fedopt.privacy.calibration import calibrate_noise_multiplier, diff2_counts
from fedopt.privacy.clipping import all_samples, clipped_node_means

# CA Housing in the DIFF2 paper's code: n_min = 1651 samples per node, P = 10 nodes, R = 2000 rounds.
N_MIN, P, R, DELTA = 1651, 10, 2000, 1e-5


def gdp_delta(eps: float, mu: float) -> float:
    """δ(ε) of μ-GDP: Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2)."""
    return float(stats.norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2))


def gdp_epsilon(mu: float, delta: float) -> float:
    return float(optimize.brentq(lambda e: gdp_delta(e, mu) - delta, 1e-9, 200.0, xtol=1e-12))


def pld_epsilon(parts: list[tuple[float, int]], delta: float) -> float:
    """An independent PLD computation of unsampled Gaussians ``(z, count)``."""
    acc = pld.PLDAccountant(value_discretization_interval=1e-4)
    for z, k in parts:
        if k:
            acc.compose(dpa.GaussianDpEvent(z), k)
    return float(acc.get_epsilon(delta))


# ---- clipping --------------------------------------------------------------------------------
def test_clipping_caps_each_sample_and_keeps_short_ones() -> None:
    rng = np.random.default_rng(0)
    G = rng.standard_normal((3, 7, 5)) * rng.uniform(0.1, 4.0, size=(3, 7, 1))
    c = np.array([0.5, 1.0, 2.0])
    out = clip_per_sample(G, c)
    norms, before = np.linalg.norm(out, axis=2), np.linalg.norm(G, axis=2)
    for k in range(3):
        for i in range(7):
            if before[k, i] <= c[k]:
                np.testing.assert_array_equal(out[k, i], G[k, i])
            else:
                assert norms[k, i] == pytest.approx(c[k], rel=1e-12)
                np.testing.assert_allclose(out[k, i] / norms[k, i], G[k, i] / before[k, i], rtol=1e-12)
    assert clip_per_sample(G, math.inf) is G or np.array_equal(clip_per_sample(G, math.inf), G)
    assert not clip_per_sample(G, 0.0).any()
    with pytest.raises(ValueError, match="clipping threshold must be >= 0"):
        clip_per_sample(G, -1.0)


def test_node_means_are_sums_over_the_node_count_with_padding() -> None:
    rng = np.random.default_rng(1)
    n_p = np.array([5, 2, 3])
    idx, mask = all_samples(n_p)
    assert idx.shape == (3, 5) and mask.sum(axis=1).tolist() == [5, 2, 3]
    G = rng.standard_normal((3, 5, 4)) * 3
    got = clipped_node_means(G, 1.0, n_p, mask)
    for k in range(3):
        want = sum(g * min(1.0, 1.0 / np.linalg.norm(g)) for g in G[k, : n_p[k]]) / n_p[k]
        np.testing.assert_allclose(got[k], want, rtol=1e-12)


# ---- accounting --------------------------------------------------------------------------------
@pytest.mark.parametrize(("z1", "k1", "z2", "k2"), [(28.4137, 334, 126.918, 1666), (3.1, 4, 8.8, 8), (2.0, 5, 1.0, 0)])
def test_ledger_epsilon_equals_dp_accounting_and_the_gdp_closed_form(z1: float, k1: int, z2: float, k2: int) -> None:
    ledger = PrivacyLedger(DELTA)
    assert ledger.epsilon() == 0.0
    for _ in range(k1):
        ledger.record(dpa.GaussianDpEvent(z1))
    ledger.record(dpa.GaussianDpEvent(z2), k2)
    eps = ledger.epsilon()
    assert eps == pytest.approx(pld_epsilon([(z1, k1), (z2, k2)], DELTA), rel=1e-6)
    assert eps == pytest.approx(gdp_epsilon(math.sqrt(k1 / z1**2 + k2 / z2**2), DELTA), rel=1e-4)
    rdp = PrivacyLedger(DELTA, accountant="rdp")
    rdp.record(dpa.GaussianDpEvent(z1), k1)
    rdp.record(dpa.GaussianDpEvent(z2), k2)
    assert rdp.epsilon() >= eps  # RDP is an upper bound


def test_ledgers_with_the_same_releases_share_one_accountant_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs of a sweep that release the same sequence (seeds, step sizes) compute each
    checkpoint's epsilon once between them; other releases or another delta get their own."""
    from fedopt.privacy import accounting

    made = []
    real = accounting.make_accountant
    monkeypatch.setattr(accounting, "make_accountant", lambda *a: made.append(a) or real(*a))

    def ledger(z2: float, delta: float = DELTA) -> PrivacyLedger:
        out = PrivacyLedger(delta)
        out.record(dpa.GaussianDpEvent(2.718281), 3)
        out.record(dpa.GaussianDpEvent(z2), 7)
        return out

    first = ledger(9.87654).epsilon()
    assert len(made) == 1
    assert ledger(9.87654).epsilon() == first and len(made) == 1
    assert first == pytest.approx(pld_epsilon([(2.718281, 3), (9.87654, 7)], DELTA), rel=1e-12)
    assert ledger(9.87655).epsilon() < first and len(made) == 2
    assert ledger(9.87654, 1e-6).epsilon() > first and len(made) == 3


def test_repeated_release_calibration_is_memoized_and_meets_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    from fedopt.privacy import calibration

    calls = []
    real = calibration.calibrate_noise_multiplier
    monkeypatch.setattr(calibration, "calibrate_noise_multiplier", lambda *a, **k: calls.append(a) or real(*a, **k))
    z = calibration.calibrate_repeated(37, 2.345, DELTA)
    assert calibration.calibrate_repeated(37, 2.345, DELTA) == z and len(calls) == 1
    assert pld_epsilon([(z, 37)], DELTA) <= 2.345 < pld_epsilon([(0.999 * z, 37)], DELTA)
    assert calibration.calibrate_repeated(38, 2.345, DELTA) > z and len(calls) == 2


def test_the_papers_sigmas_are_valid_and_conservative() -> None:
    """The code's closed forms at CA Housing sizes, T = 6, ε = 3 spend 2.2993 (exact Gaussian DP)."""
    s1, s2 = paper_sigmas(3.0, DELTA, R, 6, N_MIN, P)
    k1, k2 = diff2_counts(R, 6)
    assert (k1, k2) == (334, 1666)
    z1, z2 = s1 * N_MIN * P / 2, s2 * N_MIN * P / 2
    assert gdp_epsilon(math.sqrt(k1 / z1**2 + k2 / z2**2), DELTA) == pytest.approx(2.2993, abs=1e-4)
    assert pld_epsilon([(z1, k1), (z2, k2)], DELTA) == pytest.approx(2.2993, abs=1e-3)


@pytest.mark.parametrize("target", [3.0, 5.0])
def test_calibration_meets_the_target_tightly_and_beats_the_closed_form(target: float) -> None:
    k1, k2 = diff2_counts(R, 6)
    z1, z2 = calibrate_groups([k1, k2], [0.8, 0.2], target, DELTA)
    assert pld_epsilon([(z1, k1), (z2, k2)], DELTA) <= target
    assert pld_epsilon([(0.999 * z1, k1), (0.999 * z2, k2)], DELTA) > target
    # the restarts spend the share 0.8 of the Gaussian-DP budget
    assert (k1 / z1**2) / (k1 / z1**2 + k2 / z2**2) == pytest.approx(0.8, rel=1e-9)
    s1, s2 = 2 * z1 / (N_MIN * P), 2 * z2 / (N_MIN * P)
    p1, p2 = paper_sigmas(target, DELTA, R, 6, N_MIN, P)
    for mine, paper in ((s1, p1), (s2, p2)):
        assert 0.15 <= 1 - mine / paper <= 0.30
    if target == 3.0:  # the values the notes report: μ = 0.71912, σ1 = 0.003442, σ2 = 0.015375
        assert s1 == pytest.approx(0.003442, rel=1e-3) and s2 == pytest.approx(0.015375, rel=1e-3)


def test_calibration_bracket_errors_say_which_end_to_move() -> None:
    def event(z: float) -> dpa.DpEvent:
        return dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(z), 10)

    with pytest.raises(ValueError, match="raise the upper end"):
        calibrate_noise_multiplier(event, 0.01, DELTA, bracket=(0.5, 2.0))
    with pytest.raises(ValueError, match="lower it"):
        calibrate_noise_multiplier(event, 50.0, DELTA, bracket=(5.0, 10.0))
    z = calibrate_noise_multiplier(event, 2.0, DELTA, accountant="rdp")
    acc = dpa.rdp.RdpAccountant()
    assert acc.compose(event(z)).get_epsilon(DELTA) <= 2.0


# ---- the noise ----------------------------------------------------------------------------------
@pytest.mark.parametrize("placement", ["central", "distributed"])
def test_released_noise_has_the_calibrated_std(placement: str) -> None:
    """χ² test of Σ noise² / (c σ)² over 40 000 coordinates against χ²(40 000)."""
    mech = GaussianMechanism(2.5, 2.0 / (50 * 4), 4, placement)
    c, d, reps = 3.0, 400, 100
    rng = np.random.default_rng(7)
    if placement == "central":
        noise = np.stack([mech.release(np.zeros(d), c, rng) for _ in range(reps)])
        std = c * 2.5 * 2.0 / (50 * 4)
    else:
        from fedopt.core.rng import NodeStreams

        stream = NodeStreams(7, 4)["noise"]
        nodes = np.arange(4)
        noise = np.stack([mech.node_noise(np.zeros((4, d)), c, stream, nodes) for _ in range(reps)]).reshape(-1, d)
        std = c * 2.5 * 2.0 / 50  # each node: z · 2c/n_min
    stat = float((noise**2).sum() / std**2)
    dof = noise.size
    p = stats.chi2.sf(stat, dof)
    assert 1e-3 < p < 1 - 1e-3, (stat, dof)
    assert math.isclose(mech.sigma * c, c * 2.5 * 2.0 / 200 * (1 if placement == "central" else 2), rel_tol=1e-12)
