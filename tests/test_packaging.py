"""Shipped files: named topology specs and example configs, in a checkout and from a wheel.

The wheel test builds a wheel from a copy of the source tree (no network: the build
uses the installed setuptools), installs it with ``pip install --target`` and runs
the installed ``fedopt`` from a directory outside the repository, with the install
first on ``PYTHONPATH``, so nothing can be found through the source tree.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from fedopt.cli import main
from fedopt.resources import (
    example_config_path,
    experiment_config_path,
    list_example_configs,
    list_topology_specs,
    topology_spec_path,
)

ROOT = Path(__file__).resolve().parents[1]
#: What a build needs from the source tree.
BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "fedopt", "topologies", "experiments")


def _stems(folder: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / folder).iterdir() if p.suffix in (".yaml", ".yml"))


def test_checkout_lists_the_top_level_folders() -> None:
    assert list_topology_specs() == _stems("topologies")
    assert "two_cliques8" in list_topology_specs() and "make_clusters" not in list_topology_specs()
    assert list_example_configs() == _stems("experiments")
    assert topology_spec_path("two_cliques8") == ROOT / "topologies" / "two_cliques8.yaml"
    assert example_config_path("quickstart") == ROOT / "experiments" / "quickstart.yaml"


@pytest.mark.parametrize("name", ["no_such_spec", "", ".", "..", "../experiments/quickstart", "make_clusters"])
def test_only_plain_names_of_shipped_specs_resolve(name: str) -> None:
    assert topology_spec_path(name) is None
    assert example_config_path(name) is None


def test_experiment_config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert experiment_config_path("quickstart") == ROOT / "experiments" / "quickstart.yaml"
    (tmp_path / "quickstart").write_text("name: mine\n")  # an existing file wins over the shipped example
    assert experiment_config_path("quickstart") == Path("quickstart")
    assert experiment_config_path("missing.yaml") == Path("missing.yaml")


def test_run_accepts_the_name_of_a_shipped_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import fedopt.experiment.runner as runner

    seen: dict[str, Any] = {}

    def fake_run(cfg: Any, out: Path, **kwargs: Any) -> None:
        seen["cfg"] = cfg
        raise ValueError("stopped before running")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner, "run_experiment", fake_run)
    assert main(["run", "quickstart", "--no-progress"]) == 2
    assert "stopped before running" in capsys.readouterr().err
    from fedopt.experiment.config import load_config

    assert seen["cfg"] == load_config(ROOT / "experiments" / "quickstart.yaml")


def _fedopt(site: Path, cwd: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, str(site / "bin" / "fedopt"), *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_wheel_install_ships_specs_and_examples(tmp_path: Path) -> None:
    for tool in ("pip", "setuptools"):  # looked up, not imported: importing setuptools here would patch distutils
        if importlib.util.find_spec(tool) is None:
            pytest.skip(f"building and installing a wheel needs {tool}")
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in BUILD_INPUTS:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=ignore)
        else:
            shutil.copy2(p, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    build = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-w", str(tmp_path / "wheel"), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "wheel").glob("fedopt-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for folder in ("topologies", "experiments"):
        shipped = {n.rsplit("/", 1)[1] for n in names if n.startswith(f"fedopt/_data/{folder}/")}
        assert shipped == {p.name for p in (ROOT / folder).iterdir() if p.suffix in (".yaml", ".yml")}, folder
    site = tmp_path / "site"
    inst = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert inst.returncode == 0, inst.stderr[-3000:]

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    probe = (
        "import json, fedopt, fedopt.resources as r\n"
        "from fedopt.experiment.sweep import topology_ref\n"
        "print(json.dumps({'init': fedopt.__file__, 'spec': str(r.topology_spec_path('two_cliques8')),\n"
        "  'config': str(r.example_config_path('quickstart')), 'configs': r.list_example_configs(),\n"
        "  'ref': topology_ref('pcie_boxes', 16)}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=outside, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    installed = site / "fedopt"
    assert Path(got["init"]) == installed / "__init__.py"
    assert Path(got["spec"]) == installed / "_data" / "topologies" / "two_cliques8.yaml"
    assert Path(got["config"]) == installed / "_data" / "experiments" / "quickstart.yaml"
    assert got["configs"] == _stems("experiments")
    assert got["ref"] == "pcie_boxes"  # a named spec, not a generator name given the problem's n

    listed = json.loads(_fedopt(site, outside, "topology", "--list", "--json"))
    assert listed["specs"] == _stems("topologies")
    two = json.loads(_fedopt(site, outside, "topology", "two_cliques8", "--json"))
    assert (two["n"], two["edges"]) == (16, 57)
