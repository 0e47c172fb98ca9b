"""Deterministic links: records that share a strong key (email, phone, device, account).

Guards, each reported by key and hashed value: a key value held by more than
``max_key_records`` records (a placeholder that slipped through, a call-centre default)
links nothing; neither does a key value whose holders contradict each other on a conflict
field (a household landline, a shared device, the ``oliver_edwards@`` address two Oliver
Edwardses both use). Records left unlinked go to the probabilistic pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from custseg.config import StitchConfig
from custseg.stitch.standardise import date_up_to_swap


@dataclass(frozen=True)
class DeterministicResult:
    links: DataFrame  # rid_l < rid_r, keys (array of key names), match_probability 1.0
    guarded_keys: DataFrame  # key, value_hash, n_records, reason (no raw values)


def key_values(std: DataFrame, keys: list[str]) -> DataFrame:
    """Long table (rid, key, value) of the non-null strong keys."""
    stacked = F.explode(
        F.array(*[F.struct(F.lit(k).alias("key"), F.col(k).cast("string").alias("value")) for k in keys])
    )
    return (
        std.select("rid", stacked.alias("kv"))
        .select("rid", "kv.key", "kv.value")
        .where(F.col("value").isNotNull())
    )


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


def conflict(cfg: StitchConfig, left: str = "l", right: str = "r") -> Column:
    """True when two records (aliased ``left`` and ``right``) disagree on a conflict field
    that both have."""

    def c(side: str, name: str) -> Column:
        return F.col(f"{side}.{name}")

    out = F.lit(False)
    for field in cfg.conflict_fields:
        both = c(left, field).isNotNull() & c(right, field).isNotNull()
        if field == "first_name":
            agree = _first_names_agree(
                c(left, "first_name"),
                c(right, "first_name"),
                c(left, "first_name_canon"),
                c(right, "first_name_canon"),
                c(left, "last_name"),
                c(right, "last_name"),
            )
        elif field == "date_of_birth":
            agree = date_up_to_swap(c(left, field)) == date_up_to_swap(c(right, field))
        else:
            agree = c(left, field) == c(right, field)
        out = out | (both & ~F.coalesce(agree, F.lit(False)))
    return out


def deterministic_links(std: DataFrame, cfg: StitchConfig) -> DeterministicResult:
    """Links between records sharing a usable strong key and not in conflict."""
    kv = key_values(std, cfg.deterministic_keys)
    # Links and guarded keys both read the counts and the checked pairs: materialise them
    # once instead of running the key self-join twice.
    counts = kv.groupBy("key", "value").agg(F.count("*").alias("n_records")).localCheckpoint()
    too_many = counts.where(F.col("n_records") > cfg.max_key_records).select(
        "key",
        F.sha2("value", 256).alias("value_hash"),
        "n_records",
        F.lit("too_many_records").alias("reason"),
    )
    usable = counts.where(F.col("n_records").between(2, cfg.max_key_records)).select("key", "value")
    members = kv.join(usable, ["key", "value"])
    pairs = (
        members.alias("a")
        .join(members.alias("b"), ["key", "value"])
        .where(F.col("a.rid") < F.col("b.rid"))
        .select(F.col("a.rid").alias("rid_l"), F.col("b.rid").alias("rid_r"), "key", "value")
    )
    checked = with_conflict(pairs, std, cfg).localCheckpoint()
    # A key value whose holders contradict each other (two birth dates, two phones...)
    # belongs to more than one person: none of its pairs is a link, however many of them
    # look alike, because the closure over the others would merge the people anyway.
    contradicted = checked.where("conflict").select("key", "value").distinct()
    clean = checked.join(contradicted, ["key", "value"], "left_anti")
    links = (
        clean.groupBy("rid_l", "rid_r")
        .agg(F.sort_array(F.collect_set("key")).alias("keys"))
        .withColumns({"match_probability": F.lit(1.0), "link_type": F.lit("deterministic")})
    )
    guarded = too_many.unionByName(
        contradicted.join(counts, ["key", "value"]).select(
            "key",
            F.sha2("value", 256).alias("value_hash"),
            "n_records",
            F.lit("conflicting_holders").alias("reason"),
        )
    )
    return DeterministicResult(links=links, guarded_keys=guarded)


def with_conflict(pairs: DataFrame, std: DataFrame, cfg: StitchConfig) -> DataFrame:
    """``pairs`` (rid_l, rid_r, ...) plus ``conflict``: whether the two records contradict
    each other on a ``conflict_fields`` field."""
    fields = sorted({*cfg.conflict_fields, "first_name", "first_name_canon", "last_name"})
    side = std.select("rid", *fields)
    return (
        pairs.join(side.alias("l"), F.col("rid_l") == F.col("l.rid"))
        .join(side.alias("r"), F.col("rid_r") == F.col("r.rid"))
        .select(*pairs.columns, conflict(cfg).alias("conflict"))
    )
