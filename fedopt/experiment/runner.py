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
from fedopt.experiment.plots import DEFAULT_PLOTS, plot_results
from fedopt.experiment.store import ResultStore, atomic_write_text, rows_frame
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
) -> pd.DataFrame:
    """Run every run of ``config`` into ``out_dir`` and return the results table.

    ``engine`` overrides the config's engine; ``resume`` skips runs whose part
    file exists; ``progress`` shows a progress bar when stdout is a terminal.
    """
    from fedopt.engines.base import make_engine

    cfg = config if isinstance(config, ExperimentConfig) else load_config(config)
    if engine is not None:
        from fedopt.experiment.config import _check_engine

        _check_engine(engine)
        cfg = cfg.model_copy(update={"engine": engine})
    runs = expand(cfg)  # every config error surfaces here, before any run
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultStore(out)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))

    manifest: dict[str, Any] = {
        "experiment": cfg.name,
        "engine": cfg.engine,
        **environment(),
        "seeds": list(cfg.seeds),
        "grid": grid_summary(runs),
        "runs": [{"run_id": r.run_id, **r.labels} for r in runs],
        "started": _now(),
        "finished": None,
        "resumed": bool(resume),
    }
    manifest_path = out / "manifest.json"
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, default=str))

    todo = [r for r in runs if not (resume and store.is_done(r.run_id))]
    eng = make_engine(cfg.engine)
    t0 = time.perf_counter()
    try:
        with _Progress(progress and sys.stdout.isatty(), len(runs)) as bar:
            bar.skip(len(runs) - len(todo))
            for run in todo:
                cb = bar.start_run(run)
                frame = execute(run, eng, cb)
                store.write_run(run.run_id, frame)
                bar.end_run(str(frame["status"].iloc[0]))
    finally:
        eng.close()
    df = store.combine(r.run_id for r in runs)

    plot_files: list[str] = []
    if plots:
        for x, y in DEFAULT_PLOTS:
            try:
                plot_results(df, x, y, out / "plots" / f"{y}_vs_{x}.png", title=f"{cfg.name}: {y} vs {x}")
            except ValueError:  # nothing to draw (e.g. no x* for dist_opt, or every run errored)
                continue
            plot_files.append(f"plots/{y}_vs_{x}.png")

    manifest.update(
        finished=_now(),
        wall_s=round(time.perf_counter() - t0, 3),
        executed=len(todo),
        skipped=len(runs) - len(todo),
        statuses={str(k): int(v) for k, v in final_rows(df)["status"].value_counts().items()} if len(df) else {},
        plots=plot_files,
    )
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, default=str))
    return df


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The last row of every run (what the summary table shows)."""
    if len(df) == 0:
        return df
    return df.groupby("run_id", sort=False).tail(1).reset_index(drop=True)


__all__ = ["environment", "execute", "final_rows", "run_experiment"]
