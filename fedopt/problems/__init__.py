"""Objectives, data sets and partitions; importing this package registers the built-ins."""

from fedopt.problems import empirical, quadratic, torch_model, zo_blackbox, zo_synthetic  # noqa: F401  (torch imported lazily)
from fedopt.problems.base import CountingOracle, Problem, available_problems, problem_factory, register_problem
from fedopt.problems.data import available_sources, load_dataset, register_source
from fedopt.problems.empirical import EmpiricalProblem, LeastSquares, Logistic, NonconvexLogistic
from fedopt.problems.partition import Partition, available_partitions, make_partition, register_partition
from fedopt.problems.torch_model import TorchModelProblem

__all__ = [
    "CountingOracle",
    "EmpiricalProblem",
    "LeastSquares",
    "Logistic",
    "NonconvexLogistic",
    "Partition",
    "Problem",
    "TorchModelProblem",
    "available_partitions",
    "available_problems",
    "available_sources",
    "load_dataset",
    "make_partition",
    "problem_factory",
    "register_partition",
    "register_problem",
    "register_source",
]
