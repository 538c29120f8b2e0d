"""Shared by the engine-equivalence tests: the run spec they compare and the row comparison."""

from __future__ import annotations

import math
from typing import Any

import pytest

from fedopt.algorithms import make_algorithm
from fedopt.algorithms.base import EventAlgorithm
from fedopt.engines.base import RunSpec, StopCriteria

#: Row columns that legitimately differ between engines.
SKIP_COLUMNS = {"wall_s"}

#: Parameters of the every-algorithm tests where an algorithm's defaults are sized for a
#: paper's experiment rather than for a check of engines and layouts: FZooS's surrogate has
#: M = 10,000 random Fourier features and a 600-query history by default (about 20 s a run of
#: these tests on two cores); a small surrogate exercises the same code paths (the history
#: still overflows and drops its oldest queries). The defaults run in ``test_fzoos.py``.
GENERIC_PARAMS: dict[str, dict[str, Any]] = {
    "fzoos": {"rff_features": 200, "history": 120},
}


def generic_params(name: str, **params: Any) -> dict[str, Any]:
    """The parameters of algorithm ``name`` in the every-algorithm tests: its
    :data:`GENERIC_PARAMS` entry updated by ``params``."""
    return {**GENERIC_PARAMS.get(name, {}), **params}


def equivalence_spec(name: str, seed: int, problem: Any, topology: Any, **params: Any) -> RunSpec:
    """A short run of algorithm ``name`` (:func:`generic_params`): 4 units of simulated time
    (event-based) or 6 rounds."""
    algo = make_algorithm(name, **generic_params(name, **params))
    if isinstance(algo, EventAlgorithm):
        stop, every = StopCriteria(time=4.0), 1.0
    else:
        stop, every = StopCriteria(rounds=6), 2.0
    return RunSpec(f"{name}-{seed}", problem, topology, algo, seed, stop, record_every=every)


def assert_same_rows(a: list[dict], b: list[dict]) -> None:
    """The same checkpoints, column by column, to 1e-9 relative (NaN and None must match)."""
    assert len(a) == len(b) > 1
    for ra, rb in zip(a, b):
        assert set(ra) == set(rb)
        for k, va in ra.items():
            if k in SKIP_COLUMNS:
                continue
            vb = rb[k]
            if va is None or vb is None:
                assert va is vb, k
            elif isinstance(va, float) and math.isnan(va):
                assert math.isnan(vb), k
            else:
                assert vb == pytest.approx(va, rel=1e-9, abs=1e-12), (k, va, vb)
