"""Benchmark identity stitching on a generated preset, beside Splink alone on a slice.

    .venv/bin/python bench/stitch.py --preset reference [--data DIR] [--slice 200000]

1. Draws the preset's identity records (and their truth) once into DIR (default: a temp
   folder; with --data an earlier draw is reused) as Parquet.
2. Times ``stitch_identities`` on all of them: wall time, records/s, peak RSS of the
   driver JVM and Python, and pairwise and B-cubed precision/recall/F1 against truth.
3. In the same session, on a slice of whole persons of about --slice records: ours, then
   Splink alone on Spark with the same standardisation, comparisons, blocking fields
   (no deterministic pass, no exclusion of already-linked pairs), prior estimated from
   the deterministic rules, u by random sampling and m by EM on the same training rules
   on Spark, scoring at the same threshold, clustering with Splink's own connected
   components. Prints both F1 and times and their ratio. Asserts nothing.
"""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path
from typing import Any

from _common import RssSampler, bench_parser, bench_session
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from custseg.config import Config
from custseg.contract import IDENTITY_FIELDS
from custseg.generate import generate_world
from custseg.stitch import stitch_identities
from custseg.stitch.probabilistic import (
    _comparisons,
    _quiet_splink,
    _settings_dict,
    resolve_rules,
    splink_input,
)
from custseg.stitch.quality import stitch_scores
from custseg.stitch.runner import CONTRACT_COLUMNS
from custseg.stitch.standardise import standardise_records

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.stitch")


def draw(spark: SparkSession, cfg: Config, out: Path) -> None:
    if (out / "_SUCCESS_RECORDS").exists():
        return
    world = generate_world(spark, cfg.generate, seed=cfg.run.seed)
    world.identity_records.select(*CONTRACT_COLUMNS, "person_id").write.mode("overwrite").parquet(
        str(out / "records")
    )
    (out / "_SUCCESS_RECORDS").write_text("ok")


def ours(records: DataFrame, truth: DataFrame, cfg: Config) -> tuple[float, dict[str, float], dict[str, Any]]:
    started = time.perf_counter()
    result = stitch_identities(records, cfg.stitch, seed=cfg.run.seed)
    imap = result.identity_map.checkpoint()  # materialised: the stage's real output
    wall = time.perf_counter() - started
    scores = stitch_scores(imap, truth)
    # Records per review reason (a handful of rows), after the clock stops.
    review = {str(r["review_reason"]): r["count"] for r in imap.groupBy("review_reason").count().collect()}
    return wall, scores, {"metrics": result.metrics, "timings": result.timings, "review": review}


def splink_alone(records: DataFrame, truth: DataFrame, cfg: Config) -> tuple[float, dict[str, float], str]:
    """Splink on Spark doing the whole job, with our standardisation and the same model."""
    from splink import Linker, SparkAPI

    sc = cfg.stitch
    started = time.perf_counter()
    std = standardise_records(records, sc).withColumn("det_cluster", F.col("rid"))
    df = splink_input(std).persist()
    df.count()
    held = set(IDENTITY_FIELDS)
    resolved = resolve_rules(sc, held)
    rules = [" and ".join(f"l.{f} = r.{f}" for f in fields) for fields in resolved.blocking]
    settings = _settings_dict(
        rules,
        1e-4,
        "spark",
        term_frequencies=sc.term_frequencies,
        comparisons=_comparisons(resolved.comparisons, held),
    )
    linker = Linker(df, settings, SparkAPI(spark_session=df.sparkSession))  # its default lineage breaks
    _quiet_splink()
    linker.training.estimate_probability_two_random_records_match(
        [f"l.{k} = r.{k}" for k in sc.deterministic_keys], recall=sc.deterministic_recall
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=sc.u_max_pairs, seed=cfg.run.seed)
    for fields in resolved.training:
        linker.training.estimate_parameters_using_expectation_maximisation(
            " and ".join(f"l.{f} = r.{f}" for f in fields), estimate_without_term_frequencies=True
        )
    scored = linker.inference.predict(threshold_match_probability=sc.match_threshold)
    how = "Splink's cluster_pairwise_predictions_at_threshold"
    try:
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(scored, sc.match_threshold)
        out = clusters.as_spark_dataframe().select(
            F.substring_index("rid", ":", 1).alias("source_system"),
            F.expr("substring(rid, length(substring_index(rid, ':', 1)) + 2)").alias("source_id"),
            F.col("cluster_id").alias("customer_id"),
        )
        out = out.checkpoint()
    except Exception as exc:  # noqa: BLE001 - reported, and the comparison goes on
        how = f"Splink's clustering failed ({type(exc).__name__}); not timed further"
        log.warning("Splink alone: clustering failed: %s", str(exc).splitlines()[0][:200])
        return time.perf_counter() - started, {}, how
    wall = time.perf_counter() - started
    return wall, stitch_scores(out, truth), how


def main() -> None:
    parser = bench_parser(__doc__, "folder for (or of) the drawn records")
    parser.add_argument("--slice", type=int, default=200_000, help="records in the Splink comparison")
    parser.add_argument("--skip-full", action="store_true", help="only the slice comparison")
    parser.add_argument("--skip-slice", action="store_true", help="only the run on all records")
    args = parser.parse_args()
    cfg, spark, out, jvm_pid = bench_session(args, "stitch")
    draw(spark, cfg, out)
    all_records = spark.read.parquet(str(out / "records"))
    truth = all_records.select("source_system", "source_id", F.col("person_id").cast("string"))
    records = all_records.select(*CONTRACT_COLUMNS)
    n_records = records.count()
    n_people = all_records.select("person_id").distinct().count()
    lines = [
        f"preset {args.preset}: {n_records:,} identity records of {n_people:,} people; local[*], 2 cores"
    ]

    if not args.skip_full:
        with RssSampler(jvm_pid) as jvm_rss:
            wall, scores, info = ours(records, truth, cfg)
        lines += [
            f"ours, all records: {wall:.1f} s ({n_records / wall:,.0f} records/s); "
            f"peak RSS driver JVM {jvm_rss.peak_kb / 2**20:.2f} GiB, Python "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB",
            "  stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in info["timings"].items()),
            "  " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if "pair" in k or "bcubed" in k),
            "  " + ", ".join(f"{k} {v:,.0f}" for k, v in info["metrics"].items() if "prior" not in k),
            "  records by review reason: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(info["review"].items())),
        ]
        print("\n".join(lines), flush=True)  # noqa: T201 - benchmark output

    if args.skip_slice:
        return
    # A slice of whole persons with about --slice records.
    per_person = n_records / max(n_people, 1)
    max_pid = int(args.slice / per_person)
    sliced = all_records.where(F.col("person_id") < max_pid)
    s_records = sliced.select(*CONTRACT_COLUMNS).persist()
    s_truth = sliced.select("source_system", "source_id", F.col("person_id").cast("string"))
    n_slice = s_records.count()
    o_wall, o_scores, _ = ours(s_records, s_truth, cfg)
    s_wall, s_scores, how = splink_alone(s_records, s_truth, cfg)
    lines = [
        f"slice: {n_slice:,} records of {max_pid:,} people",
        f"  ours:         {o_wall:.1f} s, pairwise F1 {o_scores['pairwise_f1']:.4f} "
        f"(P {o_scores['pairwise_precision']:.4f}, R {o_scores['pairwise_recall']:.4f})",
        f"  Splink alone: {s_wall:.1f} s, "
        + (
            f"pairwise F1 {s_scores['pairwise_f1']:.4f} (P {s_scores['pairwise_precision']:.4f}, "
            f"R {s_scores['pairwise_recall']:.4f})"
            if s_scores
            else "no F1"
        )
        + f"; clustering: {how}",
        f"  time ratio Splink alone / ours: {s_wall / o_wall:.2f}x",
    ]
    print("\n".join(lines), flush=True)  # noqa: T201 - benchmark output


if __name__ == "__main__":
    main()
