"""The ``ray`` engine: Ray actors that host the shards of the sharded core (see :mod:`fedopt.engines.ray.engine`).

Importing this package registers the engine; ``make_engine("ray", num_actors=...)``
imports it on first use.
"""

from __future__ import annotations

import inspect
from typing import Any

from fedopt.engines.base import register_engine
from fedopt.engines.ray.engine import RayEngine, RaySimulation


@register_engine("ray")
def _make_ray_engine(**options: Any) -> RayEngine:
    return RayEngine(**options)


_make_ray_engine.__signature__ = inspect.signature(RayEngine)  # type: ignore[attr-defined]  # config checks options


__all__ = ["RayEngine", "RaySimulation"]
