"""Stitching quality against truth: pairwise precision/recall/F1 and B-cubed.

All computed in Spark from the (customer_id, person_id, records) contingency table; only
the final numbers reach the driver.

- pairwise: a predicted pair is two records under one customer_id, a true pair two
  records of one person; precision = true predicted pairs / predicted pairs.
- B-cubed (Bagga & Baldwin): per record, precision = share of its customer's records
  that are its person's, recall = share of its person's records under its customer;
  averaged over records.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


def _pairs(n: Column) -> Column:
    return n * (n - 1) / 2


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def stitch_scores(identity_map: DataFrame, truth: DataFrame) -> dict[str, float]:
    """Scores of ``identity_map`` (source_system, source_id, customer_id) against
    ``truth`` (source_system, source_id, person_id), on the records both hold."""
    joined = identity_map.select("source_system", "source_id", "customer_id").join(
        truth.select("source_system", "source_id", "person_id"), ["source_system", "source_id"]
    )
    cells = joined.groupBy("customer_id", "person_id").agg(F.count("*").alias("n"))
    by_customer = cells.groupBy("customer_id").agg(F.sum("n").alias("size_c"))
    by_person = cells.groupBy("person_id").agg(F.sum("n").alias("size_p"))
    row = (
        cells.join(by_customer, "customer_id")
        .join(by_person, "person_id")
        .agg(
            F.sum(_pairs(F.col("n"))).alias("tp"),
            F.sum("n").alias("records"),
            F.sum(F.col("n") * F.col("n") / F.col("size_c")).alias("b3_p"),
            F.sum(F.col("n") * F.col("n") / F.col("size_p")).alias("b3_r"),
        )
        .collect()[0]
    )
    predicted = by_customer.agg(F.sum(_pairs(F.col("size_c")))).collect()[0][0] or 0.0
    true_pairs = by_person.agg(F.sum(_pairs(F.col("size_p")))).collect()[0][0] or 0.0
    tp = float(row["tp"] or 0.0)
    records = float(row["records"] or 0.0)
    precision = tp / predicted if predicted else 1.0
    recall = tp / true_pairs if true_pairs else 1.0
    b3_p = float(row["b3_p"] or 0.0) / records if records else 1.0
    b3_r = float(row["b3_r"] or 0.0) / records if records else 1.0
    return {
        "pairwise_precision": precision,
        "pairwise_recall": recall,
        "pairwise_f1": _f1(precision, recall),
        "bcubed_precision": b3_p,
        "bcubed_recall": b3_r,
        "bcubed_f1": _f1(b3_p, b3_r),
        "scored_records": records,
        "true_pairs": float(true_pairs),
        "predicted_pairs": float(predicted),
    }
