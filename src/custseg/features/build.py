"""Customer features per customer and snapshot date, from the events and the identity map.

One aggregation over all event tables (`event_totals`): projected onto a narrow schema,
unioned, joined once to the identity map and summed per (customer, segment), where the
segments are the intervals between the cuts of every snapshot D and every D - bound (the
window and trend bounds), at most 63 days long. No row is repeated. Each segment lies in
one ring of each snapshot (the bands between consecutive bounds; the windows are nested,
so each is a union of rings), so a second ``groupBy`` over the few segment rows, each
repeated once per snapshot whose horizon holds it, gives every window as conditional sums.
Lifetime purchase features (first and last purchase, gaps, dominant channel) come from the
orders alone, which are few. Everything is exact to the calendar day (session time zone,
UTC by config): a snapshot at D uses events with day < D; a window of w days is
[D - w days, D).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date, timedelta
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from custseg.columns import require_columns
from custseg.config import FeaturesConfig
from custseg.contract import EVENT_TABLES, SOURCE_KEY, SOURCE_SYSTEMS
from custseg.events import as_date, customer_keys, is_order, mapped_orders

DEFAULT_WINDOWS = (30, 90, 180, 365, 1095)
KEY = SOURCE_KEY
STATUS_MAPPED, STATUS_UNMAPPED, STATUS_ANONYMOUS = "mapped", "unmapped", "anonymous"
# Longest segment (days): a segment's usage days are the bits of one bigint (bits 0..62).
MAX_SEGMENT_DAYS = 63

# The event tables, in output order; event_totals has a row count ``n_<table>`` of each
# table given (also for the mapping report).
# The tables whose rows are the customer's own activity (last_active_date, active_span_days).
ACTIVITY_TABLES = ("transactions", "support_contacts", "product_usage")
TABLE_REQUIRED: dict[str, tuple[str, ...]] = {
    "transactions": (
        "source_system",
        "source_id",
        "ts",
        "amount",
        "discount",
        "cost",
        "product_category",
        "channel",
    ),
    "support_contacts": ("source_system", "source_id", "ts", "handle_minutes", "resolved", "cost"),
    "product_usage": (
        "source_system",
        "source_id",
        "date",
        "sessions",
        "events",
        "active_minutes",
        "features_used",
    ),
    "marketing_touches": ("source_system", "source_id", "ts", "cost"),
}

# Window features: name -> the measure summed; a sum of a null-free measure is 0 for a
# customer with no rows in the window. Derived ones are computed after the groupBy.
WINDOW_SUMS: dict[str, str] = {
    "orders": "orders",
    "monetary": "net_amount",
    "gross_sales": "gross_amount",
    "discount": "discount",
    "cogs": "cogs",
    "support_contacts": "n_support_contacts",
    "support_minutes": "support_minutes",
    "support_cost": "support_cost",
    "support_resolved": "support_resolved",
    "sessions": "sessions",
    "events": "events",
    "active_minutes": "active_minutes",
    "touches": "n_marketing_touches",
    "touch_cost": "touch_cost",
}
WINDOW_MAX: dict[str, str] = {"max_daily_features_used": "features_used"}
# Days with at least one row of the measure's table (several records of one customer can
# have usage on the same day: one active day).
WINDOW_DAYS: dict[str, str] = {"active_days": "n_product_usage"}
WINDOW_FEATURES_BY_TABLE: dict[str, tuple[str, ...]] = {
    "transactions": (
        "orders",
        "monetary",
        "gross_sales",
        "discount",
        "cogs",
        "gross_margin",
        "discount_share",
    ),
    "support_contacts": ("support_contacts", "support_minutes", "support_cost", "support_resolved"),
    "product_usage": ("active_days", "sessions", "events", "active_minutes", "max_daily_features_used"),
    "marketing_touches": ("touches", "touch_cost"),
}


@dataclass(frozen=True)
class EventTables:
    """The event tables of the data contract; any but transactions may be absent (None)."""

    transactions: DataFrame
    support_contacts: DataFrame | None = None
    product_usage: DataFrame | None = None
    marketing_touches: DataFrame | None = None

    def present(self) -> dict[str, DataFrame]:
        """The tables given, by contract name (the field names)."""
        tables = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: df for name, df in tables.items() if df is not None}


def month_end_snapshots(as_of: date | str, months: int = 12) -> list[date]:
    """``as_of`` and the ``months`` month-end snapshots before it, ascending.

    A month-end snapshot is taken on the first day of the next month, so it holds every
    event of the month. ``as_of`` itself is included (once, if it is a first of month).
    """
    end = as_date(as_of)
    firsts: list[date] = []
    year, month = end.year, end.month
    if end.day == 1:  # as_of is itself a month-end snapshot
        month -= 1
    for _ in range(months):
        if month == 0:
            year, month = year - 1, 12
        firsts.append(date(year, month, 1))
        month -= 1
    return sorted({*firsts, end})


def _day_aggregate(measure: str) -> Column:
    """How a measure combines over rows: the largest value for maxima, else the sum."""
    return (F.max(measure) if measure in WINDOW_MAX.values() else F.sum(measure)).alias(measure)


def _dbl(name: str) -> Column:
    """A measure as a double, null as 0 (a missing minute or cost adds nothing)."""
    return F.coalesce(F.col(name).cast("double"), F.lit(0.0))


def _narrow(name: str, df: DataFrame) -> DataFrame:
    """One event table as (source_system, source_id, day, ``n_<table>``, its day measures)."""
    require_columns(df, TABLE_REQUIRED[name], name)
    day = F.col("date") if name == "product_usage" else F.to_date("ts")
    if name == "transactions":
        order = is_order()
        measures = {
            "orders": order.cast("long"),
            "net_amount": _dbl("amount"),
            "gross_amount": F.when(order, _dbl("amount") + _dbl("discount")).otherwise(0.0),
            "discount": F.when(order, _dbl("discount")).otherwise(0.0),
            "cogs": _dbl("cost"),
        }
    elif name == "support_contacts":
        measures = {
            "support_minutes": _dbl("handle_minutes"),
            "support_cost": _dbl("cost"),
            "support_resolved": F.coalesce(F.col("resolved"), F.lit(False)).cast("long"),
        }
    elif name == "product_usage":
        measures = {
            "sessions": F.coalesce(F.col("sessions"), F.lit(0)).cast("long"),
            "events": F.coalesce(F.col("events"), F.lit(0)).cast("long"),
            "active_minutes": _dbl("active_minutes"),
            "features_used": F.coalesce(F.col("features_used"), F.lit(0)).cast("int"),
        }
    else:
        measures = {"touch_cost": _dbl("cost")}
    return df.select(
        F.col("source_system").cast("string").alias("source_system"),
        F.col("source_id").cast("string").alias("source_id"),
        day.alias("day"),
        F.lit(1).cast("long").alias(f"n_{name}"),
        *[c.alias(n) for n, c in measures.items()],
    )


@dataclass(frozen=True)
class SnapshotPlan:
    """Validated snapshot dates (ascending), windows (ascending) and trend length."""

    dates: tuple[date, ...]
    windows: tuple[int, ...]
    trend_days: int

    @classmethod
    def of(
        cls, snapshot_dates: Sequence[date | str], windows_days: Sequence[int], trend_days: int
    ) -> SnapshotPlan:
        dates = tuple(sorted({as_date(d, "snapshot_dates") for d in snapshot_dates}))
        if not dates:
            raise ValueError("snapshot_dates is empty")
        windows = tuple(sorted(int(w) for w in windows_days))
        if not windows or windows[0] < 1 or len(set(windows)) != len(windows):
            raise ValueError(f"windows_days must be distinct positive integers, got {list(windows_days)}")
        if trend_days < 1:
            raise ValueError(f"trend_days must be positive, got {trend_days}")
        return cls(dates, windows, trend_days)

    @property
    def bounds(self) -> list[int]:
        """Upper bounds (days ago) of the rings every window and the trend are unions of."""
        return sorted({*self.windows, self.trend_days, 2 * self.trend_days})

    @property
    def cuts(self) -> list[date]:
        """The calendar days that split time into segments: every snapshot D and every
        D - bound, with extra cuts so no segment is longer than ``MAX_SEGMENT_DAYS``.

        The segments are the intervals between consecutive cuts; the last cut is the
        last snapshot, where time after it is no longer needed. Because every ring bound
        of every snapshot is a cut, each segment lies in exactly one ring of each
        snapshot (or outside its horizon): summing rows per segment loses nothing.
        """
        points = sorted({d - timedelta(days=b) for d in self.dates for b in (0, *self.bounds)})
        cuts = [points[0]]
        for point in points[1:]:
            while (point - cuts[-1]).days > MAX_SEGMENT_DAYS:
                cuts.append(cuts[-1] + timedelta(days=MAX_SEGMENT_DAYS))
            cuts.append(point)
        return cuts


def _mapping_status() -> Column:
    return (
        F.when(F.col("customer_id").isNotNull(), F.lit(STATUS_MAPPED))
        .when(F.col("source_id").isNull(), F.lit(STATUS_ANONYMOUS))
        .otherwise(F.lit(STATUS_UNMAPPED))
    )


def segment_of(cuts: Sequence[date], day: Column) -> Column:
    """The start of the segment holding ``day`` (the greatest cut <= day), null before
    the first cut and on or after the last: a balanced tree of comparisons, so a row
    costs about log2(len(cuts)) of them."""

    def floor(lo: int, hi: int) -> Column:  # cuts[lo] <= day < cuts[hi]
        if hi - lo == 1:
            return F.lit(cuts[lo])
        mid = (lo + hi) // 2
        return F.when(day < F.lit(cuts[mid]), floor(lo, mid)).otherwise(floor(mid, hi))

    inside = (day >= F.lit(cuts[0])) & (day < F.lit(cuts[-1]))
    return F.when(inside, floor(0, len(cuts) - 1)) if len(cuts) > 1 else F.lit(None).cast("date")


def event_totals(
    events: EventTables,
    identity_map: DataFrame,
    *,
    snapshot_dates: Sequence[date | str],
    windows_days: Sequence[int] = DEFAULT_WINDOWS,
    trend_days: int = 90,
) -> DataFrame:
    """Every event row joined once to the identity map and summed per (customer_id,
    mapping_status, segment_start), in one aggregation over all the event tables.

    The segments are the intervals between the cuts of ``SnapshotPlan.cuts``; rows
    before the first cut or on or after the last snapshot have a null segment_start and
    are summed too (they count in the mapping report and in the first event day).
    Columns: customer_id, mapping_status, segment_start, first_day, last_active_day (the
    last day with a row of ``ACTIVITY_TABLES``, null without), ``n_<table>`` and the
    measures of the tables given (others absent; null where a group has no row of the
    table), and for product usage ``active_days_count``, the distinct days with usage in
    the segment (a bit per day ORed over the customer's records, then counted). Events
    whose key maps to no customer keep customer_id null with mapping_status
    ``unmapped`` (``anonymous`` for a touch without a source id), so they are counted,
    not lost. No row is repeated: each lands in one segment.
    """
    plan = SnapshotPlan.of(snapshot_dates, windows_days, trend_days)
    cuts = plan.cuts
    present = events.present()
    narrow = None
    for name, df in present.items():
        part = _narrow(name, df)
        narrow = part if narrow is None else narrow.unionByName(part, allowMissingColumns=True)
    assert narrow is not None
    measures = [c for c in narrow.columns if c not in (*KEY, "day")]
    rows = narrow.join(customer_keys(identity_map), on=list(KEY), how="left").select(
        "customer_id",
        "day",
        _mapping_status().alias("mapping_status"),
        segment_of(cuts, F.col("day")).alias("segment_start"),
        *measures,
    )
    aggs = [_day_aggregate(m) for m in measures]
    aggs.append(F.min("day").alias("first_day"))
    # The customer's own activity (orders and refunds, support contacts, product usage);
    # marketing touches are the company's, and go on after a customer has left.
    active = [F.col(f"n_{t}").isNotNull() for t in ACTIVITY_TABLES if t in present]
    if active:
        is_active = active[0]
        for cond in active[1:]:
            is_active = is_active | cond
        aggs.append(F.max(F.when(is_active, F.col("day"))).alias("last_active_day"))
    if "product_usage" in present:
        day_bit = F.expr("shiftleft(CAST(1 AS BIGINT), datediff(day, segment_start))")
        aggs.append(F.bit_or(F.when(F.col("n_product_usage").isNotNull(), day_bit)).alias("_usage_days"))
    totals = rows.groupBy("customer_id", "mapping_status", "segment_start").agg(*aggs)
    if "product_usage" in present:
        totals = totals.withColumn("active_days_count", F.bit_count("_usage_days").cast("long")).drop(
            "_usage_days"
        )
    return totals


def persist_by_customer(df: DataFrame, storage_level: StorageLevel) -> DataFrame:
    """``df`` hash-partitioned by customer_id and persisted, planned with adaptive execution
    off so the cached plan keeps that partitioning: per-customer aggregates and joins over it
    then need no shuffle (an adaptive cached plan reports an unknown partitioning, measured
    on Spark 4.0). The session's setting is restored before returning."""
    spark = df.sparkSession
    key = "spark.sql.adaptive.enabled"
    before = spark.conf.get(key) or "true"
    spark.conf.set(key, "false")
    try:
        return df.repartition("customer_id").persist(storage_level)
    finally:
        spark.conf.set(key, before)


def event_mapping_report(totals: DataFrame) -> DataFrame:
    """Per event table: events, mapped, unmapped and anonymous row counts (a tiny table),
    from ``event_totals``."""
    tables = [t for t in EVENT_TABLES if f"n_{t}" in totals.columns]
    agg = totals.groupBy("mapping_status").agg(*[F.sum(f"n_{t}").alias(t) for t in tables])
    stacked = agg.select(
        "mapping_status",
        F.explode(F.array(*[F.struct(F.lit(t).alias("table"), F.col(t).alias("n")) for t in tables])).alias(
            "x"
        ),
    ).select("mapping_status", "x.table", F.coalesce("x.n", F.lit(0)).alias("n"))

    def count(status: str) -> Column:
        return F.sum(F.when(F.col("mapping_status") == status, F.col("n")).otherwise(0))

    return stacked.groupBy("table").agg(
        F.sum("n").cast("long").alias("events"),
        count(STATUS_MAPPED).cast("long").alias("mapped"),
        count(STATUS_UNMAPPED).cast("long").alias("unmapped"),
        count(STATUS_ANONYMOUS).cast("long").alias("anonymous"),
    )


def snapshots_holding(
    snapshot_dates: Sequence[date], horizon_days: int | None = None, day: Column | None = None
) -> Column:
    """The snapshot dates D with day < D (and day >= D - horizon_days), as an array;
    ``day`` defaults to the column ``day``."""
    day = F.col("day") if day is None else day

    def holds(d: Column) -> Column:
        before = day < d
        return before if horizon_days is None else before & (day >= F.date_sub(d, horizon_days))

    return F.filter(F.array(*[F.lit(d) for d in snapshot_dates]), holds)


def explode_to_snapshots(
    df: DataFrame, snapshot_dates: Sequence[date], horizon_days: int | None = None, day: str = "day"
) -> DataFrame:
    """Each row once per snapshot D with ``day`` < D (and ``day`` >= D - horizon_days),
    with its days_ago."""
    holding = snapshots_holding(snapshot_dates, horizon_days, day=F.col(day))
    return df.withColumn("snapshot_date", F.explode(holding)).withColumn(
        "days_ago", F.datediff("snapshot_date", day)
    )


def ring_of(bounds: Sequence[int]) -> Column:
    """The ring of a row: the smallest bound b with days_ago <= b (null beyond the last)."""
    ring: Column | None = None
    for b in bounds:
        cond = F.col("days_ago") <= b
        ring = F.when(cond, F.lit(b)) if ring is None else ring.when(cond, F.lit(b))
    assert ring is not None
    return ring


def _window_aggregates(rings: DataFrame, windows: Sequence[int], trend_days: int) -> list[Column]:
    """Window features from ring totals: the rings with ring <= w make the window of w days."""
    aggs: list[Column] = []
    ring = F.col("ring")
    for w in windows:
        inside = ring <= w
        for name, measure in WINDOW_SUMS.items():
            if measure in rings.columns:
                aggs.append(F.sum(F.when(inside, F.col(measure)).otherwise(0)).alias(f"{name}_{w}d"))
        for name in WINDOW_DAYS:
            if f"{name}_count" in rings.columns:
                total = F.sum(F.when(inside, F.col(f"{name}_count")).otherwise(0))
                aggs.append(total.cast("long").alias(f"{name}_{w}d"))
        for name, measure in WINDOW_MAX.items():
            if measure in rings.columns:
                aggs.append(F.max(F.when(inside, F.col(measure)).otherwise(0)).alias(f"{name}_{w}d"))
    if "last_active_day" in rings.columns:
        aggs.append(F.max(F.when(ring <= windows[-1], F.col("last_active_day"))).alias("last_active_date"))
    if "sessions" in rings.columns:
        recent = ring <= trend_days
        before = (ring > trend_days) & (ring <= 2 * trend_days)
        aggs += [
            F.sum(F.when(recent, F.col("sessions")).otherwise(0)).alias("_sessions_recent"),
            F.sum(F.when(before, F.col("sessions")).otherwise(0)).alias("_sessions_before"),
        ]
    return aggs


def _derived_window_features(df: DataFrame, windows: Sequence[int], tables: Sequence[str]) -> DataFrame:
    cols: dict[str, Column] = {}
    for w in windows:
        s = f"_{w}d"
        if "transactions" in tables:
            cols["gross_margin" + s] = F.col("monetary" + s) - F.col("cogs" + s)
            cols["discount_share" + s] = F.when(
                F.col("gross_sales" + s) > 0, F.col("discount" + s) / F.col("gross_sales" + s)
            ).otherwise(0.0)
        costs = [F.col(c + s) for c in ("support_cost", "touch_cost") if c + s in df.columns]
        cols["cost_to_serve" + s] = sum(costs[1:], costs[0]) if costs else F.lit(0.0)
        if "transactions" in tables:
            cols["profit" + s] = F.col("gross_margin" + s) - F.col("cost_to_serve" + s)
    return df.withColumns(cols)


def _lifetime_purchases(orders: DataFrame, snapshot_dates: Sequence[date]) -> DataFrame:
    """First/last purchase, orders, AOV and purchase-day gaps per customer and snapshot."""
    purchase_days = orders.groupBy("customer_id", "day").agg(
        F.count("*").alias("orders"), F.sum("amount").alias("order_amount")
    )
    by_customer = Window.partitionBy("customer_id").orderBy("day")
    with_gaps = purchase_days.withColumn("gap_days", F.datediff("day", F.lag("day").over(by_customer)))
    exploded = explode_to_snapshots(with_gaps, snapshot_dates)
    gap = F.col("gap_days").cast("double")
    return exploded.groupBy("customer_id", "snapshot_date").agg(
        F.min("day").alias("first_purchase_date"),
        F.max("day").alias("last_purchase_date"),
        F.sum("orders").alias("orders_lifetime"),
        F.sum("order_amount").alias("_order_amount_lifetime"),
        F.count("*").alias("purchase_days"),
        F.avg(gap).alias("mean_gap_days"),
        F.stddev_samp(gap).alias("std_gap_days"),
    )


def dominant_values(orders: DataFrame, snapshot_dates: Sequence[date], columns: Sequence[str]) -> DataFrame:
    """Per (customer_id, snapshot_date): each column's most frequent value over the orders
    before the snapshot; ties go to the alphabetically first value.

    ``orders`` has customer_id, day and ``columns``. Counting per value and taking the
    minimum of (-count, value) keeps every aggregate a plain hash aggregate.
    """
    exploded = explode_to_snapshots(orders, snapshot_dates)
    out = None
    for c in columns:
        counts = exploded.where(F.col(c).isNotNull()).groupBy("customer_id", "snapshot_date", c).count()
        best = counts.groupBy("customer_id", "snapshot_date").agg(
            F.min(F.struct((-F.col("count")).alias("n"), F.col(c).alias("v"))).alias("best")
        )
        best = best.select("customer_id", "snapshot_date", F.col("best.v").alias(f"dominant_{c}"))
        out = best if out is None else out.join(best, on=["customer_id", "snapshot_date"], how="full")
    assert out is not None
    return out


def customer_attributes(
    attributes: DataFrame,
    identity_map: DataFrame,
    *,
    categorical: Sequence[str],
    numeric: Sequence[str] = (),
    source_priority: Sequence[str] = SOURCE_SYSTEMS,
) -> DataFrame:
    """One row per customer: each attribute by survivorship of its rows.

    Rule per attribute: the most frequent non-null value among the customer's attribute
    rows; ties go to the system earliest in ``source_priority``, then the smallest value.
    """
    names = [*categorical, *numeric]
    require_columns(attributes, [*KEY, *names], "customer_attributes")
    id_map = customer_keys(identity_map)
    if not names:
        return identity_map.select("customer_id").distinct()
    priority = F.coalesce(
        F.array_position(F.array(*[F.lit(s) for s in source_priority]), F.col("source_system")),
        F.lit(len(source_priority) + 1),
    )
    # One shuffle by customer: the counts, the ranking and the pivot below then need none.
    rows = (
        attributes.join(id_map, on=list(KEY), how="inner")
        .repartition("customer_id")
        .select(
            "customer_id",
            priority.alias("priority"),
            F.explode(
                F.array(
                    *[
                        F.struct(F.lit(a).alias("attribute"), F.col(a).cast("string").alias("value"))
                        for a in names
                    ]
                )
            ).alias("kv"),
        )
    )
    counted = (
        rows.where(F.col("kv.value").isNotNull())
        .groupBy("customer_id", F.col("kv.attribute").alias("attribute"), F.col("kv.value").alias("value"))
        .agg(F.count("*").alias("n"), F.min("priority").alias("priority"))
    )
    best = Window.partitionBy("customer_id", "attribute").orderBy(
        F.col("n").desc(), F.col("priority").asc(), F.col("value").asc()
    )
    winners = counted.withColumn("rank", F.row_number().over(best)).where(F.col("rank") == 1)
    wide = winners.groupBy("customer_id").pivot("attribute", list(names)).agg(F.first("value"))
    return wide.select(
        "customer_id",
        *[F.col(a).alias(a) for a in categorical],
        *[F.col(a).cast("double").alias(a) for a in numeric],
    )


def features_from_totals(
    totals: DataFrame,
    *,
    snapshot_dates: Sequence[date | str],
    windows_days: Sequence[int] = DEFAULT_WINDOWS,
    trend_days: int = 90,
    orders: DataFrame | None = None,
    attributes: DataFrame | None = None,
) -> DataFrame:
    """Feature rows per (customer_id, snapshot_date) from ``event_totals`` output (built
    with the same snapshot dates, windows and trend).

    A customer appears at snapshot D when any of its mapped events is before D.
    ``orders`` is the output of ``mapped_orders`` (lifetime purchase features, dominant
    channel and category), ``attributes`` that of ``customer_attributes``; either may be
    None.
    """
    plan = SnapshotPlan.of(snapshot_dates, windows_days, trend_days)
    dates, windows = list(plan.dates), list(plan.windows)
    tables = [t for t in EVENT_TABLES if f"n_{t}" in totals.columns]
    bounds = plan.bounds
    mapped = totals.where(F.col("mapping_status") == STATUS_MAPPED)
    first_seen = mapped.groupBy("customer_id").agg(F.min("first_day").alias("day"))
    spine = explode_to_snapshots(first_seen, dates).select(
        "customer_id", "snapshot_date", F.col("day").alias("first_event_date")
    )
    # Each segment to the snapshots whose horizon holds it, in the ring it lies in there.
    segments = mapped.where(F.col("segment_start").isNotNull())
    rings = explode_to_snapshots(segments, dates, horizon_days=bounds[-1], day="segment_start").withColumn(
        "ring", ring_of(bounds)
    )
    windowed = rings.groupBy("customer_id", "snapshot_date").agg(
        *_window_aggregates(rings, windows, trend_days)
    )
    out = spine.join(windowed, on=["customer_id", "snapshot_date"], how="left")
    window_cols = [c for c in windowed.columns if c not in ("customer_id", "snapshot_date")]
    out = out.fillna(0, subset=window_cols)
    out = _derived_window_features(out, windows, tables)
    snap = F.col("snapshot_date")
    if "sessions" in totals.columns:
        out = out.withColumn(
            "sessions_trend", F.log1p(F.col("_sessions_recent")) - F.log1p(F.col("_sessions_before"))
        )
    if orders is not None:
        lifetime = _lifetime_purchases(orders, dates)
        out = out.join(lifetime, on=["customer_id", "snapshot_date"], how="left").withColumns(
            {
                "orders_lifetime": F.coalesce(F.col("orders_lifetime"), F.lit(0)),
                "purchase_days": F.coalesce(F.col("purchase_days"), F.lit(0)),
                "recency_days": F.datediff(snap, F.col("last_purchase_date")),
                "tenure_days": F.datediff(snap, F.col("first_purchase_date")),
                "avg_order_value": F.col("_order_amount_lifetime") / F.col("orders_lifetime"),
                "is_repeat_buyer": F.coalesce(F.col("purchase_days") >= 2, F.lit(False)),
            }
        )
        dominant = dominant_values(orders, dates, ["channel", "product_category"])
        out = out.join(dominant, on=["customer_id", "snapshot_date"], how="left")
    if "support_contacts" in tables:
        w = windows[-1]
        out = out.withColumn(
            "support_resolution_rate",
            F.when(
                F.col(f"support_contacts_{w}d") > 0,
                F.col(f"support_resolved_{w}d") / F.col(f"support_contacts_{w}d"),
            ),
        )
    if attributes is not None:
        out = out.join(attributes, on="customer_id", how="left")
    out = out.withColumn("days_since_first_event", F.datediff(snap, F.col("first_event_date")))
    if "last_active_date" in out.columns:
        # Rates over this span, not over the whole window, describe how a customer behaved
        # while active: a customer who left two years ago is not a slow one.
        span_start = F.greatest(F.col("first_event_date"), F.date_sub(snap, windows[-1]))
        out = out.withColumns(
            {
                "days_since_last_active": F.datediff(snap, F.col("last_active_date")),
                "active_span_days": F.datediff(F.col("last_active_date"), span_start) + 1,
            }
        )
    return out.select(*feature_columns(out.columns, windows, tables))


def feature_columns(available: Sequence[str], windows: Sequence[int], tables: Sequence[str]) -> list[str]:
    """The output column order: keys, lifetime, windows by table, derived, attributes."""
    head = ["customer_id", "snapshot_date", "first_event_date", "days_since_first_event"]
    lifetime = [
        "first_purchase_date",
        "last_purchase_date",
        "recency_days",
        "tenure_days",
        "last_active_date",
        "days_since_last_active",
        "active_span_days",
        "orders_lifetime",
        "purchase_days",
        "avg_order_value",
        "mean_gap_days",
        "std_gap_days",
        "is_repeat_buyer",
        "dominant_channel",
        "dominant_product_category",
        "support_resolution_rate",
        "sessions_trend",
    ]
    windowed = [f"{name}_{w}d" for w in windows for t in tables for name in (*WINDOW_FEATURES_BY_TABLE[t],)]
    windowed += [f"{name}_{w}d" for w in windows for name in ("cost_to_serve", "profit")]
    ordered = [c for c in (*head, *lifetime, *windowed) if c in available]
    rest = [c for c in available if c not in ordered and not c.startswith("_") and c != "day"]
    return ordered + rest


@dataclass(frozen=True)
class FeatureSpec:
    """What features to build: the windows, the trend, and which customer attributes are
    carried (``categorical_attributes`` None: every column but the key and the numeric
    ones) with which source winning a tie. ``FeatureSpec.of(cfg.features)`` is the stage's."""

    windows_days: tuple[int, ...] = DEFAULT_WINDOWS
    trend_days: int = 90
    categorical_attributes: tuple[str, ...] | None = None
    numeric_attributes: tuple[str, ...] = ()
    attribute_source_priority: tuple[str, ...] = SOURCE_SYSTEMS

    @classmethod
    def of(cls, cfg: FeaturesConfig) -> FeatureSpec:
        return cls(
            windows_days=tuple(cfg.windows_days),
            trend_days=cfg.trend_days,
            categorical_attributes=(
                None if cfg.categorical_attributes is None else tuple(cfg.categorical_attributes)
            ),
            numeric_attributes=tuple(cfg.numeric_attributes),
            attribute_source_priority=tuple(cfg.attribute_source_priority),
        )


def build_features(
    events: EventTables,
    identity_map: DataFrame,
    snapshot_dates: Sequence[date | str],
    spec: FeatureSpec = FeatureSpec(),
    attributes: DataFrame | None = None,
    storage_level: StorageLevel = StorageLevel.MEMORY_AND_DISK,
) -> tuple[DataFrame, DataFrame]:
    """The one way features are built: one row per (customer_id, snapshot_date) (see
    docs/features.md for each column), and the ``event_totals`` they are built from,
    persisted at ``storage_level`` (the caller may unpersist them once done;
    ``event_mapping_report`` reads them too). ``attributes`` is the customer_attributes
    table, carried by survivorship as ``spec`` says."""
    # Two branches read the totals (spine and windows); persisted so the events are
    # scanned and joined once (Spark reuses no exchange across branches whose columns differ).
    totals = persist_by_customer(
        event_totals(
            events,
            identity_map,
            snapshot_dates=snapshot_dates,
            windows_days=spec.windows_days,
            trend_days=spec.trend_days,
        ),
        storage_level,
    )
    attrs = None
    if attributes is not None:
        numeric = list(spec.numeric_attributes)
        categorical = (
            list(spec.categorical_attributes)
            if spec.categorical_attributes is not None
            else [c for c in attributes.columns if c not in (*KEY, *numeric)]
        )
        attrs = customer_attributes(
            attributes,
            identity_map,
            categorical=categorical,
            numeric=numeric,
            source_priority=spec.attribute_source_priority,
        )
    features = features_from_totals(
        totals,
        snapshot_dates=snapshot_dates,
        windows_days=spec.windows_days,
        trend_days=spec.trend_days,
        attributes=attrs,
        orders=mapped_orders(events.transactions, identity_map),
    )
    return features, totals


def build_feature_snapshots(
    transactions: DataFrame,
    identity_map: DataFrame,
    *,
    snapshot_dates: Sequence[date | str],
    support: DataFrame | None = None,
    usage: DataFrame | None = None,
    touches: DataFrame | None = None,
    attributes: DataFrame | None = None,
    spec: FeatureSpec = FeatureSpec(),
) -> DataFrame:
    """``build_features`` on the event tables given one by one. The event totals behind it
    stay cached (memory and disk) until ``spark.catalog.clearCache()`` or the session's end."""
    events = EventTables(transactions, support, usage, touches)
    return build_features(events, identity_map, snapshot_dates, spec, attributes)[0]


def build_customer_features(
    transactions: DataFrame, identity_map: DataFrame, *, as_of: date | str, **tables_and_spec: Any
) -> DataFrame:
    """One feature row per customer_id at ``as_of`` (events before it); no snapshot column.
    Other arguments as ``build_feature_snapshots``."""
    snapshot_dates = [as_date(as_of)]
    features = build_feature_snapshots(
        transactions, identity_map, snapshot_dates=snapshot_dates, **tables_and_spec
    )
    return features.drop("snapshot_date")
