"""Deterministic links: records that share a strong key (email, phone, device, account).

Guards, each reported by key and hashed value: a key value held by more than
``max_key_records`` records (a placeholder that slipped through, a call-centre default)
links nothing; neither does a key value whose holders contradict each other on a conflict
field (a household landline, a shared device, the ``oliver_edwards@`` address two Oliver
Edwardses both use). Records left unlinked go to the probabilistic pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from custseg.config import StitchConfig
from custseg.stitch.standardise import date_up_to_swap


@dataclass(frozen=True)
class DeterministicResult:
    links: DataFrame  # rid_l < rid_r, keys (array of key names), match_probability 1.0
    guarded_keys: DataFrame  # key, value_hash, n_records, reason (no raw values)


def _first_names_agree(
    l_first: Column, r_first: Column, l_canon: Column, r_canon: Column, l_last: Column, r_last: Column
) -> Column:
    shorter = F.least(F.length(l_first), F.length(r_first))
    return (
        (F.levenshtein(l_canon, r_canon) <= 2)  # Kate -> katherine against Katharine
        | (F.levenshtein(l_first, r_first) <= 2)
        # a short form the table lacks or cannot tell apart (Sam: Samuel or Samantha)
        | ((shorter >= 3) & (l_first.startswith(r_first) | r_first.startswith(l_first)))
        | (l_first == r_last)
        | (r_first == l_last)
    )


def _disagree(cfg: StitchConfig, left: Callable[[str], Column], right: Callable[[str], Column]) -> Column:
    """True when two records disagree on a conflict field that both have; ``left`` and
    ``right`` give a record's field by name (a column of a joined side, or a field of a
    struct in a higher-order function)."""
    out = F.lit(False)
    for field in cfg.conflict_fields:
        both = left(field).isNotNull() & right(field).isNotNull()
        if field == "first_name":
            agree = _first_names_agree(
                left("first_name"),
                right("first_name"),
                left("first_name_canon"),
                right("first_name_canon"),
                left("last_name"),
                right("last_name"),
            )
        elif field == "date_of_birth":
            agree = date_up_to_swap(left(field)) == date_up_to_swap(right(field))
        else:
            agree = left(field) == right(field)
        out = out | (both & ~F.coalesce(agree, F.lit(False)))
    return out


def conflict(cfg: StitchConfig, left: str = "l", right: str = "r") -> Column:
    """True when two records (aliased ``left`` and ``right``) disagree on a conflict field
    that both have."""
    return _disagree(cfg, lambda name: F.col(f"{left}.{name}"), lambda name: F.col(f"{right}.{name}"))


def _compared_fields(cfg: StitchConfig) -> list[str]:
    return sorted({*cfg.conflict_fields, "first_name", "first_name_canon", "last_name"})


def deterministic_links(std: DataFrame, cfg: StitchConfig) -> DeterministicResult:
    """Links between records sharing a usable strong key and not in conflict.

    Each key value's holders are gathered in one place with the fields they could
    disagree on (one shuffle, a window counting them, so a value held by a million
    records is counted and never gathered), and the holders of a usable value are
    compared with each other there: no self-join of the key table and no join back to
    the records for the fields (on the reference preset: 1.6M holder pairs, two joins of
    them with 1.2M records).
    """
    compared = _compared_fields(cfg)
    stacked = F.explode(
        F.array(
            *[
                F.struct(F.lit(k).alias("key"), F.col(k).cast("string").alias("value"))
                for k in cfg.deterministic_keys
            ]
        )
    )
    kv = (
        std.select(F.struct("rid", *compared).alias("holder"), stacked.alias("kv"))
        .select("holder", "kv.key", "kv.value")
        .where(F.col("value").isNotNull())
    )
    shared = kv.withColumn("n_records", F.count("*").over(Window.partitionBy("key", "value"))).where(
        F.col("n_records") > 1
    )
    usable = F.col("n_records") <= cfg.max_key_records
    # Grouped on the window's own partitioning: no second shuffle.
    groups = shared.groupBy("key", "value", "n_records").agg(
        F.collect_list(F.when(usable, F.col("holder"))).alias("holders")
    )
    # A key value whose holders contradict each other (two birth dates, two phones...)
    # belongs to more than one person: none of its pairs is a link, however many of them
    # look alike, because the closure over the others would merge the people anyway.
    contradicts = F.exists(
        "holders",
        lambda a: F.exists(
            "holders",
            lambda b: (a["rid"] < b["rid"]) & _disagree(cfg, lambda f: a[f], lambda f: b[f]),
        ),
    )
    groups = groups.withColumn(
        "reason",
        F.when(~usable, F.lit("too_many_records")).when(contradicts, F.lit("conflicting_holders")),
    ).localCheckpoint()
    pairs = F.filter(
        F.flatten(
            F.transform(
                "holders",
                lambda a: F.transform(
                    "holders", lambda b: F.struct(a["rid"].alias("rid_l"), b["rid"].alias("rid_r"))
                ),
            )
        ),
        lambda p: p["rid_l"] < p["rid_r"],
    )
    links = (
        groups.where(F.col("reason").isNull())
        .select("key", F.explode(pairs).alias("pair"))
        .groupBy(F.col("pair.rid_l").alias("rid_l"), F.col("pair.rid_r").alias("rid_r"))
        .agg(F.sort_array(F.collect_set("key")).alias("keys"))
        .withColumns({"match_probability": F.lit(1.0), "link_type": F.lit("deterministic")})
    )
    guarded = groups.where(F.col("reason").isNotNull()).select(
        "key", F.sha2("value", 256).alias("value_hash"), "n_records", "reason"
    )
    return DeterministicResult(links=links, guarded_keys=guarded)


def with_conflict(pairs: DataFrame, std: DataFrame, cfg: StitchConfig) -> DataFrame:
    """``pairs`` (rid_l, rid_r, ...) plus ``conflict``: whether the two records contradict
    each other on a ``conflict_fields`` field."""
    side = std.select("rid", *_compared_fields(cfg))
    return (
        pairs.join(side.alias("l"), F.col("rid_l") == F.col("l.rid"))
        .join(side.alias("r"), F.col("rid_r") == F.col("r.rid"))
        .select(*pairs.columns, conflict(cfg).alias("conflict"))
    )
