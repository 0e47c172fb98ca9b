"""Seeded samples that do not depend on row order.

``DataFrame.sample`` and ``rand(seed)`` draw from a generator seeded per partition and
advanced row by row, so the rows they pick depend on the order rows reach a partition.
After a shuffle that order differs between local mode and a cluster (blocks are fetched
from several executors), and so did the segments built on such samples. Here every row's
draw is a seeded hash of columns that identify it: the same rows are picked whatever the
partitioning and order. Written by hand: Spark has no order-free sampler.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

_BITS = 53  # a double holds 53 bits exactly
# Poisson counts above this are drawn as this (P(X > 12) < 1e-9 for the rates used, <= 1)
_MAX_COUNT = 12


def uniform(cols: Sequence[str], seed: int) -> Column:
    """A uniform draw in [0, 1) per row, from a seeded xxhash64 of ``cols``."""
    return F.pmod(hash_order(cols, seed), F.lit(1 << _BITS)).cast("double") / float(1 << _BITS)


def hash_sample(df: DataFrame, fraction: float, seed: int, cols: Sequence[str]) -> DataFrame:
    """Each row with probability ``fraction`` (Bernoulli, like ``df.sample``), picked by
    a seeded hash of ``cols``."""
    if fraction >= 1.0:
        return df
    return df.where(uniform(cols, seed) < fraction)


def poisson_counts(rate: float, u: Column) -> Column:
    """The Poisson(``rate``) count whose CDF first exceeds ``u`` (inverse transform)."""
    count: Column = F.lit(0)
    cdf, term = 0.0, math.exp(-rate)
    for k in range(_MAX_COUNT):
        cdf += term
        count = count + F.when(u >= cdf, 1).otherwise(0)
        term *= rate / (k + 1)
    return count


def hash_resample(df: DataFrame, fraction: float, seed: int, cols: Sequence[str]) -> DataFrame:
    """A resample with replacement of expected size ``fraction`` x rows: each row repeated
    a Poisson(``fraction``) number of times (as ``df.sample(True, fraction)``), the count
    drawn by a seeded hash of ``cols``."""
    counted = df.withColumn("_n", poisson_counts(fraction, uniform(cols, seed)))
    repeated = counted.where(F.col("_n") > 0).withColumn("_i", F.explode(F.sequence(F.lit(1), F.col("_n"))))
    return repeated.drop("_n", "_i")


def hash_order(cols: Sequence[str], seed: int) -> Column:
    """A seeded order of rows by a hash of ``cols`` (for ``orderBy(...).limit(n)``)."""
    return F.xxhash64(*[F.col(c) for c in cols], F.lit(seed))


def canonical_order(df: DataFrame, key: str) -> DataFrame:
    """``df`` hash-partitioned by ``key`` into ``spark.sql.shuffle.partitions`` partitions,
    each sorted by ``key``: the same rows in the same partitions and order wherever ``df``
    came from (files written by a cluster or by local mode, any shuffle before). Samplers
    seeded per partition (MLlib's k-means||, ``KPrototypes``' k-means|| draws) then pick
    the same rows. A user-set partition count, so adaptive execution keeps it as is."""
    partitions = int(df.sparkSession.conf.get("spark.sql.shuffle.partitions") or "200")
    return df.repartition(partitions, F.col(key)).sortWithinPartitions(key)
