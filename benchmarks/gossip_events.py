"""Events per second of asynchronous gossip SGD: level-batched engine vs a one-event loop.

    python benchmarks/gossip_events.py [--sizes 16 64 300 1024 4096] [--events 300000] [--batch-size B]

Workload: quadratic with d = 10 (spectra in [1, 10]), gossip SGD (lr 0.02), compute
rate 1 per node and total gossip rate n, on a connected random geometric graph
(radius scaled so the mean degree stays ~13) and on the star graph (every gossip
event touches the hub). Times exclude the one-off numba compilation (a warm-up
segment runs first). The reference is a plain numpy loop applying one event per
handler call (tests/reference_loop.py), timed on the same stream for n = 300.

``--batch-size B`` swaps the quadratic for least squares on synthetic regression data
(``--samples`` rows per node, d = 10) and gives every gradient event a minibatch of ``B``
samples drawn from the node's own ``"sampling"`` stream, so the table measures the
events/s with minibatch draws.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import networkx as nx
import numpy as np

from fedopt.algorithms import make_algorithm
from fedopt.engines.base import RunSpec, Simulation, StopCriteria
from fedopt.problems.empirical import least_squares
from fedopt.problems.quadratic import random_quadratic
from fedopt.topology.graph import Topology

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared benchmark graphs
from bench_graphs import rgg  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))




def spec_for(top: Topology, horizon: float, batch_size: int | None = None, samples: int = 20) -> RunSpec:
    if batch_size is None:
        prob = random_quadratic(top.n, 10, mu=1.0, L=10.0, seed=0)
    else:
        data = {"source": "synthetic", "task": "regression", "n_samples": samples * top.n, "d": 10}
        prob = least_squares(top.n, data, reg=0.1, seed=0)
    algo = make_algorithm("gossip_sgd", lr=0.02, batch_size=batch_size)
    return RunSpec("bench", prob, top, algo, 0, StopCriteria(time=horizon))


def batched_rate(top: Topology, events: int, batch_size: int | None = None, samples: int = 20) -> float:
    horizon = events / (2.0 * top.n)
    sim = Simulation(spec_for(top, horizon + 1.0, batch_size, samples))
    sim.start()
    sim.apply_events(1.0)  # warm-up (numba compile, caches)
    e0 = sim.n_events
    t0 = time.perf_counter()
    sim.apply_events(1.0 + horizon)
    return (sim.n_events - e0) / (time.perf_counter() - t0)


def sequential_rate(top: Topology, events: int) -> float:
    from reference_loop import run_sequential

    horizon = events / (2.0 * top.n)
    t0 = time.perf_counter()
    sim = run_sequential(spec_for(top, horizon), horizon)
    return sim.n_events / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 300, 1024, 4096])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--batch-size", type=int, default=None, help="minibatch per gradient event (least squares)")
    ap.add_argument("--samples", type=int, default=20, help="samples per node with --batch-size")
    args = ap.parse_args()
    for key in ("batch_size", "samples"):
        if getattr(args, key) is not None and getattr(args, key) < 1:
            sys.exit(f"--{key.replace('_', '-')}: must be >= 1, got {getattr(args, key)}")
    print(f"# machine: {platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}")
    if args.batch_size is not None:
        print(f"# least squares, {args.samples} samples per node, minibatch {args.batch_size} per gradient event")
    print(f"{'n':>6} {'graph':>17} {'events/s (levels)':>18}")
    for n in args.sizes:
        for name, top in (("random_geometric", rgg(n)), ("star", Topology.from_networkx("star", nx.star_graph(n - 1)))):
            rate = batched_rate(top, args.events, args.batch_size, args.samples)
            print(f"{n:>6} {name:>17} {rate:>18,.0f}", flush=True)
    if args.batch_size is not None:
        return
    top = rgg(300)
    seq = sequential_rate(top, 30_000)
    lev = batched_rate(top, args.events)
    print(f"\nn=300 random_geometric: one-event loop {seq:,.0f} events/s; level-batched {lev:,.0f} events/s; ratio {lev / seq:.0f}x")


if __name__ == "__main__":
    main()
