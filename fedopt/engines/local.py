"""The ``local`` engine: every node's state as arrays in one process (the default)."""

from __future__ import annotations

from collections.abc import Callable

from fedopt.engines.base import Engine, RunResult, RunSpec, Simulation, register_engine


@register_engine("local")
class LocalEngine(Engine):
    """Vectorized in-process simulation: rounds and event levels are array calls."""

    name = "local"

    def _run(self, spec: RunSpec, progress: Callable[[float], None] | None = None) -> RunResult:
        return Simulation(spec).run(progress)
