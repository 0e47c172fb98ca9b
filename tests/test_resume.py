"""Resume after a kill: the pipeline killed with SIGKILL inside each of ingest, stitch,
features, segment and clv, and once between two commits of stitch, then run again with
the same run id, ends with the same tables as an uninterrupted run of the same seed.

The uninterrupted run is the shared ``submitted`` run A (spark-submit, every stage). This
chain runs its stages ingest to clv under A's run id on the files A generated, in its own
warehouse and MLflow store, each attempt a fresh spark-submit killed as a process group.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from custseg import catalog
from custseg.config import load_config
from custseg.tables import TableStore
from custseg.tracking import RUN_TAG, STAGE_TAG

from .conftest import (
    ROOT,
    SUBMIT_SETTINGS,
    TEST_CONF,
    Submitted,
    failure,
    submit_command,
    tables_differing_from_a,
    temp_overrides,
)

STAGES = ["ingest", "stitch", "features", "segment", "score", "clv"]
KILLED = ["ingest", "stitch", "features", "segment", "clv"]


def _stage_seconds(output: str) -> dict[str, float]:
    return {m[1]: float(m[2]) for m in re.finditer(r"stage (\w+) finished in ([\d.]+) s", output)}


def _attempt(command: list[str], kill: tuple[str, float] | None, commit_dir: Path | None = None) -> str:
    """Run one attempt; with ``kill`` = (stage, seconds) SIGKILL its process group that long
    after the stage started, or, with ``commit_dir``, as soon as that Delta log gets a new
    commit after the stage started. Returns what it printed."""
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    if kill is None:
        proc.wait(timeout=900)
        reader.join()
        out = "".join(lines)
        assert proc.returncode == 0, out[-3000:]
        return out
    stage, after = kill
    started: float | None = None
    before: set[str] = set()
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        text = "".join(lines)
        if started is None and f"stage {stage} started" in text:
            started = time.monotonic()
            before = set(os.listdir(commit_dir)) if commit_dir and commit_dir.exists() else set()
        assert f"stage {stage} finished" not in text, f"{stage} finished before the kill"
        if started is not None:
            if commit_dir is not None:
                logged = set(os.listdir(commit_dir)) if commit_dir.exists() else set()
                due = any(f.endswith(".json") for f in logged - before)
            else:
                due = time.monotonic() - started >= after
            if due:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                reader.join()
                return "".join(lines)
        assert proc.poll() is None, text[-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"stage {stage} never reached")


@pytest.fixture(scope="module")
def resumed(submitted: Submitted, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], str]:
    assert submitted.returncode == 0, failure(submitted.output)
    tmp = tmp_path_factory.mktemp("resumed")
    settings = [
        *temp_overrides(tmp),
        *SUBMIT_SETTINGS,
        f"generate.output_dir={submitted.tmp / 'generated'}",  # A's files, read only
    ]
    command = submit_command(settings, submitted.run_a, "--stages", *STAGES)
    seconds = _stage_seconds(submitted.output)
    outputs = []
    warehouse = tmp / "warehouse"
    # 1. inside ingest; 2. stitch between its first two commits (identity map written,
    # links not yet); 3.-6. inside stitch, features, segment, clv; 7. to the end.
    outputs.append(_attempt(command, ("ingest", 0.4 * seconds["ingest"])))
    outputs.append(_attempt(command, ("stitch", 0.0), warehouse / "silver" / "identity_map" / "_delta_log"))
    for stage in ["stitch", "features", "segment", "clv"]:
        outputs.append(_attempt(command, (stage, 0.4 * seconds[stage])))
    final = _attempt(command, None)
    return tmp, outputs, final


def test_killed_and_resumed_equals_uninterrupted(
    spark: SparkSession, submitted: Submitted, resumed: tuple[Path, list[str], str]
) -> None:
    tmp, outputs, final = resumed
    assert len(outputs) == 6
    names, differing = tables_differing_from_a(spark, submitted, tmp / "warehouse")
    assert {
        "bronze.transactions",
        "silver.identity_map",
        "gold.customer_features",
        "gold.customer_clv",
    } <= set(names)
    assert not differing, differing
    # the resumed run skipped what earlier attempts finished and ran the rest once
    for stage in STAGES:
        assert f"stage {stage}" in final
    assert "already finished; nothing to do" in final
    ours = TableStore(spark, str(tmp / "warehouse"), run_id="check")
    published = ours.read(catalog.STAGE_RUNS).where(F.col("run_id") == submitted.run_a).toPandas()
    assert sorted(published["stage"]) == sorted(STAGES) and set(published["status"]) == {"FINISHED"}
    staging = tmp / "warehouse" / "_staging"
    assert not staging.exists() or not any(p.is_file() for p in staging.rglob("*"))


def test_killed_attempts_are_marked_killed_in_mlflow(resumed: tuple[Path, list[str], str]) -> None:
    tmp = resumed[0]
    cfg = load_config(TEST_CONF, overrides=temp_overrides(tmp))
    mlflow.set_tracking_uri(cfg.tracking.uri)
    experiment = mlflow.get_experiment_by_name(cfg.tracking.experiment)
    assert experiment is not None
    runs = MlflowClient().search_runs([experiment.experiment_id])
    by_stage: dict[str, list[str]] = {}
    for run in runs:
        if run.data.tags.get(RUN_TAG) and "custseg.candidate" not in run.data.tags:  # stage runs only
            by_stage.setdefault(run.data.tags[STAGE_TAG], []).append(run.info.status)
    for stage in KILLED:
        statuses = sorted(by_stage[stage])
        assert statuses.count("FINISHED") == 1, (stage, statuses)
        assert "KILLED" in statuses, (stage, statuses)
        assert "RUNNING" not in statuses, (stage, statuses)
    assert by_stage["stitch"].count("KILLED") == 2  # between commits, then inside
