"""``fedopt rates``: printing, the rates file round trip, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reference_spectral as ref_spec

from fedopt.cli import main
from fedopt.topology.spec import load_spec, resolve_topology


def test_rates_cli_writes_a_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rates.yaml"
    assert main(["rates", "pcie_boxes", "--objective", "dadao", "--method", "first_order", "--out", str(out), "--show", "2"]) == 0
    text = capsys.readouterr().out
    assert "improvement:" in text and "2*chi1*chi2 = 1" in text and "link-seconds" in text
    top = load_spec(out)
    assert top.rates is not None and top.latency is not None and (top.rates > 0).all()
    assert 2 * ref_spec.chi1(top.n, top.edges, top.rates) * ref_spec.chi2(top.n, top.edges, top.rates) <= 1 + 1e-6
    # accepted back as a topology spec, and as a rates file for the named spec
    again = resolve_topology({"name": "pcie_boxes", "rates": str(out)})
    np.testing.assert_allclose(again.rates, top.rates)


@pytest.mark.parametrize("method", ["sdp", "first_order"])
@pytest.mark.parametrize("objective", ["max_connectivity", "min_total_resistance", "fastest_mixing"])
def test_rates_cli_objectives(objective: str, method: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rates", "barbell", "--n", "12", "--objective", objective, "--method", method, "--show", "0"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if "improvement:" in x][0]
    assert float(line.split("improvement:")[1].strip().rstrip("x")) > 1.0


def test_rates_cli_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rates", "no_such_topology"]) == 2
    assert "unknown topology" in capsys.readouterr().err
    assert main(["rates", "pcie_boxes", "--message-bytes", "-5"]) == 2
    assert "--message-bytes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["rates", "cycle", "--n", "8", "--method", "newton"])
    assert "invalid choice" in capsys.readouterr().err


def test_rates_cli_solver_auto_by_default_and_override(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rates", "barbell", "--n", "12", "--objective", "dadao", "--method", "sdp", "--show", "0"]) == 0
    assert "sdp, clarabel (auto), flow form, status optimal" in capsys.readouterr().out
    assert main(["rates", "barbell", "--n", "12", "--objective", "dadao", "--method", "sdp", "--solver", "scs",
                 "--show", "0"]) == 0
    assert "sdp, scs, block_lmi form" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["rates", "cycle", "--n", "8", "--solver", "mosek"])
    assert "invalid choice: 'mosek' (choose from 'auto', 'scs', 'clarabel')" in capsys.readouterr().err
