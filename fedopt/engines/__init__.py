"""Engines: where state lives and in what order handlers run (``local``; ``sharded``, ``ray`` and ``mpi``,
transports over the engine-neutral sharded core :mod:`fedopt.engines.sharded`)."""

from fedopt.engines.base import Engine, RunResult, RunSpec, StopCriteria, available_engines, make_engine

__all__ = ["Engine", "RunResult", "RunSpec", "StopCriteria", "available_engines", "make_engine"]
