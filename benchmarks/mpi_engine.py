"""The mpi engine against the local, in-process sharded and ray engines, side by side in one run.

    python benchmarks/mpi_engine.py [--ranks 1 2 4] [--repeats 3] [--dadao-n 1024] [--dadao-time 3]
        [--dgd-n 4096] [--d 100] [--samples 10] [--rounds 10] [--skip-ray]

Workloads (the same specs on every engine):

* **DADAO**, n = ``--dadao-n`` on a connected random geometric graph (mean degree about
  13), random quadratics (d = 10, spectra in [1, 10]); after a warm-up of 0.1 units of
  simulated time, ``--repeats`` windows of ``--dadao-time`` units each are timed. Per
  level: milliseconds per dependency level, and per level with cross-shard gossip (the
  levels whose gossip crosses a shard boundary; each needs the two-phase exchange of peer
  messages between shards).
* **DGD**, n = ``--dgd-n`` on the same kind of graph, least squares on synthetic data
  (``--samples`` rows per node, dimension ``--d``); after 2 warm-up rounds, ``--repeats``
  windows of ``--rounds`` rounds are timed. Per round: milliseconds, and the halo rows the
  shards sent each other.

Engines: ``local`` (one process); ``mpi`` with P ranks (``mpiexec -n P`` runs this script
with ``--rank-job``; rank 0 drives and holds shard 0); ``sharded`` with P shards in one
process (the shards' work with no transport and no parallelism: what a transport adds to it
is its cost); ``ray`` with P actors (1 CPU each, on a Ray started here with one CPU for every
actor of every pool). Warm against warm: each engine sets the run up (shipping the problem)
and runs the warm-up before the clock starts. Figures per level or round are medians over
the windows; the seconds are all windows'. Communication time of the mpi engine: the
seconds rank 0 waited for the other ranks' rows and results (communication and load
imbalance), per level or per round. Also measured: the round trip of a small array between
two ranks with MPICH's blocking receive and with the engine's polling wait. Every engine's
final iterates are compared with the local engine's (max |x - x_local|). The machine's
``uptime`` is printed at the start and the end: on a shared machine the timings move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

import numpy as np

from fedopt.algorithms import make_algorithm
from fedopt.engines.base import RunSpec, Simulation, StopCriteria
from fedopt.engines.sharded import simulation as sharded_simulation
from fedopt.engines.sharded.inprocess import InProcessTransport
from fedopt.engines.sharded.simulation import ShardedSimulation
from fedopt.problems.empirical import least_squares
from fedopt.problems.quadratic import random_quadratic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared benchmark graphs
from bench_graphs import rgg  # noqa: E402

WARM_TIME = 0.1
WARM_ROUNDS = 2


def dadao_spec(n: int, horizon: float, repeats: int) -> RunSpec:
    top = rgg(n)
    prob = random_quadratic(n, 10, mu=1.0, L=10.0, seed=0)
    return RunSpec("dadao-bench", prob, top, make_algorithm("dadao"), 0,
                   StopCriteria(time=WARM_TIME + repeats * horizon))


def dgd_spec(n: int, d: int, samples: int, rounds: int, repeats: int) -> RunSpec:
    top = rgg(n)
    prob = least_squares(n, {"source": "synthetic", "task": "regression", "n_samples": samples * n, "d": d},
                         reg=0.1, seed=1)
    return RunSpec("dgd-bench", prob, top, make_algorithm("dgd", lr=0.05), 0,
                   StopCriteria(rounds=WARM_ROUNDS + repeats * rounds))


class LevelCount:
    """Counts dependency levels, and levels with cross-shard gossip, of the blocks a sharded
    run plans (it wraps the core's ``plan_block``)."""

    def __init__(self) -> None:
        self.levels = 0
        self.cross_levels = 0
        self._plan = sharded_simulation.plan_block
        sharded_simulation.plan_block = self._count  # type: ignore[assignment]

    def _count(self, sched: Any, owner: np.ndarray, k: int) -> Any:
        ev, b = sched.events, sched.bounds
        self.levels += sched.n_levels
        gs = np.arange(sched.n_levels)
        for lv in gs:
            s, e = b[2 * lv + 1], b[2 * lv + 2]
            if e > s and (owner[ev.node_a[s:e]] != owner[ev.node_b[s:e]]).any():
                self.cross_levels += 1
        return self._plan(sched, owner, k)

    def reset(self) -> None:
        self.levels = self.cross_levels = 0


def measure(sim: Simulation, workload: str, repeats: int, counter: LevelCount | None,
            wait: Any = None) -> dict[str, Any]:
    """Warm up, then time ``repeats`` windows of the workload on ``sim``: per window the
    seconds, levels (cross levels) or rounds (halo rows), rank 0's waits; the final iterates."""
    sim.start()
    sim.record()
    event = workload == "dadao"
    stop = sim.spec.stop
    if event:
        sim.apply_events(WARM_TIME)
        sim.t = WARM_TIME
        assert stop.time is not None
        step = (stop.time - WARM_TIME) / repeats
    else:
        sim.apply_rounds(WARM_ROUNDS)
        assert stop.rounds is not None
        step = (stop.rounds - WARM_ROUNDS) // repeats
    windows = []
    for j in range(1, repeats + 1):
        if counter is not None:
            counter.reset()
        w0 = wait() if wait is not None else 0.0
        h0 = getattr(sim, "halo_rows", 0)
        t0 = time.perf_counter()
        if event:
            sim.apply_events(WARM_TIME + j * step)
            sim.t = WARM_TIME + j * step
        else:
            sim.apply_rounds(int(step))
        win: dict[str, Any] = {"seconds": time.perf_counter() - t0}
        if wait is not None:
            win["wait_s"] = wait() - w0
        sim.record()  # (halo counts are read at record points; not timed)
        if event:
            win["levels"] = counter.levels if counter is not None else None
            win["cross_levels"] = counter.cross_levels if counter is not None else None
        else:
            win["rounds"] = int(step)
            win["halo_rows"] = getattr(sim, "halo_rows", 0) - h0
        windows.append(win)
    return {"windows": windows, "x": np.asarray(sim.algo.iterates(sim.state, sim.ctx, sim.t)).tolist()}


def local_levels(spec: RunSpec, repeats: int) -> list[int]:
    """Dependency levels of each timed window in the local engine (the same event stream)."""
    from fedopt.core.levels import schedule_levels

    sim = Simulation(spec)
    sim.start()
    assert sim._stream is not None and spec.stop.time is not None
    sim._stream.until(WARM_TIME, spec.max_events)
    step = (spec.stop.time - WARM_TIME) / repeats
    return [schedule_levels(sim._stream.until(WARM_TIME + j * step, spec.max_events), sim.ctx.n).n_levels
            for j in range(1, repeats + 1)]


def pingpong(trips: int = 2000) -> None:
    """Under ``mpiexec -n 2``: microseconds per round trip of a 50 x 10 array between the two
    ranks, with MPICH's blocking receive and with the engine's polling wait (one JSON line)."""
    from mpi4py import MPI

    from fedopt.engines.mpi.transport import wait_recv

    comm = MPI.COMM_WORLD
    rank, other = comm.Get_rank(), 1 - comm.Get_rank()
    x = np.zeros((50, 10))
    out = {}
    for mode in ("blocking recv", "polling wait"):
        def recv() -> Any:
            return comm.recv(source=other, tag=7) if mode == "blocking recv" else wait_recv(comm, other, 7)

        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(trips):
            if rank == 0:
                comm.send(x, other, 7)
                recv()
            else:
                recv()
                comm.send(x, other, 7)
        out[mode] = 1e6 * (time.perf_counter() - t0) / trips
    if rank == 0:
        print("RESULT " + json.dumps(out), flush=True)


def rank_job(args: argparse.Namespace) -> None:
    """Under mpiexec: rank 0 times the workload on the ranks and prints one JSON line."""
    if args.workload == "pingpong":
        pingpong()
        return
    from fedopt.engines.mpi import MpiJob

    with MpiJob() as job:
        if not job.is_driver:
            return
        spec = make_spec(args)
        counter = LevelCount()
        assert job.transport is not None
        tr = job.transport
        sim = ShardedSimulation(spec, tr)
        res = measure(sim, args.workload, args.repeats, counter, lambda: tr.wait_s)
        tr.settle()
        print("RESULT " + json.dumps(res), flush=True)


def make_spec(args: argparse.Namespace) -> RunSpec:
    if args.workload == "dadao":
        return dadao_spec(args.dadao_n, args.dadao_time, args.repeats)
    return dgd_spec(args.dgd_n, args.d, args.samples, args.rounds, args.repeats)


def run_mpi(args: argparse.Namespace, workload: str, ranks: int) -> dict[str, Any]:
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    cmd = [mpiexec, "-n", str(ranks), sys.executable, os.path.abspath(__file__), "--rank-job", "--workload",
           workload, *_size_args(args)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"mpiexec -n {ranks} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def _size_args(args: argparse.Namespace) -> list[str]:
    return ["--dadao-n", str(args.dadao_n), "--dadao-time", str(args.dadao_time), "--dgd-n", str(args.dgd_n),
            "--d", str(args.d), "--samples", str(args.samples), "--rounds", str(args.rounds),
            "--repeats", str(args.repeats)]


def _median(values: list[float]) -> float:
    return float(np.median(values))


def row(workload: str, engine: str, res: dict[str, Any], x_ref: np.ndarray) -> str:
    """One table row: total seconds, counts of the first window, medians over the windows."""
    dev = float(np.abs(np.asarray(res["x"]) - x_ref).max())
    ws = res["windows"]
    secs = sum(w["seconds"] for w in ws)
    waits = [w["wait_s"] for w in ws] if "wait_s" in ws[0] else None
    if workload == "dadao":
        lv, cl = [w["levels"] for w in ws], [w["cross_levels"] for w in ws]
        per_lv = f"{_median([1e3 * w['seconds'] / n for w, n in zip(ws, lv)]):.3f}"
        per_cl = f"{_median([1e3 * w['seconds'] / n for w, n in zip(ws, cl)]):.3f}" if cl[0] else "-"
        comm = f"{_median([1e3 * a / n for a, n in zip(waits, lv)]):.3f}" if waits is not None else "-"
        return (f"| DADAO | {engine} | {secs:.3f} | {sum(lv)} | {sum(cl) if cl[0] is not None else '-'} | "
                f"{per_lv} | {per_cl} | {comm} | {dev:.1e} |")
    r = [w["rounds"] for w in ws]
    comm = f"{_median([1e3 * a / n for a, n in zip(waits, r)]):.2f}" if waits is not None else "-"
    return (f"| DGD | {engine} | {secs:.3f} | {sum(r)} | {ws[0]['halo_rows'] / r[0]:.0f} | "
            f"{_median([1e3 * w['seconds'] / n for w, n in zip(ws, r)]):.2f} | - | {comm} | {dev:.1e} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4], help="ranks / actors to compare")
    ap.add_argument("--dadao-n", type=int, default=1024)
    ap.add_argument("--dadao-time", type=float, default=3.0, help="simulated time timed (after 0.1 of warm-up)")
    ap.add_argument("--dgd-n", type=int, default=4096)
    ap.add_argument("--d", type=int, default=100, help="dimension of the DGD problem")
    ap.add_argument("--samples", type=int, default=10, help="data rows per node of the DGD problem")
    ap.add_argument("--rounds", type=int, default=10, help="DGD rounds timed (after 2 of warm-up)")
    ap.add_argument("--repeats", type=int, default=3, help="timed windows per engine (medians reported)")
    ap.add_argument("--workloads", nargs="+", default=["dadao", "dgd"], choices=["dadao", "dgd"])
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--rank-job", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workload", choices=["dadao", "dgd", "pingpong"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    for key in ("dadao_n", "dgd_n", "d", "samples", "rounds", "repeats"):
        if getattr(args, key) < 1:
            sys.exit(f"--{key.replace('_', '-')}: must be >= 1, got {getattr(args, key)}")
    if not args.dadao_time > 0:
        sys.exit(f"--dadao-time: must be > 0, got {args.dadao_time}")
    if min(args.ranks) < 1:
        sys.exit(f"--ranks: every count must be >= 1, got {args.ranks}")
    if args.rank_job:
        rank_job(args)
        return
    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}; uptime at start: {up}", flush=True)
    pool_for: dict[int, Any] = {}
    if not args.skip_ray:
        import ray

        from fedopt.engines.ray.engine import ActorPool, RaySimulation

        ray.init(num_cpus=sum(args.ranks), include_dashboard=False, log_to_driver=False)  # every pool at once
    lines = ["| workload | engine | seconds (all windows) | levels / rounds | cross levels / halo rows per round | "
             "ms per level / round | ms per cross level | mpi: rank 0 wait ms per level / round | "
             "max abs x - x_local |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    try:
        for workload in args.workloads:
            args.workload = workload
            spec = make_spec(args)
            if workload == "dadao":
                print(f"# DADAO: n = {spec.problem.n}, m = {spec.topology.m} edges, simulated time "
                      f"{args.dadao_time} timed", flush=True)
            else:
                print(f"# DGD: n = {spec.problem.n}, m = {spec.topology.m} edges, d = {args.d}, "
                      f"{args.rounds} rounds timed", flush=True)
            ref = measure(Simulation(spec), workload, args.repeats, None)
            if workload == "dadao":
                for w, n in zip(ref["windows"], local_levels(make_spec(args), args.repeats)):
                    w["levels"] = n
            x_ref = np.asarray(ref["x"])
            lines.append(row(workload, "local", ref, x_ref))
            print(lines[-1], flush=True)
            for p in args.ranks:
                res = run_mpi(args, workload, p)
                lines.append(row(workload, f"mpi, {p} rank{'s' if p > 1 else ''}", res, x_ref))
                print(lines[-1], flush=True)
                if p > 1:  # the same shard work in this process, no transport (a floor for the engines)
                    counter = LevelCount()
                    try:
                        sim = ShardedSimulation(make_spec(args), InProcessTransport(p))
                        res = measure(sim, workload, args.repeats, counter)
                    finally:
                        sharded_simulation.plan_block = counter._plan  # type: ignore[assignment]
                    lines.append(row(workload, f"sharded, {p} shards in one process", res, x_ref))
                    print(lines[-1], flush=True)
                if not args.skip_ray:
                    if p not in pool_for:
                        pool_for[p] = ActorPool(p, 1.0, 0.0)
                    counter = LevelCount()
                    try:
                        res = measure(RaySimulation(make_spec(args), pool_for[p]), workload, args.repeats, counter)
                    finally:
                        sharded_simulation.plan_block = counter._plan  # type: ignore[assignment]
                    lines.append(row(workload, f"ray, {p} actor{'s' if p > 1 else ''}", res, x_ref))
                    print(lines[-1], flush=True)
    finally:
        for pool in pool_for.values():
            pool.close()
    pp = run_mpi(args, "pingpong", 2)
    print("# two ranks, a 50 x 10 array there and back: " + ", ".join(f"{k} {v:.1f} µs per round trip"
                                                                        for k, v in pp.items()))
    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"# uptime at the end: {up}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
