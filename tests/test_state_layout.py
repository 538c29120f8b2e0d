"""Declared state layout and explicit per-run state: every algorithm says where each state key
lives, the driver checks it at start, and nothing an algorithm precomputes is hidden."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import layout_algorithms as la
import networkx as nx
import numpy as np
import pytest
from equivalence import generic_params

import fedopt
import fedopt.algorithms
from fedopt.algorithms import Layout, algorithm_class, available_algorithms, make_algorithm
from fedopt.algorithms.base import Context, EventAlgorithm, LayoutError, Prepared
from fedopt.algorithms.decentralized.mixing import MixingPrepared
from fedopt.engines.base import RunSpec, Simulation, StopCriteria, make_engine
from fedopt.problems.empirical import least_squares
from fedopt.problems.quadratic import random_quadratic
from fedopt.topology.graph import Topology
from fedopt.topology.mixing import mixing_matrix
from fedopt.topology.time_varying import TimeVaryingTopology

N, D = 10, 3
TOP = Topology.from_networkx("rgg", nx.random_geometric_graph(N, 0.6, seed=2))
PROB = random_quadratic(N, D, mu=1.0, L=5.0, seed=1)
#: Problems with data (per-sample gradients) for the algorithms that need them.
DATA = least_squares(N, {"source": "synthetic", "task": "regression", "n_samples": 12 * N, "d": D}, reg=0.1, seed=1)
OTHER_DATA = least_squares(N, {"source": "synthetic", "task": "regression", "n_samples": 9 * N, "d": D}, reg=0.2,
                           seed=7)
ALGORITHMS = Path(fedopt.algorithms.__file__).parent
PACKAGE = Path(fedopt.__file__).parent


def _spec(algo, rounds: int = 3, problem=PROB) -> RunSpec:
    stop = StopCriteria(time=2.0) if isinstance(algo, EventAlgorithm) else StopCriteria(rounds=rounds)
    return RunSpec("s", problem, TOP, algo, 0, stop, record_every=1.0)


# ---- every registered algorithm declares its layout -----------------------------------------------
@pytest.mark.parametrize("name", available_algorithms())
def test_every_algorithm_declares_the_layout_of_its_state(name: str) -> None:
    algo = make_algorithm(name)
    sim = Simulation(_spec(algo, problem=DATA if algo.needs_samples else PROB))
    sim.start()
    assert set(sim.layout) == set(sim.state) and sim.state
    assert all(isinstance(v, Layout) and v in algo.allowed_layouts for v in sim.layout.values())
    for key, kind in sim.layout.items():
        if kind in (Layout.NODE, Layout.CLIENT):
            assert sim.state[key].shape[0] == N, key
    # one precomputed object per graph of the run, of the algorithm's own frozen type
    assert sim.prepared is not None and len(sim.prepared.prepared) == 1
    assert sim.ctx.prepared is sim.prepared.prepared[0] and isinstance(sim.ctx.prepared, Prepared)


def test_declared_layouts() -> None:
    assert make_algorithm("fedavg").layout == {"server": Layout.SERVER}
    assert make_algorithm("dadao").layout == {"s": Layout.NODE, "T": Layout.NODE}
    assert set(make_algorithm("adom_plus").layout.values()) == {Layout.NODE}


# ---- a wrong or missing declaration is a clear error at start -----------------------------------------
BROKEN = [
    (la.GossipNoLayout, "algorithm 'gossip_sgd': state key 'x' is not declared in state_layout; declared: (nothing)"),
    (la.FedAvgExtraKey, "algorithm 'fedavg': state key 'c' is not declared in state_layout; declared: server"),
    (la.FedAvgMissingKey, "algorithm 'fedavg': state_layout declares 'c', which init does not return; "
                          "state keys: server"),
    (la.FedAvgShortRows, "algorithm 'fedavg': state key 'c' is declared client (an array with first axis n = 10) "
                         "but is shape (9, 3)"),
    (la.FedAvgNodeKey, "algorithm 'fedavg': state key 'server' is declared node, which a federated algorithm "
                       "cannot hold; allowed: client, server"),
    (la.FedAvgNotALayout, "algorithm 'fedavg': state_layout gives 'server' for state key 'server'; "
                          "allowed: client, server"),
    (la.GossipEdgeRows, f"algorithm 'gossip_sgd': state key 'w' is declared edge (an array with first axis "
                        f"m = {TOP.m}) but is shape ({TOP.m + 1},)"),
]


@pytest.mark.parametrize(("cls", "message"), BROKEN, ids=[c.__name__ for c, _ in BROKEN])
def test_a_wrong_declaration_is_a_clear_error_at_start(cls: type, message: str) -> None:
    sim = Simulation(_spec(cls()))
    with pytest.raises(ValueError) as info:
        sim.start()
    assert str(info.value) == message
    res = make_engine("local").run(_spec(cls()))
    assert res.status == "error" and res.rows == []
    assert res.message.splitlines()[0] == f"ValueError: {message}"


# ---- the split holds on the local engine too ---------------------------------------------------------------
def test_configure_reading_a_client_key_names_the_declaration() -> None:
    res = make_engine("local").run(_spec(la.ConfigureReadsClients()))
    assert res.status == "error"
    assert res.message.startswith("LayoutError: algorithm 'fedavg': configure reads state key 'c', declared client; "
                                  "configure sees the server keys only")


def test_client_update_cannot_change_the_server_arrays() -> None:
    res = make_engine("local").run(_spec(la.ClientWritesServer()))
    assert res.status == "error" and "read-only" in res.message
    res = make_engine("local").run(_spec(la.ClientReplacesServer()))
    assert res.status == "error"
    assert "algorithm 'fedavg': client_update replaces state key 'server', declared server" in res.message


def test_aggregate_returns_exactly_the_server_keys() -> None:
    res = make_engine("local").run(_spec(la.AggregateReturnsMore()))
    assert res.status == "error"
    assert "aggregate returns state keys ['extra_key', 'server']; it returns exactly the server keys" in res.message


def test_event_handlers_only_read_the_server_keys() -> None:
    ok = make_engine("local").run(_spec(la.ScaledGossip()))
    assert ok.status == "ok", ok.message
    res = make_engine("local").run(_spec(la.GossipWritesServer()))
    assert res.status == "error" and "read-only" in res.message
    res = make_engine("local").run(_spec(la.GossipReplacesServer()))
    assert res.status == "error"
    assert ("algorithm 'gossip_sgd': the node handlers replace state key 'scale', declared server: "
            "they only read the server keys") in res.message


def test_client_rows_and_a_server_table_with_n_rows_on_the_local_engine() -> None:
    """The per-client rows change only for the sampled clients; the server's [n] table is the
    server's (configure changes it in place, the clients read it)."""
    res = make_engine("local").run(_spec(la.ScaffoldLite(clients_per_round=4), rounds=3))
    assert res.status == "ok", res.message
    seen, c = res.final_state["seen"], res.final_state["c"]
    assert seen.sum() == 12 and seen.max() <= 3
    assert (np.abs(c).sum(axis=1) > 0).tolist() == (seen > 0).tolist()


# ---- no hidden per-run state ------------------------------------------------------------------------------
def _ids_and_extras(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "id":
            hits.append(f"{path.name}:{node.lineno} id(...)")
        if isinstance(node, ast.Attribute) and node.attr == "extra":
            hits.append(f"{path.name}:{node.lineno} .extra")
    return hits


def test_no_algorithm_keys_by_id_or_uses_a_free_form_context() -> None:
    modules = list(ALGORITHMS.rglob("*.py"))
    assert len(modules) >= 10  # the search found the algorithms
    hits = [h for p in modules for h in _ids_and_extras(p)]
    assert hits == [], hits
    assert "extra" not in {f.name for f in fields(Context)}


def test_no_message_tells_users_to_set_a_context_extra() -> None:
    hits = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
            if "ctx.extra" in p.read_text(encoding="utf-8") or "time_varying']" in p.read_text(encoding="utf-8")]
    assert hits == []


@pytest.mark.parametrize("name", available_algorithms())
def test_an_algorithm_object_keeps_no_run_state(name: str) -> None:
    """After a run the algorithm object holds its parameters only, and a second run of the same
    object on another problem is that problem's run."""
    algo = make_algorithm(name, **generic_params(name))
    first = make_engine("local").run(_spec(algo, problem=DATA if algo.needs_samples else PROB))
    assert first.status == "ok", first.message
    assert set(vars(algo)) == {"params"}, sorted(vars(algo))
    other = OTHER_DATA if algo.needs_samples else random_quadratic(N, D, mu=2.0, L=9.0, seed=7)
    again = make_engine("local").run(_spec(algo, problem=other))
    fresh = make_engine("local").run(_spec(make_algorithm(name, **generic_params(name)), problem=other))
    assert again.status == fresh.status == "ok"
    assert [r["dist_opt"] for r in again.rows] == [r["dist_opt"] for r in fresh.rows]


def test_the_sequence_is_a_typed_field_and_prepared_follows_the_graph_in_force() -> None:
    complete = Topology.from_networkx("complete", nx.complete_graph(N))
    seq = TimeVaryingTopology([TOP, complete], period=2.0)
    sim = Simulation(RunSpec("tv", PROB, seq, make_algorithm("dgd", lr=0.05), 0, StopCriteria(rounds=5), 1.0))
    assert sim.ctx.sequence is seq
    assert Simulation(_spec(make_algorithm("dgd"))).ctx.sequence is None
    sim.start()
    assert sim.prepared is not None and sim.prepared.graphs == (TOP, complete)
    seen = []
    for _ in range(5):
        np.testing.assert_array_equal(sim.ctx.prepared_as(MixingPrepared).W, mixing_matrix(sim.ctx.topology))
        seen.append(sim.ctx.topology.name)
        sim.step_checkpoint()
    assert seen == ["rgg", "rgg", "complete", "complete", "rgg"]


def test_a_context_without_the_algorithms_prepared_object_is_a_clear_error() -> None:
    sim = Simulation(_spec(make_algorithm("dgd")))
    sim.start()
    sim.ctx.prepared = Prepared()
    with pytest.raises(TypeError, match="not the MixingPrepared its algorithm needs"):
        sim.apply_rounds(1)


def test_layout_error_is_a_key_error_with_a_plain_message() -> None:
    err = LayoutError("algorithm 'x': configure reads state key 'c'")
    assert isinstance(err, KeyError) and str(err) == "algorithm 'x': configure reads state key 'c'"
