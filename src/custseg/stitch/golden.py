"""Golden records: one row per customer, each field chosen by survivorship rules.

Per field, the candidates are the cluster's non-null standardised values (placeholders
are already null). The rules of ``stitch.survivorship[field]`` order them:
``source_priority`` (``stitch.source_priority[field]`` or its ``default``),
``most_frequent`` (records in the cluster carrying the value), ``most_recent``
(``updated_at``); the record key breaks the last tie, so the result is deterministic.
``<field>_source`` names the record (``source_system:source_id``) that supplied it.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from custseg.config import StitchConfig

DISPLAY = {"first_name": F.initcap, "last_name": F.initcap}


def _priority(field: str, cfg: StitchConfig) -> Column:
    order = cfg.source_priority.get(field) or cfg.source_priority.get("default") or []
    expr = F.lit(len(order))
    for i, system in reversed(list(enumerate(order))):
        expr = F.when(F.col("source_system") == system, F.lit(i)).otherwise(expr)
    return expr


def golden_records(std: DataFrame, ids: DataFrame, cfg: StitchConfig) -> DataFrame:
    """``std``: standardised records (rid, source_system, updated_at, fields); ``ids``:
    (rid, customer_id). Returns customer_id, n_records, source_systems and, per field of
    ``cfg.survivorship``, the value and ``<field>_source``."""
    fields = list(cfg.survivorship)
    base = std.join(ids.select("rid", "customer_id"), "rid")
    long = base.select(
        "customer_id",
        "rid",
        "source_system",
        "updated_at",
        F.explode(
            F.array(
                *[F.struct(F.lit(f).alias("field"), F.col(f).cast("string").alias("value")) for f in fields]
            )
        ).alias("fv"),
    ).select("customer_id", "rid", "source_system", "updated_at", "fv.field", "fv.value")
    long = long.where(F.col("value").isNotNull())
    freq = Window.partitionBy("customer_id", "field", "value")
    long = long.withColumn("frequency", F.count("*").over(freq))
    priority = F.lit(0)
    for f in fields:
        priority = F.when(F.col("field") == f, _priority(f, cfg)).otherwise(priority)
    long = long.withColumn("priority", priority)
    # One window over (customer, field): the k-th sort key of a row is the k-th rule of
    # its field, each as a number where smaller wins.
    rule_value = {
        "source_priority": F.col("priority").cast("double"),
        "most_frequent": -F.col("frequency").cast("double"),
        "most_recent": -F.coalesce(F.unix_micros(F.col("updated_at")), F.lit(-(2**62))).cast("double"),
    }
    depth = max(len(r) for r in cfg.survivorship.values())
    keys = []
    for k in range(depth):
        key = F.lit(0.0)
        for f in fields:
            rules = cfg.survivorship[f]
            if k < len(rules):
                key = F.when(F.col("field") == f, rule_value[rules[k]]).otherwise(key)
        keys.append(key.alias(f"k{k}"))
    w = Window.partitionBy("customer_id", "field").orderBy(*[f"k{k}" for k in range(depth)], "rid")
    ranked = long.select("*", *keys).withColumn("rank", F.row_number().over(w)).where("rank = 1")
    picked = (
        ranked.groupBy("customer_id")
        .pivot("field", list[bool | float | int | str](fields))
        .agg(F.first("value").alias("value"), F.first("rid").alias("source"))
    )
    renamed = picked.select(
        "customer_id",
        *[
            x
            for f in fields
            for x in (
                _typed(f, DISPLAY.get(f, lambda c: c)(F.col(f"{f}_value"))).alias(f),
                F.col(f"{f}_source").alias(f"{f}_source"),
            )
        ],
    )
    sizes = base.groupBy("customer_id").agg(
        F.count("*").alias("n_records"),
        F.sort_array(F.collect_set("source_system")).alias("source_systems"),
        F.max("updated_at").alias("last_updated_at"),
    )
    return sizes.join(renamed, "customer_id", "left")


def _typed(field: str, c: Column) -> Column:
    return c.cast("date") if field == "date_of_birth" else c
