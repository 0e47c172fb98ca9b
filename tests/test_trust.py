"""What a rerun, a crash and a second run may change: stages publish all or nothing,
reads are pinned, a finished stage is not run again, a model version is reused, and one
run writes to a warehouse at a time (``meta.leases``)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from deltalake import DeltaTable as RsDeltaTable
from mlflow.tracking import MlflowClient
from pyspark.ml import Pipeline
from pyspark.ml.feature import SQLTransformer
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

import custseg.pipeline as pipeline
from custseg import catalog
from custseg.config import Config, load_config
from custseg.lease import SCHEMA, Lease, LeaseHeldError, holding
from custseg.pipeline import StageContext, run_stage
from custseg.tables import TableStore, utc_now
from custseg.tracking import RUN_TAG, STAGE_TAG, log_and_register_spark_model, pipeline_parent, pipeline_run

from .conftest import ROOT, TEST_CONF, Tiny, temp_overrides


def _frame(spark: SparkSession, value: int):  # noqa: ANN202 - a one-row DataFrame
    return spark.createDataFrame([(value,)], "v int")


def _values(store: TableStore, name: str) -> list[int]:
    return sorted(r["v"] for r in store.read(name).collect())


def test_reads_are_pinned_and_unpublished_writes_unseen(spark: SparkSession, tmp_path: Path) -> None:
    """A stage's reads keep the version of its first read even when the table changes
    under it; a stage that wrote without publishing (killed between commits) changes
    nothing a later reader sees; its own writes are read back at what it wrote."""
    wh = str(tmp_path / "wh")
    first = TableStore(spark, wh, run_id="first")
    first.write(_frame(spark, 1), "silver.a")
    first.write(_frame(spark, 1), "silver.b")
    first.publish("stage_x")
    reader = TableStore(spark, wh, run_id="reader")
    assert _values(reader, "silver.a") == [1]
    killed = TableStore(spark, wh, run_id="killed")
    killed.write(_frame(spark, 2), "silver.a")  # its second table and its publish never came
    assert _values(killed, "silver.a") == [2]  # a stage reads what it wrote itself
    assert _values(reader, "silver.a") == [1]  # pinned at its first read
    later = TableStore(spark, wh, run_id="later")
    assert _values(later, "silver.a") == [1] and _values(later, "silver.b") == [1]  # published
    done = TableStore(spark, wh, run_id="done")
    done.write(_frame(spark, 3), "silver.a")
    done.publish("stage_x")
    assert _values(TableStore(spark, wh, run_id="next"), "silver.a") == [3]
    assert _values(reader, "silver.a") == [1]  # still pinned
    rows = TableStore(spark, wh, run_id="x").read(catalog.STAGE_RUNS).orderBy("finished_at").toPandas()
    assert list(rows["run_id"]) == ["first", "done"]
    assert rows["writes"][0] == {"silver.a": 0, "silver.b": 0} and rows["writes"][1] == {"silver.a": 2}


def test_a_stage_publishes_all_or_nothing_and_runs_once(
    spark: SparkSession, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stage that dies between its two commits publishes nothing, moves no alias (its
    after-publish step does not run) and is recorded FAILED; run again it publishes both
    tables, then the step runs once; a third run of the finished stage does nothing,
    unless forced."""
    calls: dict[str, int] = {"runs": 0, "after": 0}
    crash = {"on": True}

    def two_tables(ctx: StageContext) -> None:
        calls["runs"] += 1
        ctx.tables.write(_frame(ctx.spark, calls["runs"]), "gold.first")
        ctx.after_publish.append(lambda: calls.__setitem__("after", calls["after"] + 1))
        if crash["on"]:
            raise RuntimeError("killed between two commits")
        ctx.tables.write(_frame(ctx.spark, calls["runs"]), "gold.second")

    registry = pipeline._registry
    monkeypatch.setattr(pipeline, "_registry", lambda: {**registry(), "two_tables": two_tables})
    with pytest.raises(RuntimeError, match="killed between"):
        run_stage(cfg, "two_tables", "r1")
    store = TableStore(spark, cfg.storage.warehouse, run_id="check")
    assert not store.exists(catalog.STAGE_RUNS) and calls["after"] == 0
    crash["on"] = False
    assert run_stage(cfg, "two_tables", "r1") is not None
    assert calls == {"runs": 2, "after": 1}
    check = TableStore(spark, cfg.storage.warehouse, run_id="check-2")
    assert _values(check, "gold.first") == [2] and _values(check, "gold.second") == [2]
    assert run_stage(cfg, "two_tables", "r1") is None  # finished: nothing to do
    assert calls == {"runs": 2, "after": 1}
    assert run_stage(cfg, "two_tables", "r1", force=True) is not None
    assert calls == {"runs": 3, "after": 2}
    mlflow.set_tracking_uri(cfg.tracking.uri)
    experiment = mlflow.get_experiment_by_name(cfg.tracking.experiment)
    assert experiment is not None
    statuses = sorted(
        r.info.status
        for r in MlflowClient().search_runs(
            [experiment.experiment_id], filter_string=f"tags.`{STAGE_TAG}` = 'two_tables'"
        )
    )
    assert statuses == ["FAILED", "FINISHED", "FINISHED"]


def test_a_killed_attempt_left_running_is_marked_killed(cfg: Config) -> None:
    """An attempt killed with SIGKILL leaves its MLflow run RUNNING; the next attempt of
    the same stage and run id marks it KILLED."""
    mlflow.set_tracking_uri(cfg.tracking.uri)
    with pipeline_parent(cfg, "rk"):
        experiment_id = mlflow.active_run().info.experiment_id  # type: ignore[union-attr]
        dead = MlflowClient().create_run(experiment_id, tags={RUN_TAG: "rk", STAGE_TAG: "clv"})
        with pipeline_run(cfg, stage="clv", run_id="rk"):
            pass
    assert MlflowClient().get_run(dead.info.run_id).info.status == "KILLED"


def test_a_rerun_reuses_the_model_version_it_registered(spark: SparkSession, cfg: Config) -> None:
    """An attempt killed after registering (its MLflow run KILLED) leaves a version the
    rerun reuses; a forced rerun of a finished attempt registers its own."""
    model = Pipeline(stages=[SQLTransformer(statement="SELECT v * 2 AS w FROM __THIS__")]).fit(
        _frame(spark, 1)
    )
    versions = []
    for attempt in range(3):
        with pipeline_run(cfg, stage="segment", run_id="rm") as run:
            versions.append(log_and_register_spark_model(run, model, name="trust_model", requirements=[]))
        if attempt == 0:  # killed after registering
            MlflowClient().set_terminated(str(run.mlflow_run_id), status="KILLED")
    assert versions == ["1", "1", "2"]
    registered = MlflowClient().search_model_versions("name = 'trust_model'")
    assert sorted(str(v.version) for v in registered) == ["1", "2"]
    assert {v.tags[RUN_TAG] for v in registered} == {"rm"}
    assert MlflowClient().get_registered_model("trust_model").aliases == {}  # moved by the runner only


def test_lease_holder_expiry_and_dead_owner(spark: SparkSession, tmp_path: Path) -> None:
    wh = str(tmp_path / "wh")
    store = TableStore(spark, wh, run_id="mine")
    now = utc_now()
    held = spark.createDataFrame(
        [("warehouse", "other-run@elsewhere:123", "other-run", now, now + timedelta(minutes=5))], SCHEMA
    )
    held.write.format("delta").save(store.path(catalog.LEASES))
    with pytest.raises(LeaseHeldError, match=r"held by other-run@elsewhere:123 until .* UTC"):
        Lease(store, 60).acquire(wait_seconds=1)
    # expired: taken
    expired = held.withColumn("expires_at", F.lit(now - timedelta(seconds=1)))
    expired.write.format("delta").mode("overwrite").save(store.path(catalog.LEASES))
    with holding(store, 60, 0):
        assert Lease(store, 60).holder()[0].startswith("mine@")  # type: ignore[index]
    assert Lease(store, 60).holder() is None  # released
    # a process of this host that is gone (a killed run): taken at once
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    owner = f"killed@{socket.gethostname()}:{gone.stdout.strip()}"
    held.withColumn("owner", F.lit(owner)).write.format("delta").mode("overwrite").save(
        store.path(catalog.LEASES)
    )
    with holding(store, 60, 0):
        assert Lease(store, 60).holder()[0].startswith("mine@")  # type: ignore[index]


def test_two_runs_started_together_write_one_after_the_other(tiny: Tiny, tmp_path: Path) -> None:
    """Two processes ingest the same files into one warehouse at the same moment: one
    waits for the other's lease (it used to fail on Delta's concurrent MERGE, or
    interleave), and the tables equal one run's."""
    sources = json.dumps(
        {"transactions": [{"name": "transactions", "format": "parquet", "path": "transactions"}]}
    )
    settings = [
        *temp_overrides(tmp_path),
        f"ingest.raw_dir={tiny.root / 'raw'}",
        "ingest.as_of=2026-11-01",
        f"ingest.sources={sources}",
        "run.lease_wait_seconds=600",
        "tracking.enabled=false",
        'spark.conf={"spark.ui.showConsoleProgress": "false"}',
    ]
    command = [sys.executable, "jobs/pipeline.py", "--conf", str(TEST_CONF), "--stages", "ingest"]
    for s in settings:
        command += ["--set", s]
    procs = [
        subprocess.Popen(
            [*command, "--run-id", run_id],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for run_id in ("one", "two")
    ]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    assert sum("waiting up to 600 s for the warehouse, held by" in out for out in outputs) == 1
    cfg = load_config(TEST_CONF, overrides=settings)
    bronze = RsDeltaTable(str(Path(cfg.storage.warehouse) / "bronze" / "transactions")).to_pandas()
    raw = pd.read_parquet(tiny.root / "raw" / "transactions")
    quarantine = RsDeltaTable(str(Path(cfg.storage.warehouse) / "bronze" / "quarantine")).to_pandas()
    assert not bronze["transaction_id"].duplicated().any()
    assert len(bronze) + len(quarantine) == len(raw)  # every row once: loaded or quarantined
    leases = RsDeltaTable(str(Path(cfg.storage.warehouse) / "meta" / "leases")).to_pandas()
    assert leases.empty  # both released
