"""Stage ``features``: bronze events + silver.identity_map -> gold.customer_features.

Writes ``gold.customer_features`` (one row per customer and snapshot date, partitioned by
snapshot_date: the as-of snapshot and the month-end snapshots before it) and
``gold.feature_event_mapping`` (per event table: events, mapped, unmapped, anonymous).
MLflow gets the unmapped counts, customers per snapshot and timings. The event totals
are built once and kept on local disk for both outputs.
"""

from __future__ import annotations

import logging
import time
from datetime import date, timedelta
from typing import TYPE_CHECKING

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from custseg.features.core import event_mapping_report, month_end_snapshots, snapshot_features_and_totals

if TYPE_CHECKING:
    from custseg.pipeline import StageContext

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
    for name in ("bronze.transactions", "silver.identity_map"):
        if not tables.exists(name):
            raise FileNotFoundError(f"features needs {name}; run the stage that writes it first")
    transactions = tables.read("bronze.transactions")
    optional = {
        t: tables.read(f"bronze.{t}") if tables.exists(f"bronze.{t}") else None for t in OPTIONAL_EVENTS
    }
    identity_map = tables.read("silver.identity_map")
    as_of = cfg.as_of or default_as_of(transactions)
    snapshots = month_end_snapshots(as_of, cfg.snapshot_months)
    log.info(
        "features: as_of %s, %d snapshots from %s, windows %s",
        as_of,
        len(snapshots),
        snapshots[0],
        cfg.windows_days,
    )
    started = time.perf_counter()
    attributes = (
        tables.read("bronze.customer_attributes") if tables.exists("bronze.customer_attributes") else None
    )
    features, totals = snapshot_features_and_totals(
        transactions,
        identity_map,
        support=optional["support_contacts"],
        usage=optional["product_usage"],
        touches=optional["marketing_touches"],
        attributes=attributes,
        snapshot_dates=snapshots,
        windows_days=cfg.windows_days,
        trend_days=cfg.trend_days,
        categorical_attributes=cfg.categorical_attributes,
        numeric_attributes=cfg.numeric_attributes,
        attribute_source_priority=cfg.attribute_source_priority,
        storage_level=StorageLevel.DISK_ONLY,
    )
    try:
        tables.write(features, "gold.customer_features", partition_by=["snapshot_date"])
        build_seconds = time.perf_counter() - started
        tables.write(event_mapping_report(totals).coalesce(1), "gold.feature_event_mapping")
    finally:
        totals.unpersist()
    report = tables.read("gold.feature_event_mapping").collect()  # one row per event table
    per_snapshot = (
        tables.read("gold.customer_features")
        .groupBy("snapshot_date")
        .count()
        .orderBy("snapshot_date")
        .collect()
    )
    metrics: dict[str, float] = {"seconds.build": build_seconds, "snapshots": len(snapshots)}
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
    log.info(
        "features: %d customers at %s; built in %.1f s", metrics["customers_at_as_of"], as_of, build_seconds
    )
