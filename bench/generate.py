"""Benchmark the generator on a preset: wall time, rows and bytes per table, peak memory,
and the top segment's share of people and revenue.

    .venv/bin/python bench/generate.py --preset reference [--out DIR] [--bad-input]

Prints figures; asserts nothing. Peak memory: the driver JVM's peak RSS (sampled from
/proc every 0.5 s, local mode so it holds the executors too) and the Python driver's
own peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from _common import RssSampler
from pyspark.sql import functions as F

from custseg.cli import setup_logging
from custseg.config import load_config
from custseg.generate import generate_world, write_world
from custseg.session import build_session

ROOT = Path(__file__).resolve().parents[1]


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="reference", choices=["tiny", "small", "reference"])
    parser.add_argument("--out", default=None, help="output folder (default: a temp folder, removed after)")
    parser.add_argument("--bad-input", action="store_true", help="inject bad rows (off by default)")
    parser.add_argument("--driver-memory", default="12g")
    args = parser.parse_args()
    setup_logging("INFO")

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="custseg-bench-"))
    cfg = load_config(
        ROOT / "conf" / "local.yaml",
        overrides=[
            f"generate.preset={args.preset}",
            f"generate.output_dir={out}",
            f"generate.bad_input.enabled={str(args.bad_input).lower()}",
            "spark.ui_enabled=false",
            f"spark.driver_memory={args.driver_memory}",
            f"spark.checkpoint_dir={out / '_checkpoints'}",
        ],
    )
    spark = build_session(cfg.spark)
    jvm_pid = int(spark.sparkContext._jvm.ProcessHandle.current().pid())  # type: ignore[union-attr]
    with RssSampler(jvm_pid) as jvm_rss:
        started = time.perf_counter()
        world = generate_world(spark, cfg.generate, seed=cfg.run.seed)
        counts = write_world(spark, world, cfg.generate, seed=cfg.run.seed)
        wall = time.perf_counter() - started

    raw = out / "raw"
    sizes = {name: folder_bytes(raw / name) for name in counts if not name.startswith("truth/")}
    tx = spark.read.parquet(str(raw / "transactions"))
    truth = spark.read.parquet(str(out / "truth" / "identity"))
    people = spark.read.parquet(str(out / "truth" / "people"))
    by_segment = (
        tx.join(truth, ["source_system", "source_id"], "inner")
        .join(people, "person_id")
        .groupBy("segment")
        .agg(F.sum("amount").alias("revenue"))
        .collect()  # one row per segment
    )
    revenue = {r["segment"]: float(r["revenue"]) for r in by_segment}
    seg_people = {
        r["segment"]: int(r["n"]) for r in people.groupBy("segment").agg(F.count("*").alias("n")).collect()
    }
    n_people = sum(seg_people.values())
    event_rows = sum(
        counts[k] for k in ("transactions", "product_usage", "support_contacts", "marketing_touches")
    )
    identity_rows = sum(v for k, v in counts.items() if k.startswith("identity_records/"))

    print()
    print(
        f"generator benchmark: preset={args.preset} people={n_people:,} cores={os.cpu_count()} "
        f"bad_input={args.bad_input}"
    )
    print(f"wall time (generate + write + read-back counts): {wall:,.1f} s")
    print(f"{'file set':<32}{'rows':>14}{'MiB on disk':>14}")
    for name, rows in counts.items():
        size = sizes.get(name)
        print(f"{name:<32}{rows:>14,}{(size / 2**20 if size is not None else float('nan')):>14,.1f}")
    print(
        f"identity records: {identity_rows:,}; event rows: {event_rows:,}; "
        f"rows/s overall: {(identity_rows + event_rows) / wall:,.0f}"
    )
    print(
        f"peak RSS: driver JVM {jvm_rss.peak_kb / 2**20:.2f} GiB; Python driver "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
    )
    total_revenue = sum(revenue.values())
    print(
        f"top segment 'core': {seg_people.get('core', 0) / n_people:.1%} of people, "
        f"{revenue.get('core', 0.0) / total_revenue:.1%} of revenue"
    )
    print(
        "segments:",
        json.dumps(
            {
                s: {"people": seg_people[s], "revenue_share": round(revenue.get(s, 0.0) / total_revenue, 4)}
                for s in sorted(seg_people)
            }
        ),
    )
    spark.stop()
    if not args.out:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
