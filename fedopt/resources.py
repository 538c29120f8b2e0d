"""Files shipped with fedopt: named topology specs and example experiment configs.

The repository keeps them in its top-level ``topologies/`` and ``experiments/``
folders. A wheel carries copies of their YAML files as package data under
``fedopt/_data/topologies/`` and ``fedopt/_data/experiments/`` (the build step in
``setup.py`` puts them there); a source checkout or an editable install reads the
folders next to the package. Both are found through :func:`importlib.resources.files`,
here and nowhere else, so a lookup depends neither on the current directory nor on
where the package is installed.

>>> "two_cliques8" in list_topology_specs()
True
>>> topology_spec_path("two_cliques8").name
'two_cliques8.yaml'
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: File suffixes of specs and configs, in lookup order.
SUFFIXES = (".yaml", ".yml")

#: Where a wheel keeps the shipped folders, relative to the package.
PACKAGED_DIR = "_data"


def _folder(kind: str) -> Path | None:
    """The shipped folder ``kind`` (``"topologies"`` or ``"experiments"``), or None."""
    pkg = resources.files("fedopt")
    packaged = pkg / PACKAGED_DIR / kind
    if packaged.is_dir():
        if not isinstance(packaged, Path):
            raise RuntimeError(
                f"fedopt's {kind} are inside an archive ({packaged}); install fedopt unpacked (as pip installs a wheel)"
            )
        return packaged
    # A source checkout or an editable install: the top-level folder next to the package.
    if isinstance(pkg, Path) and (pkg.parent / "pyproject.toml").is_file() and (pkg.parent / kind).is_dir():
        return pkg.parent / kind
    return None


def _names(folder: Path | None) -> list[str]:
    if folder is None:
        return []
    return sorted({p.stem for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file()})


def _named(folder: Path | None, name: str) -> Path | None:
    # A plain name only: no separators, so a name cannot reach outside the folder.
    if folder is None or not name or Path(name).name != name or name in (".", ".."):
        return None
    for ext in SUFFIXES:
        q = folder / f"{name}{ext}"
        if q.is_file():
            return q
    return None


def topologies_dir() -> Path | None:
    """The folder of shipped topology specs (None when this install has none)."""
    return _folder("topologies")


def experiments_dir() -> Path | None:
    """The folder of shipped example experiment configs (None when this install has none)."""
    return _folder("experiments")


def list_topology_specs() -> list[str]:
    """Names of the shipped topology specs, sorted (``["dgx_4x8", ..., "two_cliques8"]``)."""
    return _names(topologies_dir())


def topology_spec_path(name: str) -> Path | None:
    """The file of the shipped topology spec ``name`` (``"two_cliques8"``), or None if there is none."""
    return _named(topologies_dir(), name)


def list_example_configs() -> list[str]:
    """Names of the shipped example experiment configs, sorted (``["dadao_vs_baselines", ..., "quickstart", ...]``)."""
    return _names(experiments_dir())


def example_config_path(name: str) -> Path | None:
    """The file of the shipped example experiment config ``name`` (``"quickstart"``), or None if there is none."""
    return _named(experiments_dir(), name)


def experiment_config_path(ref: str | Path) -> Path:
    """The config file ``ref`` names: an existing file, else the shipped example of that name.

    A reference that is neither comes back unchanged, so that reading it reports the
    missing file.
    """
    p = Path(ref)
    if p.is_file():
        return p
    shipped = example_config_path(str(ref))
    return shipped if shipped is not None else p
