"""DIFF2 and its baselines: reduction to GD without noise or clipping, T = 1 is DP-GD, the
sensitivity of the released aggregate with unequal node sizes, the injected noise's std, the
epsilon column against independent accountants, and the same table on the local and ray engines."""

from __future__ import annotations

import math

import dp_accounting as dpa
import numpy as np
import pytest
import ray  # a dependency: a missing ray is a failure, not a skip
from dp_accounting import pld
from scipy import optimize, stats

from fedopt.algorithms import make_algorithm
from fedopt.algorithms.base import Context
from fedopt.algorithms.private.diff2 import Diff2Prepared
from fedopt.core.meter import Channel, Meter
from fedopt.core.rng import RngStreams
from fedopt.engines.base import RunSpec, Simulation, StopCriteria, make_engine
from fedopt.problems import problem_factory
from fedopt.problems.torch_model import TorchModelProblem, mlp
from fedopt.topology.generators import make_topology

P = 4
TOP = make_topology("complete", n=P)
#: Teacher data with unequal node sizes (51, 51, 51, 50 after an iid split of 203 samples).
PROB = problem_factory("mlp_regression")(n=P, data={"source": "teacher", "n_samples": 203, "d": 5}, hidden=6,
                                         device="cpu", seed=0)


def run(name: str, stop: int = 9, every: int = 3, seed: int = 0, problem=PROB, engine: str = "local", **params):
    spec = RunSpec(name, problem, TOP, make_algorithm(name, **params), seed, StopCriteria(rounds=stop),
                   record_every=every)
    return make_engine(engine).run(spec) if engine == "local" else engine.run(spec)


@pytest.mark.parametrize("T", [1, 3, 5])
def test_without_noise_and_clipping_diff2_is_gd(T: int) -> None:
    xs_gd, xs_d2 = [], []
    sim_gd = Simulation(RunSpec("gd", PROB, TOP, make_algorithm("gd", lr=0.3), 0, StopCriteria(rounds=12)))
    sim_d2 = Simulation(RunSpec("d2", PROB, TOP, make_algorithm("diff2", lr=0.3, restart_every=T), 0,
                                StopCriteria(rounds=12)))
    sim_gd.start()
    sim_d2.start()
    for _ in range(12):
        sim_gd.apply_rounds(1)
        sim_d2.apply_rounds(1)
        xs_gd.append(sim_gd.state["x"].copy())
        xs_d2.append(sim_d2.state["x"].copy())
    moved = np.linalg.norm(xs_gd[-1] - xs_gd[0])
    assert moved > 1e-2
    for a, b in zip(xs_gd, xs_d2):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)


def test_t1_is_dp_gd_with_the_same_seed() -> None:
    common = dict(lr=0.3, epsilon=3.0, rounds=9)
    a = run("diff2", restart_every=1, clip_grad=1.0, clip_diff=5.0, **common)
    b = run("dp_gd", clip=1.0, **common)
    assert a.status == b.status == "ok"
    for ra, rb in zip(a.rows, b.rows):
        for k in ("grad_norm_sq", "epsilon", "grad_evals", "messages"):
            assert ra[k] == rb[k], k
    np.testing.assert_array_equal(a.final_state["x"], b.final_state["x"])
    assert a.rows[-1]["epsilon"] <= 3.0 and a.rows[-1]["epsilon"] == pytest.approx(3.0, rel=1e-3)


# ---- sensitivity -----------------------------------------------------------------------------------
def _unequal(replace: bool) -> TorchModelProblem:
    """Nodes of 9, 4, 7 and 12 samples; ``replace``: sample 2 of the smallest node (node 1) is
    replaced by an outlier whose gradient is far beyond every threshold."""
    rng = np.random.default_rng(3)
    m = np.array([9, 4, 7, 12])
    A = rng.standard_normal((P, 12, 3))
    Y = rng.standard_normal((P, 12, 1)) * 0.3
    if replace:
        A[1, 2] = -50.0 * np.sign(A[1, 2])
        Y[1, 2] = 1e4
    return TorchModelProblem(lambda: mlp(3, 4), A, Y, m, device="cpu", dtype="float64", init_seed=1)


def _aggregate(problem, algo, restart: bool, c: float, x: np.ndarray, x_prev: np.ndarray) -> np.ndarray:
    """The released aggregate (before noise) of one round; a difference round reuses the
    evaluation at ``x_prev`` that a restart there kept (one gradient evaluation per node)."""
    meter = Meter(P)
    ctx = Context(problem, TOP, RngStreams(0, P), meter, Channel(meter))
    ctx.prepared = algo.prepare(problem, [TOP])[0]
    state = algo.init(ctx)
    clients = np.arange(P)
    if not restart:
        algo.client_update({"x": x_prev, "x_prev": x_prev, "restart": np.array(True), "clip": np.array(c)}, state,
                           ctx, clients, 0)
    before = meter.grad_evals.values.copy()
    payload = {"x": x, "x_prev": x_prev, "restart": np.array(restart), "clip": np.array(c)}
    msgs, w = algo.client_update(payload, state, ctx, clients, 0)
    np.testing.assert_allclose(meter.grad_evals.values - before, 1.0, rtol=1e-15)  # x_prev not evaluated again
    return (w @ msgs) / w.sum()


def test_replacing_one_sample_moves_the_aggregate_by_at_most_the_sensitivity() -> None:
    D, D2 = _unequal(False), _unequal(True)
    algo = make_algorithm("diff2", restart_every=3, clip_grad=0.7, clip_diff=2.0)
    rng = np.random.default_rng(0)
    x = D.initial_parameters()
    x_prev = x + 0.05 * rng.standard_normal(D.d)
    n_min = 4
    # restart round: threshold C1
    moved = np.linalg.norm(_aggregate(D, algo, True, 0.7, x, x_prev) - _aggregate(D2, algo, True, 0.7, x, x_prev))
    bound = 2 * 0.7 / (n_min * P)
    assert moved <= bound * (1 + 1e-12)
    assert moved > 0.5 * bound  # the outlier's clipped gradient is near the worst case
    # difference round: threshold C2 ‖x − x_prev‖
    c = 2.0 * float(np.linalg.norm(x - x_prev))
    moved = np.linalg.norm(_aggregate(D, algo, False, c, x, x_prev) - _aggregate(D2, algo, False, c, x, x_prev))
    bound = 2 * c / (n_min * P)
    assert moved <= bound * (1 + 1e-12)
    assert moved > 0.5 * bound


# ---- the injected noise ---------------------------------------------------------------------------
def test_injected_noise_has_the_calibrated_std_on_restarts_and_differences() -> None:
    """χ² test of the noise in v on restart rounds (C1 σ1) and difference rounds (c_r σ2)."""
    algo = make_algorithm("diff2", restart_every=2, clip_grad=1.0, clip_diff=3.0, epsilon=2.0, rounds=400)
    prep = algo.prepare(PROB, [TOP])[0]
    assert isinstance(prep, Diff2Prepared)
    meter = Meter(P)
    ctx = Context(PROB, TOP, RngStreams(11, P), meter, Channel(meter))
    ctx.prepared = prep
    state = algo.init(ctx)
    n_min = int(PROB.n_samples().min())
    s1, s2 = 2 * prep.restart.noise_multiplier / (n_min * P), 2 * prep.difference.noise_multiplier / (n_min * P)
    zero = np.zeros(PROB.d)
    restart_noise, diff_noise = [], []
    rng = np.random.default_rng(5)
    for r in range(400):
        state = {"x": rng.standard_normal(PROB.d), "x_prev": rng.standard_normal(PROB.d), "v": zero}
        c_r = 3.0 * np.linalg.norm(state["x"] - state["x_prev"])
        out = algo.aggregate(state, ctx, zero, float(P), r)
        if r % 2 == 0:
            restart_noise.append(out["v"] / (1.0 * s1))
        else:
            diff_noise.append(out["v"] / (c_r * s2))
    for noise in (np.array(restart_noise), np.array(diff_noise)):
        stat, dof = float((noise**2).sum()), noise.size
        assert 1e-3 < stats.chi2.sf(stat, dof) < 1 - 1e-3
    assert meter.privacy is not None and meter.privacy.releases() == 400  # type: ignore[attr-defined]


# ---- the epsilon column ------------------------------------------------------------------------
def _gdp_epsilon(mu: float, delta: float) -> float:
    def dlt(e: float) -> float:
        return float(stats.norm.cdf(-e / mu + mu / 2) - math.exp(e) * stats.norm.cdf(-e / mu - mu / 2))

    return float(optimize.brentq(lambda e: dlt(e) - delta, 1e-9, 200.0, xtol=1e-12))


@pytest.mark.parametrize("noise", ["calibrated", "paper"])
def test_epsilon_column_equals_independent_accountants(noise: str) -> None:
    algo = make_algorithm("diff2", lr=0.2, restart_every=4, clip_grad=1.0, clip_diff=3.0, epsilon=2.0, rounds=10,
                          noise=noise)
    res = make_engine("local").run(RunSpec("e", PROB, TOP, algo, 0, StopCriteria(rounds=10), record_every=3))
    assert res.status == "ok", res.message
    prep = algo.prepare(PROB, [TOP])[0]
    z1, z2 = prep.restart.noise_multiplier, prep.difference.noise_multiplier
    if noise == "paper":  # z = σ n_min P / 2 with the closed-form σ
        n_min = int(PROB.n_samples().min())
        alpha = 1 + math.ceil(2 * math.log(1e5) / 2.0)
        s1 = math.sqrt(4 * 1.25 * alpha * 10 / (4 * n_min**2 * P**2 * 2.0))
        assert z1 == pytest.approx(s1 * n_min * P / 2, rel=1e-12)
    assert [r["round"] for r in res.rows] == [0, 3, 6, 9, 10]
    for row in res.rows:
        r = row["round"]
        k1 = -(-r // 4)
        k2 = r - k1
        acc = pld.PLDAccountant(value_discretization_interval=1e-4)
        if r:
            acc.compose(dpa.ComposedDpEvent([dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(z1), k1)]
                                            + ([dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(z2), k2)] if k2 else [])))
        want = acc.get_epsilon(1e-5) if r else 0.0
        assert row["epsilon"] == pytest.approx(want, rel=1e-6, abs=1e-12)
        if r:
            assert row["epsilon"] == pytest.approx(_gdp_epsilon(math.sqrt(k1 / z1**2 + k2 / z2**2), 1e-5), rel=1e-4)
    assert res.rows[-1]["epsilon"] <= 2.0 + 1e-9


def test_a_private_run_needs_rounds_and_thresholds() -> None:
    with pytest.raises(ValueError, match=r"algorithm 'diff2': rounds: a private run needs"):
        make_algorithm("diff2", epsilon=1.0, clip_grad=1.0, clip_diff=1.0)
    with pytest.raises(ValueError, match=r"algorithm 'diff2': clip_grad: a private run needs"):
        make_algorithm("diff2", epsilon=1.0, rounds=5, clip_diff=1.0)
    with pytest.raises(ValueError, match=r"algorithm 'dp_gd': clip: a private run needs"):
        make_algorithm("dp_gd", epsilon=1.0, rounds=5)
    with pytest.raises(ValueError, match=r"algorithm 'diff2': clip_diff"):
        make_algorithm("diff2", epsilon=1.0, rounds=5, clip_grad=1.0)
    with pytest.raises(ValueError, match=r"algorithm 'dp_sgd': relation"):
        make_algorithm("dp_sgd", accountant="rdp")


# ---- kept evaluations ----------------------------------------------------------------------------
#: A private run whose clipping is active on restarts and differences.
KEEPING = dict(lr=0.3, restart_every=4, clip_grad=0.5, clip_diff=2.0, epsilon=3.0, rounds=10)


def _per_round(params: dict, rounds: int = 10, tamper=None) -> tuple[list[np.ndarray], np.ndarray, Simulation]:
    """Iterates after each round, gradient evaluations of each round (node 0), and the run;
    ``tamper(sim, r)`` may change the state before round ``r``."""
    sim = Simulation(RunSpec("d2", PROB, TOP, make_algorithm("diff2", **params), 0, StopCriteria(rounds=rounds)))
    sim.start()
    xs, evals = [], [0.0]
    for r in range(rounds):
        if tamper is not None:
            tamper(sim, r)
        sim.apply_rounds(1)
        xs.append(sim.state["x"].copy())
        evals.append(float(sim.meter.grad_evals.values[0]))
    return xs, np.diff(evals), sim


def test_kept_evaluations_give_the_two_point_iterates_with_one_evaluation_per_round() -> None:
    kept_x, kept_evals, sim = _per_round(KEEPING)
    two_x, two_evals, two = _per_round({**KEEPING, "keep_evaluations": False})
    assert set(sim.state) == {"x", "x_prev", "v", "kept_at", "kept"} and set(two.state) == {"x", "x_prev", "v"}
    assert sim.state["kept"].shape == (P, 51, PROB.evaluation_width())
    assert np.linalg.norm(kept_x[-1] - PROB.initial_parameters()) > 1e-2
    for a, b in zip(kept_x, two_x):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    restart = np.arange(10) % 4 == 0
    np.testing.assert_allclose(kept_evals, 1.0, rtol=1e-15)
    np.testing.assert_allclose(two_evals, np.where(restart, 1.0, 2.0), rtol=1e-15)
    assert "kept" not in make_engine("local").run(RunSpec("g", PROB, TOP, make_algorithm("dp_gd", clip=1.0), 0,
                                                          StopCriteria(rounds=2))).final_state


def _forget(sim: Simulation, r: int) -> None:
    """Before round 6: the kept evaluations are gone (a state rebuilt by init) and their
    buffer holds garbage."""
    if r == 6 and "kept" in sim.state:
        sim.state["kept_at"][:] = np.nan
        sim.state["kept"][:] = 7.0


def _move_back(sim: Simulation, r: int) -> None:
    """Before round 6: the previous iterate is no longer the one the nodes evaluated."""
    if r == 6:
        sim.state = {**sim.state, "x_prev": sim.state["x_prev"] + 1e-3}


@pytest.mark.parametrize("tamper", [_forget, _move_back], ids=["forgotten", "x_prev changed"])
def test_a_stale_kept_evaluation_is_not_used(tamper) -> None:
    """A difference round whose kept evaluation is missing or belongs to another point
    evaluates both points: the two-point run's iterates, counted twice that round."""
    kept_x, kept_evals, _ = _per_round(KEEPING, tamper=tamper)
    two_x, _, _ = _per_round({**KEEPING, "keep_evaluations": False}, tamper=tamper)
    for a, b in zip(kept_x, two_x):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(kept_evals, np.where(np.arange(10) == 6, 2.0, 1.0), rtol=1e-15)


# ---- the BVR-L-SGD routine ---------------------------------------------------------------------
def test_bvr_routine_with_one_local_step_is_the_gd_routine() -> None:
    a = run("diff2", lr=0.3, restart_every=3, routine="bvr_local_sgd", local_steps=1)
    b = run("diff2", lr=0.3, restart_every=3)
    np.testing.assert_allclose(a.final_state["x"], b.final_state["x"], rtol=0, atol=1e-12)


def test_bvr_local_steps_are_accounted_without_the_1_over_p_factor() -> None:
    algo = make_algorithm("diff2", lr=0.01, restart_every=3, clip_grad=1.0, clip_diff=2.0, epsilon=3.0, rounds=6,
                          routine="bvr_local_sgd", local_steps=3, batch_size=8)
    res = make_engine("local").run(RunSpec("b", PROB, TOP, algo, 0, StopCriteria(rounds=6), record_every=6))
    prep = algo.prepare(PROB, [TOP])[0]
    assert prep.local is not None and prep.local.unit_sensitivity == pytest.approx(2 / 8)
    zs = [(prep.restart.noise_multiplier, 2), (prep.difference.noise_multiplier, 4), (prep.local.noise_multiplier, 12)]
    acc = pld.PLDAccountant(value_discretization_interval=1e-4)
    for z, k in zs:
        acc.compose(dpa.GaussianDpEvent(z), k)
    assert res.rows[-1]["epsilon"] == pytest.approx(acc.get_epsilon(1e-5), rel=1e-6)
    assert res.rows[-1]["epsilon"] <= 3.0


# ---- baselines ---------------------------------------------------------------------------------
def test_dp_sgd_draws_poisson_batches_and_counts_them() -> None:
    res = run("dp_sgd", stop=6, every=6, lr=0.2, clip=1.0, sampling_rate=0.3, noise_multiplier=1.5)
    assert res.status == "ok"
    # about q · n samples' gradients per round, counted in passes over the local data
    per_round = res.rows[-1]["grad_evals"] / 6
    assert 0.15 * P < per_round < 0.45 * P
    acc = pld.PLDAccountant(dpa.NeighboringRelation.REPLACE_ONE, value_discretization_interval=1e-4)
    acc.compose(dpa.PoissonSampledDpEvent(0.3, dpa.GaussianDpEvent(1.5)), 6)
    assert res.rows[-1]["epsilon"] == pytest.approx(acc.get_epsilon(1e-5), rel=1e-6)


def test_dp_fedavg_client_level_accounts_user_sampling() -> None:
    res = run("dp_fedavg", stop=4, every=4, level="client", client_rate=0.5, noise_multiplier=2.0, lr=0.05)
    assert res.status == "ok"
    acc = pld.PLDAccountant(value_discretization_interval=1e-4)
    acc.compose(dpa.PoissonSampledDpEvent(0.5, dpa.GaussianDpEvent(2.0)), 4)
    assert res.rows[-1]["epsilon"] == pytest.approx(acc.get_epsilon(1e-5), rel=1e-6)
    rec = run("dp_fedavg", stop=4, every=4, level="record", local_steps=2, noise_multiplier=2.0, lr=0.05)
    acc = pld.PLDAccountant(value_discretization_interval=1e-4)
    acc.compose(dpa.GaussianDpEvent(2.0), 8)
    assert rec.rows[-1]["epsilon"] == pytest.approx(acc.get_epsilon(1e-5), rel=1e-6)


# ---- engines ------------------------------------------------------------------------------------
@pytest.mark.parametrize("placement", ["central", "distributed"])
def test_sharded_engine_gives_the_local_table_and_epsilon(placement: str) -> None:
    params = dict(lr=0.2, restart_every=3, clip_grad=1.0, clip_diff=3.0, epsilon=3.0, rounds=7, placement=placement)
    ref = run("diff2", stop=7, every=3, **params)
    got = run("diff2", stop=7, every=3, engine=make_engine("sharded", num_shards=3), **params)
    assert ref.status == got.status == "ok", got.message
    for ra, rb in zip(ref.rows, got.rows):
        for k in ("grad_norm_sq", "epsilon", "grad_evals", "messages", "bytes"):
            assert rb[k] == pytest.approx(ra[k], rel=1e-9, abs=1e-12), k
    assert got.rows[-1]["epsilon"] > 0


def test_ray_engine_gives_the_local_table_and_epsilon() -> None:
    params = dict(lr=0.2, restart_every=3, clip_grad=1.0, clip_diff=3.0, epsilon=3.0, rounds=7)
    sgd = dict(lr=0.2, clip=1.0, sampling_rate=0.3, noise_multiplier=1.2, placement="distributed")
    refs = [run("diff2", stop=7, every=3, **params), run("dp_sgd", stop=7, every=3, **sgd)]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        engine = make_engine("ray", num_actors=2, num_cpus_per_actor=0.5)
        try:
            gots = [run("diff2", stop=7, every=3, engine=engine, **params),
                    run("dp_sgd", stop=7, every=3, engine=engine, **sgd)]
        finally:
            engine.close()
    finally:
        ray.shutdown()
    for ref, got in zip(refs, gots):
        assert ref.status == got.status == "ok", got.message
        assert "random streams" not in got.message
        for ra, rb in zip(ref.rows, got.rows):
            for k in ("grad_norm_sq", "epsilon", "grad_evals", "messages", "bytes"):
                assert rb[k] == pytest.approx(ra[k], rel=1e-9, abs=1e-12), k
        np.testing.assert_allclose(got.final_state["x"], ref.final_state["x"], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["dp_sgd", "dp_fedavg"])
def test_a_calibrated_run_accepts_its_parameters_with_defaults_filled_in(name: str) -> None:
    """An experiment passes every parameter, defaults filled in (the sweep dumps the params):
    a run calibrated to epsilon is not taken for one that also gives a noise multiplier."""
    given = make_algorithm(name, epsilon=2.0, rounds=5)
    again = make_algorithm(name, **given.params.model_dump(mode="json"))
    assert again.params.epsilon == 2.0 and again.params.noise_multiplier is None
    with pytest.raises(ValueError, match=rf"algorithm '{name}': noise_multiplier: give epsilon .* not both"):
        make_algorithm(name, epsilon=2.0, rounds=5, noise_multiplier=1.5)
    assert make_algorithm(name).prepare(PROB, [TOP])[0].mechanism.noise_multiplier == 1.0
