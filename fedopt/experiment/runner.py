"""Run a whole experiment: config → runs → results table → plots.

:func:`run_experiment` validates the config and expands its grid (every error
surfaces before the first run), then runs each run not already finished,
writing its part of the results table as soon as it ends, rebuilds the
combined table, draws the default plots and records a manifest (versions,
machine, git commit, seeds, run ids, start and end times, and every choice
made for the user: how the runs execute, an engine replaced from the command
line, plots that could not be drawn) and, per run, what its problem resolved to
(``problem.describe()`` as the run built it: a torch problem's device and dtype).

An output directory that already holds an experiment is refused unless the
call resumes it (``resume``: the same config, what differs is named) or
replaces it (``overwrite``: every output of the old experiment is removed
first, its per-run parts included).

Output directory::

    config.yaml        the validated config with every default filled in
    manifest.json      environment and run list
    runs/<id>.parquet  one part per run
    results.parquet    the combined table
    plots/*.png        the config's ``plots`` (default: DEFAULT_PLOTS)
    report.parquet     the cost-to-target report, when the config has a ``report:`` section
    report.md          (:mod:`fedopt.experiment.report`), with its scaling plots in plots/
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
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

from fedopt.experiment.config import ExperimentConfig, load_config, problem_paths, topology_paths
from fedopt.experiment.plots import DEFAULT_PLOTS, LINK_COST_PLOTS, plot_results
from fedopt.experiment.store import LiveTable, ResultStore, atomic_write_text, rows_frame
from fedopt.experiment.sweep import RunConfig, expand, grid_summary

log = logging.getLogger(__name__)

#: Distributions whose versions go into the manifest.
MANIFEST_PACKAGES = ("fedopt", "numpy", "scipy", "networkx", "cvxpy", "pandas", "pyarrow", "torch")

#: What an experiment writes into its output directory (what ``overwrite`` removes), config first.
OUTPUTS = ("config.yaml", "manifest.json", "results.parquet", "runs", "plots", "report.parquet", "report.md")

#: Config keys that do not change any result: they may differ when a sweep is resumed
#: (``base_dir`` is compared separately, only when the config has relative paths).
EXECUTION_KEYS = ("name", "engine", "engine_options", "parallel", "resources", "plots", "base_dir", "report")

#: Key of a run's frame ``attrs`` holding its problem's ``describe()`` (the manifest's ``problems``).
PROBLEM_ATTR = "problem"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """HEAD of the fedopt checkout the package is imported from (None for an installed package).

    The commit is only reported when the repository's top level holds this very package
    (``<top>/fedopt/__init__.py``): a wheel installed into a virtual environment that happens
    to sit inside some other git checkout reports None, not that checkout's HEAD.
    """
    pkg = Path(__file__).resolve().parents[1]
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=pkg, capture_output=True, text=True,
                             timeout=10)
        if top.returncode != 0 or not top.stdout.strip():
            return None
        ours = pkg / "__init__.py"
        theirs = Path(top.stdout.strip()) / "fedopt" / "__init__.py"
        if not theirs.is_file() or not theirs.resolve().samefile(ours):
            return None
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
    frame = rows_frame(result.rows, run.labels, run.run_id, result.status, message, n_nodes, dim)
    # what the run's problem resolved to where it was built (e.g. a torch problem's device: auto → cuda:0)
    frame.attrs[PROBLEM_ATTR] = json.loads(json.dumps(spec.problem.describe(), default=str))
    return frame


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


def execution_mode(address: str | None, parallel: int | None, placement: str = "") -> str:
    """How the runs execute, in words (logged, and recorded in the manifest); ``placement``:
    where the engine puts a run's work when not all in this process (e.g. the MPI ranks)."""
    if address is not None:
        at_once = f"{parallel} at once" if parallel is not None else "as many at once as the cluster fits"
        return f"Ray tasks on the cluster at {address}, {at_once}"
    if (parallel or 1) > 1:
        return f"Ray tasks on a local Ray instance started here, {parallel} at once (parallel > 1)"
    if placement:
        return f"one after the other, {placement}"
    return "one after the other in this process"


def config_differences(old: Any, new: dict[str, Any]) -> list[str]:
    """``key.path: was X, now Y`` for every result-defining difference between two plain
    configs (the keys of :data:`EXECUTION_KEYS` are left out)."""
    if not isinstance(old, dict):
        return ["(top level): was not a mapping"]
    a = {k: v for k, v in old.items() if k not in EXECUTION_KEYS}
    b = {k: v for k, v in new.items() if k not in EXECUTION_KEYS}
    return _diff(a, b, "")


def _diff(a: Any, b: Any, path: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in [*a, *(k for k in b if k not in a)]:
            sub = f"{path}.{k}" if path else str(k)
            if k not in a:
                out.append(f"{sub}: was absent, now {_show(b[k])}")
            elif k not in b:
                out.append(f"{sub}: was {_show(a[k])}, now absent")
            else:
                out.extend(_diff(a[k], b[k], sub))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{path}.{i}")]
    return [] if a == b else [f"{path}: was {_show(a)}, now {_show(b)}"]


def _show(v: Any) -> str:
    text = json.dumps(v, default=str) if isinstance(v, (dict, list)) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _has_relative_paths(runs: list[RunConfig]) -> bool:
    texts = [t for r in runs for _, t in (*problem_paths(r.problem), *topology_paths(r.topology))]
    return any(not Path(t).expanduser().is_absolute() for t in texts)


def prepare_out_dir(out: Path, cfg: ExperimentConfig, runs: list[RunConfig], resume: bool, overwrite: bool) -> bool:
    """Check (and with ``overwrite`` empty) an output directory before a sweep writes to it.

    A directory that holds none of :data:`OUTPUTS` is used as is. One that does is
    refused unless ``resume`` (its ``config.yaml`` must define the same runs: the
    differences are named) or ``overwrite`` (every output of the old experiment is
    removed, its per-run parts included; other files are left alone). Returns whether
    an old experiment was removed.
    """
    present = [name for name in OUTPUTS if (out / name).exists() or (out / name).is_symlink()]
    if not present:
        return False
    runs_dir = out / "runs"
    if not (out / "results.parquet").exists() and not (runs_dir.is_dir() and any(runs_dir.glob("*.parquet"))):
        # an attempt that finished no run (e.g. it could not join its cluster) left only its
        # config and manifest: there are no results to protect, the new experiment replaces them
        log.info("%s holds no finished run of an earlier attempt (%s); reusing it", out, ", ".join(present))
        return False
    old_cfg = out / "config.yaml"
    old: Any = None
    if old_cfg.is_file():
        try:
            old = yaml.safe_load(old_cfg.read_text())
        except yaml.YAMLError:
            old = None
    if overwrite:
        for name in present:  # config.yaml first: a directory emptied halfway is not resumable
            path = out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        log.info("removed the previous results in %s (--overwrite): %s", out, ", ".join(present))
        return True
    what = f"the results of experiment {old.get('name')!r}" if isinstance(old, dict) else "results"
    if not resume:
        raise ValueError(f"{out} already holds {what}; add --resume to finish that experiment (same config) "
                         "or --overwrite to replace it")
    if not isinstance(old, dict):
        reason = "no config.yaml" if not old_cfg.is_file() else "a config.yaml that is not a valid config"
        raise ValueError(f"--resume: {out} holds results but {reason} to compare with; use --overwrite to replace them")
    new = cfg.to_dict()
    diffs = config_differences(old, new)
    if old.get("base_dir") != new.get("base_dir") and _has_relative_paths(runs):
        diffs.append(f"base_dir (relative paths resolve against it): was {_show(old.get('base_dir'))}, "
                     f"now {_show(new.get('base_dir'))}")
    if diffs:
        more = f"; and {len(diffs) - 3} more" if len(diffs) > 3 else ""
        raise ValueError(f"--resume: {out} holds {what} from a different config: {'; '.join(diffs[:3])}{more}; "
                         "use --overwrite to replace them, or another --out")
    return False


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
    overwrite: bool = False,
) -> pd.DataFrame:
    """Run every run of ``config`` into ``out_dir`` and return the results table.

    ``engine`` overrides the config's engine (the config's engine options, which
    belong to its own engine, are then not used: logged and recorded in the
    manifest); ``resume`` finishes the experiment in ``out_dir`` (the same config:
    runs whose part file exists are skipped); ``overwrite`` replaces the
    experiment in ``out_dir``; without either, a directory that holds results is
    refused (:func:`prepare_out_dir`). ``progress`` shows a progress bar when
    stdout is a terminal.

    ``address`` (``"auto"``, ``"host:port"``, ``"ray://host:port"``) runs every run as a Ray task on
    that cluster, with the config's ``resources``; ``parallel`` (default: the
    config's, else 1) is how many runs go at once: more than 1 without an address
    runs them as Ray tasks on a private local Ray instance started here (no
    dashboard), which is logged and recorded in the manifest's
    ``execution``. Each run's rows enter the table as it finishes.
    """
    from fedopt.engines.base import make_engine

    if resume and overwrite:
        raise ValueError("give --resume (finish the experiment in the output directory) or --overwrite "
                         "(replace it), not both")
    cfg = config if isinstance(config, ExperimentConfig) else load_config(config)
    if cfg.base_dir is None:  # relative paths resolve against the working directory: record it
        cfg = cfg.model_copy(update={"base_dir": os.getcwd()})
    engine_override: dict[str, Any] | None = None
    if engine is not None and engine != cfg.engine:
        from fedopt.experiment.config import _check_engine

        _check_engine(engine)
        engine_override = {"engine": engine, "config_engine": cfg.engine, "unused_options": dict(cfg.engine_options)}
        if cfg.engine_options:
            log.warning("engine %r replaces the config's engine %r; its options (%s) belong to %r and are not used",
                        engine, cfg.engine, ", ".join(f"{k}={v!r}" for k, v in cfg.engine_options.items()), cfg.engine)
        cfg = cfg.model_copy(update={"engine": engine, "engine_options": {}})
    if parallel is not None and parallel < 1:
        raise ValueError(f"parallel: give a positive number of runs at once, got {parallel}")
    par = parallel if parallel is not None else cfg.parallel  # None: 1 locally, as many as fit on a cluster
    on_ray = uses_ray_tasks(address, par or 1)
    if on_ray and cfg.engine == "mpi":
        raise ValueError(f"parallel / address: the mpi engine runs the runs one after the other on the ranks of "
                         f"its MPI job, not as Ray tasks; got parallel={par}, address={address!r}")
    runs = expand(cfg)  # every config error surfaces here, before any run
    eng = make_engine(cfg.engine, **cfg.engine_options)  # bad engine options too
    out = Path(out_dir)
    try:
        if out.exists() and not out.is_dir():
            raise ValueError(f"{out} is a file, not a directory; give --out a directory")
        overwritten = prepare_out_dir(out, cfg, runs, resume, overwrite) if out.is_dir() else False
    except BaseException:
        eng.close()
        raise
    mode = execution_mode(address, par, "" if on_ray else eng.placement())
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
        "overwritten": overwritten,
        "engine_override": engine_override,
        "execution": {"ray_tasks": on_ray, "address": address, "parallel": par,
                      "resources": cfg.resources.model_dump(), "mode": mode},
    }
    manifest_path = out / "manifest.json"
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, default=str))

    todo = [r for r in runs if not (resume and store.is_done(r.run_id))]
    table = LiveTable(store, [r.run_id for r in runs])
    if resume:
        table.load_existing()
    failed: list[dict[str, str]] = []
    problems: dict[str, Any] = {}  # run id -> its problem's describe(), as built for the run
    t0 = time.perf_counter()
    try:
        with _Progress(progress and sys.stdout.isatty(), len(runs)) as bar:
            bar.skip(len(runs) - len(todo))
            if on_ray and todo:
                log.info("%d runs go to %s", len(todo), mode)
                eng.close()
                failed = _run_ray_tasks(cfg, todo, table, bar, address, par, problems)
            else:
                for run in todo:
                    cb = bar.start_run(run)
                    frame = execute(run, eng, cb)
                    table.add(run.run_id, frame)
                    problems[run.run_id] = frame.attrs.get(PROBLEM_ATTR)
                    bar.end_run(str(frame["status"].iloc[0]))
    finally:
        eng.close()
    df = table.finish()

    plot_files: list[str] = []
    plots_skipped: dict[str, str] = {}
    if plots:
        has_link_cost = "link_time" in df.columns and bool((df["link_time"].fillna(0) > 0).any())
        wanted = DEFAULT_PLOTS if cfg.plots is None else tuple((p.x, p.y) for p in cfg.plots)
        for x, y in wanted + (LINK_COST_PLOTS if has_link_cost and cfg.plots is None else ()):
            name = f"plots/{y}_vs_{x}.png"
            try:
                plot_results(df, x, y, out / name, title=f"{cfg.name}: {y} vs {x}")
            except ValueError as exc:  # nothing to draw (e.g. no x* for dist_opt, or every run errored)
                plots_skipped[name] = str(exc)
                log.info("%s not drawn: %s", name, exc)
                continue
            plot_files.append(name)

    report: dict[str, Any] | None = None
    if cfg.report is not None:
        from fedopt.experiment.report import settings_from, write_report

        try:
            report = write_report(out, settings_from(cfg.report.model_dump(), plots=plots), df, cfg)
        except ValueError as exc:  # nothing to report (e.g. every run errored, no x* for dist_opt)
            report = {"skipped": str(exc)}
            log.info("report not written: %s", exc)

    manifest.update(
        finished=_now(),
        wall_s=round(time.perf_counter() - t0, 3),
        executed=len(todo) - len(failed),
        skipped=len(runs) - len(todo),
        failed=failed,
        statuses={str(k): int(v) for k, v in final_rows(df)["status"].value_counts().items()} if len(df) else {},
        plots=plot_files,
        plots_skipped=plots_skipped,
        report=report,
        problems={r.run_id: problems[r.run_id] for r in runs if problems.get(r.run_id) is not None},
    )
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, default=str))
    return df


def _run_ray_tasks(cfg: ExperimentConfig, todo: list[RunConfig], table: LiveTable, bar: _Progress,
                   address: str | None, parallel: int | None, problems: dict[str, Any]) -> list[dict[str, str]]:
    """The runs of ``todo`` as Ray tasks, each finished run added to ``table`` as it arrives
    (and its problem's description, as the task built it, to ``problems``).

    Runs that Ray itself fails (a worker lost more often than retries allow) are
    not written: they are returned, and ``--resume`` runs them again.
    """
    import math
    from functools import partial

    from fedopt.experiment.ray_sweep import Resources, connect, disconnect, run_on_ray

    res = Resources.from_config(cfg.resources.model_dump())
    # a local instance gets enough CPUs for `parallel` runs at once (at least the machine's)
    want = max(os.cpu_count() or 1, math.ceil((parallel or 1) * res.num_cpus)) if address is None else None
    started = connect(address, num_cpus=want)
    failed: list[dict[str, str]] = []

    def on_result(run: RunConfig, frame: pd.DataFrame) -> None:
        table.add(run.run_id, frame)
        problems[run.run_id] = frame.attrs.get(PROBLEM_ATTR)
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
            disconnect()
    return failed


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The last row of every run (what the summary table shows)."""
    if len(df) == 0:
        return df
    return df.groupby("run_id", sort=False).tail(1).reset_index(drop=True)


__all__ = ["config_differences", "environment", "execute", "execute_task", "execution_mode", "final_rows",
           "prepare_out_dir", "run_experiment", "uses_ray_tasks"]
