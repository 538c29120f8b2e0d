"""Meters: exact per-node and per-edge accounting of work and communication.

All messages go through one :class:`Channel`, and all oracle calls through a
counting oracle (``fedopt.problems.base.CountingOracle``), which record into a
:class:`Meter`. Recording is lazy (index arrays are appended and reduced with
``bincount`` when read), so counting costs O(1) Python work per vectorized call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Counter names reported per run and per node.
NODE_COUNTERS = ("grad_evals", "queries", "local_steps", "messages_sent", "floats_sent")


class _LazyCounter:
    """Per-index counter accumulated from (indices, weights) batches."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._totals = np.zeros(size, dtype=np.float64)
        self._idx: list[np.ndarray] = []
        self._w: list[np.ndarray | float] = []
        self._scalar_total = 0.0

    def add(self, idx: np.ndarray, weight: np.ndarray | float = 1.0) -> None:
        if np.ndim(idx) == 0:
            idx = np.asarray([idx])
        self._idx.append(idx)
        self._w.append(weight)

    def add_all(self, weight: float = 1.0) -> None:
        """Add ``weight`` to every index (one synchronous round of all nodes)."""
        self._scalar_total += weight

    def flush(self) -> None:
        if self._idx:
            idx = np.concatenate(self._idx)
            ws = [
                np.broadcast_to(np.asarray(w, dtype=np.float64), i.shape)
                for i, w in zip(self._idx, self._w)
            ]
            self._totals += np.bincount(idx, weights=np.concatenate(ws), minlength=self.size)
            self._idx.clear()
            self._w.clear()
        if self._scalar_total:
            self._totals += self._scalar_total
            self._scalar_total = 0.0

    @property
    def values(self) -> np.ndarray:
        self.flush()
        return self._totals

    def total(self) -> float:
        return float(self.values.sum())


@dataclass
class Meter:
    """Counts of one run, per node (and per edge for messages).

    ``bytes_per_float`` converts float counts into bytes (8 for float64).
    ``sim_time`` is the simulated time reached; ``link_time`` the sum of the
    link-cost model's transfer times of all messages.
    """

    n: int
    m: int = 0
    bytes_per_float: int = 8
    grad_evals: _LazyCounter = field(init=False)
    queries: _LazyCounter = field(init=False)
    local_steps: _LazyCounter = field(init=False)
    messages_sent: _LazyCounter = field(init=False)
    floats_sent: _LazyCounter = field(init=False)
    edge_messages: _LazyCounter = field(init=False)
    communications: float = 0.0
    server_floats: float = 0.0
    rounds: int = 0
    sim_time: float = 0.0
    link_time: float = 0.0
    epsilon: float | None = None

    def __post_init__(self) -> None:
        for name in NODE_COUNTERS:
            setattr(self, name, _LazyCounter(self.n))
        self.edge_messages = _LazyCounter(max(self.m, 1))

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

    def state_dict(self) -> dict[str, object]:
        d: dict[str, object] = {k: v.copy() for k, v in self.per_node().items()}
        d["edge_messages"] = self.edge_messages.values.copy()
        d.update(communications=self.communications, server_floats=self.server_floats, rounds=self.rounds, sim_time=self.sim_time, link_time=self.link_time, epsilon=self.epsilon)
        return d

    def load_state_dict(self, d: dict[str, object]) -> None:
        for name in (*NODE_COUNTERS, "edge_messages"):
            c: _LazyCounter = getattr(self, name)
            c.flush()
            c._totals = np.array(d[name], dtype=np.float64)
        self.communications = float(d["communications"])  # type: ignore[arg-type]
        self.server_floats = float(d["server_floats"])  # type: ignore[arg-type]
        self.rounds = int(d["rounds"])  # type: ignore[arg-type]
        self.sim_time = float(d["sim_time"])  # type: ignore[arg-type]
        self.link_time = float(d["link_time"])  # type: ignore[arg-type]
        self.epsilon = d["epsilon"]  # type: ignore[assignment]


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
        from fedopt.topology.linkcost import message_seconds

        b = floats * self.meter.bytes_per_float
        return message_seconds(self.edge_latency[edges], self.edge_bandwidth[edges], b)  # type: ignore[index]

    def exchange(self, node_a: np.ndarray, node_b: np.ndarray, edges: np.ndarray | None, floats: int) -> None:
        """Each ``node_a[k] <-> node_b[k]`` sends ``floats`` numbers both ways: one
        communication (two messages) per pair."""
        m = self.meter
        m.communications += float(np.shape(node_a)[0])
        m.messages_sent.add(node_a)
        m.messages_sent.add(node_b)
        m.floats_sent.add(node_a, float(floats))
        m.floats_sent.add(node_b, float(floats))
        if edges is not None:
            m.edge_messages.add(edges, 2.0)
            if self.edge_latency is not None:
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

    def send_all(self, floats: float, count: float = 1.0) -> None:
        """Every node sends ``count`` messages of ``floats`` numbers (one synchronous round)."""
        self.meter.communications += count * self.meter.n
        self.meter.messages_sent.add_all(count)
        self.meter.floats_sent.add_all(count * floats)
