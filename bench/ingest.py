"""Benchmark ingest on a generated preset with bad input on, beside a bare copy.

    .venv/bin/python bench/ingest.py --preset reference [--data DIR] [--keep]

Generates the preset with bad-input injection (unless --data points at one already
generated with it), ingests it into a fresh warehouse, then, in the same run and session,
times a bare ``spark.read.<format>(files).write.format("delta")`` of the same files (CSV
with header and multiLine, JSON with the same all-text schema, Parquet as stored). Prints
wall time and rows/s per table, quarantined rows by reason, and the ingest/bare ratio.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from custseg.cli import setup_logging
from custseg.config import Config, load_config
from custseg.contract import CONTRACTS
from custseg.generate import generate_world, write_world
from custseg.ingest.runner import (
    check_sources,
    identity_key_set,
    ingest_table,
    raw_dir,
    record_files,
    run_as_of,
)
from custseg.ingest.sources import expected_source_columns
from custseg.session import build_session
from custseg.tables import TableStore

ROOT = Path(__file__).resolve().parents[1]


def bare_copy(spark: SparkSession, cfg: Config, table: str, target: str) -> float:
    """Seconds to copy a table's raw files into a Delta table with no checks."""
    started = time.perf_counter()
    for i, src in enumerate(cfg.ingest.sources[table]):
        path = os.path.join(raw_dir(cfg), str(src.path))
        if src.format == "csv":
            df = spark.read.option("header", True).option("multiLine", True).option("escape", '"').csv(path)
        elif src.format == "json":
            cols = expected_source_columns(CONTRACTS[table], src)
            df = spark.read.schema(T.StructType([T.StructField(c, T.StringType()) for c in cols])).json(path)
        else:
            df = spark.read.format(src.format).load(path)
        # Delta rejects spaces in column names (the call centre's headers): rename only.
        df = df.toDF(*[c.replace(" ", "_") for c in df.columns])
        df.write.format("delta").mode("overwrite").save(f"{target}/{table}_{i}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="reference", choices=["tiny", "small", "reference"])
    parser.add_argument("--data", default=None, help="an already generated folder (with bad input)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data and tables")
    parser.add_argument("--driver-memory", default="12g")
    args = parser.parse_args()
    setup_logging("INFO")
    work = Path(tempfile.mkdtemp(prefix="custseg-bench-ingest-"))
    data = Path(args.data) if args.data else work / "generated"
    print(f"working in {work}; data in {data}", flush=True)
    cfg = load_config(
        ROOT / "conf" / "local.yaml",
        overrides=[
            f"generate.preset={args.preset}",
            f"generate.output_dir={data}",
            "generate.bad_input.enabled=true",
            f"storage.warehouse={work / 'warehouse'}",
            "spark.ui_enabled=false",
            f"spark.driver_memory={args.driver_memory}",
            f"spark.checkpoint_dir={work / 'ckpt'}",
            "ingest.as_of=2026-11-01",
        ],
    )
    spark = build_session(cfg.spark)
    if not args.data:
        t0 = time.perf_counter()
        write_world(
            spark, generate_world(spark, cfg.generate, seed=cfg.run.seed), cfg.generate, seed=cfg.run.seed
        )
        print(f"generated {args.preset} with bad input in {time.perf_counter() - t0:,.1f} s")

    store = TableStore(spark, cfg.storage.warehouse, run_id="bench-ingest")
    # As ingest_all does; the bare copy below runs with the same split size.
    spark.conf.set("spark.sql.files.maxPartitionBytes", cfg.ingest.max_partition_bytes)
    t0 = time.perf_counter()
    frames = check_sources(spark, cfg)
    check_seconds = time.perf_counter() - t0
    # As ingest_all does: the run's files listed once, the identity keys persisted once.
    t0 = time.perf_counter()
    record_files(store, frames)
    as_of = run_as_of(store, cfg.ingest)
    check_seconds += time.perf_counter() - t0
    results = []
    identity = None
    for table, table_frames in frames.items():
        t0 = time.perf_counter()
        if CONTRACTS[table].event and identity is None:
            identity = identity_key_set(store)
        report = ingest_table(store, CONTRACTS[table], table_frames, cfg.ingest, identity, as_of)
        seconds = time.perf_counter() - t0
        results.append((table, report, seconds))
    ingest_total = check_seconds + sum(s for _, _, s in results)
    for table, report, seconds in results:
        print(f"ingested {table}: {sum(report.read.values()):,} rows in {seconds:.1f} s", flush=True)

    bare = {table: bare_copy(spark, cfg, table, str(work / "bare")) for table in frames}
    bare_total = sum(bare.values())

    print()
    print(
        f"ingest benchmark: preset={args.preset} cores={os.cpu_count()} bad_input=on "
        f"(rate {cfg.generate.bad_input.rate})"
    )
    print(f"source checks (all sources, before any write) and the file listing: {check_seconds:.1f} s")
    print(
        f"{'table':<22}{'rows read':>12}{'ingest s':>10}{'rows/s':>10}{'bare s':>9}{'ratio':>7}"
        f"{'quarantined':>13}{'orphans':>9}"
    )
    for table, report, seconds in results:
        rows = sum(report.read.values())
        print(
            f"{table:<22}{rows:>12,}{seconds:>10.1f}{rows / seconds:>10,.0f}{bare[table]:>9.1f}"
            f"{seconds / bare[table]:>7.2f}{report.quarantined:>13,}{report.orphans:>9,}"
        )
    print(
        f"{'total':<22}{sum(sum(r.read.values()) for _, r, _ in results):>12,}{ingest_total:>10.1f}"
        f"{'':>10}{bare_total:>9.1f}{ingest_total / bare_total:>7.2f}"
    )
    reasons: dict[str, int] = {}
    for _, report, _ in results:
        for (_, reason), n in report.by_reason.items():
            if reason != "accepted":
                reasons[reason] = reasons.get(reason, 0) + n
    print("quarantined by reason:", json.dumps(dict(sorted(reasons.items()))))
    q = store.read("bronze.quarantine").groupBy("table").agg(F.count("*").alias("n")).collect()
    print("bronze.quarantine rows by table:", {r["table"]: r["n"] for r in q})
    spark.stop()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work}")


if __name__ == "__main__":
    main()
