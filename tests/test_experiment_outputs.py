"""The output directory holds one experiment: refused without --resume / --overwrite, resumed only with
the same config, replaced whole; relative paths in a config resolve against the config file's folder."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from test_experiment_config import BASE, write_config

import fedopt.experiment.runner as runner
from fedopt.cli import main


def _cfg(**changes: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(BASE)
    cfg.update(topology=["cycle"], seeds=[0], stop={"time": 3})
    cfg.update(changes)
    return cfg


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _run(cfg_path: Path, out: Path, *flags: str) -> int:
    return main(["run", str(cfg_path), "--out", str(out), "--no-progress", *flags])


def test_a_directory_with_results_is_refused_without_resume_or_overwrite(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = write_config(tmp_path, _cfg(name="first"), "first.yaml")
    other = write_config(tmp_path, _cfg(name="other", algorithms=[{"name": "gossip_sgd", "params": {"lr": 0.07}}]),
                         "other.yaml")
    out = tmp_path / "out"
    assert _run(first, out) == 0
    before = _snapshot(out)
    capsys.readouterr()
    for cfg_path in (other, first):  # another experiment, or the same one again
        assert _run(cfg_path, out) == 2
        err = capsys.readouterr().err
        assert err == (f"fedopt: error: {out} already holds the results of experiment 'first'; add --resume to "
                       "finish that experiment (same config) or --overwrite to replace it\n")
    assert _snapshot(out) == before  # nothing touched

    with pytest.raises(SystemExit):  # one or the other
        _run(first, out, "--resume", "--overwrite")
    assert "not allowed with argument" in capsys.readouterr().err


def test_an_attempt_that_finished_no_run_does_not_block_the_directory(tmp_path: Path) -> None:
    """A sweep that stopped before its first run ended (it could not join its cluster, say) left
    only config.yaml and manifest.json: no results to protect, so a new run may use the folder."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump({**_cfg(name="earlier")}))
    (out / "manifest.json").write_text("{}")
    (out / "runs").mkdir()
    assert _run(write_config(tmp_path, _cfg(name="later"), "later.yaml"), out) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["name"] == "later"
    assert len(pd.read_parquet(out / "results.parquet"))


def test_resume_with_a_different_config_names_what_differs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _cfg(name="exp")
    out = tmp_path / "out"
    assert _run(write_config(tmp_path, base, "exp.yaml"), out) == 0
    before = _snapshot(out)
    changed = copy.deepcopy(base)
    changed["algorithms"][0]["params"]["lr"] = 0.07
    changed["seeds"] = [0, 1]
    changed["stop"] = {"time": 3, "rounds": 9}
    capsys.readouterr()
    assert _run(write_config(tmp_path, changed, "changed.yaml"), out, "--resume") == 2
    err = capsys.readouterr().err
    assert err == (f"fedopt: error: --resume: {out} holds the results of experiment 'exp' from a different config: "
                   "algorithms.0.params.lr: was 0.05, now 0.07; seeds: was [0], now [0, 1]; "
                   "stop.rounds: was None, now 9; use --overwrite to replace them, or another --out\n")
    assert _snapshot(out) == before

    # what does not change a result may differ: the name, the engine's settings, the resources
    same = {**copy.deepcopy(base), "name": "renamed", "resources": {"num_cpus": 2}, "parallel": 1}
    assert _run(write_config(tmp_path, same, "renamed.yaml"), out, "--resume") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["skipped"] == 2 and manifest["executed"] == 0


def test_overwrite_leaves_nothing_of_the_old_experiment(tmp_path: Path) -> None:
    old = _cfg(name="old", seeds=[0, 1, 2])
    new = _cfg(name="new", algorithms=[{"name": "gossip_sgd", "params": {"lr": 0.07}}])
    out = tmp_path / "out"
    assert _run(write_config(tmp_path, old, "old.yaml"), out) == 0
    old_parts = {p.name for p in (out / "runs").glob("*.parquet")}
    assert len(old_parts) == 6
    (out / "plots" / "mine.png").write_bytes(b"a plot of the old experiment")
    (out / "notes.txt").write_text("not an output of fedopt")
    (out / "runs" / ".x.parquet.123.abcd.tmp").write_bytes(b"half")  # left by a killed writer

    assert _run(write_config(tmp_path, new, "new.yaml"), out, "--overwrite") == 0
    df = pd.read_parquet(out / "results.parquet")
    parts = {p.name for p in (out / "runs").iterdir()}
    assert parts == {f"{r}.parquet" for r in df["run_id"].unique()} and len(parts) == 1
    assert not parts & old_parts
    assert set(df["algorithm"]) == {"gossip_sgd"} and set(df["seed"]) == {0}
    assert "mine.png" not in {p.name for p in (out / "plots").iterdir()}
    assert yaml.safe_load((out / "config.yaml").read_text())["name"] == "new"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["overwritten"] is True and manifest["experiment"] == "new"
    assert (out / "notes.txt").read_text() == "not an output of fedopt"  # only fedopt's own outputs are removed
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_a_bad_config_does_not_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run(write_config(tmp_path, _cfg(name="keep"), "keep.yaml"), out) == 0
    before = _snapshot(out)
    bad = _cfg(name="bad", engine={"name": "local", "threads": 2})
    assert _run(write_config(tmp_path, bad, "bad.yaml"), out, "--overwrite") == 2
    assert _snapshot(out) == before


# ---- relative paths ----------------------------------------------------------------------------


def _libsvm_experiment(folder: Path) -> Path:
    """A config in ``folder`` naming a LIBSVM file, a topology spec and a rates file by relative paths."""
    from fedopt.topology.generators import make_topology
    from fedopt.topology.spec import save_spec

    rng = np.random.default_rng(0)
    lines = [f"{'+1' if rng.random() < 0.5 else '-1'} " + " ".join(f"{j + 1}:{rng.normal():.4f}" for j in range(3))
             for _ in range(48)]
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "tiny.svm").write_text("\n".join(lines) + "\n")
    ring = make_topology("cycle", n=6)
    save_spec(ring, folder / "graphs" / "ring.yaml")
    save_spec(ring.with_rates(np.arange(1.0, 7.0)), folder / "graphs" / "rates.yaml")
    cfg = {
        "name": "paths",
        "problem": {"name": "logistic", "n": 6, "data": {"source": "libsvm", "path": "data/tiny.svm"}, "reg": 0.1},
        "topology": ["graphs/ring.yaml", {"name": "graphs/ring.yaml", "rates": "graphs/rates.yaml", "label": "rated"}],
        "algorithms": [{"name": "gossip_sgd", "params": {"lr": 0.05}}],
        "seeds": [0],
        "stop": {"time": 3},
    }
    return write_config(folder, cfg, "paths.yaml")


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_path = _libsvm_experiment(tmp_path / "exp")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory holds none of the files
    out = tmp_path / "out"
    assert _run(cfg_path, out) == 0
    df = pd.read_parquet(out / "results.parquet")
    assert (df["status"] == "ok").all() and set(df["topology"]) == {"ring", "rated"} and (df["dim"] == 3).all()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["problem"]["data"]["path"] == "data/tiny.svm"  # the text as written ...
    assert saved["base_dir"] == str((tmp_path / "exp").resolve())  # ... and the folder it resolves against

    # resuming from other working directories, with the results' config.yaml or with the original
    calls: list[str] = []
    monkeypatch.setattr(runner, "execute", lambda run, engine, progress=None: calls.append(run.run_id))
    monkeypatch.chdir(tmp_path)
    assert _run(out / "config.yaml", out, "--resume") == 0
    monkeypatch.chdir(out)
    assert _run(cfg_path, out, "--resume") == 0
    assert calls == []

    # the same text in another folder is other data: resuming from there is refused
    moved = tmp_path / "copy"
    moved.mkdir()
    copied = moved / "paths.yaml"
    copied.write_text(cfg_path.read_text())
    (moved / "data").symlink_to(tmp_path / "exp" / "data")
    (moved / "graphs").symlink_to(tmp_path / "exp" / "graphs")
    with pytest.raises(ValueError, match=r"from a different config: base_dir \(relative paths resolve against it\)"):
        runner.run_experiment(copied, out, resume=True, progress=False)


def test_a_missing_relative_file_names_the_key_and_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg_path = _libsvm_experiment(tmp_path / "exp")
    monkeypatch.chdir(tmp_path / "exp")  # the file exists relative to the working directory, not to the config
    raw = yaml.safe_load(cfg_path.read_text())
    folder = tmp_path / "exp" / "sub"
    folder.mkdir()
    moved = write_config(folder, raw, "paths.yaml")
    assert _run(moved, tmp_path / "out") == 2
    assert capsys.readouterr().err == (
        f"fedopt: error: config: problem.data.path: no such file: {folder.resolve() / 'data' / 'tiny.svm'} "
        f"(relative paths resolve against the config's folder, {folder.resolve()})\n")
    raw["problem"]["data"]["path"] = str(tmp_path / "exp" / "data" / "tiny.svm")
    assert _run(write_config(folder, raw, "paths.yaml"), tmp_path / "out") == 2
    assert capsys.readouterr().err.startswith(
        f"fedopt: error: config: topology.0: no such file: {folder.resolve() / 'graphs' / 'ring.yaml'} (relative")
    raw["topology"] = [{"name": str(tmp_path / "exp" / "graphs" / "ring.yaml"), "rates": "graphs/rates.yaml"}]
    assert _run(write_config(folder, raw, "paths.yaml"), tmp_path / "out") == 2
    assert capsys.readouterr().err.startswith("fedopt: error: config: topology.0.rates: no such file: ")


def test_a_config_without_a_file_records_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fedopt.experiment.config import parse_config

    cfg_path = _libsvm_experiment(tmp_path / "exp")
    monkeypatch.chdir(tmp_path / "exp")
    cfg = parse_config(yaml.safe_load(cfg_path.read_text()))  # no file: relative paths are the working directory's
    assert cfg.base_dir is None
    out = tmp_path / "out"
    runner.run_experiment(cfg, out, progress=False, plots=False)
    assert yaml.safe_load((out / "config.yaml").read_text())["base_dir"] == str(tmp_path / "exp")
    monkeypatch.chdir(tmp_path)
    calls: list[str] = []
    monkeypatch.setattr(runner, "execute", lambda run, engine, progress=None: calls.append(run.run_id))
    assert _run(out / "config.yaml", out, "--resume") == 0 and calls == []
