"""The link-cost model: one formula for the meter's channel and the rate problems."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from fedopt.algorithms import make_algorithm
from fedopt.core.meter import Channel, Meter
from fedopt.engines.base import RunSpec, Simulation, StopCriteria
from fedopt.problems.quadratic import random_quadratic
from fedopt.topology.graph import Topology
from fedopt.topology.linkcost import edge_costs, has_link_costs, message_seconds
from fedopt.topology.spec import load_spec, spec_path


def test_message_seconds_formula() -> None:
    assert message_seconds(2e-6, 1e9, 1e6) == pytest.approx(2e-6 + 1e-3)
    np.testing.assert_allclose(message_seconds(np.array([0.0, 1.0]), np.array([2.0, 4.0]), 8.0), [4.0, 3.0])


def test_channel_uses_the_model() -> None:
    lat, bw = np.array([1e-6, 5e-6, 2e-5]), np.array([1e11, 2.5e10, 3e9])
    ch = Channel(Meter(n=3), lat, bw)
    edges = np.array([0, 2, 1])
    np.testing.assert_array_equal(ch.message_seconds(edges, 10), message_seconds(lat[edges], bw[edges], 80))
    ch.exchange(np.array([0, 1]), np.array([1, 2]), np.array([0, 2]), 10)
    assert ch.meter.link_time == pytest.approx(2 * float(message_seconds(lat[[0, 2]], bw[[0, 2]], 80).sum()))
    assert Channel(Meter(n=2)).message_seconds(np.array([0]), 5).tolist() == [0.0]


def test_edge_costs() -> None:
    top = Topology.from_networkx("c", nx.cycle_graph(4))
    assert not has_link_costs(top)
    np.testing.assert_array_equal(edge_costs(top), np.ones(4))
    dgx = load_spec(spec_path("dgx_4x8"))
    c = edge_costs(dgx, 1e6)
    nvlink = dgx.bandwidth > 1e11  # type: ignore[operator]
    assert nvlink.sum() == 4 * 28 and (~nvlink).sum() == 48
    assert c[nvlink].max() < c[~nvlink].min()  # NVLink is cheaper than InfiniBand
    np.testing.assert_allclose(c, 2 * (dgx.latency + 1e6 / dgx.bandwidth))  # type: ignore[operator]
    with pytest.raises(ValueError):
        edge_costs(dgx, -1.0)


def test_cost_weighted_rate_is_expected_link_time() -> None:
    """Σ c_e λ_e with c_e = 2 messages of 8·d bytes equals DADAO's measured link time per unit time."""
    g = nx.barbell_graph(4, 0)
    for k, (u, v) in enumerate(g.edges()):
        g.edges[u, v]["latency"] = 1e-6 * (1 + k % 3)
        g.edges[u, v]["bandwidth"] = 1e9 * (1 + k % 2)
    top = Topology.from_networkx("b", g)
    d = 3
    costs = edge_costs(top, 8 * d)
    from fedopt.topology.rates import optimize_rates

    sol = optimize_rates(top, "dadao", costs=costs, method="first_order")
    top = sol.apply(top)
    prob = random_quadratic(top.n, d, mu=1.0, L=10.0, seed=0)
    T = 400.0
    res = Simulation(RunSpec("r", prob, top, make_algorithm("dadao"), 0, StopCriteria(time=T), record_every=T)).run()
    row = res.rows[-1]
    assert row["link_time"] / row["time"] == pytest.approx(sol.objective, rel=0.05)
