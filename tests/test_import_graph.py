"""The package's import graph: imports only point downward, cli → experiment → engines →
algorithms → estimators/privacy → problems/topology → core (:data:`LAYERS`).

Every module of ``fedopt`` is parsed with :mod:`ast`, nothing is imported. Every import
statement counts: at module level, inside functions and classes, under
``if TYPE_CHECKING:``, relative or absolute, ``import fedopt.x`` and
``from fedopt.x import y``, and ``importlib.import_module("...")`` / ``__import__("...")``
with a literal name. ``from package import name`` is an edge to ``package.name`` when that
is a module of the package, else to ``package``. A parent package that Python runs before
a submodule is not an edge (it would make every ``__init__`` that re-exports a cycle).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pytest

import fedopt

#: The layers, top first. A module may import its own unit and any unit of a lower layer;
#: units of one layer do not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("fedopt", "fedopt.cli"),
    ("fedopt.experiment",),
    ("fedopt.engines",),
    ("fedopt.algorithms",),
    ("fedopt.estimators", "fedopt.privacy"),
    ("fedopt.problems", "fedopt.topology"),
    ("fedopt.core",),
)

#: Leaf modules any module may import (they import no other fedopt module).
LEAVES = ("fedopt.resources",)

#: The only places that may import ray: the Ray transport and the Ray sweep of experiments.
RAY_ALLOWED = ("fedopt.engines.ray", "fedopt.experiment.ray_sweep")

#: Modules outside RAY_ALLOWED that import ray today, with the reason (none).
RAY_EXCEPTIONS: dict[str, str] = {}

#: The only place that may import mpi4py: the MPI transport.
MPI_ALLOWED = ("fedopt.engines.mpi",)

#: Type-only imports (under ``if TYPE_CHECKING:``) allowed to close a loop among
#: ``fedopt.topology`` modules, with the reason. Nothing runs them, so no import order
#: depends on them; any other import on such a loop fails the test.
TOPOLOGY_TYPE_ONLY_LOOPS: dict[tuple[str, str], str] = {
    ("fedopt.topology.rates.registry", "fedopt.topology.rates.sdp"):
        "RateObjective.sdp is annotated with sdp.SDPContext and nothing runs the import; to untie it, "
        "move SDPContext below the registry",
}


@dataclass(frozen=True)
class Edge:
    """One import: ``src`` (a module) imports ``dst`` (a module name, fedopt's or not)."""

    src: str
    dst: str
    line: int
    type_only: bool

    def __str__(self) -> str:
        return f"{self.src}:{self.line} -> {self.dst}{' (type-only)' if self.type_only else ''}"


def discover(root: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """``{module name: (file, is_package)}`` of every ``.py`` file under ``root``."""
    out: dict[str, tuple[Path, bool]] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        is_pkg = parts[-1] == "__init__"
        name = ".".join((package, *parts[:-1])) if is_pkg else ".".join((package, *parts))
        out[name] = (path, is_pkg)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str, is_pkg: bool, modules: set[str]) -> None:
        self.module, self.modules = module, modules
        self.package = module if is_pkg else module.rpartition(".")[0]
        self.type_only = 0
        self.edges: list[Edge] = []

    def _add(self, dst: str, line: int) -> None:
        self.edges.append(Edge(self.module, dst, line, self.type_only > 0))

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.type_only += 1
        for stmt in node.body:
            self.visit(stmt)
        self.type_only -= 1
        for stmt in node.orelse:
            self.visit(stmt)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.package.split(".")
            if node.level - 1 >= len(parts):
                raise ValueError(f"{self.module}:{node.lineno}: relative import beyond the top-level package")
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join(parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            self._add(sub if sub in self.modules else base, node.lineno)

    def visit_Call(self, node: ast.Call) -> None:
        fn = node.func
        name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
        if name in ("import_module", "__import__") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not arg.value.startswith("."):
                self._add(arg.value, node.lineno)
        self.generic_visit(node)


def import_edges(root: Path, package: str) -> tuple[set[str], list[Edge]]:
    """The modules of the package at ``root`` and every import statement in them."""
    found = discover(root, package)
    modules = set(found)
    edges: list[Edge] = []
    for name, (path, is_pkg) in found.items():
        visitor = _Imports(name, is_pkg, modules)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        edges.extend(visitor.edges)
    return modules, edges


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def unit_of(module: str) -> str | None:
    """The longest unit of :data:`LAYERS` that contains ``module``."""
    units = [u for layer in LAYERS for u in layer if within(module, u)]
    return max(units, key=len) if units else None


def allowed_units(unit: str) -> set[str]:
    """``unit`` itself and every unit of the layers below it."""
    rank = next(i for i, layer in enumerate(LAYERS) if unit in layer)
    return {unit} | {u for layer in LAYERS[rank + 1:] for u in layer}


MODULES, EDGES = import_edges(Path(fedopt.__file__).parent, "fedopt")
INTERNAL = [e for e in EDGES if within(e.dst, "fedopt")]


# ---- the parser itself ------------------------------------------------------------------


def test_parser_sees_every_kind_of_import(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.sub import leaf\n")
    (pkg / "sub" / "__init__.py").write_text("from . import leaf\nfrom .leaf import VALUE\n")
    (pkg / "sub" / "leaf.py").write_text("def f():\n    from .. import top\n    from ..top import C\n")
    (pkg / "top.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "import pkg.sub.leaf as alias\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.sub import VALUE\n"
        "else:\n"
        "    import ray\n"
        "def f():\n"
        "    from .sub import leaf\n"
        "    import importlib\n"
        "    return importlib.import_module('ray.util')\n"
        "class C:\n"
        "    def g(self):\n"
        "        from .sub.leaf import f\n"
    )
    modules, edges = import_edges(pkg, "pkg")
    assert modules == {"pkg", "pkg.sub", "pkg.sub.leaf", "pkg.top"}
    assert {(e.src, e.dst, e.line, e.type_only) for e in edges} == {
        ("pkg", "pkg.sub.leaf", 1, False),
        ("pkg.sub", "pkg.sub.leaf", 1, False),
        ("pkg.sub", "pkg.sub.leaf", 2, False),
        ("pkg.sub.leaf", "pkg.top", 2, False),
        ("pkg.sub.leaf", "pkg.top", 3, False),
        ("pkg.top", "typing", 1, False),
        ("pkg.top", "pkg.sub.leaf", 2, False),
        ("pkg.top", "pkg.sub", 4, True),
        ("pkg.top", "ray", 6, False),
        ("pkg.top", "pkg.sub.leaf", 8, False),
        ("pkg.top", "importlib", 9, False),
        ("pkg.top", "ray.util", 10, False),
        ("pkg.top", "pkg.sub.leaf", 13, False),
    }


def test_parser_rejects_a_relative_import_above_the_package(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "top.py").write_text("from .. import x\n")
    with pytest.raises(ValueError, match=r"pkg.top:1: relative import beyond the top-level package"):
        import_edges(tmp_path / "pkg", "pkg")


def test_the_package_is_parsed() -> None:
    assert {"fedopt.core.meter", "fedopt.topology.spectral", "fedopt.engines.ray.engine"} <= MODULES
    assert any(e.src == "fedopt.engines.ray.engine" and e.dst == "ray" for e in EDGES)


# ---- the rules --------------------------------------------------------------------------


def test_core_imports_only_core() -> None:
    bad = [str(e) for e in INTERNAL
           if within(e.src, "fedopt.core") and not within(e.dst, "fedopt.core") and e.dst not in LEAVES]
    assert not bad, "fedopt.core imports from above it:\n" + "\n".join(bad)


def test_leaves_import_no_fedopt_module() -> None:
    bad = [str(e) for e in INTERNAL if e.src in LEAVES]
    assert not bad, "a leaf module imports fedopt:\n" + "\n".join(bad)


def test_every_module_is_in_a_layer() -> None:
    lost = sorted(m for m in MODULES if m not in LEAVES and unit_of(m) is None)
    assert not lost, f"modules in no unit of LAYERS (add them to the table): {', '.join(lost)}"


def test_imports_point_downward() -> None:
    bad = []
    for e in INTERNAL:
        if e.dst in LEAVES or e.src in LEAVES:
            continue
        src, dst = unit_of(e.src), unit_of(e.dst)
        if src is None or dst is None or dst not in allowed_units(src):
            bad.append(f"{e}  ({src} may import {', '.join(sorted(allowed_units(src))) if src else 'nothing'})")
    assert not bad, "imports that do not point downward:\n" + "\n".join(bad)


def test_topology_has_no_import_cycle() -> None:
    graph = nx.DiGraph()
    for e in INTERNAL:
        if within(e.src, "fedopt.topology") and within(e.dst, "fedopt.topology") and e.src != e.dst:
            if e.type_only and (e.src, e.dst) in TOPOLOGY_TYPE_ONLY_LOOPS:
                continue
            graph.add_edge(e.src, e.dst)
    # one cycle per strongly connected component: enough to name every knot, short to read
    knots = [graph.subgraph(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    cycles = sorted(" -> ".join([*(u for u, _ in nx.find_cycle(k)), nx.find_cycle(k)[0][0]]) for k in knots)
    assert not cycles, "import cycles among fedopt.topology modules:\n" + "\n".join(cycles)


def test_listed_type_only_loops_are_type_only() -> None:
    for (src, dst), reason in TOPOLOGY_TYPE_ONLY_LOOPS.items():
        found = [e for e in INTERNAL if e.src == src and e.dst == dst]
        assert found, f"{src} -> {dst} is listed ({reason}) but no longer imported: remove it from the list"
        assert all(e.type_only for e in found), f"{src} -> {dst} is listed as type-only, but runs: {found}"


def test_only_the_ray_transport_imports_ray() -> None:
    bad = [str(e) for e in EDGES
           if within(e.dst, "ray") and not any(within(e.src, p) for p in RAY_ALLOWED) and e.src not in RAY_EXCEPTIONS]
    assert not bad, f"ray imported outside {', '.join(RAY_ALLOWED)}:\n" + "\n".join(bad)
    stale = [m for m in RAY_EXCEPTIONS if not any(e.src == m and within(e.dst, "ray") for e in EDGES)]
    assert not stale, f"listed in RAY_EXCEPTIONS but no longer importing ray: {stale}"


def test_only_the_mpi_transport_imports_mpi4py() -> None:
    bad = [str(e) for e in EDGES if within(e.dst, "mpi4py") and not any(within(e.src, p) for p in MPI_ALLOWED)]
    assert not bad, f"mpi4py imported outside {', '.join(MPI_ALLOWED)}:\n" + "\n".join(bad)
    assert any(within(e.dst, "mpi4py") for e in EDGES), "no module imports mpi4py: is the mpi engine gone?"


# ---- the sharded core and its transports ----------------------------------------------

SHARDED_CORE = "fedopt.engines.sharded"
RAY_TRANSPORT = "fedopt.engines.ray"
MPI_TRANSPORT = "fedopt.engines.mpi"


def _reachable(start: set[str]) -> dict[str, str]:
    """Every module (fedopt's or not) that ``start`` imports, directly or through fedopt
    modules, with the chain of imports that reaches it."""
    out_edges: dict[str, list[Edge]] = {}
    for e in EDGES:
        out_edges.setdefault(e.src, []).append(e)
    seen = {m: m for m in start}
    todo = sorted(start)
    while todo:
        m = todo.pop()
        for e in out_edges.get(m, []):
            if e.dst not in seen:
                seen[e.dst] = f"{seen[m]} -> {e.dst}"
                todo.append(e.dst)
    return seen


def _top_level_defs(prefix: str) -> dict[str, str]:
    """``{name: module}`` of the functions and classes defined at the top of ``prefix``'s modules."""
    found = discover(Path(fedopt.__file__).parent, "fedopt")
    out: dict[str, str] = {}
    for name, (path, _) in found.items():
        if within(name, prefix):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    out[node.name] = name
    return out


def test_the_sharded_core_reaches_no_ray() -> None:
    """Neither directly nor through another module: an MPI transport must not need ray."""
    core = {m for m in MODULES if within(m, SHARDED_CORE)}
    assert core, f"no modules under {SHARDED_CORE}"
    reach = _reachable(core)
    bad = sorted(chain for dst, chain in reach.items() if within(dst, "ray") or within(dst, RAY_TRANSPORT))
    assert not bad, f"{SHARDED_CORE} reaches ray:\n" + "\n".join(bad)


def test_the_sharded_core_reaches_no_mpi4py() -> None:
    """Neither directly nor through another module: the core runs without mpi4py installed."""
    core = {m for m in MODULES if within(m, SHARDED_CORE)}
    reach = _reachable(core)
    bad = sorted(chain for dst, chain in reach.items() if within(dst, "mpi4py") or within(dst, MPI_TRANSPORT))
    assert not bad, f"{SHARDED_CORE} reaches mpi4py:\n" + "\n".join(bad)


def test_the_mpi_transport_reaches_no_ray() -> None:
    """The MPI engine runs without ray installed."""
    reach = _reachable({m for m in MODULES if within(m, MPI_TRANSPORT)})
    bad = sorted(chain for dst, chain in reach.items() if within(dst, "ray") or within(dst, RAY_TRANSPORT))
    assert not bad, f"{MPI_TRANSPORT} reaches ray:\n" + "\n".join(bad)


@pytest.mark.parametrize("transport", [RAY_TRANSPORT, MPI_TRANSPORT])
def test_the_transports_reuse_the_sharded_core(transport: str) -> None:
    """A transport imports the core and defines none of its functions or classes again."""
    assert any(within(e.src, transport) and within(e.dst, SHARDED_CORE) for e in INTERNAL)
    core, side = _top_level_defs(SHARDED_CORE), _top_level_defs(transport)
    twice = sorted(f"{name} ({side[name]} and {core[name]})" for name in set(core) & set(side))
    assert not twice, f"defined in both the sharded core and {transport}:\n" + "\n".join(twice)


def test_the_run_loop_exists_once() -> None:
    """Only :class:`fedopt.engines.base.Simulation` has a run loop (``Engine.run`` records a
    failed run); every other engine class replaces parts of it, never ``run`` itself."""
    found = discover(Path(fedopt.__file__).parent, "fedopt")
    owners = []
    for name, (path, _) in found.items():
        if within(name, "fedopt.engines"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef) and any(
                        isinstance(f, ast.FunctionDef) and f.name == "run" for f in node.body):
                    owners.append(f"{name}.{node.name}")
    assert sorted(owners) == ["fedopt.engines.base.Engine", "fedopt.engines.base.Simulation"]
