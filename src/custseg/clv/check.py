"""Out-of-sample and economic checks of a CLV fit: holdout purchases against predictions
(with a naive baseline), and the segment ordering against predicted CLV.

Every per-customer comparison is aggregated in Spark; only tables with one row per
frequency bucket or per segment reach the driver.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy import stats

from custseg.clv.models import BGNBDFit
from custseg.clv.predict import expected_purchases_column
from custseg.columns import require_columns


def holdout_comparison(
    holdout: DataFrame, bgnbd: BGNBDFit, *, buckets: int = 7
) -> tuple[dict[str, float], pd.DataFrame]:
    """Predicted against actual holdout purchases of a calibration/holdout summary (as
    ``calibration_and_holdout`` returns, the model fitted on its calibration columns).

    Returns metrics (mean absolute error and Pearson correlation per customer, for the
    model and for the naive baseline: each customer's calibration rate x/T over the
    holdout duration, and the mean actual and predicted totals) and the table per
    calibration-frequency bucket (0 .. buckets-1, the last holding the rest): customers,
    mean actual, mean predicted, mean naive.
    """
    if buckets < 2:
        raise ValueError(f"holdout_comparison: buckets must be at least 2, got {buckets}")
    compared = holdout.select(
        F.least(F.col("frequency"), F.lit(buckets - 1)).cast("int").alias("bucket"),
        F.col("frequency_holdout").alias("actual"),
        expected_purchases_column(bgnbd, F.col("duration_holdout")).alias("predicted"),
        F.when(F.col("T") > 0, F.col("frequency") / F.col("T") * F.col("duration_holdout"))
        .otherwise(0.0)
        .alias("naive"),
    ).cache()
    try:
        row = compared.agg(
            F.count(F.lit(1)).alias("customers"),
            F.avg(F.abs(F.col("predicted") - F.col("actual"))).alias("mae"),
            F.avg(F.abs(F.col("naive") - F.col("actual"))).alias("naive_mae"),
            F.corr("predicted", "actual").alias("corr"),
            F.corr("naive", "actual").alias("naive_corr"),
            F.avg("actual").alias("mean_actual"),
            F.avg("predicted").alias("mean_predicted"),
        ).first()
        table = cast(
            pd.DataFrame,
            compared.groupBy("bucket")
            .agg(
                F.count(F.lit(1)).alias("customers"),
                F.avg("actual").alias("actual"),
                F.avg("predicted").alias("predicted"),
                F.avg("naive").alias("naive"),
            )
            .orderBy("bucket")
            .toPandas(),
        )
    finally:
        compared.unpersist()
    assert row is not None
    metrics = {k: float("nan") if row[k] is None else float(row[k]) for k in row.asDict()}
    return metrics, table


def segment_value_check(
    clv: DataFrame,
    segments: DataFrame,
    *,
    segment_col: str = "segment",
    value_col: str = "historical_value",
    customer_col: str = "customer_id",
) -> tuple[pd.DataFrame, float]:
    """Per segment: customers, mean value (of ``value_col``: the stage passes the figure the
    segment names rank by), mean and total predicted CLV, share of customers and of CLV,
    the rank of each (1 = most valuable), and whether the two ranks agree; plus the
    Spearman correlation between the two orders (nan with fewer than two segments).
    ``clv`` has customer_col, clv and value_col; ``segments`` has customer_col and
    segment_col (customers without a segment are left out)."""
    for df, cols, what in (
        (clv, (customer_col, "clv", value_col), "clv"),
        (segments, (customer_col, segment_col), "segments"),
    ):
        require_columns(df, cols, f"segment_value_check: {what}")
    joined = clv.select(customer_col, "clv", value_col).join(
        segments.select(customer_col, F.col(segment_col).cast("string").alias("segment")), customer_col
    )
    table = cast(
        pd.DataFrame,
        joined.groupBy("segment")
        .agg(
            F.count(F.lit(1)).alias("customers"),
            F.avg(value_col).alias("mean_value"),
            F.avg("clv").alias("mean_clv"),
            F.sum("clv").alias("total_clv"),
        )
        .toPandas(),
    )
    table["customer_share"] = table["customers"] / table["customers"].sum()
    table["clv_share"] = table["total_clv"] / table["total_clv"].sum()
    table["value_rank"] = table["mean_value"].rank(ascending=False, method="min").astype(int)
    table["clv_rank"] = table["mean_clv"].rank(ascending=False, method="min").astype(int)
    table["ranks_agree"] = table["value_rank"] == table["clv_rank"]
    table = table.sort_values("value_rank").reset_index(drop=True)
    rho = (
        float(stats.spearmanr(table["mean_value"], table["mean_clv"]).statistic)
        if len(table) >= 2
        else float("nan")
    )
    return table, rho if np.isfinite(rho) else float("nan")
