from __future__ import annotations

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
from tests.conftest import Submitted, failure


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
    written = pd.read_parquet(Path(small.generate.output_dir) / "raw" / "transactions")
    assert metrics["rows.transactions"] == len(written) > 0


def test_spark_submit_runs_the_pipeline_in_local_mode(submitted: Submitted) -> None:
    """The real spark-submit (a fresh JVM and driver) runs every stage end to end, generate
    to report, on a small world with light settings (the shared ``submitted`` run A)."""
    output, tmp = submitted.output, submitted.tmp
    assert submitted.returncode == 0, failure(output)
    assert len(pd.read_parquet(tmp / "generated" / "truth" / "people")) == 400
    for stage in stage_names():
        assert f"stage {stage} finished" in output, stage
    people = RsDeltaTable(str(tmp / "warehouse" / "bronze" / "customer_attributes")).to_pandas()
    assert len(people) == 400
    gold = tmp / "warehouse" / "gold"
    profiles = RsDeltaTable(str(gold / "segment_profiles")).to_pandas()
    # run B re-segmented after A: A's assignments are the version A wrote
    table = RsDeltaTable(str(gold / "segment_assignments"))
    mine = [c["version"] for c in table.history() if c.get("userMetadata") == submitted.run_a]
    table.load_as_version(max(mine))
    assignments = table.to_pandas()
    everyone = profiles[profiles["segment_name"] == "(all customers)"]
    assert everyone["customers"].iloc[0] == (~assignments["is_outlier"]).sum()
    recommendations = RsDeltaTable(str(gold / "recommendations")).to_pandas()
    assert len(recommendations) >= 1 and recommendations["evidence"].str.contains("interval").all()
    assert (tmp / "reports" / submitted.run_a / "report.html").stat().st_size > 10_000
    # The job ran on spark-submit's master and app name, not the config's.
    assert "session custseg on local[2]" in output
