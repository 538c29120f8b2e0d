"""The results table: one row per checkpoint per run, in Parquet, written atomically.

Layout of an experiment directory::

    DIR/runs/<run_id>.parquet   one part per finished run (written as soon as it ends)
    DIR/results.parquet         every part of the experiment, concatenated

Every file is written to a temporary name in its own directory and moved into
place with :func:`os.replace`, so a reader (or a resumed sweep) never sees half
a file: a killed sweep loses at most the run in progress, and ``--resume``
skips every run whose part exists.

Columns: the run's identity (``run_id``, ``algorithm`` — the algorithm's label,
``topology``, ``seed``, ``variant`` — the swept values as text, ``n_nodes``,
``dim``), the counters (``time``, ``round``, ``grad_evals``, ``queries``,
``messages``, ``bytes``, ``link_time``, ``events``, ``wall_s``), the metrics
(``subopt``, ``dist_opt``, ``consensus``, ``grad_norm_sq``, ``train_loss``,
``test_accuracy`` — NaN when the problem has no test split, ``attack_success`` — NaN
unless the problem is an adversarial attack, ``epsilon`` — null
when the run is not private), the algorithm's diagnostics (``grad_cosine``,
``grad_cosine_local`` — NaN unless the algorithm reports them), ``status`` (``ok`` / ``diverged`` / ``error``)
with its ``message``, and one column per swept parameter.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

#: Identity columns, then counters, then metrics, then status (swept columns follow).
COLUMNS = (
    "run_id", "algorithm", "topology", "seed", "variant", "n_nodes", "dim",
    "time", "round", "grad_evals", "queries", "messages", "bytes", "link_time", "events", "wall_s",
    "subopt", "dist_opt", "consensus", "grad_norm_sq", "train_loss", "test_accuracy", "attack_success", "epsilon",
    "grad_cosine", "grad_cosine_local", "status", "message",
)
_INT_COLUMNS = ("seed", "n_nodes", "dim", "round", "events")
_FLOAT_COLUMNS = ("time", "grad_evals", "queries", "messages", "bytes", "link_time", "wall_s",
                  "subopt", "dist_opt", "consensus", "grad_norm_sq", "train_loss", "test_accuracy", "attack_success",
                  "epsilon", "grad_cosine", "grad_cosine_local")
_STR_COLUMNS = ("run_id", "algorithm", "topology", "variant", "status", "message")
STATUSES = ("ok", "diverged", "error")


def temp_path(path: Path) -> Path:
    """A fresh hidden temporary name next to ``path`` (same directory, so ``os.replace`` is atomic)."""
    return path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_parquet(df: pd.DataFrame, path: Path) -> None:
    """``df.to_parquet`` through a temporary file in the same directory and :func:`os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def rows_frame(
    rows: list[dict[str, Any]],
    labels: dict[str, Any],
    run_id: str,
    status: str,
    message: str = "",
    n_nodes: int | None = None,
    dim: int | None = None,
) -> pd.DataFrame:
    """The table rows of one run (an errored run with no rows gets one row of nulls)."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    recs = rows if rows else [{}]
    swept = [k for k in labels if k not in COLUMNS]
    out: dict[str, list[Any]] = {c: [] for c in (*COLUMNS, *swept)}
    for r in recs:
        for c in COLUMNS:
            if c == "run_id":
                v: Any = run_id
            elif c in ("status", "message"):
                v = status if c == "status" else message
            elif c == "n_nodes":
                v = n_nodes
            elif c == "dim":
                v = dim
            elif c in labels:
                v = labels[c]
            else:
                v = r.get(c)
            out[c].append(v)
        for c in swept:
            out[c].append(labels[c])
    df = pd.DataFrame(out)
    return normalize(df)


def normalize(df: pd.DataFrame) -> pd.DataFrame:
    """Fixed dtypes for the standard columns (nullable ints, floats, strings)."""
    for c in _INT_COLUMNS:
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    for c in _FLOAT_COLUMNS:
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("Float64" if c == "epsilon" else "float64")
    for c in _STR_COLUMNS:
        if c in df:
            df[c] = df[c].astype("string")
    for c in df.columns:
        if c not in COLUMNS and df[c].dtype == object:
            vals = [v for v in df[c] if v is not None]
            if any(isinstance(v, (dict, list, tuple)) for v in vals) or len({type(v) for v in vals}) > 1:
                df[c] = df[c].map(lambda v: None if v is None else str(v)).astype("string")
    return df


class ResultStore:
    """Part files per run and the combined table of one experiment directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.results_path = self.root / "results.parquet"

    def part_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.parquet"

    def is_done(self, run_id: str) -> bool:
        return self.part_path(run_id).is_file()

    def write_run(self, run_id: str, frame: pd.DataFrame) -> Path:
        path = self.part_path(run_id)
        atomic_write_parquet(frame, path)
        return path

    def clean_temp_files(self) -> int:
        """Remove temporary files left by a killed writer (``.<name>.<pid>.<hex>.tmp``); their count."""
        n = 0
        for d in (self.root, self.runs_dir):
            if d.is_dir():
                for p in d.glob(".*.tmp"):
                    p.unlink(missing_ok=True)
                    n += 1
        return n

    def read_run(self, run_id: str) -> pd.DataFrame:
        return pd.read_parquet(self.part_path(run_id))

    def combine(self, run_ids: Iterable[str]) -> pd.DataFrame:
        """Concatenate the parts of ``run_ids`` (in that order; missing parts are skipped)
        and write ``results.parquet`` atomically."""
        frames = [self.read_run(r) for r in run_ids if self.is_done(r)]
        frames = [f for f in frames if len(f.columns)]
        if frames:
            df = pd.concat(frames, ignore_index=True)
        else:
            df = pd.DataFrame({c: pd.Series([], dtype="object") for c in COLUMNS})
        df = normalize(df)
        atomic_write_parquet(df, self.results_path)
        return df


class LiveTable:
    """The results table kept current while a sweep runs.

    :meth:`add` writes the run's part file (atomically: the run is in the table
    entirely or not at all) and, at most every ``refresh_s`` seconds, rewrites
    ``results.parquet`` (atomically) from the parts finished so far in grid
    order, so a reader sees the rows of every finished run while others still run.
    """

    def __init__(self, store: ResultStore, run_ids: Iterable[str], refresh_s: float = 2.0) -> None:
        self.store = store
        self.order = list(run_ids)
        self.refresh_s = refresh_s
        self.frames: dict[str, pd.DataFrame] = {}
        self._last = 0.0

    def load_existing(self) -> int:
        """Read the parts already on disk (a resumed sweep); their count."""
        for r in self.order:
            if r not in self.frames and self.store.is_done(r):
                self.frames[r] = self.store.read_run(r)
        return len(self.frames)

    def add(self, run_id: str, frame: pd.DataFrame) -> None:
        self.store.write_run(run_id, frame)
        self.frames[run_id] = frame
        if time.monotonic() - self._last >= self.refresh_s:
            self.refresh()

    def refresh(self) -> None:
        frames = [self.frames[r] for r in self.order if r in self.frames and len(self.frames[r].columns)]
        if frames:
            atomic_write_parquet(normalize(pd.concat(frames, ignore_index=True)), self.store.results_path)
        self._last = time.monotonic()

    def finish(self) -> pd.DataFrame:
        """The final table, from the part files on disk (every finished run once, in grid order)."""
        return self.store.combine(self.order)


def load_results(path: str | Path) -> pd.DataFrame:
    """The results table of an experiment directory (or a Parquet file)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.parquet"
    if not p.is_file():
        raise FileNotFoundError(f"no results table at {p} (run `fedopt run CONFIG --out DIR` first)")
    return pd.read_parquet(p)


__all__ = ["COLUMNS", "LiveTable", "ResultStore", "atomic_write_parquet", "atomic_write_text", "load_results", "rows_frame"]
