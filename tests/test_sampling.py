"""Order-free samples: the same rows whatever the partitioning and row order, with the
distribution of the Spark sampler they replace (checked against scipy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from scipy import stats

from custseg.sampling import hash_order, hash_resample, hash_sample, poisson_counts

N = 20_000


def _orders(spark: SparkSession):  # type: ignore[no-untyped-def]
    df = spark.range(N).withColumn("customer_id", F.concat(F.lit("C"), F.col("id").cast("string")))
    return df.repartition(3), df.orderBy(F.col("id").desc()).coalesce(1), df.repartition(5, "customer_id")


def test_a_hash_sample_picks_the_same_rows_in_any_order(spark: SparkSession) -> None:
    picked = [
        sorted(r[0] for r in hash_sample(df, 0.1, 7, ["customer_id"]).select("id").collect())
        for df in _orders(spark)
    ]
    assert picked[0] == picked[1] == picked[2]
    assert abs(len(picked[0]) - 0.1 * N) < 4 * np.sqrt(N * 0.1 * 0.9)
    other_seed = hash_sample(_orders(spark)[0], 0.1, 8, ["customer_id"]).select("id").collect()
    assert sorted(r[0] for r in other_seed) != picked[0]


def test_a_hash_resample_repeats_rows_poisson_times_in_any_order(spark: SparkSession) -> None:
    rate = 0.6
    counts = [
        hash_resample(df, rate, 11, ["customer_id"]).groupBy("id").count().toPandas().set_index("id")["count"]
        for df in _orders(spark)
    ]
    assert counts[0].sort_index().equals(counts[1].sort_index())
    assert counts[0].sort_index().equals(counts[2].sort_index())
    per_row = counts[0].reindex(range(N), fill_value=0)
    observed = per_row.value_counts()
    # every count with an expected frequency of at least 5 within 4 standard deviations
    checked = 0
    for k in range(10):
        expected = stats.poisson.pmf(k, rate) * N
        if expected >= 5:
            seen = int(observed.get(k, 0))
            assert abs(seen - expected) < 4 * np.sqrt(expected), (k, seen, expected)
            checked += 1
    assert checked >= 4


def test_poisson_counts_invert_the_cdf_as_scipy_does(spark: SparkSession) -> None:
    rng = np.random.default_rng(3)
    u = rng.random(2000)
    for rate in (0.2, 1.0):
        df = spark.createDataFrame(pd.DataFrame({"u": u}))
        got = np.array([r[0] for r in df.select(poisson_counts(rate, F.col("u"))).collect()])
        assert (got == stats.poisson.ppf(u, rate)).all()


def test_hash_order_is_a_seeded_order_of_the_rows(spark: SparkSession) -> None:
    firsts = [
        [r[0] for r in df.orderBy(hash_order(["customer_id"], 5)).limit(10).select("id").collect()]
        for df in _orders(spark)
    ]
    assert firsts[0] == firsts[1] == firsts[2]
    assert len(set(firsts[0])) == 10 and firsts[0] != list(range(10))
