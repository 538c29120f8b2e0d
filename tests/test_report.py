"""The communication-complexity report: cost to reach a target, seed intervals, ratios, scaling slopes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from fedopt.algorithms import Complexity, algorithm_class
from fedopt.cli import main
from fedopt.experiment.config import ConfigError, parse_config
from fedopt.experiment.plots import curves, plot_results
from fedopt.experiment.report import (
    aggregate,
    bootstrap_median,
    cost_report,
    first_crossing,
    fit_slope,
    graph_quantities,
    ratio_table,
    run_costs,
)
from fedopt.experiment.store import rows_frame
from fedopt.topology.generators import make_topology


def _run(run_id: str, algorithm: str, seed: int, metric: list[float], messages: list[float],
         topology: str = "cycle", n: int = 8, status: str = "ok") -> pd.DataFrame:
    rows = [{"time": float(i), "round": i, "messages": m, "bytes": 8.0 * m, "grad_evals": float(n * i),
             "queries": 0.0, "link_time": 0.0, "dist_opt": v} for i, (v, m) in enumerate(zip(metric, messages))]
    return rows_frame(rows, {"algorithm": algorithm, "topology": topology, "seed": seed, "variant": ""}, run_id,
                      status, n_nodes=n, dim=2)


# ---- interpolation ------------------------------------------------------------------


def test_interpolation_recovers_known_crossings_exactly_in_log_space() -> None:
    # log(value) piecewise affine in the cost, with a different rate on each segment: the crossing
    # of each target is known in closed form, c = c_a + log(v_a / target) / r_a on its segment.
    knots = np.array([0.0, 3.0, 10.0, 12.5, 40.0])
    rates = np.array([0.2, 1.3, 0.05, 0.7])
    logv = np.concatenate(([math.log(5.0)], math.log(5.0) - np.cumsum(rates * np.diff(knots))))
    values = np.exp(logv)
    costs = np.stack([knots, 7.0 * knots + 3.0], axis=1)  # two cost axes, affine in one another
    for target in (4.0, 1.0, 0.5, values[2], 1e-3 * values[0], float(values[-1]) * 1.0000001):
        seg = int(np.searchsorted(-logv, -math.log(target), side="left")) - 1
        seg = max(seg, 0)
        want = knots[seg] + (logv[seg] - math.log(target)) / rates[seg]
        reached, at = first_crossing(values, costs, target)
        assert reached
        assert abs(math.log(at[0]) - math.log(want)) <= 1e-12
        assert abs(math.log(at[1]) - math.log(7.0 * want + 3.0)) <= 1e-12


def test_first_checkpoint_below_target_and_diverged_rows() -> None:
    reached, at = first_crossing(np.array([1e-9, 1e-10]), np.array([[5.0], [9.0]]), 1e-6)
    assert reached and at[0] == 5.0
    # NaN rows (after a divergence) are skipped; a value that overshoots back up does not count twice
    v = np.array([1.0, np.nan, 1e-2, 10.0, 1e-4])
    reached, at = first_crossing(v, np.array([0.0, 1.0, 2.0, 3.0, 4.0]), 1e-1)
    assert reached and at == pytest.approx(0.0 + (0 - math.log(0.1)) / (0 - math.log(1e-2)) * 2.0, abs=1e-12)
    reached, at = first_crossing(np.array([1.0, 0.5, np.nan]), np.array([0.0, 1.0, 2.0]), 1e-3)
    assert not reached and math.isnan(float(at))


def test_a_run_that_never_reaches_the_target_is_reported_as_such() -> None:
    df = pd.concat([
        _run("a0", "fast", 0, [1.0, 1e-2, 1e-4, 1e-6], [0, 10, 20, 30]),
        _run("a1", "fast", 1, [1.0, 1e-3, 1e-5, 1e-7], [0, 10, 20, 30]),
        _run("b0", "slow", 0, [1.0, 0.5, 0.3, 0.2], [0, 10, 20, 30]),
        _run("b1", "slow", 1, [1.0, 0.4, 0.25, 0.1], [0, 10, 20, 30]),
    ], ignore_index=True)
    per_run = run_costs(df, 1e-3, "dist_opt", relative=True)
    assert list(per_run["run_id"]) == ["a0", "a1", "b0", "b1"]  # none dropped
    slow = per_run[per_run["algorithm"] == "slow"]
    assert not slow["reached"].any() and slow["messages"].isna().all()
    assert list(slow["final_value"]) == [0.2, 0.1]
    table = aggregate(per_run, ["topology"])
    row = table[table["algorithm"] == "slow"].iloc[0]
    assert row["runs"] == 2 and row["reached"] == 0 and math.isinf(row["messages"])
    assert row["final_value"] == pytest.approx(0.15)
    fast = table[table["algorithm"] == "fast"].iloc[0]
    assert fast["reached"] == 2 and fast["messages"] == pytest.approx((15.0 + 10.0) / 2)  # 1e-3 at 15 and at 10
    ratios = ratio_table(per_run, "fast", ["topology"])
    assert math.isinf(float(ratios[ratios["algorithm"] == "slow"]["messages"].iloc[0]))
    assert float(ratios[ratios["algorithm"] == "fast"]["messages"].iloc[0]) == 1.0


def test_accuracy_targets_are_reached_when_the_accuracy_rises_to_them() -> None:
    acc = [0.1, 0.6, 0.8, 0.95]
    df = _run("a0", "fedavg", 0, [1.0, 1.0, 1.0, 1.0], [0, 10, 20, 30]).assign(test_accuracy=acc)
    per_run = run_costs(df, 0.9, "test_accuracy")
    row = per_run.iloc[0]
    assert row["reached"] and row["target_value"] == 0.9 and row["final_value"] == 0.95
    # the error 1 − accuracy falls from 0.2 to 0.05 between 20 and 30 messages: log-interpolated at 0.1
    want = 20.0 + 10.0 * math.log(0.2 / 0.1) / math.log(0.2 / 0.05)
    assert row["messages"] == pytest.approx(want, abs=1e-12)
    assert not run_costs(df, 0.99, "test_accuracy").iloc[0]["reached"]
    with pytest.raises(ValueError, match="higher-is-better"):
        run_costs(df, 0.5, "test_accuracy", relative=True)
    with pytest.raises(ValueError, match="below its best value"):
        run_costs(df, 1.0, "test_accuracy")


# ---- statistics ------------------------------------------------------------------------


def test_bootstrap_interval_covers_the_true_median_at_the_stated_rate() -> None:
    # lognormal(0, 1): the true median is exactly 1
    rng = np.random.default_rng(2024)
    reps, size = 300, 31
    covered = 0
    for _ in range(reps):
        sample = rng.lognormal(0.0, 1.0, size)
        _, lo, hi = bootstrap_median(sample, level=0.95, resamples=1000, seed=7)
        covered += lo <= 1.0 <= hi
    assert 0.91 <= covered / reps <= 0.99
    # a fixed seed: the same interval every time; not-reached runs (inf) keep the interval ordered
    assert bootstrap_median([3.0, 1.0, 2.0, 5.0]) == bootstrap_median([3.0, 1.0, 2.0, 5.0])
    med, lo, hi = bootstrap_median([1.0, 2.0, math.inf])
    assert med == 2.0 and lo <= med <= hi and math.isinf(hi)


def test_slope_fit_recovers_a_planted_exponent() -> None:
    x = np.geomspace(16, 256, 5).repeat(3)
    exact = fit_slope(x, 3.0 * x**1.7)
    assert abs(exact.slope - 1.7) <= 1e-12 and abs(exact.intercept - math.log(3.0)) <= 1e-12
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(200):
        fit = fit_slope(x, 3.0 * x**1.7 * np.exp(rng.normal(0, 0.1, len(x))))
        hits += fit.lo <= 1.7 <= fit.hi
    assert 0.9 <= hits / 200 <= 0.99
    assert math.isnan(fit_slope([4.0, 4.0], [1.0, 2.0]).slope)


# ---- graph quantities and declared complexities ----------------------------------------


def test_graph_quantities_match_closed_forms() -> None:
    n = 12
    q = graph_quantities(make_topology("cycle", n=n))
    l2 = 2 - 2 * math.cos(2 * math.pi / n)
    assert q["lambda2"] == pytest.approx(l2, rel=1e-10) and q["chi1"] == pytest.approx(1 / l2, rel=1e-10)
    assert q["chi"] == pytest.approx(4 / l2, rel=1e-10) and q["diameter"] == n // 2 and q["edges"] == n
    # Foster: on an edge-transitive graph every edge has effective resistance (n − 1)/|E|
    assert q["chi2"] == pytest.approx((n - 1) / n / 2, rel=1e-10)
    h = graph_quantities(make_topology("hypercube", n=16))
    assert h["lambda2"] == pytest.approx(2.0) and h["chi"] == pytest.approx(4.0) and h["diameter"] == 4
    assert h["chi2"] == pytest.approx(15 / 32 / 2) and h["sqrt_chi1_chi2"] == pytest.approx(math.sqrt(15 / 128))


def test_complexities_are_declared_as_data() -> None:
    adom = algorithm_class("adom_plus")
    assert adom.predicted_complexity("grad_evals", {"multi_consensus": True}).graph == {"n": 1.0}
    assert adom.predicted_complexity("grad_evals", {"multi_consensus": False}).graph == {"n": 1.0, "chi": 1.0}
    dadao = algorithm_class("dadao").predicted_complexity("messages", {})
    assert dadao.graph == {"edges": 1.0, "sqrt_chi1_chi2": 1.0} and dadao.kappa == 0.5 and dadao.constant is None
    assert algorithm_class("dgd").predicted_complexity("messages", {}) is None
    with pytest.raises(ValueError, match="unknown graph quantity 'degree'"):
        Complexity("messages", {"degree": 1.0}, 0.5, "nowhere")


# ---- config ------------------------------------------------------------------------------


def _config(report: Any) -> dict[str, Any]:
    return {
        "name": "scal", "problem": {"name": "quadratic", "n": 8, "d": 3, "mu": 1.0, "L": 4.0},
        "topology": ["cycle", "hypercube"],
        "algorithms": [{"name": "dadao", "label": "DADAO"}, {"name": "msda", "label": "MSDA"}],
        "seeds": [0, 1], "sweep": {"problem.n": [8, 16]}, "stop": {"target": 1e-9, "time": 600},
        "record": {"every": 5.0}, "report": report,
    }


@pytest.mark.parametrize("report, where", [
    ({"target": 1e-3, "baseline": "ADOM"}, "config: report.baseline: 'ADOM' is not an algorithm label; choose one of: "
                                           "DADAO, MSDA"),
    ({"target": -1.0}, "config: report.target: Input should be greater than 0"),
    ({"target": 1e-3, "metric": "loss"}, "config: report.metric: must be one of subopt"),
    ({"target": 1e-3, "cost": ["flops"]}, "config: report.cost: must be among messages"),
    ({"target": 1e-3, "format": "jpg"}, "config: report.format: Input should be 'png', 'pdf' or 'svg'"),
    ({"target": 1e-3, "color": "red"}, "config: report.color: unknown key; allowed: target, metric"),
])
def test_bad_report_sections_name_the_key(report: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_config(report))
    assert str(err.value).startswith(where) and "\n" not in str(err.value)


# ---- end to end --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("rep")
    cfg = tmp / "scal.yaml"
    cfg.write_text(yaml.safe_dump(_config({"target": 1e-6, "relative": True, "by": ["topology", "n"],
                                           "baseline": "DADAO", "x": ["n"], "cost": ["messages"],
                                           "format": "svg"})))
    out = tmp / "out"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    return out


def test_run_writes_the_report_of_its_config(experiment: Path) -> None:
    import json

    table = pd.read_parquet(experiment / "report.parquet")
    assert len(table) == 2 * 2 * 2  # algorithms × topologies × n
    assert set(table["reached"]) == {2} and (table["runs"] == 2).all()
    assert np.isfinite(table["messages"]).all() and (table["messages_lo"] <= table["messages"]).all()
    assert (table["messages"] <= table["messages_hi"]).all()
    md = (experiment / "report.md").read_text()
    assert "Cost relative to DADAO" in md and "Scaling of messages with n" in md
    assert "\\|E\\|·√(χ1χ2)·√κ·log(1/ε)" in md  # the formula's bars do not split the Markdown table
    svg = experiment / "plots" / "scaling_messages_vs_n.svg"
    assert svg.read_text().lstrip().startswith("<?xml")
    manifest = json.loads((experiment / "manifest.json").read_text())
    assert manifest["report"]["plots"] == [str(svg)]


def test_report_command_and_function_give_the_same_table(experiment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(experiment), "--target", "1e-4", "--absolute", "--by", "topology", "n",
                 "--format", "pdf"]) == 0
    printed = capsys.readouterr().out
    assert "# Cost to reach dist_opt ≤ 0.0001" in printed
    written = pd.read_parquet(experiment / "report.parquet")
    direct = cost_report(experiment, target=1e-4, metric="dist_opt", by=["topology", "n"])
    pd.testing.assert_frame_equal(written, direct)
    assert (experiment / "plots" / "scaling_messages_vs_n.pdf").read_bytes().startswith(b"%PDF")
    # graph quantities come with each group; the slope of DADAO's messages on the cycle follows theory
    cyc = direct[(direct["topology"] == "cycle") & (direct["algorithm"] == "DADAO")]
    assert list(cyc["edges"]) == [8.0, 16.0]


def test_groups_that_mix_runs_are_refused(experiment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(experiment), "--by", "topology"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedopt: error: report: runs of 'DADAO' with the same seed fall in one group of --by "
                          "topology but differ in ") and "add n to --by" in err
    assert main(["report", str(experiment), "--by", "radius"]) == 2
    assert "report: --by 'radius' is not a column of the report; choose from: " in capsys.readouterr().err
    assert main(["report", str(experiment), "--metric", "messages"]) == 2
    assert "report: metric 'messages' is not a metric column" in capsys.readouterr().err


# ---- plots ---------------------------------------------------------------------------------


def test_a_log_cost_axis_keeps_the_starting_point_at_zero(tmp_path: Path) -> None:
    df = pd.concat([
        _run("a", "adom", 0, [1.0, 30.0, 1e-2, 1e-5, 1e-8], [0.0, 10.0, 100.0, 1000.0, 10000.0]),
        _run("b", "adom", 1, [1.0, 20.0, 1e-2, 1e-5, 1e-8], [0.0, 12.0, 110.0, 1100.0, 11000.0]),
    ], ignore_index=True)
    c = curves(df, "messages", "dist_opt")["cycle"]["adom"]
    assert c["x"][0] == 0.0 and c["median"][0] == pytest.approx(1.0)  # the start, before the overshoot
    assert c["median"].max() > 10.0  # the overshoot is on the curve
    for fmt, magic in (("svg", b"<?xml"), ("pdf", b"%PDF"), ("png", b"\x89PNG")):
        out = plot_results(df, "messages", "dist_opt", tmp_path / f"p.{fmt}")
        assert out.read_bytes().lstrip()[: len(magic)] == magic
    with pytest.raises(ValueError, match="the output format must be one of png, pdf, svg"):
        plot_results(df, "messages", "dist_opt", tmp_path / "p.jpg")
