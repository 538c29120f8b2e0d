"""Named graph families: a registry of topology generators.

Every family is a plain function with documented keyword parameters that returns a
connected :class:`~fedopt.topology.graph.Topology` on nodes ``0..n-1``::

    make_topology("cycle", n=16)
    make_topology("random_geometric", n=100, radius=0.3, seed=1)
    make_topology("time_varying", n=100, base="random_geometric", count=50, radius=0.4)

Random families take ``seed`` (default 0) and are deterministic in it. Families whose
random graph may come out disconnected (Erdős–Rényi, random geometric, random regular,
Watts–Strogatz) redraw it, ``MAX_TRIES`` times at most, from a stream seeded by
``seed``, and then fail with a message that says how to make the graph denser.

Bad parameters raise a :class:`ValueError` that names the topology, the key and what is
allowed (``topology 'cycle': unknown parameter 'radius'; allowed: n``).
:func:`register_topology` adds a family; :func:`topology_params` lists a family's
documented parameters.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from typing import Any

import networkx as nx
import numpy as np

from fedopt.topology.graph import Topology
from fedopt.topology.time_varying import TimeVaryingTopology

#: How many times a random family redraws a disconnected graph before giving up.
MAX_TRIES = 100

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_topology(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a generator function under ``name``."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"topology {name!r} is already registered")
        _REGISTRY[name] = fn
        fn.topology_name = name  # type: ignore[attr-defined]
        return fn

    return deco


def available_topologies() -> list[str]:
    """Names of the registered generators, sorted."""
    return sorted(_REGISTRY)


def _lookup(name: str) -> Callable[..., Any]:
    fn = _REGISTRY.get(name)
    if fn is None:
        raise ValueError(f"unknown topology {name!r}; available: {', '.join(available_topologies())}")
    return fn


def _named_params(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _doc_params(fn: Callable[..., Any]) -> dict[str, str]:
    """``{name: description}`` from the numpy-style ``Parameters`` section of ``fn``."""
    doc = inspect.getdoc(fn) or ""
    m = re.search(r"^Parameters\n-+\n(.*?)(?:\n\n[A-Z][a-z]+\n-+\n|\Z)", doc, flags=re.S | re.M)
    out: dict[str, str] = {}
    if not m:
        return out
    key: str | None = None
    for line in m.group(1).splitlines():
        head = re.match(r"^(\w+)\s*:\s*(.*)$", line)
        if head and not line.startswith(" "):
            key = head.group(1)
            out[key] = head.group(2).strip()
        elif key is not None and line.strip():
            out[key] = (out[key] + "; " if out[key] and not out[key].endswith(";") else out[key]) + line.strip()
    return out


def topology_params(name: str) -> dict[str, str]:
    """The documented parameters of generator ``name``: ``{param: "type; description (default …)"}``."""
    fn = _lookup(name)
    docs = _doc_params(fn)
    out: dict[str, str] = {}
    for p in _named_params(fn):
        text = docs.get(p.name, "")
        if p.default is not inspect.Parameter.empty and p.default is not None:
            text += f" (default {p.default!r})"
        out[p.name] = text
    for k, v in docs.items():  # documented extras (e.g. a base family's parameters)
        out.setdefault(k, v)
    return out


def make_topology(name: str, **params: Any) -> Any:
    """Build topology ``name`` with keyword ``params`` (checked against the family's)."""
    fn = _lookup(name)
    named = _named_params(fn)
    allowed = [p.name for p in named]
    takes_extra = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    if not takes_extra:
        for key in params:
            if key not in allowed:
                raise ValueError(f"topology {name!r}: unknown parameter {key!r}; allowed: {', '.join(allowed) or '(none)'}")
    return fn(**params)


# ---- parameter checks ---------------------------------------------------------------


def _int(top: str, key: str, v: Any, lo: int | None = None) -> int:
    ok = isinstance(v, (int, np.integer)) and not isinstance(v, bool)
    if not ok and isinstance(v, float) and v.is_integer():
        v, ok = int(v), True
    if not ok:
        raise ValueError(f"topology {top!r}: parameter {key!r} must be an integer, got {v!r}")
    v = int(v)
    if lo is not None and v < lo:
        raise ValueError(f"topology {top!r}: parameter {key!r} must be ≥ {lo}, got {v}")
    return v


def _float(top: str, key: str, v: Any, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"topology {top!r}: parameter {key!r} must be a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v) or (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and v > hi):
        rng = f"{'(' if lo_open else '['}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ValueError(f"topology {top!r}: parameter {key!r} must be in {rng}, got {v}")
    return v


def _need_n(top: str, n: Any, lo: int = 1) -> int:
    if n is None:
        raise ValueError(f"topology {top!r}: parameter 'n' (the number of nodes) is required")
    return _int(top, "n", n, lo)


def _make(name: str, g: nx.Graph, **params: Any) -> Topology:
    return Topology.from_networkx(name, g, params={"family": name, **params})


def _connected(name: str, seed: int, draw: Callable[[int], nx.Graph], hint: str) -> nx.Graph:
    """Draw with ``seed``, then with seeds from a stream seeded by ``seed``, until connected."""
    seed = _int(name, "seed", seed, 0)
    rng = np.random.default_rng(seed)
    s = seed
    for _ in range(MAX_TRIES):
        g = draw(s)
        if g.number_of_nodes() <= 1 or nx.is_connected(g):
            return g
        s = int(rng.integers(0, 2**31 - 1))
    raise ValueError(f"topology {name!r}: no connected graph in {MAX_TRIES} draws from seed {seed}; {hint}")


# ---- deterministic families ---------------------------------------------------------


@register_topology("complete")
def complete(n: int | None = None) -> Topology:
    """Complete graph ``K_n``: every pair of nodes linked; ``n(n−1)/2`` edges.

    Reference: networkx ``complete_graph``.

    Parameters
    ----------
    n : int
        number of nodes (≥ 1).
    """
    n = _need_n("complete", n)
    return _make("complete", nx.complete_graph(n), n=n)


@register_topology("cycle")
def cycle(n: int | None = None) -> Topology:
    """Cycle (ring) ``C_n``: node ``i`` linked to ``i±1 mod n``; ``n`` edges.

    Reference: networkx ``cycle_graph``.

    Parameters
    ----------
    n : int
        number of nodes (≥ 3).
    """
    n = _need_n("cycle", n, 3)
    return _make("cycle", nx.cycle_graph(n), n=n)


@register_topology("path")
def path(n: int | None = None) -> Topology:
    """Path ``P_n``: node ``i`` linked to ``i+1``; ``n−1`` edges.

    Reference: networkx ``path_graph``.

    Parameters
    ----------
    n : int
        number of nodes (≥ 1).
    """
    n = _need_n("path", n)
    return _make("path", nx.path_graph(n), n=n)


@register_topology("star")
def star(n: int | None = None) -> Topology:
    """Star: hub ``0`` linked to the ``n−1`` leaves ``1..n−1``; ``n−1`` edges.

    Reference: networkx ``star_graph(n − 1)`` (which has ``n`` nodes).

    Parameters
    ----------
    n : int
        number of nodes in all, hub included (≥ 2).
    """
    n = _need_n("star", n, 2)
    return _make("star", nx.star_graph(n - 1), n=n)


def _grid_shape(name: str, n: Any, rows: Any, cols: Any) -> tuple[int, int]:
    if rows is not None:
        rows = _int(name, "rows", rows, 1)
    if cols is not None:
        cols = _int(name, "cols", cols, 1)
    if n is not None:
        n = _int(name, "n", n, 1)
    if rows is not None and cols is not None:
        if n is not None and rows * cols != n:
            raise ValueError(f"topology {name!r}: rows × cols = {rows * cols} differs from n = {n}")
        return rows, cols
    if n is None:
        raise ValueError(f"topology {name!r}: give parameter 'n' or both 'rows' and 'cols'")
    if rows is not None or cols is not None:
        k, key = (rows, "rows") if rows is not None else (cols, "cols")
        if n % k:
            raise ValueError(f"topology {name!r}: parameter {key!r} = {k} does not divide n = {n}")
        return (k, n // k) if key == "rows" else (n // k, k)
    r = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    if r == 1 and n > 3:
        raise ValueError(f"topology {name!r}: n = {n} is prime, so it has no grid shape; give 'rows' and 'cols'")
    return r, n // r


@register_topology("grid2d")
def grid2d(n: int | None = None, rows: int | None = None, cols: int | None = None) -> Topology:
    """2-D grid (lattice) of ``rows × cols`` nodes, 4-neighbour links;
    ``rows(cols−1) + cols(rows−1)`` edges. Nodes are numbered row by row.

    With only ``n``, the most square factorization ``rows ≤ cols`` of ``n`` is used
    (a prime ``n > 3`` has none: give ``rows`` and ``cols``).

    Reference: networkx ``grid_2d_graph``.

    Parameters
    ----------
    n : int
        number of nodes (= rows × cols).
    rows : int
        number of rows (optional).
    cols : int
        number of columns (optional).
    """
    r, c = _grid_shape("grid2d", n, rows, cols)
    return _make("grid2d", nx.grid_2d_graph(r, c), n=r * c, rows=r, cols=c)


@register_topology("torus2d")
def torus2d(n: int | None = None, rows: int | None = None, cols: int | None = None) -> Topology:
    """2-D torus: the ``rows × cols`` grid with wrap-around links; ``2n`` edges when
    ``rows, cols ≥ 3`` (a side of 2 has no separate wrap link). Shape as for ``grid2d``.

    Reference: networkx ``grid_2d_graph(rows, cols, periodic=True)``.

    Parameters
    ----------
    n : int
        number of nodes (= rows × cols).
    rows : int
        number of rows (optional).
    cols : int
        number of columns (optional).
    """
    r, c = _grid_shape("torus2d", n, rows, cols)
    return _make("torus2d", nx.grid_2d_graph(r, c, periodic=True), n=r * c, rows=r, cols=c)


@register_topology("hypercube")
def hypercube(n: int | None = None, dim: int | None = None) -> Topology:
    """Hypercube ``Q_dim`` on ``n = 2^dim`` nodes: ``i`` and ``j`` linked when their
    binary labels differ in one bit; ``n·log2(n)/2`` edges.

    Reference: networkx ``hypercube_graph``.

    Parameters
    ----------
    n : int
        number of nodes, a power of 2.
    dim : int
        dimension (n = 2^dim); give n or dim.
    """
    if dim is not None:
        dim = _int("hypercube", "dim", dim, 0)
        if n is not None and _int("hypercube", "n", n, 1) != 2**dim:
            raise ValueError(f"topology 'hypercube': n = {n} differs from 2^dim = {2**dim}")
    else:
        n = _need_n("hypercube", n)
        if n & (n - 1):
            raise ValueError(f"topology 'hypercube': parameter 'n' must be a power of 2, got {n}")
        dim = n.bit_length() - 1
    g = nx.hypercube_graph(dim) if dim > 0 else nx.empty_graph(1)
    return _make("hypercube", g, n=2**dim, dim=dim)


@register_topology("barbell")
def barbell(n: int | None = None, m1: int | None = None, m2: int | None = None) -> Topology:
    """Barbell: two complete graphs ``K_m1`` joined by a path of ``m2`` nodes
    (``n = 2·m1 + m2``); ``m1(m1−1) + m2 + 1`` edges. With only ``n``: ``m1 = n // 2``,
    ``m2 = n mod 2``.

    Reference: networkx ``barbell_graph(m1, m2)``.

    Parameters
    ----------
    n : int
        number of nodes (= 2·m1 + m2).
    m1 : int
        size of each clique (≥ 2).
    m2 : int
        number of nodes on the connecting path (≥ 0).
    """
    if n is not None:
        n = _int("barbell", "n", n, 4)
    if m1 is None and m2 is None:
        if n is None:
            raise ValueError("topology 'barbell': give parameter 'n' or 'm1' (and 'm2')")
        m1, m2 = n // 2, n % 2
    elif m1 is None:
        m2 = _int("barbell", "m2", m2, 0)
        if n is None or (n - m2) % 2 or n - m2 < 4:
            raise ValueError(f"topology 'barbell': with m2 = {m2} give 'm1' (or an n with n − m2 even and ≥ 4)")
        m1 = (n - m2) // 2
    else:
        m1 = _int("barbell", "m1", m1, 2)
        m2 = _int("barbell", "m2", m2, 0) if m2 is not None else (n - 2 * m1 if n is not None else 0)
        if m2 < 0:
            raise ValueError(f"topology 'barbell': 2·m1 = {2 * m1} exceeds n = {n}")
    m1 = _int("barbell", "m1", m1, 2)
    if n is not None and 2 * m1 + m2 != n:
        raise ValueError(f"topology 'barbell': 2·m1 + m2 = {2 * m1 + m2} differs from n = {n}")
    return _make("barbell", nx.barbell_graph(m1, m2), n=2 * m1 + m2, m1=m1, m2=m2)


@register_topology("lollipop")
def lollipop(n: int | None = None, m: int | None = None, k: int | None = None) -> Topology:
    """Lollipop: a complete graph ``K_m`` with a path of ``k`` nodes attached
    (``n = m + k``); ``m(m−1)/2 + k`` edges. With only ``n``: ``m = ⌈n/2⌉``.

    Reference: networkx ``lollipop_graph(m, k)``.

    Parameters
    ----------
    n : int
        number of nodes (= m + k).
    m : int
        size of the clique (≥ 2).
    k : int
        length of the path (≥ 0).
    """
    if n is not None:
        n = _int("lollipop", "n", n, 2)
    if m is None:
        if n is None:
            raise ValueError("topology 'lollipop': give parameter 'n' or 'm' (and 'k')")
        m = n - _int("lollipop", "k", k, 0) if k is not None else (n + 1) // 2
    m = _int("lollipop", "m", m, 2)
    if k is None:
        k = n - m if n is not None else 0
    k = _int("lollipop", "k", k, 0)
    if n is not None and m + k != n:
        raise ValueError(f"topology 'lollipop': m + k = {m + k} differs from n = {n}")
    return _make("lollipop", nx.lollipop_graph(m, k), n=m + k, m=m, k=k)


@register_topology("exponential")
def exponential(n: int | None = None) -> Topology:
    """Exponential graph: node ``i`` linked to ``i + 2^k mod n`` for every ``2^k < n``
    (degree ``≈ 2·log2 n``). For ``n = 2^d``: ``n(d − 1) + n/2`` edges.

    Reference: Ying et al., "Exponential graph is provably efficient for decentralized
    deep training", NeurIPS 2021 (the undirected static exponential graph).

    Parameters
    ----------
    n : int
        number of nodes (≥ 2).
    """
    n = _need_n("exponential", n, 2)
    g = nx.empty_graph(n)
    hop = 1
    while hop < n:
        g.add_edges_from((i, (i + hop) % n) for i in range(n))
        hop *= 2
    return _make("exponential", g, n=n)


@register_topology("binary_tree")
def binary_tree(n: int | None = None) -> Topology:
    """Binary tree in heap order: node ``i`` is the parent of ``2i+1`` and ``2i+2``;
    ``n−1`` edges.

    Reference: networkx ``full_rary_tree(2, n)``.

    Parameters
    ----------
    n : int
        number of nodes (≥ 1).
    """
    n = _need_n("binary_tree", n)
    return _make("binary_tree", nx.full_rary_tree(2, n), n=n)


# ---- random families ----------------------------------------------------------------


@register_topology("erdos_renyi")
def erdos_renyi(n: int | None = None, p: float | None = None, seed: int = 0) -> Topology:
    """Erdős–Rényi ``G(n, p)``: each pair linked independently with probability ``p``,
    redrawn until connected. Default ``p = min(1, 2 ln n / n)`` (twice the
    connectivity threshold).

    Reference: Erdős & Rényi, "On random graphs I", 1959; networkx ``gnp_random_graph``.

    Parameters
    ----------
    n : int
        number of nodes (≥ 1).
    p : float
        edge probability in (0, 1].
    seed : int
        random seed (≥ 0).
    """
    n = _need_n("erdos_renyi", n)
    p = min(1.0, 2.0 * math.log(n) / n) if p is None else _float("erdos_renyi", "p", p, 0.0, 1.0, lo_open=True)
    if n > 1 and p == 0.0:
        p = 1.0
    g = _connected("erdos_renyi", seed, lambda s: nx.gnp_random_graph(n, p, seed=s),
                   f"raise p (now {p:g}; the connectivity threshold is ln(n)/n = {math.log(n) / n:.3g})")
    return _make("erdos_renyi", g, n=n, p=p, seed=seed)


def default_radius(n: int) -> float:
    """Default radius of a random geometric graph: ``sqrt(2 ln n / n)`` (about
    ``√(2π) ≈ 2.5`` times the connectivity threshold ``sqrt(ln n / (π n))``), at most ``√2``."""
    return min(math.sqrt(2.0), math.sqrt(2.0 * math.log(max(n, 2)) / max(n, 2)))


@register_topology("random_geometric")
def random_geometric(n: int | None = None, radius: float | None = None, seed: int = 0) -> Topology:
    """Random geometric graph: ``n`` uniform points in the unit square, linked when
    closer than ``radius``; redrawn until connected. Default radius ``sqrt(2 ln n / n)``.

    Reference: Penrose, "Random Geometric Graphs", 2003; networkx ``random_geometric_graph``.

    Parameters
    ----------
    n : int
        number of nodes (≥ 1).
    radius : float
        link distance in (0, √2].
    seed : int
        random seed (≥ 0).
    """
    n = _need_n("random_geometric", n)
    r = default_radius(n) if radius is None else _float("random_geometric", "radius", radius, 0.0, math.sqrt(2) + 1e-12, lo_open=True)
    g = _connected("random_geometric", seed, lambda s: _rgg(n, r, s),
                   f"raise radius (now {r:g}; the connectivity threshold is about {math.sqrt(math.log(max(n, 2)) / (math.pi * n)):.3g})")
    return _make("random_geometric", g, n=n, radius=r, seed=seed)


def _rgg(n: int, r: float, seed: int) -> nx.Graph:
    g = nx.random_geometric_graph(n, r, seed=seed)
    for _, d in g.nodes(data=True):
        d.pop("pos", None)
    return g


@register_topology("random_regular")
def random_regular(n: int | None = None, degree: int = 3, seed: int = 0) -> Topology:
    """Random ``degree``-regular graph (uniform over such graphs), redrawn until
    connected; ``n·degree/2`` edges (``n·degree`` must be even).

    Reference: Steger & Wormald, "Generating random regular graphs quickly", 1999;
    networkx ``random_regular_graph``.

    Parameters
    ----------
    n : int
        number of nodes (> degree).
    degree : int
        degree of every node (≥ 2, < n).
    seed : int
        random seed (≥ 0).
    """
    n = _need_n("random_regular", n, 3)
    d = _int("random_regular", "degree", degree, 2)
    if d >= n:
        raise ValueError(f"topology 'random_regular': parameter 'degree' must be < n = {n}, got {d}")
    if (n * d) % 2:
        raise ValueError(f"topology 'random_regular': n·degree must be even, got n = {n}, degree = {d}")
    g = _connected("random_regular", seed, lambda s: nx.random_regular_graph(d, n, seed=s), "raise degree")
    return _make("random_regular", g, n=n, degree=d, seed=seed)


@register_topology("watts_strogatz")
def watts_strogatz(n: int | None = None, k: int = 4, p: float = 0.1, seed: int = 0) -> Topology:
    """Watts–Strogatz small world: a ring where each node is linked to its ``k`` nearest
    neighbours, each link rewired with probability ``p``; redrawn until connected;
    ``n·k/2`` edges.

    Reference: Watts & Strogatz, "Collective dynamics of 'small-world' networks",
    Nature 1998; networkx ``watts_strogatz_graph``.

    Parameters
    ----------
    n : int
        number of nodes (> k).
    k : int
        ring neighbours per node, even (≥ 2).
    p : float
        rewiring probability in [0, 1].
    seed : int
        random seed (≥ 0).
    """
    n = _need_n("watts_strogatz", n, 3)
    k = _int("watts_strogatz", "k", k, 2)
    if k % 2 or k >= n:
        raise ValueError(f"topology 'watts_strogatz': parameter 'k' must be even and < n = {n}, got {k}")
    p = _float("watts_strogatz", "p", p, 0.0, 1.0)
    g = _connected("watts_strogatz", seed, lambda s: nx.watts_strogatz_graph(n, k, p, seed=s), "raise k or lower p")
    return _make("watts_strogatz", g, n=n, k=k, p=p, seed=seed)


# ---- time-varying -------------------------------------------------------------------


@register_topology("time_varying")
def time_varying(n: int | None = None, base: str = "random_geometric", count: int = 10,
                 switch: str | float = "inverse_chi1", seed: int = 0, **base_params: Any) -> TimeVaryingTopology:
    """A periodic sequence of ``count`` graphs of family ``base`` (graph ``k`` drawn with
    its own seed derived from ``seed`` and ``k``), switching every ``period`` time units
    and cycling. ``switch: inverse_chi1`` sets ``period = 1/χ1``, the worst case over the
    sequence of ``χ1`` of the Laplacians DADAO uses with uniform rates (see
    :func:`fedopt.topology.time_varying.inverse_chi1_period`); a number sets the period.
    Other parameters go to the base family (e.g. ``radius``).

    Reference: Nabli & Oyallon, "DADAO: Decoupled Accelerated Decentralized Asynchronous
    Optimization", ICML 2023 (time-varying experiment: 50 random geometric graphs).

    Parameters
    ----------
    n : int
        number of nodes of every graph.
    base : str
        generator (family) of each graph.
    count : int
        number of graphs (≥ 1).
    switch : str or float
        'inverse_chi1' or the period (a positive number).
    seed : int
        random seed (≥ 0).
    """
    if not isinstance(base, str) or base == "time_varying" or base not in _REGISTRY:
        allowed = [b for b in available_topologies() if b != "time_varying"]
        raise ValueError(f"topology 'time_varying': parameter 'base' must be one of {', '.join(allowed)}, got {base!r}")
    count = _int("time_varying", "count", count, 1)
    seed = _int("time_varying", "seed", seed, 0)
    base_fn = _REGISTRY[base]
    base_allowed = [p.name for p in _named_params(base_fn) if p.name not in ("n", "seed")]
    for key in base_params:
        if key not in base_allowed:
            own = [p.name for p in _named_params(time_varying)]
            raise ValueError(f"topology 'time_varying': unknown parameter {key!r}; allowed: "
                             f"{', '.join(own)}; parameters of {base!r}: {', '.join(base_allowed) or '(none)'}")
    seeded = any(p.name == "seed" for p in _named_params(base_fn))
    tops = []
    for k in range(count):
        kw = dict(base_params)
        if n is not None:
            kw["n"] = n
        if seeded:
            kw["seed"] = int(np.random.SeedSequence([seed, k]).generate_state(1)[0] & 0x7FFFFFFF)
        top = make_topology(base, **kw)
        tops.append(Topology(f"{base}[{k}]", top.n, top.edges, top.rates, top.latency, top.bandwidth,
                             dict(top.params)))
    if isinstance(switch, str):
        if switch != "inverse_chi1":
            raise ValueError(f"topology 'time_varying': parameter 'switch' must be 'inverse_chi1' or a positive number, got {switch!r}")
        period: float | str = "inverse_chi1"
    else:
        period = _float("time_varying", "switch", switch, 0.0, lo_open=True)
    return TimeVaryingTopology(tops, period, name=f"time_varying({base} x{count})",
                               params={"base": base, "count": count, "switch": switch, "seed": seed, **base_params})


def random_geometric_sequence(n: int, count: int, radius: float | None = None, seed: int = 0,
                              period: float | str = "inverse_chi1") -> TimeVaryingTopology:
    """``count`` connected random geometric graphs on ``n`` nodes (graph ``k`` from a
    seed derived from ``seed`` and ``k``), switching every ``period``."""
    params: dict[str, Any] = {"n": n, "base": "random_geometric", "count": count, "switch": period, "seed": seed}
    if radius is not None:
        params["radius"] = radius
    return make_topology("time_varying", **params)
