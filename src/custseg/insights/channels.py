"""Channel economics per segment: marketing touches, funnel reach and acquisition value.

Touches are first summed per (source record, channel, funnel stage), which shrinks the
largest table before its one join to the identity map and the customer segments; a second
sum per (channel, segment, customer, stage) gives one row per customer reaching a stage, so
reach is a plain count with no ``countDistinct``. Acquisition figures come from the customer
table alone (acquisition_channel, acquisition_cost, clv). The two sides meet on (channel,
segment_name) in a small join, so a channel that acquired customers but was never touched
still has rows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from itertools import pairwise

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from custseg.columns import require_columns
from custseg.contract import SOURCE_KEY
from custseg.events import IDENTITY_MAP_COLUMNS, as_date
from custseg.insights.kpis import REC, record_customers, record_key

KEY = SOURCE_KEY
TOUCHES_REQUIRED = ("source_system", "source_id", "ts", "channel", "cost", "funnel_stage")
IDENTITY_MAP_REQUIRED = IDENTITY_MAP_COLUMNS
CUSTOMERS_REQUIRED = (
    "customer_id",
    "segment_name",
    "is_outlier",
    "acquisition_channel",
    "acquisition_cost",
    "clv",
)
DEFAULT_STAGES = ("visit", "signup", "trial", "paid")

ANONYMOUS, UNMAPPED, ALL = "(anonymous)", "(unmapped)", "(all)"
# A mapped customer missing from the customer table (or with no segment name).
UNSEGMENTED = "(unsegmented)"
# A touch or an acquisition without a channel: joins on the channel need a non-null key.
UNKNOWN_CHANNEL = "(unknown)"
# Rows whose touches have no customer behind them: reach and conversions are null there.
NO_CUSTOMER = (ANONYMOUS, UNMAPPED)

_STAGE_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _check_stages(stages: Sequence[str]) -> tuple[str, ...]:
    if isinstance(stages, str):
        raise TypeError(f"stages must be a sequence of stage names, not the string {stages!r}")
    names = tuple(stages)
    if not names:
        raise ValueError("stages must name at least one funnel stage")
    bad = [s for s in names if not isinstance(s, str) or not _STAGE_NAME.fullmatch(s)]
    if bad:
        raise ValueError(f"stages must be lower-case identifiers (they name columns), got {bad}")
    if len(set(names)) != len(names):
        raise ValueError(f"stages must be distinct, got {list(names)}")
    return names


def _ratio(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator as a double, null when the denominator is 0 or null."""
    return F.when(denominator > 0, numerator.cast("double") / denominator)


def _channel(col: str) -> Column:
    return F.coalesce(F.col(col).cast("string"), F.lit(UNKNOWN_CHANNEL))


def _with_all(segment: str) -> Column:
    """The segment, and ``(all)`` too for a business row: one output row each (explode)."""
    return F.explode(
        F.when(F.col("is_business"), F.array(F.col(segment), F.lit(ALL))).otherwise(F.array(F.col(segment)))
    )


def _touch_reach(
    touches: DataFrame, identity_map: DataFrame, customers: DataFrame, end: date | None
) -> DataFrame:
    """(channel, segment_name, customer_id, funnel_stage, is_business, n, cost): touches
    and their cost per customer reaching a stage through a channel; customer_id is null on
    the anonymous and unmapped rows."""
    if end is not None:
        touches = touches.where(F.col("ts") < F.lit(end).cast("timestamp"))
    # keyed on a 64-bit hash of the record (as the monthly KPIs): one long, not two strings
    per_record = touches.groupBy(
        record_key().alias(REC),
        F.col("source_id").isNull().alias("_anonymous"),
        _channel("channel").alias("channel"),
        F.col("funnel_stage").cast("string").alias("funnel_stage"),
    ).agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.coalesce(F.col("cost").cast("double"), F.lit(0.0))).alias("cost"),
    )
    keys = record_customers(identity_map)
    segments = customers.select(
        "customer_id",
        "segment_name",
        F.col("is_outlier").alias("customer_is_outlier"),
        F.lit(True).alias("known"),
    )
    segment = (
        F.when(F.col("_anonymous"), F.lit(ANONYMOUS))
        .when(F.col("customer_id").isNull(), F.lit(UNMAPPED))
        .when(F.col("known").isNull() | F.col("segment_name").isNull(), F.lit(UNSEGMENTED))
        .otherwise(F.col("segment_name"))
    )
    return (
        per_record.join(keys, on=REC, how="left")
        .join(segments, on="customer_id", how="left")
        .groupBy(
            "channel",
            segment.alias("segment_name"),
            "customer_id",
            "funnel_stage",
            F.coalesce(F.col("customer_is_outlier") == F.lit(False), F.lit(False)).alias("is_business"),
        )
        .agg(F.sum("n").alias("n"), F.sum("cost").alias("cost"))
    )


def _touch_aggregates(reach: DataFrame, stages: tuple[str, ...]) -> DataFrame:
    """Per (channel, segment_name), the business segments also as ``(all)``: touches,
    marketing_cost, touches_<stage> and reached_<stage> (rows of a stage with a customer)."""
    rows = reach.select(
        "channel", _with_all("segment_name").alias("segment_name"), "customer_id", "funnel_stage", "n", "cost"
    )
    stage = F.col("funnel_stage")
    return rows.groupBy("channel", "segment_name").agg(
        F.sum("n").cast("long").alias("touches"),
        F.sum("cost").alias("marketing_cost"),
        *[
            F.sum(F.when(stage == s, F.col("n")).otherwise(0)).cast("long").alias(f"touches_{s}")
            for s in stages
        ],
        *[
            F.count(F.when((stage == s) & F.col("customer_id").isNotNull(), 1)).alias(f"reached_{s}")
            for s in stages
        ],
    )


def _acquisition_aggregates(customers: DataFrame) -> DataFrame:
    """Per (acquisition channel, segment_name), the business segments also as ``(all)``:
    acquired_customers, mean_acquisition_cost, mean_clv_acquired."""
    acquired = customers.select(
        _channel("acquisition_channel").alias("channel"),
        F.coalesce(F.col("segment_name").cast("string"), F.lit(UNSEGMENTED)).alias("segment_name"),
        F.coalesce(F.col("is_outlier") == F.lit(False), F.lit(False)).alias("is_business"),
        F.col("acquisition_cost").cast("double").alias("acquisition_cost"),
        F.col("clv").cast("double").alias("clv"),
    )
    rows = acquired.select(
        "channel", _with_all("segment_name").alias("segment_name"), "acquisition_cost", "clv"
    )
    return rows.groupBy("channel", "segment_name").agg(
        F.count(F.lit(1)).alias("acquired_customers"),
        F.avg("acquisition_cost").alias("mean_acquisition_cost"),
        F.avg("clv").alias("mean_clv_acquired"),
    )


def channel_economics(
    touches: DataFrame,
    *,
    identity_map: DataFrame,
    customers: DataFrame,
    stages: Sequence[str] = DEFAULT_STAGES,
    end: date | str | None = None,
) -> DataFrame:
    """Touches, funnel reach, conversion and acquisition value per channel and segment.

    ``touches`` (bronze.marketing_touches: source_system, source_id, ts, channel, cost,
    funnel_stage) are placed through ``identity_map`` (source_system, source_id,
    customer_id) in the segment of ``customers`` (one row per customer_id: segment_name,
    is_outlier, acquisition_channel, acquisition_cost, clv). Touches with ``ts >= end``
    (a date, midnight in the session time zone) are ignored when ``end`` is given; the
    acquisition figures do not depend on ``end``.

    Returns one row per (channel, segment_name): the touch channel and the customer's
    segment as given (outliers keep their own segment), plus:

    - ``(anonymous)``: touches with a null source_id; ``(unmapped)``: touches whose record
      is not in the identity map; ``(unsegmented)``: mapped customers absent from
      ``customers`` or with a null segment_name. A null channel is ``(unknown)``.
    - ``(all)``: one row per channel summing the business segments (customers with
      is_outlier false); it excludes the anonymous, unmapped, unsegmented and outlier rows.

    Columns: channel, segment_name, touches (long), marketing_cost (cost summed, null as 0),
    cost_per_touch, touches_<stage> (touches of each stage), reached_<stage> (distinct
    customers with a touch of that stage in the channel), conversion_<a>_to_<b> and
    dropoff_<a>_to_<b> for consecutive stages (reached_b / reached_a, null when reached_a
    is 0; dropoff = 1 - conversion), cost_per_<last stage> (cost_per_paid by default:
    marketing_cost / reached of the last stage, null when 0), acquired_customers (customers
    of the segment whose acquisition_channel is this channel), mean_acquisition_cost,
    mean_clv_acquired (means over non-null values) and clv_to_acquisition_cost
    (mean_clv_acquired / mean_acquisition_cost, null when that mean is 0 or null). On the
    anonymous and unmapped rows there is no customer to count: reached_*, conversions,
    dropoffs and cost_per_<last stage> are null (touches_<stage> still counts their
    touches). A channel only ever seen as an acquisition channel has rows with touches 0.
    """
    require_columns(touches, TOUCHES_REQUIRED, "touches")
    require_columns(identity_map, IDENTITY_MAP_REQUIRED, "identity_map")
    require_columns(customers, CUSTOMERS_REQUIRED, "customers")
    names = _check_stages(stages)
    end_day = None if end is None else as_date(end, "end")

    reach = _touch_reach(touches, identity_map, customers, end_day)
    acquisition = _acquisition_aggregates(customers)
    touched = _touch_aggregates(reach, names)
    keys = ["channel", "segment_name"]
    seen = touched.select(*keys).unionByName(acquisition.select(*keys))
    # Every channel gets an (all) row, even one touched only anonymously.
    cells = seen.unionByName(seen.select("channel", F.lit(ALL).alias("segment_name"))).distinct()
    joined = cells.join(touched, on=keys, how="left").join(acquisition, on=keys, how="left")

    has_customers = ~F.col("segment_name").isin(*NO_CUSTOMER)
    touches_n = F.coalesce(F.col("touches"), F.lit(0)).cast("long")
    cost = F.coalesce(F.col("marketing_cost"), F.lit(0.0))
    reached = {
        s: F.when(has_customers, F.coalesce(F.col(f"reached_{s}"), F.lit(0)).cast("long")) for s in names
    }
    funnel: list[Column] = []
    for a, b in pairwise(names):
        conversion = _ratio(reached[b], reached[a])
        funnel += [conversion.alias(f"conversion_{a}_to_{b}"), (1 - conversion).alias(f"dropoff_{a}_to_{b}")]
    return joined.select(
        *keys,
        touches_n.alias("touches"),
        cost.alias("marketing_cost"),
        _ratio(cost, touches_n).alias("cost_per_touch"),
        *[F.coalesce(F.col(f"touches_{s}"), F.lit(0)).cast("long").alias(f"touches_{s}") for s in names],
        *[reached[s].alias(f"reached_{s}") for s in names],
        *funnel,
        _ratio(cost, reached[names[-1]]).alias(f"cost_per_{names[-1]}"),
        F.coalesce(F.col("acquired_customers"), F.lit(0)).cast("long").alias("acquired_customers"),
        "mean_acquisition_cost",
        "mean_clv_acquired",
        _ratio(F.col("mean_clv_acquired"), F.col("mean_acquisition_cost")).alias("clv_to_acquisition_cost"),
    )
