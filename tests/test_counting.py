"""Counting has two places: the counting oracle and the channel. No algorithm touches the meter."""

from __future__ import annotations

import ast
from pathlib import Path

import fedopt.algorithms

ALGORITHMS = Path(fedopt.algorithms.__file__).parent


def _meter_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [f"{path.relative_to(ALGORITHMS.parent)}:{node.lineno}" for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == "meter"]


def test_no_algorithm_reads_or_writes_the_meter() -> None:
    """Every gradient, query, local step and message an algorithm makes is counted by
    ``ctx.oracle`` or ``ctx.channel``; an algorithm that reaches for ``.meter`` counts
    beside them (and may count what it did not evaluate)."""
    modules = [p for p in ALGORITHMS.rglob("*.py") if p.name != "base.py"]
    assert len(modules) >= 10  # the search found the algorithms
    uses = [u for p in modules for u in _meter_uses(p)]
    assert uses == [], f"algorithms use the meter directly at {', '.join(uses)}"
