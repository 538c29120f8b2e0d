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

A shard's calls of one block share one plan (:func:`plan_block`, sent to the shard
once): flat arrays of its events and cross-shard endpoints with the offsets of each
call's part, all computed here with whole-block array operations, so that a call
carries only its index and the peer messages and a shard slices its work out of the
plan without any set or dictionary work per level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedopt.core.arrays import IntArray
from fedopt.core.levels import LevelSchedule


@dataclass
class ShardCall:
    """One call of one shard: segment ``index`` of the shard's plan
    (:meth:`ShardWorker.run_segment`), with its inputs.

    ``inputs`` lists ``(shard, call index)`` of the calls whose outputs (peer
    messages) the call reads, in the order in which the plan's ``x_pidx`` indexes
    their concatenation. ``end`` is the level whose cross phase the call starts
    (``inf`` for the last).
    """

    shard: int
    index: int
    end: float
    inputs: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class BlockPlan:
    """The shard calls of a block in a valid submission order, each shard's plan
    (``plans[s]``, see :func:`plan_block`) and the number of cross-shard gossip events."""

    calls: list[ShardCall]
    plans: list[dict[str, Any]]
    n_cross: int


def _starts(*keys: np.ndarray) -> np.ndarray:
    """Where a run of equal ``keys`` tuples begins in sequences sorted by them (a mask)."""
    k = len(keys[0])
    new = np.ones(k, dtype=bool)
    if k > 1:
        diff = np.zeros(k - 1, dtype=bool)
        for key in keys:
            diff |= key[1:] != key[:-1]
        new[1:] = diff
    return new


def plan_block(sched: LevelSchedule, owner: IntArray, n_shards: int) -> BlockPlan:
    """The shard calls for a level schedule and every shard's plan of the block.

    Shard ``s``'s plan holds, as flat arrays:

    * its own events (compute and intra-shard gossip) in schedule order, ``ev_a``,
      ``ev_b`` (``-1`` for compute), ``ev_t``, ``ev_e``, cut into *runs* of one level and
      one kind: run ``r`` is ``[run_at[r], run_at[r + 1])``, gossip if ``run_g[r]``;
      call ``j`` runs runs ``[seg_run[j], seg_run[j + 1])``;
    * its endpoints of cross-shard gossip, per cross level ``c`` (in level order)
      ``[x_at[c], x_at[c + 1])``: the first endpoints of their events (``x_first[c]``
      of them) then the second ones, each by event: the shard's node ``x_mine``, the peer
      ``x_other``, the time ``x_t``, the edge ``x_edge``, and ``x_pidx``, the row of the
      peer's message in the concatenation of the call's inputs. Call ``j`` ends with the
      messages of cross level ``j`` (in this order) and call ``j + 1`` finishes it.
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

    # endpoint records of cross events: one per (event, side), sorted by (shard, level, side, event)
    xi = np.flatnonzero(cross)
    nx_ = len(xi)
    rec_ev = np.concatenate((xi, xi))
    rec_side = np.concatenate((np.zeros(nx_, np.int64), np.ones(nx_, np.int64)))
    rec_sh = np.concatenate((oa[xi], ob[xi]))
    rec_lv = lv[rec_ev]
    order = np.lexsort((rec_ev, rec_side, rec_lv, rec_sh))
    s_sh, s_lv, s_side, s_ev = rec_sh[order], rec_lv[order], rec_side[order], rec_ev[order]
    new = _starts(s_sh, s_lv)
    gstart = np.flatnonzero(new)  # groups: one (shard, cross level), in sorted order
    gid = np.cumsum(new) - 1
    rank_sorted = np.arange(2 * nx_) - gstart[gid] if nx_ else np.zeros(0, np.int64)
    g_sh, g_lv = s_sh[gstart], s_lv[gstart]
    g_size = np.diff(np.append(gstart, 2 * nx_))
    g_first = np.bincount(gid[s_side == 0], minlength=len(gstart))
    shard_g = np.searchsorted(g_sh, np.arange(n_shards + 1))  # shard s: groups [shard_g[s], shard_g[s + 1])

    # the peer record of each sorted record: its shard, group and row in the peer's output
    pos = np.empty(2 * nx_, dtype=np.int64)
    pos[order] = np.arange(2 * nx_)
    peer_pos = pos[np.concatenate((np.arange(nx_, 2 * nx_), np.arange(nx_)))[order]]
    p_sh, p_gid, p_rank = s_sh[peer_pos], gid[peer_pos], rank_sorted[peer_pos]
    # a call's inputs: the peer shards of its group in shard order, with their outputs concatenated
    key = gid * n_shards + p_sh
    uk, first_q, inv = np.unique(key, return_index=True, return_inverse=True)
    uk_g, uk_p = uk // n_shards, uk % n_shards
    uk_peer_g = p_gid[first_q]
    uk_size = g_size[uk_peer_g]
    excl = np.cumsum(uk_size) - uk_size
    g_new = _starts(uk_g)
    excl = excl - excl[np.flatnonzero(g_new)][np.cumsum(g_new) - 1]
    pidx = excl[inv.reshape(-1)] + p_rank
    uk_seg = uk_peer_g - shard_g[uk_p]  # the peer's call that ends at this level
    g_uk = np.searchsorted(uk_g, np.arange(len(gstart) + 1))  # group g: inputs [g_uk[g], g_uk[g + 1])
    x_mine = np.where(s_side == 0, a[s_ev], b[s_ev])
    x_other = np.where(s_side == 0, b[s_ev], a[s_ev])

    # each shard's own events in schedule order, cut into runs of one (level, kind)
    own = np.flatnonzero(~cross)
    own = own[np.argsort(oa[own], kind="stable")]
    o_sh, o_lv, o_g = oa[own], lv[own], is_g[own]
    run_mask = _starts(o_sh, o_lv, o_g)
    run_at = np.flatnonzero(run_mask)
    r_sh, r_lv = o_sh[run_at], o_lv[run_at]
    shard_ev = np.searchsorted(o_sh, np.arange(n_shards + 1))
    shard_run = np.searchsorted(r_sh, np.arange(n_shards + 1))

    plans: list[dict[str, Any]] = []
    calls: list[ShardCall] = []
    uk_p_l, uk_seg_l, g_uk_l = uk_p.tolist(), uk_seg.tolist(), g_uk.tolist()
    for s in range(n_shards):
        g0, g1 = int(shard_g[s]), int(shard_g[s + 1])
        e0, e1 = int(shard_ev[s]), int(shard_ev[s + 1])
        r0, r1 = int(shard_run[s]), int(shard_run[s + 1])
        q0 = int(gstart[g0]) if g0 < len(gstart) else 2 * nx_
        q1 = int(gstart[g1]) if g1 < len(gstart) else 2 * nx_
        sync = g_lv[g0:g1]
        n_sync = g1 - g0
        idx = own[e0:e1]
        run_seg = np.searchsorted(sync, r_lv[r0:r1], "left")
        plans.append({
            "ev_a": a[idx], "ev_b": b[idx], "ev_t": t[idx], "ev_e": e[idx],
            "run_at": np.append(run_at[r0:r1] - e0, e1 - e0), "run_g": o_g[run_at[r0:r1]],
            "seg_run": np.searchsorted(run_seg, np.arange(n_sync + 2), "left"),
            "x_mine": x_mine[q0:q1], "x_other": x_other[q0:q1], "x_t": t[s_ev[q0:q1]], "x_edge": e[s_ev[q0:q1]],
            "x_pidx": pidx[q0:q1], "x_at": np.append(gstart[g0:g1] - q0, q1 - q0),
            "x_first": g_first[g0:g1],
        })
        if n_sync == 0 and e1 == e0:
            continue  # this shard has nothing in the block
        sync_l = sync.tolist()
        for j in range(n_sync + 1):
            inputs: list[tuple[int, int]] = []
            if j > 0:
                g = g0 + j - 1
                inputs = [(uk_p_l[u], uk_seg_l[u]) for u in range(g_uk_l[g], g_uk_l[g + 1])]
            calls.append(ShardCall(s, j, float(sync_l[j]) if j < n_sync else float("inf"), inputs))
    calls.sort(key=lambda c: (c.end, c.shard))
    return BlockPlan(calls, plans, nx_)
