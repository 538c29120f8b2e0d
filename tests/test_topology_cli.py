"""``fedopt topology``: text and JSON output, listing, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedopt.cli import main
from fedopt.topology.cli import parse_params, parse_value
from fedopt.topology.generators import make_topology
from fedopt.topology.spec import save_spec


def test_generator_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "cycle", "--n", "16"]) == 0
    out = capsys.readouterr().out
    assert "cycle: n = 16, |E| = 16, degree 2..2" in out
    for key in ("λ2", "χ1", "χ2", "rate_tot"):
        assert key in out
    assert "0.152241" in out  # 2 − 2cos(2π/16)
    assert "39.70" in out


def test_params_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "random_geometric", "--n", "30", "--param", "radius=0.5", "-p", "seed=2", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    top = make_topology("random_geometric", n=30, radius=0.5, seed=2)
    assert d["n"] == 30 and d["edges"] == top.m and d["weights"] == "unit"
    assert d["chi2"] <= d["chi1"]
    assert set(d) >= {"lambda2", "chi1", "chi2", "rate_tot", "degree_min", "degree_max"}


def test_shipped_spec_and_spec_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["topology", "two_cliques8"]) == 0
    assert "two_cliques8: n = 16, |E| = 57" in capsys.readouterr().out
    top = make_topology("star", n=6)
    p = save_spec(top.with_rates([2.0] * 5), tmp_path / "s.yaml")
    assert main(["topology", str(p), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["weights"] == "rates" and d["lambda2"] == pytest.approx(2.0)


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "--list"]) == 0
    out = capsys.readouterr().out
    assert "random_geometric(n, radius, seed)" in out
    assert "ring16" in out and "two_cliques8" in out
    assert main(["topology", "--list", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert "radius" in d["generators"]["random_geometric"] and "ring16" in d["specs"]


def test_time_varying_prints_each_graph_and_worst_case(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["topology", "time_varying", "--n", "16", "-p", "count=3", "-p", "radius=0.6", "-p", "switch=2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "3 graphs, n = 16, switching every 2 time units" in out
    for k in range(3):
        assert f"random_geometric[{k}]" in out
    assert "worst case" in out
    assert main([*argv, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["count"] == 3 and len(d["graphs"]) == 3 and d["worst"]["period"] == 2.0


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["topology", "ringg", "--n", "8"], "unknown topology 'ringg'"),
        (["topology", "cycle", "--n", "8", "--param", "radius=0.3"], "unknown parameter 'radius'; allowed: n"),
        (["topology", "cycle", "--param", "n"], "--param 'n': write KEY=VALUE"),
        (["topology", "cycle"], "parameter 'n'"),
        (["topology"], "give a NAME"),
    ],
)
def test_errors_are_one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedopt: error: ") and match in err
    assert err.count("\n") == 1


def test_value_parsing() -> None:
    assert parse_value("16") == 16 and isinstance(parse_value("16"), int)
    assert parse_value("0.5") == 0.5 and parse_value("1e-3") == 1e-3
    assert parse_value("true") is True and parse_value("False") is False
    assert parse_value("random_geometric") == "random_geometric"
    assert parse_params(["a=1", "b = x"]) == {"a": 1, "b": "x"}
