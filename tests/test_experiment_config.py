"""Experiment configs: validation errors are one line naming the key; sweeps expand to stable run ids."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedopt.cli import main
from fedopt.experiment.config import ConfigError, load_config, parse_config
from fedopt.experiment.sweep import expand

BASE: dict[str, Any] = {
    "name": "tiny",
    "problem": {"name": "quadratic", "n": 6, "d": 3},
    "topology": ["cycle", "star"],
    "algorithms": [
        {"name": "gossip_sgd", "params": {"lr": 0.05}},
        {"name": "fedavg", "label": "fedavg-5", "params": {"lr": 0.05, "local_steps": 5}},
    ],
    "seeds": [0, 1],
    "stop": {"time": 5},
}


def write_config(tmp_path: Path, cfg: dict[str, Any], name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def _set(cfg: dict[str, Any], path: str, value: Any) -> None:
    node: Any = cfg
    parts = [int(p) if p.isdigit() else p for p in path.split(".")]
    for p in parts[:-1]:
        node = node[p]
    if value is _DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value


_DELETE = object()

BAD = [
    ("colour", "blue", "config: colour: unknown key"),
    ("stop.tme", 3, "config: stop.tme: unknown key"),
    ("algorithms.1.name", "dadoa", "config: algorithms.1.name: unknown algorithm 'dadoa'; choose one of:"),
    ("algorithms.0.params.lrr", 0.1, "config: algorithms.0.params.lrr: unknown parameter of algorithm 'gossip_sgd'"),
    ("algorithms.0.params.lr", -1, "config: algorithms.0.params.lr: Input should be greater than 0"),
    ("problem.name", "quadratc", "config: problem.name: unknown problem 'quadratc'; choose one of:"),
    ("problem.dd", 3, "config: problem.dd: unknown parameter of problem 'quadratic'"),
    ("topology", ["cycle", "no_such_graph"], "config: topology.1:"),
    ("stop", _DELETE, "config: stop: give at least one of time, rounds, messages, target"),
    ("stop", {"target_metric": "subopt"}, "config: stop: give at least one of time, rounds, messages, target"),
    ("engine", "foo", "config: engine: 'foo' is not one of"),
    ("seeds", [0, 0], "config: seeds: duplicate seeds"),
    ("sweep", {"algorithms.0.params.lr": [0.1, -2]}, "config: sweep.algorithms.0.params.lr = -2: "),
    ("sweep", {"algorithms.7.params.lr": [0.1]}, "config: sweep.algorithms.7.params.lr: algorithms.7 does not exist"),
    ("sweep", {"seeds": [[1]]}, "config: sweep.seeds: only problem, topology, algorithms, stop, record"),
]


@pytest.mark.parametrize("path,value,expected", BAD, ids=[b[0] + ":" + b[2][8:30] for b in BAD])
def test_bad_config_is_one_line_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            path: str, value: Any, expected: str) -> None:
    cfg = copy.deepcopy(BASE)
    _set(cfg, path, value)
    out = tmp_path / "out"
    rc = main(["run", str(write_config(tmp_path, cfg)), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("fedopt: error: " + expected), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (out / "runs").exists()  # nothing ran


def test_missing_file_and_bad_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "config: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("problem: [1,\n")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "invalid YAML" in err and err.count("\n") == 1


def test_unknown_engine_on_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(write_config(tmp_path, BASE)), "--engine", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "config: engine: 'nope' is not one of" in capsys.readouterr().err


def test_defaults_and_name_from_file(tmp_path: Path) -> None:
    cfg = copy.deepcopy(BASE)
    del cfg["name"]
    cfg["topology"] = "cycle"  # one topology, not a list
    c = load_config(write_config(tmp_path, cfg, "my_exp.yaml"))
    assert c.name == "my_exp" and c.topology == ["cycle"] and c.engine == "local"
    assert c.record.every == 1.0 and c.resources.num_cpus == 1.0
    assert parse_config(c.to_dict()) == c  # the dump reads back


def test_sweep_expansion_counts_and_columns() -> None:
    cfg = copy.deepcopy(BASE)
    cfg["topology"] = ["cycle", "star", "complete"]
    cfg["sweep"] = {"algorithms.0.params.lr": [0.01, 0.05], "problem.heterogeneity": [0.5, 1.0]}
    runs = expand(parse_config(cfg))
    # gossip_sgd: 2 lr × 2 heterogeneity; fedavg: 2 heterogeneity (lr sweep does not concern it)
    assert len(runs) == 3 * (2 * 2 + 2) * 2
    assert len({r.run_id for r in runs}) == len(runs)
    fedavg = [r for r in runs if r.label == "fedavg-5"]
    assert all(r.swept["lr"] is None for r in fedavg)
    assert {r.swept["heterogeneity"] for r in fedavg} == {0.5, 1.0}
    g = [r for r in runs if r.algorithm == "gossip_sgd"]
    assert {(r.params["lr"], r.problem["heterogeneity"]) for r in g} == {(a, b) for a in (0.01, 0.05) for b in (0.5, 1.0)}
    assert all(r.params["lr"] == r.swept["lr"] for r in g)
    # grid order: topology, then algorithm, then sweep point, then seed
    assert [r.topology_label for r in runs[:12]] == ["cycle"] * 12
    assert [r.seed for r in runs[:4]] == [0, 1, 0, 1]
    assert runs[0].labels["variant"] == "lr=0.01, heterogeneity=0.5"


def test_run_ids_are_stable() -> None:
    a = {r.run_id: r for r in expand(parse_config(BASE))}
    b = {r.run_id: r for r in expand(parse_config(copy.deepcopy(BASE)))}
    assert list(a) == list(b)
    more = copy.deepcopy(BASE)
    more["seeds"] = [0, 1, 2]
    more["algorithms"].append({"name": "gossip_sgd", "label": "slow", "params": {"lr": 0.01}})
    c = {r.run_id for r in expand(parse_config(more))}
    assert set(a) <= c  # adding seeds or algorithms does not rename existing runs
    # explicit defaults give the same run as implicit ones
    explicit = copy.deepcopy(BASE)
    explicit["algorithms"][1]["params"]["server_lr"] = 1.0
    assert {r.run_id for r in expand(parse_config(explicit))} == set(a)
    changed = copy.deepcopy(BASE)
    changed["algorithms"][0]["params"]["lr"] = 0.06
    d = {r.run_id for r in expand(parse_config(changed))}
    assert len(d & set(a)) == len(a) // 2  # only gossip_sgd's runs changed


def test_config_error_is_value_error() -> None:
    with pytest.raises(ValueError, match=r"^config: algorithms\.1\.label: 'x' is already used"):
        parse_config({**BASE, "algorithms": [{"name": "fedavg", "label": "x"}, {"name": "gossip_sgd", "label": "x"}]})
    assert issubclass(ConfigError, ValueError)


def test_quickstart_config_is_valid() -> None:
    from fedopt.algorithms.base import available_algorithms
    from fedopt.problems.base import available_problems

    missing = [x for x in ("logistic",) if x not in available_problems()]
    missing += [x for x in ("dgd", "gossip_sgd", "fedavg") if x not in available_algorithms()]
    if missing:
        pytest.skip(f"not available yet: {', '.join(missing)}")
    runs = expand(load_config(Path(__file__).parents[1] / "experiments" / "quickstart.yaml"))
    assert len(runs) == 3 * 3 * 2
    assert {r.label for r in runs} == {"DGD", "gossip SGD", "FedAvg"}
