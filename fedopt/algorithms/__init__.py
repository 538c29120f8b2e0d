"""Algorithms; importing this package registers the built-ins."""

from fedopt.algorithms.base import (
    Algorithm,
    Complexity,
    Context,
    EventAlgorithm,
    FederatedAlgorithm,
    Layout,
    Prepared,
    RoundAlgorithm,
    algorithm_class,
    available_algorithms,
    make_algorithm,
    register_algorithm,
)
from fedopt.algorithms.decentralized import dgd, gossip_sgd  # noqa: F401
from fedopt.algorithms.federated import fedavg, fedzo, fzoos, gd, zo_fedavg, zo_fedprox, zo_scaffold  # noqa: F401
from fedopt.algorithms.private import diff2, dp_fedavg, dp_gd, dp_sgd  # noqa: F401
from fedopt.algorithms.decentralized import adom_plus, continuized, dadao, gradient_tracking, msda  # noqa: F401

__all__ = [
    "Algorithm",
    "Complexity",
    "Context",
    "EventAlgorithm",
    "FederatedAlgorithm",
    "Layout",
    "Prepared",
    "RoundAlgorithm",
    "algorithm_class",
    "available_algorithms",
    "make_algorithm",
    "register_algorithm",
]
