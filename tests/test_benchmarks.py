"""The side-by-side benchmark harnesses: both sides simulate the same thing, and bad input is one line."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import networkx as nx
import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCH))  # dadao_authors imports its sibling dadao_events
    try:
        spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BENCH))


def _authors_rate(g: nx.Graph) -> float:
    """n + √(2χ₁χ₂) of L_G/|E|, the way the authors' code sets its clocks (dense, from scratch)."""
    n, edges = g.number_of_nodes(), list(g.edges())
    lap = np.zeros((n, n))
    for i, j in edges:
        lap[i, i] += 1.0
        lap[j, j] += 1.0
        lap[i, j] -= 1.0
        lap[j, i] -= 1.0
    lap /= len(edges)
    chi1 = 1.0 / np.linalg.eigvalsh(lap)[1]
    pinv = np.linalg.pinv(lap)
    chi2 = max(0.5 * (pinv[i, i] + pinv[j, j] - 2.0 * pinv[i, j]) for i, j in edges)
    return n + float(np.sqrt(2.0 * chi1 * chi2))


@pytest.mark.parametrize("graph", ["star", "random_geometric"])
def test_dadao_authors_fedopt_side_has_the_authors_clocks_and_constants(graph: str) -> None:
    da = _load("dadao_authors")
    events = _load("dadao_events")
    n, m, d = 40, 12, 5
    g = events.GRAPHS[graph](n)
    A, y, _ = da.make_data(n, m, d, seed=3)
    sim = da.fedopt_pipeline(graph, g, A, y)
    assert sim._stream.clocks.total_rate == pytest.approx(_authors_rate(g), rel=1e-9)
    # L, μ as the authors' compute_regularity_constants: extremes of (2/m) eig(A_iᵀA_i) over nodes
    eig = np.array([np.linalg.eigvalsh(2.0 / m * A[i].T @ A[i]) for i in range(n)])
    assert sim.spec.problem.L == pytest.approx(eig[:, -1].max(), rel=1e-9)
    assert sim.spec.problem.mu == pytest.approx(eig[:, 0].min(), rel=1e-9)


def test_dadao_authors_data_optimum() -> None:
    da = _load("dadao_authors")
    A, y, x_star = da.make_data(30, 15, 4, seed=1)
    grad = np.einsum("imd,im->d", A, np.einsum("imd,d->im", A, x_star) - y)
    assert np.abs(grad).max() < 1e-9 * max(1.0, np.abs(np.einsum("imd,im->d", A, y)).max())


@pytest.mark.parametrize(
    ("script", "args", "key"),
    [
        ("dadao_authors.py", ["--src", "{tmp}"], "--src"),
        ("dadao_authors.py", ["--src", "{tmp}", "--samples", "3"], "--samples"),
        ("flower_anchor.py", ["--bench-dir", "{tmp}", "--flower-python", sys.executable], "--bench-dir"),
        ("gossip_events.py", ["--batch-size", "0"], "--batch-size"),
        ("sync_rounds.py", ["--rounds", "0"], "--rounds"),
        ("mpi_engine.py", ["--repeats", "0"], "--repeats"),
        ("mpi_engine.py", ["--ranks", "2", "0"], "--ranks"),
    ],
)
def test_benchmark_bad_input_is_one_line_naming_the_option(tmp_path: Path, script: str, args: list[str],
                                                           key: str) -> None:
    cmd = [sys.executable, str(BENCH / script), *(a.replace("{tmp}", str(tmp_path)) for a in args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(key), proc.stderr


@pytest.mark.parametrize(("script", "phrase"), [("dadao_authors.py", "Including set-up"),
                                                ("flower_anchor.py", "without start-up"),
                                                ("ray_fedavg.py", "warm runs on both sides"),
                                                ("sync_rounds.py", "warm runs on both sides"),
                                                ("mpi_engine.py", "warm against warm")])
def test_benchmark_help_states_its_bases(script: str, phrase: str) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert phrase.lower() in " ".join(proc.stdout.split()).lower()


def test_sync_rounds_benchmark_runs_and_matches_local() -> None:
    """A small run of the synchronous-rounds benchmark: its table, with the sharded runs at
    the local engine's iterates and fewer halo bytes than a full-state broadcast."""
    cmd = [sys.executable, str(BENCH / "sync_rounds.py"), "--n", "120", "--d", "5", "--rounds", "2",
           "--repeats", "1", "--skip-ray"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if "sharded" in line]
    assert len(rows) == 2
    for r in rows:
        halo_kb, broadcast_kb, diff = float(r[-4]), float(r[-3]), float(r[-1])
        assert 0 < halo_kb < broadcast_kb and diff <= 1e-9


def test_torch_throughput_sides_compute_the_same_gradients() -> None:
    tt = _load("torch_throughput")
    assert tt.n_params(*tt.SIZES["1M"]) == 999_997 and tt.n_params(*tt.SIZES["1k"]) == 1_021
    assert tt.block_size(1000, 1_000_003, 1.5e9) == 62 and tt.block_size(10, 1021, 1.5e9) == 10
    r = tt.bench_one(n=5, d_in=6, hidden=4, samples=3, device="cpu", budget=24 * 33 * 2, min_time=0.0)
    assert r["block"] == 2 and r["d"] == 33  # 3 blocks of nodes: 2, 2, 1
    assert r["err"] < 1e-5 and r["vmap_rate"] > 0 and r["loop_rate"] > 0


def test_torch_throughput_bad_device_is_one_line() -> None:
    out = subprocess.run([sys.executable, str(BENCH / "torch_throughput.py"), "--device", "tpu"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].endswith(
        "--device must be cpu, cuda or cuda:K, got 'tpu'")
