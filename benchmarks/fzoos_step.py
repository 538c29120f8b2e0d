"""Cost of one FZooS local step for all clients, against the reference code's recipe.

    python benchmarks/fzoos_step.py [--reps 7] [--dtype float64|float32] [--device cpu] [--clock wall|cpu]
                                    [--recipe-clients 2]

One local step of FZooS (Shu, Lin, Dai & Low, arXiv 2308.04077, §4) for ``N`` clients at once,
as :class:`fedopt.algorithms.federated.fzoos.FZooS` takes it: the derived-GP gradient of each
client's surrogate at its iterate (:meth:`BatchedGP.grad_mean`), the correction's RFF gradient
(``M = 10,000`` features; one call on the difference of the two weight vectors), the Adam
update, the block update of the factor with the new query, the active-query scoring (trace of
the derived-GP covariance at 100 candidates, :meth:`BatchedGP.grad_var_trace`) and the block
update with the 5 chosen queries. Each client's GP holds ``history`` queries (a trajectory: a
random walk of Adam-sized steps in ``[0, 1]^d`` with 0.01-box active queries around it, values of
a quadratic), SE kernel ``l = 1``, ``σ² = 1e-3``; the inverse the scoring reads is carried from
the previous step (steady state). Median time of ``--reps`` steps, each on a fresh copy of the
same GPs (set-up untimed): wall clock, or with ``--clock cpu`` the process's CPU time (with one
torch thread, a loaded host's waits left out).

The recipe (the FZooS code's ``fzoos_opt``, clients one after another): scikit-learn's
``GaussianProcessRegressor(Matern(nu=2.5), alpha=1e-6, n_restarts_optimizer=20)`` refitted on
the 150 queries nearest to the iterate, then ``scipy.optimize.approx_fprime`` of its mean (``d +
1`` ``predict`` calls); its active-query scoring (GPy, coordinate 0) is not included, so the
recipe side is a lower bound. It is timed on ``--recipe-clients`` clients and scaled to ``N``
(the code runs clients sequentially; a client's step does not depend on the others).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import numpy as np
import torch

from fedopt.estimators.gp import RFF, BatchedGP, Kernel


def trajectory(N: int, n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``N`` clients' histories ``[N, n, d]`` and values ``[N, n]``: walks of 0.01-sized steps with
    five 0.01-box queries around each iterate (the shape of FZooS's queries), on a quadratic."""
    rng = np.random.default_rng(seed)
    steps = (n + 5) // 6
    walk = rng.uniform(0.3, 0.7, (N, 1, d)) + np.cumsum(0.01 * rng.choice([-1.0, 1.0], (N, steps, d)), axis=1)
    pts = walk[:, :, None, :] + np.concatenate(
        (np.zeros((N, steps, 1, d)), 0.01 * rng.uniform(-1, 1, (N, steps, 5, d))), axis=2)
    X = pts.reshape(N, steps * 6, d)[:, :n]
    c = rng.uniform(0.3, 0.7, (N, 1, d))
    return X, ((X - c) ** 2).sum(-1) / d


def fedopt_step(gp: BatchedGP, rff: RFF, V: torch.Tensor, b: torch.Tensor, w: torch.Tensor, x: torch.Tensor,
                rng: np.random.Generator) -> None:
    """One local step of every client (what ``FZooS._local`` does per step, oracle calls aside)."""
    N, d = x.shape
    g = gp.grad_mean(x) + 0.5 * rff.grad(x, w[0] - w[1], V, b)  # the correction: one call, linear in w
    G = g.cpu().numpy()
    m, v = 0.1 * G, 0.001 * G * G
    xn = x.cpu().numpy() - 0.01 * (m / 0.1) / (np.sqrt(v / 0.001) + 1e-8)
    new = torch.as_tensor(xn[:, None, :], dtype=x.dtype, device=x.device)
    gp.append(new, (new**2).sum(-1) / d)
    C = new + 0.01 * torch.as_tensor(2 * rng.random((N, 100, d)) - 1, dtype=x.dtype, device=x.device)
    pick = torch.topk(gp.grad_var_trace(C), 5, dim=1).indices
    A = torch.gather(C, 1, pick[:, :, None].expand(-1, -1, d))
    gp.append(A, (A**2).sum(-1) / d)
    if x.device.type == "cuda":
        torch.cuda.synchronize()


def time_fedopt(N: int, n: int, d: int, reps: int, dtype: torch.dtype, device: str, M: int = 10_000,
                clock: str = "wall") -> float:
    """Median seconds of a step: wall time, or (``clock="cpu"``) this process's CPU time, which on
    a loaded host with one torch thread counts the step's own work and not the waits."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    X, y = trajectory(N, n, d, seed=0)
    Xt, yt = (torch.as_tensor(a, dtype=dtype, device=device) for a in (X, y))
    base = BatchedGP(Kernel("se", 1.0), Xt, yt, 1e-3, capacity=n + 54)  # room for a round's 9 x 6 queries
    base._inverse()  # steady state: the inverse is carried by the block updates
    rff = RFF.draw(d, M, 1.0, 0)
    V, b = rff.tensors(dtype, device)
    w = torch.as_tensor(np.random.default_rng(1).standard_normal((2, N, M)) * 1e-3, dtype=dtype, device=device)
    x = torch.as_tensor(X[:, -1], dtype=dtype, device=device)
    rng = np.random.default_rng(2)
    fedopt_step(copy.deepcopy(base), rff, V, b, w, x, rng)  # warm-up
    ts = []
    for _ in range(reps):
        gp = copy.deepcopy(base)
        t = now()
        fedopt_step(gp, rff, V, b, w, x, rng)
        ts.append(now() - t)
    return statistics.median(ts)


def time_recipe(clients: int, n: int, d: int, window: int = 150, clock: str = "wall") -> float:
    """Seconds of the recipe's step for one client (mean over ``clients`` clients; ``clock`` as in
    :func:`time_fedopt`)."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    from scipy.optimize import approx_fprime
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import Matern

    X, y = trajectory(clients, n, d, seed=0)
    total = 0.0
    for i in range(clients):
        x = X[i, -1]
        t = now()
        near = np.argsort(((X[i] - x) ** 2).sum(1))[:window]
        ys = y[i, near]
        lo, rng = ys.min(), max(ys.max() - ys.min(), 1e-12)
        gp = GaussianProcessRegressor(Matern(nu=2.5), alpha=1e-6, n_restarts_optimizer=20, normalize_y=False,
                                      random_state=i)
        gp.fit(X[i, near], (ys - lo) / rng)
        approx_fprime(x, lambda z: float(gp.predict(z[None])[0]) * rng + lo, 1e-8)
        total += now() - t
    return total / clients


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="time the steps by wall clock or by process CPU time (a loaded host, one thread)")
    ap.add_argument("--recipe-clients", type=int, default=2, help="clients the recipe is timed on (0: skip it)")
    a = ap.parse_args(argv)
    if a.reps < 1 or a.recipe_clients < 0:
        ap.error("--reps >= 1 and --recipe-clients >= 0")
    dtype = getattr(torch, a.dtype)
    grid = [(10, n, 300) for n in (150, 500, 1000)] + [(10, 500, d) for d in (30, 1000)] \
        + [(N, 500, 300) for N in (1, 5, 20)]
    recipe: dict[int, float] = {}
    print(f"{'N':>3} {'history':>7} {'d':>5} {'fedopt ms/step (all N)':>23} {'recipe ms/step (all N)':>23} {'ratio':>7}")
    for N, n, d in grid:
        ours = time_fedopt(N, n, d, a.reps, dtype, a.device, clock=a.clock)
        if a.recipe_clients and d not in recipe:
            recipe[d] = time_recipe(a.recipe_clients, max(n, 150), d, clock=a.clock)
        theirs = recipe.get(d, float("nan")) * N
        print(f"{N:3d} {n:7d} {d:5d} {1e3 * ours:23.1f} {1e3 * theirs:23.1f} {theirs / ours:6.0f}x", flush=True)
    print(f"dtype {a.dtype}, device {a.device}, torch threads {torch.get_num_threads()}, reps {a.reps}, "
          f"clock {a.clock}; "
          f"recipe timed on {a.recipe_clients} client(s) per d and scaled to N (window 150, any history)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
