"""``fedopt run CONFIG``, ``fedopt plot DIR`` and ``fedopt report DIR`` (registered by :mod:`fedopt.cli`).

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

from fedopt.experiment.plots import FORMATS, X_COLUMNS, Y_COLUMNS
from fedopt.experiment.store import STATUSES

#: Columns of the summary printed after ``fedopt run`` (those present are shown).
SUMMARY_COLUMNS = ("algorithm", "topology", "seed", "variant", "status", "time", "round", "messages", "grad_evals",
                   "subopt", "dist_opt", "consensus", "train_loss", "test_accuracy", "attack_success")


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
    plot.add_argument("--out", metavar="FILE", help="output image (default: DIR/plots/<y>_vs_<x>.<format>)")
    plot.add_argument("--format", choices=FORMATS, help="png, or pdf / svg (vector) (default: the suffix of "
                      "--out, else png)")
    plot.set_defaults(func=_plot)

    rep = subparsers.add_parser(
        "report", help="cost to reach a target accuracy per algorithm, with seed intervals and scaling slopes",
        description="For every run of DIR/results.parquet, the cost (messages, bytes, grad_evals, queries, time, "
        "link_time, round) to first reach METRIC <= TARGET, interpolated between checkpoints on a log scale; "
        "seeds aggregated to the median with a bootstrap 95 %% interval; runs that never reach it are kept, as "
        "not reached. Writes DIR/report.parquet, DIR/report.md and, with --x (or when n varies), scaling plots "
        "DIR/plots/scaling_<cost>_vs_<x>.<format>. Defaults come from the report: section of DIR/config.yaml.",
    )
    rep.add_argument("dir", metavar="DIR", help="experiment output directory")
    rep.add_argument("--target", type=float, help="accuracy to reach (default: the config's, else 1e-6)")
    rep.add_argument("--metric", help="quality column (default: the config's, else dist_opt)")
    rel = rep.add_mutually_exclusive_group()
    rel.add_argument("--relative", action="store_const", const=True, dest="relative",
                     help="the target is a fraction of each run's first recorded value")
    rel.add_argument("--absolute", action="store_const", const=False, dest="relative",
                     help="the target is an absolute value (the default unless the config says relative)")
    rep.add_argument("--by", nargs="+", metavar="COL", help="groups besides the algorithm: topology, n, variant, "
                     "a swept parameter, ... (default: topology variant)")
    rep.add_argument("--baseline", metavar="LABEL", help="add a table of each algorithm's cost relative to this one")
    rep.add_argument("--x", nargs="+", metavar="Q", help="scaling plots against: n, a swept parameter, kappa, "
                     "lambda2, chi1, chi2, sqrt_chi1_chi2, chi, diameter, edges")
    rep.add_argument("--cost", nargs="+", metavar="AXIS", help="cost axes of the scaling plots (default: messages)")
    rep.add_argument("--format", choices=FORMATS, help="plot format (default: the config's, else png)")
    rep.set_defaults(func=_report)


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
    cols = [c for c in SUMMARY_COLUMNS if c in last.columns and not (c == "variant" and (last[c].fillna("") == "").all())
            and not (c in ("test_accuracy", "attack_success") and last[c].isna().all())]  # NaN throughout: no column
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
    if args.out:
        out = Path(args.out)
        if args.format and out.suffix.lstrip(".").lower() != args.format:
            raise ValueError(f"plot: --out {out.name} does not end in .{args.format} (--format {args.format})")
    else:
        out = base / "plots" / f"{args.y}_vs_{args.x}.{args.format or 'png'}"
    plot_results(df, args.x, args.y, out, title=args.title)
    print(f"plot: {out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    import yaml

    from fedopt.experiment.report import settings_from, write_report

    root = Path(args.dir)
    if not root.is_dir():
        raise FileNotFoundError(f"report: no experiment directory at {root} (run `fedopt run CONFIG --out DIR` first)")
    section = None
    if (root / "config.yaml").is_file():
        raw = yaml.safe_load((root / "config.yaml").read_text())
        section = raw.get("report") if isinstance(raw, dict) else None
    settings = settings_from(section, target=args.target, metric=args.metric, relative=args.relative, by=args.by,
                             baseline=args.baseline, x=args.x, cost=args.cost, format=args.format)
    written = write_report(root, settings)
    print(Path(written["markdown"]).read_text(), end="")
    print(f"report: {written['table']}, {written['markdown']}")
    if written["plots"]:
        print(f"plots: {', '.join(written['plots'])}")
    for path, why in written["plots_skipped"].items():
        print(f"not drawn: {path}: {why}")
    return 0


def _pandas_display():  # type: ignore[no-untyped-def]
    import pandas as pd

    return pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 40)
