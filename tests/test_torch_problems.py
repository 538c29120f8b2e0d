"""Torch model problems: the vmapped oracles against a plain loop over ``nn.Module`` copies,
finite differences, the flat-parameter round trip, device handling, and end-to-end runs."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_experiment_config import write_config
from torch import nn

from fedopt.algorithms import make_algorithm
from fedopt.cli import main
from fedopt.core.rng import NodeStreams
from fedopt.engines import make_engine
from fedopt.engines.base import RunSpec, StopCriteria
from fedopt.experiment.config import ConfigError, parse_config
from fedopt.problems import problem_factory
from fedopt.problems.base import ProblemParamError
from fedopt.problems.torch_model import TorchModelProblem
from fedopt.topology.generators import make_topology

N, M_MAX, D_IN, D_OUT = 4, 7, 3, 2
SIZES = np.array([7, 3, 5, 1])


def _arch() -> nn.Module:
    return nn.Sequential(nn.Linear(D_IN, 5), nn.Tanh(), nn.Linear(5, D_OUT))


@pytest.fixture(scope="module")
def setup() -> tuple[TorchModelProblem, np.ndarray, np.ndarray, np.ndarray]:
    g = np.random.default_rng(3)
    A = g.standard_normal((N, M_MAX, D_IN))
    Y = g.standard_normal((N, M_MAX, D_OUT))
    prob = TorchModelProblem(_arch, A, Y, SIZES, device="cpu", dtype="float64", init_seed=1)
    X = g.standard_normal((N, prob.d)) * 0.7
    return prob, A, Y, X


def _copy_at(x: np.ndarray) -> nn.Module:
    """A fresh module of the architecture holding the flat parameters ``x``."""
    mod = _arch().double()
    nn.utils.vector_to_parameters(torch.tensor(x, dtype=torch.float64), mod.parameters())
    return mod


def _loop_loss_grad(x: np.ndarray, a: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean over the rows of ``a`` of ``‖model(a_j) − y_j‖²`` and its gradient, by ``.backward()``."""
    mod = _copy_at(x)
    pred = mod(torch.tensor(a, dtype=torch.float64))
    loss = ((pred - torch.tensor(y, dtype=torch.float64)) ** 2).sum(dim=1).mean()
    loss.backward()
    g = torch.cat([p.grad.reshape(-1) for p in mod.parameters()])
    return float(loss.detach()), g.numpy()


def test_value_and_grad_match_a_loop_over_module_copies(setup) -> None:
    prob, A, Y, X = setup
    nodes = np.array([2, 0, 3])  # not a run of consecutive nodes: the gathered path
    for ids in (nodes, np.arange(N)):
        vals, grads = prob.value(X[ids], ids), prob.grad(X[ids], ids)
        for k, i in enumerate(ids):
            v, g = _loop_loss_grad(X[i], A[i, : SIZES[i]], Y[i, : SIZES[i]])
            assert vals[k] == pytest.approx(v, abs=1e-10, rel=0)
            np.testing.assert_allclose(grads[k], g, rtol=0, atol=1e-10)


def test_sample_grads_match_a_loop(setup) -> None:
    prob, A, Y, X = setup
    nodes = np.array([1, 2])
    idx = np.array([[2, 0, 2, 1], [4, 4, 0, 3]])
    got = prob.sample_grads(X[nodes], nodes, idx)
    assert got.shape == (2, 4, prob.d)
    for k, i in enumerate(nodes):
        for b, j in enumerate(idx[k]):
            _, g = _loop_loss_grad(X[i], A[i, j : j + 1], Y[i, j : j + 1])
            np.testing.assert_allclose(got[k, b], g, rtol=0, atol=1e-10)
    with pytest.raises(IndexError, match="outside its node's 0..m_i-1"):
        prob.sample_grads(X[nodes], nodes, np.array([[0], [5]]))  # node 2 holds 5 samples


def test_stochastic_grad_matches_a_loop_with_the_same_indices(setup) -> None:
    prob, A, Y, X = setup
    nodes, batch = np.array([3, 0, 2]), 6
    got = prob.stochastic_grad(X[nodes], nodes, NodeStreams(11, N)["sampling"], batch)
    idx = NodeStreams(11, N)["sampling"].integers(nodes, SIZES[nodes], batch)  # the same draws
    assert (idx[0] == 0).all()  # node 3 holds one sample
    for k, i in enumerate(nodes):
        _, g = _loop_loss_grad(X[i], A[i, idx[k]], Y[i, idx[k]])
        np.testing.assert_allclose(got[k], g, rtol=0, atol=1e-10)


def test_grad_matches_finite_differences(setup) -> None:
    prob, _, _, X = setup
    i, h = np.array([0]), 1e-6
    g = prob.grad(X[i], i)[0]
    E = np.eye(prob.d) * h
    fd = (prob.value(X[0] + E, np.zeros(prob.d, dtype=np.int64))
          - prob.value(X[0] - E, np.zeros(prob.d, dtype=np.int64))) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=0, atol=1e-7)


def test_flat_parameter_round_trip_is_exact(setup) -> None:
    prob, _, _, X = setup
    x = torch.tensor(X[1])
    params = prob.unflatten(x)
    assert list(params) == [k for k, _ in _arch().named_parameters()]
    assert torch.equal(prob.flatten(params), x)
    mod = _copy_at(X[1])  # the order of vector_to_parameters / parameters_to_vector
    for k, p in mod.named_parameters():
        assert torch.equal(params[k], p.detach())
    init = prob.initial_parameters()
    assert np.array_equal(prob.flatten(prob.unflatten(torch.tensor(init))).numpy(), init)


def test_mlp_regression_builds_and_reports() -> None:
    make = problem_factory("mlp_regression")
    p = make(n=5, data={"source": "teacher", "n_samples": 53, "d": 4}, hidden=6, device="cpu", seed=2)
    assert p.n == 5 and p.d == 4 * 6 + 6 + 6 + 1 and p.L is None and p.mu is None
    assert p.x_star is None and p.f_star is None and p.n_samples().sum() == 53
    desc = p.describe()
    assert desc["dtype"] == "float64" and desc["device"] == "cpu" and "nonconvex" in desc["x_star_reason"]
    q = make(n=3, data={"source": "diabetes"}, hidden=4, partition={"kind": "dirichlet", "alpha": 1.0}, seed=0)
    assert q.d == 10 * 4 + 4 + 4 + 1 and q.n_samples().sum() == 442
    again = make(n=5, data={"source": "teacher", "n_samples": 53, "d": 4}, hidden=6, seed=2)
    assert np.array_equal(p.initial_parameters(), again.initial_parameters())


@pytest.mark.parametrize(
    ("params", "key", "message"),
    [
        ({"device": "tpu"}, "device", "device must be one of auto, cpu, cuda, cuda:K, got 'tpu'"),
        ({"dtype": "float16"}, "dtype", "dtype must be one of auto, float32, float64"),
        ({"data": {"source": "mnist"}}, "data.source", "data.source must be one of teacher, diabetes"),
        ({"data": {"source": "teacher", "depth": 2}}, "data.depth", "allowed: source, n_samples, d, hidden, noise"),
        ({"data": {"source": "teacher", "noise": -1.0}}, "data.noise", "must be a finite number >= 0"),
        ({"hidden": 0}, "hidden", "hidden must be a positive integer"),
        ({"partition": {"kind": "dirichlet", "beta": 1}}, "partition.beta", "unknown key 'beta'"),
    ],
)
def test_bad_parameters_name_their_key(params, key, message) -> None:
    with pytest.raises(ProblemParamError, match=message) as info:
        problem_factory("mlp_regression")(n=3, **params)
    assert info.value.key == key


def test_cuda_without_a_device_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:1"):
        with pytest.raises(ProblemParamError, match=rf"device '{device}' asked for but torch .* sees no CUDA device "
                                                    r".*use device: cpu or auto") as info:
            problem_factory("mlp_regression")(n=3, device=device)
        assert info.value.key == "device"
    p = problem_factory("mlp_regression")(n=3, device="auto", data={"source": "teacher", "n_samples": 9})
    assert p.device.type == "cpu"  # auto never asks for what is absent
    cfg = {"name": "t", "problem": {"name": "mlp_regression", "n": 3, "device": "cuda"}, "topology": ["cycle"],
           "algorithms": [{"name": "dgd"}], "stop": {"rounds": 2}}
    with pytest.raises(ConfigError, match=r"^config: problem\.device: mlp_regression: device 'cuda' asked for"):
        parse_config(cfg)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_oracles_match_the_cpu() -> None:
    make = problem_factory("mlp_regression")
    kw = {"n": 6, "data": {"source": "teacher", "n_samples": 60}, "hidden": 8, "seed": 4}
    cpu, gpu = make(**kw, device="cpu"), make(**kw, device="cuda", dtype="float64")
    assert gpu.device.type == "cuda" and make(**kw, device="cuda").dtype == torch.float32
    X = np.tile(cpu.initial_parameters(), (6, 1)) + np.random.default_rng(0).standard_normal((6, cpu.d)) * 0.1
    nodes = np.array([5, 1, 2, 0, 3, 4])
    np.testing.assert_allclose(gpu.value(X, nodes), cpu.value(X, nodes), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gpu.grad(X, nodes), cpu.grad(X, nodes), rtol=1e-9, atol=1e-11)
    idx = np.zeros((6, 3), dtype=np.int64)
    np.testing.assert_allclose(gpu.sample_grads(X, nodes, idx), cpu.sample_grads(X, nodes, idx), rtol=1e-9, atol=1e-11)


ALGOS = [
    {"name": "dgd", "params": {"lr": 0.1}},
    {"name": "fedavg", "params": {"lr": 0.1, "local_steps": 3, "batch_size": 4}},
    {"name": "gossip_sgd", "params": {"lr": 0.1, "batch_size": 4}},
]
PROBLEM = {"name": "mlp_regression", "n": 6, "data": {"source": "teacher", "n_samples": 90, "d": 4},
           "hidden": 6, "device": "cpu", "seed": 0}


def test_a_config_runs_and_the_sharded_engine_gives_the_same_rows(tmp_path: Path) -> None:
    cfg = {"name": "mlp", "problem": PROBLEM, "topology": ["cycle"], "algorithms": ALGOS,
           "stop": {"time": 6.0, "rounds": 6}, "record": {"every": 2.0}}
    tables = {}
    for engine in ("local", {"name": "sharded", "num_shards": 2}):
        out = tmp_path / ("local" if engine == "local" else "sharded")
        path = write_config(tmp_path, {**cfg, "engine": engine}, f"{out.name}.yaml")
        assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 0
        tables[out.name] = pd.read_parquet(out / "results.parquet").drop(columns=["wall_s"])
    local = tables["local"]
    assert set(local["status"]) == {"ok"} and local["algorithm"].nunique() == 3
    assert np.isfinite(local["grad_norm_sq"]).all() and local["subopt"].isna().all() and local["dist_opt"].isna().all()
    pd.testing.assert_frame_equal(local, tables["sharded"], rtol=1e-9, atol=1e-12)


def test_a_pickled_problem_gives_the_same_oracles(setup) -> None:
    prob, _, _, X = setup
    copy = pickle.loads(pickle.dumps(prob))
    nodes = np.array([3, 1])
    assert np.array_equal(copy.grad(X[nodes], nodes), prob.grad(X[nodes], nodes))
    assert np.array_equal(copy.value(X, np.arange(N)), prob.value(X, np.arange(N)))


@pytest.mark.parametrize("algo", ALGOS, ids=[a["name"] for a in ALGOS])
def test_train_loss_is_finite_and_decreases(algo) -> None:
    params = {k: v for k, v in PROBLEM.items() if k != "name"}
    problem = problem_factory("mlp_regression")(**params)
    losses = [problem.global_value(problem.initial_parameters())]  # every algorithm starts at the module's init
    for rounds in (5, 30):
        spec = RunSpec(algo["name"], problem, make_topology("cycle", n=6), make_algorithm(algo["name"], **algo["params"]),
                       seed=0, stop=StopCriteria(time=float(rounds), rounds=rounds), record_every=float(rounds))
        result = make_engine("local").run(spec)
        assert result.status == "ok", result.message
        state = result.final_state
        X = np.atleast_2d(state["server"] if "server" in state else state["x"])  # FedAvg: the server model
        losses.append(problem.global_value(X.mean(axis=0)))
    assert all(math.isfinite(v) for v in losses)
    assert losses[0] > losses[1] > losses[2], losses


def test_grad_in_node_chunks_equals_one_block(setup) -> None:
    prob, X = setup[0], setup[3]
    nodes = np.arange(prob.n)
    whole = prob.grad(X, nodes)
    prob.grad_block = prob.d  # one node per chunk
    try:
        np.testing.assert_array_equal(prob.grad(X, nodes), whole)
        np.testing.assert_array_equal(prob.grad(X[::-1].copy(), nodes[::-1].copy()), whole[::-1])
    finally:
        del prob.grad_block


def _deep_arch() -> nn.Module:
    """Three Linear layers, one without a bias, two activations."""
    return nn.Sequential(nn.Linear(D_IN, 6), nn.Softplus(), nn.Linear(6, 4, bias=False), nn.ReLU(),
                         nn.Linear(4, D_OUT))


def _act_first_arch() -> nn.Module:
    """An activation before the first Linear layer (the data go through it, no gradient)."""
    return nn.Sequential(nn.Tanh(), nn.Linear(D_IN, 5), nn.GELU(), nn.Linear(5, 3))


@pytest.mark.parametrize(("arch", "loss"), [(_deep_arch, "mse"), (_act_first_arch, "cross_entropy")])
def test_batched_stack_gradients_match_a_module_loop(arch, loss: str) -> None:
    """Linear/activation stacks take the batched-matmul gradient path; full-batch and minibatch
    gradients equal ``backward()`` on per-node module copies to 1e-10 (float64), in one chunk
    and in chunks of one node."""
    g = np.random.default_rng(5)
    A = g.standard_normal((N, M_MAX, D_IN))
    if loss == "cross_entropy":
        Y = g.integers(0, 3, (N, M_MAX, 1)).astype(float)
    else:
        Y = g.standard_normal((N, M_MAX, D_OUT))
    prob = TorchModelProblem(arch, A, Y, SIZES, loss=loss, device="cpu", dtype="float64", init_seed=2)
    assert prob._kernels.stack_grad is not None
    X = g.standard_normal((N, prob.d)) * 0.5

    def loop(i: int, rows: np.ndarray) -> np.ndarray:
        mod = arch().double()
        nn.utils.vector_to_parameters(torch.tensor(X[i]), mod.parameters())
        pred = mod(torch.tensor(A[i, rows]))
        target = torch.tensor(Y[i, rows])
        if loss == "mse":
            val = ((pred - target) ** 2).sum(dim=1).mean()
        else:
            val = nn.functional.cross_entropy(pred, target[:, 0].long())
        val.backward()
        return torch.cat([p.grad.reshape(-1) for p in mod.parameters()]).numpy()

    nodes = np.array([3, 1, 0, 2])
    for block in (prob.grad_block, prob.d):  # one chunk; one node per chunk
        prob.grad_block = block
        got = prob.grad(X[nodes], nodes)
        for k, i in enumerate(nodes):
            np.testing.assert_allclose(got[k], loop(i, np.arange(SIZES[i])), rtol=0, atol=1e-10)
        sg = prob.stochastic_grad(X[nodes], nodes, NodeStreams(4, N)["sampling"], 5)
        idx = NodeStreams(4, N)["sampling"].integers(nodes, SIZES[nodes], 5)
        for k, i in enumerate(nodes):
            np.testing.assert_allclose(sg[k], loop(i, idx[k]), rtol=0, atol=1e-10)


def test_float32_gradients_reuse_their_buffers_and_return_new_blocks() -> None:
    """On the CPU the gradient path of a Linear stack converts the iterates and writes the
    gradients into buffers kept between calls (no large fresh tensors per call, which cost
    page faults); every call still returns a new float64 block, which a later call leaves
    as it was; a pickled problem carries no buffers."""
    g = np.random.default_rng(6)
    A = g.standard_normal((N, M_MAX, D_IN))
    Y = g.standard_normal((N, M_MAX, D_OUT))
    prob = TorchModelProblem(_arch, A, Y, SIZES, device="cpu", dtype="float32", init_seed=1)
    ref = TorchModelProblem(_arch, A, Y, SIZES, device="cpu", dtype="float64", init_seed=1)
    nodes = np.arange(N)
    X1, X2 = (g.standard_normal((N, prob.d)) for _ in range(2))
    g1 = prob.grad(X1, nodes)
    assert prob._scratch is not None
    _, Xw, G = prob._scratch
    ptrs = [Xw.data_ptr(), *(t.data_ptr() for t in G.values())]
    kept = g1.copy()
    g2 = prob.grad(X2, nodes)
    _, Xw, G = prob._scratch
    assert [Xw.data_ptr(), *(t.data_ptr() for t in G.values())] == ptrs
    assert g2 is not g1 and not np.shares_memory(g1, g2)
    np.testing.assert_array_equal(g1, kept)
    for X, got in ((X1, g1), (X2, g2)):
        np.testing.assert_allclose(got, ref.grad(X, nodes), rtol=1e-5, atol=1e-5)
    assert pickle.loads(pickle.dumps(prob))._scratch is None
