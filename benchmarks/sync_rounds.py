"""Synchronous rounds in shards: DGD and gradient tracking, local vs ray vs in-process shards.

    python benchmarks/sync_rounds.py [--n 4096] [--d 100] [--samples 10] [--actors 2]
        [--rounds 20] [--repeats 3] [--algorithms dgd gradient_tracking]

Workload: least squares on synthetic regression data (``--samples`` rows per node,
dimension ``--d``, ridge 0.1) over a connected random geometric graph of ``--n`` nodes
(mean degree about 13), DGD (lr 0.05) and gradient tracking (its default step). Three
engines run the same rounds: ``local`` (one process, a sparse product per round), the
``ray`` engine with ``--actors`` actors (1 CPU each) and the in-process ``sharded``
engine with as many shards (the same shard steps and halo exchange, every message
copied through pickle, no Ray).

Bases. Warm runs on both sides: each engine first starts the run (set-up, actors,
shipping the problem) and runs two untimed rounds; then ``--repeats`` timed runs of
``--rounds`` rounds each (the shards' work is waited for at the end of each), and the
median time per round is reported. Start-up is not in the figure.

Bytes between shards per round: what the shard workers sent each other in halo
exchanges (rows of nodes with a neighbour in another shard, ``rows × width × 8``
bytes, counted where they are sent) divided by the rounds run, against the
full-state broadcast it replaces: the whole operand to every shard and each shard's
rows back, ``(shards + 1) × n × width × 8`` bytes per round (``width``: d for DGD,
2d for gradient tracking, whose x and y travel in one product). The largest
difference of the final iterates from the local engine's is printed as a check.
The machine's load average is printed at the start and the end (shared machines
move the timings).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np

from fedopt.algorithms import make_algorithm
from fedopt.engines.base import RunSpec, Simulation, StopCriteria
from fedopt.engines.sharded.inprocess import InProcessTransport
from fedopt.engines.sharded.simulation import ShardedSimulation
from fedopt.problems.empirical import least_squares
from fedopt.topology.graph import Topology

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared benchmark graphs
from bench_graphs import rgg  # noqa: E402

PARAMS: dict[str, dict[str, Any]] = {"dgd": {"lr": 0.05}, "gradient_tracking": {}}
#: Floats per row of the one graph product of a round.
WIDTH = {"dgd": 1, "gradient_tracking": 2}




def make_spec(name: str, n: int, d: int, samples: int, top: Topology, rounds: int) -> RunSpec:
    prob = least_squares(n, {"source": "synthetic", "task": "regression", "n_samples": samples * n, "d": d},
                         reg=0.1, seed=1)
    algo = make_algorithm(name, **PARAMS[name])
    return RunSpec(f"{name}-bench", prob, top, algo, 0, StopCriteria(rounds=rounds))


def time_rounds(sim: Simulation, rounds: int, repeats: int) -> tuple[float, np.ndarray]:
    """Median seconds per round over ``repeats`` runs of ``rounds`` rounds (after a warm-up),
    and the iterates at the end."""
    sim.start()
    sim.record()
    sim.apply_rounds(2)  # warm-up: caches, halo plans, first transfers
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sim.apply_rounds(rounds)
        times.append((time.perf_counter() - t0) / rounds)
    sim.record()
    return statistics.median(times), np.asarray(sim.algo.iterates(sim.state, sim.ctx, sim.t))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--n", type=int, default=4096, help="nodes of the random geometric graph")
    ap.add_argument("--d", type=int, default=100, help="dimension")
    ap.add_argument("--samples", type=int, default=10, help="data rows per node")
    ap.add_argument("--actors", type=int, default=2, help="ray actors (1 CPU each) and in-process shards")
    ap.add_argument("--rounds", type=int, default=20, help="rounds per timed run")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per engine (median)")
    ap.add_argument("--algorithms", nargs="+", default=list(PARAMS), choices=list(PARAMS))
    ap.add_argument("--skip-ray", action="store_true", help="local and in-process shards only")
    args = ap.parse_args()
    for key in ("n", "d", "samples", "actors", "rounds", "repeats"):
        if getattr(args, key) < 1:
            sys.exit(f"--{key}: must be >= 1, got {getattr(args, key)}")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, "
          f"load average at start {os.getloadavg()[0]:.2f}")
    top = rgg(args.n)
    print(f"# random geometric graph: n = {top.n}, m = {top.m} edges; d = {args.d}; "
          f"{args.rounds} rounds x {args.repeats} repeats, warm")
    engine = None
    pool = None
    if not args.skip_ray:
        import ray

        from fedopt.engines.ray.engine import RayEngine, RaySimulation

        ray.init(num_cpus=args.actors, include_dashboard=False, log_to_driver=False)
        engine = RayEngine(num_actors=args.actors, num_cpus_per_actor=1.0)
        pool = engine._ensure_pool()
    header = (f"{'algorithm':>18} {'engine':>20} {'ms/round':>9} {'halo kB/round':>14} "
              f"{'broadcast kB/round':>19} {'halo rows/round':>16} {'max |x - x_local|':>18}")
    print(header)
    try:
        for name in args.algorithms:
            total = args.rounds * args.repeats + 2

            def spec(name: str = name, total: int = total) -> RunSpec:
                return make_spec(name, args.n, args.d, args.samples, top, total)

            local_t, x_ref = time_rounds(Simulation(spec()), args.rounds, args.repeats)
            print(f"{name:>18} {'local':>20} {1e3 * local_t:>9.2f} {'-':>14} {'-':>19} {'-':>16} {0.0:>18.1e}")
            runs: list[tuple[str, ShardedSimulation]] = [
                (f"sharded ({args.actors} shards)", ShardedSimulation(spec(), InProcessTransport(args.actors)))]
            if pool is not None:
                runs.append((f"ray ({args.actors} actors)", RaySimulation(spec(), pool)))
            for label, sim in runs:
                t, x = time_rounds(sim, args.rounds, args.repeats)
                k = len(sim.shards)
                width = WIDTH[name] * args.d
                broadcast = (k + 1) * args.n * width * 8
                per_round = sim.halo_bytes / sim.round
                rows = sim.halo_rows / sim.round
                print(f"{name:>18} {label:>20} {1e3 * t:>9.2f} {per_round / 1e3:>14.1f} {broadcast / 1e3:>19.1f} "
                      f"{rows:>16.0f} {np.abs(x - x_ref).max():>18.1e}")
    finally:
        if engine is not None:
            engine.close()
    print(f"# load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
