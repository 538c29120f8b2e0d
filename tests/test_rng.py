"""Per-node random streams: Philox4x64-10 against independent references, the statistics of
the draws, and draws that do not depend on which other nodes share a call."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from fedopt.algorithms.base import Context
from fedopt.core.meter import Channel, Meter
from fedopt.core.rng import NodeStreams, RngStreams, _philox
from fedopt.problems.quadratic import random_quadratic
from fedopt.topology.generators import make_topology

U64 = 2**64 - 1

#: Philox4x64-10 known answers: (counter c0..c3, key k0 k1) -> four output words. From the
#: ``kat_vectors`` file of D. E. Shaw Research's Random123 distribution, as reproduced in
#: DEShawResearch/fs123, ``core123/ut/ut_philox.cpp`` (test_kat_philox4x64, rounds = 10).
KAT_4X64_10 = [
    ((0, 0, 0, 0), (0, 0), (0x16554D9ECA36314C, 0xDB20FE9D672D0FDC, 0xD7E772CEE186176B, 0x7E68B68AEC7BA23B)),
    ((U64, U64, U64, U64), (U64, U64), (0x87B092C3013FE90B, 0x438C3C67BE8D0224, 0x9CC7D7C69CD777B6, 0xA09CAEBF594F0BA0)),
    ((0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0, 0x082EFA98EC4E6C89),
     (0x452821E638D01377, 0xBE5466CF34E90C6C),
     (0xA528F45403E61D95, 0x38C72DBD566E9788, 0xA5A1610E72FD18B5, 0x57BD43B5E52B7FE6)),
]


@pytest.mark.parametrize("ctr, key, expected", KAT_4X64_10)
def test_philox_block_matches_random123_known_answers(ctr, key, expected) -> None:
    got = _philox(*(np.uint64(c) for c in ctr), np.uint64(key[0]), np.uint64(key[1]))
    assert [int(w) for w in got] == list(expected)


def _numpy_words(seed: int, name: str, node: int, block: int, count: int) -> np.ndarray:
    """``count`` words of node ``node``'s stream from block ``block`` on, by numpy's own
    Philox4x64-10: key ``(seed mod 2⁶⁴, crc32(name)·2³² + node)``, 256-bit counter
    ``block + 2⁶⁴·⌊seed/2⁶⁴⌋`` (numpy steps its counter before each block, so it
    starts one below)."""
    key = [seed % 2**64, (zlib.crc32(name.encode()) << 32) | node]
    start = (block + ((seed >> 64) << 64) - 1) % 2**256
    words = [(start >> (64 * i)) % 2**64 for i in range(4)]
    bitgen = np.random.Philox(counter=np.array(words, dtype=np.uint64), key=np.array(key, dtype=np.uint64))
    return bitgen.random_raw(count)


@pytest.mark.parametrize("seed", [0, 3, 2**63 + 11, 2**200 + 2**70 + 3])
def test_raw_words_match_numpy_philox(seed: int) -> None:
    streams = NodeStreams(seed, 2**20)
    s = streams["sampling"]
    nodes = np.array([0, 7, 2**20 - 1, 7])  # node 7 twice: its second row continues its stream
    got = s.raw(nodes, 6)  # 6 words per row: two blocks, the last two words unused
    assert got.dtype == np.uint64 and got.shape == (4, 6)
    np.testing.assert_array_equal(got[0], _numpy_words(seed, "sampling", 0, 0, 6))
    np.testing.assert_array_equal(got[1], _numpy_words(seed, "sampling", 7, 0, 6))
    np.testing.assert_array_equal(got[2], _numpy_words(seed, "sampling", 2**20 - 1, 0, 6))
    np.testing.assert_array_equal(got[3], _numpy_words(seed, "sampling", 7, 2, 6))
    assert s.counters[[0, 7, 2**20 - 1, 1]].tolist() == [2, 4, 2, 0]
    # a later call goes on from each node's counter
    np.testing.assert_array_equal(s.raw(np.array([7]), (2, 2))[0].ravel(), _numpy_words(seed, "sampling", 7, 4, 4))
    np.testing.assert_array_equal(streams["noise"].raw(np.array([7]), 3)[0], _numpy_words(seed, "noise", 7, 0, 3))


def test_uniforms_and_integers_come_from_the_raw_words() -> None:
    a, b = NodeStreams(5, 8), NodeStreams(5, 8)
    nodes = np.array([1, 4, 6])
    words = a["x"].raw(nodes, 9)
    np.testing.assert_array_equal(b["x"].random(nodes, 9), (words >> np.uint64(11)).astype(np.float64) / 2.0**53)
    high = np.array([3, 1000, 2**40 + 1])
    ints = [[(int(w) * int(h)) >> 64 for w in row] for row, h in zip(a["x"].raw(nodes, 9), high)]
    np.testing.assert_array_equal(b["x"].integers(nodes, high, 9), ints)


def test_integers_are_uniform_in_range() -> None:
    s = NodeStreams(1, 50)["sampling"]
    high = np.arange(1, 51)
    x = s.integers(np.arange(50), high, 4000)
    assert x.dtype == np.int64 and x.shape == (50, 4000)
    assert (x >= 0).all() and (x < high[:, None]).all()
    # chi-square goodness of fit of node 6 (high 7, df 6: P(chi2 > 27.9) ≈ 1e-4)
    c = np.bincount(x[6], minlength=7)
    expected = 4000 / 7
    assert ((c - expected) ** 2 / expected).sum() < 27.9
    assert set(np.unique(x[49])) == set(range(50))
    assert (x[0] == 0).all()


def test_uniforms_and_normals_have_the_right_moments() -> None:
    streams = NodeStreams(9, 20)
    u = streams["u"].random(np.arange(20), (50, 100)).ravel()  # 100,000 draws
    assert (u >= 0).all() and (u < 1).all()
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u.size)
    assert abs(u.var() - 1 / 12) < 5 * np.sqrt(1 / 180 / u.size)
    z = streams["z"].standard_normal(np.arange(20), 5001).ravel()  # odd: the last pair is cut
    se = 1 / np.sqrt(z.size)
    assert abs(z.mean()) < 5 * se
    assert abs(z.var() - 1) < 5 * np.sqrt(2) * se
    assert abs((z**3).mean()) < 5 * np.sqrt(15) * se
    assert abs((z**4).mean() - 3) < 5 * np.sqrt(96) * se
    assert abs((np.abs(z) < 1.959964).mean() - 0.95) < 5 * np.sqrt(0.95 * 0.05) * se


def test_nodes_streams_and_seeds_are_independent() -> None:
    k = 40_000
    a = NodeStreams(2, 4)
    x = a["s"].standard_normal(np.arange(4), k)
    y = a["t"].standard_normal(np.arange(4), k)
    z = NodeStreams(3, 4)["s"].standard_normal(np.arange(4), k)
    bound = 5 / np.sqrt(k)
    corr = np.corrcoef(np.concatenate([x, y, z]))
    off = corr[~np.eye(12, dtype=bool)]
    assert np.abs(off).max() < bound
    # lagged: a node's consecutive numbers are uncorrelated too
    assert abs(np.corrcoef(x[0, :-1], x[0, 1:])[0, 1]) < bound


def test_draws_of_a_node_do_not_depend_on_the_other_rows_of_the_call() -> None:
    """Nodes 0..9 in one call, in two calls, in a shuffled order, or one at a time give
    each node the same numbers, draw for draw."""
    draws = {
        "random": lambda s, nodes: s.random(nodes, (2, 3)),
        "integers": lambda s, nodes: s.integers(nodes, nodes + 5, 7),
        "standard_normal": lambda s, nodes: s.standard_normal(nodes, 5),
    }
    for name, draw in draws.items():
        whole, split, shuffled, single = (NodeStreams(4, 10)["sampling"] for _ in range(4))
        for _ in range(3):  # three rounds: counters move on alike
            full = draw(whole, np.arange(10))
            parts = np.concatenate([draw(split, np.arange(5)), draw(split, np.arange(5, 10))])
            perm = np.array([7, 2, 9, 0, 4, 1, 8, 3, 6, 5])
            back = np.empty_like(full)
            back[perm] = draw(shuffled, perm)
            one = np.concatenate([draw(single, np.array([i])) for i in range(10)])
            for other in (parts, back, one):
                np.testing.assert_array_equal(full, other, err_msg=name)
        np.testing.assert_array_equal(whole.counters, split.counters)


def test_counters_are_the_whole_state_and_travel_by_rows() -> None:
    a = NodeStreams(6, 12)
    a["sampling"].random(np.arange(12), 5)
    saved = a.state_dict()
    first = a["sampling"].random(np.arange(12), 3)
    a["noise"].random(np.arange(12))
    a.load_state_dict(saved)
    np.testing.assert_array_equal(a["sampling"].random(np.arange(12), 3), first)
    assert a.names() == ["noise", "sampling"] and (a["noise"].counters == 0).all()  # absent from saved
    # a shard's rows: set on another object, the shard's nodes go on where they were
    b = NodeStreams(6, 12)
    mine = np.array([2, 5, 11])
    a.load_state_dict(saved)
    b.set_rows(mine, a.rows(mine))
    np.testing.assert_array_equal(b["sampling"].random(mine, 3), a["sampling"].random(mine, 3))
    c = NodeStreams(6, 12)
    c["extra"].random(mine)
    c.set_rows(mine, {})  # a stream the rows do not name starts over on those nodes
    assert (c["extra"].counters[mine] == 0).all()


def test_bad_calls_are_clear_errors() -> None:
    s = NodeStreams(0, 5)["x"]
    with pytest.raises(IndexError, match="outside 0..n-1"):
        s.random(np.array([5]))
    with pytest.raises(IndexError, match="outside 0..n-1"):
        s.random(np.array([-1]))
    with pytest.raises(ValueError, match="high >= 1"):
        s.integers(np.array([0, 1]), np.array([3, 0]))
    with pytest.raises(ValueError, match="one per node"):
        s.integers(np.array([0, 1]), np.array([3, 4, 5]))
    with pytest.raises(ValueError, match=r"2\*\*256"):
        NodeStreams(2**256, 5)
    prob = random_quadratic(4, 2, mu=1.0, L=2.0, seed=0)
    top = make_topology("cycle", n=4)
    meter = Meter(n=4)
    ctx = Context(prob, top, RngStreams(0), meter, Channel(meter))
    with pytest.raises(ValueError, match="n_nodes=4"):
        ctx.node_rng("sampling")
    ctx = Context(prob, top, RngStreams(0, 4), meter, Channel(meter))
    assert ctx.node_rng("sampling") is ctx.node_rng("sampling")
