"""What one custseg run wrote: its Delta table versions and its MLflow stage runs.

Every Delta commit custseg makes carries the run id as ``userMetadata`` (``tables.py``),
so the version of a table that run R wrote is the newest commit whose ``userMetadata`` is
R. The report and ``jobs/compare.py`` read each run's tables at those versions (Delta
time travel), so a later run that overwrote a table does not change what an earlier run's
report or comparison shows.
"""

from __future__ import annotations

import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from pyspark.sql import DataFrame

from custseg import hadoopfs
from custseg.config import Config
from custseg.tables import LAYERS, RUN_ID, TableNotFoundError, TableStore
from custseg.tracking import RUN_TAG, STAGE_TAG, _experiment_id, find_parent_run

log = logging.getLogger(__name__)
# Delta reads of small tables are mostly driver work (log replay, planning): a few at a
# time from threads (Spark runs jobs of several threads concurrently) cut the wall time.
_THREADS = 4


# A config key whose last parts name a secret; its value is never shown (report, compare).
_SECRET_KEY = re.compile(
    r"(password|passwd|secret|token|credential|api[_.-]?key|access[_.-]?key|private[_.-]?key)", re.I
)
_URI_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]+@")


def redact(key: str, value: str) -> str:
    """A logged config value as it may be shown: ``(redacted)`` for a key that names a
    secret, and a URI's user information (``user:password@``) replaced by ``***@``."""
    if _SECRET_KEY.search(key):
        return "(redacted)"
    return _URI_USERINFO.sub(r"\1***@", value)


class RunNotFoundError(LookupError):
    """No trace of the run id: no MLflow parent run and no Delta commit."""


def check_run_id(run_id: str) -> str:
    """The run id when it is one custseg could have made; ValueError naming it otherwise
    (it goes into MLflow filter strings and Delta history filters)."""
    if not RUN_ID.match(run_id or ""):
        raise ValueError(f"run id {run_id!r}: use letters, digits and _.:- only")
    return run_id


def table_names(tables: TableStore) -> list[str]:
    """Every ``layer.table`` under the warehouse that is a Delta table."""
    names = []
    for layer in LAYERS:
        for table in hadoopfs.list_dirs(tables.spark, f"{tables.warehouse}/{layer}"):
            name = f"{layer}.{table}"
            try:
                if tables.exists(name):
                    names.append(name)
            except ValueError:  # a folder that is not a custseg table name
                continue
    return names


@dataclass(frozen=True)
class TableVersion:
    """A table as one run sees it: the version it wrote (if any) and the newest one."""

    table: str
    written: int | None  # newest version whose commit carries the run id
    latest: int
    latest_run: str | None  # the run id of the newest commit
    operation: str | None  # the operation of the version written (or of the newest one)

    @property
    def version(self) -> int:
        """The version the run's readers use: the one it wrote, else the newest."""
        return self.written if self.written is not None else self.latest


def table_versions(
    tables: TableStore, run_id: str, names: list[str] | None = None
) -> dict[str, TableVersion]:
    """For each table (default: all in the warehouse), the version ``run_id`` wrote.

    One small Delta history query per table (one row per commit, collected: a table has
    as many commits as runs wrote it, not rows), a few tables at a time.
    """
    wanted = [n for n in (names if names is not None else table_names(tables)) if tables.exists(n)]
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        found = list(pool.map(lambda n: _table_version(tables, n, run_id), wanted))
    return dict(zip(wanted, found, strict=True))


def _table_version(tables: TableStore, name: str, run_id: str) -> TableVersion:
    commits = tables.history(name).select("version", "userMetadata", "operation").collect()
    newest = max(commits, key=lambda r: r["version"])
    mine = [r for r in commits if r["userMetadata"] == run_id]
    row = max(mine, key=lambda r: r["version"]) if mine else newest
    return TableVersion(
        table=name,
        written=int(row["version"]) if mine else None,
        latest=int(newest["version"]),
        latest_run=newest["userMetadata"],
        operation=row["operation"],
    )


def read_as_written(tables: TableStore, name: str, versions: dict[str, TableVersion]) -> DataFrame:
    """The table at the version in ``versions`` (the run's own, else the newest)."""
    found = versions.get(name)
    if found is None:
        raise TableNotFoundError(f"table {name} does not exist under {tables.warehouse}")
    return tables.read(name, version=found.version)


def read_run_table(tables: TableStore, name: str, run_id: str) -> DataFrame:
    """The table exactly as ``run_id`` wrote it; LookupError naming both when it did not."""
    found = table_versions(tables, run_id, [name]).get(name)
    if found is None or found.written is None:
        raise LookupError(f"run {run_id} wrote no version of {name} under {tables.warehouse}")
    return tables.read(name, version=found.written)


@dataclass
class RunRecord:
    """The MLflow side of one custseg run: the parent run and the newest run of each stage."""

    run_id: str
    parent: Run | None
    stages: dict[str, Run]

    def params(self) -> dict[str, str]:
        return dict(self.parent.data.params) if self.parent else {}

    def metrics(self, stage: str) -> dict[str, float]:
        run = self.stages.get(stage)
        return dict(run.data.metrics) if run else {}

    def artifact_json(self, stage: str, path: str) -> Any | None:
        """A JSON artifact of a stage run (None when the stage or the file is missing)."""
        run = self.stages.get(stage)
        if run is None:
            return None
        import mlflow

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


def stage_seconds(record: RunRecord) -> pd.DataFrame:
    """Stage, status and seconds of each stage run of the record."""
    rows = [
        {
            "stage": stage,
            "status": run.info.status,
            "seconds": run.data.metrics.get("stage_seconds"),
        }
        for stage, run in record.stages.items()
    ]
    return pd.DataFrame(rows, columns=["stage", "status", "seconds"])
