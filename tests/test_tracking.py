from __future__ import annotations

import time

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from custseg.config import Config
from custseg.tracking import RUN_TAG, STAGE_TAG, pipeline_parent, pipeline_run


def runs_of(cfg: Config, run_id: str) -> dict[str, mlflow.entities.Run]:
    """Runs tagged with the custseg run id, keyed by stage name."""
    mlflow.set_tracking_uri(cfg.tracking.uri)
    experiment = mlflow.get_experiment_by_name(cfg.tracking.experiment)
    assert experiment is not None
    runs = MlflowClient().search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run_id}'"
    )
    return {r.data.tags[STAGE_TAG]: r for r in runs}


def test_parent_and_nested_runs_with_params_and_metrics(cfg: Config) -> None:
    started = time.perf_counter()
    with pipeline_parent(cfg, "r1"):
        with pipeline_run(cfg, stage="generate", run_id="r1") as run:
            run.log_metrics({"rows.transactions": 123})
            run.log_params({"generate.n_people": 10})
        with pipeline_run(cfg, stage="ingest", run_id="r1") as run:
            run.log_metrics({"rows.quarantined": 4})
    wall = time.perf_counter() - started
    runs = runs_of(cfg, "r1")
    assert set(runs) == {"pipeline", "generate", "ingest"}
    parent = runs["pipeline"]
    for stage in ("generate", "ingest"):
        assert runs[stage].data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert runs[stage].info.status == "FINISHED"
        # each stage's own time, within the time the whole block took
        assert 0 < runs[stage].data.metrics["stage_seconds"] < wall
    assert runs["generate"].data.metrics["rows.transactions"] == 123
    assert runs["generate"].data.params["generate.n_people"] == "10"
    assert runs["ingest"].data.metrics["rows.quarantined"] == 4
    assert parent.data.params["config.spark.shuffle_partitions"] == "2"
    assert parent.data.params["version.pyspark"] == "4.0.1"
    assert parent.info.status == "FINISHED"
    # The resolved config is an artifact of the parent.
    config = yaml.safe_load(mlflow.artifacts.load_text(f"{parent.info.artifact_uri}/config.yaml"))
    assert config["spark"]["shuffle_partitions"] == 2


def test_failed_stage_is_recorded_failed_and_reraised(cfg: Config) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with pipeline_run(cfg, stage="features", run_id="r2"):
            raise RuntimeError("boom")
    runs = runs_of(cfg, "r2")
    assert runs["features"].info.status == "FAILED"
    assert runs["pipeline"].info.status == "FAILED"
    assert mlflow.active_run() is None


def test_rerun_with_same_run_id_resumes_the_parent(cfg: Config) -> None:
    with pipeline_run(cfg, stage="generate", run_id="r3"):
        pass
    with pipeline_run(cfg, stage="generate", run_id="r3"):
        pass
    mlflow.set_tracking_uri(cfg.tracking.uri)
    experiment = mlflow.get_experiment_by_name(cfg.tracking.experiment)
    assert experiment is not None
    runs = MlflowClient().search_runs([experiment.experiment_id], filter_string=f"tags.`{RUN_TAG}` = 'r3'")
    parents = [r for r in runs if r.data.tags[STAGE_TAG] == "pipeline"]
    children = [r for r in runs if r.data.tags[STAGE_TAG] == "generate"]
    assert len(parents) == 1
    assert len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}


def test_tracking_disabled_logs_nothing(cfg: Config) -> None:
    off = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"enabled": False})})
    with pipeline_run(off, stage="generate", run_id="r4") as run:
        run.log_metrics({"x": 1.0})
    assert run.mlflow_run_id is None
    assert run.metrics == {"x": 1.0}
