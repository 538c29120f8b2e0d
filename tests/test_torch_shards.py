"""Torch model problems in shards: a shard's view holds only its nodes' data, on the device
its engine placed it on, and answers every oracle with the full problem's numbers bit for
bit; the local, sharded and ray engines give the same table on the MLP problem."""

from __future__ import annotations

import pickle

import networkx as nx
import numpy as np
import pytest
import ray  # a dependency: a missing ray is a failure, not a skip
import torch
from equivalence import assert_same_rows, equivalence_spec

from fedopt.core.rng import NodeStreams
from fedopt.engines.base import make_engine
from fedopt.engines.ray import engine as ray_engine
from fedopt.engines.sharded.inprocess import InProcessTransport
from fedopt.engines.sharded.simulation import ShardedSimulation
from fedopt.problems import problem_factory
from fedopt.problems.base import ProblemParamError, ShardView
from fedopt.problems.torch_model import TorchModelProblem, TorchShardView
from fedopt.topology.graph import Topology

N = 10
KW = {"n": N, "data": {"source": "teacher", "n_samples": 83, "d": 3}, "hidden": 4, "seed": 5,
      "partition": {"kind": "dirichlet", "alpha": 0.7}}  # unequal sample counts: padding in play


def _problem(device: str = "cpu", dtype: str = "auto") -> TorchModelProblem:
    return problem_factory("mlp_regression")(**KW, device=device, dtype=dtype)


PROB = _problem()
#: The shard's own nodes: sorted, not consecutive (as a graph partition gives them).
OWN = np.array([0, 2, 3, 4, 7, 9])
PEERS = np.setdiff1d(np.arange(N), OWN)
NODE_LISTS = {
    "own, a run": OWN[1:4],
    "own, all": OWN,
    "own, one": OWN[3:4],
    "own, not a run": OWN[[0, 2, 5]],
    "own, reversed": OWN[::-1].copy(),
    "own and peer": np.array([OWN[1], PEERS[0], OWN[2]]),
    "peers": PEERS,
    "peers, a run": np.array([5, 6]),
}


def _iterates(problem: TorchModelProblem, k: int, seed: int = 0) -> np.ndarray:
    x0 = problem.initial_parameters()
    return x0 + 0.3 * np.random.default_rng(seed).standard_normal((k, problem.d))


@pytest.mark.parametrize("which", list(NODE_LISTS))
def test_view_oracles_equal_the_full_problem_bit_for_bit(which: str) -> None:
    view = PROB.shard_view(OWN)
    assert isinstance(view, TorchShardView) and isinstance(view, ShardView)
    nodes = NODE_LISTS[which]
    X = _iterates(PROB, len(nodes))
    assert np.array_equal(view.value(X, nodes), PROB.value(X, nodes))
    assert np.array_equal(view.grad(X, nodes), PROB.grad(X, nodes))
    idx = np.random.default_rng(6).integers(0, PROB.m[nodes][:, None], size=(len(nodes), 3))
    assert np.array_equal(view.sample_grads(X, nodes, idx), PROB.sample_grads(X, nodes, idx))
    a, b = NodeStreams(9, N)["sampling"], NodeStreams(9, N)["sampling"]
    for _ in range(2):  # the per-node streams advance alike
        assert np.array_equal(view.stochastic_grad(X, nodes, a, 4), PROB.stochastic_grad(X, nodes, b, 4))
    assert np.array_equal(a.counters, b.counters)
    with pytest.raises(IndexError, match="outside its node's 0..m_i-1"):
        view.sample_grads(X, nodes, PROB.m[nodes][:, None])


def test_a_shard_holds_only_its_nodes_data_in_its_own_memory() -> None:
    view = PROB.shard_view(OWN)
    full = (PROB._inputs, PROB._targets, PROB._w)
    local = (view._inputs, view._targets, view._w)
    for mine, whole in zip(local, full):
        assert mine.shape == (len(OWN), *whole.shape[1:]) and mine.is_contiguous()
        assert torch.equal(mine, whole[torch.as_tensor(OWN)])
        assert mine.untyped_storage().data_ptr() != whole.untyped_storage().data_ptr()
    per_node = sum(t.element_size() * t[0].numel() for t in full)
    assert view.data_bytes() == len(OWN) * per_node < N * per_node
    run = np.arange(4, 7)  # consecutive global ids: still a copy, not a view of the full tensors
    run_view = PROB.shard_view(run)
    assert run_view._inputs.untyped_storage().data_ptr() != PROB._inputs.untyped_storage().data_ptr()
    assert run_view.data_bytes() == 3 * per_node
    assert view.module is not PROB.module
    # a run of own nodes (a whole-shard block) reads the shard's copies without a copy
    for nodes in (OWN, OWN[1:4]):
        got = view._rows(nodes)
        for t, mine in zip(got, local):
            assert t.untyped_storage().data_ptr() == mine.untyped_storage().data_ptr()


def test_global_quantities_are_the_full_problems() -> None:
    view = PROB.shard_view(OWN)
    assert (view.n, view.d, view.L, view.mu, view.x_star, view.f_star) == (PROB.n, PROB.d, None, None, None, None)
    np.testing.assert_array_equal(view.n_samples(), PROB.n_samples())
    x = PROB.initial_parameters()
    assert view.global_value(x) == PROB.global_value(x)
    assert view.describe() == PROB.describe()
    again = view.shard_view(PEERS)
    assert isinstance(again, TorchShardView) and again.full is PROB and np.array_equal(again.nodes, PEERS)


def test_placement_on_the_cpu_and_mismatches_are_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # (also on a GPU machine)
    auto = _problem("auto")  # no GPU: auto is the CPU, float64
    for device in (None, "cpu"):
        view = auto.shard_view(OWN, device=device)
        assert view.device == torch.device("cpu") and view.dtype == torch.float64
        assert view._inputs.device.type == "cpu" and next(view.module.parameters()).device.type == "cpu"
    f32 = _problem("cpu", "float32").shard_view(OWN, device="cpu")
    assert f32.dtype == torch.float32 and f32._inputs.dtype == torch.float32
    with pytest.raises(ProblemParamError, match=r"device 'cpu' asked for, but the engine placed this shard on "
                                                r"'cuda'; set the problem's device to auto .* no GPU "
                                                r"\(num_gpus_per_actor: 0\)") as info:
        PROB.shard_view(OWN, device="cuda")
    assert info.value.key == "device"
    with pytest.raises(ProblemParamError, match=r"device 'cuda' asked for but torch .* sees no CUDA device"):
        auto.shard_view(OWN, device="cuda")  # auto follows the placement: never a quiet CPU run


def test_the_worker_builds_its_shard_on_the_device_it_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's device for an actor reaches the problem: ``cpu`` builds the shard on the CPU; ``cuda``
    asks torch for CUDA (absent: the problem's error, not a quiet CPU run)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # (also on a GPU machine)
    top = Topology.from_networkx("cycle", nx.cycle_graph(N))
    spec = equivalence_spec("dgd", 0, _problem("auto"), top, lr=0.1)
    sim = ShardedSimulation(spec, InProcessTransport(2))
    sim.start()
    assert sim.prepared is not None
    for worker, nodes in zip(sim.transport.workers, sim.shards):  # in-process: not placed, the problem's device
        assert isinstance(worker.ctx.problem, TorchShardView) and np.array_equal(worker.ctx.problem.nodes, nodes)
        assert worker.info()["device"] == "cpu" and len(worker.ctx.problem._inputs) == len(nodes)
    monkeypatch.setattr(ray_engine, "actor_device", lambda: "cpu")
    w = ray_engine.RayShardWorker()
    w.setup(spec, sim.prepared.prepared, 1, sim.shards[1])
    assert w.ctx.problem.device == torch.device("cpu") and w.info()["device"] == "cpu"
    monkeypatch.setattr(ray_engine, "actor_device", lambda: "cuda")
    with pytest.raises(ProblemParamError, match="device 'cuda' asked for but torch"):
        ray_engine.RayShardWorker().setup(spec, sim.prepared.prepared, 1, sim.shards[1])


def test_a_gpu_problem_sent_to_a_process_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pickled problem carries its data in host memory; a copy of a CUDA problem that lands
    where there is no CUDA cannot compute itself (a clear error) but serves shard views there."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # (also on a GPU machine)
    copy = pickle.loads(pickle.dumps(PROB))
    assert copy._inputs.device.type == "cpu"
    state = {**_problem("auto").__getstate__(), "device": torch.device("cuda", 0), "_placed": False}
    sent = TorchModelProblem.__new__(TorchModelProblem)
    sent.__setstate__(state)  # what a driver on a GPU sends (device: auto, resolved there to cuda:0)
    X = _iterates(PROB, len(OWN))
    with pytest.raises(RuntimeError, match=r"copy of a problem on cuda:0 was sent to a process where it cannot "
                                           r"compute .*shard_view\(nodes, device=\.\.\.\)"):
        sent.grad(X, OWN)
    view = sent.shard_view(OWN, device="cpu")
    assert np.array_equal(view.grad(X, OWN), PROB.grad(X, OWN))
    assert np.array_equal(view.value(X[:4], PEERS), PROB.value(X[:4], PEERS))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (the GPU checks run on a GPU machine)")
def test_shards_on_cuda_match_the_cpu() -> None:
    gpu, cpu = _problem("auto", "float64"), PROB  # auto: cuda here
    assert gpu.device.type == "cuda"
    X = _iterates(cpu, len(OWN))
    on_gpu = gpu.shard_view(OWN, device="cuda")
    assert on_gpu._inputs.is_cuda and len(on_gpu._inputs) == len(OWN)
    np.testing.assert_allclose(on_gpu.grad(X, OWN), cpu.grad(X, OWN), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(on_gpu.value(X[:4], PEERS), cpu.value(X[:4], PEERS), rtol=1e-10, atol=1e-12)
    assert gpu.shard_view(OWN, device="cuda").dtype == torch.float64
    assert _problem("auto").shard_view(OWN, device="cuda").dtype == torch.float32  # dtype auto follows the device
    on_cpu = gpu.shard_view(OWN, device="cpu")  # auto follows a CPU placement: data moved, CPU numbers
    assert np.array_equal(on_cpu.grad(X, OWN), cpu.grad(X, OWN))
    sent = pickle.loads(pickle.dumps(gpu))
    assert sent._inputs.device.type == "cpu"  # host memory until it computes itself
    np.testing.assert_allclose(sent.grad(X, OWN), gpu.grad(X, OWN), rtol=1e-12, atol=1e-14)
    assert sent._inputs.is_cuda


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (the GPU checks run on a GPU machine)")
def test_a_ray_actor_given_a_gpu_builds_its_shard_there() -> None:
    top = Topology.from_networkx("cycle", nx.cycle_graph(N))
    spec = equivalence_spec("dgd", 0, _problem("auto", "float64"), top, lr=0.1)
    ref = make_engine("local").run(spec)
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        engine = make_engine("ray", num_actors=2, num_cpus_per_actor=1, num_gpus_per_actor=0.5)
        got = engine.run(spec)
        assert got.status == "ok", got.message
        infos = ray.get([a.info.remote() for a in engine.actors])
        assert all(i["device"].startswith("cuda") for i in infos), infos
        assert_same_rows(ref.rows, got.rows)
        engine.close()
    finally:
        ray.shutdown()


# ---- engines --------------------------------------------------------------------------------

ALGOS = {
    "dgd": {"lr": 0.1},
    "gradient_tracking": {"lr": 0.05},
    "fedavg": {"lr": 0.1, "local_steps": 3, "batch_size": 4},
    "gossip_sgd": {"lr": 0.1, "batch_size": 4},
}
TOP = Topology.from_networkx("rgg", nx.random_geometric_graph(N, 0.6, seed=3))


@pytest.fixture(scope="module")
def ray_engine_2() -> object:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    engine = make_engine("ray", num_actors=2, num_cpus_per_actor=1)
    yield engine
    engine.close()
    ray.shutdown()


@pytest.mark.parametrize("name", list(ALGOS))
def test_local_sharded_and_ray_give_the_same_table(ray_engine_2, name: str) -> None:
    assert nx.is_connected(nx.Graph(TOP.edges.tolist()))
    spec = equivalence_spec(name, 4, PROB, TOP, **ALGOS[name])
    ref = make_engine("local").run(spec)
    assert ref.status == "ok", ref.message
    for engine in (make_engine("sharded", num_shards=2), ray_engine_2):
        got = engine.run(spec)
        assert got.status == "ok", got.message
        assert "ran on the driver" not in got.message and "random streams" not in got.message, got.message
        assert_same_rows(ref.rows, got.rows)
        for k, v in ref.final_state.items():
            np.testing.assert_allclose(got.final_state[k], v, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.meter.per_node()["grad_evals"], ref.meter.per_node()["grad_evals"])
    infos = ray.get([a.info.remote() for a in ray_engine_2.actors])
    assert [i["device"] for i in infos] == ["cpu", "cpu"] and sum(i["nodes"] for i in infos) == N


def test_gradients_are_not_assembled_from_zero_filled_slices() -> None:
    """Gradients are taken with respect to the parameter dict, not through slices of the flat
    vector (whose backward fills a zero ``[d]`` tensor per parameter tensor and node)."""
    from torch.profiler import ProfilerActivity, profile

    X = _iterates(PROB, N)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        PROB.grad(X, np.arange(N))
        PROB.sample_grads(X[:2], np.arange(2), np.zeros((2, 3), dtype=np.int64))
        PROB.stochastic_grad(X, np.arange(N), NodeStreams(1, N)["sampling"], 3)
    ops = {e.key for e in prof.key_averages()}
    assert "aten::bmm" in ops or "aten::mm" in ops or "aten::addmm" in ops  # (the profiler saw the kernels)
    assert "aten::slice_backward" not in ops
