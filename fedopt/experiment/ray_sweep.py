"""Sweeps on a Ray cluster: each grid point runs as a Ray task, results stream into the store.

The driver submits one task per grid point that is not done yet, each with the
experiment's ``resources: {num_cpus, num_gpus}``, keeps at most ``parallel``
tasks in flight and hands every finished run to ``on_result`` as soon as it
arrives, so that the store writes that run's part file (atomically) while the
others still run. A driver killed mid-sweep loses only the runs in flight:
``--resume`` skips the points whose part file exists and runs the rest, so the
finished table has every run exactly once.

Tasks that die with their worker (a node lost) are retried by Ray
(``max_retries``); a run that fails inside fedopt comes back as a result with
``status="error"`` (engines record failures, the sweep goes on).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

P = TypeVar("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Resources:
    """Ray resources of one grid point's task (the config's ``resources:``)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0

    def __post_init__(self) -> None:
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError(f"resources: num_cpus and num_gpus must be non-negative, got {self}")

    @classmethod
    def from_config(cls, cfg: Any) -> "Resources":
        """From a mapping or an object with ``num_cpus`` / ``num_gpus`` (missing keys: defaults)."""
        if cfg is None:
            return cls()
        get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
        return cls(float(get("num_cpus", 1.0) or 0.0), float(get("num_gpus", 0.0) or 0.0))


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the Ray cluster at ``address`` (``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:PORT"``) or,
    without one, start a private local instance (dashboard off).

    A token-authenticated cluster (Ray's default for ``ray start --head``) gets the token
    that :func:`fedopt.engines.ray.cluster.join_cluster` finds (``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token`` for a cluster on this machine); a
    failed join is a :class:`ValueError` with one line that says what to set.

    Returns True when this call started or joined Ray (the caller then calls
    ``ray.shutdown()``); False when Ray was already initialized in this process.
    """
    import ray

    if ray.is_initialized():
        return False
    if address is None:
        # "local": always a new instance (never one found through RAY_ADDRESS or a running
        # `ray start`); no dashboard, and what does listen binds to 127.0.0.1.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, dashboard_host="127.0.0.1",
                 _node_ip_address="127.0.0.1", log_to_driver=False)
    else:
        from fedopt.engines.ray.cluster import join_cluster

        join_cluster(address, key="--address", log_to_driver=False)
    return True


def disconnect() -> None:
    """Shut down the Ray that :func:`connect` started or joined (call it when ``connect`` returned True)."""
    import ray

    ray.shutdown()


def _call(fn: Callable[[Any], Any], point: Any) -> Any:
    return fn(point)


def run_on_ray(
    points: Iterable[P],
    run_point: Callable[[P], R],
    on_result: Callable[[P, R], None],
    *,
    resources: Resources | None = None,
    parallel: int | None = None,
    is_done: Callable[[P], bool] | None = None,
    max_retries: int = 2,
    progress: Callable[[int, int], None] | None = None,
    on_error: Callable[[P, BaseException], None] | None = None,
) -> int:
    """Run ``run_point(p)`` for every point as a Ray task; ``on_result(p, result)`` on the driver
    as each finishes (in completion order). Points with ``is_done(p)`` are skipped.

    ``run_point`` must be picklable (a module-level function, or a ``functools.partial``
    of one). ``parallel`` caps the tasks in flight (default: as many as the cluster's
    resources fit). Requires a connected Ray (see :func:`connect`). A task that fails
    in Ray (its worker lost more than ``max_retries`` times, an exception in ``run_point``)
    goes to ``on_error(p, exc)`` when given (the sweep goes on), else raises. Returns the
    number of runs that produced a result.
    """
    import ray

    res = resources or Resources()
    todo: Sequence[P] = [p for p in points if not (is_done is not None and is_done(p))]
    if parallel is None:
        cluster = ray.cluster_resources()
        fits = [int(cluster.get("CPU", 1) // res.num_cpus)] if res.num_cpus > 0 else [len(todo) or 1]
        if res.num_gpus > 0:
            fits.append(int(cluster.get("GPU", 0) // res.num_gpus))
        parallel = max(1, min(fits))
        if res.num_gpus > 0 and cluster.get("GPU", 0) < res.num_gpus:
            raise ValueError(f"resources: num_gpus={res.num_gpus} but the Ray cluster has {cluster.get('GPU', 0)} GPU(s)")
    task = ray.remote(_call).options(num_cpus=res.num_cpus, num_gpus=res.num_gpus, max_retries=max_retries)
    fn_ref = ray.put(run_point)
    pending: dict[Any, P] = {}
    it = iter(todo)
    done = 0
    total = len(todo)
    exhausted = False
    while True:
        while not exhausted and len(pending) < parallel:
            try:
                p = next(it)
            except StopIteration:
                exhausted = True
                break
            pending[task.remote(fn_ref, p)] = p
        if not pending:
            break
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            p = pending.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as exc:  # RayTaskError, WorkerCrashedError, ...
                if on_error is None:
                    for other in pending:
                        ray.cancel(other)
                    raise
                on_error(p, exc)
            else:
                on_result(p, result)
                done += 1
            if progress is not None:
                progress(done, total)
    return done


def run_sequential(points: Iterable[P], run_point: Callable[[P], R], on_result: Callable[[P, R], None],
                   is_done: Callable[[P], bool] | None = None) -> int:
    """The same contract in this process, one point after the other (reference / no Ray)."""
    done = 0
    for p in points:
        if is_done is not None and is_done(p):
            continue
        on_result(p, run_point(p))
        done += 1
    return done
