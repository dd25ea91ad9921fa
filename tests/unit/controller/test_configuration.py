"""The operator's configuration: defaults, a file, environment overrides, and clear errors."""

from pathlib import Path

import pytest

from leitstand.controller import configuration
from leitstand.errors import UserError


def test_the_defaults_follow_topograph_labels() -> None:
    config = configuration.load(None, environ={})
    assert config.settings().levels == ("spine", "leaf", "node")
    assert config.gpu_types["NVIDIA-B200"] == "b200"
    assert config.leader_election.enabled


def test_a_file_and_the_environment_combine(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "topology:\n  - {name: pod, label: example.com/superpod}\n  - {name: node, label: kubernetes.io/hostname}\nbindConcurrency: 4\n"
    )
    config = configuration.load(
        path, environ={"LEITSTAND_BIND_CONCURRENCY": "32", "LEITSTAND_LEADER_ELECTION": "false"}
    )
    assert config.settings().levels == ("pod", "node")
    assert config.bind_concurrency == 32
    assert not config.leader_election.enabled


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bindConcurency: 4\n", "bindConcurency: Extra inputs are not permitted"),
        ("cycleIntervalSeconds: -1\n", "cycleIntervalSeconds: Input should be greater than 0"),
        ("gpuTypes: {NVIDIA-B200: B 200}\n", "gpuTypes: NVIDIA-B200 maps to 'B 200', not a short lower-case name"),
        (
            "leaderElection: {leaseDurationSeconds: 3, renewIntervalSeconds: 2}\n",
            "renewIntervalSeconds must be at most half",
        ),
        ("- a list\n", "must be a mapping of settings"),
        ("topology: [{name: leaf, label: a}, {name: leaf, label: b}]\n", "unique level names"),
    ],
)
def test_a_bad_configuration_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=f"^configuration {path}.*{message}"):
        configuration.load(path, environ={})


def test_the_charts_values_are_the_operators_defaults() -> None:
    """One source: the chart's values say what the operator does with no configuration file."""
    import yaml

    from leitstand import locations

    root = locations.source_root()
    assert root is not None
    values = yaml.safe_load((root / "helm" / "leitstand" / "values.yaml").read_text())
    defaults = configuration.Configuration().model_dump(by_alias=True, mode="json")
    assert {key: defaults[key] for key in values["config"]} == values["config"]
    assert {key: defaults["leaderElection"][key] for key in values["leaderElection"]} == values["leaderElection"]
