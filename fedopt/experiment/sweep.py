"""Sweep expansion: an :class:`ExperimentConfig` → one :class:`RunConfig` per run.

The grid is topologies × algorithms × sweep points × seeds, in that order. A
sweep point sets every ``sweep:`` path to one of its values (the Cartesian
product of the lists). A sweep path only concerns the runs it can change
(``algorithms.0.params.lr`` does not make copies of the other algorithms'
runs): runs whose resolved content is identical are kept once.

Each run has a stable ``run_id``, a short hash of what defines it (problem,
topology, algorithm with its validated parameters and label, seed, stop and
record spacing), so that re-running or resuming a sweep recognises finished
runs, and ``labels`` that become the results table's identifying columns.
File paths enter the run id as written in the config; the folder they resolve
against travels with the run (``base_dir``) and is applied when it is built.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fedopt.experiment.config import (
    ConfigError,
    ExperimentConfig,
    _validate_plain,
    apply_override,
    build_problem,
    resolve_topology_paths,
    split_path,
)

#: Columns every results row has; swept parameters get other names.
RESERVED_COLUMNS = frozenset(
    {
        "run_id", "algorithm", "topology", "seed", "variant", "n_nodes", "dim", "time", "round", "grad_evals",
        "queries", "messages", "bytes", "link_time", "events", "wall_s", "subopt", "dist_opt", "consensus",
        "grad_norm_sq", "train_loss", "test_accuracy", "attack_success", "epsilon", "status", "message",
    }
)


@dataclass(frozen=True)
class RunConfig:
    """Plain data defining one run (picklable: a Ray task rebuilds the run from it)."""

    run_id: str
    experiment: str
    problem: dict[str, Any]
    topology: Any  # the reference handed to the topology resolver (name, mapping or path)
    topology_label: str
    algorithm: str
    label: str
    params: dict[str, Any]
    seed: int
    stop: dict[str, Any]
    record_every: float
    swept: dict[str, Any] = field(default_factory=dict)  # column → value (None: not applicable)
    resources: dict[str, float] = field(default_factory=dict)
    base_dir: str | None = None  # folder that relative file paths resolve against (not part of the run id)

    @property
    def variant(self) -> str:
        """The swept values that apply to this run, e.g. ``"lr=0.1, reg=0.01"``."""
        return ", ".join(f"{k}={_short(v)}" for k, v in self.swept.items() if v is not None)

    @property
    def labels(self) -> dict[str, Any]:
        """Identifying columns of this run's rows."""
        return {"algorithm": self.label, "topology": self.topology_label, "seed": self.seed,
                "variant": self.variant, **self.swept}

    def content(self) -> dict[str, Any]:
        """What the run id hashes."""
        return {
            "problem": self.problem,
            "topology": self.topology,
            "algorithm": self.algorithm,
            "label": self.label,
            "params": self.params,
            "seed": self.seed,
            "stop": self.stop,
            "record_every": self.record_every,
        }

    def build_spec(self) -> Any:
        """The :class:`~fedopt.engines.base.RunSpec` (the problem as :func:`~fedopt.experiment.config.build_problem`
        builds it: from ``problem.seed`` when given, else from the run seed's ``"problem"`` stream)."""
        from fedopt.algorithms.base import make_algorithm
        from fedopt.engines.base import RunSpec, StopCriteria

        problem = build_problem(self.problem, self.seed, self.base_dir)
        topology = resolve_topology_ref(resolve_topology_paths(self.topology, self.base_dir))
        algorithm = make_algorithm(self.algorithm, **self.params)
        return RunSpec(
            run_id=self.run_id,
            problem=problem,
            topology=topology,
            algorithm=algorithm,
            seed=self.seed,
            stop=StopCriteria(**self.stop),
            record_every=self.record_every,
            labels=self.labels,
        )


def run_id_of(content: dict[str, Any]) -> str:
    """12 hex digits of the SHA-256 of the canonical JSON of ``content``."""
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def _short(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else json.dumps(v) if isinstance(v, (dict, list)) else str(v)


# ---- topologies ---------------------------------------------------------------------


def resolve_topology_ref(ref: Any) -> Any:
    """A :class:`~fedopt.topology.graph.Topology` (or time-varying sequence) from a reference
    (file paths in it as they are: see :func:`~fedopt.experiment.config.resolve_topology_paths`)."""
    from fedopt.topology.spec import resolve_topology

    return resolve_topology(ref)


def _is_file_ref(name: str) -> bool:
    """A spec file (path, or the name of a shipped spec in ``topologies/``) rather than a generator name."""
    from fedopt.resources import topology_spec_path

    if name.endswith((".yaml", ".yml")) or "/" in name:
        return True
    return topology_spec_path(name) is not None


def topology_ref(entry: str | dict[str, Any], n: int) -> Any:
    """The resolver's reference for a config entry: generator names get the problem's ``n``."""
    if isinstance(entry, str):
        return entry if _is_file_ref(entry) else {"name": entry, "n": n}
    ref = {k: v for k, v in entry.items() if k != "label"}
    if not _is_file_ref(str(ref.get("name", ""))):
        ref.setdefault("n", n)
    return ref


def _topology_labels(entries: list[str | dict[str, Any]]) -> list[str]:
    names = []
    for e in entries:
        if isinstance(e, str):
            names.append(Path(e).stem if _is_file_ref(e) else e)
        elif "label" in e:
            names.append(str(e["label"]))
        else:
            nm = str(e["name"])
            names.append(Path(nm).stem if _is_file_ref(nm) else nm)
    out = []
    for e, nm in zip(entries, names):
        if names.count(nm) > 1 and isinstance(e, dict) and "label" not in e:
            extra = ", ".join(f"{k}={_short(v)}" for k, v in e.items() if k not in ("name", "n"))
            nm = f"{nm}({extra})" if extra else nm
        out.append(nm)
    return out


def _n_nodes(top: Any) -> int:
    if hasattr(top, "at"):
        top = top.at(0.0)
    return int(top.n)


# ---- expansion ----------------------------------------------------------------------


def _column_names(paths: list[str]) -> dict[str, str]:
    """Results-table column of each sweep path: its last key when that is unambiguous."""
    last = [str(split_path(p)[-1]) for p in paths]
    out = {}
    for p, k in zip(paths, last):
        out[p] = k if last.count(k) == 1 and k not in RESERVED_COLUMNS else p
    return out


def _target(path: str, cfg: ExperimentConfig) -> tuple[str, int | None]:
    """The section a sweep path changes and, for topology/algorithms, which entry."""
    parts = split_path(path)
    head = str(parts[0])
    if head not in ("topology", "algorithms") or len(parts) == 1:
        return head, None
    sel = parts[1]
    if isinstance(sel, int):
        return head, sel
    if head == "topology":
        return head, 0
    labels = [a.display for a in cfg.algorithms]
    return head, labels.index(str(sel)) if sel in labels else None


def expand(cfg: ExperimentConfig, check_topologies: bool = True) -> list[RunConfig]:
    """Every run of the experiment (distinct run ids), in grid order.

    Topology references are resolved once each (validating their names and
    parameters, and that they have ``problem.n`` nodes) unless
    ``check_topologies`` is false.
    """
    from fedopt.algorithms.base import algorithm_class

    paths = list(cfg.sweep)
    columns = _column_names(paths)
    targets = {p: _target(p, cfg) for p in paths}
    base = cfg.to_dict()
    base["sweep"] = {}
    points: list[tuple[dict[str, Any], ExperimentConfig]] = []
    for combo in itertools.product(*(cfg.sweep[p] for p in paths)):
        raw = base
        for p, v in zip(paths, combo):
            raw = apply_override(raw, p, v)
        try:
            point = _validate_plain(raw)
        except ConfigError as exc:
            where = ", ".join(f"{p}={v!r}" for p, v in zip(paths, combo))
            msg = str(exc)[len("config: "):]
            raise ConfigError(f"config: sweep point {where}: {msg}") from None
        points.append((dict(zip(paths, combo)), point))

    n_top = max(len(pt.topology) for _, pt in points)
    n_alg = len(cfg.algorithms)
    resolved: dict[str, int] = {}
    runs: dict[str, RunConfig] = {}
    for ti in range(n_top):
        for ai in range(n_alg):
            for values, pt in points:
                if ti >= len(pt.topology):
                    continue
                entry = pt.topology[ti]
                tlabel = _topology_labels(pt.topology)[ti]
                ref = topology_ref(entry, pt.problem.n)
                if check_topologies:
                    key = json.dumps(ref, sort_keys=True, default=str)
                    if key not in resolved:
                        try:
                            resolved[key] = _n_nodes(resolve_topology_ref(resolve_topology_paths(ref, cfg.base_dir)))
                        except (ValueError, TypeError, KeyError, FileNotFoundError) as exc:
                            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
                            raise ConfigError(f"config: topology.{ti}: {msg}") from None
                    if resolved[key] != pt.problem.n:
                        raise ConfigError(
                            f"config: topology.{ti}: {tlabel!r} has {resolved[key]} nodes but problem.n = {pt.problem.n}"
                        )
                algo = pt.algorithms[ai]
                params = algorithm_class(algo.name).Params(**algo.params).model_dump(mode="json")
                swept = {}
                for p in paths:
                    head, idx = targets[p]
                    applies = head not in ("topology", "algorithms") or idx is None or \
                        idx == (ti if head == "topology" else ai)
                    swept[columns[p]] = values[p] if applies else None
                problem = {"name": pt.problem.name, **pt.problem.factory_params()}
                stop = pt.stop.model_dump(mode="json")
                proto = RunConfig(
                    run_id="",
                    experiment=cfg.name,
                    problem=problem,
                    topology=ref,
                    topology_label=tlabel,
                    algorithm=algo.name,
                    label=algo.display,
                    params=params,
                    seed=0,
                    stop=stop,
                    record_every=float(pt.record.every),
                    swept=swept,
                    resources=pt.resources.model_dump(),
                    base_dir=cfg.base_dir,
                )
                for seed in pt.seeds:
                    content = {**proto.content(), "seed": seed}
                    rid = run_id_of(content)
                    if rid not in runs:
                        runs[rid] = replace(proto, run_id=rid, seed=seed)
    return list(runs.values())


def grid_summary(runs: list[RunConfig]) -> str:
    """``"12 runs: 3 topologies × 2 algorithms × 2 seeds"``-style one-liner."""
    tops = {r.topology_label for r in runs}
    algs = {(r.label, r.variant) for r in runs}
    seeds = {r.seed for r in runs}
    return f"{len(runs)} runs: {len(tops)} topologies × {len(algs)} algorithm variants × {len(seeds)} seeds"


__all__ = ["RunConfig", "expand", "grid_summary", "resolve_topology_ref", "run_id_of", "topology_ref"]
