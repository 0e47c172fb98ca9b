"""Monthly business KPIs from the bronze events, their trends, forecasts and anomalies, and a
Kruskal-Wallis test on Spark.

``monthly_kpis`` sums each event table once per (source_system, source_id, month), before
any join, so the identity map is joined to a few rows per record and month rather than to
the events; a second ``groupBy`` per month gives the KPIs, and a month spine gives empty
months their zeros. Only the monthly table (a few dozen rows) is small enough to collect.

``kpi_trends`` works on that table on the driver: a Theil-Sen slope per KPI, an ETS
forecast with its prediction interval, and months whose robust z-score against the
Theil-Sen line is extreme.

``kruskal_wallis`` takes rows already ranked over all rows (``custseg.insights.ranks``) and
brings only per-group sums and one tie total to the driver.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from scipy import stats
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from custseg.columns import require_columns
from custseg.contract import SOURCE_KEY
from custseg.events import IDENTITY_MAP_COLUMNS, as_date, is_order
from custseg.insights.ranks import SIGNIFICANT_DIGITS

logger = logging.getLogger(__name__)

KEY = SOURCE_KEY
TRANSACTIONS_REQUIRED = (*KEY, "ts", "amount", "cost")
SUPPORT_REQUIRED = (*KEY, "ts", "cost")
TOUCHES_REQUIRED = (*KEY, "ts", "cost")
USAGE_REQUIRED = (*KEY, "date")
IDENTITY_MAP_REQUIRED = IDENTITY_MAP_COLUMNS
FIRST_SEEN_REQUIRED = ("customer_id", "first_date")

MONEY_KPIS = ("revenue", "gross_margin", "marketing_cost", "support_cost")
MONTHLY_COLUMNS = (
    "month",
    "complete",
    "revenue",
    "gross_margin",
    "marketing_cost",
    "support_cost",
    "profit",
    "orders",
    "average_order_value",
    "active_customers",
    "new_customers",
)
TREND_COLUMNS = (
    "kpi",
    "months",
    "slope_per_month",
    "slope_lo",
    "slope_hi",
    "intercept",
    "relative_slope",
)
FORECAST_COLUMNS = ("kpi", "month", "forecast", "lo", "hi", "method")
ANOMALY_COLUMNS = ("kpi", "month", "value", "expected", "z")
KRUSKAL_COLUMNS = (
    "n",
    "rank_sum",
    "mean_rank",
    "median",
    "h",
    "df",
    "p_value",
    "eta_squared",
    "tie_correction",
    "n_total",
    "groups",
)

# Fewer points than this and no ETS model is fitted (method METHOD_TOO_SHORT).
MIN_FORECAST_POINTS = 6
METHOD_TOO_SHORT, METHOD_CONSTANT, METHOD_FAILED = "too_short", "constant", "failed"
# 0.6745 = the standard normal's 75th percentile: MAD / 0.6745 estimates sigma.
MAD_TO_Z = 0.6745
# percentile_approx keeps every value of a group this large: its median is exact.
MEDIAN_ACCURACY = 1_000_000


def _day_arg(value: date | str, name: str) -> date:
    """A calendar date argument; a datetime is refused (a time of day would be dropped)."""
    if isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime.date, not a datetime, got {value!r}")
    return as_date(value, name)


def _dbl(name: str) -> Column:
    """A measure as a double, null as 0 (a missing cost adds nothing)."""
    return F.coalesce(F.col(name).cast("double"), F.lit(0.0))


def _in_period(day: Column, start: date | None, end: date) -> Column:
    inside = day < F.lit(end)
    return inside if start is None else inside & (day >= F.lit(start))


REC = "_record"


def record_key() -> Column:
    """A 64-bit hash of (source_system, source_id): the per-record aggregation keys on one
    long instead of two strings (Spark's fixed-width hash map instead of a variable-width one on
    the 37M usage rows of the reference preset). Two of 1.2M records collide with probability
    ~4e-8."""
    return F.xxhash64(F.col("source_system").cast("string"), F.col("source_id").cast("string"))


def _key_months(df: DataFrame, day: Column, start: date | None, end: date, **aggs: Column) -> DataFrame:
    """One event table summed per (record, month) over [start, end), with the group's first
    day: the only pass over the table's rows."""
    dated = df.select(
        record_key().alias(REC),
        day.alias("day"),
        *[c for c in df.columns if c not in (*KEY, "day")],
    ).where(_in_period(F.col("day"), start, end))
    return dated.groupBy(REC, F.trunc("day", "month").alias("month")).agg(
        *[c.alias(n) for n, c in aggs.items()], F.min("day").alias("first_day")
    )


def record_customers(identity_map: DataFrame) -> DataFrame:
    """(_record, customer_id): each record key once, with its smallest customer_id when a
    key is mapped twice (deterministic, so no event is counted twice or differently)."""
    return identity_map.groupBy(record_key().alias(REC)).agg(
        F.min(F.col("customer_id").cast("string")).alias("customer_id")
    )


def _customer_keys(identity_map: DataFrame, excluded: DataFrame | None) -> DataFrame:
    """(source_system, source_id, customer_id, is_excluded), one row per source key; a key
    mapped twice gets its smallest customer_id, so no event is counted twice."""
    require_columns(identity_map, IDENTITY_MAP_REQUIRED, "identity_map")
    keys = record_customers(identity_map)
    if excluded is None:
        return keys.withColumn("is_excluded", F.lit(False))
    require_columns(excluded, ("customer_id",), "excluded")
    flags = (
        excluded.select(F.col("customer_id").cast("string").alias("customer_id"))
        .where(F.col("customer_id").isNotNull())
        .distinct()
        .withColumn("is_excluded", F.lit(True))
    )
    return keys.join(flags, on="customer_id", how="left").select(
        REC, "customer_id", F.coalesce(F.col("is_excluded"), F.lit(False)).alias("is_excluded")
    )


def _new_customers(
    first_seen: DataFrame, excluded: DataFrame | None, start: date | None, end: date
) -> DataFrame:
    """(month, new_customers): distinct customers whose first_date lies in the month and in
    [start, end), excluded customers left out."""
    require_columns(first_seen, FIRST_SEEN_REQUIRED, "first_seen")
    firsts = first_seen.select(
        F.col("customer_id").cast("string").alias("customer_id"),
        F.col("first_date").cast("date").alias("first_date"),
    ).where(F.col("customer_id").isNotNull() & _in_period(F.col("first_date"), start, end))
    if excluded is not None:
        require_columns(excluded, ("customer_id",), "excluded")
        ids = excluded.select(F.col("customer_id").cast("string").alias("customer_id"))
        firsts = firsts.join(ids, on="customer_id", how="left_anti")
    return firsts.groupBy(F.trunc("first_date", "month").alias("month")).agg(
        F.countDistinct("customer_id").cast("long").alias("new_customers")
    )


def monthly_kpis(
    transactions: DataFrame,
    *,
    identity_map: DataFrame,
    support: DataFrame | None = None,
    touches: DataFrame | None = None,
    usage: DataFrame | None = None,
    excluded: DataFrame | None = None,
    first_seen: DataFrame | None = None,
    start: date | str | None = None,
    end: date | str,
) -> DataFrame:
    """One row per calendar month of [start, end) with the business KPIs, ordered by month.

    Events are dated by their calendar day in the session time zone (product usage by its
    ``date``); events before ``start`` or on or after ``end`` are ignored. Rows run from the
    month of ``start`` (default: the month of the first event of any table given) to the
    month of the day before ``end``, every month present: a month without events has 0 in
    every sum and count. A partial month is kept, flagged: ``complete`` is true only when
    the whole month lies in [data start, end), the data start being ``start`` when given,
    else the first event day (any table, excluded and unmapped records included): a
    month cut by ``end`` or begun before the data is not complete, and trends should use the
    complete months only.

    Columns: month (date, first day), complete, revenue (sum of amount, refunds negative),
    gross_margin (amount - cost of goods), marketing_cost (touch cost), support_cost,
    profit (gross_margin - marketing_cost - support_cost), orders (transactions that are
    not refunds, free ones included: ``is_order``), average_order_value (order amounts /
    orders, null without orders),
    active_customers (distinct customers with a transaction, a support contact or product
    usage in the month; marketing touches are the company's activity, not theirs) and
    new_customers (distinct customers of ``first_seen`` whose first_date lies in the month
    and before ``end``; null when ``first_seen`` is None). Null amounts and costs count 0.

    Customers in ``excluded`` (a DataFrame with customer_id: bots, outliers) are left out of
    every KPI. Events whose record is not in ``identity_map`` (and anonymous touches) count
    in the money KPIs and orders, never as customers.
    """
    end_day = _day_arg(end, "end")
    start_day = None if start is None else _day_arg(start, "start")
    if start_day is not None and start_day >= end_day:
        raise ValueError(f"start ({start_day}) must be before end ({end_day})")
    require_columns(transactions, TRANSACTIONS_REQUIRED, "transactions")

    order = is_order()
    parts = [
        _key_months(
            transactions,
            F.to_date("ts"),
            start_day,
            end_day,
            revenue=F.sum(_dbl("amount")),
            gross_margin=F.sum(_dbl("amount") - _dbl("cost")),
            order_amount=F.sum(F.when(order, F.col("amount")).otherwise(0.0)),
            orders=F.count(F.when(order, True)),
            is_active=F.lit(True),
        )
    ]
    if support is not None:
        require_columns(support, SUPPORT_REQUIRED, "support")
        parts.append(
            _key_months(
                support,
                F.to_date("ts"),
                start_day,
                end_day,
                support_cost=F.sum(_dbl("cost")),
                is_active=F.lit(True),
            )
        )
    if touches is not None:
        require_columns(touches, TOUCHES_REQUIRED, "touches")
        parts.append(
            _key_months(
                touches,
                F.to_date("ts"),
                start_day,
                end_day,
                marketing_cost=F.sum(_dbl("cost")),
                is_active=F.lit(False),
            )
        )
    if usage is not None:
        require_columns(usage, USAGE_REQUIRED, "usage")
        parts.append(
            _key_months(usage, F.col("date").cast("date"), start_day, end_day, is_active=F.lit(True))
        )
    key_months = parts[0]
    for part in parts[1:]:
        key_months = key_months.unionByName(part, allowMissingColumns=True)
    for name in MONEY_KPIS:  # a table not given adds nothing
        if name not in key_months.columns:
            key_months = key_months.withColumn(name, F.lit(None).cast("double"))

    keyed = key_months.join(_customer_keys(identity_map, excluded), on=REC, how="left")
    if first_seen is not None:
        # A few rows (one per month) beside the keyed ones, summed by the same groupBy.
        keyed = keyed.unionByName(
            _new_customers(first_seen, excluded, start_day, end_day), allowMissingColumns=True
        )
    kept = ~F.coalesce(F.col("is_excluded"), F.lit(False))

    def kept_sum(name: str) -> Column:
        return F.sum(F.when(kept, F.col(name))).alias(name)

    values = [*MONEY_KPIS, "order_amount", "orders", "active_customers", "new_customers"]
    per_month = keyed.groupBy("month").agg(
        *[kept_sum(name) for name in (*MONEY_KPIS, "order_amount", "orders")],
        F.countDistinct(F.when(kept & F.col("is_active"), F.col("customer_id"))).alias("active_customers"),
        (kept_sum("new_customers") if first_seen is not None else F.lit(None)).alias("new_customers"),
        F.min("first_day").alias("first_day"),
    )
    # The months with rows, as one map month -> values, and the spine of every month made
    # from that single row: one plan, so no event table is read twice (a self-join of
    # per_month with the spine would be planned, and computed, twice).
    summary = per_month.agg(
        F.min("first_day").alias("first_day"),
        F.map_from_entries(F.collect_list(F.struct("month", F.struct(*values)))).alias("by_month"),
    )
    data_start = F.lit(start_day) if start_day is not None else F.col("first_day")
    last_month = (end_day - timedelta(days=1)).replace(day=1)
    spine = summary.select(
        F.explode(
            F.sequence(F.trunc(data_start, "month"), F.lit(last_month), F.expr("INTERVAL 1 MONTH"))
        ).alias("month"),
        data_start.alias("data_start"),
        "by_month",
    )
    found = F.try_element_at(F.col("by_month"), F.col("month"))

    def zero(name: str) -> Column:
        return F.coalesce(found.getField(name).cast("double"), F.lit(0.0))

    def count(name: str) -> Column:
        return F.coalesce(found.getField(name).cast("long"), F.lit(0))

    orders = count("orders")
    return spine.select(
        F.col("month"),
        ((F.col("month") >= F.col("data_start")) & (F.add_months("month", 1) <= F.lit(end_day))).alias(
            "complete"
        ),
        *[zero(name).alias(name) for name in MONEY_KPIS],
        (zero("gross_margin") - zero("marketing_cost") - zero("support_cost")).alias("profit"),
        orders.alias("orders"),
        F.when(orders > 0, zero("order_amount") / orders).alias("average_order_value"),
        count("active_customers").alias("active_customers"),
        (count("new_customers") if first_seen is not None else F.lit(None).cast("long")).alias(
            "new_customers"
        ),
    ).orderBy("month")


def _month_index(monthly: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, pd.Period]:
    """The complete months in order, their index t (months since the first) and the first."""
    if "month" not in monthly.columns:
        raise ValueError(f"monthly: missing column(s) ['month']; it has {list(monthly.columns)}")
    rows = monthly
    if "complete" in rows.columns:
        rows = rows[rows["complete"].astype("boolean").fillna(False).astype(bool)]
    periods = pd.PeriodIndex(pd.to_datetime(rows["month"]), freq="M")
    rows = rows.assign(_period=periods).sort_values("_period").reset_index(drop=True)
    if rows.empty:
        return rows, np.zeros(0, dtype=np.int64), pd.Period("1970-01", freq="M")
    first = rows["_period"].iloc[0]
    t = np.array([(p - first).n for p in rows["_period"]], dtype=np.int64)
    if len(np.unique(t)) != len(t):
        raise ValueError("monthly: a month appears more than once")
    if not np.array_equal(t, np.arange(len(t))):
        raise ValueError(
            "monthly: the complete months are not consecutive; the forecast needs a regular series"
        )
    return rows, t, first


def _month_date(period: pd.Period) -> date:
    return date(period.year, period.month, 1)


def _significant(values: np.ndarray, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """``values`` at ``digits`` significant digits. The monthly sums are sums of doubles,
    which differ in their last bits when added in another order (on a cluster); the ETS
    likelihood optimiser turns such a difference into one in the 5th digit of the forecast,
    so the forecast starts from the rounded values (Theil-Sen's medians do not amplify it)."""
    return np.array([float(f"{v:.{digits - 1}e}") if np.isfinite(v) else v for v in values], dtype=float)


def _ets_forecast(
    y: np.ndarray, *, horizon: int, alpha: float, seasonal: int | None, damped: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(forecast, lo, hi, method) for the next ``horizon`` points of ``y``."""
    nan = np.full(horizon, np.nan)
    if len(y) < MIN_FORECAST_POINTS:
        return nan, nan, nan, METHOD_TOO_SHORT
    if np.ptp(y) == 0:
        return np.full(horizon, y[0]), nan, nan, METHOD_CONSTANT
    use_season = seasonal is not None and len(y) >= 2 * seasonal
    method = f"ETS(A,{'Ad' if damped else 'A'},{'A' if use_season else 'N'})"
    if use_season:
        method += f"[{seasonal}]"
    model = ETSModel(
        pd.Series(y),
        error="add",
        trend="add",
        damped_trend=damped,
        seasonal="add" if use_season else None,
        seasonal_periods=seasonal if use_season else None,
    )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            fit = model.fit(disp=False)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            # A series the model fits exactly (sigma -> 0) does not converge, harmlessly.
            logger.info("%s: the likelihood optimisation did not converge", method)
        frame = fit.get_prediction(start=len(y), end=len(y) + horizon - 1).summary_frame(alpha=alpha)
    except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
        logger.warning("%s failed: %s", method, exc)
        return nan, nan, nan, METHOD_FAILED
    mean = frame["mean"].to_numpy(dtype=float)
    if not np.all(np.isfinite(mean)):
        return nan, nan, nan, METHOD_FAILED
    return mean, frame["pi_lower"].to_numpy(dtype=float), frame["pi_upper"].to_numpy(dtype=float), method


def kpi_trends(
    monthly: pd.DataFrame,
    kpis: Sequence[str],
    *,
    horizon: int = 3,
    alpha: float = 0.05,
    z_threshold: float = 3.5,
    seasonal: int | None = None,
    damped: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Trend, forecast and anomalies of each KPI of the monthly table (driver side).

    ``monthly`` is ``monthly_kpis`` as pandas; when it has a ``complete`` column only the
    complete rows are used, and they must be consecutive months. t counts months from the
    first complete month. Missing (null) values of a KPI are left out of its trend and
    anomalies; its forecast uses the run of values after the last missing one.

    Returns (trends, forecast, anomalies):

    - trends, one row per KPI: kpi, months (points used), slope_per_month, slope_lo,
      slope_hi (Theil-Sen, ``scipy.stats.theilslopes`` with its 1 - alpha interval),
      intercept (the line's value at t = 0), relative_slope (slope / |median value|, NaN
      when the median is 0). NaN with fewer than 2 points.
    - forecast, ``horizon`` rows per KPI for the months after the last complete one: kpi,
      month, forecast, lo, hi (the 1 - alpha prediction interval, ``pi_lower``/``pi_upper``
      of ``get_prediction(...).summary_frame(alpha)``) and method. The model is statsmodels'
      ``ETSModel`` with additive error and additive trend, fitted by maximum likelihood:
      method ``ETS(A,A,N)``. The trend is not damped by default: a monthly KPI series has
      12 to 36 points, too few to estimate the damping factor well, the horizon is short,
      and an undamped trend continues the Theil-Sen picture (``damped=True`` gives
      ``ETS(A,Ad,N)``). Seasonality is off by default: 36 months hold three cycles, so each
      of the 11 free seasonal terms rests on about three points, which mostly adds noise
      and widens the interval; ``seasonal=12`` adds additive seasonality (``ETS(A,A,A)[12]``)
      when at least two full cycles are there, and is ignored otherwise. Fewer than 6
      points give method ``too_short`` (all NaN); a constant series gives method
      ``constant`` (its value, NaN bounds); a fit that raises gives ``failed`` (all NaN).
    - anomalies: kpi, month, value, expected, z for months with |z| >= z_threshold, where
      the residual r = value - (intercept + slope * t) from Theil-Sen, z = 0.6745 *
      (r - median(r)) / MAD(r) and expected = intercept + slope * t + median(r). A KPI whose
      MAD is 0 has no anomalies.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if z_threshold <= 0:
        raise ValueError(f"z_threshold must be positive, got {z_threshold}")
    if seasonal is not None and seasonal < 2:
        raise ValueError(f"seasonal must be None or a period of at least 2, got {seasonal}")
    missing = [k for k in kpis if k not in monthly.columns]
    if missing:
        raise ValueError(f"monthly: missing column(s) {missing}; it has {list(monthly.columns)}")
    rows, t, first = _month_index(monthly)
    ahead: list[date | None] = [_month_date(first + len(t) + h) if len(t) else None for h in range(horizon)]

    trends: list[dict[str, Any]] = []
    forecasts: list[dict[str, Any]] = []
    anomalies: list[dict[str, Any]] = []
    for kpi in kpis:
        values = pd.to_numeric(rows[kpi], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(values)
        x, y = t[ok].astype(float), values[ok]
        slope = intercept = lo = hi = relative = math.nan
        if len(y) >= 2:
            fit = stats.theilslopes(y, x, alpha=1 - alpha)
            slope, intercept = float(fit.slope), float(fit.intercept)
            lo, hi = float(fit.low_slope), float(fit.high_slope)
            level = abs(float(np.median(y)))
            relative = slope / level if level > 0 else math.nan
            residual = y - (intercept + slope * x)
            centre = float(np.median(residual))
            mad = float(np.median(np.abs(residual - centre)))
            if mad > 0:
                z = MAD_TO_Z * (residual - centre) / mad
                for i in np.flatnonzero(np.abs(z) >= z_threshold):
                    anomalies.append(
                        {
                            "kpi": kpi,
                            "month": _month_date(first + int(x[i])),
                            "value": float(y[i]),
                            "expected": intercept + slope * float(x[i]) + centre,
                            "z": float(z[i]),
                        }
                    )
        trends.append(
            {
                "kpi": kpi,
                "months": int(len(y)),
                "slope_per_month": slope,
                "slope_lo": lo,
                "slope_hi": hi,
                "intercept": intercept,
                "relative_slope": relative,
            }
        )
        gaps = np.flatnonzero(~ok)
        tail = values[gaps[-1] + 1 :] if len(gaps) else values
        mean, low, high, method = _ets_forecast(
            _significant(tail), horizon=horizon, alpha=alpha, seasonal=seasonal, damped=damped
        )
        for h in range(horizon):
            forecasts.append(
                {
                    "kpi": kpi,
                    "month": ahead[h],
                    "forecast": float(mean[h]),
                    "lo": float(low[h]),
                    "hi": float(high[h]),
                    "method": method,
                }
            )
    return (
        pd.DataFrame(trends, columns=list(TREND_COLUMNS)),
        pd.DataFrame(forecasts, columns=list(FORECAST_COLUMNS)),
        pd.DataFrame(anomalies, columns=list(ANOMALY_COLUMNS)),
    )


def collect_group_rank_sums(
    rows: DataFrame, *, group_col: str, value_col: str, rank_col: str
) -> pd.DataFrame:
    """Per group (a few rows): n, twice its rank sum (exact, as ranks are multiples of 1/2),
    the largest distance of a doubled rank from an integer, null ranks, and the median."""
    twice = F.col(rank_col).cast("double") * 2
    return (
        rows.groupBy(group_col)
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum(F.round(twice).cast("long")).alias("rank_sum2"),
            F.max(F.abs(twice - F.round(twice))).alias("off_half"),
            F.count(F.when(F.col(rank_col).isNull(), True)).alias("null_ranks"),
            F.percentile_approx(value_col, 0.5, MEDIAN_ACCURACY).alias("median"),
        )
        .toPandas()
    )


def collect_tie_sum(rows: DataFrame, *, value_col: str) -> int:
    """sum(t^3 - t) over the counts t of equal values, computed on Spark (one number back).
    Decimal arithmetic: t^3 overflows a long for t above two million."""
    t = F.col("count").cast(T.DecimalType(20, 0))
    total = rows.groupBy(value_col).count().agg(F.sum(t * t * t - t).alias("ties")).first()
    value = None if total is None else total["ties"]
    return 0 if value is None else int(Decimal(value))


def kruskal_wallis(ranked: DataFrame, *, group_col: str, value_col: str, rank_col: str) -> pd.DataFrame:
    """The Kruskal-Wallis H test of ``value_col`` across the groups of ``group_col``.

    ``rank_col`` must hold each row's 1-based average rank (ties averaged) among the rows
    with a non-null group and value (nulls, and NaN values, are left out; rank the same
    rows): the doubled ranks must sum to N(N + 1) and be integers, else ValueError. H is
    12 / (N(N + 1)) * sum(R_g^2 / n_g) - 3(N + 1), divided by the tie correction 1 -
    sum(t^3 - t) / (N^3 - N), computed exactly from integer sums; p = chi2.sf(H, k - 1);
    eta_squared = (H - k + 1) / (N - k). All values equal gives H and p NaN (as scipy).

    Returns one row per group, ordered by group: ``group_col``, n, rank_sum, mean_rank,
    median (Spark ``percentile_approx`` with accuracy 1e6: the lower median, the
    ceil(n / 2)-th smallest value, an observed value; exact for groups up to a million
    rows, within n / 1e6 ranks beyond), and the test's figures repeated on every row: h,
    df (k - 1), p_value, eta_squared, tie_correction, n_total (N), groups (k).
    """
    require_columns(ranked, (group_col, value_col, rank_col), "ranked")
    keep = F.col(group_col).isNotNull() & F.col(value_col).isNotNull()
    if isinstance(ranked.schema[value_col].dataType, T.FloatType | T.DoubleType):
        keep = keep & ~F.isnan(value_col)
    rows = ranked.where(keep).select(group_col, value_col, rank_col)
    groups = collect_group_rank_sums(rows, group_col=group_col, value_col=value_col, rank_col=rank_col)
    groups = groups.sort_values(group_col).reset_index(drop=True)
    k = len(groups)
    if k < 2:
        raise ValueError(f"ranked: the test needs at least two groups in {group_col}, found {k}")
    n_total = int(groups["n"].sum())
    sums2 = [int(s) for s in groups["rank_sum2"]]
    if int(groups["null_ranks"].sum()) > 0 or float(groups["off_half"].max()) > 1e-6:
        raise ValueError(f"ranked: {rank_col} has null ranks or ranks that are not multiples of 1/2")
    if sum(sums2) != n_total * (n_total + 1):
        raise ValueError(
            f"ranked: the ranks in {rank_col} sum to {sum(sums2) / 2} over the {n_total} rows with a "
            f"{group_col} and a {value_col}, not N(N + 1)/2 = {n_total * (n_total + 1) / 2}; "
            "rank exactly those rows (1-based, ties averaged)"
        )
    sizes = [int(n) for n in groups["n"]]
    spread = sum(Fraction(s * s, 4 * n) for s, n in zip(sums2, sizes, strict=True))
    h_raw = Fraction(12, n_total * (n_total + 1)) * spread - 3 * (n_total + 1)
    correction = 1 - Fraction(collect_tie_sum(rows, value_col=value_col), n_total**3 - n_total)
    h = float(h_raw / correction) if correction > 0 else math.nan
    p_value = float(stats.chi2.sf(h, k - 1)) if math.isfinite(h) else math.nan
    eta = (h - k + 1) / (n_total - k) if n_total > k else math.nan
    out = pd.DataFrame(
        {
            group_col: groups[group_col],
            "n": sizes,
            "rank_sum": [s / 2 for s in sums2],
            "mean_rank": [s / (2 * n) for s, n in zip(sums2, sizes, strict=True)],
            "median": groups["median"],
        }
    )
    figures = {
        "h": h,
        "df": k - 1,
        "p_value": p_value,
        "eta_squared": eta,
        "tie_correction": float(correction),
        "n_total": n_total,
        "groups": k,
    }
    return out.assign(**figures)
