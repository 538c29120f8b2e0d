"""Shared by the MPI engine tests: a problem that fails on MPI rank 1, and the command line
that ``mpiexec`` starts on every rank (it registers that problem first, then runs ``fedopt``).

``quadratic_failing_on_rank_1`` is the ``quadratic`` problem, except that the rank-1 process
of an MPI job raises in ``grad`` from the ``K``-th run it sets up on, ``K`` read from the
file ``marker`` (no file: it never raises). Nothing else differs, so a run that does not
fail equals the plain problem's run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fedopt.core.arrays import FloatArray, IntArray
from fedopt.problems.base import Problem, register_problem
from fedopt.problems.quadratic import Quadratic, random_quadratic

#: Runs set up in this process (counted by shard_view, which each shard calls once per run).
_SETUPS = [0]


class FailingOnRankOne(Quadratic):
    """A :class:`Quadratic` whose ``grad`` raises on MPI rank 1 (see the module docstring)."""

    def __init__(self, A: FloatArray, b: FloatArray, c: FloatArray, marker: str) -> None:
        super().__init__(A, b, c)
        self.marker = marker

    def _armed(self) -> bool:
        path = Path(self.marker) if self.marker else None
        if os.environ.get("PMI_RANK") != "1" or path is None or not path.is_file():
            return False
        return _SETUPS[0] >= int(path.read_text())

    def grad(self, X: FloatArray, nodes: IntArray) -> FloatArray:
        if self._armed():
            raise RuntimeError(f"injected failure on rank 1 in run {_SETUPS[0]}")
        return super().grad(X, nodes)

    def shard_view(self, nodes: IntArray, device: str | None = None) -> Problem:
        _SETUPS[0] += 1
        return self


@register_problem("quadratic_failing_on_rank_1")
def failing_quadratic(n: int, d: int = 3, marker: str = "", seed: int = 0, rng=None) -> FailingOnRankOne:  # noqa: ANN001
    q = random_quadratic(n, d, mu=1.0, L=5.0, seed=seed, rng=rng)
    return FailingOnRankOne(q.A, q.b, q.c, marker)


if __name__ == "__main__":
    from fedopt.cli import main

    sys.exit(main(sys.argv[1:]))
