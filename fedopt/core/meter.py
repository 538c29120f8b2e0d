"""Meters: exact per-node and per-edge accounting of work and communication.

All messages go through one :class:`Channel`, and all oracle calls through a
counting oracle (``fedopt.problems.base.CountingOracle``), which record into a
:class:`Meter`. Recording is lazy (index arrays are appended and reduced with
``bincount`` when read), so counting costs O(1) Python work per vectorized call;
the engines reduce every counter at each record point (:meth:`Meter.flush`), so a
bad count fails the run there instead of surfacing after it.

Per-edge counts are keyed by the node pair ``(i, j)``, ``i < j``, not by an edge's
index in one graph: on a time-varying topology every graph numbers its edges
differently, and an edge present in several graphs accumulates in one place.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

#: Counter names reported per run and per node.
NODE_COUNTERS = ("grad_evals", "queries", "local_steps", "messages_sent", "floats_sent")


def message_seconds(latency: np.ndarray | float, bandwidth: np.ndarray | float, nbytes: float) -> np.ndarray:
    """The link-cost model: seconds to send ``nbytes`` bytes over links of the given
    latency (seconds) and bandwidth (bytes per second), ``latency + nbytes / bandwidth``.

    The :class:`Channel` sums it over every message; the rate problems price an edge with
    it through :mod:`fedopt.topology.linkcost`."""
    return np.asarray(latency, dtype=np.float64) + float(nbytes) / np.asarray(bandwidth, dtype=np.float64)


def _batch_weights(idx: list[np.ndarray], weights: list[np.ndarray | float]) -> np.ndarray:
    """The weights of the concatenated index batches ``idx`` (each batch's weight a number
    or one value per index), without a numpy call per batch for numbers."""
    lens = np.fromiter((i.size for i in idx), dtype=np.int64, count=len(idx))
    arrays = [k for k, w in enumerate(weights) if isinstance(w, np.ndarray)]
    if not arrays:
        return np.repeat(np.asarray(weights, dtype=np.float64), lens)
    out = np.repeat(np.asarray([0.0 if isinstance(w, np.ndarray) else w for w in weights], dtype=np.float64), lens)
    ends = np.cumsum(lens)
    for k in arrays:
        out[ends[k] - lens[k]:ends[k]] = weights[k]
    return out


class _LazyCounter:
    """Per-index counter accumulated from (indices, weights) batches."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._totals = np.zeros(size, dtype=np.float64)
        self._idx: list[np.ndarray] = []
        self._w: list[np.ndarray | float] = []
        self._scalar_total = 0.0
        #: Whether anything was ever added (or loaded): ``False`` means every count is zero.
        self.touched = False

    def add(self, idx: np.ndarray, weight: np.ndarray | float = 1.0) -> None:
        if np.ndim(idx) == 0:
            idx = np.asarray([idx])
        self._idx.append(idx)
        self._w.append(weight)
        self.touched = True

    def add_all(self, weight: float = 1.0) -> None:
        """Add ``weight`` to every index (one synchronous round of all nodes)."""
        self._scalar_total += weight
        self.touched = True

    def flush(self) -> None:
        if self._idx:
            idx = np.concatenate(self._idx)
            w = _batch_weights(self._idx, self._w)
            self._idx.clear()
            self._w.clear()
            if idx.size and (idx.min() < 0 or idx.max() >= self.size):
                bad = int(idx[(idx < 0) | (idx >= self.size)][0])
                raise ValueError(f"per-node count: node {bad} is outside 0..{self.size - 1}")
            self._totals += np.bincount(idx, weights=w, minlength=self.size)
        if self._scalar_total:
            self._totals += self._scalar_total
            self._scalar_total = 0.0

    @property
    def values(self) -> np.ndarray:
        self.flush()
        return self._totals

    def total(self) -> float:
        return float(self.values.sum())


class _PairCounter:
    """Counter keyed by node pair ``(i, j)``, ``i < j``, of ``n`` nodes, accumulated from
    ``(node_a, node_b, weights)`` batches (either order of the endpoints)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._keys = np.zeros(0, dtype=np.int64)  # i·n + j, sorted, unique
        self._totals = np.zeros(0, dtype=np.float64)
        self._a: list[np.ndarray] = []
        self._b: list[np.ndarray] = []
        self._w: list[np.ndarray | float] = []
        #: Whether anything was ever added (or loaded): ``False`` means no pair is counted.
        self.touched = False

    def add(self, node_a: np.ndarray, node_b: np.ndarray, weight: np.ndarray | float = 1.0) -> None:
        self._a.append(np.atleast_1d(node_a))
        self._b.append(np.atleast_1d(node_b))
        self._w.append(weight)
        self.touched = True

    def flush(self) -> None:
        if not self._a:
            return
        a, b = np.concatenate(self._a).astype(np.int64), np.concatenate(self._b).astype(np.int64)
        if a.shape != b.shape:
            raise ValueError(f"per-edge count: {a.size} first endpoints but {b.size} second endpoints")
        w = _batch_weights(self._a, self._w)
        self._a.clear()
        self._b.clear()
        self._w.clear()
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        bad = (lo < 0) | (hi >= self.n) | (lo == hi)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(f"per-edge count: ({int(a[k])}, {int(b[k])}) is not a pair of distinct nodes "
                             f"in 0..{self.n - 1}")
        self._merge(lo * self.n + hi, w)

    def _merge(self, keys: np.ndarray, weights: np.ndarray) -> None:
        uniq, inv = np.unique(np.concatenate((self._keys, keys)), return_inverse=True)
        self._totals = np.bincount(inv.ravel(), weights=np.concatenate((self._totals, weights)), minlength=len(uniq))
        self._keys = uniq

    def pairs(self) -> np.ndarray:
        """The pairs counted so far, ``[k, 2]`` with ``i < j``, sorted."""
        self.flush()
        return np.stack((self._keys // self.n, self._keys % self.n), axis=1)

    @property
    def values(self) -> np.ndarray:
        """The count of each pair of :meth:`pairs`."""
        self.flush()
        return self._totals

    def total(self) -> float:
        return float(self.values.sum())

    def load(self, pairs: np.ndarray, counts: np.ndarray) -> None:
        """Replace the counts by ``counts`` of ``pairs`` (``[k, 2]``; repeated pairs add up)."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        counts = np.asarray(counts, dtype=np.float64).reshape(-1)
        if len(pairs) != len(counts):
            raise ValueError(f"per-edge counts: {len(pairs)} pairs but {len(counts)} counts")
        self._a.clear()
        self._b.clear()
        self._w.clear()
        self._keys, self._totals = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        self.add(pairs[:, 0], pairs[:, 1], counts)
        self.flush()


class PrivacyRecord(Protocol):
    """What a meter reads of a private run's record of releases
    (:class:`fedopt.privacy.accounting.PrivacyLedger` is one)."""

    def record(self, event: Any, count: int = 1) -> None:
        """Add ``count`` releases of ``event``."""
        ...

    def epsilon(self) -> float:
        """The cumulative ε of the releases so far."""
        ...


@dataclass
class Meter:
    """Counts of one run, per node (and per edge for messages).

    ``edge_messages`` counts the messages of each node pair ``(i, j)``, ``i < j``,
    over every graph a run has gossiped on (:meth:`per_edge`).
    ``bytes_per_float`` converts float counts into bytes (8 for float64).
    ``sim_time`` is the simulated time reached; ``link_time`` the sum of the
    link-cost model's transfer times of all messages. ``privacy`` is a private run's
    record of its releases (opened by :meth:`Channel.open_privacy`, added to by
    :meth:`Channel.account` in the server step on the driver); like the
    counters it is reduced lazily: :meth:`flush` (at every record point) sets ``epsilon``
    from it, so the accountant runs once per checkpoint, not once per release.
    """

    n: int
    bytes_per_float: int = 8
    grad_evals: _LazyCounter = field(init=False)
    queries: _LazyCounter = field(init=False)
    local_steps: _LazyCounter = field(init=False)
    messages_sent: _LazyCounter = field(init=False)
    floats_sent: _LazyCounter = field(init=False)
    edge_messages: _PairCounter = field(init=False)
    communications: float = 0.0
    server_floats: float = 0.0
    rounds: int = 0
    sim_time: float = 0.0
    link_time: float = 0.0
    epsilon: float | None = None
    privacy: PrivacyRecord | None = None

    def __post_init__(self) -> None:
        for name in NODE_COUNTERS:
            setattr(self, name, _LazyCounter(self.n))
        self.edge_messages = _PairCounter(self.n)

    def untouched(self) -> bool:
        """Whether nothing was ever counted into this meter (no per-node or per-pair count
        added or loaded, every scalar count zero, no privacy record): a test that reduces
        nothing, for a scratch meter whose counts are usually thrown away."""
        return not (any(getattr(self, name).touched for name in NODE_COUNTERS) or self.edge_messages.touched
                    or self.communications or self.server_floats or self.link_time or self.rounds
                    or self.sim_time or self.privacy is not None)

    def flush(self) -> None:
        """Reduce every pending count now (a bad count raises here, at a record point)."""
        for name in NODE_COUNTERS:
            getattr(self, name).flush()
        self.edge_messages.flush()
        if self.privacy is not None:
            self.epsilon = float(self.privacy.epsilon())

    # ---- totals -------------------------------------------------------------
    def totals(self) -> dict[str, float]:
        floats = self.floats_sent.total() + self.server_floats
        return {
            "grad_evals": self.grad_evals.total(),
            "queries": self.queries.total(),
            "local_steps": self.local_steps.total(),
            "messages": self.communications,
            "floats": floats,
            "bytes": floats * self.bytes_per_float,
            "link_time": self.link_time,
        }

    def per_node(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name).values.copy() for name in NODE_COUNTERS}

    def per_edge(self) -> dict[tuple[int, int], float]:
        """Messages sent over each node pair ``(i, j)``, ``i < j`` (both directions, all graphs)."""
        pairs, counts = self.edge_messages.pairs(), self.edge_messages.values
        return dict(zip(map(tuple, pairs.tolist()), counts.tolist()))

    def state_dict(self) -> dict[str, object]:
        """Every count as plain arrays and numbers (``edge_pairs [k, 2]`` with their
        ``edge_messages [k]``); :meth:`load_state_dict` restores it."""
        d: dict[str, object] = {k: v.copy() for k, v in self.per_node().items()}
        d["edge_pairs"] = self.edge_messages.pairs()
        d["edge_messages"] = self.edge_messages.values.copy()
        d.update(communications=self.communications, server_floats=self.server_floats, rounds=self.rounds, sim_time=self.sim_time, link_time=self.link_time, epsilon=self.epsilon)
        d["privacy"] = copy.deepcopy(self.privacy)
        return d

    def load_state_dict(self, d: dict[str, object]) -> None:
        """Restore the counts of :meth:`state_dict` (a pair listed twice in ``edge_pairs``
        gets the sum of its counts, which is how meters of several shards merge)."""
        for name in NODE_COUNTERS:
            c: _LazyCounter = getattr(self, name)
            c.flush()
            totals = np.array(d[name], dtype=np.float64)
            if totals.shape != (self.n,):
                raise ValueError(f"meter state: {name} has shape {totals.shape}, expected ({self.n},)")
            c._totals = totals
            c.touched = True
        self.edge_messages.load(d["edge_pairs"], d["edge_messages"])  # type: ignore[arg-type]
        self.communications = float(d["communications"])  # type: ignore[arg-type]
        self.server_floats = float(d["server_floats"])  # type: ignore[arg-type]
        self.rounds = int(d["rounds"])  # type: ignore[arg-type]
        self.sim_time = float(d["sim_time"])  # type: ignore[arg-type]
        self.link_time = float(d["link_time"])  # type: ignore[arg-type]
        self.epsilon = d["epsilon"]  # type: ignore[assignment]
        self.privacy = copy.deepcopy(d.get("privacy"))  # type: ignore[assignment]


class Channel:
    """The one place where messages are sent and counted.

    ``exchange`` counts a symmetric gossip exchange on edges (both endpoints
    send ``floats`` numbers to each other: one *communication*, two messages,
    ``2·floats`` numbers, as DADAO's paper counts a gossip event); ``send`` counts one-way messages
    (client → server uploads, server → client broadcasts with ``dst=-1``).
    ``link_seconds`` (optional, per edge) is the link-cost model:
    ``latency + bytes / bandwidth`` of each message, summed into the meter.
    """

    def __init__(
        self,
        meter: Meter,
        edge_latency: np.ndarray | None = None,
        edge_bandwidth: np.ndarray | None = None,
    ) -> None:
        self.meter = meter
        self.edge_latency = edge_latency
        self.edge_bandwidth = edge_bandwidth

    def message_seconds(self, edges: np.ndarray, floats: int) -> np.ndarray:
        """Link-cost model: simulated seconds to send ``floats`` numbers over ``edges``."""
        if self.edge_latency is None:
            return np.zeros(np.shape(edges))
        b = floats * self.meter.bytes_per_float
        return message_seconds(self.edge_latency[edges], self.edge_bandwidth[edges], b)  # type: ignore[index]

    def exchange(self, node_a: np.ndarray, node_b: np.ndarray, edges: np.ndarray | None, floats: int) -> None:
        """Each ``node_a[k] <-> node_b[k]`` sends ``floats`` numbers both ways: one
        communication (two messages) per pair, counted on the pair's edge. ``edges``
        (the pairs' edge indices in the graph in force) price the link-cost model."""
        m = self.meter
        m.communications += float(np.shape(node_a)[0])
        m.messages_sent.add(node_a)
        m.messages_sent.add(node_b)
        m.floats_sent.add(node_a, float(floats))
        m.floats_sent.add(node_b, float(floats))
        m.edge_messages.add(node_a, node_b, 2.0)
        if edges is not None and self.edge_latency is not None:
            m.link_time += float(2.0 * self.message_seconds(edges, floats).sum())

    def send(self, src: np.ndarray, floats: int, count: float = 1.0) -> None:
        """Nodes ``src`` each send ``count`` messages of ``floats`` numbers (e.g. uploads)."""
        self.meter.communications += count * float(np.size(src))
        self.meter.messages_sent.add(src, count)
        self.meter.floats_sent.add(src, count * floats)

    def broadcast(self, dst: np.ndarray, floats: int) -> None:
        """The server sends one message of ``floats`` numbers to each node in ``dst``."""
        self.meter.communications += float(np.size(dst))
        self.meter.server_floats += float(np.size(dst)) * floats

    def open_privacy(self, record: PrivacyRecord) -> None:
        """Start the run's record of private releases (a private algorithm's ``init``); the
        meter's ``epsilon`` is read from it at every record point."""
        self.meter.privacy = record

    def account(self, event: Any, count: int = 1) -> None:
        """Record ``count`` private releases of ``event`` (a DP event) in the run's record."""
        if self.meter.privacy is None:
            raise ValueError("a private release was accounted before the run opened its privacy record "
                             "(ctx.channel.open_privacy in the algorithm's init)")
        self.meter.privacy.record(event, count)

    def send_all(self, floats: float, count: float = 1.0) -> None:
        """Every node sends ``count`` messages of ``floats`` numbers (one synchronous round)."""
        self.meter.communications += count * self.meter.n
        self.meter.messages_sent.add_all(count)
        self.meter.floats_sent.add_all(count * floats)
