"""Run specifications, results, the engine registry and the shared simulation loop.

:class:`Simulation` is the engine-independent driver of one run: it builds
the context, advances rounds or the event stream checkpoint by checkpoint,
records rows and stops on the run's criteria; :meth:`Simulation.run` is the
only run loop. The local engine applies the work in-process; the sharded core
(:mod:`fedopt.engines.sharded`) reuses the same driver and replaces the parts
that apply work (``apply_rounds`` / ``apply_events``), record a row and recover
from a lost shard (:meth:`Simulation.recover`).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedopt.algorithms.base import (
    Algorithm,
    Context,
    EventAlgorithm,
    Layout,
    PreparedRun,
    RoundAlgorithm,
    check_handlers_kept_layout,
    check_state_layout,
    keys_of,
    protect_server,
)
from fedopt.core.arrays import State
from fedopt.core.clocks import EventStream, PoissonClocks
from fedopt.core.levels import schedule_levels
from fedopt.core.meter import Channel, Meter
from fedopt.core.rng import RngStreams
from fedopt.core.trace import checkpoint_row
from fedopt.problems.base import Problem
from fedopt.topology.graph import Topology


@dataclass(frozen=True)
class StopCriteria:
    """When a run ends (the first criterion met, checked at each checkpoint).

    ``time``: simulated time; ``rounds``: synchronous rounds; ``messages``:
    communications; ``target``: stop once ``target_metric`` ≤ ``target``.
    """

    time: float | None = None
    rounds: int | None = None
    messages: float | None = None
    target: float | None = None
    target_metric: str = "dist_opt"

    def __post_init__(self) -> None:
        if self.time is None and self.rounds is None and self.messages is None and self.target is None:
            raise ValueError("stop: give at least one of time, rounds, messages, target")

    def reached(self, row: dict[str, Any]) -> bool:
        if self.time is not None and row["time"] >= self.time - 1e-12:
            return True
        if self.rounds is not None and row["round"] >= self.rounds:
            return True
        if self.messages is not None and row["messages"] >= self.messages:
            return True
        if self.target is not None:
            v = row.get(self.target_metric)
            if v is not None and not math.isnan(v) and v <= self.target:
                return True
        return False


@dataclass
class RunSpec:
    """Everything that defines one run (one row group of the results table)."""

    run_id: str
    problem: Problem
    topology: Any  # Topology or TimeVaryingTopology
    algorithm: Algorithm
    seed: int
    stop: StopCriteria
    record_every: float = 1.0  # rounds (round-based) or simulated time (event-based)
    labels: dict[str, Any] = field(default_factory=dict)
    max_events: int = 10**9


@dataclass
class RunResult:
    run_id: str
    rows: list[dict[str, Any]]
    status: str  # "ok" | "diverged" | "error"
    message: str = ""
    final_state: State | None = None
    meter: Meter | None = None


def apply_gossip_pairs(algo: EventAlgorithm, state: State, ctx: Context, na: np.ndarray, nb: np.ndarray,
                       t: np.ndarray, edges: np.ndarray) -> None:
    """Apply one level's gossip events (pairs ``na[k]–nb[k]`` on ``edges[k]``, no node twice):
    rows ``k`` and ``k + K`` of the stacked arrays are the two ends of event ``k``; every
    exchange goes through the channel."""
    nodes = np.concatenate((na, nb))
    tt = np.concatenate((t, t))
    own = algo.gossip_message(state, ctx, nodes, tt)
    k = len(na)
    peer = np.concatenate((own[k:], own[:k]))
    algo.on_gossip(state, ctx, nodes, tt, own, peer)
    ctx.channel.exchange(na, nb, edges, own.shape[1])


#: A run whose ``‖∇f(x̄)‖²`` grows this many times above its first checkpoint has diverged
#: (finite but exploding iterates, e.g. a step size past the stability limit).
BLOWUP_FACTOR = 1e16


def divergence_message(row: dict[str, Any], first: dict[str, Any] | None = None) -> str:
    """Why a checkpoint row means the run diverged ('' when it did not): non-finite iterates,
    or a gradient norm at the mean iterate :data:`BLOWUP_FACTOR` times the first row's."""
    if not math.isfinite(row["consensus"]):
        return f"non-finite iterates at time {row['time']:g}"
    if first is not None:
        g0, g = first.get("grad_norm_sq", math.nan), row.get("grad_norm_sq", math.nan)
        if g0 > 0 and (not math.isfinite(g) or g > BLOWUP_FACTOR * g0):
            return f"iterates blew up at time {row['time']:g}: ‖∇f(x̄)‖² grew from {g0:.3g} to {g:.3g}"
    return ""


class ShardLost(Exception):
    """A shard of a distributed run was lost (a dead actor, a failed rank): the run may
    heal and go on from its last record point (see :meth:`Simulation.recover`)."""


def topology_for_period(topology: Any, period_index: int) -> Topology:
    """The graph in force during switching period ``period_index`` of ``topology``
    (the graph itself when it does not vary). The one rule every engine and shard uses."""
    if not hasattr(topology, "at"):
        return topology
    if period_index == 0:
        return topology.at(0.0)
    return topology.at((period_index + 0.5) * float(topology.period))


def period_end(topology: Any, period_index: int) -> float:
    """When switching period ``period_index`` of ``topology`` ends (``inf`` for a fixed graph)."""
    period = getattr(topology, "period", None)
    return math.inf if period is None else (period_index + 1) * float(period)


class Simulation:
    """One run: context, state, and the checkpoint loop (engine-independent)."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        top0 = topology_for_period(spec.topology, 0)
        self.meter = Meter(n=spec.problem.n)
        self.rng = RngStreams(spec.seed, spec.problem.n)
        sequence = spec.topology if hasattr(spec.topology, "at") else None
        self.ctx = Context(spec.problem, top0, self.rng, self.meter, self._channel(top0), sequence)
        self.algo = spec.algorithm
        self.state: State = {}
        #: The algorithm's per-run precomputations and the layout of its state (set by :meth:`start`).
        self.prepared: PreparedRun | None = None
        self.layout: dict[str, Layout] = {}
        self._server: dict[str, Any] = {}
        self.rows: list[dict[str, Any]] = []
        self.t = 0.0
        self.round = 0
        self.n_events = 0
        self._wall0 = 0.0
        self._stream: EventStream | None = None
        self._period_index = 0

    def _channel(self, top: Topology) -> Channel:
        return Channel(self.meter, top.latency, top.bandwidth)

    # ---- the parts an engine may replace -----------------------------------------
    def apply_rounds(self, count: int) -> None:
        assert isinstance(self.algo, RoundAlgorithm)
        for _ in range(count):
            self.state = self.algo.round(self.state, self.ctx, self.round)
            self.round += 1
            self.meter.rounds = self.round

    def apply_events(self, t_end: float) -> None:
        """Apply every event up to ``t_end``, level by level (exact, see core.levels)."""
        algo = self.algo
        assert isinstance(algo, EventAlgorithm) and self._stream is not None
        block = self._stream.until(t_end, self.spec.max_events - self.n_events)
        self.n_events += len(block)
        if len(block) == 0:
            return
        sched = schedule_levels(block, self.ctx.n)
        ev = sched.events
        t, a, b, e = ev.t, ev.node_a, ev.node_b, ev.edge
        bounds = sched.bounds.tolist()
        state, ctx, on_compute = self.state, self.ctx, algo.on_compute
        for lv in range(sched.n_levels):
            s, mid, end = bounds[2 * lv], bounds[2 * lv + 1], bounds[2 * lv + 2]
            if mid > s:
                on_compute(state, ctx, a[s:mid], t[s:mid])
            if end > mid:
                apply_gossip_pairs(algo, state, ctx, a[mid:end], b[mid:end], t[mid:end], e[mid:end])

    # ---- driver ----------------------------------------------------------------------
    def _start_clock(self) -> None:
        algo = self.algo
        assert isinstance(algo, EventAlgorithm)
        node_rates, edge_rates = algo.clock_rates(self.ctx)
        clocks = PoissonClocks(node_rates, self.ctx.topology.edges, edge_rates)
        rng = self._stream.rng if self._stream is not None else self.rng["clocks"]
        self._stream = EventStream(clocks, rng, t0=self.t)

    def record(self) -> dict[str, Any]:
        if isinstance(self.algo, EventAlgorithm):
            check_handlers_kept_layout(self.algo, self.state, self.layout, self._server)
        X = self.algo.iterates(self.state, self.ctx, self.t)
        self.meter.sim_time = self.t
        row = checkpoint_row(self.spec.problem, X, self.meter, self.t, self.round, time.perf_counter() - self._wall0,
                             self.algo.diagnostics(self.state, self.ctx))
        row["events"] = self.n_events
        self.rows.append(row)
        return row

    def start(self) -> None:
        """Prepare the algorithm's per-run quantities, build and check the initial state."""
        self._wall0 = time.perf_counter()
        self.prepared = PreparedRun.build(self.algo, self.spec.problem, self.spec.topology)
        self.ctx.prepared = self.prepared.for_graph(self.ctx.topology)
        state = self.algo.init(self.ctx)
        self.layout = check_state_layout(self.algo, state, self.ctx)
        self.state = state
        if isinstance(self.algo, EventAlgorithm):  # node handlers only read the server entries
            self.state = protect_server(state, self.layout)
            self._server = {k: self.state[k] for k in keys_of(self.layout, Layout.SERVER)}
            self._start_clock()

    def step_checkpoint(self) -> None:
        """Advance to the next record point."""
        every = self.spec.record_every
        if isinstance(self.algo, EventAlgorithm):
            t_target = self.t + every
            if self.spec.stop.time is not None:
                t_target = min(t_target, self.spec.stop.time)
            while self.t < t_target - 1e-15:
                t_seg = min(t_target, self._next_switch_time())
                self.apply_events(t_seg)
                self.t = t_seg
                if self.n_events >= self.spec.max_events:
                    break
                if self.t >= self._next_switch_time():
                    self._switch_topology()
        else:
            k = max(1, int(round(every)))
            if self.spec.stop.rounds is not None:
                k = min(k, self.spec.stop.rounds - self.round)
            while k > 0:
                to_switch = self._next_switch_time() - self.round
                chunk = k if math.isinf(to_switch) else min(k, max(1, math.ceil(to_switch - 1e-9)))
                self.apply_rounds(chunk)
                k -= chunk
                self.t = float(self.round)
                if self.t >= self._next_switch_time():
                    self._switch_topology()

    def _next_switch_time(self) -> float:
        return period_end(self.spec.topology, self._period_index)

    def _switch_topology(self) -> None:
        """Move to the next graph of a time-varying topology (new clocks, new channel)."""
        self._period_index += 1
        top = topology_for_period(self.spec.topology, self._period_index)
        if top is self.ctx.topology:
            return
        self.ctx.topology = top
        self.ctx.channel = self._channel(top)
        assert self.prepared is not None
        self.ctx.prepared = self.prepared.for_graph(top)
        if isinstance(self.algo, EventAlgorithm):
            self._start_clock()

    def recover(self, lost: ShardLost) -> str:
        """Heal after ``lost`` and roll back to the last record point: ``""`` when the run
        can go on from there, else why it cannot (the run then ends with ``status="error"``).
        An engine without shards cannot lose one: it gives up."""
        return f"{type(lost).__name__}: {lost}"

    def result(self, status: str, message: str) -> RunResult:
        """The run's result once the loop has ended with ``status`` and ``message``."""
        return RunResult(self.spec.run_id, self.rows, status, message, self.state, self.meter)

    def run(self, progress: Callable[[float], None] | None = None) -> RunResult:
        """The run loop: start, record, then step and record until a stop criterion, divergence
        or the event budget ends the run; a lost shard rolls back to the last record point."""
        self.start()
        row = self.record()
        status, message = "ok", ""
        while not self.spec.stop.reached(row):
            try:
                self.step_checkpoint()
                row = self.record()
            except ShardLost as lost:
                failure = self.recover(lost)
                if failure:
                    status, message = "error", failure
                    break
                row = self.rows[-1]
                continue
            if progress is not None:
                progress(self.t)
            diverged = divergence_message(row, self.rows[0])
            if diverged:
                status, message = "diverged", diverged
                break
            if self.n_events >= self.spec.max_events:
                break
        return self.result(status, message)


class Engine:
    """Runs :class:`RunSpec` s. Subclasses register with :func:`register_engine`."""

    name = ""

    def run(self, spec: RunSpec, progress: Callable[[float], None] | None = None) -> RunResult:
        try:
            return self._run(spec, progress)
        except Exception as exc:  # a failing run is recorded, the sweep goes on
            return RunResult(spec.run_id, [], "error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")

    def _run(self, spec: RunSpec, progress: Callable[[float], None] | None) -> RunResult:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (actors, communicators)."""

    def placement(self) -> str:
        """Where a run's work runs, in words, when not all in this process (the manifest's
        execution mode names it); ``""``: in this process."""
        return ""


_ENGINES: dict[str, Callable[..., Engine]] = {}
#: Engines whose module is imported on first use (they pull in heavy dependencies).
_LAZY_ENGINES = {"local": "fedopt.engines.local", "ray": "fedopt.engines.ray",
                 "sharded": "fedopt.engines.sharded.inprocess", "mpi": "fedopt.engines.mpi"}


def register_engine(name: str) -> Callable[[Callable[..., Engine]], Callable[..., Engine]]:
    def deco(factory: Callable[..., Engine]) -> Callable[..., Engine]:
        _ENGINES[name] = factory
        return factory

    return deco


def available_engines() -> list[str]:
    """The engines this install has: registered ones and lazy ones whose module exists."""
    lazy = {name for name, module in _LAZY_ENGINES.items() if importlib.util.find_spec(module) is not None}
    return sorted(set(_ENGINES) | lazy)


def engine_factory(name: str) -> Callable[..., Engine]:
    """The factory registered as ``name``, importing its module on first use.

    An unknown name, or an engine whose module is missing, is a :class:`ValueError`
    that lists the engines this install has; an engine whose module needs a package
    that is not installed is a :class:`ValueError` that names that package.
    """
    if name not in _ENGINES:
        if name not in available_engines():
            raise ValueError(f"unknown engine {name!r}; choose one of: {', '.join(available_engines())}")
        module = _LAZY_ENGINES[name]
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            top = str(exc.name).split(".")[0]
            if top == __name__.split(".")[0]:
                raise ValueError(f"engine {name!r} is incomplete in this install (no module {exc.name}); "
                                 "reinstall fedopt") from None
            raise ValueError(
                f"engine {name!r} needs the package {top!r}, which is not installed here: "
                f"install it (pip install {top}) or choose another engine"
            ) from None
        if name not in _ENGINES:
            raise ValueError(f"engine {name!r}: importing {module} registered no engine of that name")
    return _ENGINES[name]


def make_engine(name: str, **options: Any) -> Engine:
    """Build the engine registered as ``name`` (importing its module on first use)."""
    return engine_factory(name)(**options)
