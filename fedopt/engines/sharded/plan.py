"""Plans of shard calls for a block of events, exact to the level order.

The driver cuts a block of events into dependency levels (:mod:`fedopt.core.levels`).
A level's events touch pairwise-distinct nodes, so within a level the shards
can work independently, except on gossip events whose endpoints live in two
shards (*cross* events). Those are done in two phases: each shard computes
``gossip_message`` for its endpoints, then each applies ``on_gossip`` with the
peer's message.

Per shard, the levels between two of *its* cross levels need nobody else, so
one call runs them all: a shard's call ``j`` finishes the ``on_gossip`` of its
previous cross level, runs every later level's compute and intra-shard gossip
events, and ends with the messages that start its next cross level. The peer
messages a call needs are the outputs of the peers' calls that ended at that
level; the driver passes them as handles of those calls' outputs (see
:class:`~fedopt.engines.sharded.transport.Transport`), so a transport can feed
them from shard to shard without the driver waiting, and every shard runs its
calls in submission order. The dependencies are explicit, so the result does
not depend on how a transport schedules the shards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedopt.core.arrays import IntArray
from fedopt.core.levels import LevelSchedule


@dataclass
class ShardCall:
    """One call of one shard: ``plan`` for :meth:`ShardWorker.run_segment`, with its inputs.

    ``inputs`` lists ``(shard, call index)`` of the calls whose outputs (peer
    messages) the call reads, in the order ``plan["pending"]["src"]`` refers to.
    ``end`` is the level whose cross phase the call starts (``inf`` for the last).
    """

    shard: int
    index: int
    end: float
    plan: dict[str, Any]
    inputs: list[tuple[int, int]] = field(default_factory=list)


def plan_block(sched: LevelSchedule, owner: IntArray, n_shards: int) -> tuple[list[ShardCall], int]:
    """The shard calls for a level schedule, in a valid submission order.

    Returns the calls and the number of cross-shard gossip events.
    """
    ev = sched.events
    m = len(ev)
    a, b, t, e = ev.node_a, ev.node_b, ev.t, ev.edge
    ends = sched.bounds[2::2]
    lv = np.searchsorted(ends, np.arange(m), side="right")
    is_g = b >= 0
    oa = owner[a]
    ob = np.where(is_g, owner[np.where(is_g, b, 0)], oa)
    cross = is_g & (oa != ob)

    # endpoint records of cross events: one per (event, side), ranked per (shard, level)
    xi = np.flatnonzero(cross)
    nx_ = len(xi)
    rec_ev = np.concatenate((xi, xi))
    rec_side = np.concatenate((np.zeros(nx_, np.int64), np.ones(nx_, np.int64)))
    rec_sh = np.concatenate((oa[xi], ob[xi]))
    rec_lv = lv[rec_ev]
    order = np.lexsort((rec_ev, rec_lv, rec_sh))
    rank = np.zeros(2 * nx_, dtype=np.int64)
    if nx_:
        s_sh, s_lv = rec_sh[order], rec_lv[order]
        new = np.ones(2 * nx_, dtype=bool)
        new[1:] = (s_sh[1:] != s_sh[:-1]) | (s_lv[1:] != s_lv[:-1])
        start = np.maximum.accumulate(np.where(new, np.arange(2 * nx_), 0))
        rank[order] = np.arange(2 * nx_) - start
    peer_of = np.concatenate((np.arange(nx_, 2 * nx_), np.arange(nx_)))
    sorted_sh = rec_sh[order]
    sorted_lv = rec_lv[order]
    shard_lo = np.searchsorted(sorted_sh, np.arange(n_shards), "left")
    shard_hi = np.searchsorted(sorted_sh, np.arange(n_shards), "right")

    sync: list[np.ndarray] = []
    for s in range(n_shards):
        sync.append(np.unique(sorted_lv[shard_lo[s]:shard_hi[s]]))

    def records(s: int, level: int) -> np.ndarray:
        lo, hi = shard_lo[s], shard_hi[s]
        i0 = lo + np.searchsorted(sorted_lv[lo:hi], level, "left")
        i1 = lo + np.searchsorted(sorted_lv[lo:hi], level, "right")
        return order[i0:i1]  # record ids, in output-row order (by event)

    calls: list[ShardCall] = []
    for s in range(n_shards):
        ci = np.flatnonzero(~is_g & (oa == s))
        gi = np.flatnonzero(is_g & ~cross & (oa == s))
        c_lv, g_lv = lv[ci], lv[gi]
        levels = sync[s].tolist()
        bounds = [-1, *levels, np.iinfo(np.int64).max]
        for j in range(len(bounds) - 1):
            lo_l, hi_l = bounds[j], bounds[j + 1]
            c0, c1 = np.searchsorted(c_lv, [lo_l, hi_l], "right")
            g0, g1 = np.searchsorted(g_lv, [lo_l, hi_l], "right")
            cs, gs = ci[c0:c1], gi[g0:g1]
            plan: dict[str, Any] = {
                "c_nodes": a[cs], "c_t": t[cs], "c_lv": lv[cs],
                "g_a": a[gs], "g_b": b[gs], "g_t": t[gs], "g_e": e[gs], "g_lv": lv[gs],
            }
            inputs: list[tuple[int, int]] = []
            if j > 0:
                rec = records(s, lo_l)
                pr = peer_of[rec]
                p_sh = rec_sh[pr]
                uniq = np.unique(p_sh)
                src = np.searchsorted(uniq, p_sh)
                for p in uniq.tolist():
                    inputs.append((p, int(np.searchsorted(sync[p], lo_l))))
                ev_ids = rec_ev[rec]
                side = rec_side[rec]
                mine = np.where(side == 0, a[ev_ids], b[ev_ids])
                other = np.where(side == 0, b[ev_ids], a[ev_ids])
                plan["pending"] = {"side": side, "mine": mine, "other": other, "t": t[ev_ids], "edge": e[ev_ids],
                                   "src": src, "prow": rank[pr]}
            if j < len(bounds) - 2:
                rec = records(s, hi_l)
                ev_ids = rec_ev[rec]
                plan["out"] = {"nodes": np.where(rec_side[rec] == 0, a[ev_ids], b[ev_ids]), "t": t[ev_ids]}
            elif len(cs) == 0 and len(gs) == 0 and j == 0:
                continue  # this shard has nothing in the block
            calls.append(ShardCall(s, j, float(hi_l) if j < len(bounds) - 2 else float("inf"), plan, inputs))
    calls.sort(key=lambda c: (c.end, c.shard))
    return calls, nx_
