"""Differential privacy as a component: per-sample clipping, Gaussian noise, and accounting
with Google's ``dp-accounting`` (PLD by default, RDP as an option).

* :mod:`fedopt.privacy.clipping` — per-sample clipping (flattened over all parameters),
  vectorized over nodes × samples; node means as sum / n_p.
* :mod:`fedopt.privacy.accounting` — DP events of the releases, a run's
  :class:`~fedopt.privacy.accounting.PrivacyLedger` (the meter's ``epsilon`` column), and
  ε of any event with a PLD or RDP accountant.
* :mod:`fedopt.privacy.calibration` — noise calibrated to a target (ε, δ) with
  ``calibrate_dp_mechanism`` over an explicit bracket, and the DIFF2 paper's closed-form σ.
* :mod:`fedopt.privacy.mechanism` — the Gaussian mechanism every private algorithm uses:
  clip → aggregate → noise → account.
"""

from fedopt.privacy.accounting import ACCOUNTANTS, PrivacyLedger, compose, epsilon_of, gaussian_event
from fedopt.privacy.calibration import calibrate_groups, calibrate_noise_multiplier, paper_sigmas
from fedopt.privacy.clipping import clip_per_sample, clipped_node_means
from fedopt.privacy.mechanism import GaussianMechanism

__all__ = [
    "ACCOUNTANTS",
    "GaussianMechanism",
    "PrivacyLedger",
    "calibrate_groups",
    "calibrate_noise_multiplier",
    "clip_per_sample",
    "clipped_node_means",
    "compose",
    "epsilon_of",
    "gaussian_event",
    "paper_sigmas",
]
