"""Per-round cost of DIFF2 (per-sample clipping of gradients and of gradient differences)
against DP-GD and non-private GD on the paper's fc_10 network, and the time of one calibration.

    python benchmarks/diff2_round_cost.py [--samples 100000] [--nodes 10] [--rounds 12]
                                          [--clipping auto|layerwise|vmap]

Teacher data (d_in = 10) split iid over the nodes; ``mlp_regression`` with ``hidden: 10``
(Linear(10, 10) → softplus → Linear(10, 1), 121 parameters) on the CPU in float64. Each
method runs ``--rounds`` rounds (DIFF2 with T = 6: restarts and difference rounds in the
paper's proportion) after one warm-up round; the methods take their rounds **in turn**
(GD, DP-GD, DIFF2, DIFF2 two-point, GD, ...), so a change of the host's load touches all
alike. DIFF2 runs twice: as configured by default (each node keeps its evaluation at
``x_r``, so a difference round evaluates one point) and with ``keep_evaluations: false``
(``two-point``: every difference round evaluates ``x_r`` and ``x_{r−1}``). The
figures are wall time per round (median, mean and minimum of the per-round times; with
``--rounds`` a multiple of T the mean is DIFF2's cost per round over whole restart periods;
its difference and restart rounds also apart). ``--clipping`` picks the problem's fused
clipping kernels (``auto``: layerwise for this network; ``vmap``: materialized per-sample
gradients, chunked). The calibration time is one ``calibrate_groups`` at the paper's CA
Housing sizes (n_min = 1651, P = 10, R = 2000, T = 6, ε = 3), not memoized.
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
from fedopt.problems.torch_model import CLIPPING_KERNELS, make_kernels
from fedopt.topology.generators import make_topology

#: DIFF2's restart period in the benchmark (the paper's smallest, τ = 0.003 of R = 2000).
T = 6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--clipping", choices=CLIPPING_KERNELS, default="auto")
    a = ap.parse_args(argv)
    if a.samples < a.nodes or a.nodes < 1 or a.rounds < 1:
        ap.error("--samples >= --nodes >= 1 and --rounds >= 1")
    problem = problem_factory("mlp_regression")(n=a.nodes, data={"source": "teacher", "n_samples": a.samples,
                                                                  "d": 10}, hidden=10, device="cpu", dtype="float64")
    problem._kernels = make_kernels(problem.module, problem._loss, problem.unflatten, problem.flatten,
                                    tuple(problem._inputs.shape[2:]), a.clipping)
    private = dict(epsilon=3.0, rounds=2000)
    methods = {
        "gd": ("gd", {"lr": 0.5}),
        "dp_gd": ("dp_gd", {"lr": 0.5, "clip": 1.0, **private}),
        f"diff2 (T={T})": ("diff2", {"lr": 0.5, "restart_every": T, "clip_grad": 1.0, "clip_diff": 3.0, **private}),
        "diff2 two-point": ("diff2", {"lr": 0.5, "restart_every": T, "clip_grad": 1.0, "clip_diff": 3.0,
                                      "keep_evaluations": False, **private}),
    }
    top = make_topology("complete", n=problem.n)
    sims = {}
    for label, (name, params) in methods.items():
        sim = Simulation(RunSpec(name, problem, top, make_algorithm(name, **params), 0,
                                 StopCriteria(rounds=a.rounds + 1)))
        sim.start()
        sim.apply_rounds(1)  # warm-up (round 0 is a restart)
        sims[label] = sim
    times: dict[str, list[float]] = {label: [] for label in methods}
    for _ in range(a.rounds):
        for label, sim in sims.items():
            t = time.perf_counter()
            sim.apply_rounds(1)
            times[label].append(time.perf_counter() - t)
    med = {label: statistics.median(ts) for label, ts in times.items()}
    low = {label: min(ts) for label, ts in times.items()}
    print(f"clipping kernels: {problem._kernels.clipping} (evaluation kept: {problem.evaluation_width()} floats "
          "per sample)")
    for label, ts in times.items():
        print(f"{label:15s} {1e3 * med[label]:9.1f} ms/round median, {1e3 * low[label]:8.1f} min "
              f"(of {a.rounds}; mean {1e3 * statistics.mean(ts):.1f})")
    d2 = f"diff2 (T={T})"
    for label in (d2, "diff2 two-point"):
        diff = [t for r, t in enumerate(times[label], start=1) if r % T]
        restart = [t for r, t in enumerate(times[label], start=1) if not r % T]
        print(f"{label}: difference rounds {1e3 * statistics.median(diff):.1f} ms median"
              + (f", restarts {1e3 * statistics.median(restart):.1f} ms median" if restart else ""))
    mean = {label: statistics.mean(ts) for label, ts in times.items()}
    for label in ("dp_gd", d2, "diff2 two-point"):
        print(f"{label} / gd = {med[label] / med['gd']:.2f}x median, {mean[label] / mean['gd']:.2f}x mean, "
              f"{low[label] / low['gd']:.2f}x min")
    k1, k2 = diff2_counts(2000, T)
    t = time.perf_counter()
    _calibrate_groups.__wrapped__((k1, k2), (0.8, 0.2), 3.0, 1e-5, "pld", (0.05, 50.0), 1e-6)
    print(f"calibration (PLD, CA Housing sizes, T={T}, eps=3): {time.perf_counter() - t:.2f} s")
    print(f"d = {problem.d}, samples = {a.samples}, nodes = {a.nodes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
