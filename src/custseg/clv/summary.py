"""Transactions -> per-customer (frequency, recency, T, monetary_value) on Spark, with the
definitions of the lifetimes package's ``summary_data_from_transaction_data``.

Purchases are grouped per time unit (a day, or a Monday-to-Sunday week as pandas' "W"):
frequency is the number of periods with a purchase after the first, recency and T are the
periods from the first purchase period to the last one and to the observation end's
period, monetary_value is the mean of the repeat periods' summed amounts (0 without
repeats). Transactions in periods after the observation end's period are ignored.
"""

from __future__ import annotations

from datetime import date, datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from custseg.columns import require_columns

TIME_UNITS = {"D": 1, "W": 7}


def _as_date(value: date | str, what: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise ValueError(f"{what}: expected a date or an ISO date string, got {value!r}") from exc


def _unit_days(time_unit: str) -> int:
    if time_unit not in TIME_UNITS:
        raise ValueError(f"time_unit must be one of {sorted(TIME_UNITS)}, got {time_unit!r}")
    return TIME_UNITS[time_unit]


def period_start(col: Column, time_unit: str) -> Column:
    """The first day of the period holding ``col`` (the day itself, or the week's Monday)."""
    return F.to_date(col) if _unit_days(time_unit) == 1 else F.to_date(F.date_trunc("week", col))


def _periods(
    transactions: DataFrame, customer_col: str, ts_col: str, amount_col: str, time_unit: str
) -> DataFrame:
    require_columns(transactions, (customer_col, ts_col, amount_col), "summarize_transactions: transactions")
    return transactions.select(
        F.col(customer_col).alias("customer_id"),
        period_start(F.col(ts_col), time_unit).alias("period"),
        F.col(amount_col).cast("double").alias("amount"),
    ).where(F.col("customer_id").isNotNull() & F.col("period").isNotNull())


def _summarise(
    periods: DataFrame, end: date, unit: int, customer_col: str, include_total: bool = False
) -> DataFrame:
    # One shuffle by customer serves both aggregations (per period, then per customer);
    # few customers buy twice in a period, so a partial aggregation first would save little.
    per_period = (
        periods.repartition("customer_id")
        .groupBy("customer_id", "period")
        .agg(F.sum("amount").alias("amount"))
    )
    per_customer = per_period.groupBy("customer_id").agg(
        F.min("period").alias("first"),
        F.max("period").alias("last"),
        F.count(F.lit(1)).alias("n"),
        F.sum("amount").alias("total"),
        F.min_by("amount", "period").alias("first_amount"),
    )
    frequency = F.col("n") - 1
    return per_customer.select(
        F.col("customer_id").alias(customer_col),
        frequency.cast("double").alias("frequency"),
        (F.datediff("last", "first") / unit).cast("double").alias("recency"),
        (F.datediff(F.lit(end), "first") / unit).cast("double").alias("T"),
        F.when(frequency > 0, (F.col("total") - F.col("first_amount")) / frequency)
        .otherwise(0.0)
        .alias("monetary_value"),
        *([F.col("total").alias("total_amount")] if include_total else []),
    )


def summarize_transactions(
    transactions: DataFrame,
    *,
    customer_col: str = "customer_id",
    ts_col: str = "ts",
    amount_col: str = "amount",
    observation_end: date | str,
    time_unit: str = "D",
    include_total: bool = False,
) -> DataFrame:
    """One row per customer with a purchase up to ``observation_end``: customer_col,
    frequency, recency, T, monetary_value (doubles), as lifetimes defines them; with
    ``include_total`` also total_amount, the sum of every counted purchase."""
    unit = _unit_days(time_unit)
    end_day = _as_date(observation_end, "observation_end")
    end = _start_of(end_day, time_unit)
    periods = _periods(transactions, customer_col, ts_col, amount_col, time_unit)
    return _summarise(periods.where(F.col("period") <= F.lit(end)), end, unit, customer_col, include_total)


def _start_of(day: date, time_unit: str) -> date:
    return day if _unit_days(time_unit) == 1 else date.fromordinal(day.toordinal() - day.weekday())


def calibration_and_holdout(
    transactions: DataFrame,
    *,
    customer_col: str = "customer_id",
    ts_col: str = "ts",
    amount_col: str = "amount",
    calibration_end: date | str,
    observation_end: date | str,
    time_unit: str = "D",
) -> DataFrame:
    """The calibration summary (frequency, recency, T, monetary_value up to
    ``calibration_end``) of the customers who bought by then, with frequency_holdout (periods
    with a purchase after the calibration end's period up to the observation end's),
    monetary_value_holdout (mean holdout transaction, 0 without) and duration_holdout
    (periods), as lifetimes' ``calibration_and_holdout_data`` (whose columns end in _cal).
    One difference: the split is by period, where lifetimes compares raw timestamps with
    the calibration end's midnight (a purchase at noon on that day is holdout there)."""
    unit = _unit_days(time_unit)
    cal_end = _start_of(_as_date(calibration_end, "calibration_end"), time_unit)
    obs_end = _start_of(_as_date(observation_end, "observation_end"), time_unit)
    if obs_end <= cal_end:
        raise ValueError(
            f"observation_end {observation_end} must fall after calibration_end {calibration_end}"
        )
    periods = _periods(transactions, customer_col, ts_col, amount_col, time_unit)
    calibration = _summarise(periods.where(F.col("period") <= F.lit(cal_end)), cal_end, unit, customer_col)
    holdout = (
        periods.where((F.col("period") > F.lit(cal_end)) & (F.col("period") <= F.lit(obs_end)))
        .groupBy("customer_id", "period")
        .agg(F.sum("amount").alias("amount"), F.count(F.lit(1)).alias("n"))
        .groupBy(F.col("customer_id").alias(customer_col))
        .agg(
            F.count(F.lit(1)).cast("double").alias("frequency_holdout"),
            (F.sum("amount") / F.sum("n")).alias("monetary_value_holdout"),
        )
    )
    duration = float((obs_end - cal_end).days / unit)
    return (
        calibration.join(holdout, on=customer_col, how="left")
        .fillna(0.0, subset=["frequency_holdout", "monetary_value_holdout"])
        .withColumn("duration_holdout", F.lit(duration))
    )
