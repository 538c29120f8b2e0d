"""DADAO simulation speed: events per second of the local engine's level-batched loop.

For n in (16, 64, 300, 1024, 4096) and three graphs (random geometric, cycle,
star), DADAO runs on random quadratics (d = 10, κ = 100) with uniform gossip
rates at its condition. Each case first runs a short warm-up (numba compiles
there, and the lazy state spreads out), then times ``apply_events`` over a
window holding about ``--events`` events. Events are gradient + communication
events; the time excludes the one-off set-up (χ₁, χ₂ of the graph).

    python benchmarks/dadao_events.py [--events 400000] [--sizes 16 64 300 1024 4096]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import networkx as nx
import numpy as np

from fedopt.algorithms import make_algorithm
from fedopt.engines.base import RunSpec, Simulation, StopCriteria
from fedopt.problems.quadratic import random_quadratic
from fedopt.topology.graph import Topology


def random_geometric(n: int, seed: int = 0) -> nx.Graph:
    """Connected random geometric graph in the unit square, radius 1.5·√(log n/(πn))."""
    r = 1.5 * math.sqrt(math.log(n) / (math.pi * n))
    s = seed
    while True:
        g = nx.random_geometric_graph(n, r, seed=s)
        if nx.is_connected(g):
            return g
        s += 1


GRAPHS = {
    "random_geometric": random_geometric,
    "cycle": nx.cycle_graph,
    "star": lambda n: nx.star_graph(n - 1),
}


def measure(graph: str, n: int, events: int, d: int = 10) -> dict[str, float]:
    top = Topology.from_networkx(graph, GRAPHS[graph](n))
    prob = random_quadratic(n, d, mu=1.0, L=100.0, seed=0)
    spec = RunSpec("bench", prob, top, make_algorithm("dadao", init_noise=1.0), 0, StopCriteria(time=1e12),
                   max_events=10**12)
    sim = Simulation(spec)
    t0 = time.perf_counter()
    sim.start()
    setup = time.perf_counter() - t0
    assert sim._stream is not None
    rate = sim._stream.clocks.total_rate
    t_warm = min(20_000, events // 4) / rate
    sim.apply_events(t_warm)  # numba compilation and warm-up
    n0 = sim.n_events
    t0 = time.perf_counter()
    sim.apply_events(t_warm + events / rate)
    wall = time.perf_counter() - t0
    done = sim.n_events - n0
    X = sim.algo.iterates(sim.state, sim.ctx, t_warm + events / rate)
    assert np.isfinite(X).all()
    return {"n": n, "m": top.m, "rate": rate, "events": done, "wall": wall, "eps": done / wall, "setup": setup}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 300, 1024, 4096])
    ap.add_argument("--graphs", nargs="+", default=list(GRAPHS))
    args = ap.parse_args()
    cpu = "unknown"
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    print(f"# DADAO events/s — nproc {os.cpu_count()}, CPU {cpu}, Python {platform.python_version()}")
    print("| graph | n | edges | events per unit time | events timed | wall s | events/s | set-up s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for graph in args.graphs:
        for n in args.sizes:
            r = measure(graph, n, args.events)
            print(f"| {graph} | {n} | {r['m']} | {r['rate']:,.0f} | {r['events']:,} | {r['wall']:.2f} | "
                  f"{r['eps']:,.0f} | {r['setup']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
