"""Stage ``features``: bronze events + silver.identity_map -> gold.customer_features.

Writes ``gold.customer_features`` (one row per customer and snapshot date, partitioned by
snapshot_date: the as-of snapshot and the month-end snapshots before it) and
``gold.feature_event_mapping`` (per event table: events, mapped, unmapped, anonymous).
MLflow gets the unmapped counts, customers per snapshot and timings. The event totals
are built once and kept on local disk for both outputs.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from custseg import catalog
from custseg.features.build import (
    EventTables,
    FeatureSpec,
    build_features,
    event_mapping_report,
    month_end_snapshots,
)
from custseg.stage import StageContext

log = logging.getLogger(__name__)

OPTIONAL_EVENTS = ("support_contacts", "product_usage", "marketing_touches")


def default_as_of(transactions: DataFrame) -> date:
    """The day after the last transaction (a one-row aggregate)."""
    last = transactions.agg(F.max(F.to_date("ts")).alias("d")).first()
    if last is None or last["d"] is None:
        raise ValueError("bronze.transactions is empty: set features.as_of")
    day: date = last["d"]
    return day + timedelta(days=1)


def run_features(ctx: StageContext) -> None:
    """Stage runner: build the feature snapshots and the event mapping report."""
    cfg, tables, run = ctx.cfg.features, ctx.tables, ctx.run
    ctx.require_tables(catalog.TRANSACTIONS, catalog.IDENTITY_MAP)
    transactions = tables.read(catalog.TRANSACTIONS)
    optional = {t: ctx.read_optional(catalog.bronze(t)) for t in OPTIONAL_EVENTS}
    identity_map = tables.read(catalog.IDENTITY_MAP)
    as_of = cfg.as_of or default_as_of(transactions)
    snapshots = month_end_snapshots(as_of, cfg.snapshot_months)
    log.info(
        "features: as_of %s, %d snapshots from %s, windows %s",
        as_of,
        len(snapshots),
        snapshots[0],
        cfg.windows_days,
    )
    attributes = ctx.read_optional(catalog.CUSTOMER_ATTRIBUTES)
    events = EventTables(
        transactions, optional["support_contacts"], optional["product_usage"], optional["marketing_touches"]
    )
    features, totals = build_features(
        events, identity_map, snapshots, FeatureSpec.of(cfg), attributes, storage_level=StorageLevel.DISK_ONLY
    )
    try:
        with ctx.timed("build"):
            tables.write(features, catalog.CUSTOMER_FEATURES, partition_by=["snapshot_date"])
        tables.write(event_mapping_report(totals).coalesce(1), catalog.FEATURE_EVENT_MAPPING)
    finally:
        totals.unpersist()
    report = tables.read(catalog.FEATURE_EVENT_MAPPING).collect()  # one row per event table
    per_snapshot = (
        tables.read(catalog.CUSTOMER_FEATURES)
        .groupBy("snapshot_date")
        .count()
        .orderBy("snapshot_date")
        .collect()
    )
    metrics: dict[str, float] = {"snapshots": len(snapshots)}
    for row in report:
        for key in ("events", "mapped", "unmapped", "anonymous"):
            metrics[f"{row['table']}.{key}"] = row[key]
        if row["unmapped"]:
            log.warning(
                "features: %d of %d %s rows map to no customer", row["unmapped"], row["events"], row["table"]
            )
    for i, row in enumerate(per_snapshot):
        run.log_metrics({"customers_per_snapshot": row["count"]}, step=i)
    metrics["customers_at_as_of"] = per_snapshot[-1]["count"] if per_snapshot else 0
    run.log_metrics(metrics)
    run.log_params(
        {
            "features.as_of_resolved": as_of.isoformat(),
            "features.snapshot_dates": ",".join(map(str, snapshots)),
        }
    )
    log.info("features: %d customers at %s", metrics["customers_at_as_of"], as_of)
