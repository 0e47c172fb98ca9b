"""Stable customer ids: deterministic from cluster content, persistent across runs.

A new cluster's id is ``<prefix>`` + the first 16 hex digits of the HMAC-SHA256, under the
deployment's pseudonym key (``custseg.privacy``), of its smallest record key
(``source_system:source_id``): never a random or position-dependent number, and not one a
reader can recompute from a guessable account number without the key.
Given the previous identity map, ids carry over: a previous id goes to the new cluster
holding most of its old records, provided that cluster holds more of this id's records
than of any other previous id (ties: the smaller id, the smaller cluster key). Every
previous id whose records now sit under another id is recorded as ``merged`` (the old id
is gone) or ``split`` (it lives on, but some of its records moved).

A new id never repeats an id given before: when a cluster's content id equals a previous
or retired id (a split that left the old cluster's smallest record in the piece that did
not keep the id), it is salted (``component#<run id>``) instead. The stage asserts that each id
names one cluster (``IdCollisionError``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from custseg.privacy import pseudonym


@dataclass(frozen=True)
class IdAssignment:
    ids: DataFrame  # rid, component, customer_id
    changes: DataFrame  # old_customer_id, new_customer_id, n_records, change


def content_id(record: Column, prefix: str, key: bytes) -> Column:
    return F.concat(F.lit(prefix), F.substring(pseudonym(record, key), 1, 16))


def assign_ids(
    clusters: DataFrame,
    prefix: str,
    previous_map: DataFrame | None = None,
    retired: DataFrame | None = None,
    salt: str = "",
    *,
    key: bytes,
) -> IdAssignment:
    """``clusters``: (rid, component) where component is the smallest rid of the cluster.
    ``retired``: (customer_id) ids given before that no cluster keeps (the old ids of
    ``silver.identity_id_changes``); neither they nor the previous ids are given again."""
    fresh = clusters.withColumn("customer_id", content_id(F.col("component"), prefix, key))
    spark = clusters.sparkSession
    empty_changes = spark.createDataFrame(
        [], "old_customer_id string, new_customer_id string, n_records long, change string"
    )
    if previous_map is None:
        return IdAssignment(ids=fresh, changes=empty_changes)
    prev = previous_map.select(
        F.concat_ws(":", "source_system", "source_id").alias("rid"), F.col("customer_id").alias("prev_id")
    )
    overlap = clusters.join(prev, "rid").groupBy("component", "prev_id").agg(F.count("*").alias("n"))
    by_component = Window.partitionBy("component").orderBy(F.desc("n"), "prev_id")
    by_prev = Window.partitionBy("prev_id").orderBy(F.desc("n"), "component")
    ranked = overlap.withColumns(
        {"rank_c": F.row_number().over(by_component), "rank_p": F.row_number().over(by_prev)}
    )
    kept = ranked.where((F.col("rank_c") == 1) & (F.col("rank_p") == 1)).select(
        "component", F.col("prev_id").alias("kept_id")
    )
    given = previous_map.select(F.col("customer_id").alias("given_id"))
    if retired is not None:
        given = given.unionByName(retired.select(F.col("customer_id").alias("given_id")))
    given = given.distinct().withColumn("taken", F.lit(True))
    components = (
        clusters.select("component")
        .distinct()
        .withColumn("content_id", content_id(F.col("component"), prefix, key))
        .join(kept, "component", "left")
        .join(given, F.col("content_id") == F.col("given_id"), "left")
        .select(
            "component",
            F.coalesce(
                "kept_id",
                F.when(
                    F.col("taken"), content_id(F.concat(F.col("component"), F.lit(f"#{salt}")), prefix, key)
                ).otherwise(F.col("content_id")),
            ).alias("customer_id"),
        )
    )
    ids = clusters.join(components, "component")
    new_of_component = components.select("component", F.col("customer_id").alias("new_customer_id"))
    survivors = kept.select(F.col("kept_id").alias("prev_id"), F.lit(True).alias("survives"))
    changes = (
        overlap.join(new_of_component, "component")
        .where(F.col("prev_id") != F.col("new_customer_id"))
        .join(survivors, "prev_id", "left")
        .select(
            F.col("prev_id").alias("old_customer_id"),
            "new_customer_id",
            F.col("n").alias("n_records"),
            F.when(F.col("survives"), F.lit("split")).otherwise(F.lit("merged")).alias("change"),
        )
    )
    return IdAssignment(ids=ids, changes=changes)


class IdCollisionError(RuntimeError):
    """Two clusters were given one customer id."""
