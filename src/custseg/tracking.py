"""The only code that talks to MLflow.

A custseg run id names one pipeline run. It maps to one parent MLflow run (tag
``custseg.run_id``); every stage is a nested run under it. Running a stage again with the
same run id resumes that parent, so a rerun sits beside the earlier attempt in the UI.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from custseg.config import Config, flatten
from custseg.tables import check_run_id

log = logging.getLogger(__name__)

RUN_TAG = "custseg.run_id"
STAGE_TAG = "custseg.stage"
_PACKAGES = ("custseg", "pyspark", "delta-spark", "mlflow", "pydantic", "pandas", "numpy")
_MAX_PARAM_LEN = 6000


def new_run_id() -> str:
    """A fresh run id: UTC time plus a random suffix (not data, so randomness is fine)."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a run depends on, plus Python."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass
class StageRun:
    """Handle for the current stage: its run id and where to log."""

    id: str
    stage: str
    mlflow_run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log numeric metrics to the stage run (kept locally too)."""
        clean = {k: float(v) for k, v in metrics.items()}
        self.metrics.update(clean)
        if self.mlflow_run_id:
            mlflow.log_metrics(clean, step=step)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters to the stage run."""
        if self.mlflow_run_id:
            mlflow.log_params({k: _param(v) for k, v in params.items()})

    def log_dict(self, data: Any, artifact_file: str) -> None:
        """Log a JSON or YAML artifact."""
        if self.mlflow_run_id:
            mlflow.log_dict(data, artifact_file)

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Log a local file as an artifact."""
        if self.mlflow_run_id:
            mlflow.log_artifact(str(path), artifact_path)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Tag the stage run."""
        if self.mlflow_run_id:
            mlflow.set_tags({k: str(v) for k, v in tags.items()})


def _param(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_PARAM_LEN else text[: _MAX_PARAM_LEN - 3] + "..."


def _experiment_id(cfg: Config) -> str:
    tracking = cfg.tracking
    if tracking.uri.startswith("sqlite:///"):
        Path(tracking.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking.uri)
    experiment = mlflow.get_experiment_by_name(tracking.experiment)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = tracking.artifact_location
    if location and "://" not in location:
        location = Path(location).resolve().as_uri()
    return str(mlflow.create_experiment(tracking.experiment, artifact_location=location))


def find_parent_run(cfg: Config, run_id: str) -> Run | None:
    """The parent MLflow run of a custseg run id, or None."""
    check_run_id(run_id)
    experiment_id = _experiment_id(cfg)
    runs = MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.`{RUN_TAG}` = '{run_id}' and tags.`{STAGE_TAG}` = 'pipeline'",
        max_results=1,
    )
    return runs[0] if runs else None


def _log_run_params(cfg: Config, existing: Mapping[str, str]) -> None:
    # as written and redacted: never an expanded ${NAME} nor a secret (docs/security.md)
    params = {f"config.{k}": _param(v) for k, v in flatten(cfg.loggable()).items()}
    params.update({f"version.{k}": v for k, v in package_versions().items()})
    fresh = {k: v for k, v in params.items() if k not in existing}
    changed = sorted(k for k, v in params.items() if k in existing and existing[k] != v)
    if changed:
        log.warning("config differs from the earlier attempt of this run in %s", changed)
    if fresh:
        mlflow.log_params(fresh)


@contextmanager
def pipeline_run(cfg: Config, stage: str, run_id: str | None = None) -> Iterator[StageRun]:
    """Open the stage's nested MLflow run under the pipeline's parent run.

    The parent is the active run when it carries the same run id (``jobs/pipeline.py``),
    else the earlier parent of this run id, else a new one. A stage that raises is
    recorded FAILED (and its parent with it when this call opened the parent), and the
    exception propagates.
    """
    run_id = run_id or new_run_id()
    if not cfg.tracking.enabled:
        yield StageRun(id=run_id, stage=stage)
        return
    with ExitStack() as stack:
        active = mlflow.active_run()
        if active is None or active.data.tags.get(RUN_TAG) != run_id:
            stack.enter_context(pipeline_parent(cfg, run_id))
        started = time.perf_counter()
        parent = mlflow.active_run()
        assert parent is not None
        _mark_killed(parent.info.experiment_id, run_id, stage)
        with mlflow.start_run(
            experiment_id=parent.info.experiment_id,
            run_name=stage,
            nested=True,
            tags={RUN_TAG: run_id, STAGE_TAG: stage},
        ) as child:
            handle = StageRun(id=run_id, stage=stage, mlflow_run_id=child.info.run_id)
            log.info("stage %s started (run %s)", stage, run_id)
            yield handle
            elapsed = time.perf_counter() - started
            mlflow.log_metric("stage_seconds", elapsed)
            log.info("stage %s finished in %.1f s", stage, elapsed)


def _mark_killed(experiment_id: str, run_id: str, stage: str) -> None:
    """Earlier attempts of this stage of this run still RUNNING were killed (this process
    holds the warehouse, so no other runs them): mark them KILLED."""
    client = MlflowClient()
    for attempt in _stage_attempts(client, experiment_id, run_id, stage, "RUNNING"):
        client.set_terminated(attempt.info.run_id, status="KILLED")
        log.warning(
            "stage %s of run %s: an earlier attempt (MLflow %s) was killed",
            stage,
            run_id,
            attempt.info.run_id,
        )


@contextmanager
def pipeline_parent(cfg: Config, run_id: str) -> Iterator[str]:
    """Open (or resume) the parent MLflow run of ``run_id``; yields its MLflow id."""
    experiment_id = _experiment_id(cfg)
    parent = find_parent_run(cfg, run_id)
    if parent is not None:
        ctx = mlflow.start_run(run_id=parent.info.run_id)
        existing = dict(parent.data.params)
    else:
        ctx = mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"pipeline {run_id}",
            tags={RUN_TAG: run_id, STAGE_TAG: "pipeline"},
        )
        existing = {}
    with ctx as run:
        _log_run_params(cfg, existing)
        mlflow.log_dict(cfg.loggable(), "config.yaml")
        yield run.info.run_id


@contextmanager
def candidate_run(parent: StageRun, name: str, params: Mapping[str, Any]) -> Iterator[StageRun]:
    """A nested MLflow run under the stage's run, one per model candidate (algorithm, k),
    so a data scientist compares them side by side; a no-op handle when tracking is off."""
    if not parent.mlflow_run_id:
        yield StageRun(id=parent.id, stage=parent.stage)
        return
    with mlflow.start_run(
        # the stage's experiment, named: without it MLflow files the run under "Default"
        experiment_id=MlflowClient().get_run(parent.mlflow_run_id).info.experiment_id,
        run_name=name,
        nested=True,
        tags={RUN_TAG: parent.id, STAGE_TAG: parent.stage, "custseg.candidate": name},
    ) as child:
        handle = StageRun(id=parent.id, stage=parent.stage, mlflow_run_id=child.info.run_id)
        handle.log_params(params)
        yield handle


def log_and_register_spark_model(
    run: StageRun, model: Any, *, name: str, requirements: list[str]
) -> str | None:
    """Log a fitted pyspark.ml PipelineModel to the run and register it as ``name``;
    returns the version (None with tracking off). A version this custseg run id registered
    before is reused, not registered again, while no attempt of the stage has finished (a
    killed attempt's); a forced rerun of a finished stage registers its own. The alias is
    moved by ``set_model_alias`` once the stage's tables are published."""
    if not run.mlflow_run_id:
        return None
    import mlflow.spark

    client = MlflowClient()
    earlier = [v for v in client.search_model_versions(f"name = '{name}'") if v.tags.get(RUN_TAG) == run.id]
    if earlier and not _stage_finished_before(client, run):
        version = str(max(int(v.version) for v in earlier))
        log.info("reusing %s version %s registered by an earlier attempt of run %s", name, version, run.id)
        return version
    info = mlflow.spark.log_model(
        model, artifact_path="model", registered_model_name=name, pip_requirements=requirements
    )
    version = str(info.registered_model_version)
    client.set_model_version_tag(name, version, RUN_TAG, run.id)
    log.info("registered %s version %s", name, version)
    return version


def _stage_finished_before(client: MlflowClient, run: StageRun) -> bool:
    """Whether an earlier MLflow run of this stage and custseg run id finished (candidate
    runs nested in a stage run do not count)."""
    experiment_id = client.get_run(str(run.mlflow_run_id)).info.experiment_id
    finished = _stage_attempts(client, experiment_id, run.id, run.stage, "FINISHED")
    return any(
        "custseg.candidate" not in r.data.tags and r.info.run_id != run.mlflow_run_id for r in finished
    )


def _stage_attempts(
    client: MlflowClient, experiment_id: str, run_id: str, stage: str, status: str
) -> list[Run]:
    """The MLflow runs of ``stage`` under custseg run ``run_id`` with ``status`` (the
    stage's attempts and the candidate runs nested in them)."""
    return list(
        client.search_runs(
            [experiment_id],
            filter_string=(
                f"tags.`{RUN_TAG}` = '{run_id}' and tags.`{STAGE_TAG}` = '{stage}' "
                f"and attributes.status = '{status}'"
            ),
        )
    )


def set_model_alias(name: str, alias: str, version: str) -> None:
    """Point ``alias`` of the registered model ``name`` at ``version``."""
    MlflowClient().set_registered_model_alias(name, alias, version)
    log.info("%s@%s -> version %s", name, alias, version)


def load_registered_spark_model(cfg: Config, name: str, alias: str) -> tuple[Any, str]:
    """The pyspark.ml model registered as ``name`` under ``alias``, and its version."""
    import mlflow.spark

    _experiment_id(cfg)
    version = MlflowClient().get_model_version_by_alias(name, alias)
    return mlflow.spark.load_model(f"models:/{name}@{alias}"), str(version.version)


@dataclass
class RunRecord:
    """The MLflow side of one custseg run: the parent run and the newest run of each stage."""

    run_id: str
    parent: Run | None
    stages: dict[str, Run]

    def params(self) -> dict[str, str]:
        return dict(self.parent.data.params) if self.parent else {}

    def logged(self, prefix: str) -> dict[str, str]:
        """The parent's params under ``prefix`` (``config`` or ``version``, as
        ``_log_run_params`` wrote them), without the prefix."""
        return {
            k.removeprefix(f"{prefix}."): v for k, v in self.params().items() if k.startswith(f"{prefix}.")
        }

    def metrics(self, stage: str) -> dict[str, float]:
        run = self.stages.get(stage)
        return dict(run.data.metrics) if run else {}

    def artifact_json(self, stage: str, path: str) -> Any | None:
        """A JSON artifact of a stage run (None when the stage or the file is missing)."""
        run = self.stages.get(stage)
        if run is None:
            return None
        # a progress bar per JSON file is noise in a job's log
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        try:
            return json.loads(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/{path}"))
        except Exception:  # noqa: BLE001 - an artifact that is not there is simply absent
            log.info("run %s: no artifact %s of stage %s", self.run_id, path, stage)
            return None


def run_record(cfg: Config, run_id: str) -> RunRecord:
    """The parent MLflow run of ``run_id`` and the newest finished run of each stage
    (the newest attempt of any status when none finished)."""
    check_run_id(run_id)
    if not cfg.tracking.enabled:
        return RunRecord(run_id=run_id, parent=None, stages={})
    parent = find_parent_run(cfg, run_id)
    if parent is None:
        return RunRecord(run_id=run_id, parent=None, stages={})
    runs = MlflowClient().search_runs(
        [_experiment_id(cfg)],
        filter_string=f"tags.`{RUN_TAG}` = '{run_id}'",
        order_by=["attributes.start_time DESC"],
    )
    stages: dict[str, Run] = {}
    for run in runs:
        stage = run.data.tags.get(STAGE_TAG)
        if stage in (None, "pipeline") or "custseg.candidate" in run.data.tags:
            continue
        best = stages.get(stage)
        if best is None or (best.info.status != "FINISHED" and run.info.status == "FINISHED"):
            stages[stage] = run
    return RunRecord(run_id=run_id, parent=parent, stages=stages)
