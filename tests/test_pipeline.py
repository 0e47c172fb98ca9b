from __future__ import annotations

import os
import subprocess
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from deltalake import DeltaTable as RsDeltaTable
from mlflow.tracking import MlflowClient
from pyspark.sql import SparkSession

from custseg.config import Config
from custseg.pipeline import run_pipeline, select_stages, stage_names
from custseg.tracking import RUN_TAG, STAGE_TAG

ROOT = Path(__file__).resolve().parents[1]


def test_select_stages() -> None:
    assert stage_names()[0] == "generate"
    assert select_stages() == stage_names()
    assert select_stages(["generate"]) == ["generate"]
    assert select_stages(from_stage="generate") == stage_names()
    with pytest.raises(
        ValueError, match=r"unknown stage 'segmnt'; registered stages: \['generate', 'ingest'"
    ):
        select_stages(["segmnt"])


def test_pipeline_runs_generate_under_one_run_id(spark: SparkSession, cfg: Config) -> None:
    small = cfg.model_copy(
        update={"generate": cfg.generate.model_copy(update={"n_people": 120, "partitions": 2})}
    )
    run_id = run_pipeline(small, stages=["generate"], run_id="pipe-1")
    assert run_id == "pipe-1"
    people = pd.read_parquet(Path(small.generate.output_dir) / "truth" / "people")
    assert len(people) == 120
    mlflow.set_tracking_uri(small.tracking.uri)
    experiment = mlflow.get_experiment_by_name(small.tracking.experiment)
    assert experiment is not None
    runs = MlflowClient().search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{RUN_TAG}` = 'pipe-1'"
    )
    by_stage = {r.data.tags[STAGE_TAG]: r for r in runs}
    assert set(by_stage) == {"pipeline", "generate"}
    metrics = by_stage["generate"].data.metrics
    assert metrics["rows.truth.people"] == 120
    assert metrics["rows.transactions"] > 0


def test_spark_submit_runs_the_pipeline_in_local_mode(tmp_path: Path) -> None:
    """The real spark-submit (a fresh JVM and driver) runs every stage end to end, generate
    to insights, on a small world with light settings."""
    out = tmp_path / "generated"
    result = subprocess.run(
        [
            str(ROOT / "spark-submit.sh"),
            "jobs/pipeline.py",
            "--master",
            "local[2]",
            "--conf",
            str(ROOT / "conf" / "test.yaml"),
            "--set",
            "generate.n_people=400",
            "--set",
            "segment.k_min=3",
            "--set",
            "segment.k_max=4",
            "--set",
            "segment.bootstrap_resamples=2",
            "--set",
            "segment.comparators=[kmeans]",
            "--set",
            "insights.replicates=20",
            "--set",
            "generate.partitions=2",
            "--set",
            f"generate.output_dir={out}",
            "--set",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            "--set",
            f"tracking.artifact_location={tmp_path / 'artifacts'}",
            "--set",
            f"spark.checkpoint_dir={tmp_path / 'ckpt'}",
            "--set",
            f"storage.warehouse={tmp_path / 'warehouse'}",
            "--run-id",
            "submit-1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
    )
    # spark-submit runs the Python driver as a child and forwards its stderr to stdout.
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert len(pd.read_parquet(out / "truth" / "people")) == 400
    for stage in stage_names():
        assert f"stage {stage} finished" in output, stage
    people = RsDeltaTable(str(tmp_path / "warehouse" / "bronze" / "customer_attributes")).to_pandas()
    assert len(people) == 400
    gold = tmp_path / "warehouse" / "gold"
    profiles = RsDeltaTable(str(gold / "segment_profiles")).to_pandas()
    assignments = RsDeltaTable(str(gold / "segment_assignments")).to_pandas()
    everyone = profiles[profiles["segment_name"] == "(all customers)"]
    assert everyone["customers"].iloc[0] == (~assignments["is_outlier"]).sum()
    recommendations = RsDeltaTable(str(gold / "recommendations")).to_pandas()
    assert len(recommendations) >= 1 and recommendations["evidence"].str.contains("interval").all()
    # The job ran on spark-submit's master and app name, not the config's.
    assert "session custseg on local[2]" in output
