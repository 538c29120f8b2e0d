"""DADAO events/s side by side: the authors' public implementation and fedopt, same graph, n, d and horizon.

    python benchmarks/dadao_authors.py --src PATH [--python PY] [--graphs star random_geometric]
        [--n 300] [--d 10] [--samples 20] [--events 10000] [--repeats 3] [--threads 1]

``--src`` is a checkout of the authors' repository (github.com/AdelNabli/DADAO,
its ``optimizers.py``, ``run_optimizers.py``, ``utils.py``, ``data.py``,
``cvx_functions.py``); their code is imported from there, never copied. It needs
numpy, scipy, scikit-learn, torch, networkx and tqdm; ``--python`` names an
interpreter that has them (default: this one). Their half runs in a subprocess of
that interpreter (this file with ``--authors-half``, which imports nothing from
fedopt); the graph, the data and the horizon reach it through an ``.npz`` file.

Workload, identical on both sides: least squares, node ``i`` holding ``--samples``
rows ``(a_j, y_j)`` of dimension ``--d`` (``f_i(x) = mean_j (a_jᵀx − y_j)²``, the
authors' ``linear_regression``), on the graph fedopt's ``dadao_events.py`` uses
(star, or its connected random geometric graph) with ``--n`` nodes; gradient clocks
of rate 1 per node and uniform gossip rates of total ``√(2χ₁χ₂)`` of ``L_G/|E|`` (the
authors' ``lamb_mix``); L and μ from the data (the authors'
``compute_regularity_constants``, fedopt's ``LeastSquares``). The simulated
horizon is ``--events`` divided by the total event rate, the same on both sides.

Measured, per graph:

* authors, *step loop*: their ``create_asynchronous_jump_processes`` (the event
  stream) and their ``DADAO_optimizer.step`` on every event, edges drawn uniformly
  from a pre-built edge array, no per-event metrics: the simulator alone, the
  fastest way to drive their code;
* authors, *run_DADAO*: their ``run_optimizers.run_DADAO`` as published (the
  same, plus the per-event distance to x*, the stochastic-average bookkeeping, a
  fresh edge array per gossip event and saving the curves every 10,000 events);
* fedopt: ``Simulation.apply_events`` over the same horizon (event sampling,
  level scheduling, the handlers; no checkpoint rows), median of ``--repeats``.

Events/s *excluding set-up* times the event loop only on every side. *Including
set-up* adds, on each side, what turns (graph, data) into a runnable simulation:
authors: ``compute_spectral_quantities`` (χ₁, χ₂), ``compute_regularity_constants``
(L, μ), the ``linear_regression`` module and ``DADAO_optimizer``; fedopt: the
``LeastSquares`` problem (L, μ), the topology, ``Simulation`` and ``start()`` (χ₁,
χ₂, rates, state). Imports, data generation and one-off compilation are excluded on
both sides: each side first runs the whole pipeline once on a 16-node cycle
(numba compiles there; torch and scipy load their kernels). ``--threads`` caps
BLAS (fedopt) and torch's intra-op pool (authors) alike; default 1 (one core each).

The ratios printed are fedopt / authors on the same basis. The load average is
printed before and after each side: both sides suffer the same load, so the ratios
are the figures to quote on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
AUTHOR_MODULES = ("optimizers.py", "run_optimizers.py", "utils.py", "data.py", "cvx_functions.py")
GRAPH_NAMES = ("star", "random_geometric")


def load_average() -> float:
    """One-minute load average of the machine."""
    return os.getloadavg()[0]


def make_data(n: int, m: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares data ``A [n, m, d]``, ``y [n, m]`` (node-dependent feature scales) and ``x*``.

    With ``m`` rows on every node the global optimum is the ordinary least-squares
    solution of the stacked data.
    """
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, m, d)) * rng.uniform(0.5, 1.5, size=(n, 1, 1))
    w = rng.normal(size=d)
    y = A @ w + 0.5 * rng.normal(size=(n, m))
    x_star = np.linalg.lstsq(A.reshape(n * m, d), y.reshape(n * m), rcond=None)[0]
    return A, y, x_star


# ---- the authors' half (runs in --python; imports nothing from fedopt) --------------------
def authors_half(src: str, inp: str, out: str) -> None:
    """Run the authors' DADAO on the graph, data and horizon in ``inp``; write JSON to ``out``."""
    z = np.load(inp)
    threads = int(z["threads"])
    sys.path.insert(0, src)
    os.chdir(tempfile.mkdtemp(prefix="dadao_authors_"))  # run_DADAO saves its curves under ./runs
    import networkx as nx
    import torch

    torch.set_num_threads(threads)
    from cvx_functions import linear_regression
    from data import create_asynchronous_jump_processes
    from optimizers import DADAO_optimizer
    from run_optimizers import run_DADAO
    from utils import compute_regularity_constants, compute_spectral_quantities

    def graph(n: int, edges: np.ndarray) -> Any:
        g = nx.Graph()
        g.add_nodes_from(range(n))
        g.add_edges_from((int(i), int(j)) for i, j in edges)
        return g

    def setup(G: Any, X: Any, Y: Any) -> dict[str, Any]:
        n, m, d = X.shape
        _, _, chi_1, chi_2, _ = compute_spectral_quantities(G)
        mu, L = compute_regularity_constants(X, False)
        lamb_mix = float(np.sqrt(2 * chi_1 * chi_2))  # as in their main.py
        f = linear_regression(d, n, m)
        opt = DADAO_optimizer(f, X, Y, chi_1_star=chi_1 / lamb_mix, lamb_mix=lamb_mix, n_nodes=n,
                              mu=float(mu), L=float(L))
        return {"opt": opt, "chi_1": float(chi_1), "chi_2": float(chi_2), "lamb_mix": lamb_mix,
                "mu": float(mu), "L": float(L)}

    def step_loop(s: dict[str, Any], G: Any, n: int, horizon: float) -> int:
        opt = s["opt"]
        is_grad, t_event = create_asynchronous_jump_processes(horizon, n, s["lamb_mix"])
        edges = np.array(G.edges)
        for k in range(len(t_event)):
            if is_grad[k]:
                opt.step(True, t_event[k], None, np.random.randint(0, n))
            else:
                opt.step(False, t_event[k], edges[np.random.choice(len(edges))], None)
        return len(t_event)

    def published(s: dict[str, Any], G: Any, X: Any, Y: Any, x_star: np.ndarray, horizon: float) -> tuple[Any, int]:
        n, m, d = X.shape
        f = linear_regression(d, n, m)
        opt, grads, comms = run_DADAO(n, horizon, n, s["lamb_mix"], s["chi_1"], f, s["mu"], s["L"], X, Y, x_star,
                                      [G], False, 1, "bench", "bench")
        return opt, len(grads) + len(comms)

    def dist2(X: Any, x_star: np.ndarray) -> float:
        return float(((X.numpy() - x_star) ** 2).sum(axis=1).mean())

    np.random.seed(int(z["seed"]))
    torch.manual_seed(int(z["seed"]))
    X = torch.from_numpy(z["A"])
    Y = torch.from_numpy(z["y"][..., None])
    x_star = z["x_star"]
    G = graph(int(z["n"]), z["edges"])
    horizon = float(z["horizon"])
    # warm-up: the whole pipeline on a 16-node cycle (torch / scipy first-call costs)
    Gw = nx.cycle_graph(16)
    sw = setup(Gw, X[:16], Y[:16])
    step_loop(sw, Gw, 16, 2.0)
    published(sw, Gw, X[:16], Y[:16], x_star, 2.0)

    res: dict[str, Any] = {"load_before": load_average(), "torch": torch.__version__, "repeats": []}
    for _ in range(int(z["authors_repeats"])):
        t0 = time.perf_counter()
        s = setup(G, X, Y)
        t_setup = time.perf_counter() - t0
        d0 = dist2(s["opt"].X, x_star)
        t0 = time.perf_counter()
        ev_loop = step_loop(s, G, G.number_of_nodes(), horizon)
        t_loop = time.perf_counter() - t0
        d_loop = dist2(s["opt"].X, x_star)
        t0 = time.perf_counter()
        opt, ev_pub = published(s, G, X, Y, x_star, horizon)
        t_pub = time.perf_counter() - t0
        res["repeats"].append({"setup_s": t_setup, "loop_s": t_loop, "loop_events": ev_loop, "published_s": t_pub,
                               "published_events": ev_pub, "dist2_start": d0, "dist2_end": d_loop})
        res.update({k: s[k] for k in ("chi_1", "chi_2", "lamb_mix", "mu", "L")})
    res["load_after"] = load_average()
    Path(out).write_text(json.dumps(res))


# ---- fedopt's half -----------------------------------------------------------------------
def fedopt_pipeline(name: str, g: Any, A: np.ndarray, y: np.ndarray) -> Any:
    """Build the fedopt simulation (problem, topology, DADAO) and start it; return the Simulation."""
    from fedopt.algorithms import make_algorithm
    from fedopt.engines.base import RunSpec, Simulation, StopCriteria
    from fedopt.problems.empirical import LeastSquares
    from fedopt.topology.graph import Topology

    n, m, _ = A.shape
    prob = LeastSquares(A, y, np.full(n, m, dtype=np.int64))
    top = Topology.from_networkx(name, g)
    spec = RunSpec("bench", prob, top, make_algorithm("dadao", init_noise=1.0), 0, StopCriteria(time=1e12),
                   max_events=10**12)
    sim = Simulation(spec)
    sim.start()
    return sim


def fedopt_half(name: str, g: Any, A: np.ndarray, y: np.ndarray, x_star: np.ndarray, events: int,
                repeats: int) -> dict[str, Any]:
    """Time set-up and the event loop of fedopt's DADAO ``repeats`` times over ``events`` / rate."""
    import networkx as nx

    cw = nx.cycle_graph(16)  # warm-up: numba compiles here
    sw = fedopt_pipeline("cycle", cw, A[:16], y[:16])
    sw.apply_events(2.0)
    out: dict[str, Any] = {"load_before": load_average(), "repeats": []}
    horizon = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        sim = fedopt_pipeline(name, g, A, y)
        t_setup = time.perf_counter() - t0
        rate = sim._stream.clocks.total_rate
        horizon = events / rate if horizon is None else horizon
        x0 = sim.algo.iterates(sim.state, sim.ctx, 0.0)
        t0 = time.perf_counter()
        sim.apply_events(horizon)
        t_loop = time.perf_counter() - t0
        xe = sim.algo.iterates(sim.state, sim.ctx, horizon)
        out["repeats"].append({"setup_s": t_setup, "loop_s": t_loop, "events": sim.n_events,
                               "dist2_start": float(((x0 - x_star) ** 2).sum(axis=1).mean()),
                               "dist2_end": float(((xe - x_star) ** 2).sum(axis=1).mean())})
    out.update(load_after=load_average(), horizon=horizon, rate=rate, L=sim.spec.problem.L, mu=sim.spec.problem.mu)
    return out


def median_of(reps: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in reps))


def check_src(src: str) -> str:
    missing = [f for f in AUTHOR_MODULES if not (Path(src) / f).is_file()]
    if missing:
        sys.exit(f"--src: {src} is not a checkout of AdelNabli/DADAO (missing {', '.join(missing)})")
    try:
        return subprocess.run(["git", "-C", src, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    ap.add_argument("--src", required=True, help="checkout of github.com/AdelNabli/DADAO")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter with the authors' requirements (torch, scikit-learn, tqdm, ...)")
    ap.add_argument("--graphs", nargs="+", default=list(GRAPH_NAMES), choices=GRAPH_NAMES)
    ap.add_argument("--n", type=int, default=300, help="nodes")
    ap.add_argument("--d", type=int, default=10, help="dimension")
    ap.add_argument("--samples", type=int, default=20, help="rows per node (>= d so that mu > 0)")
    ap.add_argument("--events", type=int, default=10_000, help="events in the horizon (sets the horizon)")
    ap.add_argument("--repeats", type=int, default=3, help="fedopt repeats (median)")
    ap.add_argument("--authors-repeats", type=int, default=1, help="repeats of the authors' code (median)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS / torch threads on each side")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--authors-half", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.authors_half:
        authors_half(args.src, *args.authors_half)
        return
    for key in ("n", "d", "events", "repeats", "authors_repeats", "threads"):
        if getattr(args, key) < 1:
            sys.exit(f"--{key.replace('_', '-')}: must be >= 1, got {getattr(args, key)}")
    if args.samples < args.d:
        sys.exit(f"--samples: must be >= --d ({args.d}) for a strongly convex problem, got {args.samples}")
    commit = check_src(args.src)

    sys.path.insert(0, str(HERE))
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS before the cap below)
    from dadao_events import GRAPHS  # the graphs of fedopt's own DADAO benchmark
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=args.threads, user_api="blas")  # every BLAS loaded so far (numpy's, scipy's)

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    print(f"# DADAO: the authors' code (commit {commit}) vs fedopt, n = {args.n}, d = {args.d}, "
          f"{args.samples} rows per node, ~{args.events:,} events")
    print(f"machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, numpy {np.__version__}, "
          f"threads per side {args.threads}, load average at start {load_average():.2f}")
    print()
    rows = []
    for name in args.graphs:
        g = GRAPHS[name](args.n)
        A, y, x_star = make_data(args.n, args.samples, args.d, args.seed)
        fo = fedopt_half(name, g, A, y, x_star, args.events, args.repeats)
        with tempfile.TemporaryDirectory() as tmp:
            inp, outp = Path(tmp) / "in.npz", Path(tmp) / "out.json"
            np.savez(inp, A=A, y=y, x_star=x_star, n=args.n, edges=np.array(list(g.edges()), dtype=np.int64),
                     horizon=fo["horizon"], threads=args.threads, seed=args.seed,
                     authors_repeats=args.authors_repeats)
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "OPENBLAS_NUM_THREADS": str(args.threads),
                   "MKL_NUM_THREADS": str(args.threads)}
            proc = subprocess.run([args.python, __file__, "--src", args.src, "--authors-half", str(inp), str(outp)],
                                  capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                sys.exit(f"the authors' half failed (--python {args.python}):\n{proc.stderr[-3000:]}")
            au = json.loads(outp.read_text())
        rows.append((name, g, fo, au))

    print("Excluding set-up (event loop only, both sides):")
    print()
    print("| graph | edges | events / unit time (authors / fedopt) | horizon | events (authors / fedopt) | "
          "authors step loop, events/s | authors run_DADAO, events/s | fedopt, events/s | "
          "fedopt / authors step loop | fedopt / authors run_DADAO | load (authors / fedopt) |")
    print("|---|---:|---|---:|---|---:|---:|---:|---:|---:|---|")
    for name, g, fo, au in rows:
        a_rate = args.n + au["lamb_mix"]
        a_ev, f_ev = median_of(au["repeats"], "loop_events"), median_of(fo["repeats"], "events")
        a_loop = a_ev / median_of(au["repeats"], "loop_s")
        a_pub = median_of(au["repeats"], "published_events") / median_of(au["repeats"], "published_s")
        f_loop = f_ev / median_of(fo["repeats"], "loop_s")
        print(f"| {name} | {g.number_of_edges():,} | {a_rate:,.0f} / {fo['rate']:,.0f} | {fo['horizon']:.3g} | "
              f"{a_ev:,.0f} / {f_ev:,.0f} | {a_loop:,.0f} | {a_pub:,.0f} | {f_loop:,.0f} | "
              f"**{f_loop / a_loop:,.0f}×** | {f_loop / a_pub:,.0f}× | "
              f"{au['load_before']:.2f}–{au['load_after']:.2f} / {fo['load_before']:.2f}–{fo['load_after']:.2f} |")
    print()
    print("Including set-up (set-up + event loop, both sides; imports, data and compilation excluded):")
    print()
    print("| graph | authors set-up s | fedopt set-up s | authors step loop + set-up, events/s | "
          "fedopt + set-up, events/s | fedopt / authors |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, g, fo, au in rows:
        a_s, f_s = median_of(au["repeats"], "setup_s"), median_of(fo["repeats"], "setup_s")
        a_tot = median_of(au["repeats"], "loop_events") / (a_s + median_of(au["repeats"], "loop_s"))
        f_tot = median_of(fo["repeats"], "events") / (f_s + median_of(fo["repeats"], "loop_s"))
        print(f"| {name} | {a_s:.3f} | {f_s:.3f} | {a_tot:,.0f} | {f_tot:,.0f} | {f_tot / a_tot:,.1f}× |")
    print()
    print("Same problem on both sides (constants each side computed, and the mean ‖x_i − x*‖² before / after "
          "the horizon, random starts):")
    print()
    print("| graph | L (authors / fedopt) | μ (authors / fedopt) | authors ‖x − x*‖² | fedopt ‖x − x*‖² |")
    print("|---|---|---|---|---|")
    for name, g, fo, au in rows:
        ar, fr = au["repeats"][0], fo["repeats"][0]
        print(f"| {name} | {au['L']:.6g} / {fo['L']:.6g} | {au['mu']:.6g} / {fo['mu']:.6g} | "
              f"{ar['dist2_start']:.3g} → {ar['dist2_end']:.3g} | {fr['dist2_start']:.3g} → {fr['dist2_end']:.3g} |")
    bad = [name for name, g, fo, au in rows
           if not (math.isclose(au["L"], fo["L"], rel_tol=1e-6) and math.isclose(au["mu"], fo["mu"], rel_tol=1e-6)
                   and math.isclose(args.n + au["lamb_mix"], fo["rate"], rel_tol=1e-6))]
    if bad:
        sys.exit(f"L, mu or the event rate differ between the two sides on {', '.join(bad)}: not like for like")


if __name__ == "__main__":
    main()
