"""The MPI transport of the sharded core: shard ``i`` of a run on MPI rank ``i``.

Rank 0 is the driver: it runs :class:`~fedopt.engines.sharded.simulation.ShardedSimulation`
(the seeded schedule, the record points, the results table) and also hosts shard 0.
Every other rank serves it (:func:`serve`).

How calls travel. :meth:`MpiTransport.submit` does not run anything: it appends a
``call`` op to the queue of the shard's rank; an argument that is the output of a call on
another rank becomes a *forward* of that call (while it is still queued: the producing
rank sends the output the moment the call returns) or a ``send`` op in the producer's
queue, and the consumer receives it under a tag of its own. :meth:`MpiTransport.gather`
sends every queue in one message per rank, runs rank 0's own queue, then collects the
outputs it asked for. Every rank runs its queue in order; an op only waits for outputs
of calls submitted before it and sends never block, so the queues always drain (no
cycle of waits can form). Between two record points a rank therefore gets one message
of ops, the ranks run their shards side by side, and the state rows that cross a shard
boundary (peer messages of cross-shard gossip, halo rows of synchronous rounds) go
point to point between the ranks that hold the two ends, never through rank 0. The
partial sums of a federated round are reduced over a binomial tree of the ranks
(:meth:`MpiTransport.reduce_sum`).

Rows go as buffers, not pickles: an output sent from rank to rank is packed into one
byte buffer (a numeric array as a short header and its raw bytes, anything else pickled
behind a one-word header, :func:`pack`) and sent with a buffer ``Isend``; the receiver
matches it with ``improbe``, receives it into a buffer of the probed size and reads the
array in place (:func:`unpack`). The driver learns that a block of calls ran from one
``sync`` message per rank (:meth:`MpiTransport.wait`), not from their outputs.

Waits poll (``improbe``) and back off into short sleeps, so ranks that oversubscribe
the cores yield to each other instead of spinning.

Failures. A call that raises on any rank ends the MPI job: the rank sends its error
to rank 0, which prints it (rank, shard, run, method, traceback) on its standard error
and calls ``MPI_Abort``; the per-run parts already written stay, and ``fedopt run ...
--resume`` finishes the sweep. Rank 0 checks for such reports in every wait, so a
failed rank never leaves the job hanging.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
from mpi4py import MPI

from fedopt.algorithms.base import Prepared
from fedopt.core.arrays import IntArray
from fedopt.engines.base import RunSpec
from fedopt.engines.sharded.transport import Transport
from fedopt.engines.sharded.worker import ShardWorker

#: Message tags: op queues (rank 0 → rank), outputs to rank 0, failure reports; each output sent
#: from rank to rank has its own tag from ``TAG_DATA`` up (so it matches its receive whatever
#: the order of sends and receives).
TAG_OPS, TAG_RESULT, TAG_FAIL, TAG_DATA = 101, 102, 103, 128

#: A wait polls, yielding the core between polls (``sched_yield``) for ``YIELD_S`` seconds,
#: then sleeps between polls, longer and longer up to ``MAX_SLEEP_S`` (a long wait, e.g. for a
#: rank that computes a big shard, then costs no core). Ranks that outnumber the cores of
#: their machine sleep at once (``yield_s=0``): a yielding rank would hold a core that a
#: computing rank needs.
YIELD_S = 5e-3
MAX_SLEEP_S = 1e-3

#: The worker methods a rank runs for rank 0.
WORKER_METHODS = frozenset({"setup", "snapshot", "restore", "run_segment", "client_update", "row_step", "row_inner",
                            "info", "ping"})

#: How long a failed rank waits for rank 0 to end the job before it ends it itself (seconds).
FAIL_GRACE_S = 30.0

#: How long a rank that ends the job waits after printing why, so that the launcher forwards
#: the message before ``MPI_Abort`` tears its processes down (seconds).
DRAIN_S = 1.0


def end_job(comm: MPI.Comm, message: str) -> None:
    """Print ``message`` on this rank's standard error, give the launcher time to forward it,
    and end the MPI job (exit status 1)."""
    sys.stdout.flush()
    print(message, file=sys.stderr, flush=True)
    time.sleep(DRAIN_S)
    comm.Abort(1)


def _add(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """``a + b`` key by key (``None``: nothing to add)."""
    if a is None or b is None:
        return b if a is None else a
    return {k: a[k] + b[k] for k in a}


def tree(rank: int, size: int) -> tuple[list[int], int | None]:
    """The children and the parent of ``rank`` in the binomial reduction tree rooted at rank 0
    of ``size`` ranks (children in the order their partial sums are added)."""
    children, step = [], 1
    while step < size and rank % (2 * step) == 0:
        if rank + step < size:
            children.append(rank + step)
        step *= 2
    return children, (None if rank == 0 else rank - (rank & -rank))


#: Values that need no copy (immutable).
_ATOMS = (type(None), bool, int, float, complex, str, bytes, np.generic)


def _copy(obj: Any) -> Any:
    """``obj`` as another process would receive it, a deep copy: arrays, dicts, lists and
    tuples of them are copied directly (the event plans and snapshots rank 0 hands its own
    shard), anything else through pickle."""
    if isinstance(obj, np.ndarray) and obj.dtype != object:
        return obj.copy()
    if isinstance(obj, _ATOMS):
        return obj
    if type(obj) is dict:
        return {k: _copy(v) for k, v in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj)(_copy(v) for v in obj)
    return pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


#: First word of a data message (:func:`pack`): one array's header and raw bytes follow, or a pickle.
RAW, PICKLED = 1, 2


def _dtype_word(dtype: np.dtype) -> int:
    return int.from_bytes(dtype.str.encode("ascii").ljust(8, b"\0"), "little")


def pack(obj: Any) -> np.ndarray:
    """``obj`` as one byte buffer for a buffer send: a numeric array as the words ``RAW``,
    its dtype, ``ndim`` and shape followed by its raw bytes (one copy, no pickle); anything
    else as the word ``PICKLED`` followed by its pickle."""
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "biufc":
        head = np.array([RAW, _dtype_word(obj.dtype), obj.ndim, *obj.shape], dtype=np.int64)
        buf = np.empty(head.nbytes + obj.nbytes, dtype=np.uint8)
        buf[:head.nbytes] = head.view(np.uint8)
        if obj.nbytes:
            buf[head.nbytes:] = np.ascontiguousarray(obj).reshape(-1).view(np.uint8)
        return buf
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    buf = np.empty(8 + len(data), dtype=np.uint8)
    buf[:8] = np.array([PICKLED], dtype=np.int64).view(np.uint8)
    buf[8:] = np.frombuffer(data, dtype=np.uint8)
    return buf


def unpack(buf: np.ndarray) -> Any:
    """The object of a :func:`pack` buffer (an array is read in place: a view of ``buf``)."""
    kind = int(buf[:8].view(np.int64)[0])
    if kind == PICKLED:
        return pickle.loads(buf[8:].data)
    if kind != RAW:
        raise RuntimeError(f"mpi transport: a data message of unknown kind {kind}")
    dtype_word, ndim = buf[8:24].view(np.int64).tolist()
    dtype = np.dtype(int(dtype_word).to_bytes(8, "little").rstrip(b"\0").decode("ascii"))
    end = 24 + 8 * ndim
    shape = tuple(buf[24:end].view(np.int64).tolist())
    return buf[end:].view(dtype).reshape(shape)


def send_data(comm: MPI.Comm, obj: Any, dest: int, tag: int) -> tuple[MPI.Request, np.ndarray]:
    """Start a buffer send of ``obj`` (:func:`pack`); the buffer must live until the request completes."""
    buf = pack(obj)
    return comm.Isend([buf, MPI.BYTE], dest, tag), buf


def _take_data(msg: MPI.Message, status: MPI.Status) -> Any:
    buf = np.empty(status.Get_count(MPI.BYTE), dtype=np.uint8)
    msg.Recv([buf, MPI.BYTE])
    return unpack(buf)


def wait_data(comm: MPI.Comm, source: int, tag: int, idle: Callable[[], None] | None = None,
              yield_s: float = YIELD_S) -> Any:
    """The next :func:`send_data` object from ``source`` with ``tag``, polling as :func:`wait_recv`."""
    return _poll(comm, source, tag, _take_data, idle, yield_s)


def wait_recv(comm: MPI.Comm, source: int, tag: int, idle: Callable[[], None] | None = None,
              yield_s: float = YIELD_S) -> Any:
    """The next object from ``source`` with ``tag``, polling (see :data:`YIELD_S`); ``idle()``
    runs between polls (rank 0 checks for failure reports there)."""
    return _poll(comm, source, tag, lambda msg, status: msg.recv(), idle, yield_s)


def _poll(comm: MPI.Comm, source: int, tag: int, take: Callable[[MPI.Message, MPI.Status], Any],
          idle: Callable[[], None] | None, yield_s: float) -> Any:
    t0 = 0.0
    sleep = 1e-5
    status = MPI.Status()
    while True:
        msg = comm.improbe(source, tag, status)
        if msg is not None:
            return take(msg, status)
        if idle is not None:
            idle()
        now = time.perf_counter()
        if not t0:
            t0 = now
        if now - t0 < yield_s:
            os.sched_yield()
        else:
            time.sleep(sleep)
            sleep = min(MAX_SLEEP_S, 2.0 * sleep)


class ShardFailed(Exception):
    """A call raised in a shard (carried to rank 0, which ends the job)."""

    def __init__(self, report: dict[str, Any]) -> None:
        super().__init__(report["error"])
        self.report = report


class Executor:
    """Runs the ops of one rank's queue on its :class:`ShardWorker` (see the module docstring)."""

    def __init__(self, comm: MPI.Comm, idle: Callable[[], None] | None = None, yield_s: float = YIELD_S) -> None:
        self.comm = comm
        self.yield_s = yield_s
        self.rank = comm.Get_rank()
        self.idle = idle
        self.worker = ShardWorker()
        self.outputs: dict[int, Any] = {}
        self.shared: dict[int, Any] = {}
        #: Sends not known to be complete, with the buffers they read.
        self.pending: list[tuple[MPI.Request, np.ndarray | None]] = []
        #: Seconds this rank waited for other ranks' outputs (communication and load imbalance).
        self.wait_s = 0.0

    def _arg(self, spec: tuple[Any, ...]) -> Any:
        kind = spec[0]
        if kind == "v":
            return spec[1]
        if kind == "s":
            if spec[2] is not None:
                self.shared[spec[1]] = spec[2][0]
            return self.shared[spec[1]]
        if kind == "own":
            return self._output(spec[1], spec[2])
        # "in": an output of a call on rank spec[1], which sends it here with tag spec[2]
        t0 = time.perf_counter()
        value = wait_data(self.comm, spec[1], spec[2], self.idle, self.yield_s)
        self.wait_s += time.perf_counter() - t0
        return value

    def _output(self, cid: int, part: int | None) -> Any:
        out = self.outputs[cid]
        return out if part is None else out[part]

    def execute(self, ops: list[tuple[Any, ...]]) -> bool:
        """Run ``ops`` in order; ``False`` once a ``stop`` op was run."""
        for op in ops:
            kind = op[0]
            if kind == "call":  # its outputs go to the ranks in `forwards` as soon as it returns
                _, cid, method, parts, args, forwards = op
                values = [self._arg(a) for a in args]
                try:
                    out = getattr(self.worker, method)(*values)
                    if parts is not None and (not isinstance(out, list) or len(out) != parts):
                        raise ValueError(f"{method} returned {len(out) if isinstance(out, list) else out!r}, "
                                         f"{parts} parts expected")
                except Exception as exc:
                    raise ShardFailed({"rank": self.rank, "shard": getattr(self.worker, "shard", self.rank),
                                       "method": method, "error": f"{type(exc).__name__}: {exc}",
                                       "traceback": traceback.format_exc()}) from exc
                self.outputs[cid] = out
                for part, dest, tag in forwards:
                    self.pending.append(send_data(self.comm, out if part is None else out[part], dest, tag))
            elif kind == "send":
                _, cid, part, dest, tag = op
                self.pending.append(send_data(self.comm, self._output(cid, part), dest, tag))
            elif kind == "reduce":  # add the local outputs, then the children's sums; pass it up the tree
                _, cid, local, tag = op
                total = None
                for c, part in local:
                    total = _add(total, self._output(c, part))
                children, parent = tree(self.rank, self.comm.Get_size())
                for child in children:
                    t0 = time.perf_counter()
                    total = _add(total, wait_data(self.comm, child, tag, self.idle, self.yield_s))
                    self.wait_s += time.perf_counter() - t0
                if parent is None:
                    self.outputs[cid] = total
                else:
                    self.pending.append(send_data(self.comm, total, parent, tag))
            elif kind == "ret":
                _, cid, part = op
                self.pending.append((self.comm.isend(self._output(cid, part), 0, TAG_RESULT), None))
            elif kind == "free":
                for cid in op[1]:
                    self.outputs.pop(cid, None)
            elif kind == "unshare":
                for sid in op[1]:
                    self.shared.pop(sid, None)
            elif kind == "reset":
                self.outputs.clear()
                self.shared.clear()
            elif kind == "sync":
                self.pending.append((self.comm.isend(None, 0, TAG_RESULT), None))
            elif kind == "stop":
                return False
            else:
                raise RuntimeError(f"mpi transport: unknown op {kind!r}")
            if len(self.pending) > 32:
                self.pending = [(r, b) for r, b in self.pending if not r.test()[0]]
        return True

    def finish(self) -> None:
        """Wait until every send of this rank has been received."""
        for r, _ in self.pending:
            while not r.test()[0]:
                time.sleep(1e-4)
        self.pending = []


def serve(comm: MPI.Comm, yield_s: float = YIELD_S) -> None:
    """The loop of a non-driver rank: run rank 0's op queues until it stops the job.

    A call that raises is reported to rank 0, which prints it and ends the job; if rank 0
    does not end it within :data:`FAIL_GRACE_S`, this rank prints the error and ends it.
    """
    ex = Executor(comm, yield_s=yield_s)
    try:
        while ex.execute(wait_recv(comm, 0, TAG_OPS, yield_s=yield_s)):
            pass
        ex.finish()
    except Exception as exc:  # noqa: BLE001 - every failure of a rank ends the job
        report = exc.report if isinstance(exc, ShardFailed) else {
            "rank": ex.rank, "shard": getattr(ex.worker, "shard", ex.rank), "method": "(transport)",
            "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        req = comm.isend(report, 0, TAG_FAIL)
        t0 = time.monotonic()
        while time.monotonic() - t0 < FAIL_GRACE_S:  # rank 0 prints the report and ends the job
            req.test()
            time.sleep(1e-3)
        end_job(comm, f"fedopt: error: mpi engine: rank {report['rank']} failed ({report['method']}): "
                      f"{report['error']}\n{report['traceback']}")


def abort_with(report: dict[str, Any], run_id: str) -> None:
    """Print a failed rank's ``report`` on rank 0's standard error and end the MPI job."""
    tb = "".join(f"    {line}\n" for line in report["traceback"].rstrip().splitlines())
    end_job(MPI.COMM_WORLD,
            f"fedopt: error: mpi engine: rank {report['rank']} (shard {report['shard']}) failed in run {run_id!r} "
            f"({report['method']}): {report['error']}\n{tb}"
            "fedopt: the MPI job ends here; the runs already finished are kept: "
            "rerun the same command with --resume to finish the sweep")


class _Ref:
    """A handle of the output (or one part of it) of a call on ``rank``."""

    __slots__ = ("cid", "part", "rank", "transport")

    def __init__(self, transport: MpiTransport, rank: int, cid: int, part: int | None) -> None:
        self.transport, self.rank, self.cid, self.part = transport, rank, cid, part

    def __del__(self) -> None:
        self.transport._release(self.rank, self.cid)


class _SharedOnRanks:
    """A handle of an object shared by many calls: sent to a rank with its first call there."""

    __slots__ = ("obj", "ranks", "sid", "transport")

    def __init__(self, transport: MpiTransport, sid: int, obj: Any) -> None:
        self.transport, self.sid, self.obj = transport, sid, obj
        self.ranks: set[int] = set()

    def __del__(self) -> None:
        self.transport._unshare(self.sid, self.ranks)


class MpiTransport(Transport):
    """Shard ``i`` on rank ``i`` of ``comm`` (rank 0, the driver, hosts shard 0); see the
    module docstring."""

    engine = "mpi"
    shard_word = "rank"
    overlaps = True

    def __init__(self, comm: MPI.Comm, yield_s: float = YIELD_S) -> None:
        if comm.Get_rank() != 0:
            raise ValueError("mpi engine: the driver runs on rank 0; the other ranks serve it")
        self.comm = comm
        self.local = Executor(comm, self.check_failures, yield_s)
        self._ops: list[list[tuple[Any, ...]]] = [[] for _ in range(comm.Get_size())]
        #: The forwards of each rank's calls still in its queue: {call id: [(part, rank, tag)]}.
        self._forwards: list[dict[int, list[tuple[int | None, int, int]]]] = [{} for _ in self._ops]
        self._tag_span = int(comm.Get_attr(MPI.TAG_UB)) - TAG_DATA + 1
        self._transfers = 0
        self._refs: dict[tuple[int, int], int] = {}
        self._next = 0
        self._sends: list[MPI.Request] = []
        self.run_id = ""
        self.closed = False

    @property
    def size(self) -> int:
        return int(self.comm.Get_size())

    # ---- failures -------------------------------------------------------------------------
    def check_failures(self) -> None:
        """End the job with a failed rank's report, if one arrived."""
        msg = self.comm.improbe(MPI.ANY_SOURCE, TAG_FAIL)
        if msg is not None:
            abort_with(msg.recv(), self.run_id)

    # ---- handles --------------------------------------------------------------------------
    def _id(self) -> int:
        self._next += 1
        return self._next

    def _release(self, rank: int, cid: int) -> None:
        key = (rank, cid)
        left = self._refs.get(key, 0) - 1
        if left > 0:
            self._refs[key] = left
            return
        self._refs.pop(key, None)
        if not self.closed:
            self._ops[rank].append(("free", (cid,)))

    def _unshare(self, sid: int, ranks: set[int]) -> None:
        if not self.closed:
            for r in ranks:
                self._ops[r].append(("unshare", (sid,)))

    def _argspec(self, rank: int, a: Any) -> tuple[Any, ...]:
        if isinstance(a, _Ref):
            if a.rank == rank:
                return ("own", a.cid, a.part)
            self._transfers += 1
            tag = TAG_DATA + self._transfers % self._tag_span
            queued = self._forwards[a.rank].get(a.cid)
            if queued is not None:  # the producing call is still queued: it sends as soon as it returns
                queued.append((a.part, rank, tag))
            else:
                self._ops[a.rank].append(("send", a.cid, a.part, rank, tag))
            return ("in", a.rank, tag)
        if isinstance(a, _SharedOnRanks):
            first = rank not in a.ranks
            a.ranks.add(rank)
            # rank 0's shard gets its own copy (it must share no array with the driver)
            return ("s", a.sid, ((_copy(a.obj) if rank == 0 else a.obj),) if first else None)
        return ("v", _copy(a) if rank == 0 else a)

    def _call(self, shard: int, method: str, parts: int | None, args: tuple[Any, ...]) -> int:
        if method not in WORKER_METHODS:
            raise ValueError(f"mpi transport: {method!r} is not a worker method ({', '.join(sorted(WORKER_METHODS))})")
        cid = self._id()
        specs = [self._argspec(shard, a) for a in args]
        forwards: list[tuple[int | None, int, int]] = []
        self._forwards[shard][cid] = forwards
        self._ops[shard].append(("call", cid, method, parts, specs, forwards))
        self._refs[(shard, cid)] = 1 if parts is None else parts
        return cid

    # ---- the Transport interface --------------------------------------------------------------
    def open(self, spec: RunSpec, prepared: tuple[Prepared, ...], shards: list[IntArray]) -> None:
        self.settle()
        self.run_id = spec.run_id
        for ops in self._ops:
            ops.append(("reset",))
        spec_h, prepared_h = self.share(spec), self.share(prepared)
        self.gather([self.submit(i, "setup", spec_h, prepared_h, i, s) for i, s in enumerate(shards)])

    def share(self, obj: Any) -> _SharedOnRanks:
        return _SharedOnRanks(self, self._id(), obj)

    def submit(self, shard: int, method: str, *args: Any) -> _Ref:
        return _Ref(self, shard, self._call(shard, method, None, args), None)

    def submit_parts(self, shard: int, method: str, parts: int, *args: Any) -> list[Any]:
        if parts < 2:
            raise ValueError(f"mpi transport: submit_parts needs at least 2 parts, got {parts}")
        cid = self._call(shard, method, parts, args)
        return [_Ref(self, shard, cid, p) for p in range(parts)]

    def _flush(self) -> None:
        """Send every rank its queued ops (one message each), then run rank 0's own queue."""
        for r in range(1, len(self._ops)):
            ops, self._ops[r] = self._ops[r], []
            self._forwards[r] = {}
            if ops:
                self._sends.append(self.comm.isend(ops, r, TAG_OPS))
        self._sends = [q for q in self._sends if not q.test()[0]]
        while self._ops[0]:
            ops, self._ops[0] = self._ops[0], []
            self._forwards[0] = {}
            try:
                self.local.execute(ops)
            except ShardFailed as failed:
                abort_with(failed.report, self.run_id)
            except Exception as exc:  # noqa: BLE001 - the other ranks may wait on this queue: end the job
                abort_with({"rank": 0, "shard": 0, "method": "(transport)", "error": f"{type(exc).__name__}: {exc}",
                            "traceback": traceback.format_exc()}, self.run_id)

    def gather(self, handles: list[Any]) -> list[Any]:
        for h in handles:
            if h.rank != 0:
                self._ops[h.rank].append(("ret", h.cid, h.part))
        self._flush()
        out = []
        t0 = time.perf_counter()
        for h in handles:
            if h.rank == 0:
                out.append(_copy(self.local._output(h.cid, h.part)))
            else:
                out.append(wait_recv(self.comm, h.rank, TAG_RESULT, self.check_failures, self.local.yield_s))
        self.local.wait_s += time.perf_counter() - t0
        return out

    def wait(self, handles: list[Any]) -> None:
        """Return once the calls ``handles`` ran: each rank that holds some answers one ``sync``
        after them (a rank runs its queue in order, and a call that raises ends the job), so
        no output travels back."""
        ranks = sorted({h.rank for h in handles if h.rank != 0})
        for r in ranks:
            self._ops[r].append(("sync",))
        self._flush()
        t0 = time.perf_counter()
        for r in ranks:
            wait_recv(self.comm, r, TAG_RESULT, self.check_failures, self.local.yield_s)
        self.local.wait_s += time.perf_counter() - t0

    @property
    def wait_s(self) -> float:
        """Seconds rank 0 waited for the other ranks (their rows and their results)."""
        return self.local.wait_s

    def reduce_sum(self, handles: list[Any]) -> dict[str, Any]:
        """The sum of the outputs ``handles`` (dicts of arrays and numbers), reduced over a
        binomial tree of the ranks: each rank adds its own outputs and its children's sums and
        sends the result to its parent, rank 0 gets the total. Point-to-point messages, so the
        waits poll and rank 0 still notices a failed rank."""
        cid = self._id()
        self._transfers += 1
        tag = TAG_DATA + self._transfers % self._tag_span
        for r in range(len(self._ops)):
            local = [(h.cid, h.part) for h in handles if h.rank == r]
            self._ops[r].append(("reduce", cid, local, tag))
        self._flush()
        total = self.local.outputs.pop(cid)
        if total is None:
            raise ValueError("mpi transport: reduce_sum of no outputs")
        return total

    def heal(self) -> None:
        raise RuntimeError("mpi engine: a lost rank cannot be replaced (the MPI job ends with it)")

    # ---- keeping the ranks in step --------------------------------------------------------------
    def settle(self) -> None:
        """Run every queued op on every rank and wait until each rank has (after a run, or
        after an error on the driver between two gathers)."""
        if self.closed:
            raise RuntimeError("mpi engine: the MPI job has stopped its ranks")
        ranks = range(1, len(self._ops))
        for r in ranks:
            self._ops[r].append(("sync",))
        self._flush()
        for r in ranks:
            wait_recv(self.comm, r, TAG_RESULT, self.check_failures, self.local.yield_s)
        self.local.finish()

    def stop(self) -> None:
        """Stop every serving rank (after their queues ran)."""
        if self.closed:
            return
        self.settle()
        for r in range(1, len(self._ops)):
            self._sends.append(self.comm.isend([("stop",)], r, TAG_OPS))
        for q in self._sends:
            while not q.test()[0]:
                self.check_failures()
                time.sleep(1e-4)
        self._sends = []
        self.closed = True
