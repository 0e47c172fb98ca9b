"""How much pairwise recall a drawn set of identity records allows, and how much names say.

    .venv/bin/python bench/stitch_bound.py --data DIR [--preset reference]

Reads the records ``bench/stitch.py`` drew into DIR (``records/``, with ``person_id``),
standardises them as the stage does, and for each person links two of their records
whenever they hold an equal value of a key, transitively, with an oracle that never links
different persons. Prints the share of true pairs each key set connects: the strong keys
(email, phone, birth date, postcode, device, account), then adding the email's local
part, then the full name. Also prints how often a key value or a full name is held by
more than one person. The per-person work runs in Spark (whole persons per partition);
nothing per record reaches the driver. Asserts nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from _common import bench_parser, bench_session
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from custseg.stitch.standardise import standardise_records

STRONG = ["email", "phone", "date_of_birth", "postcode", "device_id", "account_number"]
KEY_SETS = {
    "strong keys": STRONG,
    "+ email local part": [*STRONG, "email_local"],
    "+ full name": [*STRONG, "email_local", "full_name"],
}


def _pairs(labels: np.ndarray) -> int:
    sizes = np.unique(labels, return_counts=True)[1].astype(np.int64)
    return int((sizes * (sizes - 1) // 2).sum())


def _connected_pairs(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Per partition (whole persons): true pairs, and the pairs each key set connects.

    A record is joined to the first record of its person holding the same value of a
    key; the components of those edges (scipy) are what an oracle linking on equal
    values, within one person only, connects."""
    df = pd.concat(list(batches), ignore_index=True)
    if df.empty:
        return
    n = len(df)
    index = pd.Series(np.arange(n))
    row = {"true_pairs": _pairs(df["person_id"].to_numpy())}
    for label, keys in KEY_SETS.items():
        sources, targets = [np.arange(n)], [np.arange(n)]
        for key in keys:
            held = df[key].notna()
            first = index[held].groupby([df.loc[held, "person_id"], df.loc[held, key]]).transform("min")
            sources.append(first.index.to_numpy())
            targets.append(first.to_numpy())
        graph = coo_matrix(
            (np.ones(sum(len(x) for x in sources)), (np.concatenate(sources), np.concatenate(targets))),
            shape=(n, n),
        )
        row[label] = _pairs(connected_components(graph, directed=False)[1])
    yield pd.DataFrame([row])


def shared_share(std: DataFrame, column: str) -> tuple[float, int]:
    """Share of records (with the field) whose value other persons hold too, and values so held."""
    holders = (
        std.where(F.col(column).isNotNull())
        .groupBy(column)
        .agg(F.countDistinct("person_id").alias("persons"), F.count("*").alias("records"))
    )
    row = holders.agg(
        (F.sum(F.when(F.col("persons") > 1, F.col("records"))) / F.sum("records")).alias("share"),
        F.count(F.when(F.col("persons") > 1, 1)).alias("values"),
    ).collect()[0]
    return float(row["share"] or 0.0), int(row["values"])


def main() -> None:
    parser = bench_parser(__doc__, "the folder bench/stitch.py drew the records into")
    args = parser.parse_args()
    if not args.data or not (Path(args.data) / "records").exists():
        parser.error("--data must be a folder bench/stitch.py drew records into (DIR/records)")
    cfg, spark, out, _ = bench_session(args, "stitch_bound")
    records = spark.read.parquet(str(out / "records"))
    std = (
        standardise_records(records, cfg.stitch)
        .join(records.select(F.concat_ws(":", "source_system", "source_id").alias("rid"), "person_id"), "rid")
        .withColumn("full_name", F.concat_ws(" ", "first_name_canon", "last_name"))
        .withColumn(
            "full_name",
            F.when(
                F.col("first_name_canon").isNotNull() & F.col("last_name").isNotNull(), F.col("full_name")
            ),
        )
        .withColumn("date_of_birth", F.col("date_of_birth").cast("string"))
    )
    columns = ["person_id", *KEY_SETS["+ full name"]]
    schema = "true_pairs long, " + ", ".join(f"`{k}` long" for k in KEY_SETS)
    pairs = std.select(*columns).repartition(64, "person_id").mapInPandas(_connected_pairs, schema)  # type: ignore[arg-type]
    totals = pairs.agg(*[F.sum(c).alias(c) for c in ["true_pairs", *KEY_SETS]]).collect()[0]
    true_pairs = totals["true_pairs"]
    lines = [
        f"{records.count():,} records, {true_pairs:,} true pairs; linked by an oracle on equal values of"
    ]
    lines += [f"  {label}: {totals[label] / true_pairs:.4f} of true pairs" for label in KEY_SETS]
    lines.append("records whose value other persons hold too (values so held):")
    for column in [*STRONG, "full_name"]:
        share, values = shared_share(std, column)
        lines.append(f"  {column}: {share:.4f} ({values:,})")
    print("\n".join(lines), flush=True)  # noqa: T201 - benchmark output


if __name__ == "__main__":
    main()
