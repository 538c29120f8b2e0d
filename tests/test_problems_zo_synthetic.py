"""The FZooS synthetic objectives: closed-form optimum, heterogeneity, exact gradients."""

from __future__ import annotations

import numpy as np
import pytest

from fedopt.problems import problem_factory
from fedopt.problems.base import ProblemParamError


@pytest.mark.parametrize("C", [0.5, 5.0, 50.0])
def test_quadratic_global_objective_and_optimum_do_not_depend_on_C(C: float) -> None:
    d = 300
    prob = problem_factory("dirichlet_quadratic")(n=5, d=d, C=C, seed=3)
    np.testing.assert_allclose(prob.x_star, np.full(d, 0.475), atol=1e-12)
    assert prob.f_star == pytest.approx(-0.025 + 0.1 / d, abs=1e-14)
    rng = np.random.default_rng(0)
    u = rng.uniform(0, 1, d)
    x = -10 + 20 * u
    assert prob.global_value(u) == pytest.approx(((x * x + x).sum() + 1) / (10 * d), rel=1e-12)
    assert np.abs(prob.global_grad(prob.x_star)).max() < 1e-14
    assert prob.x0.shape == (d,) and ((prob.x0 >= 0) & (prob.x0 <= 1)).all()


def test_heterogeneity_grows_with_C() -> None:
    spread = []
    for C in (0.5, 5.0, 50.0):
        prob = problem_factory("dirichlet_quadratic")(n=5, d=50, C=C, seed=1)
        g = prob.grad(np.full((5, 50), 0.475), np.arange(5))  # local gradients at the global optimum
        spread.append(float(np.linalg.norm(g, axis=1).mean()))
    assert spread[0] < spread[1] < spread[2] and spread[0] > 0


def test_inputs_are_clipped_to_the_box() -> None:
    prob = problem_factory("dirichlet_quadratic")(n=2, d=4, C=5.0, seed=0)
    X = np.array([[1.5, -0.2, 0.3, 0.3], [1.0, 0.0, 0.3, 0.3]])
    v = prob.value(X, np.array([0, 0]))
    assert v[0] == v[1]
    assert (prob.grad(X[:1], np.array([0]))[0, :2] == 0).all()


@pytest.mark.parametrize("name", ["dirichlet_quadratic", "dirichlet_ackley", "dirichlet_levy"])
def test_gradients_match_central_differences(name: str) -> None:
    prob = problem_factory(name)(n=3, d=7, C=5.0, seed=2)
    rng = np.random.default_rng(1)
    X = rng.uniform(0.05, 0.95, (3, 7))
    nodes = np.arange(3)
    h = 1e-6
    num = np.empty_like(X)
    for j in range(7):
        E = np.zeros_like(X)
        E[:, j] = h
        num[:, j] = (prob.value(X + E, nodes) - prob.value(X - E, nodes)) / (2 * h)
    np.testing.assert_allclose(prob.grad(X, nodes), num, rtol=1e-6, atol=1e-7)


def test_ackley_and_levy_at_their_centres() -> None:
    """At ``x = c_i`` client ``i`` sees ``g(0)``: 0 for Ackley, Levy's closed-form value at ``w = 3/4``."""
    import math
    d = 5
    levy0 = math.sin(0.75 * math.pi) ** 2 + (d - 2) * 0.0625 * (1 + 10 * math.sin(0.75 * math.pi + 1) ** 2) \
        + 0.0625 * (1 + math.sin(1.5 * math.pi) ** 2)
    for name, want in (("dirichlet_ackley", 0.0), ("dirichlet_levy", levy0)):
        prob = problem_factory(name)(n=2, d=d, C=0.5, seed=4)
        u = (prob.c - prob.lb) / (prob.ub - prob.lb)
        np.testing.assert_allclose(prob.value(u, np.arange(2)), want, atol=1e-12)


@pytest.mark.parametrize("key,kw", [("C", {"C": -1.0}), ("d", {"d": 1}), ("ub", {"lb": 1.0, "ub": 0.0})])
def test_bad_parameters_name_the_key(key: str, kw: dict) -> None:
    with pytest.raises(ProblemParamError) as err:
        problem_factory("dirichlet_levy")(n=3, **kw)
    assert err.value.key == key
