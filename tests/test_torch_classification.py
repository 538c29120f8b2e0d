"""Torch classification problems (cross-entropy on the digits) and what every problem now
reports: the oracles against a plain loop over ``nn.Module`` copies, finite differences for
the CNN, the held-out split and its accuracy, the module's initialization as every
algorithm's starting point, the zeroth-order ``query`` oracle, the ``train_loss`` /
``test_accuracy`` columns on both engines, the resolved device in the manifest, and FedAvg
against a hand-written torch FedAvg loop."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from test_experiment_config import write_config
from torch import nn

from fedopt.algorithms import make_algorithm
from fedopt.algorithms.base import Context
from fedopt.cli import main
from fedopt.core.meter import Channel, Meter
from fedopt.core.rng import NodeStreams, RngStreams
from fedopt.core.trace import METRIC_COLUMNS, metrics
from fedopt.engines import make_engine
from fedopt.engines.base import RunSpec, StopCriteria
from fedopt.experiment.config import ConfigError, parse_config
from fedopt.experiment.plots import Y_COLUMNS, curves, log_y
from fedopt.experiment.store import COLUMNS
from fedopt.problems import problem_factory
from fedopt.problems.base import CountingOracle, ProblemParamError, ShardView
from fedopt.problems.partition import label_skew
from fedopt.problems.torch_model import TorchModelProblem
from fedopt.topology.generators import make_topology

N_NODES = 12


def _mlp_copy() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 6), nn.ReLU(), nn.Linear(6, 10))


def _cnn_copy() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(48, 10))


#: (problem name, its parameters, an architecture written here for the reference loop)
CASES = {
    "mlp": ("mlp_classification", {"hidden": 6}, _mlp_copy),
    "cnn": ("cnn_classification", {"channels": 3}, _cnn_copy),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    name, params, arch = CASES[request.param]
    prob = problem_factory(name)(n=N_NODES, partition={"kind": "dirichlet", "alpha": 0.5}, device="cpu", seed=5,
                                 **params)
    X = np.tile(prob.initial_parameters(), (N_NODES, 1))
    X += np.random.default_rng(1).standard_normal(X.shape) * 0.05
    return prob, arch, X


def _node_data(prob: TorchModelProblem, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Node ``i``'s samples (features, class ids), its padding cut off."""
    m = int(prob.n_samples()[i])
    return prob._inputs[i, :m], prob._targets[i, :m, 0].long()


def _module_at(arch, x: np.ndarray) -> nn.Module:
    mod = arch().double()
    nn.utils.vector_to_parameters(torch.tensor(x, dtype=torch.float64), mod.parameters())
    return mod


def _loop_loss_grad(arch, x: np.ndarray, a: torch.Tensor, y: torch.Tensor) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy of ``a`` against ``y`` and its gradient, by ``.backward()``."""
    mod = _module_at(arch, x)
    loss = F.cross_entropy(mod(a), y)
    loss.backward()
    return float(loss.detach()), torch.cat([p.grad.reshape(-1) for p in mod.parameters()]).numpy()


def test_value_and_grad_match_a_loop_over_module_copies(case) -> None:
    prob, arch, X = case
    nodes = np.array([7, 2, 11, 0])  # not consecutive: the gathered path
    vals, grads = prob.value(X[nodes], nodes), prob.grad(X[nodes], nodes)
    for k, i in enumerate(nodes):
        v, g = _loop_loss_grad(arch, X[i], *_node_data(prob, i))
        assert vals[k] == pytest.approx(v, abs=1e-10, rel=0)
        np.testing.assert_allclose(grads[k], g, rtol=0, atol=1e-10)


def test_sample_and_stochastic_grads_match_a_loop(case) -> None:
    prob, arch, X = case
    nodes = np.array([3, 9])
    idx = np.array([[0, 4, 4], [2, 1, 0]])
    got = prob.sample_grads(X[nodes], nodes, idx)
    for k, i in enumerate(nodes):
        a, y = _node_data(prob, i)
        for b, j in enumerate(idx[k]):
            _, g = _loop_loss_grad(arch, X[i], a[j:j + 1], y[j:j + 1])
            np.testing.assert_allclose(got[k, b], g, rtol=0, atol=1e-10)
    batch = 5
    sg = prob.stochastic_grad(X[nodes], nodes, NodeStreams(4, N_NODES)["sampling"], batch)
    draws = NodeStreams(4, N_NODES)["sampling"].integers(nodes, prob.n_samples()[nodes], batch)
    for k, i in enumerate(nodes):
        a, y = _node_data(prob, i)
        _, g = _loop_loss_grad(arch, X[i], a[draws[k]], y[draws[k]])
        np.testing.assert_allclose(sg[k], g, rtol=0, atol=1e-10)


def test_cnn_grad_matches_finite_differences() -> None:
    prob = problem_factory("cnn_classification")(n=12, channels=2, device="cpu", seed=3)
    x = prob.initial_parameters() + np.random.default_rng(2).standard_normal(prob.d) * 0.1
    node, h = np.array([1]), 1e-6
    g = prob.grad(x[None], node)[0]
    E = np.eye(prob.d) * h
    at = np.full(prob.d, 1, dtype=np.int64)
    fd = (prob.value(x + E, at) - prob.value(x - E, at)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=0, atol=1e-7)
    assert np.abs(g).max() > 1e-3  # not a vacuous comparison


def test_held_out_split_is_stratified_and_standardized_with_training_statistics() -> None:
    from sklearn.datasets import load_digits

    raw = load_digits()
    make = problem_factory("mlp_classification")
    p = make(n=5, test_fraction=0.25, device="cpu", seed=8)
    test_y = p._test_labels.numpy()
    counts = np.bincount(raw.target, minlength=10)
    assert np.array_equal(np.bincount(test_y, minlength=10), np.round(0.25 * counts).astype(int))
    train_x = np.concatenate([_node_data(p, i)[0].numpy() for i in range(5)])
    assert len(train_x) + len(test_y) == len(raw.target) == p.describe()["samples"] + p.describe()["test_samples"]
    np.testing.assert_allclose(train_x.mean(axis=0), 0, atol=1e-12)
    std = train_x.std(axis=0)
    assert np.allclose(std[std > 0], 1.0) and (std == 0).sum() == (raw.data.std(axis=0) == 0).sum() >= 1
    # the same seed, the same split; another seed, another split
    assert np.array_equal(make(n=5, test_fraction=0.25, device="cpu", seed=8)._test_inputs, p._test_inputs)
    assert not torch.equal(make(n=5, test_fraction=0.25, device="cpu", seed=9)._test_inputs, p._test_inputs)
    none = make(n=5, test_fraction=0.0, device="cpu", seed=8)
    assert none.test_metrics(none.initial_parameters()) == {} and none.n_samples().sum() == len(raw.target)


def test_test_accuracy_is_the_share_of_correct_argmax_predictions(case) -> None:
    prob, arch, X = case
    x = X[0]
    logits = _module_at(arch, x)(prob._test_inputs)
    want = float((logits.argmax(dim=1) == prob._test_labels).double().mean())
    got = prob.test_metrics(x)
    assert set(got) == {"test_accuracy"} and got["test_accuracy"] == pytest.approx(want, abs=1e-15)


def test_label_skewed_partitions() -> None:
    make = problem_factory("mlp_classification")

    def classes_per_node(p):
        return [len(np.unique(_node_data(p, i)[1].numpy())) for i in range(p.n)]

    shards = make(n=10, partition={"kind": "label_sorted", "shards_per_node": 2}, device="cpu", seed=0)
    assert max(classes_per_node(shards)) <= 4  # two label-sorted shards: at most two runs of classes each
    iid = make(n=10, device="cpu", seed=0)
    assert min(classes_per_node(iid)) == 10
    skew = {}
    for name, p in (("shards", shards), ("iid", iid),
                    ("dirichlet", make(n=10, partition={"kind": "dirichlet", "alpha": 0.1}, device="cpu", seed=0))):
        labels = np.concatenate([_node_data(p, i)[1].numpy() for i in range(p.n)])
        bounds = np.cumsum(p.n_samples())
        skew[name] = label_skew(labels, np.split(np.arange(len(labels)), bounds[:-1]))
    assert skew["iid"] < 0.1 < 0.5 < skew["dirichlet"] and skew["shards"] > 0.5, skew


@pytest.mark.parametrize(
    ("name", "params", "key", "message"),
    [
        ("mlp_classification", {"hidden": 0}, "hidden", "hidden must be a positive integer"),
        ("cnn_classification", {"channels": 2.5}, "channels", "channels must be a positive integer"),
        ("mlp_classification", {"test_fraction": 1.0}, "test_fraction", r"test_fraction must be a number in \[0, 1\)"),
        ("cnn_classification", {"partition": {"kind": "dirichlet", "alpha": 0}}, "partition.alpha",
         "alpha must be positive"),
        ("mlp_classification", {"partition": "by_label"}, "partition.kind", "unknown kind 'by_label'"),
        ("cnn_classification", {"device": "tpu"}, "device", "device must be one of auto, cpu, cuda, cuda:K"),
        ("mlp_classification", {"n": 2000}, "n", "2000 nodes but the data hold only"),
    ],
)
def test_bad_parameters_name_their_key(name, params, key, message) -> None:
    with pytest.raises(ProblemParamError, match=message) as info:
        problem_factory(name)(**{"n": 3, **params})
    assert info.value.key == key


def test_cross_entropy_needs_class_ids() -> None:
    A = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="cross_entropy needs targets"):
        TorchModelProblem(lambda: nn.Linear(4, 3), A, np.full((2, 3, 1), 0.5), np.array([3, 2]),
                          loss="cross_entropy", device="cpu")
    with pytest.raises(ProblemParamError, match="loss must be one of mse, cross_entropy"):
        TorchModelProblem(lambda: nn.Linear(4, 3), A, np.zeros((2, 3, 1)), np.array([3, 2]), loss="hinge",
                          device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", ["mlp_classification", "cnn_classification"])
def test_cuda_classification_matches_the_cpu(name) -> None:
    kw = {"n": 6, "seed": 4, "partition": {"kind": "dirichlet", "alpha": 0.5}}
    cpu, gpu = problem_factory(name)(**kw, device="cpu"), problem_factory(name)(**kw, device="cuda", dtype="float64")
    assert gpu.device.type == "cuda" and problem_factory(name)(**kw, device="auto").dtype == torch.float32
    X = np.tile(cpu.initial_parameters(), (6, 1)) + np.random.default_rng(0).standard_normal((6, cpu.d)) * 0.1
    nodes = np.array([5, 1, 2, 0, 3, 4])
    np.testing.assert_allclose(gpu.value(X, nodes), cpu.value(X, nodes), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gpu.grad(X, nodes), cpu.grad(X, nodes), rtol=1e-9, atol=1e-11)
    assert gpu.test_metrics(X[0]) == cpu.test_metrics(X[0])


# ---- starting point, query oracle, metrics ---------------------------------------------------


def _context(problem, seed: int = 0) -> Context:
    top = make_topology("cycle", n=problem.n)
    meter = Meter(n=problem.n)
    return Context(problem, top, RngStreams(seed, problem.n), meter, Channel(meter, top.latency, top.bandwidth))


@pytest.mark.parametrize("algo", ["fedavg", "dgd", "gossip_sgd", "gradient_tracking"])
def test_algorithms_start_at_the_module_initialization(algo) -> None:
    prob = problem_factory("mlp_regression")(n=4, data={"source": "teacher", "n_samples": 40, "d": 3}, hidden=5,
                                             device="cpu", seed=1)
    x0 = prob.initial_parameters()
    assert np.abs(x0).min() > 0  # a torch init, not zeros
    ctx = _context(prob)
    a = make_algorithm(algo)
    state = a.init(ctx)
    X = np.atleast_2d(state["server"] if "server" in state else a.iterates(state, ctx, 0.0))
    assert np.array_equal(X, np.broadcast_to(x0, X.shape))
    state["server" if "server" in state else "x"][...] += 1.0  # the algorithm's copy, not the problem's
    assert np.array_equal(prob.initial_parameters(), x0)
    # numpy problems keep starting at zero
    quad = problem_factory("quadratic")(n=4, d=3, seed=0)
    assert np.array_equal(make_algorithm(algo).init(_context(quad)).get("server", np.zeros(3)), np.zeros(3))


def test_a_shard_view_forwards_the_new_hooks() -> None:
    class View(ShardView):  # the per-node oracles only: everything else is ShardView's
        def grad(self, X, nodes):
            return self.full.grad(X, nodes)

        def value(self, X, nodes):
            return self.full.value(X, nodes)

    prob = problem_factory("mlp_classification")(n=4, hidden=3, device="cpu", seed=0)
    view = View(prob, np.array([2, 3]))
    x = prob.initial_parameters()
    assert np.array_equal(view.initial_parameters(), x)
    assert view.test_metrics(x) == prob.test_metrics(x)
    X, nodes = np.tile(x, (2, 1)), np.array([3, 2])
    assert np.array_equal(view.query(X, nodes), prob.value(X, nodes))


def test_query_is_the_counted_zeroth_order_value_oracle() -> None:
    for prob in (problem_factory("quadratic")(n=5, d=3, seed=0),
                 problem_factory("mlp_regression")(n=5, data={"source": "teacher", "n_samples": 30, "d": 2},
                                                   hidden=3, device="cpu")):
        X, nodes = np.random.default_rng(0).standard_normal((3, prob.d)), np.array([4, 0, 4])
        assert np.array_equal(prob.query(X, nodes), prob.value(X, nodes))
        meter = Meter(n=prob.n)
        oracle = CountingOracle(prob, meter)
        assert np.array_equal(oracle.query(X, nodes), prob.value(X, nodes))
        meter.flush()
        assert meter.totals()["queries"] == 3 and meter.totals()["grad_evals"] == 0
        assert np.array_equal(meter.queries.values, [1, 0, 0, 0, 2])


def test_metrics_report_train_loss_everywhere_and_test_accuracy_where_there_is_a_split() -> None:
    quad = problem_factory("quadratic")(n=4, d=3, seed=0)
    X = np.random.default_rng(0).standard_normal((4, 3))
    row = metrics(quad, X)
    assert set(row) == set(METRIC_COLUMNS)
    assert row["train_loss"] == pytest.approx(quad.global_value(X.mean(axis=0)), abs=0)
    assert row["subopt"] == pytest.approx(row["train_loss"] - quad.f_star, abs=1e-12)
    assert math.isnan(row["test_accuracy"])
    prob = problem_factory("mlp_classification")(n=4, hidden=3, device="cpu", seed=0)
    X = np.tile(prob.initial_parameters(), (4, 1)) + np.random.default_rng(1).standard_normal((4, prob.d)) * 0.1
    row = metrics(prob, X)
    xbar = X.mean(axis=0)
    assert row["train_loss"] == prob.global_value(xbar)
    assert row["test_accuracy"] == prob.test_metrics(xbar)["test_accuracy"]
    assert math.isnan(row["subopt"]) and math.isnan(row["dist_opt"])

    class Misnamed(type(quad)):
        def test_metrics(self, x):
            return {"accuracy": 1.0}

    quad.__class__ = Misnamed
    with pytest.raises(ValueError, match="unknown metric.*accuracy; allowed: test_accuracy"):
        metrics(quad, X[:, :3])


def test_the_new_columns_are_in_the_table_plots_and_stop_rule() -> None:
    for col in ("train_loss", "test_accuracy"):
        assert col in COLUMNS and col in Y_COLUMNS and col in METRIC_COLUMNS
    assert not log_y("test_accuracy", np.array([0.5, 0.9]))
    assert log_y("train_loss", np.array([0.5, 2.0])) and not log_y("train_loss", np.array([-1.0, 2.0]))
    assert log_y("subopt", np.array([-1e-17, 2.0]))  # round-off below f* is left out, the axis stays log
    df = pd.DataFrame({"run_id": ["a", "a", "a"], "algorithm": "x", "topology": "t", "status": "ok",
                       "messages": [0.0, 10.0, 20.0], "test_accuracy": [0.0, 0.5, 0.9]})
    c = curves(df, "messages", "test_accuracy")["t"]["x"]
    assert c["median"][0] == 0.0 and c["median"][-1] == pytest.approx(0.9)  # linear: a zero accuracy is kept
    cfg = {"name": "t", "problem": {"name": "quadratic", "n": 4}, "topology": ["cycle"],
           "algorithms": [{"name": "dgd"}], "stop": {"target": 0.1, "target_metric": "train_loss"}}
    assert parse_config(cfg).stop.target_metric == "train_loss"
    from fedopt.experiment.runner import config_differences

    with_plots = parse_config({**cfg, "plots": [{"x": "bytes", "y": "test_accuracy"}]}).to_dict()
    assert config_differences(parse_config(cfg).to_dict(), with_plots) == []  # plots change no result: resumable


# ---- end to end: both engines, manifest, plots ------------------------------------------------

ALGOS = [
    {"name": "fedavg", "params": {"lr": 0.2, "local_steps": 2, "batch_size": 8, "clients_per_round": 3}},
    {"name": "dgd", "params": {"lr": 0.2}},
    {"name": "gossip_sgd", "params": {"lr": 0.1, "batch_size": 8}},
]


def test_both_engines_give_the_same_metric_columns_and_the_manifest_records_the_device(tmp_path: Path) -> None:
    problem = {"name": "mlp_classification", "n": 4, "hidden": 4, "partition": {"kind": "label_sorted",
               "shards_per_node": 2}, "seed": 0}  # device: auto
    cfg = {"name": "cls", "problem": problem, "topology": ["cycle"], "algorithms": ALGOS,
           "stop": {"time": 4.0, "rounds": 4}, "record": {"every": 2.0},
           "plots": [{"x": "messages", "y": "test_accuracy"}, {"x": "bytes", "y": "train_loss"}]}
    tables, manifests = {}, {}
    for engine in ("local", {"name": "sharded", "num_shards": 2}):
        out = tmp_path / ("local" if engine == "local" else "sharded")
        path = write_config(tmp_path, {**cfg, "engine": engine}, f"{out.name}.yaml")
        assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 0
        tables[out.name] = pd.read_parquet(out / "results.parquet").drop(columns=["wall_s"])
        manifests[out.name] = json.loads((out / "manifest.json").read_text())
    local = tables["local"]
    assert set(local["status"]) == {"ok"} and local["algorithm"].nunique() == 3
    assert np.isfinite(local["train_loss"]).all() and local["train_loss"].gt(0).all()
    assert local["test_accuracy"].between(0, 1).all()
    first = local.groupby("algorithm")["train_loss"].first()
    assert np.allclose(first, first.iloc[0], rtol=0, atol=1e-12)  # every algorithm starts at the same init
    pd.testing.assert_frame_equal(local, tables["sharded"], rtol=1e-9, atol=1e-12)
    from fedopt.problems.torch_model import resolve_device

    want = str(resolve_device("auto"))
    for man in manifests.values():
        assert sorted(man["plots"]) == ["plots/test_accuracy_vs_messages.png", "plots/train_loss_vs_bytes.png"]
        described = list(man["problems"].values())
        assert len(described) == 3
        assert all(d["device"] == want and d["dtype"] in ("float32", "float64") and d["test_samples"] > 0
                   for d in described)
    with pytest.raises(ConfigError, match=r"^config: plots\.1\.y: must be one of subopt, .*test_accuracy"):
        parse_config({**cfg, "plots": [{"x": "messages", "y": "train_loss"}, {"x": "messages", "y": "acc"}]})


# ---- FedAvg against a hand-written torch loop -------------------------------------------------


def _teacher_mlp(d_in: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.Softplus(), nn.Linear(hidden, 1))


def _torch_fedavg(prob: TorchModelProblem, d_in: int, hidden: int, rounds: int, lr: float, steps: int,
                  batch: int | None, per_round: int | None, seed: int) -> list[np.ndarray]:
    """McMahan et al. 2017, Alg. 1, one client at a time with its own ``nn.Module`` and
    ``torch.optim.SGD``; the server model after each round (index 0: the start). Client
    sampling and minibatch indices are the run's random streams' draws."""
    n = prob.n
    data = [(prob._inputs[k, :m], prob._targets[k, :m]) for k, m in enumerate(prob.n_samples())]
    sampler = RngStreams(seed, n)["sampling"]
    minibatches = NodeStreams(seed, n)["sampling"]
    server = torch.tensor(prob.initial_parameters())
    history = [server.numpy().copy()]
    for _ in range(rounds):
        clients = np.arange(n) if per_round is None else np.sort(sampler.choice(n, size=per_round, replace=False))
        total, acc = 0.0, torch.zeros_like(server)
        for k in clients:
            model = _teacher_mlp(d_in, hidden).double()
            nn.utils.vector_to_parameters(server.clone(), model.parameters())
            opt = torch.optim.SGD(model.parameters(), lr=lr)
            a, y = data[k]
            for _ in range(steps):
                if batch is None:
                    xb, yb = a, y
                else:
                    idx = minibatches.integers(np.array([k]), np.array([len(a)]), batch)[0]
                    xb, yb = a[idx], y[idx]
                opt.zero_grad()
                F.mse_loss(model(xb), yb).backward()
                opt.step()
            acc += len(a) * nn.utils.parameters_to_vector(model.parameters()).detach()
            total += len(a)
        server = acc / total
        history.append(server.numpy().copy())
    return history


def _torch_loss(prob: TorchModelProblem, d_in: int, hidden: int, x: np.ndarray) -> float:
    """``(1/n) Σ_k mean_j (model(a_kj) − y_kj)²`` with one module."""
    model = _teacher_mlp(d_in, hidden).double()
    nn.utils.vector_to_parameters(torch.tensor(x), model.parameters())
    with torch.no_grad():
        return float(np.mean([F.mse_loss(model(prob._inputs[k, :m]), prob._targets[k, :m]).item()
                              for k, m in enumerate(prob.n_samples())]))


@pytest.mark.parametrize(("batch", "per_round"), [(None, None), (4, 3)], ids=["full-batch", "minibatch-sampled"])
def test_fedavg_equals_a_hand_written_torch_fedavg(batch, per_round) -> None:
    d_in, hidden, rounds, lr, steps, seed = 3, 5, 4, 0.2, 3, 7
    prob = problem_factory("mlp_regression")(n=5, data={"source": "teacher", "n_samples": 60, "d": d_in},
                                             hidden=hidden, partition={"kind": "dirichlet", "alpha": 1.0},
                                             device="cpu", dtype="float64", seed=2)
    ref = _torch_fedavg(prob, d_in, hidden, rounds, lr, steps, batch, per_round, seed)
    params = {"lr": lr, "local_steps": steps, "batch_size": batch, "clients_per_round": per_round}
    for r in (1, rounds):
        spec = RunSpec("fedavg", prob, make_topology("star", n=5), make_algorithm("fedavg", **params), seed=seed,
                       stop=StopCriteria(rounds=r), record_every=1.0)
        result = make_engine("local").run(spec)
        assert result.status == "ok", result.message
        np.testing.assert_allclose(result.final_state["server"], ref[r], rtol=0, atol=1e-10)
    assert [row["round"] for row in result.rows] == list(range(rounds + 1))
    for row in result.rows:
        assert row["train_loss"] == pytest.approx(_torch_loss(prob, d_in, hidden, ref[row["round"]]), abs=1e-10)
    assert not np.allclose(ref[-1], ref[0])


def test_a_pickled_or_sharded_classifier_keeps_its_test_split_and_follows_placement(case) -> None:
    import pickle

    prob, _, X = case
    assert {"_test_inputs", "_test_labels"} <= set(type(prob)._DEVICE_TENSORS)  # travel with the data
    copy = pickle.loads(pickle.dumps(prob))
    assert copy.test_metrics(X[0]) == prob.test_metrics(X[0])
    view = prob.shard_view(np.array([1, 2]), device="cpu")
    np.testing.assert_array_equal(view.query(X[1:3], np.array([1, 2])), prob.value(X[1:3], np.array([1, 2])))
    assert view.test_metrics(X[0]) == prob.test_metrics(X[0])
    # device: auto follows the engine's placement (the factory keeps it unresolved)
    auto = problem_factory("mlp_classification")(n=N_NODES, hidden=2, seed=0)
    assert auto.requested_device == "auto"
