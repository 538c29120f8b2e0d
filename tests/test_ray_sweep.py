"""Sweeps as Ray tasks: a driver killed mid-sweep, resumed, ends with every run exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import ray  # noqa: F401  (a dependency: a missing ray is a failure, not a skip)

from fedopt.experiment.ray_sweep import Resources, run_sequential  # noqa: E402

DRIVER = textwrap.dedent(
    '''
    """A sweep driver: 8 grid points, one part file per finished run (written atomically)."""
    import json, os, sys, time
    from pathlib import Path

    import networkx as nx

    from fedopt.algorithms import make_algorithm
    from fedopt.engines.base import RunSpec, StopCriteria, make_engine
    from fedopt.problems.quadratic import random_quadratic
    from fedopt.topology.graph import Topology

    POINTS = [(algo, seed) for algo in ("gossip_sgd", "fedavg") for seed in range(4)]


    def run_point(point):
        algo, seed = point
        top = Topology.from_networkx("cycle", nx.cycle_graph(10))
        prob = random_quadratic(10, 3, seed=seed)
        stop = StopCriteria(time=3.0) if algo == "gossip_sgd" else StopCriteria(rounds=3)
        res = make_engine("local").run(RunSpec(f"{algo}-{seed}", prob, top, make_algorithm(algo), seed, stop))
        time.sleep(float(os.environ.get("SWEEP_DELAY", "0")))
        return {"run_id": res.run_id, "status": res.status,
                "rows": [{k: v for k, v in r.items() if k != "wall_s"} for r in res.rows]}


    def part(out, point):
        return Path(out) / f"{point[0]}-{point[1]}.json"


    def write(out, point, result):
        tmp = part(out, point).with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        os.replace(tmp, part(out, point))


    if __name__ == "__main__":
        from fedopt.experiment.ray_sweep import Resources, connect, run_on_ray

        out = sys.argv[1]
        connect(num_cpus=2)
        run_on_ray(POINTS, run_point, lambda p, r: write(out, p, r), resources=Resources(num_cpus=1),
                   is_done=lambda p: part(out, p).exists())
    '''
)


def _load(d: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(d.glob("*.json"))}


def test_killed_driver_resumes_without_lost_or_duplicated_rows(tmp_path: Path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    out = tmp_path / "parts"
    out.mkdir()
    env = {**os.environ, "SWEEP_DELAY": "1.5", "RAY_DEDUP_LOGS": "0"}
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while len(list(out.glob("*.json"))) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the sweep made no progress"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray instance it started
        proc.wait()
    first = _load(out)
    assert 2 <= len(first) < 8  # killed mid-sweep

    env["SWEEP_DELAY"] = "0"
    done = subprocess.run([sys.executable, str(script), str(out)], env=env, start_new_session=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    resumed = _load(out)
    assert len(resumed) == 8
    for k, v in first.items():
        assert resumed[k] == v  # finished runs were not redone

    # the same grid in one process, no Ray
    sys.path.insert(0, str(tmp_path))
    try:
        import driver  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    os.environ["SWEEP_DELAY"] = "0"
    assert run_sequential(driver.POINTS, driver.run_point, lambda p, r: driver.write(ref_dir, p, r)) == 8
    reference = _load(ref_dir)
    assert resumed == reference
    rows = [r for v in resumed.values() for r in v["rows"]]
    assert len(rows) == sum(len(v["rows"]) for v in reference.values())


def test_resources_from_config() -> None:
    assert Resources.from_config({"num_cpus": 2, "num_gpus": 0.5}) == Resources(2.0, 0.5)
    assert Resources.from_config(None) == Resources()
    with pytest.raises(ValueError):
        Resources(num_cpus=-1)
