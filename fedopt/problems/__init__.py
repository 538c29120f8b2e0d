"""Objectives, data sets and partitions; importing this package registers the built-ins."""

from fedopt.problems import quadratic  # noqa: F401
from fedopt.problems.base import CountingOracle, Problem, available_problems, problem_factory, register_problem

__all__ = ["CountingOracle", "Problem", "available_problems", "problem_factory", "register_problem"]
