"""``fedopt run --parallel 2`` (Ray tasks): a driver killed mid-sweep, then ``--resume``, ends with
the clean sequential run's table: every run exactly once, same rows, same numbers."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import ray  # noqa: F401  (a dependency: a missing ray is a failure, not a skip)

from fedopt.cli import main  # noqa: E402

#: 8 runs of about a second each: 2 topologies x 2 step sizes x 2 seeds.
CONFIG = {
    "name": "killme",
    "problem": {"name": "quadratic", "n": 40, "d": 5},
    "topology": ["cycle", "star"],
    "algorithms": [{"name": "gossip_sgd", "params": {"lr": 0.05}}],
    "seeds": [0, 1],
    "sweep": {"algorithms.0.params.lr": [0.02, 0.05]},
    "stop": {"time": 400},
    "record": {"every": 100},
    "resources": {"num_cpus": 1},
}
N_RUNS = 8


def _fedopt(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedopt.cli", "run", *args, "--no-progress"]


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
            "RAY_DEDUP_LOGS": "0"}


def _kill_group(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever the driver left in its session (its Ray processes)
    except ProcessLookupError:
        pass


def test_killed_parallel_sweep_resumes_to_the_sequential_table(tmp_path: Path) -> None:
    cfg = tmp_path / "killme.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    out, ref = tmp_path / "out", tmp_path / "ref"

    proc = subprocess.Popen(_fedopt(str(cfg), "--out", str(out), "--parallel", "2"), env=_env(),
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 90
        while len(list((out / "runs").glob("*.parquet"))) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
            assert time.time() < deadline, "the sweep made no progress"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only
        proc.wait(timeout=30)
    finally:
        _kill_group(proc)
        if proc.stderr:
            proc.stderr.close()
    parts = {p.name: p.read_bytes() for p in (out / "runs").glob("*.parquet")}
    assert 2 <= len(parts) < N_RUNS, f"{len(parts)} runs were done when the driver was killed"
    for blob in parts.values():  # every part holds a whole run
        assert len(pd.read_parquet(io.BytesIO(blob))) == 5

    # the clean sequential run, in this process (no Ray) -- it overlaps the killed sweep's shutdown
    assert main(["run", str(cfg), "--out", str(ref), "--no-progress"]) == 0

    done = subprocess.run(_fedopt(str(cfg), "--out", str(out), "--parallel", "2", "--resume"), env=_env(),
                          start_new_session=True, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed"] and manifest["execution"]["ray_tasks"]
    mode = "Ray tasks on a local Ray instance started here, 2 at once (parallel > 1)"
    assert manifest["execution"]["mode"] == mode  # the switch to Ray is recorded ...
    assert f"fedopt: {N_RUNS - len(parts)} runs go to {mode}" in done.stderr.decode()  # ... and logged
    assert manifest["skipped"] == len(parts) and manifest["executed"] == N_RUNS - len(parts)
    for name, blob in parts.items():  # finished runs were not redone
        assert (out / "runs" / name).read_bytes() == blob
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]

    got, want = pd.read_parquet(out / "results.parquet"), pd.read_parquet(ref / "results.parquet")
    assert list(got.columns) == list(want.columns)
    assert got["run_id"].nunique() == N_RUNS and not got.duplicated(["run_id", "time"]).any()
    assert list(got["run_id"]) == list(want["run_id"])  # same runs, same row counts, same order
    assert (got.groupby("run_id").size() == want.groupby("run_id").size()).all()
    for c in got.columns:
        if c == "wall_s":
            continue
        if pd.api.types.is_numeric_dtype(want[c]):
            a, b = got[c].to_numpy(dtype=float, na_value=np.nan), want[c].to_numpy(dtype=float, na_value=np.nan)
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=c)
        else:
            assert got[c].astype(str).tolist() == want[c].astype(str).tolist(), c


def test_no_ray_without_address_or_parallel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fedopt.experiment.ray_sweep as ray_sweep

    def no_ray(*a: object, **k: object) -> bool:
        raise AssertionError("Ray was started for a sequential local sweep")

    monkeypatch.setattr(ray_sweep, "connect", no_ray)
    small = {**CONFIG, "stop": {"time": 5}, "record": {"every": 5}, "parallel": 1}
    cfg = tmp_path / "small.yaml"
    cfg.write_text(yaml.safe_dump(small))
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["execution"] == {"ray_tasks": False, "address": None, "parallel": 1,
                                     "resources": {"num_cpus": 1.0, "num_gpus": 0.0},
                                     "mode": "one after the other in this process"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"parallel": 0}, "config: parallel: Input should be greater than or equal to 1"),
        ({"resources": {"num_gpus": -1}}, "config: resources.num_gpus: Input should be greater than or equal to 0"),
        ({"resources": {"cpus": 2}}, "config: resources.cpus: unknown key; allowed: num_cpus, num_gpus"),
        ({"engine": {"name": "ray", "actors": 2}}, "config: engine.actors: unknown option of engine 'ray'"),
        ({"engine": {"num_actors": 2}}, "config: engine.name: give the engine's name"),
    ],
)
def test_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict, message: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, **change}))
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_parallel_flag_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    with pytest.raises(SystemExit):
        main(["run", str(cfg), "--parallel", "0"])
    assert "expected a positive integer" in capsys.readouterr().err


def test_engine_mapping_round_trips() -> None:
    from fedopt.experiment.config import parse_config

    c = parse_config({**CONFIG, "engine": {"name": "ray", "num_actors": 2}, "parallel": 3})
    assert (c.engine, c.engine_options, c.parallel) == ("ray", {"num_actors": 2}, 3)
    assert parse_config(c.to_dict()) == c
