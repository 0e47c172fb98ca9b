"""Segment migration between snapshot dates, from gold.segment_snapshots.

A pair of snapshot dates (from, to) is either two consecutive snapshot dates (period
``consecutive``) or the first and the last one (period ``first_to_last``). All pairs are
made at once: a small table of pairs is joined to the snapshot rows once on the from date
and once on the to date, and the two sides are joined on (pair, customer_id) in one full
outer join, so every pair comes from the same shuffle and no job runs per pair. A customer
appears from its first snapshot on: one absent at the from date is ``(new)``, one absent at
the to date is ``(gone)``. Outliers keep whatever ``segment_name`` holds for them, so they
move like any other segment.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from custseg.columns import require_columns

SNAPSHOTS_REQUIRED = ("customer_id", "snapshot_date", "segment_name")
PERIOD_CONSECUTIVE, PERIOD_FIRST_TO_LAST = "consecutive", "first_to_last"
NEW, GONE = "(new)", "(gone)"

TRANSITION_COLUMNS = (
    "period",
    "from_snapshot",
    "to_snapshot",
    "from_segment",
    "to_segment",
    "customers",
    "row_share",
)
FLOW_COLUMNS = (
    "from_snapshot",
    "to_snapshot",
    "segment_name",
    "customers_start",
    "customers_end",
    "inflow",
    "outflow",
    "new_customers",
    "net_change",
)


def _memberships(snapshots: DataFrame) -> DataFrame:
    """(customer_id, snapshot_date, segment_name), the contract columns only."""
    require_columns(snapshots, SNAPSHOTS_REQUIRED, "snapshots")
    return snapshots.select(
        F.col("customer_id").cast("string").alias("customer_id"),
        F.col("snapshot_date").cast("date").alias("snapshot_date"),
        F.col("segment_name").cast("string").alias("segment_name"),
    )


def _snapshot_pairs(memberships: DataFrame, *, first_to_last: bool) -> DataFrame:
    """(period, from_snapshot, to_snapshot): each date with the next one and, if asked,
    the first date with the last (when they differ). A few rows, from one global aggregate
    holding the sorted dates (a dozen or so)."""
    dates = memberships.agg(F.array_sort(F.collect_set("snapshot_date")).alias("dates"))
    consecutive = (
        dates.select("dates", F.posexplode("dates").alias("i", "from_snapshot"))
        .select(
            F.lit(PERIOD_CONSECUTIVE).alias("period"),
            "from_snapshot",
            # element_at is 1-based: the date after position i (0-based) is at i + 2.
            F.try_element_at("dates", F.col("i") + 2).alias("to_snapshot"),
        )
        .where(F.col("to_snapshot").isNotNull())
    )
    if not first_to_last:
        return consecutive
    ends = dates.where(F.size("dates") > 1).select(
        F.lit(PERIOD_FIRST_TO_LAST).alias("period"),
        F.element_at("dates", 1).alias("from_snapshot"),
        F.element_at("dates", -1).alias("to_snapshot"),
    )
    return consecutive.unionByName(ends)


def _transition_counts(memberships: DataFrame, pairs: DataFrame) -> DataFrame:
    """(period, from_snapshot, to_snapshot, from_segment, to_segment, customers) for the
    pairs given; cells with no customer are absent."""
    keys = ["period", "from_snapshot", "to_snapshot", "customer_id"]
    start = F.broadcast(pairs).join(
        memberships.select(
            "customer_id",
            F.col("snapshot_date").alias("from_snapshot"),
            F.col("segment_name").alias("from_segment"),
            F.lit(True).alias("at_start"),
        ),
        on="from_snapshot",
        how="inner",
    )
    end = F.broadcast(pairs).join(
        memberships.select(
            "customer_id",
            F.col("snapshot_date").alias("to_snapshot"),
            F.col("segment_name").alias("to_segment"),
            F.lit(True).alias("at_end"),
        ),
        on="to_snapshot",
        how="inner",
    )
    # Presence flags, not a null segment name, decide (new) and (gone).
    return (
        start.join(end, on=keys, how="full")
        .select(
            "period",
            "from_snapshot",
            "to_snapshot",
            F.when(F.col("at_start").isNull(), F.lit(NEW))
            .otherwise(F.col("from_segment"))
            .alias("from_segment"),
            F.when(F.col("at_end").isNull(), F.lit(GONE)).otherwise(F.col("to_segment")).alias("to_segment"),
        )
        .groupBy("period", "from_snapshot", "to_snapshot", "from_segment", "to_segment")
        .agg(F.count(F.lit(1)).alias("customers"))
    )


def segment_transitions(snapshots: DataFrame) -> DataFrame:
    """Customer counts from each segment to each segment between snapshot dates.

    ``snapshots`` has one row per customer and snapshot date: customer_id, snapshot_date,
    segment_name (other columns, such as is_outlier, are ignored: outliers keep their own
    segment name). Returns one row per non-empty cell: period (``consecutive`` for every
    pair of consecutive snapshot dates, ``first_to_last`` for the first and the last date),
    from_snapshot, to_snapshot, from_segment (``(new)`` for customers absent at
    from_snapshot), to_segment (``(gone)`` for customers absent at to_snapshot), customers
    (long) and row_share (double: customers over all customers of from_segment in that
    pair, those who left included, so it sums to 1 per pair and from_segment).
    """
    memberships = _memberships(snapshots)
    counts = _transition_counts(memberships, _snapshot_pairs(memberships, first_to_last=True))
    row = Window.partitionBy("period", "from_snapshot", "to_snapshot", "from_segment").rowsBetween(
        Window.unboundedPreceding, Window.unboundedFollowing
    )
    return counts.select(
        *TRANSITION_COLUMNS[:-1],
        (F.col("customers") / F.sum("customers").over(row)).alias("row_share"),
    )


def _long(condition: Column) -> Column:
    return F.when(condition, F.col("customers")).otherwise(F.lit(0)).cast("long")


def segment_flows(snapshots: DataFrame) -> DataFrame:
    """Customers entering and leaving each segment between consecutive snapshot dates.

    ``snapshots`` as for :func:`segment_transitions`. Returns one row per consecutive pair
    and segment with customers at either date: from_snapshot, to_snapshot, segment_name,
    customers_start, customers_end, inflow (customers in the segment at to_snapshot who
    were not in it at from_snapshot, new customers included), outflow (in it at
    from_snapshot, not at to_snapshot, departed customers included), new_customers (the
    inflow from ``(new)``) and net_change (customers_end - customers_start, which equals
    inflow - outflow); all long.
    """
    memberships = _memberships(snapshots)
    counts = _transition_counts(memberships, _snapshot_pairs(memberships, first_to_last=False))
    moved = F.col("from_segment") != F.col("to_segment")
    # Each transition cell counts once for the segment it leaves and once for the one it enters.
    leaving = counts.where(F.col("from_segment") != NEW).select(
        "from_snapshot",
        "to_snapshot",
        F.col("from_segment").alias("segment_name"),
        _long(F.lit(True)).alias("customers_start"),
        F.lit(0).cast("long").alias("customers_end"),
        F.lit(0).cast("long").alias("inflow"),
        _long(moved).alias("outflow"),
        F.lit(0).cast("long").alias("new_customers"),
    )
    entering = counts.where(F.col("to_segment") != GONE).select(
        "from_snapshot",
        "to_snapshot",
        F.col("to_segment").alias("segment_name"),
        F.lit(0).cast("long").alias("customers_start"),
        _long(F.lit(True)).alias("customers_end"),
        _long(moved).alias("inflow"),
        F.lit(0).cast("long").alias("outflow"),
        _long(F.col("from_segment") == NEW).alias("new_customers"),
    )
    measures = ("customers_start", "customers_end", "inflow", "outflow", "new_customers")
    return (
        leaving.unionByName(entering)
        .groupBy("from_snapshot", "to_snapshot", "segment_name")
        .agg(*[F.sum(m).alias(m) for m in measures])
        .select(
            "from_snapshot",
            "to_snapshot",
            "segment_name",
            *measures,
            (F.col("customers_end") - F.col("customers_start")).alias("net_change"),
        )
    )
