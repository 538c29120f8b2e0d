"""Zeroth-order gradient estimators: randomized finite differences, GP and RFF surrogates."""

from fedopt.estimators.finite_diff import (
    DIRECTIONS,
    SCHEMES,
    coordinate_gradient,
    fd_gradient,
    sample_directions,
)

__all__ = ["DIRECTIONS", "SCHEMES", "coordinate_gradient", "fd_gradient", "sample_directions"]
