"""The ``mpi`` engine: the sharded core (:mod:`fedopt.engines.sharded`) over MPI ranks.

Launched as ``mpiexec -n P fedopt run CONFIG --engine mpi``: every rank starts the same
command; rank 0 runs the experiment (the seeded schedule, the record points, the
results table, the plots) and hosts shard 0, ranks 1..P-1 host shards 1..P-1 of each
run and serve rank 0 until it ends the job (:class:`MpiJob`). Everything about how a
run is spread — partition, event plans, cross-shard gossip, halo exchange of synchronous
rounds, federated rounds, meter merge — is the engine-neutral core's
(:class:`~fedopt.engines.sharded.simulation.ShardedSimulation`); this package only moves
ops and rows between ranks (:mod:`fedopt.engines.mpi.transport`).

From Python, a script started with ``mpiexec -n P python script.py`` does the same::

    with MpiJob() as job:          # ranks 1..P-1 serve inside this line until rank 0 is done
        if job.is_driver:
            result = make_engine("mpi").run(spec)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import TracebackType

from mpi4py import MPI

from fedopt.engines.base import Engine, RunResult, RunSpec
from fedopt.engines.mpi.transport import YIELD_S, MpiTransport, end_job, serve
from fedopt.engines.sharded.simulation import ShardedSimulation, run_on_driver
from fedopt.engines.sharded.split import split_for

#: Environment variables that MPI launchers set in the processes they start (MPICH's and
#: Intel MPI's Hydra, Open MPI, PMIx, Slurm's PMI).
LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")

#: How to launch a run on MPI ranks (in error messages).
LAUNCH_HINT = ("launch it as: mpiexec -n P fedopt run CONFIG --engine mpi (P ranks: rank 0 drives the "
               "run and holds shard 0, each other rank holds one shard; pip install 'fedopt[mpi]' "
               "brings mpi4py and an mpiexec)")


def launched_by_mpiexec() -> bool:
    """Whether this process was started by an MPI launcher (not a singleton MPI process)."""
    return MPI.COMM_WORLD.Get_attr(MPI.APPNUM) is not None or any(v in os.environ for v in LAUNCHER_VARIABLES)


_ACTIVE: MpiJob | None = None


class MpiJob:
    """The ranks of this MPI job, for the runs of one command (a context manager).

    On rank 0 (``is_driver``) the body runs the experiment, and the exit stops the
    other ranks; on the other ranks, entering serves rank 0 until it stops them (the
    body then has nothing to do). A single process that no MPI launcher started is a
    :class:`ValueError` that says how to launch the job.
    """

    def __init__(self) -> None:
        world = MPI.COMM_WORLD
        if world.Get_size() == 1 and not launched_by_mpiexec():
            raise ValueError(f"engine 'mpi': this process is a single MPI rank, not started by mpiexec; {LAUNCH_HINT}")
        self.comm = world.Dup()
        self.rank = int(self.comm.Get_rank())
        self.size = int(self.comm.Get_size())
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)  # the ranks on this machine
        #: More ranks than cores on this machine: waits sleep at once (see transport.YIELD_S).
        self.oversubscribed = node.Get_size() > len(os.sched_getaffinity(0))
        node.Free()
        self.yield_s = 0.0 if self.oversubscribed else YIELD_S
        self.transport = MpiTransport(self.comm, self.yield_s) if self.rank == 0 else None

    @property
    def is_driver(self) -> bool:
        return self.rank == 0

    def __enter__(self) -> MpiJob:
        global _ACTIVE
        if self.rank != 0:
            serve(self.comm, self.yield_s)
        else:
            _ACTIVE = self
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        global _ACTIVE
        if self.transport is None:
            return
        _ACTIVE = None
        if exc_type is not None and not issubclass(exc_type, Exception):  # interrupted: no clean stop
            end_job(self.comm, f"fedopt: mpi engine: {exc_type.__name__} on rank 0; ending the MPI job")
        self.transport.stop()


def active_job() -> MpiJob:
    """The :class:`MpiJob` this rank drives (a :class:`ValueError` outside one)."""
    if _ACTIVE is None:
        raise ValueError("engine 'mpi': no MPI job is running in this process; " + LAUNCH_HINT +
                         "; from Python: with MpiJob() as job: if job.is_driver: make_engine('mpi').run(spec)")
    return _ACTIVE


class MpiEngine(Engine):
    """Runs specs with their shards on the ranks of the running :class:`MpiJob` (one shard
    per rank, at most one per node; rank 0 drives and holds shard 0).

    A synchronous round algorithm without ``round_rows`` runs on rank 0 (its message says so).
    """

    name = "mpi"

    def __init__(self) -> None:
        self.job = active_job()

    def placement(self) -> str:
        size = self.job.size
        return (f"each run's shards on the {size} rank{'s' if size > 1 else ''} of this MPI job "
                "(rank 0 drives the run and holds shard 0)")

    @property
    def transport(self) -> MpiTransport:
        assert self.job.transport is not None
        return self.job.transport

    def _run(self, spec: RunSpec, progress: Callable[[float], None] | None) -> RunResult:
        if split_for(spec.algorithm) is None:  # synchronous rounds without round_rows: on the driver
            return run_on_driver(spec, self.name, progress)
        try:
            return ShardedSimulation(spec, self.transport).run(progress)
        finally:  # every rank done with this run's ops (also after an error on the driver)
            self.transport.settle()


__all__ = ["LAUNCH_HINT", "MpiEngine", "MpiJob", "active_job", "launched_by_mpiexec"]
