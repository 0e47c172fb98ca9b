"""Exact average ranks of several columns at once, distributed.

Rank statistics (Spearman correlations, percentile ranks, Kruskal-Wallis, rank bins of the
concentration curves) need each customer's rank among all customers. A window without a
partition would move every row to one task; instead the columns are stacked into
(name, value) rows, range-partitioned and sorted on (name, value), ranked within each
partition, and shifted by the number of rows of the same name in earlier partitions (a
names x partitions count table, the only thing collected). Range partitioning sends equal
keys to one partition, so tied values get their exact average rank, as
``pandas.Series.rank(method="average")`` and ``scipy.stats.rankdata`` give.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from pyspark import TaskContext
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T


def rank_col(name: str) -> str:
    """The column ``with_ranks`` writes the rank of ``name`` to."""
    return f"{name}_rank"


def with_ranks(df: DataFrame, cols: Sequence[str], *, id_col: str = "customer_id") -> DataFrame:
    """``id_col`` and ``<col>_rank`` for each of ``cols``: the 1-based average rank of the
    row's value among the non-null values of the column (null where the value is null).

    ``df`` must hold one row per ``id_col``. Returns one row per id with any ranked value.
    """
    missing = [c for c in [id_col, *cols] if c not in df.columns]
    if missing:
        raise ValueError(f"with_ranks: columns {missing} not in {df.columns}")
    if not cols:
        raise ValueError("with_ranks: no columns to rank")
    stacked = (
        df.select(
            F.col(id_col),
            F.explode(
                F.array(
                    *[F.struct(F.lit(c).alias("name"), F.col(c).cast("double").alias("value")) for c in cols]
                )
            ).alias("s"),
        )
        .select(id_col, "s.name", "s.value")
        .where(F.col("value").isNotNull() & ~F.isnan("value"))
    )
    ordered = stacked.repartitionByRange("name", "value").sortWithinPartitions("name", "value")
    schema = T.StructType(
        [
            stacked.schema[id_col],
            T.StructField("name", T.StringType(), False),
            T.StructField("local_rank", T.DoubleType(), False),
            T.StructField("part", T.IntegerType(), False),
        ]
    )

    def local_ranks(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        part = TaskContext.get().partitionId()  # type: ignore[union-attr]
        frames = [b for b in batches if not b.empty]
        if not frames:
            return
        pdf = pd.concat(frames, ignore_index=True)
        pdf["local_rank"] = pdf.groupby("name", sort=False)["value"].rank(method="average")
        pdf["part"] = np.int32(part)
        yield pdf[[id_col, "name", "local_rank", "part"]]

    mapped = ordered.mapInPandas(local_ranks, schema)  # type: ignore[arg-type]
    local = mapped.localCheckpoint(eager=True)
    counts = collect_partition_counts(local)
    offsets: list[tuple[str, int, float]] = []
    for name in cols:
        done = 0
        for part, n in sorted((p, n) for (nm, p), n in counts.items() if nm == name):
            offsets.append((name, part, float(done)))
            done += n
    offset_df = df.sparkSession.createDataFrame(offsets, "name string, part int, offset double")
    ranked = local.join(F.broadcast(offset_df), ["name", "part"], how="inner").select(
        id_col, "name", (F.col("local_rank") + F.col("offset")).alias("rank")
    )
    wide = ranked.groupBy(id_col).pivot("name", list(cols)).agg(F.first("rank"))
    return wide.select(id_col, *[F.col(c).alias(rank_col(c)) for c in cols])


def collect_partition_counts(local: DataFrame) -> dict[tuple[str, int], int]:
    """Rows per (name, partition): names x partitions rows on the driver."""
    return {
        (r["name"], int(r["part"])): int(r["count"]) for r in local.groupBy("name", "part").count().collect()
    }


def percentile_rank(rank: str, n: str) -> Column:
    """(rank - 1) / (n - 1): 0 for the smallest value, 1 for the largest."""
    return F.when(F.col(n) > 1, (F.col(rank) - 1) / (F.col(n) - 1)).otherwise(F.lit(0.5))
