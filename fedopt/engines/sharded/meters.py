"""The run's meter from the driver's and the shards' meters."""

from __future__ import annotations

from typing import Any

import numpy as np

from fedopt.core.meter import NODE_COUNTERS, Meter


def merge_meters(driver: Meter, shards: list[dict[str, Any]]) -> Meter:
    """The run's meter: the driver's counts plus every shard's (per-node counters add up
    node by node, per-edge counts pair by pair)."""
    d = driver.state_dict()
    eps = [s["epsilon"] for s in shards if s["epsilon"] is not None]
    for s in shards:
        for name in (*NODE_COUNTERS, "communications", "server_floats", "link_time"):
            d[name] = d[name] + s[name]  # type: ignore[operator]
    for name in ("edge_pairs", "edge_messages"):  # a pair counted by several shards adds up on loading
        d[name] = np.concatenate([d[name], *(s[name] for s in shards)])  # type: ignore[list-item]
    if d["epsilon"] is None and eps:
        d["epsilon"] = max(eps)
    out = Meter(n=driver.n, bytes_per_float=driver.bytes_per_float)
    out.load_state_dict(d)
    return out
