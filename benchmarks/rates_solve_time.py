"""Solve time of the gossip-rate problems against n, per objective and solver.

    python benchmarks/rates_solve_time.py              # the table of benchmarks/RESULTS_rates.md
    python benchmarks/rates_solve_time.py --quick      # small sizes only

Graphs: random geometric graphs with average degree about 8 (sparse), seed 0. The SDPs
(SCS, Clarabel) run up to the sizes where they stay under a few minutes; the first-order
large-graph path runs everywhere, and where both run the table shows its objective
relative to the SDP's.
"""

from __future__ import annotations

import argparse
import math
import platform
import time


from fedopt.topology.generators import make_topology
from fedopt.topology.rates import optimize_rates

#: (objective, method, solver, largest n) rows of the table.
ROWS = [
    ("dadao", "sdp", "scs", 16),
    ("dadao", "sdp", "clarabel", 16),
    ("dadao", "first_order", "-", 1000),
    ("max_connectivity", "sdp", "scs", 100),
    ("max_connectivity", "sdp", "clarabel", 60),
    ("max_connectivity", "first_order", "-", 1000),
    ("min_total_resistance", "sdp", "scs", 100),
    ("min_total_resistance", "sdp", "clarabel", 60),
    ("min_total_resistance", "first_order", "-", 1000),
    ("fastest_mixing", "sdp", "scs", 100),
    ("fastest_mixing", "sdp", "clarabel", 60),
    ("fastest_mixing", "first_order", "-", 1000),
]


def graph(n: int):  # type: ignore[no-untyped-def]
    return make_topology("random_geometric", n=n, radius=math.sqrt(8.0 / (math.pi * n)), seed=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[16, 30, 60, 100, 1000])
    ap.add_argument("--quick", action="store_true", help="sizes 16 and 100 only")
    args = ap.parse_args()
    sizes = [16, 100] if args.quick else args.sizes
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print("| objective | method | solver | n | edges | time (s) | improvement | vs SDP |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    sdp_value: dict[tuple[str, int], float] = {}
    for n in sizes:
        top = graph(n)
        for obj, method, solver, nmax in ROWS:
            if n > nmax:
                continue
            t0 = time.perf_counter()
            sol = optimize_rates(top, obj, method=method, solver="scs" if solver == "-" else solver)
            dt = time.perf_counter() - t0
            rel = ""
            if method == "sdp":
                sdp_value.setdefault((obj, n), sol.objective)
            elif (obj, n) in sdp_value:
                rel = f"{sol.objective / sdp_value[(obj, n)] - 1:+.2%}"
                if obj == "fastest_mixing":  # and the spectral gap 1 − SLEM, which sets the mixing time
                    rel += f" (gap {(1 - sol.objective) / (1 - sdp_value[(obj, n)]) - 1:+.2%})"
            print(f"| {obj} | {method} | {solver} | {n} | {top.m} | {dt:.2f} | {sol.improvement:.3f} | {rel} |", flush=True)


if __name__ == "__main__":
    main()
