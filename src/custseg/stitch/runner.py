"""Stage ``stitch``: bronze.identity_records -> silver identity tables.

Writes ``silver.identity_map`` (source_system, source_id, customer_id, match_confidence,
cluster_size, review_reason), ``silver.identity_links`` (record keys, link type, keys,
scores), ``silver.customers`` (golden records with lineage; PII stays in silver),
``silver.identity_id_changes`` (appended per run: merges and splits of customer ids) and
``silver.stitch_guarded_keys`` (hashed key values not used as links). The previous
identity map, when there is one, keeps customer ids stable. MLflow gets counts, the
blocking plan, the trained m/u model and the match-weights chart, and, when truth is
available, pairwise and B-cubed precision/recall/F1. Nothing personal is logged.
"""

from __future__ import annotations

import logging
import os
import tempfile

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from custseg import catalog, hadoopfs
from custseg.config import Config
from custseg.contract import CONTRACTS
from custseg.privacy import pseudonym_key
from custseg.stage import StageContext
from custseg.stitch.quality import stitch_scores
from custseg.stitch.steps import StitchResult, stitch_identities

log = logging.getLogger(__name__)

CONTRACT_COLUMNS = list(CONTRACTS["identity_records"].names)


def truth_frame(spark: SparkSession, cfg: Config) -> DataFrame | None:
    """The truth identity table named by ``stitch.truth_path`` (``auto``: the generator's)."""
    path = cfg.stitch.truth_path
    if path is None:
        return None
    if path == "auto":
        path = os.path.join(cfg.generate.output_dir, "truth", "identity")
        if not hadoopfs.exists(spark, path):
            return None
    elif not hadoopfs.exists(spark, path):
        raise FileNotFoundError(f"stitch.truth_path {path!r} does not exist")
    return spark.read.parquet(path).select("source_system", "source_id", "person_id")


def write_outputs(ctx: StageContext, result: StitchResult) -> None:
    tables = ctx.tables
    tables.write(result.identity_map, catalog.IDENTITY_MAP)
    tables.write(result.links, catalog.IDENTITY_LINKS)
    tables.write(result.customers, catalog.CUSTOMERS)
    tables.write(result.id_changes, catalog.IDENTITY_ID_CHANGES, mode="append")
    tables.write(result.guarded_keys, catalog.STITCH_GUARDED_KEYS)


def log_result(ctx: StageContext, result: StitchResult, scores: dict[str, float] | None) -> None:
    run = ctx.run
    run.log_metrics(result.metrics)
    run.log_metrics({f"seconds.{k}": v for k, v in result.timings.items()})
    for rule in result.blocking.rules:
        name = "_".join(rule["fields"])
        run.log_metrics(
            {
                f"blocking.{name}.estimated_pairs": rule["estimated_pairs"],
                f"blocking.{name}.oversized_values": rule["oversized_values"],
                f"blocking.{name}.used": float(rule["used"]),
            }
        )
    run.log_dict({"rules": result.blocking.rules}, "stitch/blocking_plan.json")
    run.log_dict(result.model, "stitch/splink_model.json")
    params = {}
    for comparison in result.model.get("comparisons", []):
        for level in comparison.get("comparison_levels", []):
            if level.get("is_null_level"):
                continue
            label = f"{comparison.get('output_column_name')}.{level.get('label_for_charts')}"
            for key in ("m_probability", "u_probability"):
                if key in level:
                    params[f"{key[0]}.{label}"[:250]] = level[key]
    run.log_dict(params, "stitch/m_u_probabilities.json")
    with tempfile.TemporaryDirectory() as tmp:
        chart = os.path.join(tmp, "match_weights.html")
        with open(chart, "w", encoding="utf-8") as fh:
            fh.write(result.match_weights_html)
        run.log_artifact(chart, "stitch")
    if scores:
        run.log_metrics({f"truth.{k}": v for k, v in scores.items()})


def run_stitch(ctx: StageContext) -> None:
    """Stage runner: stitch bronze identity records into the silver identity tables."""
    records = ctx.tables.read(catalog.IDENTITY_RECORDS).select(*CONTRACT_COLUMNS)
    # Pinned at this stage's start (TableStore): the change log compares the new map with
    # this version even after the write below replaced the table.
    tables = ctx.tables
    previous = tables.read(catalog.IDENTITY_MAP) if tables.exists(catalog.IDENTITY_MAP) else None
    retired = (
        tables.read(catalog.IDENTITY_ID_CHANGES).select(F.col("old_customer_id").alias("customer_id"))
        if tables.exists(catalog.IDENTITY_ID_CHANGES)
        else None
    )
    result = stitch_identities(
        records,
        ctx.cfg.stitch,
        previous,
        seed=ctx.cfg.run.seed,
        retired_ids=retired,
        id_salt=tables.run_id,
        pseudonym_key=pseudonym_key(ctx.cfg.privacy),
    )
    write_outputs(ctx, result)
    truth = truth_frame(ctx.spark, ctx.cfg)
    scores = None
    if truth is not None:
        scores = stitch_scores(ctx.tables.read(catalog.IDENTITY_MAP), truth)
        log.info("stitch against truth: %s", {k: round(v, 4) for k, v in scores.items()})
    log_result(ctx, result, scores)
