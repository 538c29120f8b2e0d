"""Per-node gradient throughput of the vmapped torch oracle against a loop over per-node modules.

    python benchmarks/torch_throughput.py [--device cpu|cuda|cuda:K] [--nodes 10 100 1000]
        [--sizes 1k 100k 1M] [--samples 32] [--min-time 1.0] [--budget-gb 1.5] [--threads T]
        [--clock wall|cpu]

Both sides compute the full local gradient of every node of an MLP (``Linear(d_in, h) →
softplus → Linear(h, 1)``, squared loss, the network of ``mlp_regression``) on the same
data (``--samples`` samples per node, standard normal features and targets), in float32,
from the same iterates (a float64 numpy block ``[k, d]``, as an algorithm's state holds
them) into a float64 numpy block ``[k, d]``:

* **vmapped**: :meth:`TorchModelProblem.grad`, one call per block of nodes (for this
  Linear/activation stack: batched matrix products over the nodes of a chunk, see
  :func:`~fedopt.problems.torch_model._stack_grad_kernel`; other modules: ``torch.func``
  ``grad`` under ``vmap`` over the nodes and samples);
* **loop**: what federated frameworks do: a Python loop over nodes, each with its own
  ``nn.Module`` copy: load the node's parameters into it, forward the node's samples,
  ``backward()``, copy the gradient out.

Both sides do what a gradient oracle does: each call returns a new float64 block ``[k, d]``
for the ``k`` nodes of a block (the loop fills a new block row by row), which the caller
keeps. Node gradients are evaluated in blocks of nodes so that the iterates, gradients and
their float32 copies of one block stay under ``--budget-gb`` (both sides use the same
blocks; the loop holds one module copy per node of a block, reused by the next block).
Each side is warmed by one untimed pass over all nodes, then timed passes of the two sides
alternate (so that both see the same load on a shared machine) until each has had
``--min-time`` seconds (at least one pass each); the figure is the median pass.
The largest difference between the two sides' gradients (relative to the largest
entry) is printed as a check that both compute the same thing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import nn

from fedopt.problems.torch_model import TorchModelProblem, mlp

#: Model sizes: name -> (input width d_in, hidden width h); d = h (d_in + 2) + 1.
SIZES: dict[str, tuple[int, int]] = {"1k": (32, 30), "100k": (256, 390), "1M": (1000, 998)}


def n_params(d_in: int, hidden: int) -> int:
    return hidden * (d_in + 2) + 1


def block_size(n: int, d: int, budget_bytes: float) -> int:
    """Nodes per block: iterates and gradients in float64 (numpy) and float32 (torch), 24 bytes per entry."""
    return max(1, min(n, int(budget_bytes // (24 * d))))


def timed(fns: list[Callable[[], object]], min_time: float,
          clock: Callable[[], float] = time.perf_counter) -> list[tuple[float, int]]:
    """Median seconds of each of ``fns`` on ``clock`` and its repeats: one warm-up call each,
    then one call of each in turn until each has had ``min_time`` seconds (at least one call each)."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    while any(not t or sum(t) < min_time for t in times):
        for fn, t in zip(fns, times):
            t0 = clock()
            fn()
            t.append(clock() - t0)
    return [(statistics.median(t), len(t)) for t in times]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_one(n: int, d_in: int, hidden: int, samples: int, device: str, budget: float,
              min_time: float, clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, samples, d_in)).astype(np.float32)
    Y = rng.standard_normal((n, samples, 1)).astype(np.float32)
    prob = TorchModelProblem(partial(mlp, d_in, hidden), A, Y, np.full(n, samples), device=device, dtype="float32")
    d, dev = prob.d, prob.device
    B = block_size(n, d, budget)
    blocks = [np.arange(s, min(n, s + B)) for s in range(0, n, B)]
    x0 = prob.initial_parameters()
    Xb = (x0 + 0.1 * rng.standard_normal((B, d))).astype(np.float64)  # the iterates of a block (reused)
    last: dict[str, np.ndarray] = {}

    def vmapped() -> None:
        for nodes in blocks:
            last["vmapped"] = prob.grad(Xb[: len(nodes)], nodes)

    At = torch.as_tensor(A, device=dev)
    Yt = torch.as_tensor(Y, device=dev)
    with torch.random.fork_rng(devices=[]):
        copies = [mlp(d_in, hidden).to(device=dev, dtype=torch.float32) for _ in range(B)]

    def loop() -> None:
        for nodes in blocks:
            out_loop = np.empty((len(nodes), d))
            for k, i in enumerate(nodes.tolist()):
                mod = copies[k]
                nn.utils.vector_to_parameters(torch.as_tensor(Xb[k], dtype=torch.float32, device=dev),
                                              mod.parameters())
                mod.zero_grad(set_to_none=True)
                loss = ((mod(At[i]) - Yt[i]) ** 2).sum(dim=1).mean()
                loss.backward()
                out_loop[k] = nn.utils.parameters_to_vector(p.grad for p in mod.parameters()).cpu().numpy()
            last["loop"] = out_loop
        sync(dev)

    (t_v, r_v), (t_l, r_l) = timed([vmapped, loop], min_time, clock)
    a, b = last["vmapped"], last["loop"]
    err = float(np.abs(a - b).max() / max(1e-30, np.abs(b).max()))
    return {"n": n, "d": d, "block": B, "vmap_s": t_v, "loop_s": t_l, "vmap_rate": n / t_v, "loop_rate": n / t_l,
            "reps_v": r_v, "reps_l": r_l, "err": err}


def machine_line(device: torch.device) -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    line = (f"Machine: {os.cpu_count()} CPUs ({cpu}), torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}, device {device}")
    if device.type == "cuda":
        line += f" ({torch.cuda.get_device_name(device)})"
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K (default cpu)")
    ap.add_argument("--nodes", type=int, nargs="+", default=[10, 100, 1000], help="node counts n")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES), help="model sizes")
    ap.add_argument("--samples", type=int, default=32, help="samples per node (full local gradient)")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds of timed passes per side (at least one)")
    ap.add_argument("--budget-gb", type=float, default=1.5, help="memory of one block's iterates and gradients")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: elapsed time; cpu: this thread's CPU time (with --threads 1 on the CPU: "
                         "the work done, not the waits for a core that other processes hold)")
    args = ap.parse_args()
    if args.clock == "cpu" and (args.device != "cpu" or args.threads != 1):
        ap.error("--clock cpu measures one thread on the CPU: use it with --device cpu --threads 1")
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    if args.device != "cpu" and not (args.device == "cuda" or args.device.startswith("cuda:")):
        ap.error(f"--device must be cpu, cuda or cuda:K, got {args.device!r}")
    if args.device != "cpu" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_line(torch.device(args.device)))
    print(f"load average at start {os.getloadavg()[0]:.2f}; float32; {args.samples} samples per node; "
          f"blocks of nodes under {args.budget_gb:g} GB; {args.clock} clock\n")
    print("| model | d (params) | n | nodes per block | vmapped node-grads/s | loop node-grads/s | vmapped / loop "
          "| max rel diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        d_in, hidden = SIZES[size]
        for n in args.nodes:
            r = bench_one(n, d_in, hidden, args.samples, args.device, args.budget_gb * 1e9, args.min_time, clock)
            print(f"| MLP {d_in}-{hidden}-1 ({size}) | {r['d']:,} | {n} | {r['block']} | {r['vmap_rate']:,.0f} "
                  f"| {r['loop_rate']:,.0f} | {r['vmap_rate'] / r['loop_rate']:.1f}x | {r['err']:.1e} |", flush=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
