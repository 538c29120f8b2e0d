"""One seed per run, split into named, independent random streams.

Two kinds of stream, both derived from the run seed:

* **Run-level streams** (``streams["clocks"]``): a :class:`numpy.random.Generator`
  seeded from ``SeedSequence(seed, spawn_key=(crc32(name),))``, so that drawing
  more numbers from one stream (say ``"clocks"``) never moves another (say
  ``"noise"``), and the same ``(seed, name)`` always gives the same stream in
  every process. They serve draws made once for the whole run on the driver:
  event clocks, initial points, a server's client sampling.
* **Per-node streams** (``streams.per_node["sampling"]``, or ``ctx.node_rng(name)``
  in an algorithm): draws made *at* nodes inside handlers (minibatches, noise,
  estimator directions). Node ``i``'s numbers are the counter-based generator
  Philox4x64-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy
  as 1, 2, 3", SC 2011) under the key ``(seed mod 2⁶⁴, crc32(name) · 2³² + i)``
  at the counters ``(c, s₁, s₂, s₃)`` for ``c = c_i, c_i + 1, ...``: ``c_i`` is
  node ``i``'s own block counter for that stream (per-node state, advanced by
  every draw) and ``s₁, s₂, s₃`` are the seed's bits above the 64th (0 for a
  seed below 2⁶⁴). What node ``i`` draws thus depends only on the seed, the
  stream, the node and the draws node ``i`` made before, never on which other
  nodes share a call, in what order events were batched, or how the nodes are
  split over processes: 1, 2 or 3 shards give the same trace, draw for draw. A
  call for ``k`` nodes is one compiled loop over the ``k`` rows (no Python loop
  over nodes). A number drawn for node ``j`` should serve node ``j``'s own row:
  a shard keeps only its own nodes' counters, so what it draws for a peer (the
  other end of a gossip edge held by another shard) is scratch there.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from fedopt.core.arrays import FloatArray, IntArray

#: The streams fedopt itself uses; algorithms may ask for any other name.
STREAM_NAMES = ("clocks", "data", "init", "noise", "directions", "sampling", "problem")

UInt64Array = npt.NDArray[np.uint64]


def stream_key(name: str) -> int:
    """Stable 32-bit key of a stream name (independent of Python's hash seed)."""
    return zlib.crc32(name.encode("utf-8"))


# ---- Philox4x64-10 (Random123's constants) -----------------------------------------
_M0 = np.uint64(0xD2E7470EE14C6C93)
_M1 = np.uint64(0xCA5A826395121157)
_W0 = np.uint64(0x9E3779B97F4A7C15)
_W1 = np.uint64(0xBB67AE8584CAA73B)
_LO32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_S11 = np.uint64(11)
_ONE = np.uint64(1)
_TWO_M53 = 2.0**-53
_TWO_PI = 2.0 * math.pi


@numba.njit(cache=True, inline="always")
def _mulhilo(a: np.uint64, b: np.uint64) -> tuple[np.uint64, np.uint64]:  # pragma: no cover - jitted
    """High and low 64-bit words of the 128-bit product ``a · b``."""
    a_lo, a_hi = a & _LO32, a >> _S32
    b_lo, b_hi = b & _LO32, b >> _S32
    p0, p1, p2, p3 = a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi
    mid = (p0 >> _S32) + (p1 & _LO32) + (p2 & _LO32)
    return p3 + (p1 >> _S32) + (p2 >> _S32) + (mid >> _S32), a * b


@numba.njit(cache=True)
def _philox(c0: np.uint64, c1: np.uint64, c2: np.uint64, c3: np.uint64,
            k0: np.uint64, k1: np.uint64) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:  # pragma: no cover
    """Philox4x64-10: the block of four words at counter ``(c0, c1, c2, c3)`` under key ``(k0, k1)``."""
    for r in range(10):
        if r > 0:
            k0 += _W0
            k1 += _W1
        hi0, lo0 = _mulhilo(_M0, c0)
        hi1, lo1 = _mulhilo(_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


@numba.njit(cache=True)
def _row_words(buf: np.ndarray, key: np.ndarray, node: np.int64, c: np.uint64) -> None:  # pragma: no cover
    """Fill ``buf`` (length a multiple of 4) with node ``node``'s blocks at counters ``c, c + 1, ...``
    (``key``: ``[k0, stream · 2³², s1, s2, s3]``, the last three the counter's upper words)."""
    k0, k1 = key[0], key[1] | np.uint64(node)
    s1, s2, s3 = key[2], key[3], key[4]
    for b in range(buf.shape[0] // 4):
        x0, x1, x2, x3 = _philox(c + np.uint64(b), s1, s2, s3, k0, k1)
        buf[4 * b] = x0
        buf[4 * b + 1] = x1
        buf[4 * b + 2] = x2
        buf[4 * b + 3] = x3


@numba.njit(cache=True)
def _advance(counters: np.ndarray, node: np.int64, blocks: np.uint64) -> np.uint64:  # pragma: no cover
    if node < 0 or node >= counters.shape[0]:
        raise IndexError("per-node stream: a node id is outside 0..n-1")
    c = counters[node]
    counters[node] = c + blocks
    return c


@numba.njit(cache=True)
def _raw_kernel(key: np.ndarray, nodes: np.ndarray, counters: np.ndarray,
                s: np.int64) -> np.ndarray:  # pragma: no cover - jitted
    nb = (s + 3) // 4
    buf = np.empty(4 * nb, dtype=np.uint64)
    out = np.empty((nodes.shape[0], s), dtype=np.uint64)
    for r in range(nodes.shape[0]):
        node = nodes[r]
        _row_words(buf, key, node, _advance(counters, node, np.uint64(nb)))
        for j in range(s):
            out[r, j] = buf[j]
    return out


@numba.njit(cache=True)
def _random_kernel(key: np.ndarray, nodes: np.ndarray, counters: np.ndarray,
                   s: np.int64) -> np.ndarray:  # pragma: no cover - jitted
    nb = (s + 3) // 4
    buf = np.empty(4 * nb, dtype=np.uint64)
    out = np.empty((nodes.shape[0], s), dtype=np.float64)
    for r in range(nodes.shape[0]):
        node = nodes[r]
        _row_words(buf, key, node, _advance(counters, node, np.uint64(nb)))
        for j in range(s):
            out[r, j] = np.float64(buf[j] >> _S11) * _TWO_M53
    return out


@numba.njit(cache=True)
def _integers_kernel(key: np.ndarray, nodes: np.ndarray, counters: np.ndarray,
                     high: np.ndarray, s: np.int64) -> np.ndarray:  # pragma: no cover - jitted
    nb = (s + 3) // 4
    buf = np.empty(4 * nb, dtype=np.uint64)
    out = np.empty((nodes.shape[0], s), dtype=np.int64)
    for r in range(nodes.shape[0]):
        h = high[r]
        if h < 1:
            raise ValueError("per-node stream: integers needs high >= 1")
        node = nodes[r]
        _row_words(buf, key, node, _advance(counters, node, np.uint64(nb)))
        hu = np.uint64(h)
        for j in range(s):
            out[r, j] = np.int64(_mulhilo(buf[j], hu)[0])
    return out


@numba.njit(cache=True)
def _normal_kernel(key: np.ndarray, nodes: np.ndarray, counters: np.ndarray,
                   s: np.int64) -> np.ndarray:  # pragma: no cover - jitted
    pairs = (s + 1) // 2
    nb = (2 * pairs + 3) // 4
    buf = np.empty(4 * nb, dtype=np.uint64)
    out = np.empty((nodes.shape[0], s), dtype=np.float64)
    for r in range(nodes.shape[0]):
        node = nodes[r]
        _row_words(buf, key, node, _advance(counters, node, np.uint64(nb)))
        for p in range(pairs):
            u1 = np.float64((buf[2 * p] >> _S11) + _ONE) * _TWO_M53  # in (0, 1]
            u2 = np.float64(buf[2 * p + 1] >> _S11) * _TWO_M53
            rad = math.sqrt(-2.0 * math.log(u1))
            out[r, 2 * p] = rad * math.cos(_TWO_PI * u2)
            if 2 * p + 1 < s:
                out[r, 2 * p + 1] = rad * math.sin(_TWO_PI * u2)
    return out


def _size(size: int | tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    shape = (int(size),) if isinstance(size, (int, np.integer)) else tuple(int(x) for x in size)
    if any(x < 0 for x in shape):
        raise ValueError(f"per-node stream: size must be non-negative, got {size!r}")
    return shape, math.prod(shape)


class NodeStream:
    """One named per-node stream of a run (see the module docstring).

    Every method takes the ``k`` node ids a call draws for and returns ``[k, *size]``:
    row ``r`` holds node ``nodes[r]``'s next numbers, and that node's counter moves
    on by the blocks the row used (a call takes whole 4-word blocks per row; a node
    listed twice draws twice, in row order). Draws of one node never depend on the
    other rows of the call.
    """

    __slots__ = ("name", "counters", "_key")

    def __init__(self, seed: int, name: str, counters: UInt64Array) -> None:
        self.name = name
        self.counters = counters
        mask = 2**64 - 1
        words = [seed & mask, stream_key(name) << 32, (seed >> 64) & mask, (seed >> 128) & mask, seed >> 192]
        self._key = np.array(words, dtype=np.uint64)

    def raw(self, nodes: IntArray, size: int | tuple[int, ...] = ()) -> UInt64Array:
        """The raw 64-bit Philox words, ``[k, *size]`` (``uint64``)."""
        shape, s = _size(size)
        nodes = np.asarray(nodes, dtype=np.int64)
        return _raw_kernel(self._key, nodes, self.counters, s).reshape(len(nodes), *shape)  # type: ignore[no-any-return]

    def random(self, nodes: IntArray, size: int | tuple[int, ...] = ()) -> FloatArray:
        """Uniform floats in ``[0, 1)`` (53 random bits each), ``[k, *size]``."""
        shape, s = _size(size)
        nodes = np.asarray(nodes, dtype=np.int64)
        return _random_kernel(self._key, nodes, self.counters, s).reshape(len(nodes), *shape)  # type: ignore[no-any-return]

    def integers(self, nodes: IntArray, high: int | IntArray, size: int | tuple[int, ...] = ()) -> IntArray:
        """Integers in ``[0, high)``, ``[k, *size]``; ``high`` is one bound or one per row
        (``[k]``, each ≥ 1). Each value is ``⌊w · high / 2⁶⁴⌋`` of a 64-bit word ``w``:
        every outcome has probability within ``2⁻⁶⁴`` of ``1/high``."""
        shape, s = _size(size)
        nodes = np.asarray(nodes, dtype=np.int64)
        h = np.asarray(high, dtype=np.int64)
        if h.ndim == 0:
            h = np.full(len(nodes), h)
        elif h.shape != nodes.shape:
            raise ValueError(f"per-node stream {self.name!r}: high must be one bound or one per node "
                             f"({len(nodes)}), got shape {h.shape}")
        return _integers_kernel(self._key, nodes, self.counters, h, s).reshape(len(nodes), *shape)  # type: ignore[no-any-return]

    def standard_normal(self, nodes: IntArray, size: int | tuple[int, ...] = ()) -> FloatArray:
        """Standard normal floats, ``[k, *size]``: Box–Muller on pairs of 53-bit uniforms
        (two numbers per pair of words; ``|z| ≤ 8.6``, a tail of probability 1e-17 cut)."""
        shape, s = _size(size)
        nodes = np.asarray(nodes, dtype=np.int64)
        return _normal_kernel(self._key, nodes, self.counters, s).reshape(len(nodes), *shape)  # type: ignore[no-any-return]


class NodeStreams:
    """The per-node streams of a run of ``n`` nodes: ``streams["sampling"]`` is a
    :class:`NodeStream`; its block counters (``uint64 [n]``, one per node) are the
    streams' whole state, carried by node rows (:meth:`rows`, :meth:`set_rows`)."""

    def __init__(self, seed: int, n: int) -> None:
        if not 0 <= int(seed) < 2**256:
            raise ValueError(f"seed must be an integer in [0, 2**256) for per-node random streams, got {seed!r}")
        if not 0 < int(n) <= 2**32:
            raise ValueError(f"per-node random streams need 1 <= n <= 2**32 nodes, got {n!r}")
        self.seed, self.n = int(seed), int(n)
        self._streams: dict[str, NodeStream] = {}

    def __getitem__(self, name: str) -> NodeStream:
        s = self._streams.get(name)
        if s is None:
            s = self._streams[name] = NodeStream(self.seed, name, np.zeros(self.n, dtype=np.uint64))
        return s

    def names(self) -> list[str]:
        """The streams drawn from (or restored) so far."""
        return sorted(self._streams)

    def draws(self) -> int:
        """Blocks drawn so far over all streams and nodes (a cheap change detector)."""
        return int(sum(int(s.counters.sum()) for s in self._streams.values()))

    def state_dict(self) -> dict[str, UInt64Array]:
        """Every stream's counters (copies)."""
        return {name: s.counters.copy() for name, s in self._streams.items()}

    def load_state_dict(self, counters: dict[str, Any]) -> None:
        """Return to :meth:`state_dict`'s counters (streams it lacks start over)."""
        self.set_rows(np.arange(self.n), counters)

    def rows(self, nodes: IntArray) -> dict[str, UInt64Array]:
        """The counters of ``nodes`` in every stream (what a shard owns)."""
        return {name: s.counters[nodes] for name, s in self._streams.items()}

    def set_rows(self, nodes: IntArray, rows: dict[str, Any]) -> None:
        """Set the counters of ``nodes`` from :meth:`rows`; a stream absent from ``rows``
        restarts at 0 on those nodes."""
        for name in set(rows) | set(self._streams):
            vals = rows.get(name)
            self[name].counters[nodes] = 0 if vals is None else np.asarray(vals, dtype=np.uint64)


class RngStreams:
    """Named random streams derived from one run seed.

    ``streams["clocks"]`` returns the (cached) run-level generator of that name;
    ``streams.fresh("clocks")`` returns a new generator at the start of the
    stream, which is what a remote worker uses to replay a stream. With
    ``n_nodes``, ``streams.per_node`` holds the run's per-node streams
    (:class:`NodeStreams`).
    """

    def __init__(self, seed: int, n_nodes: int | None = None) -> None:
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self._cache: dict[str, np.random.Generator] = {}
        self.per_node: NodeStreams | None = None if n_nodes is None else NodeStreams(self.seed, n_nodes)

    def fresh(self, name: str, *sub: int) -> np.random.Generator:
        ss = np.random.SeedSequence(self.seed, spawn_key=(stream_key(name), *map(int, sub)))
        return np.random.Generator(np.random.PCG64(ss))

    def __getitem__(self, name: str) -> np.random.Generator:
        gen = self._cache.get(name)
        if gen is None:
            gen = self._cache[name] = self.fresh(name)
        return gen
