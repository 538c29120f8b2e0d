"""The ``mpi`` engine: MPI ranks that host the shards of the sharded core (see :mod:`fedopt.engines.mpi.engine`).

Importing this package registers the engine (it needs mpi4py and an MPI runtime:
``pip install 'fedopt[mpi]'``); ``mpiexec -n P fedopt run CONFIG --engine mpi`` runs it.
"""

from __future__ import annotations

try:
    from mpi4py import MPI  # noqa: F401 - loads the MPI runtime
except ModuleNotFoundError:
    raise
except (ImportError, RuntimeError) as exc:  # mpi4py without a loadable MPI library
    why = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    raise ValueError(f"engine 'mpi' needs an MPI runtime that mpi4py can load ({type(exc).__name__}: {why}); "
                     "install one, e.g. pip install 'fedopt[mpi]' (mpi4py and the mpich wheel)") from None

from fedopt.engines.base import register_engine
from fedopt.engines.mpi.engine import MpiEngine, MpiJob, launched_by_mpiexec

register_engine("mpi")(MpiEngine)

__all__ = ["MpiEngine", "MpiJob", "launched_by_mpiexec"]
