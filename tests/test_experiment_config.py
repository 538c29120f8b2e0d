"""Experiment configs: validation errors are one line naming the key; sweeps expand to stable run ids."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
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
    # engines that this install does not have
    ("engine", "dask", "config: engine: 'dask' is not one of local, mpi, ray, sharded"),
    # problem parameter values, checked by building each distinct problem once when the config is loaded
    ("problem.d", 0, "config: problem.d: quadratic: n and d must be positive, got n=6, d=0"),
    ("problem.mu", 20.0, "config: problem.L: quadratic: need 0 < mu <= L, got mu=20.0, L=10.0"),
    ("problem.d", 2.5,
     "config: problem.d: Input should be a valid integer (got 2.5) (a parameter of problem 'quadratic')"),
    ("problem.L", "1e3", "config: problem.L: Input should be a valid number (got '1e3')"),
    ("problem.seed", -1, "config: problem.seed: must be a non-negative integer, got -1"),
    ("sweep", {"problem.d": [3, 0]}, "config: sweep point problem.d=0: problem.d: quadratic: n and d must be positive"),
    ("problem", {"name": "logistic", "n": 6, "data": {"source": "synthetic", "d": 0}},
     "config: problem.data.d: data source 'synthetic': d must be a positive integer, got 0"),
    ("problem", {"name": "logistic", "n": 6, "data": {"source": "synthetic", "n_sample": 50}},
     "config: problem.data.n_sample: data (source 'synthetic'): unknown key 'n_sample'"),
    ("problem", {"name": "logistic", "n": 6, "data": {"source": "synthetic"},
                 "partition": {"kind": "dirichlet", "alpha": -1}},
     "config: problem.partition.alpha: partition 'dirichlet': alpha must be positive, got -1"),
    ("problem", {"name": "logistic", "n": 6, "data": {"source": "synthetic", "n_samples": 4}},
     "config: problem.n: Logistic: 6 nodes but the data hold only 4 samples"),
    ("problem", {"name": "logistic", "n": 6, "data": {"source": "sklearn", "name": "wine"}},
     "config: problem.data: Logistic: labels must be in {0, 1}"),
    ("problem", {"name": "least_squares", "n": 6, "data": {"source": "synthetic"}, "reg": -1.0},
     "config: problem.reg: LeastSquares: reg must be >= 0, got -1.0"),
    ("problem", {"name": "fedavg_anchor", "n": 6, "samples_per_node": 0},
     "config: problem.samples_per_node: fedavg_anchor: samples_per_node must be a positive integer, got 0"),
    ("problem", {"name": "quadratic", "d": 3}, "config: problem.n: required key is missing"),
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
    runs = expand(load_config(Path(__file__).parents[1] / "experiments" / "quickstart.yaml"))
    assert len(runs) == 3 * 3 * 2
    assert {r.label for r in runs} == {"DGD", "gossip SGD", "FedAvg"}


#: A small config of every registered problem (a newly registered problem needs an entry here).
SMALL_PROBLEMS: dict[str, dict[str, Any]] = {
    "quadratic": {"n": 4, "d": 2},
    "least_squares": {"n": 4, "data": {"source": "synthetic", "task": "regression", "n_samples": 40, "d": 3}},
    "logistic": {"n": 4, "data": {"source": "synthetic", "n_samples": 40, "d": 3}},
    "nonconvex_logistic": {"n": 4, "data": {"source": "synthetic", "n_samples": 40, "d": 3}},
    "fedavg_anchor": {"n": 4, "samples_per_node": 10, "d": 3},
    "mlp_regression": {"n": 4, "data": {"source": "teacher", "n_samples": 40, "d": 3}, "hidden": 2, "device": "cpu"},
    "mlp_classification": {"n": 4, "hidden": 2, "device": "cpu"},
    "cnn_classification": {"n": 4, "channels": 1, "device": "cpu"},
    "dirichlet_quadratic": {"n": 4, "d": 3},
    "dirichlet_ackley": {"n": 4, "d": 3},
    "dirichlet_levy": {"n": 4, "d": 3},
    "blackbox_attack": {"n": 4, "portion": 1.0, "hidden": 4, "images": 2, "train_steps": 30},
    "metric_optimization": {"n": 4, "hidden": 2, "train_steps": 5},
}
#: The dimension of a small problem whose ``d`` is not its data's (a network's parameter count).
SMALL_DIMS: dict[str, int] = {"mlp_regression": 3 * 2 + 2 + 2 * 1 + 1, "mlp_classification": 64 * 2 + 2 + 2 * 10 + 10,
                              "cnn_classification": 1 * 9 + 1 + 16 * 10 + 10, "blackbox_attack": 64,
                              "metric_optimization": 2 * 10 + 10}
#: The algorithm of a problem's small run where FedAvg cannot run (no gradient oracle).
SMALL_ALGORITHMS: dict[str, str] = {"metric_optimization": "zo_fedavg"}


def _small(problem: dict[str, Any], seeds: list[int] | None = None) -> dict[str, Any]:
    algorithm = SMALL_ALGORITHMS.get(problem["name"], "fedavg")
    return {"name": "small", "problem": problem, "topology": ["complete"], "algorithms": [{"name": algorithm}],
            "seeds": seeds or [0], "stop": {"rounds": 2}}


@pytest.mark.parametrize("name", sorted(SMALL_PROBLEMS))
def test_every_registered_problem_builds_and_runs_from_a_config(name: str, tmp_path: Path) -> None:
    from fedopt.engines.base import make_engine
    from fedopt.problems.base import available_problems

    assert set(available_problems()) == set(SMALL_PROBLEMS)
    (run,) = expand(parse_config(_small({"name": name, **SMALL_PROBLEMS[name]})))
    spec = run.build_spec()
    params = SMALL_PROBLEMS[name]
    d = SMALL_DIMS.get(name, params.get("d", params.get("data", {}).get("d")))
    assert (spec.problem.n, spec.problem.d) == (4, d)
    result = make_engine("local").run(spec)
    assert result.status == "ok", result.message


def test_problem_defaults_fill_in_n() -> None:
    """``problem: {name: fedavg_anchor}`` alone is a config: its factory's defaults are the benchmark's."""
    from fedopt.problems.empirical import fedavg_anchor_data

    cfg = parse_config(_small({"name": "fedavg_anchor"}))
    assert cfg.problem.n == 100 and cfg.to_dict()["problem"] == {"name": "fedavg_anchor", "n": 100}
    (run,) = expand(cfg)
    X, _ = fedavg_anchor_data()
    np.testing.assert_array_equal(run.build_spec().problem.Xd, X)


def test_problem_seed_is_the_one_used() -> None:
    """``problem.seed`` fixes the problem for every run seed; without it each run seed draws its own."""
    def quadratics(problem: dict[str, Any]) -> list[np.ndarray]:
        runs = expand(parse_config(_small(problem, seeds=[0, 1])))
        return [r.build_spec().problem.A for r in runs]

    fixed = quadratics({"name": "quadratic", "n": 4, "d": 3, "seed": 7})
    np.testing.assert_array_equal(fixed[0], fixed[1])
    # the factory's own seed path, without the experiment's streams: A_i = Q_i diag(λ_i) Q_iᵀ from default_rng(7)
    g = np.random.default_rng(7)
    spectra = g.uniform(1.0, 10.0, size=(4, 3))
    spectra[:, 0], spectra[:, 1] = 1.0, 10.0
    Q = np.linalg.qr(g.normal(size=(4, 3, 3)))[0]
    np.testing.assert_allclose(fixed[0], Q @ (spectra[:, :, None] * Q.transpose(0, 2, 1)), rtol=1e-12, atol=1e-12)

    drawn = quadratics({"name": "quadratic", "n": 4, "d": 3})
    assert not np.allclose(drawn[0], drawn[1])
    assert not np.allclose(drawn[0], fixed[0]) and not np.allclose(drawn[1], fixed[0])

    data = expand(parse_config(_small({**SMALL_PROBLEMS["logistic"], "name": "logistic", "seed": 3}, seeds=[0, 1])))
    a, b = (r.build_spec().problem for r in data)
    np.testing.assert_array_equal(a.Xd, b.Xd)


def test_each_distinct_problem_is_built_once_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    import fedopt.experiment.config as config

    built: list[dict[str, Any]] = []
    real = config.build_problem

    def counting(problem: Any, seed: int, base_dir: Any = None) -> Any:
        built.append(dict(problem))
        return real(problem, seed, base_dir)

    monkeypatch.setattr(config, "build_problem", counting)
    cfg = copy.deepcopy(BASE)
    cfg["seeds"] = [0, 1, 2]
    cfg["sweep"] = {"problem.d": [2, 3], "algorithms.0.params.lr": [0.01, 0.02], "problem.heterogeneity": [1.0, 1.0]}
    parse_config(cfg)
    assert sorted(b["d"] for b in built) == [2, 3]


def test_engine_that_is_not_built_or_cannot_be_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fedopt.engines import base

    (tmp_path / "needy_engine.py").write_text("import no_such_package_for_fedopt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(base._LAZY_ENGINES, "ghost", "fedopt.engines.ghost")  # declared, no module
    monkeypatch.setitem(base._LAZY_ENGINES, "needy", "needy_engine")  # its module needs a missing package
    assert "ghost" not in base.available_engines() and "needy" in base.available_engines()
    with pytest.raises(ConfigError, match=r"^config: engine: 'ghost' is not one of local, mpi, needy, ray, sharded$"):
        parse_config({**BASE, "engine": "ghost"})
    with pytest.raises(ValueError, match=r"^unknown engine 'ghost'; choose one of: local, mpi, needy, ray, sharded$"):
        base.make_engine("ghost")
    msg = ("config: engine: engine 'needy' needs the package 'no_such_package_for_fedopt', which is not installed "
           "here: install it (pip install no_such_package_for_fedopt) or choose another engine")
    for engine in ("needy", {"name": "needy", "workers": 2}):  # with options or without
        with pytest.raises(ConfigError) as info:
            parse_config({**BASE, "engine": engine})
        assert str(info.value) == msg
