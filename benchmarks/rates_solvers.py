"""Which SDP solver, and which form of DADAO's χ2 constraint, solves each rate problem fastest.

    python benchmarks/rates_solvers.py                       # the tables of benchmarks/RESULTS_rates.md
    python benchmarks/rates_solvers.py --sizes 8 15 --limit 10
    python benchmarks/rates_solvers.py --sizes 100 --objectives max_connectivity --limit 60

Two graph families at n = 8, 15, 30, 60, 100: ``barbell`` (two cliques ``K_m1`` joined by a
path of ``m2`` nodes, networkx ``barbell_graph(m1, m2)``: (3, 2), (6, 3), (10, 10), (15, 30),
(25, 50)) and ``rgg`` (a random geometric graph with average degree about 8, seed 0). For
each graph:

1. DADAO's SDP with each form of its χ2 constraint (``edge_lmi``, ``block_lmi``, ``flow``)
   and each solver: time, solver iterations, and the optimum relative to the best optimum
   found on that graph;
2. every objective's SDP with SCS and with Clarabel side by side (DADAO with each solver's
   default form): times, their ratio, iterations, and the relative difference of the two
   optima (SCS − Clarabel, over |Clarabel|).

Every solve runs in a forked child that is killed after ``--limit`` seconds (default 15; CVXPY's
compilation included); the solvers' own time limits are set just below. A (problem, form,
solver, family) that hits the limit or fails is not run again at larger n ("(skipped)").
Times are ``RateSolution.solve_time`` (compilation, solve and the exact re-evaluation of
the rates).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import platform
import sys
import time
from typing import Any

import cvxpy as cp

from fedopt.topology.generators import make_topology
from fedopt.topology.graph import Topology
from fedopt.topology.rates import OBJECTIVES, SOLVERS, optimize_rates
from fedopt.topology.rates.sdp import DADAO_DEFAULT_FORM, DADAO_FORMS

FAMILIES = ("barbell", "rgg")


#: ``(m1, m2)`` of the barbell with ``n = 2·m1 + m2`` nodes (other n: ``m1 = max(3, n // 4)``).
BARBELLS = {8: (3, 2), 15: (6, 3), 30: (10, 10), 60: (15, 30), 100: (25, 50)}


def graph(family: str, n: int) -> Topology:
    """The benchmark graph of ``family`` with ``n`` nodes."""
    if family == "barbell":
        m1, m2 = BARBELLS.get(n, (max(3, n // 4), n - 2 * max(3, n // 4)))
        return make_topology("barbell", m1=m1, m2=m2)
    return make_topology("random_geometric", n=n, radius=math.sqrt(8.0 / (math.pi * n)), seed=0)


def _child(conn: Any, top: Topology, objective: str, solver: str, form: str | None, limit: float) -> None:
    opts: dict[str, Any] = {"time_limit_secs": limit} if solver == "scs" else {"time_limit": limit}
    try:
        sol = optimize_rates(top, objective, solver=solver, method="sdp", form=form, solver_opts=opts)
        conn.send({"time": sol.solve_time, "value": sol.objective, "status": sol.status,
                   "iters": sol.info.get("solver_iterations"), "gap": sol.duality_gap})
    except Exception as exc:  # reported in the table
        conn.send({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:60]}"})


def run(top: Topology, objective: str, solver: str, form: str | None, limit: float) -> dict[str, Any]:
    """One bounded solve in a forked child: its time, optimum, status and iterations, or
    ``{"error": ...}`` (``"limit"`` when it ran past ``limit`` seconds)."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, top, objective, solver, form, 0.9 * limit))
    t0 = time.perf_counter()
    proc.start()
    out: dict[str, Any] = {"error": "limit"}
    if parent.poll(limit):
        out = parent.recv()
    if proc.is_alive():
        proc.kill()
    proc.join()
    if ("time" in out and out["time"] >= 0.9 * limit) or "user_limit" in out.get("error", ""):
        out["error"] = "limit"
    out["wall"] = time.perf_counter() - t0
    return out


def _ok(r: dict[str, Any]) -> bool:
    """Finished within the limit at the solver's full accuracy."""
    return "error" not in r and r["status"] == "optimal"


def _fmt_time(r: dict[str, Any], limit: float) -> str:
    if "error" in r:
        if r["error"] == "skipped":
            return "(skipped)"
        return f"> {limit:.0f} (limit)" if r["error"] == "limit" else f"failed ({r['error']})"
    return f"{r['time']:.2f}" + ("" if r["status"] == "optimal" else f" ({r['status']})")


def _fmt_iters(r: dict[str, Any]) -> str:
    return "" if r.get("iters") is None else str(r["iters"])


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[8, 15, 30, 60, 100])
    ap.add_argument("--families", nargs="*", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--objectives", nargs="*", default=list(OBJECTIVES), choices=list(OBJECTIVES))
    ap.add_argument("--limit", type=float, default=15.0, help="seconds per solve (default 15)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    forms_rows: list[str] = []
    solver_rows: list[str] = []
    dead: set[tuple[str, ...]] = set()  # combinations past the limit at a smaller n

    def bounded(key: tuple[str, ...], top: Topology, objective: str, solver: str, form: str | None) -> dict[str, Any]:
        if key in dead:
            return {"error": "skipped"}
        r = run(top, objective, solver, form, args.limit)
        print(f"{' '.join(key)} n={top.n}: {_fmt_time(r, args.limit)} s", file=sys.stderr, flush=True)
        if "error" in r:
            dead.add(key)
        return r

    for n in args.sizes:
        for fam in args.families:
            top = graph(fam, n)
            # 1. DADAO's χ2 forms, each with each solver
            res: dict[tuple[str, str], dict[str, Any]] = {}
            for form in DADAO_FORMS if "dadao" in args.objectives else ():
                for solver in SOLVERS:
                    res[form, solver] = bounded(("dadao", form, solver, fam), top, "dadao", solver, form)
            ok = [r["value"] for r in res.values() if "error" not in r]
            best = min(ok) if ok else math.nan
            for (form, solver), r in res.items():
                if r.get("error") == "skipped":
                    continue
                rel = "" if "error" in r else f"{r['value'] / best - 1:.1e}"
                forms_rows.append(f"| {fam} | {top.n} | {top.m} | {form} | {solver} | {_fmt_time(r, args.limit)} "
                                  f"| {_fmt_iters(r)} | {rel} |")
            # 2. every objective with SCS and with Clarabel
            for obj in args.objectives:
                pair = {}
                for solver, cvx in SOLVERS.items():
                    if obj == "dadao":
                        pair[solver] = res[DADAO_DEFAULT_FORM[cvx], solver]
                    else:
                        pair[solver] = bounded((obj, solver, fam), top, obj, solver, None)
                scs, cla = pair["scs"], pair["clarabel"]
                if scs.get("error") == "skipped" and cla.get("error") == "skipped":
                    continue
                both = "error" not in scs and "error" not in cla
                ratio = f"{scs['time'] / cla['time']:.2f}" if both else ""
                rel = f"{(scs['value'] - cla['value']) / abs(cla['value']):+.1e}" if both else ""
                if _ok(scs) and _ok(cla):
                    faster = "clarabel" if scs["time"] > cla["time"] else "scs"
                else:  # only one finished at full accuracy (or neither)
                    faster = "clarabel" if _ok(cla) else "scs" if _ok(scs) else ""
                solver_rows.append(
                    f"| {obj} | {fam} | {top.n} | {top.m} | {_fmt_time(scs, args.limit)} | {_fmt_time(cla, args.limit)} "
                    f"| {ratio} | {faster} | {_fmt_iters(scs)} / {_fmt_iters(cla)} | {rel} |")

    print(f"# {platform.machine()}, {mp.cpu_count()} cores, Python {platform.python_version()}, CVXPY {cp.__version__}; "
          f"limit {args.limit:.0f} s per solve; total {time.perf_counter() - t_start:.0f} s")
    print("\n## DADAO: forms of the χ2 constraint\n")
    print("| family | n | edges | form | solver | time (s) | iterations | optimum vs best |")
    print("|---|---:|---:|---|---|---:|---:|---:|")
    print("\n".join(forms_rows))
    print("\n## Solvers side by side\n")
    print("| objective | family | n | edges | SCS (s) | Clarabel (s) | SCS/Clarabel | faster | iterations SCS / Clarabel "
          "| optimum SCS vs Clarabel |")
    print("|---|---|---:|---:|---:|---:|---:|---|---|---:|")
    print("\n".join(solver_rows))


if __name__ == "__main__":
    main()
