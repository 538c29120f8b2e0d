"""FedAvg anchor workload side by side: Flower's simulation engine and fedopt, with and without start-up.

    python benchmarks/flower_anchor.py --bench-dir DIR --flower-python PY [--repeats 3] [--engines local ray]
        [--blas-threads 1]

``--bench-dir`` is the anchor benchmark's folder (``fedavg_common.py``,
``flower_fedavg.py``; also read from ``FEDOPT_BENCH_DIR``); ``--flower-python`` an
interpreter with ``flwr[simulation]==1.42.0`` and ``psutil`` (a separate venv:
``python -m venv V && V/bin/pip install 'flwr[simulation]==1.42.0' psutil``).

Workload (``fedavg_common.py``): logistic regression, 100 clients × 200 samples,
d = 100, 5 full-batch local GD steps at lr 0.1, every client every round, weights
n_k / Σ n, 20 rounds (2,000 client updates), no evaluation.

Every arm is a fresh process, and each repeat runs the arms one after the other
(Flower 20 rounds, Flower 1 round, fedopt per engine), so all arms see the same
load; medians over ``--repeats`` are reported.

* Flower: the anchor's ``flower_fedavg.py --api message`` (``run_simulation`` on
  Ray, Flower's default client resources) with ``--rounds R`` and with
  ``--rounds 1``; its own JSON gives the import of flwr, the call's total (Ray
  boot, actor pool, rounds, shutdown) and the client-side timestamps.
* the anchor's vectorized numpy loop, ``numpy_fedavg.py --mode vectorized`` in this
  interpreter (one process, all clients at once; no framework, the floor): its data
  generation is its start-up, its first (warm-up) training the run with start-up,
  the median of its 5 further trainings the run without;
* fedopt: this file with ``--fedopt-half ENGINE`` in this interpreter. It times
  ``import fedopt`` (numpy already loaded, as on Flower's side), the problem's
  construction (the registered ``fedavg_anchor``: data generation), for ``ray``
  the boot (``ray.init`` + a pool of ``--actors`` actors), ``Simulation.start()``
  (``RaySimulation``: ships the problem to the actors) and ``apply_rounds(R)``
  (the training loop, no checkpoint rows, like Flower's run without evaluation),
  then a second, warm run on the same process / pool, and Ray's shutdown.

Figures, on like-for-like bases:

* *whole process*: wall time from launching the interpreter to its exit, both sides
  (fedopt's less its second, warm run, which Flower's process does not do);
* *with start-up*: Flower: import flwr + ``run_simulation`` (boot, rounds, shutdown);
  fedopt: import + problem + [Ray boot] + start + rounds [+ Ray shutdown];
* *without start-up*: Flower: its steady cost, ``(total(R) − total(1)) · R/(R − 1)``
  (differencing its own totals; also shown, its log-based span from the first
  client update to the last aggregation); fedopt: ``apply_rounds(R)`` of the warm run.

``--blas-threads`` caps BLAS on both sides alike (environment of both processes;
Flower's Ray workers inherit it). Final weights of every run are compared with the
anchor's per-client reference (``fedavg_common.local_train`` in a loop over clients).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

T_PROC0 = time.perf_counter()

import numpy as np  # noqa: E402

ENGINES = ("local", "ray")


def load_common(bench_dir: str) -> ModuleType:
    """The anchor's ``fedavg_common`` module from ``bench_dir``."""
    path = Path(bench_dir) / "fedavg_common.py"
    spec = importlib.util.spec_from_file_location("_fedavg_common", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def anchor_reference(C: ModuleType, rounds: int) -> np.ndarray:
    """The anchor's per-client math (``local_train``) in a plain loop over clients."""
    X, Y = C.all_client_data()
    nk = np.array([X[k].shape[0] for k in range(C.NUM_CLIENTS)], dtype=float)
    w = C.initial_weights()
    for _ in range(rounds):
        w = sum(nk[k] * C.local_train(w, X[k], Y[k]) for k in range(C.NUM_CLIENTS)) / nk.sum()
    return w


# ---- fedopt's half (a fresh process per run) ----------------------------------------------
def fedopt_half(engine: str, bench_dir: str, rounds: int, actors: int, out: str) -> None:
    """Time import, construction, [Ray boot], start, rounds (cold and warm) of fedopt's FedAvg; write JSON."""
    C = load_common(bench_dir)
    t: dict[str, Any] = {"engine": engine, "rounds": rounds}
    t0 = time.perf_counter()
    import networkx as nx

    from fedopt.algorithms import make_algorithm
    from fedopt.engines.base import RunSpec, Simulation, StopCriteria
    from fedopt.problems.base import problem_factory
    from fedopt.topology.graph import Topology

    t["import_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prob = problem_factory("fedavg_anchor")(n=C.NUM_CLIENTS, samples_per_node=C.N_PER_CLIENT, d=C.D, seed=C.SEED)
    t["build_s"] = time.perf_counter() - t0

    def spec() -> RunSpec:
        star = Topology.from_networkx("star", nx.star_graph(prob.n - 1))
        algo = make_algorithm("fedavg", lr=C.LR, local_steps=C.LOCAL_STEPS)
        return RunSpec("fedavg_anchor", prob, star, algo, 0, StopCriteria(rounds=rounds), record_every=float(rounds))

    t0 = time.perf_counter()
    if engine == "ray":
        import ray

        from fedopt.engines.ray.engine import ActorPool, RaySimulation

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        pool = ActorPool(actors, num_cpus=0.5, num_gpus=0.0)

        def make(s: RunSpec) -> Simulation:
            return RaySimulation(s, pool)
    else:
        def make(s: RunSpec) -> Simulation:
            return Simulation(s)
    t["boot_s"] = time.perf_counter() - t0
    weights = []
    for run in ("cold", "warm"):
        sim = make(spec())
        t0 = time.perf_counter()
        sim.start()
        t[f"{run}_start_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sim.apply_rounds(rounds)
        t[f"{run}_rounds_s"] = time.perf_counter() - t0
        weights.append(np.asarray(sim.state["server"]).tolist())
    t0 = time.perf_counter()
    if engine == "ray":
        pool.close()
        ray.shutdown()
    t["shutdown_s"] = time.perf_counter() - t0
    t["weights"] = weights
    t["process_s_until_report"] = time.perf_counter() - T_PROC0
    Path(out).write_text(json.dumps(t))


# ---- driver --------------------------------------------------------------------------------
def launch(cmd: list[str], env: dict[str, str], what: str) -> float:
    """Run ``cmd``; return its wall time from launch to exit; exit with its stderr if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{what} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return wall


def med(xs: list[float]) -> float:
    return float(statistics.median(xs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    ap.add_argument("--bench-dir", default=os.environ.get("FEDOPT_BENCH_DIR"),
                    help="folder of the anchor's fedavg_common.py and flower_fedavg.py (or FEDOPT_BENCH_DIR)")
    ap.add_argument("--flower-python", help="interpreter with flwr[simulation]==1.42.0 and psutil")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES, help="fedopt engines to run")
    ap.add_argument("--actors", type=int, default=2, help="actors of fedopt's ray engine")
    ap.add_argument("--blas-threads", type=int, default=1, help="BLAS threads on both sides")
    ap.add_argument("--fedopt-half", nargs=2, metavar=("ENGINE", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default: the anchor's ROUNDS)")
    args = ap.parse_args()
    if not args.bench_dir or not (Path(args.bench_dir) / "flower_fedavg.py").is_file() \
            or not (Path(args.bench_dir) / "fedavg_common.py").is_file():
        sys.exit(f"--bench-dir: need a folder with fedavg_common.py and flower_fedavg.py, got {args.bench_dir!r}")
    C = load_common(args.bench_dir)
    rounds = C.ROUNDS if args.rounds is None else args.rounds
    if args.fedopt_half:
        fedopt_half(args.fedopt_half[0], args.bench_dir, rounds, args.actors, args.fedopt_half[1])
        return
    if not args.flower_python:
        sys.exit("--flower-python: required (an interpreter with flwr[simulation]==1.42.0 and psutil)")
    for key in ("repeats", "actors", "blas_threads"):
        if getattr(args, key) < 1:
            sys.exit(f"--{key.replace('_', '-')}: must be >= 1, got {getattr(args, key)}")
    if rounds < 2:
        sys.exit(f"--rounds: must be >= 2 (Flower's steady cost is differenced against 1 round), got {rounds}")
    updates = C.NUM_CLIENTS * rounds
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(args.blas_threads), "OMP_NUM_THREADS": str(args.blas_threads),
           "MKL_NUM_THREADS": str(args.blas_threads)}
    flower = str(Path(args.bench_dir) / "flower_fedavg.py")
    numpy_script = str(Path(args.bench_dir) / "numpy_fedavg.py")
    if not Path(numpy_script).is_file():
        sys.exit(f"--bench-dir: no numpy_fedavg.py in {args.bench_dir}")
    w_ref = anchor_reference(C, rounds)

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    flwr_ver = subprocess.run([args.flower_python, "-c", "import flwr, ray; print(flwr.__version__, ray.__version__)"],
                              capture_output=True, text=True, env=env).stdout.split()
    print(f"# FedAvg anchor ({C.NUM_CLIENTS} clients x {C.N_PER_CLIENT} samples, d = {C.D}, {C.LOCAL_STEPS} local "
          f"steps, {rounds} rounds = {updates:,} client updates): Flower vs fedopt, medians of {args.repeats}")
    print(f"machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, numpy {np.__version__}, "
          f"BLAS threads {args.blas_threads} on both sides; Flower {' / Ray '.join(flwr_ver) or '?'}")
    loads = [os.getloadavg()[0]]
    fl: dict[int, list[dict[str, Any]]] = {rounds: [], 1: []}
    fo: dict[str, list[dict[str, Any]]] = {e: [] for e in args.engines}
    npy: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for r in (rounds, 1):
                js, wf = Path(tmp) / f"flower{r}_{rep}.json", Path(tmp) / f"flower{r}_{rep}.npy"
                wall = launch([args.flower_python, flower, "--api", "message", "--rounds", str(r), "--out", str(js),
                               "--save-weights", str(wf), "--no-pss"], env, f"Flower ({r} rounds)")
                res = json.loads(js.read_text())
                res["process_wall_s"] = wall
                res["w"] = np.load(wf)
                fl[r].append(res)
            js, wf = Path(tmp) / f"numpy_{rep}.json", Path(tmp) / f"numpy_{rep}.npy"
            launch([sys.executable, numpy_script, "--mode", "vectorized", "--out", str(js), "--save-weights", str(wf)],
                   env, "numpy_fedavg.py")
            res = json.loads(js.read_text())
            res["w"] = np.load(wf)
            npy.append(res)
            for e in args.engines:
                js = Path(tmp) / f"fedopt_{e}_{rep}.json"
                wall = launch([sys.executable, __file__, "--bench-dir", args.bench_dir, "--rounds", str(rounds),
                               "--actors", str(args.actors), "--fedopt-half", e, str(js)], env, f"fedopt ({e})")
                res = json.loads(js.read_text())
                res["process_wall_s"] = wall
                fo[e].append(res)
            loads.append(os.getloadavg()[0])

    F, F1 = fl[rounds], fl[1]
    fl_with = med([r["import_s"] + r["total_s"] for r in F])
    fl_call = med([r["total_s"] for r in F])
    fl_steady = med([(a["total_s"] - b["total_s"]) * rounds / (rounds - 1) for a, b in zip(F, F1)])
    fl_logspan = med([r["rounds_s"] for r in F])
    fl_proc = med([r["process_wall_s"] for r in F])
    fl_start = fl_call - fl_steady
    print(f"load average (1 min) before and after each repeat: {', '.join(f'{x:.2f}' for x in loads)}")
    print()
    print("| side | start-up s | with start-up: s | client-updates/s | without start-up: s | client-updates/s | "
          "whole process s | client-updates/s | max abs diff of final weights vs reference |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    err = max(float(np.abs(r["w"] - w_ref).max()) for r in F)
    print(f"| Flower 1.42 `run_simulation` | {med([r['import_s'] for r in F]) + fl_start:.2f} | {fl_with:.2f} | "
          f"{updates / fl_with:,.0f} | {fl_steady:.2f} | {updates / fl_steady:,.0f} | {fl_proc:.2f} | "
          f"{updates / fl_proc:,.0f} | {err:.1e} |")
    n_start = med([r["data_gen_s"] for r in npy])
    n_with = med([r["data_gen_s"] + r["warmup_train_s"] for r in npy])
    n_without = med([r["train_s_median"] for r in npy])
    err = max(float(np.abs(r["w"] - w_ref).max()) for r in npy)
    print(f"| anchor numpy, vectorized (one process) | {n_start:.2f} | {n_with:.3f} | {updates / n_with:,.0f} | "
          f"{n_without:.4f} | {updates / n_without:,.0f} | — | — | {err:.1e} |")
    rows: dict[str, tuple[float, float, float]] = {}
    for e, R in fo.items():
        start = med([r["import_s"] + r["build_s"] + r["boot_s"] + r["cold_start_s"] + r["shutdown_s"] for r in R])
        with_s = med([r["import_s"] + r["build_s"] + r["boot_s"] + r["cold_start_s"] + r["cold_rounds_s"]
                      + r["shutdown_s"] for r in R])
        without = med([r["warm_rounds_s"] for r in R])
        proc = med([r["process_wall_s"] - r["warm_start_s"] - r["warm_rounds_s"] for r in R])
        err = max(float(np.abs(np.asarray(w) - w_ref).max()) for r in R for w in r["weights"])
        rows[e] = (with_s, without, proc)
        label = "fedopt, local engine" if e == "local" else f"fedopt, ray engine ({args.actors} actors)"
        print(f"| {label} | {start:.2f} | {with_s:.2f} | {updates / with_s:,.0f} | {without:.4f} | "
              f"{updates / without:,.0f} | {proc:.2f} | {updates / proc:,.0f} | {err:.1e} |")
    print()
    print("Ratios, fedopt / Flower in client-updates/s, each on one basis:")
    print()
    print("| fedopt engine | with start-up (both) | without start-up (both) | whole process (both) |")
    print("|---|---:|---:|---:|")
    for e, (with_s, without, proc) in rows.items():
        print(f"| {e} | {fl_with / with_s:,.1f}× | {fl_steady / without:,.0f}× | {fl_proc / proc:,.1f}× |")
    print()
    print("fedopt / anchor numpy (the floor), without start-up (both: warm training loops): "
          + ", ".join(f"{e} {n_without / without:.2f}×" for e, (_, without, _) in rows.items()))
    print()
    print("Parts (medians, s):")
    print()
    print(f"- Flower: import flwr {med([r['import_s'] for r in F]):.2f}; `run_simulation` call {fl_call:.2f} "
          f"(1 round: {med([r['total_s'] for r in F1]):.2f}); steady {rounds} rounds by differencing {fl_steady:.2f} "
          f"({fl_steady / rounds * 1000:.0f} ms a round); by its logs, first client update → last aggregation "
          f"{fl_logspan:.2f}, call start → first client update {med([r['startup_s'] for r in F]):.2f}, "
          f"last aggregation → Ray shut down {med([r['shutdown_s'] for r in F]):.2f}")
    for e, R in fo.items():
        parts = ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {med([r[k] for r in R]):.3f}"
                          for k in ("import_s", "build_s", "boot_s", "cold_start_s", "cold_rounds_s", "warm_start_s",
                                    "warm_rounds_s", "shutdown_s"))
        print(f"- fedopt {e}: {parts}")


if __name__ == "__main__":
    main()
