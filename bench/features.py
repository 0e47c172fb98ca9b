"""Benchmark customer features on a generated preset, beside the engine's floor.

    .venv/bin/python bench/features.py --preset reference [--data DIR]

1. Draws the preset's event tables, customer attributes and the true identity map
   (source key -> person) once into DIR (default: a temp folder; with --data an earlier
   draw is reused) as Parquet.
2. In one session, each query run to completion into Spark's ``noop`` sink:
   - floor: one bare ``groupBy(customer).agg(count, sum, max)`` over transactions joined
     to the identity map (the issue's floor);
   - floor over every event table: the same bare aggregate over all four event tables
     joined to the identity map (the same rows the features read);
   - the as-of snapshot (``build_customer_features``);
   - the 12 month-end snapshots plus as-of (``build_feature_snapshots``).
   Prints wall time, event rows/s, peak RSS of the driver JVM and Python, the ratios, and
   a check against truth (lifetime orders equal to the people's drawn purchases).
   Asserts nothing.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from _common import RssSampler, bench_parser, bench_session
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from custseg.config import Config
from custseg.features import (
    FeatureSpec,
    build_customer_features,
    build_feature_snapshots,
    month_end_snapshots,
)
from custseg.generate import generate_world
from custseg.generate.world import truth_people

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.features")
EVENTS = ("transactions", "support_contacts", "product_usage", "marketing_touches")


def draw(spark: SparkSession, cfg: Config, out: Path) -> None:
    if (out / "_SUCCESS_EVENTS").exists():
        return
    world = generate_world(spark, cfg.generate, seed=cfg.run.seed)
    tables = {
        **world.customer_tables(),
        "identity_map": world.identity_records.select(
            "source_system", "source_id", F.col("person_id").cast("string").alias("customer_id")
        ),
        "people": truth_people(world.people, world.calendar),
    }
    for name, df in tables.items():
        started = time.perf_counter()
        df.write.mode("overwrite").parquet(str(out / name))
        log.info("drew %s in %.1f s", name, time.perf_counter() - started)
    (out / "_SUCCESS_EVENTS").write_text("ok")


def timed(run: Callable[[], DataFrame], jvm_pid: int) -> tuple[float, float]:
    """Wall seconds and peak JVM RSS (GiB) of running the query into the noop sink."""
    with RssSampler(jvm_pid) as rss:
        started = time.perf_counter()
        run().write.format("noop").mode("overwrite").save()
        wall = time.perf_counter() - started
    return wall, rss.peak_kb / 2**20


def bare_floor(events: dict[str, DataFrame], imap: DataFrame, tables: tuple[str, ...]) -> DataFrame:
    """groupBy(customer).agg(count, sum, max) over the given tables joined to the map."""
    value = {"transactions": "amount", "support_contacts": "cost", "product_usage": "sessions"}
    stamp = {"product_usage": "date"}
    union = None
    for name in tables:
        df = events[name].select(
            "source_system",
            "source_id",
            F.col(value.get(name, "cost")).cast("double").alias("v"),
            F.col(stamp.get(name, "ts")).cast("timestamp").alias("t"),
        )
        union = df if union is None else union.unionByName(df)
    assert union is not None
    return (
        union.join(imap, on=["source_system", "source_id"], how="inner")
        .groupBy("customer_id")
        .agg(F.count("*").alias("n"), F.sum("v").alias("v"), F.max("t").alias("t"))
    )


def main() -> None:
    parser = bench_parser(__doc__, "folder for (or of) the drawn events")
    args = parser.parse_args()
    cfg, spark, out, jvm_pid = bench_session(args, "features")
    draw(spark, cfg, out)
    read = {
        name: spark.read.parquet(str(out / name)) for name in (*EVENTS, "customer_attributes", "identity_map")
    }
    events = {name: read[name] for name in EVENTS}
    imap = read["identity_map"]
    rows = {name: df.count() for name, df in events.items()}
    n_events = sum(rows.values())
    as_of = cfg.generate.end_date + timedelta(days=1)
    fc = cfg.features
    kwargs = {
        "support": events["support_contacts"],
        "usage": events["product_usage"],
        "touches": events["marketing_touches"],
        "attributes": read["customer_attributes"],
        "windows_days": fc.windows_days,
        "categorical_attributes": fc.categorical_attributes,
        "numeric_attributes": fc.numeric_attributes,
    }
    snapshots = month_end_snapshots(as_of, fc.snapshot_months)
    header = (
        f"preset {args.preset}: {n_events:,} event rows ("
        + ", ".join(f"{k} {v:,}" for k, v in rows.items())
        + f"); local[*], 2 cores; as_of {as_of}; {len(snapshots)} snapshots"
    )
    print(header, flush=True)  # noqa: T201 - benchmark output
    labels = {
        "floor_tx": "floor: bare groupBy over joined transactions",
        "floor_all": "floor: bare groupBy over all joined event tables",
        "as_of": "as-of snapshot (build_customer_features)",
        "snapshots": f"{len(snapshots)} snapshots (build_feature_snapshots)",
    }
    queries = {
        "floor_tx": lambda: bare_floor(events, imap, ("transactions",)),
        "floor_all": lambda: bare_floor(events, imap, EVENTS),
        "as_of": lambda: build_customer_features(events["transactions"], imap, as_of=as_of, **kwargs),
        "snapshots": lambda: build_feature_snapshots(
            events["transactions"], imap, snapshot_dates=snapshots, **kwargs
        ),
    }
    results: dict[str, tuple[float, float]] = {}
    for key, query in queries.items():
        spark.catalog.clearCache()
        results[key] = wall, peak = timed(query, jvm_pid)
        n = rows["transactions"] if key == "floor_tx" else n_events
        line = f"  {labels[key]}: {wall:.1f} s ({n / wall:,.0f} event rows/s), peak JVM RSS {peak:.2f} GiB"
        print(line, flush=True)  # noqa: T201 - benchmark output
    a, s = results["as_of"][0], results["snapshots"][0]
    lines = [
        f"  ratio as-of / floor (transactions): {a / results['floor_tx'][0]:.2f}x (target <= 2.5x)",
        f"  ratio as-of / floor (all event tables): {a / results['floor_all'][0]:.2f}x",
        f"  ratio snapshots / as-of: {s / a:.2f}x (target <= 2x)",
        f"  peak RSS Python {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB",
    ]
    # Truth: every drawn purchase of a person is one order in the as-of snapshot.
    people = spark.read.parquet(str(out / "people")).where(~F.col("is_bot"))
    feats = build_customer_features(
        events["transactions"], imap, as_of=as_of, spec=FeatureSpec(windows_days=(30,))
    )
    check = people.join(
        feats.select(F.col("customer_id").alias("person_id"), "orders_lifetime"), "person_id", "left"
    ).agg(
        F.count("*").alias("people"),
        F.sum((F.coalesce("orders_lifetime", F.lit(0)) == F.col("n_purchases")).cast("int")).alias("equal"),
    )
    row = check.first()
    assert row is not None
    lines.append(
        f"  truth: lifetime orders equal drawn purchases for {row['equal']:,} of {row['people']:,} buyers"
    )
    print("\n".join(lines), flush=True)  # noqa: T201 - benchmark output


if __name__ == "__main__":
    main()
