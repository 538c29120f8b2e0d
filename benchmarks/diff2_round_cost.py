"""Per-round cost of DIFF2 (per-sample clipping of gradients and of gradient differences)
against DP-GD and non-private GD on the paper's fc_10 network, and the time of one calibration.

    python benchmarks/diff2_round_cost.py [--samples 100000] [--nodes 10] [--rounds 12]

Teacher data (d_in = 10) split iid over the nodes; ``mlp_regression`` with ``hidden: 10``
(Linear(10, 10) → softplus → Linear(10, 1), 121 parameters) on the CPU in float64. Each
method runs ``--rounds`` rounds (DIFF2 with T = 6: restarts and difference rounds in the
paper's proportion) after one warm-up round; the figure is wall time per round (median of
per-round times). The calibration time is one ``calibrate_groups`` at the paper's CA Housing
sizes (n_min = 1651, P = 10, R = 2000, T = 6, ε = 3), not memoized.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from fedopt.algorithms import make_algorithm
from fedopt.engines.base import RunSpec, Simulation, StopCriteria
from fedopt.privacy.calibration import _calibrate_groups, diff2_counts
from fedopt.problems import problem_factory
from fedopt.topology.generators import make_topology


def round_times(name: str, params: dict, problem, rounds: int) -> list[float]:
    top = make_topology("complete", n=problem.n)
    sim = Simulation(RunSpec(name, problem, top, make_algorithm(name, **params), 0, StopCriteria(rounds=rounds + 1)))
    sim.start()
    sim.apply_rounds(1)  # warm-up (round 0 is a restart)
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        sim.apply_rounds(1)
        out.append(time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=12)
    a = ap.parse_args(argv)
    if a.samples < a.nodes or a.nodes < 1 or a.rounds < 1:
        ap.error("--samples >= --nodes >= 1 and --rounds >= 1")
    problem = problem_factory("mlp_regression")(n=a.nodes, data={"source": "teacher", "n_samples": a.samples,
                                                                  "d": 10}, hidden=10, device="cpu", dtype="float64")
    private = dict(epsilon=3.0, rounds=2000)
    methods = {
        "gd": ("gd", {"lr": 0.5}),
        "dp_gd": ("dp_gd", {"lr": 0.5, "clip": 1.0, **private}),
        "diff2 (T=6)": ("diff2", {"lr": 0.5, "restart_every": 6, "clip_grad": 1.0, "clip_diff": 3.0, **private}),
    }
    med = {}
    for label, (name, params) in methods.items():
        ts = round_times(name, params, problem, a.rounds)
        med[label] = statistics.median(ts)
        print(f"{label:14s} {1e3 * med[label]:9.1f} ms/round (median of {a.rounds}; mean {1e3 * statistics.mean(ts):.1f})")
    for label in ("dp_gd", "diff2 (T=6)"):
        print(f"{label} / gd = {med[label] / med['gd']:.2f}x")
    k1, k2 = diff2_counts(2000, 6)
    t = time.perf_counter()
    _calibrate_groups.__wrapped__((k1, k2), (0.8, 0.2), 3.0, 1e-5, "pld", (0.05, 50.0), 1e-6)
    print(f"calibration (PLD, CA Housing sizes, T=6, eps=3): {time.perf_counter() - t:.2f} s")
    print(f"d = {problem.d}, samples = {a.samples}, nodes = {a.nodes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
