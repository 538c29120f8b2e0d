"""Topology specs: round trip, shipped specs, errors, and resolving references."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from fedopt.topology.generators import make_topology
from fedopt.topology.graph import Topology
from fedopt.topology.spec import (
    SpecError,
    available_specs,
    load_spec,
    resolve_topology,
    save_spec,
    spec_path,
)
from fedopt.topology.time_varying import TimeVaryingTopology


def test_round_trip_keeps_edges_and_attributes(tmp_path: Path) -> None:
    top = make_topology("random_geometric", n=12, seed=1)
    rng = np.random.default_rng(0)
    rich = Topology("rich", top.n, top.edges, rates=rng.uniform(0.1, 2, top.m),
                    latency=rng.uniform(1e-6, 1e-5, top.m), bandwidth=rng.uniform(1e9, 1e11, top.m))
    p = save_spec(rich, tmp_path / "sub" / "rich.yaml", description="a test graph")
    back = load_spec(p)
    assert back.name == "rich" and back.n == rich.n
    assert np.array_equal(back.edges, rich.edges)
    for attr in ("rates", "latency", "bandwidth"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(rich, attr))
    assert back.params["description"] == "a test graph"
    assert not list(p.parent.glob(".*.tmp"))  # the temp file was renamed


def test_round_trip_plain_edges(tmp_path: Path) -> None:
    top = make_topology("grid2d", n=12)
    back = load_spec(save_spec(top, tmp_path / "g.yaml"))
    assert np.array_equal(back.edges, top.edges)
    assert back.rates is None and back.latency is None and back.bandwidth is None


def test_defaults_and_name_from_file(tmp_path: Path) -> None:
    p = tmp_path / "tri.yaml"
    p.write_text("n: 3\ndefaults: {latency: 1.0e-6, bandwidth: 1.0e9}\nedges:\n- [0, 1]\n- [1, 2]\n"
                 "- {u: 0, v: 2, latency: 5.0e-6, kind: ib}\n")
    top = load_spec(p)
    assert top.name == "tri" and top.m == 3
    np.testing.assert_allclose(top.latency, [1e-6, 5e-6, 1e-6])  # edges sorted: (0,1), (0,2), (1,2)
    np.testing.assert_allclose(top.bandwidth, 1e9)


def test_shipped_specs() -> None:
    assert {"ring16", "two_cliques8"} <= set(available_specs())
    ring = load_spec(spec_path("ring16"))
    assert np.array_equal(ring.edges, make_topology("cycle", n=16).edges)
    two = resolve_topology("two_cliques8")
    ref = Topology.from_networkx("b", nx.barbell_graph(8, 0))
    assert (two.n, two.m) == (16, 57) and np.array_equal(two.edges, ref.edges)
    assert "description" in two.params


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("n: 3\nedgez: [[0, 1]]\n", r"unknown key\(s\) \['edgez'\]"),
        ("n: 3\nedges:\n- {u: 0, v: 1, rte: 1.0}\n", r"edges\[0\]: unknown key\(s\) \['rte'\]"),
        ("n: 3\nedges:\n- {u: 0}\n", r"edges\[0\]: an edge needs keys u and v"),
        ("n: 3\nedges:\n- [0, 1, 2, 3]\n", r"edges\[0\]"),
        ("n: 3\nedges:\n- [0, 1]\n- [1, 2, 0.5]\n", r"'rate' is given for some edges"),
        ("n: 3\ndefaults: {speed: 1}\nedges: [[0, 1], [1, 2]]\n", r"defaults"),
        ("n: 3\nedges:\n- {u: 0, v: 1, bandwidth: 0}\n- [1, 2]\n", r"edges\[0\]\.bandwidth"),
        ("n: 4\nedges: [[0, 1], [2, 3]]\n", r"not connected"),
        ("n: x\nedges: [[0, 1]]\n", r"\.n: must be an integer"),
        ("edges: [[0, 1]\n", r"not valid YAML"),
        ("n: 3\n", r"missing key 'edges'"),
    ],
)
def test_bad_specs_give_one_line_errors(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(SpecError, match=match) as info:
        load_spec(p)
    assert "\n" not in str(info.value)
    assert "bad.yaml" in str(info.value)


def test_missing_spec_file() -> None:
    with pytest.raises(SpecError, match="not found"):
        load_spec("no/such/file.yaml")


def test_resolve_references(tmp_path: Path) -> None:
    top = make_topology("cycle", n=6)
    assert resolve_topology(top) is top
    assert resolve_topology({"name": "cycle", "n": 6}).m == 6
    assert resolve_topology({"name": "random_geometric", "n": 20, "radius": 0.5, "label": "rgg"}).n == 20
    # a spec file ignores the injected n and takes rates
    p = save_spec(top, tmp_path / "c6.yaml")
    got = resolve_topology({"name": str(p), "n": 99, "rates": [2.0] * 6})
    assert got.n == 6
    np.testing.assert_allclose(got.rates, 2.0)
    rates_file = save_spec(top.with_rates(np.arange(1.0, 7.0)), tmp_path / "r.yaml")
    np.testing.assert_allclose(resolve_topology({"name": str(p), "rates": str(rates_file)}).rates, np.arange(1.0, 7.0))
    with pytest.raises(SpecError, match="takes only 'rates'"):
        resolve_topology({"name": str(p), "radius": 0.3})
    with pytest.raises(SpecError, match="unknown topology 'nope'.*generators"):
        resolve_topology("nope")
    with pytest.raises(ValueError, match="unknown parameter 'radius'"):
        resolve_topology({"name": "cycle", "n": 6, "radius": 1.0})


def test_resolve_time_varying_config_entry() -> None:
    tv = resolve_topology({"name": "time_varying", "n": 20, "base": "random_geometric", "count": 3, "radius": 0.5,
                           "switch": "inverse_chi1", "label": "rgg x3"})
    assert isinstance(tv, TimeVaryingTopology)
    assert resolve_topology(tv) is tv
    assert tv.period > 0 and tv.at(0.0).n == 20


def test_a_bare_name_is_never_read_from_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stray file called ``cycle`` in the working directory does not shadow the generator."""
    from fedopt.topology.spec import resolve_topology

    (tmp_path / "cycle").write_text("n: 3\nedges: [[0, 1]]\n")
    monkeypatch.chdir(tmp_path)
    top = resolve_topology({"name": "cycle", "n": 6})
    assert (top.n, top.m) == (6, 6)


def test_bad_rates_options_list_every_allowed_option() -> None:
    """The allowed keys of ``rates: {...}`` come from the solver's signature (``form`` included)."""
    from fedopt.topology.spec import SpecError, resolve_topology

    with pytest.raises(SpecError) as err:
        resolve_topology({"name": "cycle", "n": 6, "rates": {"objective": "dadao", "bogus": 1}})
    allowed = str(err.value).split("allowed: ")[1].split(", ")
    assert {"objective", "solver", "method", "message_bytes", "form"} <= set(allowed)
