"""Stage ``clv``: bronze.transactions + silver.identity_map -> gold.customer_clv.

1. Orders (every non-refund row, free ones included) attributed to customers, as in the
   features stage.
2. Out-of-sample check: fit on the orders up to ``observation_end - holdout_days``, predict
   the holdout's purchases, compare per customer and per calibration-frequency bucket
   beside the naive baseline (MLflow metrics, table and plot).
3. Fit on the whole observation period, predict for every customer, write
   ``gold.customer_clv`` (no identity fields: ids, summaries and predictions only).
4. When ``clv.segments_table`` exists, cross-check the segments' value order against
   their predicted CLV: ``gold.clv_segment_check``, the Spearman correlation and every
   disagreement in the metrics and the log.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from custseg import catalog
from custseg.clv.check import holdout_comparison, segment_value_check
from custseg.clv.models import BGNBDFit, GammaGammaFit, fit_bgnbd, fit_gamma_gamma
from custseg.clv.predict import expected_purchases_column, predict_clv
from custseg.clv.summary import _unit_days, calibration_and_holdout, summarize_transactions
from custseg.config import ClvConfig
from custseg.events import mapped_orders
from custseg.snapshots import latest_snapshot, newest_snapshot_date
from custseg.stage import StageContext
from custseg.tracking import StageRun

log = logging.getLogger(__name__)


def fit_models(summary: DataFrame, cfg: ClvConfig) -> tuple[BGNBDFit, GammaGammaFit]:
    """BG/NBD and Gamma-Gamma on one summary, with the stage's penalizer and tuple limit."""
    bgnbd = fit_bgnbd(summary, penalizer=cfg.penalizer, max_tuples=cfg.max_tuples)
    return bgnbd, fit_gamma_gamma(spenders(summary), penalizer=cfg.penalizer)


def spenders(summary: DataFrame) -> DataFrame:
    """The customers Gamma-Gamma is fitted on: repeat buyers whose repeat purchases cost
    something (and the others, which it skips). Free orders count as purchases (frequency,
    recency), but a mean spend of 0 has no Gamma-Gamma likelihood; lifetimes' docs fit
    the same subset."""
    return summary.where((F.col("frequency") == 0) | (F.col("monetary_value") > 0))


def fit_metrics(prefix: str, bgnbd: BGNBDFit, gamma_gamma: GammaGammaFit) -> dict[str, float]:
    """Parameters, standard errors, log-likelihoods and sizes of a pair of fits."""
    out: dict[str, float] = {}
    for name, fit in (("bgnbd", bgnbd), ("gamma_gamma", gamma_gamma)):
        for param, value in fit.params().items():
            out[f"{prefix}{name}.{param}"] = value
            if param in fit.standard_errors:
                out[f"{prefix}{name}.{param}_se"] = fit.standard_errors[param]
        out[f"{prefix}{name}.log_likelihood"] = fit.log_likelihood
        out[f"{prefix}{name}.customers"] = fit.n_customers
    out[f"{prefix}bgnbd.tuples"] = bgnbd.n_tuples
    return out


def holdout_plot(table: pd.DataFrame, path: Path) -> None:
    """Mean holdout purchases by calibration frequency: actual, model and naive."""
    long = table.melt(id_vars=["bucket"], value_vars=["actual", "predicted", "naive"], var_name="series")
    chart = (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X("bucket:O", title="purchases in calibration (last bucket: or more)"),
            y=alt.Y("value:Q", title="mean purchases in holdout"),
            color="series:N",
        )
        .properties(title="BG/NBD: calibration vs holdout", width=480, height=300)
    )
    chart.save(str(path))


def run_holdout(orders: DataFrame, cfg: ClvConfig, observation_end: date, run: StageRun) -> dict[str, float]:
    """Fit on the calibration period, compare with the holdout; log table and plot."""
    calibration_end = observation_end - timedelta(days=cfg.holdout_days)
    holdout = calibration_and_holdout(
        orders,
        ts_col="day",
        calibration_end=calibration_end,
        observation_end=observation_end,
        time_unit=cfg.time_unit,
    ).cache()
    try:
        bgnbd, gamma_gamma = fit_models(holdout, cfg)
        metrics, table = holdout_comparison(holdout, bgnbd, buckets=cfg.frequency_buckets)
    finally:
        holdout.unpersist()
    log.info(
        "clv holdout (%s .. %s): MAE %.4f (naive %.4f), correlation %.3f (naive %.3f)",
        calibration_end,
        observation_end,
        metrics["mae"],
        metrics["naive_mae"],
        metrics["corr"],
        metrics["naive_corr"],
    )
    run.log_dict(table.to_dict(orient="records"), "clv/holdout_by_frequency.json")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "holdout_by_frequency.html"
        holdout_plot(table, path)
        run.log_artifact(path, "clv")
    out = {f"holdout.{k}": v for k, v in metrics.items()}
    out.update(fit_metrics("holdout.", bgnbd, gamma_gamma))
    return out


def run_segment_check(ctx: StageContext, clv: DataFrame) -> dict[str, float]:
    """Segments' value order against their CLV order; gold.clv_segment_check."""
    cfg, tables, run = ctx.cfg.clv, ctx.tables, ctx.run
    if not tables.exists(cfg.segments_table):
        log.warning("clv: %s not found, segment cross-check skipped", cfg.segments_table)
        return {"segments.checked": 0}
    segments = latest_snapshot(tables.read(cfg.segments_table))
    if "is_outlier" in segments.columns:
        segments = segments.where(~F.col("is_outlier"))
    value = segment_value(ctx, segments)
    value_col = ctx.cfg.segment.value_col
    table, rho = segment_value_check(
        clv.join(value, "customer_id", "left"), segments, segment_col=cfg.segment_col, value_col=value_col
    )
    table["value_col"] = value_col
    tables.write(ctx.spark.createDataFrame(table), catalog.CLV_SEGMENT_CHECK)
    run.log_dict(table.to_dict(orient="records"), "clv/segment_check.json")
    for row in table.itertuples():
        if not row.ranks_agree:
            log.warning(
                "clv: segment %s is number %d by mean %s but %d by predicted CLV",
                row.segment,
                row.value_rank,
                value_col,
                row.clv_rank,
            )
    top = table.iloc[0]
    return {
        "segments.checked": len(table),
        "segments.spearman": rho,
        "segments.disagreements": int((~table["ranks_agree"]).sum()),
        "segments.top_customer_share": float(top["customer_share"]),
        "segments.top_clv_share": float(top["clv_share"]),
    }


def segment_value(ctx: StageContext, segments: DataFrame) -> DataFrame:
    """customer_id and ``segment.value_col`` (the figure the segment names rank by) from
    ``segment.features_table`` at the segments' snapshot."""
    sc = ctx.cfg.segment
    if not ctx.tables.exists(sc.features_table):
        raise FileNotFoundError(
            f"clv: the segment cross-check ranks segments by {sc.value_col} from {sc.features_table}, "
            "which does not exist; run the features stage first"
        )
    features = ctx.tables.read(sc.features_table)
    if sc.value_col not in features.columns:
        raise ValueError(f"clv: {sc.features_table} has no column {sc.value_col!r} (segment.value_col)")
    wanted = newest_snapshot_date(segments) if "snapshot_date" in features.columns else None
    return latest_snapshot(features, wanted).select("customer_id", sc.value_col)


def run_clv(ctx: StageContext) -> None:
    """Stage runner: holdout check, full fit, predictions, segment cross-check."""
    cfg, tables, run = ctx.cfg.clv, ctx.tables, ctx.run
    ctx.require_tables(catalog.TRANSACTIONS, catalog.IDENTITY_MAP)
    orders = mapped_orders(tables.read(catalog.TRANSACTIONS), tables.read(catalog.IDENTITY_MAP)).select(
        "customer_id", "day", "amount"
    )
    observation_end = cfg.observation_end or _last_day(orders)
    log.info("clv: observation end %s, time unit %s", observation_end, cfg.time_unit)
    metrics: dict[str, Any] = run_holdout(orders, cfg, observation_end, run)
    summary = summarize_transactions(
        orders, ts_col="day", observation_end=observation_end, time_unit=cfg.time_unit, include_total=True
    ).cache()
    try:
        bgnbd, gamma_gamma = fit_models(summary, cfg)
        clv = (
            predict_clv(
                summary,
                bgnbd,
                gamma_gamma,
                horizon=cfg.horizon_months,
                time_unit=cfg.time_unit,
                discount_rate=cfg.discount_rate,
            )
            .withColumnRenamed("total_amount", "historical_value")
            .withColumn(
                "expected_purchases_90d",
                expected_purchases_column(bgnbd, F.lit(90.0 / _unit_days(cfg.time_unit))),
            )
            .withColumn("observation_end", F.lit(observation_end))
        )
        tables.write(clv, catalog.CUSTOMER_CLV)
    finally:
        summary.unpersist()
    metrics.update(fit_metrics("", bgnbd, gamma_gamma))
    written = tables.read(catalog.CUSTOMER_CLV)
    totals = written.agg(F.count(F.lit(1)).alias("n"), F.sum("clv").alias("clv"), F.avg("prob_alive")).first()
    assert totals is not None
    metrics.update(
        {"customers": totals[0], "clv.total": totals[1] or 0.0, "prob_alive.mean": totals[2] or 0.0}
    )
    metrics.update(run_segment_check(ctx, written))
    run.log_metrics({k: float(v) for k, v in metrics.items()})
    run.log_params({"clv.observation_end_resolved": observation_end.isoformat()})
    log.info(
        "clv: %d customers, total %d-month CLV %.0f; BG/NBD %s; Gamma-Gamma %s",
        metrics["customers"],
        cfg.horizon_months,
        metrics["clv.total"],
        {k: round(v, 4) for k, v in bgnbd.params().items()},
        {k: round(v, 4) for k, v in gamma_gamma.params().items()},
    )


def _last_day(orders: DataFrame) -> date:
    last = orders.agg(F.max("day")).first()
    if last is None or last[0] is None:
        raise ValueError(
            "clv: no order maps to a customer; set clv.observation_end or check the identity map"
        )
    day: date = last[0]
    return day
