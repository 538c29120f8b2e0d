"""The ray engine against the local engine on a torch MLP problem heavy enough to split.

    python benchmarks/torch_ray.py [--nodes 64] [--hidden 10 30 100 300 998] [--algorithms fedavg dgd]
        [--rounds 4] [--samples 16] [--repeats 3] [--actors 2] [--local-threads T]

Workload: ``n`` nodes (default 64) on a connected random geometric graph, each with
``--samples`` samples of ``d_in = 1000`` standard normal features and a target, an MLP
``Linear(1000, h) → softplus → Linear(h, 1)`` with the squared loss
(:class:`~fedopt.problems.torch_model.TorchModelProblem`, float32 on the CPU), so
``d = 1002 h + 1`` (``h = 998``: d = 999,997). Algorithms, all with full-batch local
gradients: ``fedavg`` (every client, 2 local gradient steps per round: the clients are
split over the actors, the server stays on the driver) and ``dgd`` (one gradient and one
gossip product per round: rows split over the actors by a graph partition, products by
halo exchange), step size ``1 / h``. Each run is ``engine.run(spec)`` for ``--rounds`` rounds with checkpoint
rows at the start and the end.

Both sides warm: one untimed run on each side first (local: lazy imports, torch's first
calls; ray: ``ray.init``, the actors' start-up and imports, which are printed apart as the
start-up), then ``--repeats`` timed runs each, interleaved; the figures are medians. A
warm ray run still ships the problem to the actors (one ``ray.put`` of the run spec per
run): that is part of its cost. Local runs use torch's threads (one per core); each
actor reserves 1 CPU and Ray limits its threads to it (printed). The rows of both sides
are compared (1e-6 relative: float32 oracles, the same arithmetic on different blocks of
nodes). Other processes on the machine change the timings: the load average is printed
at the start and the end of each size.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from functools import partial

import numpy as np
import torch

from fedopt.algorithms import make_algorithm
from fedopt.engines.base import RunSpec, StopCriteria, make_engine
from fedopt.problems.torch_model import TorchModelProblem, mlp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared benchmark graphs
from bench_graphs import rgg  # noqa: E402

D_IN = 1000
#: Parameters of each algorithm; the step size is ``LR / h`` (stable at every width).
PARAMS = {"fedavg": {"local_steps": 2}, "dgd": {}}
LR = 1.0


def make_problem(n: int, hidden: int, samples: int) -> TorchModelProblem:
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, samples, D_IN))
    Y = rng.standard_normal((n, samples, 1))
    return TorchModelProblem(partial(mlp, D_IN, hidden), A, Y, np.full(n, samples), device="cpu", dtype="float32")


def same_rows(a: list[dict], b: list[dict], rtol: float = 1e-6) -> bool:
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        for k, va in ra.items():
            if k == "wall_s" or va is None or isinstance(va, str):
                continue
            if not np.isclose(float(va), float(rb[k]), rtol=rtol, atol=1e-9, equal_nan=True):
                return False
    return True


def actor_threads(engine: object) -> list[int]:
    import ray

    return ray.get([a.__ray_call__.remote(lambda _self: torch.get_num_threads())
                    for a in engine.actors])  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    ap.add_argument("--nodes", type=int, default=64)
    ap.add_argument("--hidden", type=int, nargs="+", default=[10, 30, 100, 300, 998], help="hidden widths h")
    ap.add_argument("--algorithms", nargs="+", default=list(PARAMS), choices=list(PARAMS))
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--samples", type=int, default=16, help="samples per node")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per side (median)")
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--local-threads", type=int, help="torch threads of the local engine (default: torch's)")
    args = ap.parse_args()
    if args.local_threads:
        torch.set_num_threads(args.local_threads)
    import ray

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    print(f"Machine: {os.cpu_count()} CPUs ({cpu}), torch {torch.__version__}, Ray {ray.__version__}, "
          f"Python {platform.python_version()}; load average at start {os.getloadavg()[0]:.2f}")
    top = rgg(args.nodes)
    t0 = time.perf_counter()
    ray.init(num_cpus=args.actors, include_dashboard=False, log_to_driver=False)
    engine = make_engine("ray", num_actors=args.actors, num_cpus_per_actor=1)
    threads = actor_threads(engine)
    t_start = time.perf_counter() - t0
    print(f"Ray start-up (ray.init + {args.actors} actors, 1 CPU each): {t_start:.1f} s; torch threads: "
          f"local {torch.get_num_threads()}, actors {threads}; n = {args.nodes} ({top.m} edges), "
          f"{args.samples} samples per node, {args.rounds} rounds, float32\n")
    print("| algorithm | h | d (params) | local s | ray s | ray / local | first ray run s | same rows | load |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for hidden in args.hidden:
        prob = make_problem(args.nodes, hidden, args.samples)
        for name in args.algorithms:
            def spec() -> RunSpec:
                return RunSpec(name, prob, top, make_algorithm(name, lr=LR / hidden, **PARAMS[name]), 0,
                               StopCriteria(rounds=args.rounds), record_every=float(args.rounds))
            load0 = os.getloadavg()[0]
            make_engine("local").run(spec())
            t0 = time.perf_counter()
            engine.run(spec())
            first = time.perf_counter() - t0
            lt, rt = [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                a = make_engine("local").run(spec())
                lt.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                b = engine.run(spec())
                rt.append(time.perf_counter() - t0)
                assert a.status == b.status == "ok", (a.message, b.message)
                assert "ran on the driver" not in b.message, b.message
            lm, rm = statistics.median(lt), statistics.median(rt)
            print(f"| {name} | {hidden} | {prob.d:,} | {lm:.2f} | {rm:.2f} | {rm / lm:.2f}x | {first:.2f} "
                  f"| {same_rows(a.rows, b.rows)} | {load0:.1f}–{os.getloadavg()[0]:.1f} |", flush=True)
        del prob
    engine.close()
    ray.shutdown()
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
