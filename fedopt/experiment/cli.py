"""``fedopt run CONFIG`` and ``fedopt plot DIR`` (registered by :mod:`fedopt.cli`).

``fedopt run`` exits with 0 when every run ended ``ok`` or ``diverged`` (a
diverged run is a result), 1 when a run ended in ``error`` or was lost in Ray,
and 2 on bad input (config, flags, an output directory that holds another
experiment).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from fedopt.experiment.plots import X_COLUMNS, Y_COLUMNS
from fedopt.experiment.store import STATUSES

#: Columns of the summary printed after ``fedopt run`` (those present are shown).
SUMMARY_COLUMNS = ("algorithm", "topology", "seed", "variant", "status", "time", "round", "messages", "grad_evals",
                   "subopt", "dist_opt", "consensus")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = subparsers.add_parser(
        "run", help="run an experiment config (YAML) into a results directory",
        description="Run every run of an experiment config; write results.parquet, plots, config.yaml "
        "and manifest.json into the output directory. Exit status: 0 when every run ended ok or diverged, "
        "1 when a run ended in error (or was lost in Ray), 2 on bad input.",
    )
    run.add_argument("config", help="experiment config (YAML), or the name of a shipped example (quickstart, ...)")
    run.add_argument("--out", metavar="DIR", help="output directory (default: runs/<config name>); one that "
                     "holds results needs --resume or --overwrite")
    run.add_argument("--engine", metavar="NAME", help="engine to use instead of the config's (local, sharded, "
                     "ray, mpi: under mpiexec -n P); the config's engine options are then not used")
    again = run.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="finish the experiment in DIR (same config): skip runs already finished there")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the experiment in DIR: remove its results, per-run parts and plots first")
    run.add_argument("--address", metavar="ADDR",
                     help="run every run as a Ray task on this cluster: auto (the cluster this machine belongs to), "
                     "HOST:PORT (the head's GCS address) or ray://HOST:PORT (Ray Client); a token-authenticated cluster "
                     "is joined as docs/ray.md describes; resources per run from the config's resources:")
    run.add_argument("--parallel", metavar="N", type=_positive_int,
                     help="runs at once (default: the config's parallel, else 1; with --address, as many as the "
                     "cluster fits); more than 1 runs them as Ray tasks on a private local Ray instance (no dashboard)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)

    plot = subparsers.add_parser(
        "plot", help="plot a results table (median over seeds, min–max band)",
        description="Plot y against x from DIR/results.parquet, one panel per topology, one line per algorithm.",
    )
    plot.add_argument("dir", metavar="DIR", help="experiment output directory (or a results .parquet file)")
    plot.add_argument("--x", default="messages", help=f"x axis: {', '.join(X_COLUMNS)} (default: messages)")
    plot.add_argument("--y", default="dist_opt", help=f"y axis: {', '.join(Y_COLUMNS)} (default: dist_opt)")
    plot.add_argument("--title", help="figure title")
    plot.add_argument("--out", metavar="FILE", help="output image (default: DIR/plots/<y>_vs_<x>.png)")
    plot.set_defaults(func=_plot)


def _run(args: argparse.Namespace) -> int:
    from fedopt.experiment.config import load_config
    from fedopt.resources import experiment_config_path

    engine = args.engine or load_config(experiment_config_path(args.config)).engine
    if engine != "mpi":
        ranks = _launcher_ranks()
        if ranks > 1:
            raise ValueError(f"--engine: this command was started on {ranks} MPI ranks (mpiexec) with engine "
                             f"{engine!r}: every rank would run the whole experiment into the same output directory; "
                             "give --engine mpi, or run it without mpiexec")
        return _run_experiment(args)
    # every rank of `mpiexec -n P fedopt run ... --engine mpi` gets here: rank 0 runs the
    # experiment, the other ranks serve its shards until it is done
    from fedopt.engines.base import engine_factory

    engine_factory("mpi")  # mpi4py and an MPI runtime, or one line that says what to install
    if args.address is not None or (args.parallel or 1) > 1:
        raise ValueError("--address / --parallel: the mpi engine runs the runs one after the other on the "
                         "ranks of its MPI job; leave them out")
    from fedopt.engines.mpi import MpiJob

    with MpiJob() as job:
        return _run_experiment(args) if job.is_driver else 0


#: Environment variables in which MPI launchers give the number of ranks (MPICH's Hydra, Open MPI).
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


def _launcher_ranks() -> int:
    """How many ranks the MPI launcher that started this process started (1 without one)."""
    for var in LAUNCHER_SIZE_VARIABLES:
        text = os.environ.get(var, "")
        if text.isdigit():
            return int(text)
    return 1


def _run_experiment(args: argparse.Namespace) -> int:
    from fedopt.experiment.config import load_config
    from fedopt.experiment.runner import final_rows, run_experiment
    from fedopt.resources import experiment_config_path

    cfg = load_config(experiment_config_path(args.config))
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    df = run_experiment(cfg, out, engine=args.engine, resume=args.resume, progress=not args.no_progress,
                        address=args.address, parallel=args.parallel, overwrite=args.overwrite)
    last = final_rows(df)
    cols = [c for c in SUMMARY_COLUMNS if c in last.columns and not (c == "variant" and (last[c].fillna("") == "").all())]
    if len(last):
        with _pandas_display():
            print(last[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    bad = last[last["status"] != "ok"] if len(last) else last
    for _, row in bad.iterrows():
        print(f"{row['status']}: {row['algorithm']} on {row['topology']} seed {row['seed']}: {row['message']}")
    plots = sorted((out / "plots").glob("*.png")) if (out / "plots").is_dir() else []
    counts = {s: int((last["status"] == s).sum()) if len(last) else 0 for s in STATUSES}
    print(f"{len(last)} runs: {', '.join(f'{k} {s}' for s, k in counts.items())}; results: {out / 'results.parquet'}")
    print(f"plots: {', '.join(str(p) for p in plots) or '(none)'}")
    print(f"config: {out / 'config.yaml'}; manifest: {out / 'manifest.json'}")
    rc = 0
    if counts["error"]:
        print(f"fedopt: {counts['error']} of {len(last)} runs ended in error (status error in the table, "
              "messages above)", file=sys.stderr)
        rc = 1
    failed = json.loads((out / "manifest.json").read_text()).get("failed") or []
    if failed:
        print(f"{len(failed)} runs failed in Ray and are not in the table; finish them with --resume", file=sys.stderr)
        rc = 1
    return rc


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def _plot(args: argparse.Namespace) -> int:
    from fedopt.experiment.plots import check_axes, plot_results
    from fedopt.experiment.store import load_results

    check_axes(args.x, args.y)
    src = Path(args.dir)
    df = load_results(src)
    base = src if src.is_dir() else src.parent
    out = Path(args.out) if args.out else base / "plots" / f"{args.y}_vs_{args.x}.png"
    plot_results(df, args.x, args.y, out, title=args.title)
    print(f"plot: {out}")
    return 0


def _pandas_display():  # type: ignore[no-untyped-def]
    import pandas as pd

    return pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 40)
