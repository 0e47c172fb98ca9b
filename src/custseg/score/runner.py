"""Stage ``score``: the registered champion segmentation applied to feature snapshots.

Loads the pipeline registered as ``segment.model_name`` under ``segment.alias`` (prep SQL,
scaler and k-prototypes with its segment names, outlier prototypes included) and assigns
a segment to every customer of every snapshot of ``segment.features_table``: monthly
snapshots scored by one model give segment migration. Writes ``segment.score_output``
(customer_id, snapshot_date, segment, segment_name, is_outlier, model_version).
"""

from __future__ import annotations

import logging

from pyspark.sql import functions as F

from custseg.config import redact_text
from custseg.contract import OUTLIER
from custseg.stage import StageContext
from custseg.tracking import load_registered_spark_model

log = logging.getLogger(__name__)


def run_score(ctx: StageContext) -> None:
    """Stage runner (see the module docstring)."""
    cfg, tables, run = ctx.cfg.segment, ctx.tables, ctx.run
    ctx.require_tables(cfg.features_table)
    try:
        model, version = load_registered_spark_model(ctx.cfg, cfg.model_name, cfg.alias)
    except Exception as exc:
        raise RuntimeError(
            f"score: no model registered as {cfg.model_name}@{cfg.alias} in "
            f"{redact_text(ctx.cfg.tracking.uri)}; "
            "run the segment stage first"
        ) from exc
    features = tables.read(cfg.features_table)
    keys = ["customer_id", *(["snapshot_date"] if "snapshot_date" in features.columns else [])]
    scored = model.transform(features).select(
        *keys,
        "segment",
        "segment_name",
        (F.col("segment_name") == F.lit(OUTLIER)).alias("is_outlier"),
        F.lit(version).alias("model_version"),
    )
    tables.write(scored, cfg.score_output, partition_by=keys[1:] or None)
    counts = tables.read(cfg.score_output).groupBy(*keys[1:], "segment_name").count().collect()
    snapshots = sorted({r[keys[1]] for r in counts}) if len(keys) > 1 else []
    run.log_metrics({"rows": float(sum(r["count"] for r in counts)), "snapshots": float(len(snapshots))})
    run.log_params({"score.model_version": version})
    log.info(
        "score: %s@%s (version %s) assigned %d rows over %d snapshots",
        cfg.model_name,
        cfg.alias,
        version,
        sum(r["count"] for r in counts),
        len(snapshots),
    )
