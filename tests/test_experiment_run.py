"""End to end: ``fedopt run`` → results table, config, manifest, plots; resume; diverged and errored runs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_experiment_config import BASE, write_config

import fedopt.experiment.runner as runner
from fedopt.cli import main
from fedopt.experiment.config import load_config
from fedopt.experiment.plots import curves, plot_results
from fedopt.experiment.store import COLUMNS
from fedopt.experiment.sweep import expand

REQUIRED = (
    "run_id", "algorithm", "topology", "seed", "n_nodes", "dim", "time", "round", "grad_evals", "queries",
    "messages", "bytes", "wall_s", "subopt", "dist_opt", "consensus", "grad_norm_sq", "epsilon", "status",
    "message", "events", "link_time",
)


def _tiny(tmp_path: Path, **changes: Any) -> Path:
    cfg = copy.deepcopy(BASE)
    cfg["sweep"] = {"algorithms.0.params.lr": [0.02, 0.05]}
    cfg.update(changes)
    return write_config(tmp_path, cfg)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("exp")
    out = tmp / "out"
    assert main(["run", str(_tiny(tmp)), "--out", str(out), "--no-progress"]) == 0
    return out


def _no_temp_files(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]
    assert leftovers == []


def test_run_writes_table_config_manifest_plots(finished: Path) -> None:
    df = pd.read_parquet(finished / "results.parquet")
    assert set(REQUIRED) <= set(df.columns) and list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert "lr" in df.columns  # swept parameter column
    n_runs = 2 * (2 + 1) * 2  # topologies × (2 lr of gossip_sgd + fedavg) × seeds
    assert df["run_id"].nunique() == n_runs
    assert (df["status"] == "ok").all() and df["epsilon"].isna().all()
    assert set(df["algorithm"]) == {"gossip_sgd", "fedavg-5"} and set(df["topology"]) == {"cycle", "star"}
    assert (df["n_nodes"] == 6).all() and (df["dim"] == 3).all()
    assert not df.duplicated(["run_id", "time"]).any()
    last = df.groupby("run_id").tail(1)
    assert (last["time"] >= 5 - 1e-9).all()
    assert (last["dist_opt"] < df.groupby("run_id").head(1)["dist_opt"].to_numpy()).all()  # they make progress
    assert len(list((finished / "runs").glob("*.parquet"))) == n_runs

    cfg = load_config(finished / "config.yaml")  # the resolved config reads back and gives the same runs
    assert {r.run_id for r in expand(cfg)} == set(df["run_id"])
    man = json.loads((finished / "manifest.json").read_text())
    assert man["versions"]["numpy"] == np.__version__ and man["seeds"] == [0, 1]
    assert {r["run_id"] for r in man["runs"]} == set(df["run_id"])
    assert man["finished"] and man["started"] <= man["finished"] and man["statuses"] == {"ok": n_runs}
    for key in ("python", "platform", "machine", "cpu_count", "git_commit"):
        assert key in man
    assert man["overwritten"] is False and man["engine_override"] is None and man["plots_skipped"] == {}
    assert man["execution"]["mode"] == "one after the other in this process"
    pngs = sorted(p.name for p in (finished / "plots").glob("*.png"))
    assert pngs == ["dist_opt_vs_grad_evals.png", "dist_opt_vs_messages.png", "subopt_vs_time.png"]
    _no_temp_files(finished)


def test_summary_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = copy.deepcopy(BASE)
    cfg["seeds"] = [0]
    cfg["topology"] = ["cycle"]
    out = tmp_path / "o"
    assert main(["run", str(write_config(tmp_path, cfg)), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "gossip_sgd" in text and "fedavg-5" in text and str(out / "results.parquet") in text


def test_resume_skips_finished_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_path = _tiny(tmp_path, seeds=[0], topology=["cycle"])
    out = tmp_path / "out"
    assert main(["run", str(cfg_path), "--out", str(out), "--no-progress"]) == 0
    first = pd.read_parquet(out / "results.parquet")
    calls: list[str] = []
    real = runner.execute

    def counting(run: Any, engine: Any, progress: Any = None) -> pd.DataFrame:
        calls.append(run.run_id)
        return real(run, engine, progress)

    monkeypatch.setattr(runner, "execute", counting)
    assert main(["run", str(cfg_path), "--out", str(out), "--no-progress", "--resume"]) == 0
    assert calls == []
    again = pd.read_parquet(out / "results.parquet")
    pd.testing.assert_frame_equal(first, again)

    victim = sorted((out / "runs").glob("*.parquet"))[0]  # as if the sweep was killed before this run ended
    victim.unlink()
    assert main(["run", str(cfg_path), "--out", str(out), "--no-progress", "--resume"]) == 0
    assert calls == [victim.stem]
    resumed = pd.read_parquet(out / "results.parquet")
    assert len(resumed) == len(first) and not resumed.duplicated(["run_id", "time"]).any()
    assert set(resumed["run_id"]) == set(first["run_id"])
    _no_temp_files(out)

    # without --resume the directory is refused; --overwrite runs every run again
    calls.clear()
    assert main(["run", str(cfg_path), "--out", str(out), "--no-progress"]) == 2
    assert calls == []
    assert main(["run", str(cfg_path), "--out", str(out), "--no-progress", "--overwrite"]) == 0
    assert len(calls) == first["run_id"].nunique()


def test_diverged_and_errored_runs_are_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = copy.deepcopy(BASE)
    cfg.update(seeds=[0], topology=["cycle"], stop={"time": 40})
    cfg["algorithms"] = [
        {"name": "fedavg", "label": "huge-step", "params": {"lr": 10.0, "local_steps": 10}},  # diverges
        {"name": "gossip_sgd", "label": "no-data", "params": {"batch_size": 4}},  # quadratics hold no samples
        {"name": "gossip_sgd", "params": {"lr": 0.05}},
    ]
    bad_problem = copy.deepcopy(cfg)
    out = tmp_path / "out"
    assert main(["run", str(write_config(tmp_path, cfg)), "--out", str(out), "--no-progress"]) == 1  # an error
    df = pd.read_parquet(out / "results.parquet")
    by = {k: g for k, g in df.groupby("algorithm")}
    assert (by["huge-step"]["status"] == "diverged").all() and len(by["huge-step"]) > 1
    assert "blew up" in by["huge-step"]["message"].iloc[0]  # caught before the iterates overflow
    assert len(by["no-data"]) == 1 and by["no-data"]["status"].iloc[0] == "error"
    assert "per-sample gradients" in by["no-data"]["message"].iloc[0]
    assert (by["gossip_sgd"]["status"] == "ok").all() and by["gossip_sgd"]["time"].max() >= 40 - 1e-9
    assert (out / "plots" / "dist_opt_vs_messages.png").is_file()
    captured = capsys.readouterr()
    printed = captured.out
    assert "diverged: huge-step" in printed and "error: no-data" in printed
    assert "3 runs: 1 ok, 1 diverged, 1 error;" in printed
    assert captured.err == "fedopt: 1 of 3 runs ended in error (status error in the table, messages above)\n"

    # a diverged run is a result: without the errored run the exit status is 0
    fine = copy.deepcopy(cfg)
    fine["algorithms"] = [cfg["algorithms"][0], cfg["algorithms"][2]]
    out3 = tmp_path / "out3"
    assert main(["run", str(write_config(tmp_path, fine, "f.yaml")), "--out", str(out3), "--no-progress"]) == 0
    assert "2 runs: 1 ok, 1 diverged, 0 error;" in capsys.readouterr().out

    # a problem that cannot be built is a config error before any run
    bad_problem["problem"] = {"name": "quadratic", "n": 6, "d": 3, "mu": 5.0, "L": 1.0}
    bad_problem["algorithms"] = [{"name": "gossip_sgd"}]
    out2 = tmp_path / "out2"
    assert main(["run", str(write_config(tmp_path, bad_problem, "b.yaml")), "--out", str(out2), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == "fedopt: error: config: problem.L: quadratic: need 0 < mu <= L, got mu=5.0, L=1.0\n"
    assert not out2.exists()


def test_plot_command(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "fig.png"
    assert main(["plot", str(finished), "--x", "grad_evals", "--y", "consensus", "--out", str(target)]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(finished), "--x", "bytes", "--y", "subopt"]) == 0
    assert (finished / "plots" / "subopt_vs_bytes.png").is_file()
    capsys.readouterr()
    assert main(["plot", str(finished), "--x", "epochs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedopt: error: plot: x must be one of messages, bytes") and err.count("\n") == 1
    assert main(["plot", str(tmp_path / "nowhere")]) == 2
    assert "no results table" in capsys.readouterr().err


def test_plot_errors_and_median(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        plot_results(pd.DataFrame({c: [] for c in COLUMNS}), "messages", "dist_opt", tmp_path / "x.png")
    with pytest.raises(ValueError, match="y must be one of subopt, dist_opt"):
        plot_results(pd.DataFrame({c: [] for c in COLUMNS}), "messages", "loss", tmp_path / "x.png")
    # three seeds recorded at different x: the median is taken after interpolation onto one grid
    rows = []
    for seed, (xs, scale) in enumerate([([0, 1, 2, 4], 1.0), ([0, 2, 4], 2.0), ([0, 3, 4], 4.0)]):
        for x in xs:
            rows.append({"run_id": f"r{seed}", "algorithm": "a", "topology": "t", "seed": seed, "variant": "",
                         "messages": float(x), "dist_opt": scale * 2.0 ** -x, "status": "ok"})
    df = pd.DataFrame(rows)
    c = curves(df, "messages", "dist_opt")["t"]["a"]
    assert c["x"][0] == 0 and c["x"][-1] == 4
    np.testing.assert_allclose(c["median"][[0, -1]], [2.0, 2.0 * 2.0 ** -4])
    np.testing.assert_allclose(c["lo"][[0, -1]], [1.0, 2.0 ** -4])
    np.testing.assert_allclose(c["hi"][[0, -1]], [4.0, 4.0 * 2.0 ** -4])
    out = plot_results(df, "messages", "dist_opt", tmp_path / "m.png")
    assert out.is_file()
    _no_temp_files(tmp_path)


def test_private_runs_plot_against_epsilon(tmp_path: Path) -> None:
    """The privacy spent is an x axis: private runs' curves run over their cumulative ε, a
    non-private run (ε null) has no curve there."""
    rows = [{"run_id": "p", "algorithm": "dp", "topology": "t", "seed": 0, "variant": "", "epsilon": e,
             "train_loss": 1.0 / (1.0 + e), "status": "ok"} for e in (0.0, 0.5, 1.0, 3.0)]
    rows += [{"run_id": "g", "algorithm": "gd", "topology": "t", "seed": 0, "variant": "", "epsilon": None,
              "train_loss": 0.1, "status": "ok"}]
    c = curves(pd.DataFrame(rows), "epsilon", "train_loss")["t"]
    assert list(c) == ["dp"]
    assert c["dp"]["x"][0] == 0.0 and c["dp"]["x"][-1] == 3.0
    np.testing.assert_allclose(c["dp"]["median"][[0, -1]], [1.0, 0.25])
    assert plot_results(pd.DataFrame(rows), "epsilon", "train_loss", tmp_path / "e.png").is_file()


def test_link_cost_topology_gets_a_link_time_plot(tmp_path: Path) -> None:
    cfg = {
        "name": "linkcost",
        "problem": {"name": "quadratic", "n": 16, "d": 3},
        "topology": ["dgx_2x8_ethernet"],
        "algorithms": [{"name": "gossip_sgd", "params": {"lr": 0.05}}],
        "seeds": [0],
        "stop": {"time": 3},
    }
    out = tmp_path / "out"
    assert main(["run", str(write_config(tmp_path, cfg)), "--out", str(out), "--no-progress"]) == 0
    df = pd.read_parquet(out / "results.parquet")
    assert df["link_time"].iloc[-1] > 0 and df["link_time"].is_monotonic_increasing
    assert (out / "plots" / "dist_opt_vs_link_time.png").is_file()
    assert main(["plot", str(out), "--x", "link_time", "--y", "dist_opt", "--out", str(tmp_path / "p.png")]) == 0
