"""Identity stitching on records we did not generate, beside Splink's plain configuration.

    .venv/bin/python bench/stitch_external.py [--data DIR] [--preset small] [--only febrl4,...] [--set K=V]

Datasets, each run through ``stitch_identities`` with the default settings (no tuning per
dataset) and through Splink alone, in the same run:

- ``febrl4``: FEBRL 4 (5,000 + 5,000 census-style records, one true match each), names,
  birth date, postcode and address; ``febrl4-id``: the same with the social security
  number as ``account_number``;
- ``febrl3``: FEBRL 3 (5,000 records of one source, duplicates within it);
- ``generated``: the generator's identity records of ``--preset`` (default small) with
  emails, phones and devices removed (drawn once into DIR).

Splink alone: Splink 4 on DuckDB with the plain configuration a user would write (raw
values lower-cased and trimmed, birth dates parsed): Jaro-Winkler levels on first name,
last name and address, ``DateOfBirthComparison``, Levenshtein levels on postcode and the
account number when given; blocking on each of first name, last name, birth date and
postcode where that makes at most --plain-max-pairs-per-record pairs per record, else
on first and last name, birth date with postcode, and last name with postcode; prior
from the pairs equal on names and birth date (recall 0.7); u by random sampling; m by EM
on birth date and on the full name; links at 0.8 (our ``match_threshold``), clustered at
0.8. Prints time, records/s and pairwise precision/recall/F1 of both. Asserts nothing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
from _common import bench_parser, bench_session
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from custseg.config import Config
from custseg.stitch import stitch_identities
from custseg.stitch.febrl import febrl_records
from custseg.stitch.quality import stitch_scores

log = logging.getLogger("bench.stitch_external")
FIELDS = ("first_name", "last_name", "date_of_birth", "postcode", "address", "account_number")


def generated(spark: SparkSession, cfg: Config, out: Path) -> tuple[DataFrame, DataFrame]:
    from stitch import draw  # bench/stitch.py: draws the preset's identity records once

    draw(spark, cfg, out)
    df = spark.read.parquet(str(out / "records"))
    truth = df.select("source_system", "source_id", F.col("person_id").cast("string"))
    return df.drop("person_id", "email", "phone", "device_id"), truth


def ours(records: DataFrame, truth: DataFrame, cfg: Config) -> tuple[float, dict[str, float], str]:
    started = time.perf_counter()
    result = stitch_identities(records, cfg.stitch, seed=cfg.run.seed)
    imap = result.identity_map.localCheckpoint()  # materialised: the function's real output
    imap.count()
    wall = time.perf_counter() - started
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    return wall, stitch_scores(imap, truth), steps


def _plain_frame(records: DataFrame) -> pd.DataFrame:
    """The records as a user hands them to Splink: text lower-cased and trimmed, birth
    dates parsed (ISO or YYYYMMDD)."""
    cols = [c for c in FIELDS if c in records.columns]
    pdf = records.select(F.concat_ws(":", "source_system", "source_id").alias("unique_id"), *cols).toPandas()
    for c in cols:
        if c != "date_of_birth":
            pdf[c] = pdf[c].astype("string").str.strip().str.lower().replace("", pd.NA)
    if "date_of_birth" in cols:
        text = pdf["date_of_birth"].astype("string").str.strip()
        iso = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
        compact = pd.to_datetime(text, format="%Y%m%d", errors="coerce")
        pdf["date_of_birth"] = iso.fillna(compact).dt.strftime("%Y-%m-%d")
    return pdf.astype(object).where(pdf.notna(), None)


def splink_plain(
    records: DataFrame, truth: DataFrame, max_pairs_per_record: float
) -> tuple[float, dict[str, float], str]:
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    started = time.perf_counter()
    pdf = _plain_frame(records)
    have = [c for c in FIELDS if c in pdf.columns and pdf[c].notna().any()]
    comparisons: list[Any] = [cl.JaroWinklerAtThresholds(c, [0.9, 0.7]) for c in ("first_name", "last_name")]
    if "date_of_birth" in have:
        comparisons.append(
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y-%m-%d")
        )
    if "postcode" in have:
        comparisons.append(cl.LevenshteinAtThresholds("postcode", [1]))
    if "address" in have:
        comparisons.append(cl.JaroWinklerAtThresholds("address", [0.9, 0.7]))
    if "account_number" in have:
        comparisons.append(cl.LevenshteinAtThresholds("account_number", [1]))
    n = len(pdf)
    singles = [c for c in ("first_name", "last_name", "date_of_birth", "postcode") if c in have]
    counts = {c: int((pdf[c].value_counts() * (pdf[c].value_counts() - 1) / 2).sum()) for c in singles}
    if all(v <= max_pairs_per_record * n for v in counts.values()):
        blocking = [block_on(c) for c in singles]
        how = "each of " + ", ".join(singles)
    else:
        blocking = [
            block_on("first_name", "last_name"),
            block_on("date_of_birth", "postcode"),
            block_on("last_name", "postcode"),
        ]
        how = "full name; birth date + postcode; last name + postcode"
    settings = SettingsCreator(
        link_type="dedupe_only", comparisons=comparisons, blocking_rules_to_generate_predictions=blocking
    )
    linker = Linker(pdf, settings, DuckDBAPI())
    logging.getLogger("splink").setLevel(logging.WARNING)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("first_name", "last_name", "date_of_birth")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1_000_000, seed=42)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("first_name", "last_name"))
    scored = linker.inference.predict(threshold_match_probability=0.8)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(scored, 0.8).as_pandas_dataframe()
    wall = time.perf_counter() - started
    spark = records.sparkSession
    out = spark.createDataFrame(clusters[["unique_id", "cluster_id"]].astype(str)).select(
        F.substring_index("unique_id", ":", 1).alias("source_system"),
        F.expr("substring(unique_id, length(substring_index(unique_id, ':', 1)) + 2)").alias("source_id"),
        F.col("cluster_id").alias("customer_id"),
    )
    return wall, stitch_scores(out, truth), how


def _fmt(scores: dict[str, float]) -> str:
    return (
        f"P {scores['pairwise_precision']:.4f}  R {scores['pairwise_recall']:.4f}  "
        f"F1 {scores['pairwise_f1']:.4f}"
    )


def main() -> None:
    parser = bench_parser(__doc__, "folder for the drawn records of --preset (default: a temp folder)")
    parser.set_defaults(preset="small")
    parser.add_argument("--only", default="febrl4,febrl4-id,febrl3,generated")
    parser.add_argument("--plain-max-pairs-per-record", type=float, default=50.0)
    args = parser.parse_args()
    cfg, spark, out, _ = bench_session(args, "stitch-external")
    logging.getLogger("custseg").setLevel(logging.WARNING)
    for name in args.only.split(","):
        if name == "generated":
            records, truth = generated(spark, cfg, out)
        else:
            records, truth = febrl_records(spark, name.removesuffix("-id"), id_number=name.endswith("-id"))
        records = records.persist()
        n = records.count()
        ours(records, truth, cfg) if n <= 20_000 else None  # warm-up: the first call pays JIT and jar loading
        o_wall, o_scores, steps = ours(records, truth, cfg)
        s_wall, s_scores, how = splink_plain(records, truth, args.plain_max_pairs_per_record)
        print(  # noqa: T201 - benchmark output
            f"{name}: {n:,} records, {int(o_scores['true_pairs']):,} true pairs\n"
            f"  ours (defaults):  {o_wall:6.1f} s ({n / o_wall:,.0f} records/s)  {_fmt(o_scores)}\n"
            f"  Splink plain:     {s_wall:6.1f} s ({n / s_wall:,.0f} records/s)  {_fmt(s_scores)}\n"
            f"  Splink plain blocking: {how}\n"
            f"  ours by step: {steps}",
            flush=True,
        )
        records.unpersist()


if __name__ == "__main__":
    main()
