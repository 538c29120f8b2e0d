"""Run a whole experiment: config → runs → results table → plots.

:func:`run_experiment` validates the config and expands its grid (every error
surfaces before the first run), then runs each run not already finished,
writing its part of the results table as soon as it ends, rebuilds the
combined table, draws the default plots and records a manifest (versions,
machine, git commit, seeds, run ids, start and end times).

Output directory::

    config.yaml        the validated config with every default filled in
    manifest.json      environment and run list
    runs/<id>.parquet  one part per run
    results.parquet    the combined table
    plots/*.png        the default plots (see DEFAULT_PLOTS)
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from fedopt.experiment.config import ExperimentConfig, load_config
from fedopt.experiment.plots import DEFAULT_PLOTS, LINK_COST_PLOTS, plot_results
from fedopt.experiment.store import LiveTable, ResultStore, atomic_write_text, rows_frame
from fedopt.experiment.sweep import RunConfig, expand, grid_summary

#: Distributions whose versions go into the manifest.
MANIFEST_PACKAGES = ("fedopt", "numpy", "scipy", "networkx", "cvxpy", "pandas", "pyarrow", "torch")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """HEAD of the git checkout the package sits in (None when it is not in one)."""
    pkg = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=pkg, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def environment() -> dict[str, Any]:
    return {
        "versions": {p: _version(p) for p in MANIFEST_PACKAGES},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "git_commit": _git_commit(),
    }


def execute(run: RunConfig, engine: Any, progress: Callable[[float], None] | None = None) -> pd.DataFrame:
    """Build and run one run on ``engine``; its table rows (an error is a row, not an exception)."""
    n_nodes: int | None = int(run.problem.get("n")) if run.problem.get("n") is not None else None
    dim: int | None = None
    try:
        spec = run.build_spec()
    except Exception as exc:  # a run that cannot be built is recorded, the sweep goes on
        return rows_frame([], run.labels, run.run_id, "error", f"{type(exc).__name__}: {exc}", n_nodes, dim)
    n_nodes, dim = int(spec.problem.n), int(spec.problem.d)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        result = engine.run(spec, progress)
    message = result.message.strip().splitlines()[0] if result.message.strip() else ""
    return rows_frame(result.rows, run.labels, run.run_id, result.status, message, n_nodes, dim)


def execute_task(run: RunConfig, engine: str, options: dict[str, Any]) -> pd.DataFrame:
    """One run on a fresh engine, closed afterwards (the body of a Ray task in a sweep)."""
    from fedopt.engines.base import make_engine

    eng = make_engine(engine, **options)
    try:
        return execute(run, eng)
    finally:
        eng.close()


def uses_ray_tasks(address: str | None, parallel: int) -> bool:
    """Runs go to Ray tasks when a cluster is named or more than one run goes at once."""
    return address is not None or parallel > 1


class _Progress:
    """A rich progress bar (runs done / total and the current run's simulated time), or nothing."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.bar: Any = None
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=False,
        )
        self.runs = self.bar.add_task("runs", total=total, info="")
        self.current = self.bar.add_task("run", total=None, info="")

    def __enter__(self) -> "_Progress":
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def start_run(self, run: RunConfig) -> Callable[[float], None] | None:
        if self.bar is None:
            return None
        horizon = run.stop.get("time")
        desc = f"{run.label} · {run.topology_label} · seed {run.seed}"
        self.bar.reset(self.current, total=horizon, description=desc[:48], info="t = 0")

        def cb(t: float) -> None:
            self.bar.update(self.current, completed=t if horizon is not None else None, info=f"t = {t:g}")

        return cb

    def skip(self, n: int) -> None:
        if self.bar is not None and n:
            self.bar.advance(self.runs, n)

    def end_run(self, status: str) -> None:
        if self.bar is not None:
            self.bar.advance(self.runs)
            self.bar.update(self.runs, info=f"last: {status}")


def run_experiment(
    config: str | Path | ExperimentConfig,
    out_dir: str | Path,
    engine: str | None = None,
    resume: bool = False,
    progress: bool = True,
    plots: bool = True,
    address: str | None = None,
    parallel: int | None = None,
) -> pd.DataFrame:
    """Run every run of ``config`` into ``out_dir`` and return the results table.

    ``engine`` overrides the config's engine; ``resume`` skips runs whose part
    file exists; ``progress`` shows a progress bar when stdout is a terminal.

    ``address`` (``"auto"``, ``"ray://host:port"``) runs every run as a Ray task on
    that cluster, with the config's ``resources``; ``parallel`` (default: the
    config's, else 1) is how many runs go at once: more than 1 without an address
    runs them as Ray tasks on a local Ray instance started here (bound to
    localhost, no dashboard). Each run's rows enter the table as it finishes.
    """
    from fedopt.engines.base import make_engine

    cfg = config if isinstance(config, ExperimentConfig) else load_config(config)
    if engine is not None and engine != cfg.engine:
        from fedopt.experiment.config import _check_engine

        _check_engine(engine)
        cfg = cfg.model_copy(update={"engine": engine, "engine_options": {}})
    if parallel is not None and parallel < 1:
        raise ValueError(f"parallel: give a positive number of runs at once, got {parallel}")
    par = parallel if parallel is not None else cfg.parallel  # None: 1 locally, as many as fit on a cluster
    on_ray = uses_ray_tasks(address, par or 1)
    runs = expand(cfg)  # every config error surfaces here, before any run
    eng = make_engine(cfg.engine, **cfg.engine_options)  # bad engine options too
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultStore(out)
    store.clean_temp_files()  # left by a killed sweep
    atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))

    manifest: dict[str, Any] = {
        "experiment": cfg.name,
        "engine": cfg.engine,
        "engine_options": cfg.engine_options,
        **environment(),
        "seeds": list(cfg.seeds),
        "grid": grid_summary(runs),
        "runs": [{"run_id": r.run_id, **r.labels} for r in runs],
        "started": _now(),
        "finished": None,
        "resumed": bool(resume),
        "execution": {"ray_tasks": on_ray, "address": address, "parallel": par,
                      "resources": cfg.resources.model_dump()},
    }
    manifest_path = out / "manifest.json"
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, default=str))

    todo = [r for r in runs if not (resume and store.is_done(r.run_id))]
    table = LiveTable(store, [r.run_id for r in runs])
    if resume:
        table.load_existing()
    failed: list[dict[str, str]] = []
    t0 = time.perf_counter()
    try:
        with _Progress(progress and sys.stdout.isatty(), len(runs)) as bar:
            bar.skip(len(runs) - len(todo))
            if on_ray and todo:
                eng.close()
                failed = _run_ray_tasks(cfg, todo, table, bar, address, par)
            else:
                for run in todo:
                    cb = bar.start_run(run)
                    frame = execute(run, eng, cb)
                    table.add(run.run_id, frame)
                    bar.end_run(str(frame["status"].iloc[0]))
    finally:
        eng.close()
    df = table.finish()

    plot_files: list[str] = []
    if plots:
        has_link_cost = "link_time" in df.columns and bool((df["link_time"].fillna(0) > 0).any())
        for x, y in DEFAULT_PLOTS + (LINK_COST_PLOTS if has_link_cost else ()):
            try:
                plot_results(df, x, y, out / "plots" / f"{y}_vs_{x}.png", title=f"{cfg.name}: {y} vs {x}")
            except ValueError:  # nothing to draw (e.g. no x* for dist_opt, or every run errored)
                continue
            plot_files.append(f"plots/{y}_vs_{x}.png")

    manifest.update(
        finished=_now(),
        wall_s=round(time.perf_counter() - t0, 3),
        executed=len(todo) - len(failed),
        skipped=len(runs) - len(todo),
        failed=failed,
        statuses={str(k): int(v) for k, v in final_rows(df)["status"].value_counts().items()} if len(df) else {},
        plots=plot_files,
    )
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, default=str))
    return df


def _run_ray_tasks(cfg: ExperimentConfig, todo: list[RunConfig], table: LiveTable, bar: _Progress,
                   address: str | None, parallel: int | None) -> list[dict[str, str]]:
    """The runs of ``todo`` as Ray tasks, each finished run added to ``table`` as it arrives.

    Runs that Ray itself fails (a worker lost more often than retries allow) are
    not written: they are returned, and ``--resume`` runs them again.
    """
    import math
    from functools import partial

    import ray

    from fedopt.experiment.ray_sweep import Resources, connect, run_on_ray

    res = Resources.from_config(cfg.resources.model_dump())
    # a local instance gets enough CPUs for `parallel` runs at once (at least the machine's)
    want = max(os.cpu_count() or 1, math.ceil((parallel or 1) * res.num_cpus)) if address is None else None
    started = connect(address, num_cpus=want)
    failed: list[dict[str, str]] = []

    def on_result(run: RunConfig, frame: pd.DataFrame) -> None:
        table.add(run.run_id, frame)
        bar.end_run(str(frame["status"].iloc[0]))

    def on_error(run: RunConfig, exc: BaseException) -> None:
        msg = str(exc).strip().splitlines()
        failed.append({"run_id": run.run_id, "error": f"{type(exc).__name__}: {msg[-1] if msg else ''}"})
        print(f"fedopt: run {run.run_id} ({run.label} on {run.topology_label}, seed {run.seed}) failed in Ray: "
              f"{failed[-1]['error']}; it is not in the table (rerun with --resume)", file=sys.stderr)
        bar.end_run("lost")

    try:
        run_on_ray(todo, partial(execute_task, engine=cfg.engine, options=dict(cfg.engine_options)),
                   on_result, resources=res, parallel=parallel,
                   on_error=on_error)
    finally:
        if started:
            ray.shutdown()
    return failed


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The last row of every run (what the summary table shows)."""
    if len(df) == 0:
        return df
    return df.groupby("run_id", sort=False).tail(1).reset_index(drop=True)


__all__ = ["environment", "execute", "execute_task", "final_rows", "run_experiment", "uses_ray_tasks"]
