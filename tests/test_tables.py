from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable as RsDeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from custseg.tables import RUN_ID_COL, TableNotFoundError, TableStore, parse_table_name, retry_conflicts

SCHEMA = "customer_id string, segment string, value double"


def rows_df(spark: SparkSession, rows: list[tuple]) -> object:
    return spark.createDataFrame(rows, SCHEMA)


def read_with_delta_rs(path: str, version: int | None = None) -> pd.DataFrame:
    """The table as delta-rs (an independent Delta reader) sees it, sorted."""
    table = RsDeltaTable(path, version=version) if version is not None else RsDeltaTable(path)
    frame = table.to_pandas()
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def as_sorted_pandas(df: object) -> pd.DataFrame:
    frame = df.toPandas()  # type: ignore[attr-defined]
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


@pytest.fixture
def store(spark: SparkSession, tmp_path: Path) -> TableStore:
    return TableStore(spark, str(tmp_path / "warehouse"), run_id="run-1")


def test_names_are_checked() -> None:
    assert parse_table_name("gold.customer_features") == ("gold", "customer_features")
    for bad in ("customers", "platinum.x", "gold.Customer", "gold.", "gold.a.b"):
        with pytest.raises(ValueError, match="expected 'layer.table'"):
            parse_table_name(bad)


def test_run_id_is_checked(spark: SparkSession, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="run id"):
        TableStore(spark, str(tmp_path), run_id="bad id; drop")


def test_write_read_and_independent_reader(spark: SparkSession, store: TableStore) -> None:
    df = rows_df(spark, [("c1", "a", 1.0), ("c2", "b", 2.5), ("c3", None, None)])
    store.write(df, "silver.customers")
    assert_df_equality(store.read("silver.customers"), df, ignore_row_order=True)
    pd.testing.assert_frame_equal(read_with_delta_rs(store.path("silver.customers")), as_sorted_pandas(df))


def test_overwrite_history_and_time_travel(spark: SparkSession, store: TableStore, tmp_path: Path) -> None:
    first = rows_df(spark, [("c1", "a", 1.0)])
    second = rows_df(spark, [("c2", "b", 2.0), ("c3", "b", 3.0)])
    store.write(first, "gold.segments")
    other = TableStore(spark, store.warehouse, run_id="run-2")
    other.write(second, "gold.segments")

    # a store reads back what it wrote; a new reader the newest (nothing is published)
    assert_df_equality(store.read("gold.segments"), first, ignore_row_order=True)
    reader = TableStore(spark, store.warehouse, run_id="reader")
    assert_df_equality(reader.read("gold.segments"), second, ignore_row_order=True)
    assert_df_equality(store.read("gold.segments", version=0), first, ignore_row_order=True)
    history = store.history("gold.segments").select("version", "userMetadata").orderBy("version").collect()
    assert [(r.version, r.userMetadata) for r in history] == [(0, "run-1"), (1, "run-2")]
    pd.testing.assert_frame_equal(
        read_with_delta_rs(store.path("gold.segments"), version=0), as_sorted_pandas(first)
    )
    assert RsDeltaTable(store.path("gold.segments")).version() == 1


def test_append_rerun_replaces_its_own_rows(spark: SparkSession, store: TableStore) -> None:
    store.write(rows_df(spark, [("c1", "a", 1.0)]), "bronze.quarantine", mode="append")
    run2 = TableStore(spark, store.warehouse, run_id="run-2")
    run2.write(rows_df(spark, [("c2", "b", 2.0)]), "bronze.quarantine", mode="append")
    # run-2 runs again with corrected output: its earlier rows are replaced, run-1's kept.
    run2.write(rows_df(spark, [("c2", "b", 20.0), ("c4", "d", 4.0)]), "bronze.quarantine", mode="append")

    expected = spark.createDataFrame(
        [("c1", "a", 1.0, "run-1"), ("c2", "b", 20.0, "run-2"), ("c4", "d", 4.0, "run-2")],
        f"{SCHEMA}, {RUN_ID_COL} string",
    )
    reader = TableStore(spark, store.warehouse, run_id="reader")
    assert_df_equality(reader.read("bronze.quarantine"), expected, ignore_row_order=True)
    assert [r.userMetadata for r in store.history("bronze.quarantine").orderBy("version").collect()] == [
        "run-1",
        "run-2",
        "run-2",
    ]
    pd.testing.assert_frame_equal(
        read_with_delta_rs(store.path("bronze.quarantine")), as_sorted_pandas(expected)
    )


def test_merge_upserts_in_one_commit(spark: SparkSession, store: TableStore) -> None:
    store.merge(
        rows_df(spark, [("c1", "a", 1.0), ("c2", "b", 2.0)]), "silver.identity_map", keys=["customer_id"]
    )
    run2 = TableStore(spark, store.warehouse, run_id="run-2")
    run2.merge(
        rows_df(spark, [("c2", "z", 9.0), ("c3", "c", 3.0)]), "silver.identity_map", keys=["customer_id"]
    )

    expected = rows_df(spark, [("c1", "a", 1.0), ("c2", "z", 9.0), ("c3", "c", 3.0)])
    reader = TableStore(spark, store.warehouse, run_id="reader")
    assert_df_equality(reader.read("silver.identity_map"), expected, ignore_row_order=True)
    history = store.history("silver.identity_map").orderBy("version").collect()
    assert [(h.operation, h.userMetadata) for h in history] == [("WRITE", "run-1"), ("MERGE", "run-2")]
    pd.testing.assert_frame_equal(
        read_with_delta_rs(store.path("silver.identity_map")), as_sorted_pandas(expected)
    )
    # The commit-metadata setting does not leak into later writes of the session.
    assert spark.conf.get("spark.databricks.delta.commitInfo.userMetadata", None) is None


def test_merge_rejects_missing_keys(spark: SparkSession, store: TableStore) -> None:
    with pytest.raises(ValueError, match=r"key columns \['id'\] not in"):
        store.merge(rows_df(spark, [("c1", "a", 1.0)]), "silver.x", keys=["id"])


def test_partitioned_write(spark: SparkSession, store: TableStore) -> None:
    df = spark.createDataFrame(
        [("c1", "2026-01-31", 1.0), ("c1", "2026-02-28", 2.0), ("c2", "2026-02-28", 3.0)],
        "customer_id string, snapshot_date string, value double",
    ).withColumn("snapshot_date", F.to_date("snapshot_date"))
    store.write(df, "gold.customer_features", partition_by=["snapshot_date"])
    table = RsDeltaTable(store.path("gold.customer_features"))
    assert table.metadata().partition_columns == ["snapshot_date"]
    assert_df_equality(
        store.read("gold.customer_features"), df, ignore_row_order=True, ignore_column_order=True
    )
    feb = store.read("gold.customer_features").where("snapshot_date = DATE'2026-02-28'")
    assert sorted(r.customer_id for r in feb.collect()) == ["c1", "c2"]


def test_reading_a_missing_table_names_it(store: TableStore) -> None:
    assert not store.exists("gold.nothing")
    with pytest.raises(TableNotFoundError, match=r"gold.nothing does not exist"):
        store.read("gold.nothing")


class ConcurrentAppendException(Exception):  # noqa: N818 - Delta's name, as py4j shows it
    """Stands for Delta's conflict as it reaches Python: the class name in the message."""


def test_an_idempotent_commit_is_retried_after_a_conflict_only() -> None:
    calls: list[int] = []

    def conflicting_twice() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ConcurrentAppendException("io.delta.exceptions.ConcurrentAppendException: files were added")

    retry_conflicts(conflicting_twice, "silver.x", tries=3)
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(ConcurrentAppendException):
        retry_conflicts(conflicting_twice, "silver.x", tries=2)  # bounded: gives up
    assert len(calls) == 2

    def broken() -> None:
        calls.append(1)
        raise ValueError("not a conflict")

    calls.clear()
    with pytest.raises(ValueError, match="not a conflict"):
        retry_conflicts(broken, "silver.x")
    assert calls == [1]  # anything else is not retried
