"""The sharded core's per-block plans and split graph products, checked against references
written here from the definitions: a block's dependency levels computed event by event,
every shard's events and cross-shard endpoints, the pairing of each endpoint with its
peer's message, and graph products whose inner rows are taken before the halo arrives."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
from equivalence import assert_same_rows

from fedopt.algorithms.decentralized.gossip_sgd import GossipSGD
from fedopt.core.clocks import PoissonClocks
from fedopt.core.levels import schedule_levels
from fedopt.engines.base import RunSpec, StopCriteria, make_engine
from fedopt.engines.sharded.halo import SparseHaloPlan, halo_plan
from fedopt.engines.sharded.partition import graph_shards
from fedopt.engines.sharded.plan import plan_block
from fedopt.problems.quadratic import random_quadratic
from fedopt.topology.graph import Topology


def _levels_by_time(t: np.ndarray, a: np.ndarray, b: np.ndarray, n: int) -> dict[float, int]:
    """Each event's level (keyed by its time): one more than the last level of either node."""
    last = [-1] * n
    out = {}
    for k in range(len(t)):
        lv = max(last[a[k]], last[b[k]] if b[k] >= 0 else -1) + 1
        last[a[k]] = lv
        if b[k] >= 0:
            last[b[k]] = lv
        out[float(t[k])] = lv
    return out


@pytest.mark.parametrize(("shards", "seed"), [(2, 0), (3, 1), (4, 2)])
def test_plans_hold_every_event_once_and_pair_every_endpoint_with_its_peer(shards: int, seed: int) -> None:
    n = 24
    g = nx.random_geometric_graph(n, 0.35, seed=seed)
    top = Topology.from_networkx("rgg", g)
    rng = np.random.default_rng(seed)
    block = PoissonClocks(np.ones(n), top.edges, np.ones(top.m)).sample(rng, 0.0, 400)
    owner = rng.integers(0, shards, size=n)  # scattered nodes: many cross-shard edges
    a, b, t, e = block.node_a, block.node_b, block.t, block.edge
    level = _levels_by_time(t, a, b, n)
    cross = {float(t[k]) for k in range(len(t)) if b[k] >= 0 and owner[a[k]] != owner[b[k]]}
    event = {float(t[k]): (int(a[k]), int(b[k]), int(e[k])) for k in range(len(t))}
    assert cross, "the test needs cross-shard gossip"

    bp = plan_block(schedule_levels(block, n), owner, shards)
    assert bp.n_cross == len(cross)
    seen: set[tuple[int, int]] = set()
    for c in bp.calls:
        assert all(i in seen for i in c.inputs)
        seen.add((c.shard, c.index))
    own_events: list[float] = []
    for s, p in enumerate(bp.plans):
        # the shard's cross levels, in order: those of the cross events it has an endpoint of
        sync = sorted({level[x] for x in cross if owner[event[x][0]] == s or owner[event[x][1]] == s})
        assert len(p["x_at"]) == len(sync) + 1 and len(p["seg_run"]) == len(sync) + 2
        ev_t = p["ev_t"].tolist()
        own_events += ev_t
        for x in ev_t:
            assert owner[event[x][0]] == s and x not in cross
        # runs: one level and one kind each, levels in order, compute before gossip
        keys = []
        for r in range(len(p["run_g"])):
            ts = ev_t[p["run_at"][r]:p["run_at"][r + 1]]
            assert ts and {level[x] for x in ts} == {level[ts[0]]}
            assert {event[x][1] >= 0 for x in ts} == {bool(p["run_g"][r])}
            keys.append((level[ts[0]], bool(p["run_g"][r])))
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        # call j runs the levels after cross level j - 1, up to cross level j
        bounds = [-1, *sync, np.inf]
        for j in range(len(sync) + 1):
            for r in range(p["seg_run"][j], p["seg_run"][j + 1]):
                assert bounds[j] < keys[r][0] <= bounds[j + 1]
        # cross endpoints of each cross level: first endpoints first, then second ones
        for c, lv in enumerate(sync):
            x0, x1 = p["x_at"][c], p["x_at"][c + 1]
            recs = list(zip(p["x_t"][x0:x1].tolist(), p["x_mine"][x0:x1].tolist(), p["x_other"][x0:x1].tolist(),
                            p["x_edge"][x0:x1].tolist()))
            want = {x for x in cross if level[x] == lv and s in (owner[event[x][0]], owner[event[x][1]])}
            assert {r[0] for r in recs} == want and len(recs) == len(want)
            k0 = p["x_first"][c]
            for i, (x, mine, other, edge) in enumerate(recs):
                ea, eb, ee = event[x]
                assert (mine, other, edge) == ((ea, eb, ee) if i < k0 else (eb, ea, ee))
    assert sorted(own_events) == sorted(set(event) - cross)

    # each endpoint reads its peer's message: row x_pidx of the concatenated outputs of its inputs
    for c in bp.calls:
        if c.index == 0:
            assert not c.inputs
            continue
        p = bp.plans[c.shard]
        got_nodes, got_t = [], []
        for q, i in c.inputs:
            pq = bp.plans[q]
            got_nodes += pq["x_mine"][pq["x_at"][i]:pq["x_at"][i + 1]].tolist()
            got_t += pq["x_t"][pq["x_at"][i]:pq["x_at"][i + 1]].tolist()
        x0, x1 = p["x_at"][c.index - 1], p["x_at"][c.index]
        for r in range(x0, x1):
            k = p["x_pidx"][r]
            assert (got_nodes[k], got_t[k]) == (p["x_other"][r], p["x_t"][r])


@pytest.mark.parametrize("shards", [2, 3])
def test_inner_rows_taken_before_the_halo_leave_the_product_bit_for_bit(shards: int) -> None:
    rng = np.random.default_rng(5)
    n, p = 60, 7
    g = nx.random_geometric_graph(n, 0.25, seed=4)
    W = nx.to_scipy_sparse_array(g, format="csr", dtype=float) * rng.uniform(0.1, 1.0)
    W = sp.csr_matrix(W + sp.diags(rng.uniform(0.5, 1.5, n)))
    X = rng.standard_normal((n, p))
    parts = graph_shards(np.array(g.edges()), n, shards)  # regions of the graph: most rows are inner
    plans = [halo_plan(W, parts, s) for s in range(shards)]
    for s, plan in enumerate(plans):
        own = parts[s]
        received = {j: X[parts[j]][plans[j].send[s]] for j in plan.recv}
        assert isinstance(plan, SparseHaloPlan)
        assert len(plan.inner) and len(plan.outer) and len(plan.inner) + len(plan.outer) == len(own)
        whole = plan.product(X[own], received)
        split = plan.product(X[own], received, plan.inner_product(X[own]))
        assert np.array_equal(split, whole)
        assert np.array_equal(whole, (W @ X)[own])  # each row summed in the operator's order
        # the inner rows touch only this shard's nodes
        assert set(W[own[plan.inner]].indices.tolist()) <= set(own.tolist())


class _GossipCountingSteps(GossipSGD):
    """Gossip SGD whose ``on_gossip`` also counts a local step and one message per row."""

    def on_gossip(self, state, ctx, nodes, t, own, peer) -> None:  # noqa: ANN001
        super().on_gossip(state, ctx, nodes, t, own, peer)
        ctx.oracle.local_step(nodes)
        ctx.channel.send(nodes, 1)


def test_counts_made_inside_on_gossip_stay_with_the_nodes_that_made_them() -> None:
    n = 12
    top = Topology.from_networkx("rgg", nx.random_geometric_graph(n, 0.5, seed=3))
    prob = random_quadratic(n, 3, mu=1.0, L=5.0, seed=1)

    def spec() -> RunSpec:
        return RunSpec("count", prob, top, _GossipCountingSteps(lr=0.05), 2, StopCriteria(time=3.0))

    ref = make_engine("local").run(spec())
    got = make_engine("sharded", num_shards=3).run(spec())
    assert ref.status == got.status == "ok", (ref.message, got.message)
    assert_same_rows(ref.rows, got.rows)
    for name in ("local_steps", "messages_sent", "floats_sent"):
        np.testing.assert_array_equal(got.meter.per_node()[name], ref.meter.per_node()[name])
    assert got.meter.communications == ref.meter.communications
