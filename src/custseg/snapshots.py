"""Which feature snapshot a stage reads: shared by segment, clv and insights, so they
agree on it without importing each other."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def newest_snapshot_date(df: DataFrame) -> Any:
    """The largest ``snapshot_date`` of ``df`` (a one-row aggregate), or None when the
    table has no such column or no rows."""
    if "snapshot_date" not in df.columns:
        return None
    row = df.agg(F.max("snapshot_date")).first()
    return row[0] if row else None


def latest_snapshot(features: DataFrame, wanted: Any = None) -> DataFrame:
    """One snapshot of the feature table: ``wanted`` or the latest."""
    if "snapshot_date" not in features.columns:
        return features
    if wanted is None:
        wanted = newest_snapshot_date(features)
    return features.where(F.col("snapshot_date") == F.lit(wanted))
