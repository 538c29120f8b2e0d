"""``fedopt topology NAME`` and ``fedopt topology --list`` (registered by :mod:`fedopt.cli`).

``NAME`` is a generator (``cycle``, ``random_geometric``, …; parameters with
``--param key=value`` and ``--n``), a spec file, or the name of a spec shipped in
``topologies/``. The command prints ``n``, ``|E|``, the degree range, ``λ2``, ``χ1``,
``χ2`` of the Laplacian (weighted by the spec's gossip rates when it has them, else
unweighted) and DADAO's total uniform rate ``λ_tot = sqrt(2 χ1 χ2)`` of
``L_norm = L_G/|E|``. A time-varying topology prints one line per graph and the worst
cases over the sequence.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

#: Columns of the per-graph table of a time-varying topology.
_COLUMNS = ("graph", "|E|", "deg", "lambda2", "chi1", "chi2", "rate_tot")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "topology", help="describe a topology: size, degrees, λ2, χ1, χ2, DADAO rate",
        description="Build a topology (generator, spec file or shipped spec) and print its size, degree "
        "range and spectral constants: λ2, χ1 = 1/λ2, χ2 = max_e ½ b_eᵀ L⁺ b_e, and DADAO's uniform "
        "rate sqrt(2 χ1 χ2) of L_G/|E|.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="generator name, spec file, or shipped spec name")
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                   help="generator parameter (repeatable), e.g. --param radius=0.4")
    p.add_argument("--n", type=int, metavar="N", help="number of nodes (generators)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--list", action="store_true", help="list the generators (with parameters) and shipped specs")
    p.set_defaults(func=_topology)


def parse_value(text: str) -> Any:
    """``"16"`` → 16, ``"0.5"`` → 0.5, ``"true"`` → True, anything else stays a string."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_params(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param {item!r}: write KEY=VALUE")
        out[key.strip()] = parse_value(val.strip())
    return out


def _topology(args: argparse.Namespace) -> int:
    if args.list:
        return _list(args)
    if not args.name:
        raise ValueError("topology: give a NAME (a generator, spec file or shipped spec), or --list")
    from fedopt.topology.spec import resolve_topology

    params = parse_params(args.param)
    if args.n is not None:
        params["n"] = args.n
    top = resolve_topology({"name": args.name, **params})
    if hasattr(top, "topologies"):
        return _print_sequence(top, args.json)
    from fedopt.topology.spectral import summarize

    s = summarize(top)
    if args.json:
        d = s.as_dict()
        d["weights"] = "rates" if top.rates is not None else "unit"
        print(json.dumps(d, indent=2))
        return 0
    weights = "the spec's gossip rates" if top.rates is not None else "unit weights"
    print(f"{s.name}: n = {s.n}, |E| = {s.edges}, degree {s.degree_min}..{s.degree_max}")
    print(f"  λ2       = {_g(s.lambda2)}   (Laplacian, {weights})")
    print(f"  χ1       = {_g(s.chi1)}   (1/λ2)")
    print(f"  χ2       = {_g(s.chi2)}   (max_e ½ b_eᵀ L⁺ b_e)")
    print(f"  rate_tot = {_g(s.rate_tot)}   (DADAO uniform rate sqrt(2 χ1 χ2) of L_norm = L_G/|E|)")
    return 0


def _print_sequence(tv: Any, as_json: bool) -> int:
    from fedopt.topology.spectral import summarize
    from fedopt.topology.time_varying import dadao_uniform_rate

    rows = [summarize(t) for t in tv.topologies]
    worst = {
        "chi1_norm": tv.worst_chi1() if hasattr(tv, "worst_chi1") else None,
        "chi2_norm": tv.worst_chi2() if hasattr(tv, "worst_chi2") else None,
        "rate_tot": dadao_uniform_rate(tv.topologies),
        "period": float(tv.period),
    }
    if as_json:
        print(json.dumps({"name": getattr(tv, "name", "time_varying"), "n": tv.topologies[0].n,
                          "count": len(rows), "worst": worst, "graphs": [r.as_dict() for r in rows]}, indent=2))
        return 0
    print(f"{getattr(tv, 'name', 'time_varying')}: {len(rows)} graphs, n = {tv.topologies[0].n}, "
          f"switching every {_g(worst['period'])} time units")
    table = [_COLUMNS] + [
        (r.name, str(r.edges), f"{r.degree_min}..{r.degree_max}", _g(r.lambda2), _g(r.chi1), _g(r.chi2), _g(r.rate_tot))
        for r in rows
    ]
    widths = [max(len(row[c]) for row in table) for c in range(len(_COLUMNS))]
    for row in table:
        print("  " + "  ".join(v.rjust(w) if c else v.ljust(w) for c, (v, w) in enumerate(zip(row, widths))))
    print(f"  worst case over the sequence (L_norm = L_G/|E|): χ1 = {_g(worst['chi1_norm'])}, "
          f"χ2 = {_g(worst['chi2_norm'])}; DADAO rate_tot = sqrt(2 χ1 χ2) = {_g(worst['rate_tot'])}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from fedopt.topology.generators import available_topologies, topology_params
    from fedopt.topology.spec import available_specs

    gens = {name: topology_params(name) for name in available_topologies()}
    specs = available_specs()
    if args.json:
        print(json.dumps({"generators": gens, "specs": specs}, indent=2))
        return 0
    print("generators:")
    for name, params in gens.items():
        print(f"  {name}({', '.join(params)})")
    print("shipped specs (topologies/):")
    for s in specs:
        print(f"  {s}")
    if not specs:
        print("  (none)")
    return 0


def _g(v: float | None) -> str:
    if v is None:
        return "-"
    return "inf" if math.isinf(v) else f"{v:.6g}"
