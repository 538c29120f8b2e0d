"""Experiments: YAML config → validated grid of runs → results table → plots.

* :mod:`fedopt.experiment.config` — the config schema and its validation;
* :mod:`fedopt.experiment.sweep` — expansion into one :class:`RunConfig` per run;
* :mod:`fedopt.experiment.store` — the Parquet results table (atomic, resumable);
* :mod:`fedopt.experiment.runner` — :func:`run_experiment`, the whole pipeline;
* :mod:`fedopt.experiment.plots` — median-over-seeds curves;
* :mod:`fedopt.experiment.cli` — the ``fedopt run`` and ``fedopt plot`` subcommands.
"""

from fedopt.experiment.config import ExperimentConfig, load_config
from fedopt.experiment.sweep import RunConfig, expand

__all__ = ["ExperimentConfig", "RunConfig", "expand", "load_config"]
