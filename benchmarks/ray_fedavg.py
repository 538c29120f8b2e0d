"""The ray engine against the local engine: FedAvg anchor workload, event-algorithm overhead, sweeps.

    python benchmarks/ray_fedavg.py [--actors 2] [--repeats 3] [--sweep-runs 24] [--skip-sweep]

1. FedAvg on the anchor workload (100 clients x 200 samples, d = 100, logistic
   regression, 5 local GD steps at lr 0.1, all clients, 20 rounds): client-updates/s
   of the local engine and of the ray engine, both *including start-up* (for Ray:
   ``ray.init``, actor creation, shipping the problem), and the largest difference
   of the final weights from a plain vectorized numpy FedAvg (the reference).
   The problem is the registered ``fedavg_anchor`` when it exists, else the same
   workload defined here (the generator of the anchor benchmarks); the output says which.
2. Overhead of the ray engine on event-based algorithms (``dadao`` when registered,
   and ``gossip_sgd``) on a random geometric graph: wall time of ray / local.
3. A sweep of ``--sweep-runs`` small runs as Ray tasks (1 CPU each) vs one after the
   other in this process, including Ray's start-up.

Timings are medians of ``--repeats``. Other processes on the machine change them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from functools import partial

import networkx as nx
import numpy as np

from fedopt.algorithms import available_algorithms, make_algorithm
from fedopt.core.arrays import FloatArray, IntArray
from fedopt.engines.base import RunSpec, StopCriteria, make_engine
from fedopt.problems.base import Problem, available_problems, problem_factory
from fedopt.problems.quadratic import random_quadratic
from fedopt.topology.graph import Topology

SEED, D, K, N_PER, STEPS, LR, ROUNDS = 12345, 100, 100, 200, 5, 0.1, 20


class AnchorLogistic(Problem):
    """The anchor workload's federated logistic regression (no bias, no regularizer)."""

    def __init__(self) -> None:
        w_true = np.random.default_rng([SEED, 10**6]).normal(size=D) * (2.0 / np.sqrt(D))
        xs, ys = [], []
        for k in range(K):
            rng = np.random.default_rng([SEED, k])
            mu = rng.normal(size=D)
            scale = rng.uniform(0.5, 1.5)
            x = mu + scale * rng.normal(size=(N_PER, D))
            eps = rng.logistic(size=N_PER)
            xs.append(x)
            ys.append(((x @ w_true + eps) > 0).astype(np.float64))
        self.X, self.Y = np.stack(xs), np.stack(ys)
        self.n, self.d, self.L, self.mu = K, D, float("nan"), None

    def grad(self, W: FloatArray, nodes: IntArray) -> FloatArray:
        Xn = self.X[nodes]
        z = np.matmul(Xn, W[:, :, None])[:, :, 0]
        r = 1.0 / (1.0 + np.exp(-z)) - self.Y[nodes]
        return np.matmul(Xn.transpose(0, 2, 1), r[:, :, None])[:, :, 0] / N_PER

    def value(self, W: FloatArray, nodes: IntArray) -> FloatArray:
        z = np.matmul(self.X[nodes], W[:, :, None])[:, :, 0]
        return np.mean(np.logaddexp(0.0, z) - self.Y[nodes] * z, axis=1)

    def n_samples(self) -> IntArray:
        return np.full(self.n, N_PER, dtype=np.int64)


def anchor_problem() -> tuple[Problem, str]:
    if "fedavg_anchor" in available_problems():
        return problem_factory("fedavg_anchor")(), "registered fedavg_anchor"
    return AnchorLogistic(), "benchmark-local anchor definition (fedavg_anchor not registered)"


def reference_fedavg(prob: Problem) -> FloatArray:
    """Plain vectorized FedAvg on the problem's gradient oracle (all clients, weights n_k)."""
    nodes = np.arange(prob.n)
    p = prob.n_samples() / prob.n_samples().sum()
    w = np.zeros(prob.d)
    for _ in range(ROUNDS):
        W = np.tile(w, (prob.n, 1))
        for _ in range(STEPS):
            W = W - LR * prob.grad(W, nodes)
        w = p @ W
    return w


def fedavg_spec(prob: Problem) -> RunSpec:
    star = Topology.from_networkx("star", nx.star_graph(prob.n - 1))
    algo = make_algorithm("fedavg", lr=LR, local_steps=STEPS)
    return RunSpec("anchor", prob, star, algo, 0, StopCriteria(rounds=ROUNDS), record_every=float(ROUNDS))


def bench_fedavg(actors: int, repeats: int) -> list[str]:
    import ray

    prob, source = anchor_problem()
    w_ref = reference_fedavg(prob)
    updates = K * ROUNDS
    out = [f"Problem: {source}."]
    local_t, ray_t, ray_warm = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = make_engine("local").run(fedavg_spec(prob))
        local_t.append(time.perf_counter() - t0)
        err_local = float(np.abs(res.final_state["server"] - w_ref).max())
    for _ in range(repeats):
        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        eng = make_engine("ray", num_actors=actors, num_cpus_per_actor=0.5)
        res = eng.run(fedavg_spec(prob))
        ray_t.append(time.perf_counter() - t0)
        t1 = time.perf_counter()
        res2 = eng.run(fedavg_spec(prob))  # the pool is warm: no actor start-up
        ray_warm.append(time.perf_counter() - t1)
        err_ray = float(np.abs(res.final_state["server"] - w_ref).max())
        assert res.status == res2.status == "ok", res.message
        eng.close()
        ray.shutdown()
    lm, rm, wm = statistics.median(local_t), statistics.median(ray_t), statistics.median(ray_warm)
    out += [
        "| engine | wall s (20 rounds, incl. start-up) | client-updates/s | max abs diff of final weights vs numpy reference |",
        "|---|---|---|---|",
        f"| local | {lm:.3f} | {updates / lm:,.0f} | {err_local:.1e} |",
        f"| ray, {actors} actors (ray.init + actors + run) | {rm:.2f} | {updates / rm:,.0f} | {err_ray:.1e} |",
        f"| ray, {actors} actors, warm pool (run only) | {wm:.3f} | {updates / wm:,.0f} | (same) |",
    ]
    return out


def rgg(n: int, seed: int = 1) -> Topology:
    radius = np.sqrt(13.0 / (np.pi * n))
    while True:
        g = nx.random_geometric_graph(n, radius, seed=seed)
        if nx.is_connected(g):
            return Topology.from_networkx("random_geometric", g)
        radius *= 1.05


def bench_events(actors: int, repeats: int, n: int = 100, horizon: float = 20.0) -> list[str]:
    import ray

    names = [a for a in ("dadao", "gossip_sgd") if a in available_algorithms()]
    top = rgg(n)
    prob = random_quadratic(n, 10, mu=1.0, L=10.0, seed=1)
    out = [
        f"Event-based algorithms, n = {n} (random geometric graph, {top.m} edges), d = 10, simulated time {horizon:g}:",
        "",
        "| algorithm | events | local s | ray s (warm pool) | ray / local | cut edges | same rows (1e-9) |",
        "|---|---|---|---|---|---|---|",
    ]
    if "dadao" not in names:
        out.insert(0, "(dadao is not registered in this checkout: measured gossip_sgd only.)")
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    eng = make_engine("ray", num_actors=actors, num_cpus_per_actor=0.5)
    eng.actors  # start the pool outside the timings
    for name in names:
        def spec() -> RunSpec:
            return RunSpec(name, prob, top, make_algorithm(name), 3, StopCriteria(time=horizon), record_every=horizon / 4)
        lt, rt = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a = make_engine("local").run(spec())
            lt.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = eng.run(spec())
            rt.append(time.perf_counter() - t0)
        same = all(
            np.isclose(ra[k], rb[k], rtol=1e-9, atol=1e-12, equal_nan=True)
            for ra, rb in zip(a.rows, b.rows) for k in ra if k != "wall_s" and ra[k] is not None
        ) and len(a.rows) == len(b.rows)
        from fedopt.engines.ray.partition import cut_edges, graph_shards, owner_of

        cut = cut_edges(top.edges, owner_of(graph_shards(top.edges, n, actors, seed=3), n))
        lm, rm = statistics.median(lt), statistics.median(rt)
        out.append(f"| {name} | {a.rows[-1]['events']:,} | {lm:.3f} | {rm:.2f} | {rm / lm:.1f}x | {cut} | {same} |")
    eng.close()
    ray.shutdown()
    return out


def sweep_point(seed: int, horizon: float) -> float:
    top = rgg(60, seed=seed + 1)
    prob = random_quadratic(60, 10, seed=seed)
    spec = RunSpec(f"s{seed}", prob, top, make_algorithm("gossip_sgd"), seed, StopCriteria(time=horizon), record_every=horizon / 4)
    res = make_engine("local").run(spec)
    return float(res.rows[-1]["dist_opt"])


def bench_sweep(runs: int, horizon: float) -> list[str]:
    import ray

    from fedopt.experiment.ray_sweep import Resources, run_on_ray, run_sequential

    fn = partial(sweep_point, horizon=horizon)
    seq: dict[int, float] = {}
    t0 = time.perf_counter()
    run_sequential(range(runs), fn, seq.__setitem__)
    t_seq = time.perf_counter() - t0
    par: dict[int, float] = {}
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    run_on_ray(range(runs), fn, par.__setitem__, resources=Resources(num_cpus=1))
    t_par = time.perf_counter() - t0
    ray.shutdown()
    assert seq == par
    return [
        f"Sweep of {runs} runs (gossip_sgd, n = 60, simulated time {horizon:g}, {t_seq / runs:.2f} s each):",
        "",
        "| mode | wall s | speed-up |",
        "|---|---|---|",
        f"| sequential, one process | {t_seq:.1f} | 1.0x |",
        f"| Ray tasks, 1 CPU each (incl. ray.init) | {t_par:.1f} | {t_seq / t_par:.2f}x |",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sweep-runs", type=int, default=24)
    ap.add_argument("--sweep-horizon", type=float, default=2500.0)
    ap.add_argument("--skip-sweep", action="store_true")
    args = ap.parse_args()
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), platform.processor())
    print(f"Machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}\n")
    for line in bench_fedavg(args.actors, args.repeats):
        print(line)
    print()
    for line in bench_events(args.actors, args.repeats):
        print(line)
    if not args.skip_sweep:
        print()
        for line in bench_sweep(args.sweep_runs, args.sweep_horizon):
            print(line)


if __name__ == "__main__":
    main()
