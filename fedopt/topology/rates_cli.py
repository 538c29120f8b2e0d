"""``fedopt rates SPEC``: optimal per-edge gossip rates (registered by :mod:`fedopt.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from fedopt.topology.rates import METHODS, OBJECTIVES, SOLVERS

    p = subparsers.add_parser(
        "rates", help="optimal per-edge gossip rates of a topology (CVXPY SDP or first-order)",
        description="Optimize the per-edge gossip rates of a topology spec (or a generator name) and print "
        "them with the improvement over uniform rates. With latency/bandwidth in the spec, each edge costs "
        "the link-cost model's time of one gossip exchange. The --out file is a topology spec with the rates.",
    )
    p.add_argument("spec", help="topology spec file, a spec name in topologies/, or a generator name")
    p.add_argument("--objective", default="dadao", choices=list(OBJECTIVES), help="rate problem (default: dadao)")
    p.add_argument("--solver", default="auto", choices=["auto", *SOLVERS],
                   help="SDP solver (default auto: the faster for the objective and size, see benchmarks/RESULTS_rates.md)")
    p.add_argument("--method", default="auto", choices=list(METHODS),
                   help="auto: the SDP for small graphs, the first-order method for large ones")
    p.add_argument("--n", type=int, help="number of nodes (generator names only)")
    p.add_argument("--message-bytes", type=float, default=None,
                   help="message size of the link-cost model (default: 1e6 bytes)")
    p.add_argument("--uniform-costs", action="store_true", help="ignore latency/bandwidth: every edge costs 1")
    p.add_argument("--out", metavar="FILE", help="write the topology with the optimized rates (a spec YAML)")
    p.add_argument("--show", type=int, default=20, metavar="K", help="print the first K edges' rates (default 20)")
    p.set_defaults(func=_rates)


def _rates(args: argparse.Namespace) -> int:
    from fedopt.topology.linkcost import DEFAULT_MESSAGE_BYTES, edge_costs, has_link_costs
    from fedopt.topology.rates import OBJECTIVES, condition, optimize_rates
    from fedopt.topology.spec import resolve_topology, save_spec

    ref: dict[str, object] = {"name": args.spec}
    if args.n is not None:
        ref["n"] = args.n
    top = resolve_topology(ref)
    if not hasattr(top, "edges"):
        raise ValueError(f"{args.spec!r} is a time-varying sequence; rates are optimized for one graph")
    if args.message_bytes is not None and args.message_bytes < 0:
        raise ValueError(f"--message-bytes must be non-negative, got {args.message_bytes}")
    nbytes = DEFAULT_MESSAGE_BYTES if args.message_bytes is None else args.message_bytes
    costs = edge_costs(top, nbytes) if has_link_costs(top) and not args.uniform_costs else None
    sol = optimize_rates(top, args.objective, costs=costs, solver=args.solver, method=args.method)

    obj = OBJECTIVES[sol.objective_name]
    how = sol.method
    if sol.method == "sdp":
        chosen = " (auto)" if sol.info.get("solver_selection") == "auto" else ""
        form = f", {sol.info['form']} form" if "form" in sol.info else ""
        how = f"sdp, {sol.solver}{chosen}{form}, status {sol.status}"
    gap = f", duality gap {sol.duality_gap:.2e}" if sol.duality_gap is not None else ""
    print(f"topology {top.name}: n={top.n}, edges={top.m}; objective {sol.objective_name} ({how}, "
          f"{sol.solve_time:.2f} s{gap})")
    if costs is not None:
        print(f"edge cost: one gossip exchange of 2 x {nbytes:.3g} bytes (latency + bytes/bandwidth)")
    label = "link-seconds per unit time" if costs is not None and sol.objective_name == "dadao" else obj.value_label
    print(f"optimized {label}: {sol.objective:.6g}   uniform: {sol.uniform_objective:.6g}   "
          f"improvement: {sol.improvement:.4g}x")
    if sol.objective_name == "fastest_mixing":
        print(f"spectral gap 1 - SLEM: {1 - sol.objective:.6g} (uniform {1 - sol.uniform_objective:.6g})")
    else:
        print(f"chi1 = {sol.chi1:.6g}, chi2 = {sol.chi2:.6g}, 2*chi1*chi2 = {condition(top, sol.rates):.6g}")
    if costs is not None:
        # one line per link class (same latency and bandwidth)
        keys = np.stack([top.latency, top.bandwidth], axis=1)  # type: ignore[list-item]
        classes, inv = np.unique(keys, axis=0, return_inverse=True)
        print(f"{'latency':>10} {'bandwidth':>11} {'edges':>6} {'rate min':>10} {'rate mean':>10} {'rate max':>10} {'share':>7}")
        total = float(sol.rates.sum())
        for k, (lat, bw) in enumerate(classes):
            r = sol.rates[inv.ravel() == k]
            print(f"{lat:10.3g} {bw:11.3g} {r.size:6d} {r.min():10.4g} {r.mean():10.4g} {r.max():10.4g} "
                  f"{r.sum() / total:7.1%}")
    k = min(args.show, top.m)
    if k > 0:
        print(f"{'u':>5} {'v':>5} {'rate':>12} {'uniform':>12}")
        for e in range(k):
            u, v = top.edges[e]
            print(f"{u:5d} {v:5d} {sol.rates[e]:12.6g} {sol.uniform_rates[e]:12.6g}")  # type: ignore[index]
        if k < top.m:
            print(f"... {top.m - k} more edges (--show {top.m} prints all)")
    if args.out:
        out = save_spec(top.with_rates(sol.rates), Path(args.out),
                        description=f"{top.params.get('description') or top.name}; rates: {sol.objective_name} "
                        f"(improvement {sol.improvement:.4g}x over uniform)")
        print(f"rates: {out}")
    return 0
