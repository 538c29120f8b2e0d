"""The sharded core's per-level (or per-round) work in one process, in CPU and wall seconds.

    python benchmarks/shard_step.py [--workload dadao|dgd] [--shards 2] [--profile]

The workloads of ``benchmarks/mpi_engine.py`` (DADAO n = 1024, one window of 3 units of
simulated time after 0.1 of warm-up; DGD n = 4096, d = 100, 10 rounds after 2), run by the
in-process ``sharded`` engine with ``--shards`` shards (all shards' work one after the other,
with the in-process transport's copies) and by the local engine. CPU seconds
(``time.process_time``) hardly move with the load of a shared machine, so they compare the
shard step with the local step where wall-clock times cannot. ``--profile`` prints the
sharded run's ``cProfile`` (by own time; its overhead is then in the sharded figures).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_engine import WARM_ROUNDS, WARM_TIME, dadao_spec, dgd_spec  # noqa: E402

from fedopt.core.levels import schedule_levels  # noqa: E402
from fedopt.engines.base import RunSpec, Simulation  # noqa: E402
from fedopt.engines.sharded.inprocess import InProcessTransport  # noqa: E402
from fedopt.engines.sharded.simulation import ShardedSimulation  # noqa: E402


def timed(sim: Simulation, workload: str, profile: cProfile.Profile | None) -> tuple[float, float]:
    """Warm ``sim`` up, then time one window: wall seconds and CPU seconds."""
    sim.start()
    sim.record()
    if workload == "dadao":
        sim.apply_events(WARM_TIME)
    else:
        sim.apply_rounds(WARM_ROUNDS)
    if profile is not None:
        profile.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    if workload == "dadao":
        sim.apply_events(WARM_TIME + 3.0)
    else:
        sim.apply_rounds(10)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if profile is not None:
        profile.disable()
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", choices=["dadao", "dgd"], default="dadao")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    if args.shards < 1:
        sys.exit(f"--shards: must be >= 1, got {args.shards}")

    def spec() -> RunSpec:
        return dadao_spec(1024, 3.0, 1) if args.workload == "dadao" else dgd_spec(4096, 100, 10, 10, 1)

    units = "rounds"
    count = 10
    if args.workload == "dadao":  # the window's dependency levels (the same event stream on every engine)
        ref = Simulation(spec())
        ref.start()
        assert ref._stream is not None
        ref._stream.until(WARM_TIME, ref.spec.max_events)
        count = schedule_levels(ref._stream.until(WARM_TIME + 3.0, ref.spec.max_events), ref.ctx.n).n_levels
        units = "levels"
    prof = cProfile.Profile() if args.profile else None
    for name, sim, p in (("local", Simulation(spec()), None),
                         (f"sharded, {args.shards} shards", ShardedSimulation(spec(), InProcessTransport(args.shards)),
                          prof)):
        wall, cpu = timed(sim, args.workload, p)
        print(f"{args.workload} {name}: {count} {units}, {1e3 * cpu / count:.3f} ms CPU and "
              f"{1e3 * wall / count:.3f} ms wall per {units[:-1]}")
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
