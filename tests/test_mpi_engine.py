"""The ``mpi`` engine, launched the way users launch it: ``mpiexec -n P fedopt run CONFIG --engine mpi``
from a subprocess with a timeout (a hang fails the test instead of stalling the suite).

* every registered algorithm gives the local engine's results table (numeric columns to 1e-9)
  with 2 and 4 ranks, on a fixed and on a time-varying graph (4 ranks oversubscribe a 2-core machine: the ranks' waits yield);
* a rank that raises ends the job: its message on rank 0's output, a non-zero exit, no hang;
  ``--resume`` then finishes the sweep without lost or duplicated rows;
* clear one-line errors: one rank without mpiexec, mpi4py missing, no MPI library.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_experiment_config import write_config

from fedopt.algorithms import available_algorithms

pytest.importorskip("mpi4py", reason="the mpi engine needs mpi4py: pip install -e '.[mpi]'")

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
LAUNCH = TESTS / "mpi_launch.py"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
#: Seconds an mpiexec launch may take before the test fails (a hang is a failure).
TIMEOUT_S = 150

pytestmark = pytest.mark.skipif(not MPIEXEC.is_file(), reason=f"no mpiexec next to {sys.executable}: "
                                "pip install -e '.[mpi]' brings one (the mpich wheel)")

N = 10
#: Every registered algorithm with its defaults, and the two with per-node minibatch draws.
ALGORITHMS = [{"name": a} for a in available_algorithms()] + [
    {"name": "gossip_sgd", "label": "gossip_sgd_minibatch", "params": {"lr": 0.05, "batch_size": 3}},
    {"name": "fedavg", "label": "fedavg_sampled",
     "params": {"clients_per_round": 5, "batch_size": 3, "local_steps": 3}},
]
CONFIG = {
    "name": "mpi_equivalence",
    "problem": {"name": "least_squares", "n": N, "reg": 0.1,
                "data": {"source": "synthetic", "task": "regression", "n_samples": 20 * N, "d": 3}},
    # a fixed graph, and graphs that switch every unit of time (and every round)
    "topology": [{"name": "random_geometric", "radius": 0.6},
                 {"name": "time_varying", "base": "random_geometric", "count": 3, "radius": 0.6, "switch": 1.0}],
    "algorithms": ALGORITHMS,
    "seeds": [3],
    "stop": {"time": 3.0, "rounds": 4},
    "record": {"every": 1.0},
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def mpirun(ranks: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``mpiexec -n ranks fedopt args...`` (through the launcher that registers the test problem)."""
    cmd = [str(MPIEXEC), "-n", str(ranks), sys.executable, str(LAUNCH), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=_env(), cwd=ROOT)


def python_cli(*args: str, env: dict[str, str] | None = None, pre: str = "") -> subprocess.CompletedProcess[str]:
    """``fedopt args...`` in a plain Python process (no mpiexec); ``pre``: code run first."""
    code = f"import sys\n{pre}\nfrom fedopt.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=TIMEOUT_S,
                          env={**_env(), **(env or {})}, cwd=ROOT)


def table(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "results.parquet").drop(columns=["wall_s"])


def local_table(cfg_path: Path, out: Path) -> pd.DataFrame:
    from fedopt.experiment.runner import run_experiment

    run_experiment(cfg_path, out, engine="local", progress=False, plots=False)
    return table(out)


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    tmp = tmp_path_factory.mktemp("mpi_eq")
    path = write_config(tmp, CONFIG)
    return path, local_table(path, tmp / "local")


@pytest.mark.parametrize("ranks", [2, 4])
def test_every_algorithm_gives_the_local_table(ranks: int, local_reference, tmp_path: Path) -> None:
    path, ref = local_reference
    out = tmp_path / f"mpi{ranks}"
    res = mpirun(ranks, "run", str(path), "--engine", "mpi", "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stdout + res.stderr
    got = table(out)
    assert set(got["algorithm"]) == {a.get("label", a["name"]) for a in ALGORITHMS}
    assert (got["status"] == "ok").all(), got[got["status"] != "ok"][["algorithm", "message"]]
    assert not got["message"].fillna("").str.contains("ran on the driver|random streams").any()
    pd.testing.assert_frame_equal(ref, got, rtol=1e-9, atol=1e-12)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engine"] == "mpi"
    assert manifest["execution"]["mode"] == (f"one after the other, each run's shards on the {ranks} ranks of this "
                                             "MPI job (rank 0 drives the run and holds shard 0)")


def test_diff2_keeping_its_evaluations_gives_the_local_table(tmp_path: Path) -> None:
    """DIFF2 on a torch model, its nodes keeping their evaluations in per-client rows on the
    ranks (and not keeping them): the local engine's table, epsilon and gradient counts included."""
    keeping = {"lr": 0.3, "restart_every": 3, "clip_grad": 0.5, "clip_diff": 2.0, "epsilon": 3.0, "rounds": 7}
    cfg = {"name": "mpi_diff2", "seeds": [1], "topology": ["complete"], "stop": {"rounds": 7},
           "record": {"every": 3.0},
           "problem": {"name": "mlp_regression", "n": 5, "hidden": 4, "device": "cpu",
                       "data": {"source": "teacher", "n_samples": 53, "d": 3}},
           "algorithms": [{"name": "diff2", "params": keeping},
                          {"name": "diff2", "label": "diff2_two_point",
                           "params": {**keeping, "keep_evaluations": False}}]}
    path = write_config(tmp_path, cfg)
    ref = local_table(path, tmp_path / "local")
    res = mpirun(2, "run", str(path), "--engine", "mpi", "--out", str(tmp_path / "mpi"), "--no-progress")
    assert res.returncode == 0, res.stdout + res.stderr
    got = table(tmp_path / "mpi")
    assert (got["status"] == "ok").all(), got[["algorithm", "message"]]
    pd.testing.assert_frame_equal(ref, got, rtol=1e-9, atol=1e-12)
    last = got[got["round"] == 7].set_index("algorithm")
    assert last.loc["diff2", "grad_evals"] < last.loc["diff2_two_point", "grad_evals"]
    assert last.loc["diff2", "epsilon"] > 0


def test_a_rank_that_raises_ends_the_job_and_resume_finishes_it(tmp_path: Path) -> None:
    """Rank 1 raises in the second run of three: the job ends (non-zero exit, rank 1's error on
    rank 0's output) with the first run kept; --resume runs the other two, once each."""
    marker = tmp_path / "fail_from_run"
    marker.write_text("2")
    cfg = {**CONFIG, "name": "mpi_failure", "seeds": [0, 1, 2], "topology": CONFIG["topology"][:1],
           "problem": {"name": "quadratic_failing_on_rank_1", "n": N, "d": 3, "marker": str(marker)},
           "algorithms": [{"name": "dgd"}]}
    path = write_config(tmp_path, cfg)
    out = tmp_path / "mpi"
    args = ("run", str(path), "--engine", "mpi", "--out", str(out), "--no-progress")
    first = mpirun(2, *args)
    assert first.returncode != 0
    assert "fedopt: error: mpi engine: rank 1 (shard 1) failed in run" in first.stderr, first.stderr
    assert "RuntimeError: injected failure on rank 1 in run 2" in first.stderr
    assert "--resume" in first.stderr
    assert len(list((out / "runs").glob("*.parquet"))) == 1  # the first run, written before the failure

    marker.unlink()
    again = mpirun(2, *args, "--resume")
    assert again.returncode == 0, again.stdout + again.stderr
    got = table(out)
    assert not got.duplicated(["run_id", "round", "time"]).any()
    assert got["seed"].value_counts().to_dict() == {0: 4, 1: 4, 2: 4}  # rounds 0..3

    # the local engine's table, from the same launcher (it registers the problem; no rank 1 there)
    local = subprocess.run([sys.executable, str(LAUNCH), "run", str(path), "--engine", "local", "--out",
                            str(tmp_path / "local"), "--no-progress"], capture_output=True, text=True,
                           timeout=TIMEOUT_S, env=_env(), cwd=ROOT)
    assert local.returncode == 0, local.stderr
    ref = table(tmp_path / "local")
    key = ["run_id", "round"]
    pd.testing.assert_frame_equal(ref.sort_values(key).reset_index(drop=True),
                                  got.sort_values(key).reset_index(drop=True), rtol=1e-9, atol=1e-12)


def test_another_engine_under_mpiexec_is_an_error(local_reference, tmp_path: Path) -> None:
    """Every rank would run the whole experiment into one directory: refused, nothing written."""
    path, _ = local_reference
    res = mpirun(2, "run", str(path), "--engine", "local", "--out", str(tmp_path / "out"), "--no-progress")
    assert res.returncode != 0
    assert ("fedopt: error: --engine: this command was started on 2 MPI ranks (mpiexec) with engine 'local'"
            in res.stderr), res.stderr
    assert not (tmp_path / "out").exists()


def test_one_rank_without_mpiexec_is_an_error(local_reference) -> None:
    path, _ = local_reference
    res = python_cli("run", str(path), "--engine", "mpi", "--out", "unused", "--no-progress")
    assert res.returncode == 2
    assert res.stderr.startswith("fedopt: error: engine 'mpi': this process is a single MPI rank, not started "
                                 "by mpiexec; launch it as: mpiexec -n P fedopt run CONFIG --engine mpi"), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_missing_mpi4py_and_missing_mpi_library_are_errors(local_reference) -> None:
    path, _ = local_reference
    args = ("run", str(path), "--engine", "mpi", "--out", "unused", "--no-progress")
    res = python_cli(*args, pre="sys.modules['mpi4py'] = None")
    assert res.returncode == 2
    assert res.stderr.strip() == ("fedopt: error: engine 'mpi' needs the package 'mpi4py', which is not installed "
                                  "here: install it (pip install mpi4py) or choose another engine")
    res = python_cli(*args, env={"MPI4PY_LIBMPI": "/nonexistent/libmpi.so.12"})
    assert res.returncode == 2
    assert res.stderr.startswith("fedopt: error: engine 'mpi' needs an MPI runtime that mpi4py can load"), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8, 13])
def test_the_reduction_tree_reaches_every_rank_once(size: int) -> None:
    """Every rank but 0 has one parent, which lists it as a child; every path reaches rank 0
    in at most ceil(log2 size) steps (federated rounds reduce their partial sums over it)."""
    import math

    from fedopt.engines.mpi.transport import tree

    links = {r: tree(r, size) for r in range(size)}
    assert links[0][1] is None
    for r in range(1, size):
        parent = links[r][1]
        assert parent is not None and parent < r and r in links[parent][0]
        hops, node = 0, r
        while node != 0:
            node, hops = links[node][1], hops + 1
        assert hops <= math.ceil(math.log2(size))
    assert sorted(c for ch, _ in links.values() for c in ch) == list(range(1, size))


@dataclass
class Holder:
    """An object that is not a plain container (copied through pickle)."""

    a: Any


def test_rank_zeros_shard_gets_copies_of_what_the_driver_hands_it() -> None:
    """Shard 0 lives in the driver's process: every array the driver hands it (event plans,
    shared objects) or takes back (snapshots) is a copy, at any depth, as between processes."""
    import numpy as np

    from fedopt.engines.mpi.transport import _copy

    a, b = np.arange(6.0), np.ones((2, 3))
    obj = {"plan": {"c_nodes": a, "parts": [b, (a, 3)]}, "n": 4, "held": Holder(b)}
    got = _copy(obj)
    assert not np.shares_memory(got["plan"]["c_nodes"], a)
    assert not np.shares_memory(got["plan"]["parts"][0], b)
    assert not np.shares_memory(got["plan"]["parts"][1][0], a) and isinstance(got["plan"]["parts"][1], tuple)
    assert not np.shares_memory(got["held"].a, b)
    np.testing.assert_array_equal(got["plan"]["parts"][0], b)
    assert got["n"] == 4


def test_rows_between_ranks_travel_as_raw_buffers_and_come_back_equal() -> None:
    """What a rank sends another (peer messages, halo rows, partial sums) is packed into one
    byte buffer for a buffer send: numeric arrays as a header and their raw bytes (read in
    place on arrival), anything else pickled."""
    import pickle

    import numpy as np

    from fedopt.engines.mpi.transport import PICKLED, RAW, pack, unpack

    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((7, 10)), rng.standard_normal((300, 100))[::3, 1:50],  # not contiguous
              np.arange(12, dtype=np.int32).reshape(2, 3, 2), np.zeros((0, 4)), np.array(2.5),
              np.array([True, False]), (1 + 2j) * np.ones(3, dtype=np.complex64),
              np.arange(4, dtype=np.float64).astype(">f8")]  # big-endian
    for x in arrays:
        buf = pack(x)
        assert buf.dtype == np.uint8 and buf[:8].view(np.int64)[0] == RAW
        assert len(buf) == 24 + 8 * x.ndim + x.nbytes  # no pickle around the bytes
        got = unpack(buf)
        assert got.dtype == x.dtype and got.shape == x.shape and np.array_equal(got, x)
        assert np.shares_memory(got, buf) or x.size == 0
    for obj in (None, {"sum": np.ones(3), "weight": 2.0}, [np.arange(3), "a"], np.array(["a", "bc"], dtype=object)):
        buf = pack(obj)
        assert buf[:8].view(np.int64)[0] == PICKLED
        assert pickle.dumps(unpack(buf)) == pickle.dumps(obj)
    with pytest.raises(RuntimeError, match="data message of unknown kind 7"):
        unpack(np.array([7], dtype=np.int64).view(np.uint8))
