"""The one-pass Poisson bootstrap and the distributed ranks, against numpy and pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from custseg.insights.bootstrap import (
    collect_replicate_sums,
    customer_hash,
    pearson_from_sums,
    poisson_weights,
    ratio,
    replicate_sums,
    summarise,
)
from custseg.insights.ranks import with_ranks


def _customers(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "segment": rng.choice(["a", "b", "c"], n),
            "value": np.round(rng.gamma(2.0, 50.0, n), 2),
            "other": np.round(rng.normal(0, 1, n), 3),
        }
    )


def test_poisson_weights_are_poisson_one_and_deterministic() -> None:
    h = np.arange(-2000, 2000, dtype=np.int64) * 7919
    w = poisson_weights(h, 200)
    assert w.shape == (4000, 201) and (w[:, 0] == 1).all()
    draws = w[:, 1:].ravel()
    assert draws.mean() == pytest.approx(1.0, abs=0.01) and draws.var() == pytest.approx(1.0, abs=0.02)
    assert (draws == 0).mean() == pytest.approx(np.exp(-1), abs=0.005)
    assert np.array_equal(w, poisson_weights(h, 200)) and np.array_equal(
        w[:10, :51], poisson_weights(h[:10], 50)
    )


def test_replicate_sums_equal_numpy_with_the_same_weights_at_any_partitioning(spark: SparkSession) -> None:
    pdf = _customers(600, 1)
    df = spark.createDataFrame(pdf)
    values = {"value": F.col("value"), "big": (F.col("value") > 100).cast("double")}
    sums = collect_replicate_sums(replicate_sums(df, keys=["segment"], values=values, replicates=30, seed=5))
    again = collect_replicate_sums(
        replicate_sums(df.repartition(7), keys=["segment"], values=values, replicates=30, seed=5)
    )
    hashes = df.select("customer_id", customer_hash("customer_id", 5).alias("h")).toPandas()
    pdf = pdf.merge(hashes, on="customer_id")
    w = poisson_weights(pdf["h"].to_numpy(), 30)
    for seg, rows in pdf.groupby("segment"):
        ws = w[rows.index]
        got = sums[sums["segment"] == seg].sort_values("replicate")
        again_seg = again[again["segment"] == seg].sort_values("replicate")
        np.testing.assert_allclose(got["weight"], ws.sum(axis=0), rtol=1e-12)
        np.testing.assert_allclose(got["value"], ws.T @ rows["value"].to_numpy(), rtol=1e-12)
        np.testing.assert_allclose(got["big"], ws.T @ (rows["value"] > 100).to_numpy(float), rtol=1e-12)
        np.testing.assert_allclose(again_seg["value"].to_numpy(), got["value"].to_numpy(), rtol=1e-12)
    # the interval of one mean against a pandas percentile bootstrap with the same weights
    table = summarise(sums, ["segment"], {"mean": ratio("value", "weight")}).set_index("segment")
    rows = pdf[pdf["segment"] == "a"]
    means = (w[rows.index].T @ rows["value"].to_numpy()) / w[rows.index].sum(axis=0)
    assert table.loc["a", "mean"] == pytest.approx(rows["value"].mean(), rel=1e-12)
    assert table.loc["a", "mean_lo"] == pytest.approx(np.quantile(means[1:], 0.025), rel=1e-12)
    assert table.loc["a", "mean_hi"] == pytest.approx(np.quantile(means[1:], 0.975), rel=1e-12)


def test_pearson_from_sums_against_numpy(spark: SparkSession) -> None:
    pdf = _customers(400, 2)
    df = spark.createDataFrame(pdf)
    x, y = F.col("value"), F.col("other")
    values = {"x": x, "y": y, "xx": x * x, "yy": y * y, "xy": x * y}
    sums = collect_replicate_sums(replicate_sums(df, keys=[], values=values, replicates=0, seed=1))
    table = summarise(sums, [], {"r": pearson_from_sums("weight", "x", "y", "xx", "yy", "xy")})
    assert table["r"].iloc[0] == pytest.approx(np.corrcoef(pdf["value"], pdf["other"])[0, 1], rel=1e-9)


def test_the_interval_covers_a_known_share_in_at_least_90_of_100_repeats(spark: SparkSession) -> None:
    rng = np.random.default_rng(12)
    n, share = 1000, 0.3
    pdf = pd.DataFrame(
        {
            "customer_id": [f"R{r}-{i}" for r in range(100) for i in range(n)],
            "repeat": np.repeat(np.arange(100), n),
            "hit": (rng.uniform(size=100 * n) < share).astype(float),
        }
    )
    sums = collect_replicate_sums(
        replicate_sums(
            spark.createDataFrame(pdf), keys=["repeat"], values={"hit": "hit"}, replicates=200, seed=3
        )
    )
    table = summarise(sums, ["repeat"], {"share": ratio("hit", "weight")})
    covered = ((table["share_lo"] <= share) & (share <= table["share_hi"])).sum()
    assert 90 <= covered <= 100, covered
    assert (table["share_hi"] - table["share_lo"]).mean() == pytest.approx(
        2 * 1.96 * np.sqrt(share * (1 - share) / n), rel=0.15
    )


def test_with_ranks_equals_pandas_average_ranks(spark: SparkSession) -> None:
    rng = np.random.default_rng(4)
    pdf = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(500)],
            "tied": rng.integers(0, 20, 500).astype(float),
            "smooth": rng.normal(size=500),
        }
    )
    pdf.loc[[3, 50, 77], "smooth"] = np.nan
    df = spark.createDataFrame(pdf).repartition(5)
    ranks = with_ranks(df, ["tied", "smooth"]).toPandas().set_index("customer_id").sort_index()
    expected = pdf.set_index("customer_id").sort_index()
    np.testing.assert_allclose(ranks["tied_rank"], expected["tied"].rank(method="average"))
    np.testing.assert_allclose(
        ranks["smooth_rank"].to_numpy(), expected["smooth"].rank(method="average").to_numpy(), equal_nan=True
    )
    with pytest.raises(ValueError, match="missing"):
        with_ranks(df, ["missing"])


def test_with_ranks_ties_values_equal_but_for_their_last_bits_and_keeps_nulls(spark: SparkSession) -> None:
    # 0.1 + 0.2 and 0.3 differ in the last bit: a sum added in another order (a cluster)
    rng = np.random.default_rng(5)
    sums = np.where(rng.random(300) < 0.5, 0.1 + 0.2, 0.3) * rng.integers(1, 6, 300)
    pdf = pd.DataFrame({"customer_id": [f"C{i}" for i in range(300)], "sum": sums})
    df = spark.createDataFrame(pdf).withColumn(
        "sum", F.when(F.col("customer_id").endswith("7"), F.lit(None)).otherwise(F.col("sum"))
    )
    ranks = with_ranks(df, ["sum"]).toPandas().set_index("customer_id").sort_index()
    expected = pdf.set_index("customer_id").sort_index()["sum"].round(12)
    expected[expected.index.str.endswith("7")] = np.nan
    np.testing.assert_allclose(ranks["sum_rank"], expected.rank(method="average"), equal_nan=True)
    assert ranks["sum_rank"].isna().sum() == 30 and ranks["sum_rank"].nunique() == 5


def _weighted_gini(x: np.ndarray, w: np.ndarray) -> float:
    order = np.argsort(x, kind="stable")
    x, w = x[order], w[order]
    cum = np.cumsum(w)
    return float(np.sum(w * x * (2 * cum - w - w.sum())) / (w.sum() * np.sum(w * x)))


def _weighted_top(x: np.ndarray, w: np.ndarray, q: float) -> float:
    order = np.argsort(-x, kind="stable")
    x, w = x[order], w[order]
    cum = np.cumsum(w)
    target = q * cum[-1]
    k = int(np.searchsorted(cum, target))
    before = cum[k - 1] if k else 0.0
    return float((np.sum(w[:k] * x[:k]) + (target - before) * x[k]) / np.sum(w * x))


def test_concentration_against_pandas(spark: SparkSession) -> None:
    from custseg.insights.concentration import concentration_sums, concentration_tables

    rng = np.random.default_rng(9)
    n = 1000
    pdf = pd.DataFrame(
        {
            "customer_id": [f"C{i:04d}" for i in range(n)],
            "revenue": np.round(rng.lognormal(4, 1.2, n), 2),
            "profit": np.round(rng.normal(20, 60, n), 2),
        }
    )
    df = spark.createDataFrame(pdf).repartition(3)
    sums = concentration_sums(df, ["revenue", "profit"], replicates=40, seed=2, bins=100)
    table, curves = concentration_tables(sums, whale_measure="profit")
    got = table.set_index(["measure", "metric"])
    hashes = df.select("customer_id", customer_hash("customer_id", 2).alias("h")).toPandas()
    pdf = pdf.merge(hashes, on="customer_id")
    w = poisson_weights(pdf["h"].to_numpy(), 40)
    for measure in ("revenue", "profit"):
        x = pdf[measure].to_numpy()
        xs = np.sort(x)
        gini = 2 * np.sum(np.arange(1, n + 1) * xs) / (n * xs.sum()) - (n + 1) / n
        assert got.loc[(measure, "gini"), "value"] == pytest.approx(gini, rel=1e-9)
        ginis = [_weighted_gini(x, w[:, b]) for b in range(1, 41)]
        assert got.loc[(measure, "gini"), "value_lo"] == pytest.approx(np.quantile(ginis, 0.025), abs=0.01)
        assert got.loc[(measure, "gini"), "value_hi"] == pytest.approx(np.quantile(ginis, 0.975), abs=0.01)
        for q, label in ((0.01, "top_1"), (0.08, "top_8"), (0.2, "top_20")):
            top = np.sort(x)[::-1][: int(q * n)].sum()
            assert got.loc[(measure, f"{label}_share"), "value"] == pytest.approx(top / x.sum(), rel=1e-9)
            assert got.loc[(measure, f"{label}_total"), "value"] == pytest.approx(top, rel=1e-9)
            assert got.loc[(measure, f"rest_{label[4:]}_total"), "value"] == pytest.approx(
                x.sum() - top, rel=1e-6
            )
        tops = [_weighted_top(x, w[:, b], 0.08) for b in range(1, 41)]
        assert got.loc[(measure, "top_8_share"), "value_lo"] == pytest.approx(
            np.quantile(tops, 0.025), rel=0.02
        )
        lorenz = curves[(curves["measure"] == measure) & (curves["curve"] == "lorenz")]
        assert len(lorenz) == 101
        # exact at bin edges, but for ties (rounded values) whose average rank lands in the next bin
        np.testing.assert_allclose(
            lorenz["cumulative_share"].to_numpy()[1:], np.cumsum(xs)[9::10] / xs.sum(), rtol=2e-3, atol=1e-5
        )
    profit = pdf["profit"].to_numpy()
    assert got.loc[("profit", "whale_peak_customer_share"), "value"] == pytest.approx((profit > 0).mean())
    assert got.loc[("profit", "whale_peak_multiple"), "value"] == pytest.approx(
        profit[profit > 0].sum() / profit.sum(), rel=1e-9
    )
    assert got.loc[("profit", "tail_destroyed"), "value"] == pytest.approx(
        -profit[profit < 0].sum(), rel=1e-9
    )
    whale = curves[(curves["measure"] == "profit") & (curves["curve"] == "whale")]
    assert whale["cumulative_share"].max() == pytest.approx(
        got.loc[("profit", "whale_peak_multiple"), "value"], rel=0.01
    )
    assert ("revenue", "whale_peak_multiple") not in got.index
