"""The FedAvg anchor benchmark folder, for the tests that compare against its own code.

The anchor workload and its numpy reference (``fedavg_common.py``, ``numpy_fedavg.py``)
live in the folder ``shared/bench`` next to the repository checkout (``../shared/bench``
from the repository root), read-only; ``FEDOPT_BENCH_DIR`` names another location. The
modules are imported from there by path, never copied into the repository.

Without the folder a test skips, except in CI (``CI=true``), where the folder must be
there and its absence fails the test; a ``FEDOPT_BENCH_DIR`` that does not hold the
files always fails (the location was given on purpose).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

#: Where the anchor folder sits relative to the repository root.
DEFAULT_RELATIVE = Path("..") / "shared" / "bench"
REPO_ROOT = Path(__file__).resolve().parents[1]
FILES = ("fedavg_common.py", "numpy_fedavg.py")


def in_ci() -> bool:
    """True when the ``CI`` environment variable says so (``true``, ``1`` or ``yes``)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def bench_dir() -> Path:
    """The anchor folder: ``FEDOPT_BENCH_DIR`` or ``../shared/bench`` from the repository root.

    Skips the calling test when the default folder is absent outside CI; fails in CI or when
    ``FEDOPT_BENCH_DIR`` is set but lacks the anchor files.
    """
    given = os.environ.get("FEDOPT_BENCH_DIR")
    path = Path(given) if given else (REPO_ROOT / DEFAULT_RELATIVE).resolve()
    missing = [f for f in FILES if not (path / f).is_file()]
    if not missing:
        return path
    where = f"FEDOPT_BENCH_DIR={given}" if given else f"{DEFAULT_RELATIVE} (from the repository root: {path})"
    message = f"FedAvg anchor benchmark folder {where} lacks {', '.join(missing)}"
    if given or in_ci():
        pytest.fail(message + "; the anchor comparison cannot run", pytrace=False)
    pytest.skip(message + " (set FEDOPT_BENCH_DIR to its location; required in CI)")


def load_bench_module(name: str) -> ModuleType:
    """Import ``<bench_dir>/<name>.py`` by path (its own sibling imports resolve in that folder)."""
    folder = bench_dir()
    spec = importlib.util.spec_from_file_location(f"anchor_bench_{name}", folder / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module
