"""The only code that reads and writes custseg's Delta tables.

Tables are named ``layer.table`` (layer one of bronze, silver, gold) and live at
``<warehouse>/<layer>/<table>`` as path-based Delta tables, so the same warehouse works in
local mode and on a cluster with a shared file system, and any Delta reader can open them.
Every write is one Delta commit whose ``userMetadata`` is the custseg run id.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

log = logging.getLogger(__name__)

LAYERS = ("bronze", "silver", "gold")
RUN_ID_COL = "_run_id"
_NAME = re.compile(r"^(bronze|silver|gold)\.([a-z][a-z0-9_]*)$")
RUN_ID = re.compile(r"^(?!\.+$)[A-Za-z0-9_.:-]+$")  # a run id; not "." or ".." (a path)
_COMMIT_METADATA = "spark.databricks.delta.commitInfo.userMetadata"


def check_run_id(run_id: str) -> str:
    """The run id when it is one custseg could have made; ValueError naming it otherwise
    (it goes into MLflow filter strings and Delta history filters)."""
    if not RUN_ID.match(run_id or ""):
        raise ValueError(f"run id {run_id!r}: use letters, digits and _.:- only")
    return run_id


class TableNotFoundError(LookupError):
    """The named table has never been written under this warehouse."""


def parse_table_name(name: str) -> tuple[str, str]:
    """Split ``layer.table`` and check it; raises ValueError naming the rule broken."""
    match = _NAME.match(name)
    if not match:
        raise ValueError(
            f"table name {name!r}: expected 'layer.table' with layer in {LAYERS} and a "
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

    def __init__(self, spark: SparkSession, warehouse: str, run_id: str) -> None:
        if not run_id or not RUN_ID.match(run_id):
            raise ValueError(f"run_id {run_id!r}: use letters, digits and _.:- only")
        self.spark = spark
        self.warehouse = warehouse
        self.run_id = run_id

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

    def read(self, name: str, version: int | None = None) -> DataFrame:
        """The table, at ``version`` when given (Delta time travel)."""
        path = self._require(name)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(path)

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
        new_properties = _table_properties(properties or {})
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
        writer.save(path)
        log.info("wrote %s (%s) at version %d", name, mode, self.latest_version(name))

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
        with self._commit_metadata():
            builder.whenNotMatchedInsertAll().execute()
        log.info("merged into %s at version %d", name, self.latest_version(name))

    @contextmanager
    def _commit_metadata(self) -> Iterator[None]:
        conf = self.spark.conf
        previous = conf.get(_COMMIT_METADATA, None)
        conf.set(_COMMIT_METADATA, self.run_id)
        try:
            yield
        finally:
            if previous is None:
                conf.unset(_COMMIT_METADATA)
            else:
                conf.set(_COMMIT_METADATA, previous)

    def history(self, name: str) -> DataFrame:
        """The table's Delta history (version, timestamp, operation, userMetadata, ...)."""
        return DeltaTable.forPath(self.spark, self._require(name)).history()

    def latest_version(self, name: str) -> int:
        """The newest Delta version of the table (a one-row collect)."""
        row = self.history(name).select(F.max("version").alias("v")).first()
        assert row is not None
        return int(row["v"])
