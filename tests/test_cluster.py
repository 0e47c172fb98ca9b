"""Cluster mode: the whole tiny pipeline (every stage) submitted with ``spark-submit.sh``
to a Spark standalone cluster of one master and two one-core workers on 127.0.0.1
(``scripts/cluster.sh``), compared table by table with the shared local-mode run A of the
same seed and run id: bronze and silver exactly, gold with doubles equal to a relative
1e-9 (sums of doubles added in another order differ in the last bits). The segments are
equal because every seeded sample is drawn by a hash of the rows or from rows put in one
order first (``custseg.sampling``), not by the order rows reach a partition, which a
cluster changes.

A machine where the cluster cannot start fails this test with the cluster's own logs; it
never skips. The cluster is stopped whatever happens, and the stop is checked.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from .conftest import (
    ROOT,
    SUBMIT_SETTINGS,
    Submitted,
    failure,
    submit_command,
    tables_differing_from_a,
    temp_overrides,
)

STAGES = ["generate", "ingest", "stitch", "features", "segment", "score", "clv", "insights", "report"]
CLUSTER = ROOT / "scripts" / "cluster.sh"
# The largest result one Spark job may send to the driver on the tiny preset. What the
# stages collect is bounded by config (Splink's training sample, the silhouette sample,
# bootstrap sums, broadcast sides), and on this run the largest was 0.7 MB; collecting a
# per-customer history (400 people x 13 snapshots x the feature row) would pass it.
MAX_JOB_RESULT_BYTES = 2 * 1024 * 1024


def _free_port_block(width: int = 4) -> int:
    """A port p with p .. p + width - 1 free (the master and the three web UIs)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + width > 65535:
            continue
        try:
            for offset in range(1, width):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return port
    raise AssertionError("no block of free ports on 127.0.0.1")


@dataclass
class ClusterRun:
    url: str
    tmp: Path
    output: str
    returncode: int
    events: list[dict]


def _events(folder: Path) -> list[dict]:
    """Every event of the application's (uncompressed) event log in ``folder``."""
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith((".", "appstatus"))]
    assert files, f"no event log written under {folder}"
    return [json.loads(line) for path in sorted(files) for line in path.read_text().splitlines() if line]


@pytest.fixture(scope="module")
def cluster_run(submitted: Submitted, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRun]:
    assert submitted.returncode == 0, failure(submitted.output)
    tmp = tmp_path_factory.mktemp("cluster")
    env = {
        **os.environ,
        "CUSTSEG_CLUSTER_DIR": str(tmp / "cluster"),
        "CUSTSEG_CLUSTER_PORT": str(_free_port_block()),
    }
    started = subprocess.run(
        [str(CLUSTER), "start"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    try:
        if started.returncode != 0:
            pytest.fail(
                "the Spark standalone cluster (scripts/cluster.sh start) did not start on this "
                f"machine, so cluster mode is untested:\n{started.stdout}\n{started.stderr}"
            )
        url = started.stdout.strip().splitlines()[-1]
        assert url.startswith("spark://127.0.0.1:"), started.stdout
        events = tmp / "events"
        events.mkdir()
        spark_confs = [
            "spark.eventLog.enabled=true",
            f"spark.eventLog.dir={events}",
            "spark.eventLog.compress=false",
            "spark.eventLog.rolling.enabled=false",
            "spark.executor.memory=1g",
        ]
        extra = [arg for conf in spark_confs for arg in ("--spark-conf", conf)]
        # the same run id and seed as A, every stage (generate included) in its own folders
        # the same run id and seed as A; generate writes its own folder (compared with A's
        # files below), the later stages read A's files: the file names, which bronze
        # keeps per row, are random per write
        own = [*temp_overrides(tmp), *SUBMIT_SETTINGS]
        on_a_files = [*own, f"generate.output_dir={submitted.tmp / 'generated'}"]
        output, returncode = "", 0
        for settings, stages in [(own, STAGES[:1]), (on_a_files, STAGES[1:])]:
            command = submit_command(settings, submitted.run_a, "--stages", *stages, *extra, master=url)
            result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
            output += result.stdout + result.stderr
            returncode = returncode or result.returncode
        logged = _events(events) if returncode == 0 else []
        yield ClusterRun(url, tmp, output, returncode, logged)
    finally:
        stopped = subprocess.run(
            [str(CLUSTER), "stop"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        status = subprocess.run(
            [str(CLUSTER), "status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    assert stopped.returncode == 0, stopped.stderr
    assert status.returncode != 0, f"cluster processes left running:\n{status.stdout}"
    leftover = subprocess.run(["pgrep", "-f", str(tmp / "cluster")], capture_output=True, text=True)
    assert not leftover.stdout.strip(), f"processes of the cluster still running: {leftover.stdout}"


def test_the_pipeline_on_a_standalone_cluster_equals_local_mode(
    spark: SparkSession, submitted: Submitted, cluster_run: ClusterRun
) -> None:
    assert cluster_run.returncode == 0, failure(cluster_run.output)
    finished = set(re.findall(r"stage (\w+) finished in", cluster_run.output))
    assert finished == set(re.findall(r"stage (\w+) finished in", submitted.output))
    assert set(STAGES) <= finished
    warehouse = cluster_run.tmp / "warehouse"
    names, differing = tables_differing_from_a(spark, submitted, warehouse)
    layers = Counter(name.split(".")[0] for name in names)
    assert layers["bronze"] >= 5 and layers["silver"] >= 5 and layers["gold"] >= 10, layers
    assert [name for name in differing if not name.startswith("gold.")] == []
    _, approximate = tables_differing_from_a(spark, submitted, warehouse, rtol=1e-9)
    assert "gold.customer_features" in names
    assert approximate == [], approximate
    assert (cluster_run.tmp / "reports" / submitted.run_a / "report.html").is_file()


def _file_rows(folder: Path) -> dict[str, list[str]]:
    """Per file set (a folder of part files, or a single file) under ``folder``: its rows
    sorted, Parquet rows as JSON and text files as lines (part file names are random)."""
    rows: dict[str, list[str]] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith((".", "_")):
            continue
        relative = path.relative_to(folder)
        key = str(relative.parent) if path.name.startswith("part-") else str(relative)
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            found = [json.dumps(r, sort_keys=True, default=str) for r in table.to_pylist()]
        else:
            found = path.read_text().splitlines()
        rows.setdefault(key, []).extend(found)
    return {key: sorted(values) for key, values in rows.items()}


def test_generate_on_the_cluster_writes_the_files_local_mode_writes(
    submitted: Submitted, cluster_run: ClusterRun
) -> None:
    assert cluster_run.returncode == 0, failure(cluster_run.output)
    ours = _file_rows(cluster_run.tmp / "generated")
    theirs = _file_rows(submitted.tmp / "generated")
    assert {"raw/transactions", "truth/identity", "truth/parameters.json"} <= set(ours)
    assert sorted(ours) == sorted(theirs)
    assert [key for key in ours if ours[key] != theirs[key]] == []


def test_every_task_ran_on_the_two_workers_executors(cluster_run: ClusterRun) -> None:
    assert cluster_run.returncode == 0, failure(cluster_run.output)
    added = [e for e in cluster_run.events if e["Event"] == "SparkListenerExecutorAdded"]
    assert len(added) >= 2
    assert {e["Executor Info"]["Host"] for e in added} == {"127.0.0.1"}
    apps = [e["App Name"] for e in cluster_run.events if e["Event"] == "SparkListenerApplicationStart"]
    assert len(apps) == 2  # generate, then the other stages
    ended = [e for e in cluster_run.events if e["Event"] == "SparkListenerTaskEnd"]
    tasks = Counter(e["Task Info"]["Executor ID"] for e in ended)
    assert "driver" not in tasks and len(tasks) >= 2, tasks
    assert min(tasks.values()) > 0.2 * sum(tasks.values()), tasks  # both workers took a share
    # Splink's similarity UDFs (the jar from its wheel) ran in executors' tasks
    plans = " ".join(
        e.get("sparkPlanInfo", {}).get("simpleString", "") + e.get("physicalPlanDescription", "")
        for e in cluster_run.events
        if e["Event"].endswith("SparkListenerSQLExecutionStart")
    )
    assert "jaro_winkler" in plans.lower() or "jarowinkler" in plans.lower()


def test_no_job_sends_the_driver_more_than_a_bounded_result(cluster_run: ClusterRun) -> None:
    """Nothing proportional to customers or events is collected: each job's task results
    (what the driver receives) stay under a bound on the tiny preset."""
    assert cluster_run.returncode == 0, failure(cluster_run.output)
    job_of_stage: dict[int, int] = {}
    for e in cluster_run.events:
        if e["Event"] == "SparkListenerJobStart":
            job_of_stage.update(dict.fromkeys(e["Stage IDs"], e["Job ID"]))
    result_bytes: Counter[int] = Counter()
    for e in cluster_run.events:
        if e["Event"] == "SparkListenerTaskEnd":
            metrics = e.get("Task Metrics") or {}
            result_bytes[job_of_stage[e["Stage ID"]]] += int(metrics.get("Result Size", 0))
    assert len(result_bytes) > 100  # the whole pipeline's jobs were seen
    largest = result_bytes.most_common(3)
    assert largest[0][1] <= MAX_JOB_RESULT_BYTES, largest
