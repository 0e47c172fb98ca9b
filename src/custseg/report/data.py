"""Everything the report shows, read once: the run's gold tables (small: one row per
segment, month, bin, k or rule), a few aggregates of the silver identity tables computed
in Spark (counts and a histogram: never a row per record or customer on the driver), and
the run's MLflow record (stage metrics, ingest reconciliation, CLV holdout, config).

Tables are read at the versions this run wrote (``custseg.runs``), so the report of an
older run shows that run's numbers even after a newer run overwrote the tables.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pyspark.sql import functions as F

from custseg import catalog
from custseg.config import Config
from custseg.runs import TableVersion, read_as_written, table_versions
from custseg.tables import TableStore
from custseg.tracking import RunRecord, run_record

log = logging.getLogger(__name__)

# The small gold tables the report draws on (insights, segment and clv outputs).
GOLD = (
    "insight_headlines",
    "recommendations",
    "segment_profiles",
    "segment_traits",
    "value_concentration",
    "value_curves",
    "cost_to_serve",
    "service_scenarios",
    "clv_segment_check",
    "segment_model_selection",
    "segment_stability",
    "segment_migration",
    "segment_flows",
    "channel_economics",
    "kpi_monthly",
    "kpi_trends",
    "kpi_forecast",
    "kpi_anomalies",
    "kpi_tests",
    "misallocation_summary",
    "stitch_quality_by_segment",
    "churn_risk",
    "churn_drivers",
)


@dataclass
class ReportData:
    """What the report is built from (all of it small)."""

    run_id: str
    cfg: Config
    gold: dict[str, pd.DataFrame]
    versions: dict[str, TableVersion]
    record: RunRecord
    identity: dict[str, Any] = field(default_factory=dict)
    confidence_bins: pd.DataFrame | None = None
    links: pd.DataFrame | None = None

    def table(self, name: str) -> pd.DataFrame | None:
        """A gold table by its short name, or None when the run has none."""
        return self.gold.get(name)


def _identity(tables: TableStore, versions: dict[str, TableVersion], bins: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if catalog.IDENTITY_MAP not in versions:
        return out
    imap = read_as_written(tables, catalog.IDENTITY_MAP, versions)
    row = imap.agg(
        F.count(F.lit(1)).alias("records"),
        F.countDistinct("customer_id").alias("customers"),
        F.sum(F.when(F.col("review_reason").isNotNull(), 1).otherwise(0)).alias("review_queue"),
        F.sum(F.when(F.col("match_confidence") < 1.0, 1).otherwise(0)).alias("probabilistic_records"),
        F.min("match_confidence").alias("min_confidence"),
    ).first()
    assert row is not None
    out.update(row.asDict())
    width = 1.0 / bins
    binned = (
        imap.select(
            F.least(F.floor(F.col("match_confidence") / width), F.lit(bins - 1)).cast("int").alias("bin")
        )
        .groupBy("bin")
        .count()
        .toPandas()
    )
    frame = pd.DataFrame({"bin": range(bins)}).merge(binned, on="bin", how="left").fillna({"count": 0})
    frame["lo"] = frame["bin"] * width
    frame["hi"] = frame["lo"] + width
    out["confidence_bins"] = frame
    out["reasons"] = pd.DataFrame(
        imap.where(F.col("review_reason").isNotNull()).groupBy("review_reason").count().toPandas()
    )
    return out


def _links(tables: TableStore, versions: dict[str, TableVersion]) -> pd.DataFrame | None:
    if catalog.IDENTITY_LINKS not in versions:
        return None
    links = read_as_written(tables, catalog.IDENTITY_LINKS, versions)
    cols = [c for c in ("link_type", "accepted") if c in links.columns]
    return pd.DataFrame(links.groupBy(*cols).count().orderBy(*cols).toPandas())


def gather(tables: TableStore, cfg: Config, run_id: str) -> ReportData:
    """Read what the report of ``run_id`` shows."""
    versions = table_versions(tables, run_id)
    present = [n for n in GOLD if f"gold.{n}" in versions]
    with ThreadPoolExecutor(max_workers=4) as pool:
        frames = pool.map(
            lambda n: pd.DataFrame(read_as_written(tables, f"gold.{n}", versions).toPandas()), present
        )
        gold = dict(zip(present, frames, strict=True))
    missing = [n for n in GOLD if n not in gold]
    if missing:
        log.warning("report: run %s has no %s; their sections say so", run_id, missing)
    identity = _identity(tables, versions, cfg.report.confidence_bins)
    return ReportData(
        run_id=run_id,
        cfg=cfg,
        gold=gold,
        versions=versions,
        record=run_record(cfg, run_id),
        identity=identity,
        confidence_bins=identity.pop("confidence_bins", None),
        links=_links(tables, versions),
    )
