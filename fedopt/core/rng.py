"""One seed per run, split into named, independent random streams.

Each stream is a :class:`numpy.random.Generator` seeded from
``SeedSequence(seed, spawn_key=(crc32(name),))`` so that drawing more numbers
from one stream (say ``"clocks"``) never moves another (say ``"noise"``), and
the same ``(seed, name)`` always gives the same stream in every process (the
local, Ray and MPI engines rebuild streams independently).
"""

from __future__ import annotations

import zlib

import numpy as np

#: The streams fedopt itself uses; algorithms may ask for any other name.
STREAM_NAMES = ("clocks", "data", "init", "noise", "directions", "sampling", "problem")


def stream_key(name: str) -> int:
    """Stable 32-bit key of a stream name (independent of Python's hash seed)."""
    return zlib.crc32(name.encode("utf-8"))


class RngStreams:
    """Named random streams derived from one run seed.

    ``streams["clocks"]`` returns the (cached) generator of that name;
    ``streams.fresh("clocks")`` returns a new generator at the start of the
    stream, which is what a remote worker uses to replay a stream.
    """

    def __init__(self, seed: int) -> None:
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self._cache: dict[str, np.random.Generator] = {}

    def fresh(self, name: str, *sub: int) -> np.random.Generator:
        ss = np.random.SeedSequence(self.seed, spawn_key=(stream_key(name), *map(int, sub)))
        return np.random.Generator(np.random.PCG64(ss))

    def __getitem__(self, name: str) -> np.random.Generator:
        gen = self._cache.get(name)
        if gen is None:
            gen = self._cache[name] = self.fresh(name)
        return gen
