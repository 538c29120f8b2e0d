"""The ray engine against the local engine: FedAvg anchor workload, event-algorithm overhead, sweeps.

    python benchmarks/ray_fedavg.py [--actors 2] [--repeats 3] [--bench-dir DIR] [--sweep-horizon T]
        [--sweep-repeats 1] [--skip-sweep]

1. FedAvg on the anchor workload (100 clients x 200 samples, d = 100, logistic
   regression, 5 local GD steps at lr 0.1, all clients, 20 rounds): wall time of
   ``engine.run(spec)`` on the local and on the ray engine, each after a first run
   (warm runs on both sides: the ratio ray / local is on that basis), and the first
   run of each separately (for Ray: ``ray.init``, actor creation, shipping the
   problem: the start-up). The largest difference of the final weights from a plain
   vectorized numpy FedAvg (the reference) is printed. The problem is the registered
   ``fedavg_anchor`` when it exists, else the same workload defined here (the
   generator of the anchor benchmarks); the output says which. With ``--bench-dir``
   (or ``FEDOPT_BENCH_DIR``) naming the folder of the anchor benchmark's
   ``fedavg_common.py``, the final weights are also compared with its own per-client
   reference (``local_train`` in a loop over clients). Flower is compared in
   ``flower_anchor.py``.
2. Overhead of the ray engine on event-based algorithms (``dadao`` when registered,
   and ``gossip_sgd``) on a random geometric graph: wall time of ray / local, both
   warm (one untimed run on each side first), interleaved.
3. A sweep of 24 small runs through ``fedopt run`` (:func:`run_experiment`): one after
   the other in a warmed process vs ``parallel: 2`` as Ray tasks (1 CPU each), the latter
   both including Ray's start-up (what ``fedopt run --parallel 2`` costs) and on an
   already running Ray with warmed workers (what a cluster, or a long sweep, sees).

Timings are medians of ``--repeats`` (the sweep's: of ``--sweep-repeats``). Other
processes on the machine change them; the load average is printed at the start and
the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Any

import networkx as nx
import numpy as np

from fedopt.algorithms import available_algorithms, make_algorithm
from fedopt.core.arrays import FloatArray, IntArray
from fedopt.engines.base import RunSpec, StopCriteria, make_engine
from fedopt.problems.base import Problem, available_problems, problem_factory
from fedopt.problems.quadratic import random_quadratic
from fedopt.topology.graph import Topology

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared benchmark graphs
from bench_graphs import rgg  # noqa: E402

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


def bench_fedavg(actors: int, repeats: int, bench_dir: str | None = None) -> list[str]:
    """Local vs ray on the anchor workload: warm runs (median of ``repeats``) on both sides, plus start-up."""
    import ray

    prob, source = anchor_problem()
    w_ref = reference_fedavg(prob)
    w_common, common_src = fedavg_common_reference(bench_dir)
    updates = K * ROUNDS
    out = [f"Problem: {source}."]
    # local: the first run of the process (lazy imports, first-call costs), then warm runs
    t0 = time.perf_counter()
    res = make_engine("local").run(fedavg_spec(prob))
    local_first = time.perf_counter() - t0
    local_t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = make_engine("local").run(fedavg_spec(prob))
        local_t.append(time.perf_counter() - t0)
        assert res.status == "ok", res.message
    res_local_w = np.asarray(res.final_state["server"])
    err_local = float(np.abs(res_local_w - w_ref).max())
    # ray: start-up (ray.init + actors + the first run, which ships the problem), then warm runs on the same pool
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    t_init = time.perf_counter() - t0
    eng = make_engine("ray", num_actors=actors, num_cpus_per_actor=0.5)
    res = eng.run(fedavg_spec(prob))
    ray_first = time.perf_counter() - t0
    ray_t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = eng.run(fedavg_spec(prob))
        ray_t.append(time.perf_counter() - t0)
        assert res.status == "ok", res.message
    res_ray_w = np.asarray(res.final_state["server"])
    err_ray = float(np.abs(res_ray_w - w_ref).max())
    eng.close()
    ray.shutdown()
    lm, rm = statistics.median(local_t), statistics.median(ray_t)
    if w_common is not None:
        out.append(f"Reference: {common_src}; max abs diff of the final weights from it: "
                   f"local {np.abs(res_local_w - w_common).max():.1e}, ray {np.abs(res_ray_w - w_common).max():.1e}, "
                   f"numpy reference {np.abs(w_ref - w_common).max():.1e}.")
    else:
        out.append(f"Reference: {common_src}.")
    out += [
        f"Each run: `engine.run(spec)`, {ROUNDS} rounds with checkpoint rows at rounds 0 and {ROUNDS}. "
        f"Warm runs: median of {repeats}, after a first run on each side.",
        "",
        "| engine | first run in the process s (incl. start-up) | warm run s | client-updates/s (warm) "
        "| max abs diff of final weights vs numpy reference |",
        "|---|---:|---:|---:|---:|",
        f"| local | {local_first:.3f} | {lm:.3f} | {updates / lm:,.0f} | {err_local:.1e} |",
        f"| ray, {actors} actors | {ray_first:.2f} (ray.init {t_init:.2f}) | {rm:.3f} | {updates / rm:,.0f} "
        f"| {err_ray:.1e} |",
        "",
        f"ray / local, warm runs on both sides: {rm / lm:.2f}x the wall time.",
    ]
    return out




def bench_events(actors: int, repeats: int, n: int = 100, horizon: float = 20.0) -> list[str]:
    import ray

    names = [a for a in ("dadao", "gossip_sgd") if a in available_algorithms()]
    top = rgg(n)
    prob = random_quadratic(n, 10, mu=1.0, L=10.0, seed=1)
    out = [
        f"Event-based algorithms, n = {n} (random geometric graph, {top.m} edges), d = 10, simulated time {horizon:g}:",
        "",
        f"Warm runs on both sides (one untimed run each first), median of {repeats}, interleaved:",
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
        make_engine("local").run(spec())  # warm-up: numba compiles in this process
        eng.run(spec())  # warm-up: the actors import and compile
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
        from fedopt.engines.sharded.partition import cut_edges, graph_shards, owner_of

        cut = cut_edges(top.edges, owner_of(graph_shards(top.edges, n, actors, seed=3), n))
        lm, rm = statistics.median(lt), statistics.median(rt)
        out.append(f"| {name} | {a.rows[-1]['events']:,} | {lm:.3f} | {rm:.2f} | {rm / lm:.1f}x | {cut} | {same} |")
    eng.close()
    ray.shutdown()
    return out


SWEEP_CONFIG = {
    "name": "sweep24",
    "problem": {"name": "quadratic", "n": 60, "d": 10},
    "topology": ["cycle", "star", {"name": "random_geometric", "radius": 0.35}],
    "algorithms": [{"name": "gossip_sgd", "params": {"lr": 0.05}}],
    "seeds": [0, 1, 2, 3],
    "sweep": {"algorithms.0.params.lr": [0.02, 0.05]},
    "record": {"every": 100.0},
    "resources": {"num_cpus": 1},
}


def bench_sweep(horizon: float, repeats: int) -> list[str]:
    """24 runs (3 topologies x 2 step sizes x 4 seeds) through run_experiment."""
    import tempfile

    import pandas as pd
    import ray

    from fedopt.experiment.config import parse_config
    from fedopt.experiment.ray_sweep import connect
    from fedopt.experiment.runner import run_experiment

    cfg = parse_config({**SWEEP_CONFIG, "stop": {"time": horizon}})
    short = parse_config({**SWEEP_CONFIG, "stop": {"time": horizon / 100}})  # warm-ups: same code paths

    def once(parallel: int | None, c: Any = cfg) -> tuple[float, pd.DataFrame]:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            df = run_experiment(c, d, parallel=parallel, progress=False, plots=False)
            return time.perf_counter() - t0, df

    once(None, short)  # warm-up: numba compiles in this process
    seq, cold, warm = [], [], []
    for _ in range(repeats):
        t, ref = once(None)
        seq.append(t)
        t, par = once(2)  # starts and stops a local Ray (num_cpus = 2)
        cold.append(t)
        num = [c for c in ref.columns if c != "wall_s" and pd.api.types.is_float_dtype(ref[c])]
        assert list(par["run_id"]) == list(ref["run_id"])
        assert np.allclose(par[num].to_numpy(float, na_value=np.nan), ref[num].to_numpy(float, na_value=np.nan),
                           rtol=1e-9, atol=1e-12, equal_nan=True)
    connect(num_cpus=2)
    once(2, short)  # warm-up: the workers import fedopt and compile once
    for _ in range(repeats):
        warm.append(once(2)[0])
    t0 = time.perf_counter()
    ray.shutdown()
    connect(num_cpus=2)
    t_init = time.perf_counter() - t0
    ray.shutdown()
    runs = int(ref["run_id"].nunique())
    s, c, w = statistics.median(seq), statistics.median(cold), statistics.median(warm)
    return [
        f"Sweep of {runs} runs through run_experiment (gossip_sgd, quadratic n = 60, d = 10, 3 topologies x "
        f"2 step sizes x 4 seeds, simulated time {horizon:g}, {s / runs:.2f} s per run sequentially); "
        f"ray.init alone: {t_init:.1f} s. Sequential: a warmed process; Ray: median of {repeats} each, "
        "starting Ray every time, and on a running Ray with warmed workers:",
        "",
        "| mode | wall s | speed-up vs sequential |",
        "|---|---|---|",
        f"| sequential, one process (`fedopt run`) | {s:.1f} | 1.00x |",
        f"| Ray tasks, parallel 2, incl. local Ray start-up (`fedopt run --parallel 2`) | {c:.1f} | {s / c:.2f}x |",
        f"| Ray tasks, parallel 2, Ray already running (`--address`) | {w:.1f} | {s / w:.2f}x |",
    ]


def fedavg_common_reference(bench_dir: str | None) -> tuple[FloatArray | None, str]:
    """Final weights of the anchor benchmark's own reference (fedavg_common.local_train per client)."""
    import importlib.util
    from pathlib import Path

    bench_dir = bench_dir or os.environ.get("FEDOPT_BENCH_DIR")
    if not bench_dir or not (Path(bench_dir) / "fedavg_common.py").is_file():
        return None, "fedavg_common.py not given (--bench-dir): compared with the numpy reference only"
    spec = importlib.util.spec_from_file_location("fedavg_common", Path(bench_dir) / "fedavg_common.py")
    fc = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(fc)  # type: ignore[union-attr]
    data = [fc.client_data(k) for k in range(fc.NUM_CLIENTS)]
    sizes = np.array([len(y) for _, y in data], dtype=float)
    w = fc.initial_weights()
    for _ in range(fc.ROUNDS):
        w = sum(nk * fc.local_train(w, x, y) for nk, (x, y) in zip(sizes, data)) / sizes.sum()
    return w, "fedavg_common.local_train in a loop over clients"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    ap.add_argument("--actors", type=int, default=2, help="actors of the ray engine")
    ap.add_argument("--repeats", type=int, default=3, help="warm runs per engine (median)")
    ap.add_argument("--bench-dir", help="folder of the anchor benchmark's fedavg_common.py (or FEDOPT_BENCH_DIR)")
    ap.add_argument("--sweep-horizon", type=float, default=1000.0, help="simulated time of each sweep run")
    ap.add_argument("--sweep-repeats", type=int, default=1, help="repeats of each sweep mode (median)")
    ap.add_argument("--skip-sweep", action="store_true")
    args = ap.parse_args()
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), platform.processor())
    print(f"Machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
          f"load average at start {os.getloadavg()[0]:.2f}\n")
    for line in bench_fedavg(args.actors, args.repeats, args.bench_dir):
        print(line)
    print()
    for line in bench_events(args.actors, args.repeats):
        print(line)
    if not args.skip_sweep:
        print()
        for line in bench_sweep(args.sweep_horizon, args.sweep_repeats):
            print(line)
    print(f"\nLoad average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
