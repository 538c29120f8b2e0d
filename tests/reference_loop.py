"""The plain one-event-at-a-time simulation, kept as the reference for level batching.

It draws the same event stream as the engine (same clocks, same ``"clocks"``
stream) and applies events strictly in time order, one per handler call.
"""

from __future__ import annotations

import numpy as np

from fedopt.core.clocks import EventStream, PoissonClocks
from fedopt.engines.base import RunSpec, Simulation


def run_sequential(spec: RunSpec, t_end: float) -> Simulation:
    """Run ``spec`` up to ``t_end`` one event at a time; returns the simulation."""
    sim = Simulation(spec)
    sim.start()
    algo, ctx, state = sim.algo, sim.ctx, sim.state
    node_rates, edge_rates = algo.clock_rates(ctx)
    stream = EventStream(PoissonClocks(node_rates, ctx.topology.edges, edge_rates), sim.rng.fresh("clocks"))
    block = stream.until(t_end)
    for k in range(len(block)):
        t = block.t[k : k + 1]
        a, b = int(block.node_a[k]), int(block.node_b[k])
        if b < 0:
            algo.on_compute(state, ctx, np.array([a]), t)
        else:
            nodes = np.array([a, b])
            tt = np.concatenate((t, t))
            own = algo.gossip_message(state, ctx, nodes, tt)
            algo.on_gossip(state, ctx, nodes, tt, own, own[::-1].copy())
            ctx.channel.exchange(nodes[:1], nodes[1:], block.edge[k : k + 1], own.shape[1])
    sim.n_events = len(block)
    sim.t = t_end
    return sim


def run_batched(spec: RunSpec, t_end: float) -> Simulation:
    """The engine's level-batched path up to ``t_end``."""
    sim = Simulation(spec)
    sim.start()
    sim.apply_events(t_end)
    sim.t = t_end
    return sim
