"""Build step that ships the named topology specs and example configs inside the package.

The specs live in the repository's top-level ``topologies/`` folder and the example
experiment configs in ``experiments/``; users and the docs refer to them there. A wheel
carries copies of their YAML files as package data under ``fedopt/_data/topologies/``
and ``fedopt/_data/experiments/``, where :mod:`fedopt.resources` finds them. Everything
else about the build is declared in ``pyproject.toml``.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

#: Top-level folders whose YAML files are shipped, and where they go inside the package.
SHIPPED = {"topologies": "fedopt/_data/topologies", "experiments": "fedopt/_data/experiments"}

ROOT = Path(__file__).resolve().parent


class build_py_with_data(build_py):
    """``build_py`` that also copies the YAML files of ``topologies/`` and ``experiments/`` into the package."""

    def _shipped(self) -> dict[str, str]:
        """``{build file: source file}`` for every shipped YAML file."""
        out: dict[str, str] = {}
        for folder, target in SHIPPED.items():
            src = ROOT / folder
            files = sorted(f for f in src.iterdir() if f.suffix in (".yaml", ".yml")) if src.is_dir() else []
            if not files:
                raise FileNotFoundError(f"fedopt build: no YAML files in {src}; the wheel would ship no {folder}")
            for f in files:
                out[str(Path(self.build_lib, target, f.name))] = str(f)
        return out

    def build_package_data(self) -> None:
        super().build_package_data()
        for target, src in self._shipped().items():
            self.mkpath(str(Path(target).parent))
            self.copy_file(src, target)

    def get_output_mapping(self) -> dict[str, str]:
        return dict(sorted({**super().get_output_mapping(), **self._shipped()}.items()))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:  # type: ignore[override]
        outputs = super().get_outputs(include_bytecode)
        return outputs if self.editable_mode else outputs + list(self._shipped())


setup(cmdclass={"build_py": build_py_with_data})
