"""Benchmark the insights stage on a generated preset: time, bootstrap cost, truth recovery.

    .venv/bin/python bench/insights.py --preset reference [--data DIR] [--snapshots N]

1. Draws the preset once into DIR (as bench/features.py; with --data an earlier draw is
   reused) and prepares a warehouse in DIR/insights_warehouse once: the events as bronze
   tables, the true identity map as silver.identity_map, feature snapshots (the as-of
   date and N month-ends before it), the segments of the champion registered in
   DIR/mlflow.db (bench/segment.py registers it) scored on every snapshot
   (gold.segment_snapshots; the latest snapshot is gold.segment_assignments), and the
   clv stage's gold.customer_clv.
2. The insights stage with the default config (B = 200 bootstrap replicates), then the
   same stage with B = 0 (the same aggregations without the bootstrap), in the same
   session: wall time of each, their ratio, each step's seconds, peak JVM and Python RSS.
3. Truth recovery against the generator's people and raw transactions: the top segment by
   profit per customer against the core segment (its share of customers and of revenue),
   the costly segment, the misallocation root causes against the over-rated industries,
   the investment score's correlation with CLV against the composite's, and the bots.
Asserts nothing.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
from _common import RssSampler, bench_parser, bench_session
from features import EVENTS, draw
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from custseg.config import Config
from custseg.features import FeatureSpec, build_feature_snapshots, month_end_snapshots
from custseg.generate.spec import OVERRATED_INDUSTRIES
from custseg.pipeline import run_stage
from custseg.tables import TableStore

log = logging.getLogger("bench.insights")


def say(text: object) -> None:
    """Benchmark output."""
    print(text, flush=True)  # noqa: T201


def prepare(spark: SparkSession, cfg: Config, out: Path, snapshots: int) -> None:
    """The warehouse the stage reads (built once; see the module docstring)."""
    marker = out / "_SUCCESS_INSIGHTS_WAREHOUSE"
    if marker.exists():
        return
    store = TableStore(spark, cfg.storage.warehouse, run_id="bench-prepare")
    read = {n: spark.read.parquet(str(out / n)) for n in (*EVENTS, "customer_attributes", "identity_map")}
    for name in (*EVENTS, "customer_attributes"):
        started = time.perf_counter()
        store.write(read[name], f"bronze.{name}")
        log.info("bronze.%s in %.1f s", name, time.perf_counter() - started)
    imap = read["identity_map"].select(
        "source_system",
        "source_id",
        "customer_id",
        F.lit(1.0).alias("match_confidence"),
        F.lit(1).alias("cluster_size"),
        F.lit(None).cast("string").alias("review_reason"),
    )
    store.write(imap, "silver.identity_map")
    as_of = cfg.generate.end_date + timedelta(days=1)
    fc = cfg.features
    started = time.perf_counter()
    features = build_feature_snapshots(
        store.read("bronze.transactions"),
        store.read("silver.identity_map"),
        support=store.read("bronze.support_contacts"),
        usage=store.read("bronze.product_usage"),
        touches=store.read("bronze.marketing_touches"),
        attributes=store.read("bronze.customer_attributes"),
        snapshot_dates=month_end_snapshots(as_of, snapshots),
        spec=FeatureSpec.of(fc),
    )
    store.write(features, "gold.customer_features", partition_by=["snapshot_date"])
    log.info("features in %.1f s", time.perf_counter() - started)
    run_stage(cfg, "score", run_id="bench-prepare", force=True)
    scored = store.read("gold.segment_snapshots")
    store.write(scored.where(F.col("snapshot_date") == F.lit(as_of)), "gold.segment_assignments")
    run_stage(cfg, "clv", run_id="bench-prepare", force=True)
    marker.write_text("ok")


def truth_recovery(spark: SparkSession, store: TableStore, out: Path, as_of: object, window: int) -> None:
    """The planted truths against the stage's tables."""
    people = spark.read.parquet(str(out / "people")).select(
        F.col("person_id").cast("string").alias("customer_id"), F.col("segment").alias("latent"), "is_bot"
    )
    assignments = store.read("gold.segment_assignments").join(people, "customer_id", how="inner")
    biz = assignments.where(~F.col("is_bot"))
    n_biz = biz.count()
    core_share = biz.where(F.col("latent") == "core").count() / n_biz
    tx = store.read("bronze.transactions").where(
        (F.to_date("ts") >= F.date_sub(F.lit(as_of), window)) & (F.to_date("ts") < F.lit(as_of))
    )
    tx = tx.join(
        store.read("silver.identity_map").select("source_system", "source_id", "customer_id"),
        ["source_system", "source_id"],
    ).join(people, "customer_id")
    rev = (
        tx.where(~F.col("is_bot"))
        .groupBy((F.col("latent") == "core").alias("core"))
        .agg(F.sum("amount").alias("r"))
    )
    by = {r["core"]: r["r"] for r in rev.collect()}
    core_revenue = by.get(True, 0.0) / (by.get(True, 0.0) + by.get(False, 0.0))
    profiles = pd.DataFrame(store.read("gold.segment_profiles").toPandas())
    business = profiles[~profiles["is_outlier"] & (profiles["segment_name"] != "(all customers)")]
    top = business.loc[business["profit_mean"].idxmax()]
    say(f"top segment by profit per customer: {top['segment_name']!r}")
    say(
        f"  customer share {top['customer_share']:.4f} [{top['customer_share_lo']:.4f}, "
        f"{top['customer_share_hi']:.4f}] vs true core share {core_share:.4f}: "
        f"{100 * (top['customer_share'] - core_share):+.2f} points (target within 1)"
    )
    say(
        f"  revenue share {top['revenue_share']:.4f} "
        f"[{top['revenue_share_lo']:.4f}, {top['revenue_share_hi']:.4f}] "
        f"vs the true core's share of raw revenue {core_revenue:.4f}: "
        f"{100 * (top['revenue_share'] - core_revenue):+.2f} points (target within 2)"
    )
    top_true = (
        assignments.where(F.col("segment_name") == top["segment_name"]).groupBy("latent").count().toPandas()
    )
    say(f"  its customers by latent segment: {dict(zip(top_true['latent'], top_true['count'], strict=True))}")
    costly = business.set_index("segment_name")
    say(
        f"highest support cost per customer: {costly['support_cost_mean'].idxmax()!r}; "
        f"lowest profit per customer: {costly['profit_mean'].idxmin()!r}"
    )
    for name, row in costly.iterrows():
        say(
            f"  {name!r}: {row['customer_share']:.3f} of customers, "
            f"profit/customer {row['profit_mean']:,.0f} "
            f"[{row['profit_mean_lo']:,.0f}, {row['profit_mean_hi']:,.0f}], support cost/customer "
            f"{row['support_cost_mean']:,.1f}, profit share {row['profit_share']:.3f}"
        )
    summary = pd.DataFrame(store.read("gold.misallocation_summary").toPandas())
    root = summary[(summary["section"] == "root_cause") & (summary["metric"] == "lift")]
    top3 = root.sort_values("value", ascending=False).head(3)
    say(
        "misallocation root causes, top 3 by lift (industry x size): "
        + "; ".join(
            f"{r.group} x {r.subgroup} lift {r.value:.2f} [{r.value_lo:.2f}, {r.value_hi:.2f}] "
            f"n={r.customers}"
            for r in top3.itertuples()
        )
    )
    say(f"  over-rated industries among them: {sorted(set(top3['group']) & set(OVERRATED_INDUSTRIES))}")
    corr = summary[summary["section"] == "correlation"].set_index("metric")
    for m in ("investment_vs_clv_spearman", "performance_vs_clv_spearman", "investment_vs_profit_spearman"):
        r = corr.loc[m]
        say(f"  {m}: {r['value']:.3f} [{r['value_lo']:.3f}, {r['value_hi']:.3f}]")
    outliers = profiles[profiles["is_outlier"]]["customers"].sum()
    bots = assignments.where("is_bot").count()
    bots_flagged = assignments.where("is_bot AND is_outlier").count()
    say(
        f"outliers in the profiles: {outliers}; segment stage outliers: "
        f"{assignments.where('is_outlier').count()}; true bots: {bots} ({bots_flagged} of them outliers)"
    )
    for text in store.read("gold.insight_headlines").toPandas()["text"]:
        say(f"headline: {text}")


def main() -> None:
    parser = bench_parser(__doc__, "draw folder (reused when it holds a draw and the segment champion)")
    parser.add_argument("--snapshots", type=int, default=3, help="month-end snapshots before the as-of date")
    args = parser.parse_args()
    assert args.data, "--data: a draw folder whose mlflow.db holds the segment champion (bench/segment.py)"
    out = Path(args.data)
    args.set = [
        f"storage.warehouse={out / 'insights_warehouse'}",
        f"tracking.uri=sqlite:///{out / 'mlflow.db'}",
        f"tracking.artifact_location={out / 'mlartifacts'}",
        *args.set,
    ]
    cfg, spark, out, jvm_pid = bench_session(args, "insights")
    draw(spark, cfg, out)
    started = time.perf_counter()
    prepare(spark, cfg, out, args.snapshots)
    say(f"prepared warehouse in {time.perf_counter() - started:.0f} s")
    store = TableStore(spark, cfg.storage.warehouse, run_id="bench")
    say(
        f"{store.read('gold.segment_assignments').count():,} customers, "
        f"{store.read('gold.segment_snapshots').select('snapshot_date').distinct().count()} snapshots"
    )
    walls = {}
    for replicates in (cfg.insights.replicates, 0):
        run_cfg = cfg.model_copy(
            update={"insights": cfg.insights.model_copy(update={"replicates": replicates})}
        )
        with RssSampler(jvm_pid) as jvm, RssSampler(os.getpid()) as py:
            t0 = time.perf_counter()
            run = run_stage(run_cfg, "insights", run_id=f"bench-b{replicates}", force=True)
            walls[replicates] = time.perf_counter() - t0
        steps = {k: round(v, 1) for k, v in run.metrics.items() if k.startswith("seconds")}
        say(
            f"B = {replicates}: {walls[replicates]:.1f} s; steps {steps}; peak JVM RSS "
            f"{jvm.peak_kb / 2**20:.2f} GiB, peak Python driver RSS {py.peak_kb / 2**20:.2f} GiB"
        )
        if replicates:
            truth_recovery(
                spark, store, out, cfg.generate.end_date + timedelta(days=1), cfg.insights.window_days
            )
    b = cfg.insights.replicates
    say(
        f"bootstrap cost: B = {b} took {walls[b] / walls[0]:.2f}x the stage without it "
        "(target at most 1.5x); "
        f"stage {walls[b] / 60:.2f} min (target at most 3)"
    )


if __name__ == "__main__":
    main()
