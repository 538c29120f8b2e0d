"""Plain per-client FedAvg on the anchor workload, kept as the reference for ``fedavg``.

Independent of fedopt: it draws the anchor data itself and runs the textbook
per-client loop (McMahan et al. 2017, Alg. 1 with full-batch local gradient
descent, every client every round, weights ``n_k / Σ n``), one client at a
time. The workload (the FedAvg anchor benchmark's):

* ``w_true = N(0, I_d) · 2/√d`` from ``default_rng([seed, 10**6])``;
* client ``k`` draws from ``default_rng([seed, k])``: ``μ_k ~ N(0, I_d)``,
  ``s_k ~ U(0.5, 1.5)``, ``x = μ_k + s_k · N(0, I_d)`` (``m`` rows), then
  ``ε ~ Logistic(0, 1)`` and ``y = 1[xᵀw_true + ε > 0]``;
* local training: ``steps`` steps ``w ← w − lr · X_kᵀ(σ(X_k w) − y_k)/m`` from the
  global weights; initial global weights 0; defaults 100 clients × 200 samples,
  d = 100, 5 steps at lr 0.1, 20 rounds, seed 12345.
"""

from __future__ import annotations

import numpy as np

SEED, D, NUM_CLIENTS, N_PER_CLIENT, LOCAL_STEPS, LR, ROUNDS = 12345, 100, 100, 200, 5, 0.1, 20


def true_weights(d: int = D, seed: int = SEED) -> np.ndarray:
    return np.random.default_rng([seed, 10**6]).normal(size=d) * (2.0 / np.sqrt(d))


def client_data(k: int, m: int = N_PER_CLIENT, d: int = D, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, k])
    mu = rng.normal(size=d)
    scale = rng.uniform(0.5, 1.5)
    x = mu + scale * rng.normal(size=(m, d))
    eps = rng.logistic(size=m)
    y = ((x @ true_weights(d, seed) + eps) > 0).astype(np.float64)
    return x, y


def local_train(w_global: np.ndarray, x: np.ndarray, y: np.ndarray, steps: int = LOCAL_STEPS, lr: float = LR) -> np.ndarray:
    w = np.array(w_global, dtype=np.float64, copy=True)
    n = x.shape[0]
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        w = w - lr * (x.T @ (p - y) / n)
    return w


def fedavg_reference(
    clients: int = NUM_CLIENTS,
    samples: int = N_PER_CLIENT,
    d: int = D,
    rounds: int = ROUNDS,
    steps: int = LOCAL_STEPS,
    lr: float = LR,
    seed: int = SEED,
) -> np.ndarray:
    """Final global weights after ``rounds`` rounds, one client at a time."""
    data = [client_data(k, samples, d, seed) for k in range(clients)]
    sizes = [x.shape[0] for x, _ in data]
    total = float(sum(sizes))
    w = np.zeros(d)
    for _ in range(rounds):
        agg = np.zeros(d)
        for (x, y), n_k in zip(data, sizes):
            agg += local_train(w, x, y, steps, lr) * (n_k / total)
        w = agg
    return w
