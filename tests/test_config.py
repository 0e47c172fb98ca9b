from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from custseg.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_local_yaml_is_the_embedded_default() -> None:
    assert load_config(ROOT / "conf" / "local.yaml") == load_config(None) == Config()


def test_test_yaml_extends_local_and_overrides() -> None:
    cfg = load_config(ROOT / "conf" / "test.yaml")
    assert cfg.spark.master == "local[2]"
    assert cfg.spark.shuffle_partitions == 2
    assert cfg.spark.ui_enabled is False
    assert cfg.generate.preset == "tiny"
    assert cfg.generate.resolved_n_people == 2_000
    # Keys test.yaml does not set come from local.yaml.
    assert cfg.tracking.experiment == "custseg"
    assert cfg.generate.end_date == date(2026, 10, 31)


def test_cluster_yaml_takes_the_tracking_uri_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    cfg = load_config(ROOT / "conf" / "cluster.yaml")
    assert cfg.tracking.uri == "http://127.0.0.1:5000"
    assert cfg.spark.master is None
    assert cfg.spark.resolve_delta_package is False


def test_missing_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(
        ConfigError,
        match=r"cluster.yaml: key 'tracking.uri': environment variable "
        r"\$\{MLFLOW_TRACKING_URI\} is not set",
    ):
        load_config(ROOT / "conf" / "cluster.yaml")


def test_overrides_are_typed_and_applied_last() -> None:
    cfg = load_config(
        ROOT / "conf" / "test.yaml",
        overrides=["spark.shuffle_partitions=5", "generate.bad_input.enabled=true", "spark.master="],
    )
    assert cfg.spark.shuffle_partitions == 5
    assert cfg.generate.bad_input.enabled is True
    assert cfg.spark.master is None


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "spark:\n  mastr: local[1]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'spark.mastr'"):
        load_config(path)


def test_wrong_type_names_file_key_and_expectation(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "spark:\n  shuffle_partitions: many\n")
    with pytest.raises(
        ConfigError,
        match=r"bad.yaml: key 'spark.shuffle_partitions': Input should be a valid integer.*'many'",
    ):
        load_config(path)


def test_error_in_a_base_file_names_the_base(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", "generate:\n  noise:\n    typo: 1.5\n")
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nrun:\n  seed: 7\n")
    with pytest.raises(ConfigError, match=r"base.yaml: key 'generate.noise.typo': .*less than or equal to 1"):
        load_config(child)


def test_bad_override_names_the_override() -> None:
    with pytest.raises(ConfigError, match=r"--set run.seed: key 'run.seed'"):
        load_config(None, overrides=["run.seed=abc"])
    with pytest.raises(ConfigError, match=r"expected KEY=VALUE"):
        load_config(None, overrides=["run.seed"])


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    path = write(tmp_path, "broken.yaml", "spark: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML"):
        load_config(path)
    path = write(tmp_path, "list.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match=r"list.yaml: expected a mapping"):
        load_config(path)


def test_extends_cycle_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "extends: b.yaml\n")
    b = write(tmp_path, "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match=r"'extends' forms a cycle"):
        load_config(b)


def test_invariant_custom_preset_needs_a_size() -> None:
    with pytest.raises(ConfigError, match=r"generate.n_people is required when generate.preset is 'custom'"):
        load_config(None, overrides=["generate.preset=custom"])
    cfg = load_config(None, overrides=["generate.preset=custom", "generate.n_people=123"])
    assert cfg.generate.resolved_n_people == 123


def test_config_is_frozen_and_flattens() -> None:
    cfg = load_config(None)
    with pytest.raises(ValidationError, match="frozen"):
        cfg.run.seed = 1  # type: ignore[misc]
    flat = cfg.flat()
    assert flat["spark.shuffle_partitions"] == 8
    assert flat["generate.noise.typo"] == 0.06
    assert flat["spark.conf"] == {}
