"""The only code that reads and writes custseg's Delta tables.

Tables are named ``layer.table`` (layer one of bronze, silver, gold) and live at
``<warehouse>/<layer>/<table>`` as path-based Delta tables, so the same warehouse works in
local mode and on a cluster with a shared file system, and any Delta reader can open them.
Every write is one Delta commit whose ``userMetadata`` is the custseg run id.

What a stage reads is pinned: the first read of a table resolves its version once (the
version the last finished stage run published in ``meta.stage_runs``, else the newest),
and every later read in the stage sees that version, even after the stage overwrote the
table; a table the stage wrote itself is read at the version it wrote. A stage's writes
are published together by one commit to ``meta.stage_runs`` when the stage finishes
(``publish``), so a stage killed between two commits leaves what readers see unchanged.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Literal

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from custseg import catalog

log = logging.getLogger(__name__)

LAYERS, META = catalog.LAYERS, catalog.META
RUN_ID_COL = "_run_id"
_NAME = re.compile(r"^(bronze|silver|gold|meta)\.([a-z][a-z0-9_]*)$")
# A run id: it goes into MLflow filter strings, Delta predicates and staging paths, so it
# starts with a letter or digit (never "." or ".."), holds no quote, slash or space, and is short.
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}\Z")
# PUBLISHED: the tables are published, the steps after it (an alias) not yet done;
# FINISHED: all done. Readers see both; only FINISHED makes a rerun skip the stage.
PUBLISHED_STATUSES = ("PUBLISHED", "FINISHED")
STAGE_RUNS_SCHEMA = (
    "stage string, run_id string, status string, started_at timestamp, finished_at timestamp, "
    "reads map<string,bigint>, writes map<string,bigint>, mlflow_run_id string"
)
_COMMIT_METADATA = "spark.databricks.delta.commitInfo.userMetadata"


def check_run_id(run_id: str) -> str:
    """The run id when it is one custseg could have made; ValueError naming it otherwise
    (it goes into MLflow filter strings and Delta history filters)."""
    if not RUN_ID.match(run_id or ""):
        raise ValueError(
            f"run id {run_id!r}: use at most 100 letters, digits and _.:- starting with a letter or digit"
        )
    return run_id


CONFLICT_TRIES = 5
# FileAlreadyExists: two writers creating one table's version 0 at once
_CONFLICTS = ("Concurrent", "ProtocolChanged", "MetadataChanged", "FileAlreadyExists")


def utc_now() -> datetime:
    """Now in UTC, without a zone (Spark's timestamp; custseg's sessions run in UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


def is_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is Delta's optimistic-concurrency conflict (another writer
    committed first)."""
    text = f"{type(exc).__name__} {exc}"
    return any(kind in text for kind in _CONFLICTS)


def retry_conflicts(
    commit: Callable[[], object], name: str, tries: int = CONFLICT_TRIES, pause: float = 0.5
) -> None:
    """Run one idempotent commit (an overwrite, a ``replaceWhere`` append, a MERGE of the
    same rows), again after a Delta concurrency conflict, up to ``tries`` times. Another
    writer should not be there (``custseg.lease``), but a user's own job may be."""
    for attempt in range(tries):
        try:
            commit()
            return
        except Exception as exc:
            if not is_conflict(exc) or attempt == tries - 1:
                raise
            log.warning("%s: a concurrent commit came first (%s); trying again", name, type(exc).__name__)
            time.sleep(pause * (attempt + 1))


def _newest_writes(rows: list[Row]) -> dict[str, int] | None:
    """Table -> version from the ``writes`` of the published ones of ``rows`` (oldest
    first, so the newest wins); None without rows."""
    if not rows:
        return None
    out: dict[str, int] = {}
    for row in rows:
        if row["status"] in PUBLISHED_STATUSES:
            out.update({k: int(v) for k, v in (row["writes"] or {}).items()})
    return out


@contextmanager
def _session_conf(spark: SparkSession, settings: Mapping[str, str]) -> Iterator[None]:
    """Set session conf for a block and restore what was there."""
    conf = spark.conf
    previous = {k: conf.get(k, None) for k in settings}
    for k, v in settings.items():
        conf.set(k, v)
    try:
        yield
    finally:
        for k, old in previous.items():
            if old is None:
                conf.unset(k)
            else:
                conf.set(k, old)


class TableNotFoundError(LookupError):
    """The named table has never been written under this warehouse."""


def parse_table_name(name: str) -> tuple[str, str]:
    """Split ``layer.table`` and check it; raises ValueError naming the rule broken."""
    match = _NAME.match(name)
    if not match:
        raise ValueError(
            f"table name {name!r}: expected 'layer.table' with layer in {(*LAYERS, META)} and a "
            "lower-case snake_case table"
        )
    return match.group(1), match.group(2)


def _table_properties(properties: Mapping[str, str]) -> dict[str, str]:
    """Writer options that set Delta table properties on creation (``delta.`` names)."""
    bad = [k for k in properties if not k.startswith("delta.")]
    if bad:
        raise ValueError(f"table properties {bad}: Delta table properties start with 'delta.'")
    return dict(properties)


class TableStore:
    """Reads and writes Delta tables under one warehouse root for one run."""

    def __init__(
        self,
        spark: SparkSession,
        warehouse: str,
        run_id: str,
        properties: Callable[[str], Mapping[str, str]] | None = None,
    ) -> None:
        """``properties``: the Delta properties every new table gets, by table name
        (retention and statistics, ``privacy.retention_properties``); a writer's own win."""
        check_run_id(run_id)
        self.default_properties = properties
        self.spark = spark
        self.warehouse = warehouse
        self.run_id = run_id
        self.pinned: dict[str, int] = {}  # table -> version every read of it sees
        self.written: dict[str, int] = {}  # table -> version this store wrote last
        self._published: dict[str, int] | None = None
        self._own: dict[str, int] | None = None  # what this run's stages published

    def path(self, name: str) -> str:
        """The storage path of a table."""
        layer, table = parse_table_name(name)
        return os.path.join(self.warehouse, layer, table)

    def exists(self, name: str) -> bool:
        """Whether the table has been written."""
        return DeltaTable.isDeltaTable(self.spark, self.path(name))

    def _require(self, name: str) -> str:
        path = self.path(name)
        if not DeltaTable.isDeltaTable(self.spark, path):
            raise TableNotFoundError(f"table {name} does not exist at {path}")
        return path

    def read_newest(self, name: str) -> DataFrame:
        """The table at its newest version, whoever wrote it (not the pinned one)."""
        return self.read(name, version=self.latest_version(name))

    def read(self, name: str, version: int | None = None) -> DataFrame:
        """The table at ``version`` when given (Delta time travel), else at the version
        this store wrote, else at its pinned version (resolved at the first read: the
        last published version, else the newest)."""
        path = self._require(name)
        if version is None:
            version = self.written.get(name)
        if version is None:
            version = self.pinned.get(name)
        if version is None and not name.startswith(f"{META}."):
            # this run's own earlier stages first (a resumed run reads what it wrote,
            # not a later run's), then the newest publication, then the newest version
            if self._own is None:
                self._own = self.published_by(self.run_id) or {}
            version = self._own.get(name)
            if version is None:
                version = self.published().get(name)
            if version is None:
                version = self.latest_version(name)
            self.pinned[name] = version
            log.info("reading %s at version %d", name, version)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(path)

    def published(self) -> dict[str, int]:
        """Table -> the version the newest finished stage run wrote (``meta.stage_runs``),
        read once per store: one small collect, a row per stage run."""
        if self._published is None:
            self._published = _newest_writes(self._stage_runs(F.lit(True))) or {}
        return self._published

    def published_by(self, run_id: str) -> dict[str, int] | None:
        """Table -> the version ``run_id``'s finished stage runs published; None when the
        run has no row in ``meta.stage_runs`` (its tables were written outside stages)."""
        return _newest_writes(self._stage_runs(F.col("run_id") == run_id))

    def _stage_runs(self, where: Column) -> list[Row]:
        """The rows of ``meta.stage_runs`` that ``where`` selects, oldest first (a row per
        stage run: few); none before the first stage published."""
        if not self.exists(catalog.STAGE_RUNS):
            return []
        return self.read(catalog.STAGE_RUNS).where(where).orderBy("finished_at").collect()

    def pin_reads_of(self, stage: str) -> None:
        """Pin the versions an earlier attempt of this stage and run id read (a forced
        rerun reads the same inputs, e.g. stitch the map from before its own)."""
        if not self.exists(catalog.STAGE_RUNS):
            return
        row = (
            self.read(catalog.STAGE_RUNS)
            .where((F.col("stage") == stage) & (F.col("run_id") == self.run_id))
            .select("reads")
            .first()
        )
        if row is not None:
            self.pinned.update({k: int(v) for k, v in (row["reads"] or {}).items()})

    def publish(
        self,
        stage: str,
        started_at: datetime | None = None,
        mlflow_run_id: str | None = None,
        status: str = "FINISHED",
    ) -> None:
        """Commit this stage run to ``meta.stage_runs`` (one MERGE on stage and run id):
        ``status`` (FINISHED, or PUBLISHED when steps remain), the versions it read and
        wrote. Readers see the writes from now on."""
        if status not in PUBLISHED_STATUSES:
            raise ValueError(f"status {status!r}: expected one of {PUBLISHED_STATUSES}")
        now = utc_now()
        row = {
            "stage": stage,
            "run_id": self.run_id,
            "status": status,
            "started_at": started_at or now,
            "finished_at": now,
            "reads": dict(self.pinned),
            "writes": dict(self.written),
            "mlflow_run_id": mlflow_run_id,
        }
        df = self.spark.createDataFrame([row], STAGE_RUNS_SCHEMA)
        self.merge(df, catalog.STAGE_RUNS, keys=["stage", "run_id"])
        log.info("published stage %s of run %s: %s", stage, self.run_id, sorted(self.written))

    def run_setting(self, key: str, value: str) -> str:
        """The value this run id fixed for ``key`` (``meta.run_settings``), fixing ``value``
        the first time it is asked: a rerun of the run on a later day gets the first value
        (an insert-only MERGE, then a one-row read)."""
        row = self.spark.createDataFrame(
            [(self.run_id, key, value)], "run_id string, key string, value string"
        )
        self.merge(row, catalog.RUN_SETTINGS, keys=["run_id", "key"], when_matched="ignore")
        got = (
            self.read(catalog.RUN_SETTINGS)
            .where((F.col("run_id") == self.run_id) & (F.col("key") == key))
            .select("value")
            .first()
        )
        assert got is not None
        return str(got["value"])

    def erased_since_start(self) -> datetime | None:
        """When an erasure (stage ``forget``, another run id) published after this run's
        first stage started: this run's earlier outputs still hold the erased people, so
        it must not resume. None when there is none (or this run has not started)."""
        if not self.exists(catalog.STAGE_RUNS):
            return None
        runs = self.read_newest(catalog.STAGE_RUNS)
        row = (
            runs.where(F.col("run_id") == self.run_id)
            .agg(F.min("started_at").alias("start"))
            .crossJoin(runs.where(F.col("stage") == "forget").select("finished_at"))
            .where(F.col("finished_at") > F.col("start"))
            .agg(F.max("finished_at").alias("erased"))
            .first()
        )
        return row["erased"] if row is not None else None

    def finished(self, stage: str) -> bool:
        """Whether this run id has a finished run of ``stage`` in ``meta.stage_runs``."""
        if not self.exists(catalog.STAGE_RUNS):
            return False
        found = (
            self.read(catalog.STAGE_RUNS)
            .where(
                (F.col("stage") == stage) & (F.col("run_id") == self.run_id) & (F.col("status") == "FINISHED")
            )
            .limit(1)
            .count()
        )
        return found > 0

    def write(
        self,
        df: DataFrame,
        name: str,
        mode: Literal["overwrite", "append"] = "overwrite",
        partition_by: Sequence[str] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        """Write ``df`` to the table in one Delta commit tagged with the run id.

        ``overwrite`` replaces the table. ``append`` adds the rows tagged with the run id
        in a ``_run_id`` column, atomically replacing whatever this same run id appended
        before (``replaceWhere``), so a rerun never duplicates its own output.
        ``properties`` (``delta.*`` table properties) are set when the table is created.
        """
        if mode not in ("overwrite", "append"):
            raise ValueError(f"mode {mode!r}: expected 'overwrite' or 'append'")
        path = self.path(name)
        exists = self.exists(name)
        writer_df = df
        options = {"userMetadata": self.run_id}
        defaults = self.default_properties(name) if self.default_properties else {}
        new_properties = _table_properties({**defaults, **(properties or {})})
        if not exists:
            options.update(new_properties)
        if mode == "append":
            writer_df = df.withColumn(RUN_ID_COL, F.lit(self.run_id))
            if exists:
                options["replaceWhere"] = f"{RUN_ID_COL} = '{self.run_id}'"
            else:
                options["overwriteSchema"] = "false"
        else:
            options["overwriteSchema"] = "true"
        writer = writer_df.write.format("delta").mode("overwrite").options(**options)
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        retry_conflicts(lambda: writer.save(path), name)
        self._wrote(name, mode)

    def _wrote(self, name: str, how: str) -> None:
        # the newest commit of this run, not the newest of all (another writer may have
        # committed since)
        row = (
            self.history(name)
            .where(F.col("userMetadata") == self.run_id)
            .select(F.max("version").alias("v"))
            .first()
        )
        version = int(row["v"]) if row is not None and row["v"] is not None else self.latest_version(name)
        if not name.startswith(f"{META}."):
            self.written[name] = version
        log.info("wrote %s (%s) at version %d", name, how, version)

    def merge(
        self,
        df: DataFrame,
        name: str,
        keys: Sequence[str],
        when_matched: Literal["update", "ignore"] = "update",
        properties: Mapping[str, str] | None = None,
    ) -> None:
        """Upsert ``df`` into the table on ``keys`` in one Delta MERGE commit.

        New rows are inserted; matching rows are updated (``when_matched="update"``) or
        left as they are (``"ignore"``: insert-only, so a re-sent row adds nothing). The
        table is created from ``df``, with ``properties``, when it does not exist yet.
        Duplicate keys within ``df`` are an error (MERGE would be ambiguous).
        """
        if not keys:
            raise ValueError("merge needs at least one key column")
        missing = [k for k in keys if k not in df.columns]
        if missing:
            raise ValueError(f"merge into {name}: key columns {missing} not in {df.columns}")
        if not self.exists(name):
            self.write(df, name, properties=properties)
            return
        condition: Column | None = None
        for key in keys:
            term = F.col(f"t.{key}").eqNullSafe(F.col(f"s.{key}"))
            condition = term if condition is None else condition & term
        assert condition is not None
        target = DeltaTable.forPath(self.spark, self.path(name))
        builder = target.alias("t").merge(df.alias("s"), condition)
        if when_matched == "update":
            builder = builder.whenMatchedUpdateAll()
        builder = builder.whenNotMatchedInsertAll()
        with self._commit_metadata():
            retry_conflicts(builder.execute, name)
        self._wrote(name, "merge")

    def delete_matching(self, name: str, keys: DataFrame, condition: Column) -> int:
        """Delete the table's rows (alias ``t``) matching a row of ``keys`` (alias ``s``) on
        ``condition``, in one MERGE commit; returns the rows deleted. A MERGE, not a DELETE
        with the values in its predicate: Delta logs a DELETE's predicate text, so the
        values would stay in the table's log; a MERGE logs only the condition."""
        target = DeltaTable.forPath(self.spark, self._require(name))
        builder = target.alias("t").merge(keys.alias("s"), condition).whenMatchedDelete()
        with self._commit_metadata():
            retry_conflicts(builder.execute, name)
        row = self.history(name).orderBy(F.desc("version")).select("operation", "operationMetrics").first()
        assert row is not None
        self._wrote(name, "delete")
        return int((row["operationMetrics"] or {}).get("numTargetRowsDeleted", 0))

    def set_properties(self, name: str, properties: Mapping[str, str]) -> None:
        """Set Delta table properties on an existing table (``ALTER TABLE ... SET
        TBLPROPERTIES``); a no-op for properties already at the value."""
        path = self._require(name)
        current = DeltaTable.forPath(self.spark, path).detail().select("properties").first()
        have = dict(current["properties"] or {}) if current is not None else {}
        todo = {k: v for k, v in _table_properties(properties).items() if have.get(k) != v}
        if todo:
            assignments = ", ".join(f"'{k}' = '{v}'" for k, v in sorted(todo.items()))
            self.spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({assignments})")

    def vacuum(self, name: str, retention_hours: float) -> None:
        """Remove files no version newer than ``retention_hours`` needs (Delta VACUUM); below
        Delta's 168-hour floor its safety check is turned off for this call only."""
        settings: dict[str, str] = {
            # VACUUM lists the table's folder with one Spark task per unit of this (default
            # 10,000), far slower on a small table than at the shuffle partitions
            # (docs/architecture.md, "Measured choices")
            "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(
                self.spark.conf.get("spark.sql.shuffle.partitions", "8")
            ),
        }
        if retention_hours < 168:
            settings["spark.databricks.delta.retentionDurationCheck.enabled"] = "false"
        with _session_conf(self.spark, settings):
            DeltaTable.forPath(self.spark, self._require(name)).vacuum(retention_hours)

    def _commit_metadata(self) -> AbstractContextManager[None]:
        return _session_conf(self.spark, {_COMMIT_METADATA: self.run_id})

    def history(self, name: str) -> DataFrame:
        """The table's Delta history (version, timestamp, operation, userMetadata, ...)."""
        return DeltaTable.forPath(self.spark, self._require(name)).history()

    def latest_version(self, name: str) -> int:
        """The newest Delta version of the table (a one-row collect)."""
        row = DeltaTable.forPath(self.spark, self._require(name)).history(1).select("version").first()
        assert row is not None
        return int(row["version"])
