"""What is asked for and unavailable is an error, or a choice that is logged and recorded in the manifest."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from test_experiment_config import write_config

import fedopt.cli as cli
from fedopt.cli import main

SMALL: dict[str, Any] = {
    "name": "small",
    "problem": {"name": "quadratic", "n": 4, "d": 2},
    "topology": ["cycle"],
    "algorithms": [{"name": "dgd"}],
    "stop": {"rounds": 3},
}


def test_a_missing_subcommand_module_is_an_error(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", (*cli.SUBCOMMAND_MODULES, "fedopt.no_such_cli"))
    assert main(["run", "whatever.yaml"]) == 2
    assert capsys.readouterr().err == (
        "fedopt: error: the subcommands of fedopt.no_such_cli are unavailable: the module is missing from this "
        "install; reinstall fedopt (pip install -e .)\n")


def test_topologies_are_not_resolved_without_the_spec_module(monkeypatch: pytest.MonkeyPatch) -> None:
    from fedopt.experiment.sweep import resolve_topology_ref

    assert resolve_topology_ref({"name": "cycle", "n": 4}).n == 4
    monkeypatch.setitem(sys.modules, "fedopt.topology.spec", None)  # as if the module were missing
    with pytest.raises(ModuleNotFoundError, match="fedopt.topology.spec"):
        resolve_topology_ref({"name": "cycle", "n": 4})


def test_engine_from_the_command_line_drops_the_configs_options_loudly(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = {**SMALL, "engine": {"name": "ray", "num_actors": 2, "num_cpus_per_actor": 1}}
    out = tmp_path / "out"
    assert main(["run", str(write_config(tmp_path, cfg)), "--out", str(out), "--no-progress", "--engine", "local"]) == 0
    assert capsys.readouterr().err == (
        "fedopt: engine 'local' replaces the config's engine 'ray'; its options (num_actors=2, num_cpus_per_actor=1) "
        "belong to 'ray' and are not used\n")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engine"] == "local" and manifest["engine_options"] == {}
    assert manifest["engine_override"] == {"engine": "local", "config_engine": "ray",
                                           "unused_options": {"num_actors": 2, "num_cpus_per_actor": 1}}

    # the same engine keeps its options; no override is recorded
    out2 = tmp_path / "out2"
    local = {**SMALL, "engine": "local"}
    assert main(["run", str(write_config(tmp_path, local, "l.yaml")), "--out", str(out2), "--no-progress",
                 "--engine", "local"]) == 0
    assert capsys.readouterr().err == ""
    assert json.loads((out2 / "manifest.json").read_text())["engine_override"] is None


def test_plots_that_cannot_be_drawn_are_recorded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = {**SMALL, "problem": {"name": "nonconvex_logistic", "n": 4, "data": {"source": "synthetic", "n_samples": 40,
                                                                                 "d": 3}}}
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="fedopt"):
        assert main(["run", str(write_config(tmp_path, cfg)), "--out", str(out), "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["plots"] == []  # no x*, no f*: nothing to draw
    assert set(manifest["plots_skipped"]) == {"plots/dist_opt_vs_messages.png", "plots/dist_opt_vs_grad_evals.png",
                                              "plots/subopt_vs_time.png"}
    reason = manifest["plots_skipped"]["plots/dist_opt_vs_messages.png"]
    assert reason == "plot: no finite values of 'dist_opt' against 'messages' in the results table"
    assert f"plots/dist_opt_vs_messages.png not drawn: {reason}" in caplog.messages


def test_a_gpu_that_torch_cannot_use_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray  # a dependency: a missing ray is a failure, not a skip
    import torch
    from fedopt.engines.ray.engine import actor_device

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [3])  # Ray gave this actor GPU 3
    with pytest.raises(RuntimeError, match=r"Ray gave this shard GPU 3 .* torch .* cannot use it .*install a CUDA "
                                           r"build of torch on this node, or set num_gpus_per_actor: 0"):
        actor_device()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert actor_device() == "cuda"
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])  # no GPU for this actor (whatever the environment says)
    assert actor_device() == "cpu"
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # outside Ray
    assert actor_device() == "cpu"
