"""Topology specs as YAML, and resolving a config's topology reference.

A spec file describes one graph::

    name: dgx_4x8                 # optional (default: the file name)
    description: 4 DGX boxes ...  # optional, free text
    n: 32
    defaults:                     # optional per-edge defaults
      latency: 2.0e-6             # seconds
      bandwidth: 1.5e11           # bytes per second
    edges:
      - [0, 1]                                  # plain edge
      - {u: 0, v: 8, rate: 0.7, latency: 5.0e-6, bandwidth: 2.5e10, kind: infiniband}

Per-edge keys: ``u``, ``v`` (required), ``rate`` (gossip rate λ_e), ``latency``,
``bandwidth`` and ``kind`` (a free label). Rates must be given for every edge or for
none. :func:`save_spec` writes the same format, so the output of ``fedopt rates`` is
accepted back as a topology.

:func:`resolve_topology` turns what a config names into a topology: a
:class:`~fedopt.topology.graph.Topology` (passed through), a spec path, the name of a
spec shipped with fedopt (the repository's ``topologies/`` folder, found through
:mod:`fedopt.resources`), or a generator name with parameters
(``{"name": "cycle", "n": 16}``; see :mod:`fedopt.topology.generators`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fedopt.resources import list_topology_specs, topology_spec_path
from fedopt.topology.graph import Topology

_EDGE_KEYS = {"u", "v", "rate", "latency", "bandwidth", "kind"}
_TOP_KEYS = {"name", "description", "n", "defaults", "edges", "source"}


class SpecError(ValueError):
    """A malformed topology spec; the message names the file and the key."""


def spec_path(name: str | os.PathLike[str]) -> Path | None:
    """The file a name refers to: a path (it ends in ``.yaml``/``.yml`` or has a folder part), or the
    shipped spec ``NAME`` (``topologies/NAME.yaml``). A bare name is never taken from the working
    directory, so a stray file called ``cycle`` cannot shadow the generator."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or len(p.parts) > 1:
        return p if p.is_file() else None
    return topology_spec_path(str(name))


def available_specs() -> list[str]:
    """Names of the specs shipped with fedopt (the repository's ``topologies/``)."""
    return list_topology_specs()


def topology_from_dict(doc: dict[str, Any], where: str = "spec") -> Topology:
    """Build a :class:`Topology` from a parsed spec (see the module docstring)."""
    if not isinstance(doc, dict):
        raise SpecError(f"{where}: a topology spec must be a mapping with keys n and edges")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    if "edges" not in doc:
        raise SpecError(f"{where}: missing key 'edges' (a list of [u, v] or {{u, v, rate, latency, bandwidth}})")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - {"latency", "bandwidth", "rate"}:
        raise SpecError(f"{where}.defaults: allowed keys are latency, bandwidth, rate")
    rows: list[tuple[int, int, float | None, float | None, float | None]] = []
    for k, e in enumerate(doc["edges"] or []):
        key = f"{where}.edges[{k}]"
        if isinstance(e, (list, tuple)):
            if len(e) not in (2, 3):
                raise SpecError(f"{key}: an edge is [u, v] or [u, v, rate], got {e!r}")
            u, v = e[0], e[1]
            rate = e[2] if len(e) == 3 else defaults.get("rate")
            lat, bw = defaults.get("latency"), defaults.get("bandwidth")
        elif isinstance(e, dict):
            bad = set(e) - _EDGE_KEYS
            if bad:
                raise SpecError(f"{key}: unknown key(s) {sorted(bad)}; allowed: {sorted(_EDGE_KEYS)}")
            if "u" not in e or "v" not in e:
                raise SpecError(f"{key}: an edge needs keys u and v")
            u, v = e["u"], e["v"]
            rate = e.get("rate", defaults.get("rate"))
            lat = e.get("latency", defaults.get("latency"))
            bw = e.get("bandwidth", defaults.get("bandwidth"))
        else:
            raise SpecError(f"{key}: an edge is [u, v] or a mapping with u, v, got {e!r}")
        try:
            uu, vv = int(u), int(v)
            vals = [None if x is None else float(x) for x in (rate, lat, bw)]
        except (TypeError, ValueError):
            raise SpecError(f"{key}: endpoints must be integers and rate/latency/bandwidth numbers") from None
        for nm, x in zip(("rate", "latency", "bandwidth"), vals):
            if x is not None and (not np.isfinite(x) or x < 0 or (nm == "bandwidth" and x == 0)):
                raise SpecError(f"{key}.{nm}: must be a finite {'positive' if nm == 'bandwidth' else 'non-negative'} number, got {x}")
        rows.append((uu, vv, *vals))
    n = doc.get("n")
    if n is None:
        n = 1 + max((max(r[0], r[1]) for r in rows), default=-1)
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise SpecError(f"{where}.n: must be an integer, got {doc.get('n')!r}") from None
    if n < 1:
        raise SpecError(f"{where}.n: must be ≥ 1, got {n}")
    edges = np.array([(r[0], r[1]) for r in rows], dtype=np.int64).reshape(-1, 2)

    def column(idx: int, nm: str) -> np.ndarray | None:
        vals = [r[idx] for r in rows]
        if all(x is None for x in vals):
            return None
        if any(x is None for x in vals):
            missing = [k for k, x in enumerate(vals) if x is None][:5]
            raise SpecError(f"{where}.edges: '{nm}' is given for some edges but not for edges {missing} (give it for all, or set defaults.{nm})")
        return np.array(vals, dtype=np.float64)

    name = str(doc.get("name") or where)
    try:
        return Topology(
            name=name, n=n, edges=edges, rates=column(2, "rate"), latency=column(3, "latency"),
            bandwidth=column(4, "bandwidth"),
            params={k: doc[k] for k in ("description", "source") if k in doc},
        )
    except ValueError as exc:
        raise SpecError(f"{where}: {exc}") from None


def load_spec(path: str | os.PathLike[str]) -> Topology:
    """Read a topology spec file (see the module docstring)."""
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise SpecError(f"topology spec {str(path)!r} not found; shipped specs (topologies/): {available_specs()}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{p}: not valid YAML ({exc.__class__.__name__})") from None
    if isinstance(doc, dict) and "name" not in doc:
        doc = {**doc, "name": p.stem}
    return topology_from_dict(doc, where=str(p.name))


def spec_dict(top: Topology, description: str | None = None) -> dict[str, Any]:
    """The spec mapping of a topology (the inverse of :func:`topology_from_dict`)."""
    edges: list[Any] = []
    for k, (u, v) in enumerate(top.edges.tolist()):
        e: dict[str, Any] = {"u": int(u), "v": int(v)}
        for attr, key in (("rates", "rate"), ("latency", "latency"), ("bandwidth", "bandwidth")):
            arr = getattr(top, attr)
            if arr is not None:
                e[key] = float(arr[k])
        edges.append(e if len(e) > 2 else [int(u), int(v)])
    doc: dict[str, Any] = {"name": top.name, "n": top.n}
    desc = description if description is not None else top.params.get("description")
    if desc:
        doc["description"] = str(desc)
    doc["edges"] = edges
    return doc


def save_spec(top: Topology, path: str | os.PathLike[str], description: str | None = None) -> Path:
    """Write ``top`` as a spec file, atomically (temp file + rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(spec_dict(top, description), sort_keys=False, default_flow_style=None, width=100, allow_unicode=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def resolve_topology(ref: Any) -> Any:
    """A topology (or time-varying sequence) from what a config names.

    ``ref`` may be a :class:`Topology` or time-varying sequence (returned as is), a spec
    path or shipped spec name (``"dgx_4x8"``), a generator name, or a mapping
    ``{"name": ..., **params}``. For a spec file the mapping may add ``rates`` (a list,
    one per edge, or a path to a rates spec) to override its gossip rates. Any entry may
    give ``rates: {objective: dadao}`` (and ``solver``, ``method``, ``message_bytes``) to
    use rates optimized by :func:`fedopt.topology.rates.optimize_rates` (cached by graph).
    """
    if hasattr(ref, "edges") or hasattr(ref, "at"):
        return ref
    if isinstance(ref, (str, os.PathLike)):
        ref = {"name": str(ref)}
    if not isinstance(ref, dict) or "name" not in ref:
        raise SpecError(f"a topology is a name, a spec path or a mapping with 'name', got {ref!r}")
    params = {k: v for k, v in ref.items() if k not in ("name", "label")}
    name = str(ref["name"])
    if isinstance(params.get("rates"), dict):
        # rates: {objective: dadao, solver: scs, ...} -> rates optimized on the fly (cached by graph)
        from fedopt.topology.rates import optimized_topology, rates_options

        opts = dict(params.pop("rates"))
        top = resolve_topology({"name": name, **params})
        try:
            return optimized_topology(top, **opts)
        except TypeError as exc:
            raise SpecError(f"topology {name!r}: bad rates options {opts!r} ({exc}); "
                            f"allowed: {', '.join(rates_options())}") from None
    path = spec_path(name)
    if path is not None:
        rates = params.pop("rates", None)
        params.pop("n", None)  # a spec fixes its own n
        if params:
            raise SpecError(f"topology {name!r} is a spec file; it takes only 'rates', not {sorted(params)}")
        top = load_spec(path)
        if rates is not None:
            if isinstance(rates, str):
                rates = load_spec(rates).rates
                if rates is None:
                    raise SpecError(f"topology {name!r}: the rates file has no per-edge rates")
            top = top.with_rates(np.asarray(rates, dtype=np.float64))
        return top
    from fedopt.topology.generators import available_topologies, make_topology

    if name not in available_topologies():
        raise SpecError(
            f"unknown topology {name!r}; generators: {available_topologies()}; shipped specs (topologies/): {available_specs()}"
        )
    return make_topology(name, **params)
