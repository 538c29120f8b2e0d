"""cluster.yaml is a valid Ray cluster-launcher config (checked against Ray's own schema)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

import ray  # noqa: F401  (a dependency: a missing ray is a failure, not a skip)
import jsonschema  # noqa: F401

from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: E402

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_validates_against_ray_schema(config: dict) -> None:
    validate_config(copy.deepcopy(config))
    # what `ray up` does before launching: merge the provider defaults, check again
    validate_config(prepare_config(copy.deepcopy(config)))


def test_schema_rejects_a_broken_config(config: dict) -> None:
    import jsonschema

    bad = copy.deepcopy(config)
    bad["available_node_types"]["gpu_worker"]["min_workerz"] = 0
    with pytest.raises(jsonschema.ValidationError):
        validate_config(bad)


def test_gpu_workers_head_and_fedopt_install(config: dict) -> None:
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpu = [t for t in types.values() if t.get("resources", {}).get("GPU", 0) > 0]
    assert gpu and gpu[0]["node_config"]["InstanceType"].startswith("g5.")
    setup = " ".join(config["setup_commands"])
    assert "pip install" in setup and "fedopt" in setup
    assert "~/fedopt" in config["file_mounts"]
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start  # reach it through `ray dashboard`
