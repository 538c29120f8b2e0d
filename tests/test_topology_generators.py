"""Graph generators: sizes against closed forms, connectivity, determinism, errors."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import reference_spectral as ref_spec

from fedopt.topology.generators import (
    available_topologies,
    make_topology,
    random_geometric_sequence,
    register_topology,
    topology_params,
)
from fedopt.topology.graph import Topology
from fedopt.topology.time_varying import TimeVaryingTopology

N = 16

# name -> (params, expected |E|)
CLOSED_FORMS = {
    "complete": ({"n": N}, N * (N - 1) // 2),
    "cycle": ({"n": N}, N),
    "path": ({"n": N}, N - 1),
    "star": ({"n": N}, N - 1),
    "grid2d": ({"n": N}, 2 * 4 * 3),
    "torus2d": ({"n": N}, 2 * N),
    "hypercube": ({"n": N}, N * 4 // 2),
    "barbell": ({"n": N}, 2 * 28 + 1),
    "lollipop": ({"n": N}, 28 + 8),
    "exponential": ({"n": N}, N * 3 + N // 2),
    "binary_tree": ({"n": N}, N - 1),
    "random_regular": ({"n": N, "degree": 3}, N * 3 // 2),
    "watts_strogatz": ({"n": N, "k": 4, "p": 0.2}, N * 4 // 2),
}
RANDOM = ("erdos_renyi", "random_geometric", "random_regular", "watts_strogatz")


def test_registry_lists_every_family() -> None:
    names = available_topologies()
    for name in [*CLOSED_FORMS, *RANDOM, "time_varying"]:
        assert name in names
    assert names == sorted(names)


@pytest.mark.parametrize("name", [n for n in available_topologies() if n != "time_varying"])
def test_every_generator_is_connected_with_n_nodes(name: str) -> None:
    top = make_topology(name, n=N)
    assert isinstance(top, Topology)
    assert top.n == N
    assert nx.is_connected(top.graph)
    assert top.params["family"] == name
    if name in CLOSED_FORMS:
        params, m = CLOSED_FORMS[name]
        assert make_topology(name, **params).m == m


@pytest.mark.parametrize("name", [n for n in available_topologies() if n != "time_varying"])
def test_every_family_documents_its_parameters(name: str) -> None:
    params = topology_params(name)
    assert "n" in params
    assert all(doc for doc in params.values()), params


def test_shapes_and_alternative_parameters() -> None:
    assert make_topology("grid2d", n=12).params["rows"] == 3
    assert make_topology("grid2d", rows=2, cols=5).m == 2 * 4 + 5
    assert make_topology("grid2d", n=3).m == 2  # 1 x 3: a path
    assert make_topology("torus2d", rows=3, cols=5).m == 30
    assert make_topology("hypercube", dim=5).n == 32
    assert make_topology("hypercube", n=64).m == 64 * 6 // 2
    b = make_topology("barbell", m1=5, m2=3)
    assert (b.n, b.m) == (13, 2 * 10 + 4)
    assert make_topology("barbell", n=17).params["m2"] == 1
    lp = make_topology("lollipop", m=6, k=4)
    assert (lp.n, lp.m) == (10, 15 + 4)
    star = make_topology("star", n=7)
    assert star.degrees()[0] == 6 and (star.degrees()[1:] == 1).all()
    assert make_topology("exponential", n=12).degrees().max() <= 2 * math.ceil(math.log2(12))
    tree = make_topology("binary_tree", n=7)
    assert {tuple(e) for e in tree.edges.tolist()} == {(0, 1), (0, 2), (1, 3), (1, 4), (2, 5), (2, 6)}


@pytest.mark.parametrize("name", RANDOM)
def test_random_families_are_deterministic_in_seed(name: str) -> None:
    a = make_topology(name, n=30, seed=5)
    b = make_topology(name, n=30, seed=5)
    assert np.array_equal(a.edges, b.edges)
    others = [make_topology(name, n=30, seed=s).edges for s in (6, 7, 8)]
    assert any(not np.array_equal(a.edges, o) for o in others)


def test_sparse_random_graphs_are_redrawn_until_connected() -> None:
    # below the connectivity threshold most draws are disconnected
    top = make_topology("random_geometric", n=40, radius=0.2, seed=1)
    assert nx.is_connected(top.graph)
    top = make_topology("erdos_renyi", n=40, p=0.08, seed=1)
    assert nx.is_connected(top.graph)
    with pytest.raises(ValueError, match=r"'erdos_renyi'.*no connected graph.*raise p"):
        make_topology("erdos_renyi", n=60, p=0.005)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("cycle", {"n": 8, "radius": 0.5}, r"^topology 'cycle': unknown parameter 'radius'; allowed: n$"),
        ("random_geometric", {"n": 8, "raduis": 0.5}, r"unknown parameter 'raduis'; allowed: n, radius, seed"),
        ("cycle", {"n": 2}, r"'cycle': parameter 'n' must be ≥ 3"),
        ("cycle", {"n": "many"}, r"'cycle': parameter 'n' must be an integer"),
        ("cycle", {}, r"'cycle': parameter 'n'.*required"),
        ("grid2d", {"n": 13}, r"'grid2d': n = 13 is prime.*'rows' and 'cols'"),
        ("grid2d", {"n": 12, "rows": 5}, r"'grid2d': parameter 'rows' = 5 does not divide"),
        ("hypercube", {"n": 12}, r"'hypercube': parameter 'n' must be a power of 2"),
        ("random_geometric", {"n": 8, "radius": -1.0}, r"'random_geometric': parameter 'radius' must be in"),
        ("erdos_renyi", {"n": 8, "p": 1.5}, r"'erdos_renyi': parameter 'p'"),
        ("random_regular", {"n": 9, "degree": 3}, r"'random_regular': n·degree must be even"),
        ("random_regular", {"n": 8, "degree": 8}, r"parameter 'degree' must be < n"),
        ("watts_strogatz", {"n": 10, "k": 3}, r"parameter 'k' must be even"),
        ("barbell", {"n": 10, "m1": 6}, r"'barbell'"),
        ("lollipop", {"n": 10, "m": 4, "k": 1}, r"'lollipop': m \+ k = 5 differs from n = 10"),
        ("random_geometric", {"n": 8, "seed": -1}, r"parameter 'seed' must be ≥ 0"),
        ("time_varying", {"n": 8, "base": "nope"}, r"'time_varying': parameter 'base' must be one of .*cycle"),
        ("time_varying", {"n": 8, "switch": "often"}, r"'time_varying': parameter 'switch'"),
        ("time_varying", {"n": 8, "colour": 1}, r"unknown parameter 'colour'; allowed: n, base, .*radius"),
    ],
)
def test_bad_parameters_name_the_topology_and_key(name: str, params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        make_topology(name, **params)
    assert "\n" not in str(info.value)


def test_unknown_name_lists_available() -> None:
    with pytest.raises(ValueError, match=r"unknown topology 'ringg'; available: .*cycle.*random_geometric"):
        make_topology("ringg", n=4)
    with pytest.raises(ValueError, match="unknown topology"):
        topology_params("ringg")


def test_register_topology_adds_a_family() -> None:
    @register_topology("_test_pair")
    def pair(n: int = 2) -> Topology:
        """Two nodes.

        Parameters
        ----------
        n : int
            must be 2.
        """
        return Topology("pair", 2, np.array([[0, 1]]))

    try:
        assert make_topology("_test_pair").m == 1
        assert topology_params("_test_pair") == {"n": "int; must be 2. (default 2)"}
        with pytest.raises(ValueError, match="already registered"):
            register_topology("_test_pair")(lambda: None)
    finally:
        from fedopt.topology import generators

        generators._REGISTRY.pop("_test_pair")


# ---- time-varying ---------------------------------------------------------------------


def test_time_varying_generator_and_period() -> None:
    tv = make_topology("time_varying", n=20, base="random_geometric", count=4, radius=0.5, switch=2.5, seed=3)
    assert isinstance(tv, TimeVaryingTopology)
    assert len(tv.topologies) == 4 and tv.n == 20 and tv.period == 2.5
    assert all(nx.is_connected(t.graph) for t in tv.topologies)
    assert len({t.edges.tobytes() for t in tv.topologies}) == 4  # distinct draws
    assert tv.at(0.0) is tv.topologies[0]
    assert tv.at(2.4) is tv.topologies[0]
    assert tv.at(2.5) is tv.topologies[1]
    assert tv.index_at(7.6) == 3
    assert tv.at(10.1) is tv.topologies[0]  # cycles
    again = make_topology("time_varying", n=20, base="random_geometric", count=4, radius=0.5, switch=2.5, seed=3)
    assert all(np.array_equal(a.edges, b.edges) for a, b in zip(tv.topologies, again.topologies))


def test_time_varying_inverse_chi1_switch() -> None:
    tv = random_geometric_sequence(20, 5, radius=0.45, seed=1)
    assert tv.params["switch"] == "inverse_chi1"
    # independent: dense eigenvalues and pseudo-inverses of every graph's Laplacian
    w = [np.full(t.m, 1.0 / t.m) for t in tv.topologies]
    c1 = max(ref_spec.chi1(t.n, t.edges, x) for t, x in zip(tv.topologies, w))
    c2 = max(ref_spec.chi2(t.n, t.edges, x) for t, x in zip(tv.topologies, w))
    assert tv.worst_chi1() == pytest.approx(c1, rel=1e-10)
    assert tv.worst_chi2() == pytest.approx(c2, rel=1e-10)
    lam = math.sqrt(2 * c1 * c2)
    assert tv.dadao_rate() == pytest.approx(lam, rel=1e-10)
    worst = max(ref_spec.chi1(t.n, t.edges, lam * x) for t, x in zip(tv.topologies, w))
    assert tv.period == pytest.approx(1.0 / worst, rel=1e-10)
    assert tv.period == pytest.approx(math.sqrt(2 * c2 / c1), rel=1e-10)
    # custom weights
    ones = max(ref_spec.chi1(t.n, t.edges) for t in tv.topologies)
    assert tv.worst_chi1(lambda t: np.ones(t.m)) == pytest.approx(ones, rel=1e-10)


def test_time_varying_rejects_mixed_sizes_and_bad_period() -> None:
    a, b = make_topology("cycle", n=5), make_topology("cycle", n=6)
    with pytest.raises(ValueError, match="same n"):
        TimeVaryingTopology([a, b], 1.0)
    with pytest.raises(ValueError, match="period"):
        TimeVaryingTopology([a], 0.0)
    with pytest.raises(ValueError, match="at least one"):
        TimeVaryingTopology([], 1.0)


def test_time_varying_with_a_deterministic_base() -> None:
    tv = make_topology("time_varying", n=8, base="cycle", count=2, switch=1)
    assert [t.name for t in tv.topologies] == ["cycle[0]", "cycle[1]"]
