"""FedAvg on the anchor workload through fedopt's public API: throughput and exactness.

    python benchmarks/fedavg_anchor.py [--bench-dir DIR] [--repeats 3] [--unfused] [--blas-threads N]

Workload (the FedAvg anchor benchmark's): federated logistic regression, 100
clients × 200 samples, d = 100, full-batch local gradient descent (5 steps at
lr 0.1), every client every round, weights n_k / Σ n, 20 rounds, float64.

Each repeat builds the registered ``fedavg_anchor`` problem afresh and runs
``fedavg`` on it twice:

* *train*: ``Simulation.start()`` + ``apply_rounds(20)`` (the training loop the
  engines drive, no checkpoint rows);
* *engine*: ``make_engine("local").run(spec)`` with one checkpoint row at round 0
  and one at round 20 (each row computes the exact metrics; the first also solves
  for ``x*`` with Newton's method).

It reports client-updates/s = clients × rounds / wall time, excluding and
including the problem's construction (data generation), as medians over the
repeats, and the largest absolute difference of the final global weights from

* the anchor benchmark's own reference (its ``fedavg_common.local_train`` in a
  plain loop over clients), when the directory holding ``fedavg_common.py`` is
  given by ``--bench-dir`` or the ``FEDOPT_BENCH_DIR`` environment variable; its
  constants (lr, local steps, rounds, clients) then also configure the run;
* the repository's self-contained per-client reference
  (``tests/reference_fedavg.py``, independent of fedopt), always.

``--unfused`` hides the problem's fused local-GD path (``gd_steps``) from FedAvg, so
every local step is one gradient-oracle call over all clients (the ablation).

``--blas-threads N`` caps the BLAS thread pool (threadpoolctl) for the whole
measurement. The FedAvg loop's batched matrix-vector products run on one thread
either way; the problem's construction (eigenvalues for ``L``) and the ``x*`` solve use
BLAS level 3, whose threads slow down badly when another process holds a core.

Other processes on the machine change the timings; the load average is printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

import networkx as nx
import numpy as np

from fedopt.algorithms import make_algorithm
from fedopt.engines.base import RunSpec, Simulation, StopCriteria, make_engine
from fedopt.problems.base import Problem, problem_factory
from fedopt.topology.graph import Topology

ROOT = Path(__file__).resolve().parents[1]


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def anchor_module(bench_dir: str | None) -> ModuleType | None:
    if not bench_dir:
        return None
    path = Path(bench_dir) / "fedavg_common.py"
    if not path.is_file():
        sys.exit(f"--bench-dir: no fedavg_common.py in {bench_dir}")
    return load_module(path, "_fedavg_common")


def anchor_reference(C: ModuleType) -> np.ndarray:
    """The anchor's per-client math (``local_train``) in a plain loop over clients."""
    X, Y = C.all_client_data()
    nk = [X[k].shape[0] for k in range(C.NUM_CLIENTS)]
    total = float(sum(nk))
    w = C.initial_weights()
    for _ in range(C.ROUNDS):
        agg = np.zeros_like(w)
        for k in range(C.NUM_CLIENTS):
            agg += C.local_train(w, X[k], Y[k]) * (nk[k] / total)
        w = agg
    return w


class Unfused(Problem):
    """A problem seen only through its plain oracles (no fused ``gd_steps``)."""

    def __init__(self, inner: Problem) -> None:
        self.inner = inner
        self.n, self.d, self.L, self.mu = inner.n, inner.d, inner.L, inner.mu

    def grad(self, X: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        return self.inner.grad(X, nodes)

    def value(self, X: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        return self.inner.value(X, nodes)

    def n_samples(self) -> np.ndarray:
        return self.inner.n_samples()

    def solve(self) -> np.ndarray | None:
        return self.inner.x_star


def spec_for(prob, lr: float, steps: int, rounds: int) -> RunSpec:
    star = Topology.from_networkx("star", nx.star_graph(prob.n - 1))
    algo = make_algorithm("fedavg", lr=lr, local_steps=steps)  # all clients, full-batch local GD
    return RunSpec("fedavg_anchor", prob, star, algo, 0, StopCriteria(rounds=rounds), record_every=float(rounds))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench-dir", default=os.environ.get("FEDOPT_BENCH_DIR"), help="directory of fedavg_common.py")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--blas-threads", type=int, default=None, help="cap the BLAS threads (default: BLAS's own)")
    ap.add_argument("--unfused", action="store_true", help="one oracle call per local step (ablation)")
    args = ap.parse_args()
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.blas_threads, user_api="blas")

    ref_mod = load_module(ROOT / "tests" / "reference_fedavg.py", "_reference_fedavg")
    C = anchor_module(args.bench_dir)
    src = C if C is not None else ref_mod
    clients, samples, d = src.NUM_CLIENTS, src.N_PER_CLIENT, src.D
    lr, steps, rounds, seed = src.LR, src.LOCAL_STEPS, src.ROUNDS, src.SEED
    updates = clients * rounds

    refs: dict[str, np.ndarray] = {}
    if C is not None:
        refs["anchor fedavg_common.local_train loop"] = anchor_reference(C)
    refs["self-contained per-client loop"] = ref_mod.fedavg_reference(clients, samples, d, rounds, steps, lr, seed)

    factory = problem_factory("fedavg_anchor")
    t_build, t_train, t_engine = [], [], []
    w_train = w_engine = None
    meter_totals: dict[str, float] = {}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        prob = factory(n=clients, samples_per_node=samples, d=d, seed=seed)
        if args.unfused:
            prob = Unfused(prob)
        t_build.append(time.perf_counter() - t0)

        sim = Simulation(spec_for(prob, lr, steps, rounds))
        t0 = time.perf_counter()
        sim.start()
        sim.apply_rounds(rounds)
        t_train.append(time.perf_counter() - t0)
        w_train = sim.state["server"]
        meter_totals = sim.meter.totals()

        t0 = time.perf_counter()
        res = make_engine("local").run(spec_for(prob, lr, steps, rounds))
        t_engine.append(time.perf_counter() - t0)
        assert res.status == "ok", res.message
        w_engine = res.final_state["server"]

    assert w_train is not None and w_engine is not None
    b, tr, en = (statistics.median(v) for v in (t_build, t_train, t_engine))
    print(f"FedAvg anchor workload: {clients} clients x {samples} samples, d = {d}, {steps} local GD steps at lr {lr}, "
          f"{rounds} rounds ({updates} client updates); medians of {args.repeats}"
          f"{'; UNFUSED (one oracle call per local step)' if args.unfused else ''}")
    print(f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, numpy {np.__version__}, "
          f"python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}, "
          f"BLAS threads {args.blas_threads if args.blas_threads is not None else 'default'}")
    print(f"parameters from: {'anchor file ' + str(Path(args.bench_dir) / 'fedavg_common.py') if C is not None else 'self-contained reference'}")
    print()
    print("| measurement | wall s | client-updates/s |")
    print("|---|---|---|")
    print(f"| problem construction (data generation) | {b:.3f} | |")
    print(f"| train: start + apply_rounds, excl. construction | {tr:.4f} | {updates / tr:,.0f} |")
    print(f"| train, incl. construction | {b + tr:.3f} | {updates / (b + tr):,.0f} |")
    print(f"| local engine run (2 checkpoint rows, x* solve), excl. construction | {en:.4f} | {updates / en:,.0f} |")
    print(f"| local engine run, incl. construction | {b + en:.3f} | {updates / (b + en):,.0f} |")
    print()
    print("| reference | max abs diff, train | max abs diff, engine run |")
    print("|---|---|---|")
    for name, w_ref in refs.items():
        print(f"| {name} | {np.abs(w_train - w_ref).max():.1e} | {np.abs(w_engine - w_ref).max():.1e} |")
    print()
    print(f"per-repeat train s: {', '.join(f'{t:.4f}' for t in t_train)}")
    print(f"meter: {meter_totals['grad_evals']:.0f} gradient evaluations, {meter_totals['messages']:.0f} messages, "
          f"{meter_totals['floats']:.0f} floats")
    expected = {"grad_evals": updates * steps, "messages": 2 * updates, "floats": 2 * updates * d}
    wrong = {k: (meter_totals[k], v) for k, v in expected.items() if meter_totals[k] != v}
    if wrong:
        sys.exit(f"accounting differs from one broadcast, {steps} gradients and one upload per client update: {wrong}")
    worst = max(max(np.abs(w_train - w).max(), np.abs(w_engine - w).max()) for w in refs.values())
    if worst > 1e-10:
        sys.exit(f"final weights differ from a reference by {worst:.1e} > 1e-10")


if __name__ == "__main__":
    main()
