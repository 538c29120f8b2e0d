"""The experiment config: one YAML file → a validated :class:`ExperimentConfig`.

A config names a problem, one or more topologies, one or more algorithms (each
with its hyper-parameters), the seeds, when runs stop, how often they record,
the engine, an optional parameter sweep and the resources of one run::

    name: quickstart
    problem: {name: logistic, n: 16, data: {source: synthetic, n_samples: 800, d: 10}, reg: 0.01}
    topology: [cycle, star, {name: random_geometric, radius: 0.5}]
    algorithms:
      - {name: dgd, params: {lr: 0.5}}
      - {name: gossip_sgd, label: gossip-sgd, params: {lr: 0.1}}
    seeds: [0, 1]
    stop: {time: 50}
    record: {every: 1.0}
    engine: local             # or {name: ray, num_actors: 4, num_cpus_per_actor: 1}
    sweep: {algorithms.0.params.lr: [0.1, 0.5]}
    resources: {num_cpus: 1, num_gpus: 0}    # of one run (a Ray task when runs go to Ray)
    parallel: 4               # runs at once as Ray tasks (default 1: one after the other)

Everything is checked when the config is loaded, before any run starts:
unknown keys, types and ranges, algorithm names and each algorithm's own
parameter model, problem names, the parameters their factory accepts and
their types, the engine (it must be built into this install and importable
here) and its options, and every sweep path. Each distinct problem of the
sweep is built once (:func:`build_problem`, with the first seed), so a bad
parameter value is reported with its key path (``config: problem.data.d:
...``) before any run. Topology names are checked when the grid is expanded
(:func:`fedopt.experiment.sweep.expand`), which also happens before any run. A
bad config raises :class:`ConfigError` (a ``ValueError``) with one line naming
the key path, e.g. ``config: algorithms.1.name: unknown algorithm 'dadoa';
choose one of: dgd, fedavg, gossip_sgd``.

Relative file paths in a config (a LIBSVM file, a topology spec, a rates file)
resolve against ``base_dir``: the folder of the config file, which
:func:`load_config` records as an absolute path. The config keeps the paths as
written (they, not the folder, enter the run ids), and the ``config.yaml`` of a
results directory records ``base_dir``, so it reads back, and a sweep resumes,
from any working directory.
"""

from __future__ import annotations

import copy
import functools
import inspect
import itertools
import json
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PydanticSchemaGenerationError,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from fedopt.core.trace import METRIC_COLUMNS

if TYPE_CHECKING:
    from fedopt.problems.base import Problem


class ConfigError(ValueError):
    """A bad experiment config (the message is one line starting with ``config:``)."""


#: Top-level sections a sweep path may start with.
SWEEPABLE = ("problem", "topology", "algorithms", "stop", "record")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StopConfig(_Section):
    """When each run ends: the first criterion met (checked at every checkpoint)."""

    time: float | None = Field(None, gt=0, description="simulated time (rounds for round-based algorithms)")
    rounds: int | None = Field(None, ge=1, description="synchronous rounds")
    messages: float | None = Field(None, gt=0, description="communications")
    target: float | None = Field(None, description="stop once target_metric <= target")
    target_metric: Literal["subopt", "dist_opt", "consensus", "grad_norm_sq", "train_loss"] = "dist_opt"


class RecordConfig(_Section):
    """Checkpoint spacing: rounds for round-based algorithms, simulated time for event-based ones."""

    every: float = Field(1.0, gt=0)


class ResourcesConfig(_Section):
    """Resources of one run (a Ray task in a Ray sweep)."""

    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)


class ReportConfig(_Section):
    """The communication-complexity report ``fedopt run`` writes after the runs
    (:mod:`fedopt.experiment.report`): the cost of each run to first reach ``metric ≤ target``."""

    target: float = Field(gt=0, description="the accuracy to reach (a fraction of each run's first value "
                          "when relative)")
    metric: str = Field("dist_opt", description="the quality column the target applies to")
    relative: bool = Field(False, description="target × the run's first recorded value of the metric")
    by: list[str] = Field(default_factory=lambda: ["topology", "variant"], min_length=1,
                          description="the groups of the table besides the algorithm (columns; n = n_nodes)")
    baseline: str | None = Field(None, description="an algorithm label: ratio table against it")
    x: list[str] = Field(default_factory=list, description="scaling plots against these (n, a swept column, "
                         "kappa, lambda2, chi1, chi2, sqrt_chi1_chi2, chi, diameter, edges)")
    cost: list[str] = Field(default_factory=lambda: ["messages"], min_length=1, description="cost axes of the "
                            "scaling plots")
    format: Literal["png", "pdf", "svg"] = "png"

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in METRIC_COLUMNS:
            raise ValueError(f"must be one of {', '.join(METRIC_COLUMNS)}")
        return v

    @field_validator("cost")
    @classmethod
    def _known_cost(cls, v: list[str]) -> list[str]:
        from fedopt.experiment.report import COST_AXES

        for c in v:
            if c not in COST_AXES:
                raise ValueError(f"must be among {', '.join(COST_AXES)} (got {c!r})")
        return v

    @field_validator("by", "x", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

class PlotConfig(_Section):
    """One plot the experiment draws: ``y`` against ``x`` (columns of the results table)."""

    x: str
    y: str

    @field_validator("x")
    @classmethod
    def _x_column(cls, v: str) -> str:
        from fedopt.experiment.plots import X_COLUMNS

        if v not in X_COLUMNS:
            raise ValueError(f"must be one of {', '.join(X_COLUMNS)}")
        return v

    @field_validator("y")
    @classmethod
    def _y_column(cls, v: str) -> str:
        from fedopt.experiment.plots import Y_COLUMNS

        if v not in Y_COLUMNS:
            raise ValueError(f"must be one of {', '.join(Y_COLUMNS)}")
        return v


class AlgorithmConfig(_Section):
    name: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def display(self) -> str:
        return self.label or self.name


class ProblemConfig(BaseModel):
    """``name`` and ``n`` plus the keyword parameters of the problem's factory
    (``n`` may be left out when the factory has a default for it, which then fills it in)."""

    model_config = ConfigDict(extra="allow")

    name: str
    n: int | None = Field(None, ge=1)

    def factory_params(self) -> dict[str, Any]:
        """Every key but ``name`` (``n`` included), as passed to the factory."""
        return {k: v for k, v in self.model_dump().items() if k != "name"}


class ExperimentConfig(_Section):
    name: str
    problem: ProblemConfig
    topology: list[str | dict[str, Any]] = Field(min_length=1)
    algorithms: list[AlgorithmConfig] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    stop: StopConfig
    record: RecordConfig = Field(default_factory=RecordConfig)
    engine: str = "local"
    engine_options: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    parallel: int | None = Field(None, ge=1, description="runs at once (as Ray tasks when more than 1)")
    plots: list[PlotConfig] | None = Field(None, description="the plots drawn after the runs (default: the "
                                           "runner's DEFAULT_PLOTS)")
    base_dir: str | None = Field(None, description="folder that relative paths resolve against (default: the "
                                 "config file's; none: the working directory)")
    report: ReportConfig | None = Field(None, description="cost-to-target report written after the runs")

    @model_validator(mode="before")
    @classmethod
    def _engine_mapping(cls, data: Any) -> Any:
        """``engine: {name: ray, num_actors: 4}`` → ``engine: ray`` + ``engine_options: {num_actors: 4}``."""
        if isinstance(data, dict) and isinstance(data.get("engine"), dict):
            data = dict(data)
            eng = dict(data["engine"])
            if not isinstance(eng.get("name"), str):
                return data  # reported by _validate_plain
            data["engine"] = eng.pop("name")
            data["engine_options"] = {**(data.get("engine_options") or {}), **eng}
        return data

    @field_validator("topology", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return v if isinstance(v, list) else [v]

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_list(cls, v: Any) -> Any:
        return v if isinstance(v, list) else [v]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what ``config.yaml`` holds; :func:`parse_config` reads it back)."""
        return self.model_dump(mode="json")


# ---- loading ------------------------------------------------------------------------


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a YAML config (``name`` defaults to the file's stem)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config: no such file: {p}")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        what = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"config: {p.name}: invalid YAML{where}: {what}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config: {p.name}: the top level must be a mapping of keys to values")
    raw.setdefault("name", p.stem)
    folder = p.resolve().parent
    base = raw.get("base_dir")
    if base is None:
        raw["base_dir"] = str(folder)
    elif isinstance(base, str):
        raw["base_dir"] = str(folder / Path(base).expanduser())
    return parse_config(raw)


def parse_config(raw: dict[str, Any]) -> ExperimentConfig:
    """Validate plain data (a parsed YAML mapping) into an :class:`ExperimentConfig`."""
    cfg = _validate_plain(raw)
    for path, values in cfg.sweep.items():
        if not values:
            raise ConfigError(f"config: sweep.{path}: give a non-empty list of values")
        base = cfg.to_dict()
        base["sweep"] = {}
        for value in values:
            raw = apply_override(base, path, value)
            try:
                _validate_plain(raw)
            except ConfigError as exc:
                raise ConfigError(f"config: sweep.{path} = {value!r}: {_strip(exc)}") from None
    _check_problem_values(cfg)
    return cfg


def _validate_plain(raw: dict[str, Any]) -> ExperimentConfig:
    if not isinstance(raw, dict):
        raise ConfigError("config: the top level must be a mapping of keys to values")
    allowed = list(ExperimentConfig.model_fields)
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"config: {key}: unknown key; allowed keys: {', '.join(allowed)}")
    eng = raw.get("engine")
    if isinstance(eng, dict) and not isinstance(eng.get("name"), str):
        raise ConfigError("config: engine.name: give the engine's name, e.g. engine: {name: ray, num_actors: 4}")
    if "stop" not in raw or raw["stop"] is None:
        raise ConfigError("config: stop: give at least one of time, rounds, messages, target")
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format(exc)) from None
    _check_stop(cfg.stop)
    _check_engine(cfg.engine)
    _check_engine_options(cfg.engine, cfg.engine_options)
    _check_seeds(cfg.seeds)
    _check_base_dir(cfg.base_dir)
    _check_problem(cfg.problem, cfg.base_dir)
    _check_algorithms(cfg.algorithms)
    _check_topologies(cfg)
    _check_report(cfg)
    return cfg


def _strip(exc: Exception) -> str:
    msg = str(exc)
    return msg[len("config: "):] if msg.startswith("config: ") else msg


# ---- checks -------------------------------------------------------------------------


def _check_stop(stop: StopConfig) -> None:
    if stop.time is None and stop.rounds is None and stop.messages is None and stop.target is None:
        raise ConfigError("config: stop: give at least one of time, rounds, messages, target")


def _check_engine(name: str) -> None:
    """``name`` is an engine of this install, and its module (with what it needs) imports here."""
    from fedopt.engines.base import available_engines, engine_factory

    names = available_engines()
    if name not in names:
        raise ConfigError(f"config: engine: {name!r} is not one of {', '.join(names)}")
    try:
        engine_factory(name)
    except ValueError as exc:
        raise ConfigError(f"config: engine: {exc}") from None


#: Engine options a config may not set (programmatic hooks).
_PRIVATE_ENGINE_OPTIONS = ("fault_hook",)


def _check_engine_options(name: str, options: dict[str, Any]) -> None:
    """Option names against the engine's constructor (the engine is importable: see :func:`_check_engine`)."""
    if not options:
        return
    from fedopt.engines.base import engine_factory

    try:
        factory = engine_factory(name)
    except ValueError as exc:
        raise ConfigError(f"config: engine: {exc}") from None
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    names = [k for k, p in params.items() if k != "self" and k not in _PRIVATE_ENGINE_OPTIONS
             and p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in options:
        if key not in names:
            raise ConfigError(f"config: engine.{key}: unknown option of engine {name!r}; "
                              f"allowed: {', '.join(names) or '(none)'}")


def _check_seeds(seeds: list[int]) -> None:
    for i, s in enumerate(seeds):
        if s < 0:
            raise ConfigError(f"config: seeds.{i}: seeds must be non-negative integers, got {s}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"config: seeds: duplicate seeds in {seeds}")


def _check_report(cfg: ExperimentConfig) -> None:
    """The report's baseline is one of the algorithms' labels."""
    if cfg.report is None or cfg.report.baseline is None:
        return
    labels = [a.display for a in cfg.algorithms]
    if cfg.report.baseline not in labels:
        raise ConfigError(f"config: report.baseline: {cfg.report.baseline!r} is not an algorithm label; "
                          f"choose one of: {', '.join(labels)}")


def _check_base_dir(base_dir: str | None) -> None:
    if base_dir is not None and not Path(base_dir).expanduser().is_dir():
        raise ConfigError(f"config: base_dir: no such folder: {base_dir}")


def _check_problem(problem: ProblemConfig, base_dir: str | None = None) -> None:
    """Name, parameter names and types against the factory's signature (``n`` filled from
    its default when left out), and that every file the parameters name exists."""
    from fedopt.problems.base import problem_factory

    try:
        factory = problem_factory(problem.name)
    except ValueError as exc:
        raise ConfigError(f"config: problem.name: {exc}") from None
    given = problem.factory_params()
    if "rng" in given:
        raise ConfigError("config: problem.rng: the problem's random stream comes from the run's seed "
                          "(or give problem.seed); remove it")
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        return
    params = sig.parameters
    if problem.n is None:
        default = params["n"].default if "n" in params else inspect.Parameter.empty
        if not isinstance(default, int) or isinstance(default, bool):
            raise ConfigError(f"config: problem.n: required key is missing (the number of nodes of problem "
                              f"{problem.name!r})")
        problem.n = default
        given["n"] = default
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    names = [k for k, p in params.items() if k != "rng" and p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in given:
        if key not in names:
            raise ConfigError(
                f"config: problem.{key}: unknown parameter of problem {problem.name!r}; allowed: {', '.join(names)}"
            )
    for key in names:
        p = params[key]
        if p.default is inspect.Parameter.empty and key not in given:
            raise ConfigError(f"config: problem.{key}: required by problem {problem.name!r}")
    _check_param_types(problem.name, factory, given)
    if isinstance(given.get("seed"), int) and given["seed"] < 0:
        raise ConfigError(f"config: problem.seed: must be a non-negative integer, got {given['seed']}")
    for key, value in problem_paths(given):
        path = Path(resolve_path(value, base_dir))
        if not path.is_file():
            raise ConfigError(f"config: problem.{key}: no such file: {path}{_relative_note(value, base_dir)}")


def _check_param_types(name: str, factory: Any, given: dict[str, Any]) -> None:
    """Each given value against the type annotation of the factory's parameter (strictly:
    ``d: 3.0`` or ``reg: "1e-3"`` are errors); annotations pydantic cannot check are skipped
    (their values are checked when the problem is built)."""
    try:
        hints = typing.get_type_hints(factory)
    except (NameError, TypeError):  # annotations that do not evaluate here: the build checks the values
        return
    for key, value in given.items():
        adapter = _strict_adapter(hints.get(key))
        if adapter is None:
            continue
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            raise ConfigError(_format(exc, prefix=f"problem.{key}") + f" (a parameter of problem {name!r})") from None


@functools.lru_cache(maxsize=None)
def _strict_adapter(annotation: Any) -> TypeAdapter[Any] | None:
    if annotation is None:
        return None
    try:
        return TypeAdapter(annotation, config=ConfigDict(strict=True))
    except (PydanticSchemaGenerationError, TypeError):  # e.g. numpy arrays or generators
        return None


def _check_problem_values(cfg: ExperimentConfig) -> None:
    """Build each distinct problem of the sweep once (with the first seed, as its first run
    will): a value its factory rejects is a :class:`ConfigError` naming the key path."""
    paths = [p for p in cfg.sweep if split_path(p)[0] == "problem"]
    base = cfg.to_dict()
    base["sweep"] = {}
    seen: set[str] = set()
    for combo in itertools.product(*(cfg.sweep[p] for p in paths)):
        raw = base
        for p, v in zip(paths, combo):
            raw = apply_override(raw, p, v)
        problem = _validate_plain(raw).problem if paths else cfg.problem
        spec = {"name": problem.name, **problem.factory_params()}
        key = json.dumps(spec, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        try:
            build_problem(spec, cfg.seeds[0], cfg.base_dir)
        except Exception as exc:  # noqa: BLE001 - any failure to build is reported on one line
            where = ", ".join(f"{p}={v!r}" for p, v in zip(paths, combo))
            msg = _problem_error(exc)
            raise ConfigError(f"config: sweep point {where}: {msg}" if where else f"config: {msg}") from (
                None if isinstance(exc, ValueError) else exc
            )


def _problem_error(exc: Exception) -> str:
    """``problem.<key>: <message>`` for an error a problem factory raised (first line only)."""
    from fedopt.problems.base import ProblemParamError

    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(exc, ProblemParamError):
        return f"problem{'.' + exc.key if exc.key else ''}: {text}"
    if isinstance(exc, ValueError):
        return f"problem: {text}"
    return f"problem: {type(exc).__name__}: {text}"


def build_problem(problem: Mapping[str, Any], seed: int, base_dir: str | None = None) -> Problem:
    """The problem of one run from a config's ``problem`` mapping (``name`` plus the factory's parameters).

    Relative file paths among the parameters resolve against ``base_dir``. Randomness:
    a ``seed`` among the parameters fixes the problem (the same data for every run
    seed); otherwise a factory that takes ``rng`` gets the ``"problem"`` stream of the
    run's ``seed``; a factory that takes no ``rng`` (e.g. ``fedavg_anchor``) is fixed by
    its own parameters and defaults.
    """
    from fedopt.core.rng import RngStreams
    from fedopt.problems.base import problem_factory

    factory = problem_factory(str(problem["name"]))
    params = {k: v for k, v in resolve_problem_paths(problem, base_dir).items() if k != "name"}
    if "seed" not in params and "rng" in inspect.signature(factory).parameters:
        params["rng"] = RngStreams(seed)["problem"]
    return factory(**params)


# ---- file paths -------------------------------------------------------------------------


def is_path_text(text: str) -> bool:
    """A topology name written as a file path (a folder separator or a ``.yaml``/``.yml`` suffix)."""
    return "/" in text or os.sep in text or text.endswith((".yaml", ".yml"))


def resolve_path(text: str, base_dir: str | None) -> str:
    """``text`` (``~`` expanded) if absolute, else joined to ``base_dir`` (unchanged when there is none)."""
    p = Path(text).expanduser()
    return str(p if p.is_absolute() or base_dir is None else Path(base_dir) / p)


def _relative_note(text: str, base_dir: str | None) -> str:
    if Path(text).expanduser().is_absolute():
        return ""
    where = f"the config's folder, {base_dir}" if base_dir is not None else "the working directory"
    return f" (relative paths resolve against {where})"


def problem_paths(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(key path, text)`` of every file path among a problem's parameters (the path
    parameters of its data source, e.g. ``data.path`` of a LIBSVM file)."""
    from fedopt.problems.data import source_path_keys

    data = params.get("data")
    if not isinstance(data, Mapping) or not isinstance(data.get("source"), str):
        return []
    return [(f"data.{k}", data[k]) for k in source_path_keys(data["source"]) if isinstance(data.get(k), str)]


def resolve_problem_paths(problem: Mapping[str, Any], base_dir: str | None) -> dict[str, Any]:
    """A copy of a problem mapping with its relative file paths joined to ``base_dir``."""
    out = copy.deepcopy(dict(problem))
    for key, text in problem_paths(problem):
        out["data"] = {**out["data"], key.split(".", 1)[1]: resolve_path(text, base_dir)}
    return out


def topology_paths(entry: Any) -> list[tuple[str, str]]:
    """``(key, text)`` of every file path in a topology entry: the entry itself or its
    ``name`` when written as a path (see :func:`is_path_text`; a bare name is a
    generator or a spec shipped in ``topologies/``), and a ``rates`` file."""
    if isinstance(entry, str):
        return [("", entry)] if is_path_text(entry) else []
    if not isinstance(entry, Mapping):
        return []
    out = []
    if isinstance(entry.get("name"), str) and is_path_text(entry["name"]):
        out.append(("name", entry["name"]))
    if isinstance(entry.get("rates"), str):
        out.append(("rates", entry["rates"]))
    return out


def resolve_topology_paths(entry: Any, base_dir: str | None) -> Any:
    """A copy of a topology entry (or reference) with its relative file paths joined to ``base_dir``."""
    if isinstance(entry, str):
        return resolve_path(entry, base_dir) if topology_paths(entry) else entry
    if not isinstance(entry, Mapping):
        return entry
    out = dict(entry)
    for key, text in topology_paths(entry):
        out[key] = resolve_path(text, base_dir)
    return out


def _check_algorithms(algos: list[AlgorithmConfig]) -> None:
    from fedopt.algorithms.base import algorithm_class

    seen: dict[str, int] = {}
    for i, a in enumerate(algos):
        try:
            cls = algorithm_class(a.name)
        except ValueError as exc:
            raise ConfigError(f"config: algorithms.{i}.name: {exc}") from None
        try:
            cls.Params(**a.params)
        except ValidationError as exc:
            allowed = ", ".join(cls.Params.model_fields) or "(none)"
            raise ConfigError(
                _format(exc, prefix=f"algorithms.{i}.params", allowed=allowed, owner=f"algorithm {a.name!r}")
            ) from None
        label = a.display
        if label in seen:
            raise ConfigError(
                f"config: algorithms.{i}.label: {label!r} is already used by algorithms.{seen[label]}; "
                "give each entry a distinct label"
            )
        seen[label] = i


def _check_topologies(cfg: ExperimentConfig) -> None:
    for i, t in enumerate(cfg.topology):
        if isinstance(t, dict):
            if "name" not in t or not isinstance(t["name"], str):
                raise ConfigError(f"config: topology.{i}.name: give the topology's name (a string)")
            if "n" in t and t["n"] != cfg.problem.n:
                raise ConfigError(f"config: topology.{i}.n: {t['n']} differs from problem.n = {cfg.problem.n}")
            if "label" in t and not isinstance(t["label"], str):
                raise ConfigError(f"config: topology.{i}.label: must be a string")
        for key, text in topology_paths(t):
            path = Path(resolve_path(text, cfg.base_dir))
            if not path.is_file():
                where = f"topology.{i}" + (f".{key}" if key else "")
                raise ConfigError(f"config: {where}: no such file: {path}{_relative_note(text, cfg.base_dir)}")


# ---- error formatting -------------------------------------------------------------


def _format(exc: ValidationError, prefix: str = "", allowed: str | None = None, owner: str | None = None) -> str:
    """One line from a pydantic error: ``config: <key path>: <message>`` (all errors, ``;``-joined)."""
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err["loc"] if not str(x).startswith(("function-", "list[", "dict["))]
        path = ".".join(([prefix] if prefix else []) + loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            keys = allowed if allowed is not None else _allowed_keys(err["loc"][:-1])
            what = f"unknown parameter of {owner}" if owner else "unknown key"
            parts.append(f"{path}: {what}; allowed: {keys}")
        elif err["type"] == "missing":
            parts.append(f"{path}: required key is missing")
        else:
            got = err.get("input")
            suffix = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
            msg = err["msg"].removeprefix("Value error, ")  # a validator's own message stands alone
            parts.append(f"{path}: {msg}{suffix}")
    return "config: " + "; ".join(_dedupe(parts))


def _dedupe(items: list[str]) -> list[str]:
    out: list[str] = []
    for x in items:
        if x not in out:
            out.append(x)
    return out


def _allowed_keys(loc: tuple[Any, ...]) -> str:
    model: type[BaseModel] = ExperimentConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            break
        sub = {"stop": StopConfig, "record": RecordConfig, "resources": ResourcesConfig,
               "algorithms": AlgorithmConfig, "problem": ProblemConfig, "report": ReportConfig, "plots": PlotConfig}.get(str(part))
        if sub is None:
            break
        model = sub
    return ", ".join(model.model_fields)


# ---- sweep paths --------------------------------------------------------------------


def split_path(path: str) -> list[str | int]:
    """``"algorithms.0.params.lr"`` → ``["algorithms", 0, "params", "lr"]``."""
    if not isinstance(path, str) or not path or any(not p for p in path.split(".")):
        raise ConfigError(f"config: sweep.{path}: a sweep key is a dotted path such as algorithms.0.params.lr")
    return [int(p) if p.isdigit() else p for p in path.split(".")]


def apply_override(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of plain config data with the value at the dotted ``path`` replaced.

    ``topology.<key>`` addresses the only topology of a single-topology config;
    a topology given by name becomes ``{name: ...}`` when one of its parameters
    is set; ``algorithms.<label>`` may stand for the algorithm's index.
    """
    parts = split_path(path)
    head = parts[0]
    if head not in SWEEPABLE:
        raise ConfigError(f"config: sweep.{path}: only {', '.join(SWEEPABLE)} can be swept")
    out = copy.deepcopy(raw)
    if head == "topology":
        if not isinstance(out.get("topology"), list):
            out["topology"] = [out.get("topology")]
        if len(parts) > 1 and not isinstance(parts[1], int):
            if len(out["topology"]) != 1:
                raise ConfigError(f"config: sweep.{path}: several topologies; say which one (topology.<index>.…)")
            parts.insert(1, 0)
        if len(parts) > 2 and isinstance(parts[1], int) and parts[1] < len(out["topology"]):
            t = out["topology"][parts[1]]
            if isinstance(t, str):
                out["topology"][parts[1]] = {"name": t}
    if head == "algorithms" and len(parts) > 1 and not isinstance(parts[1], int):
        labels = [(a.get("label") or a.get("name")) if isinstance(a, dict) else None for a in out.get("algorithms", [])]
        if parts[1] not in labels:
            raise ConfigError(
                f"config: sweep.{path}: no algorithm labelled {parts[1]!r}; use an index or one of: "
                f"{', '.join(str(x) for x in labels)}"
            )
        parts[1] = labels.index(parts[1])
    node: Any = out
    for i, part in enumerate(parts[:-1]):
        where = ".".join(str(p) for p in parts[: i + 1])
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise ConfigError(f"config: sweep.{path}: {where} does not exist")
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"config: sweep.{path}: {where} does not exist")
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(f"config: sweep.{path}: index {last} does not exist")
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"config: sweep.{path}: {'.'.join(str(p) for p in parts[:-1])} is not a mapping")
    return out


__all__ = [
    "AlgorithmConfig",
    "ConfigError",
    "ExperimentConfig",
    "METRIC_COLUMNS",
    "PlotConfig",
    "ProblemConfig",
    "RecordConfig",
    "ReportConfig",
    "ResourcesConfig",
    "StopConfig",
    "apply_override",
    "build_problem",
    "load_config",
    "parse_config",
    "resolve_problem_paths",
    "resolve_topology_paths",
]
