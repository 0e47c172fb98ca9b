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
from custseg.privacy import pseudonym
from custseg.stitch.standardise import date_up_to_swap


@dataclass(frozen=True)
class DeterministicResult:
    links: DataFrame  # rid_l < rid_r, keys (array of key names), match_probability 1.0
    guarded_keys: DataFrame  # key, value_hash, n_records, reason (no raw values)


def _first_names_agree(
    l_first: Column,
    r_first: Column,
    l_canon: Column,
    r_canon: Column,
    l_last: Column,
    r_last: Column,
    max_edits: int = 2,
) -> Column:
    shorter = F.least(F.length(l_first), F.length(r_first))
    return (
        (F.levenshtein(l_canon, r_canon) <= max_edits)  # Kate -> katherine against Katharine
        | (F.levenshtein(l_first, r_first) <= max_edits)
        # a short form the table lacks or cannot tell apart (Sam: Samuel or Samantha)
        | ((shorter >= 3) & (l_first.startswith(r_first) | r_first.startswith(l_first)))
        | (l_first == r_last)
        | (r_first == l_last)
    )


def near(a: Column, b: Column, max_edits: int) -> Column:
    """Two values one data-entry slip apart: within ``max_edits`` edits (Levenshtein), or
    (with ``max_edits`` >= 1) equal but for two swapped characters (``1985`` / ``1958``)."""
    if max_edits <= 0:
        return a == b
    distance = F.levenshtein(a, b)
    swapped = (
        (distance == 2)
        & (F.length(a) == F.length(b))
        & (F.array_sort(F.split(a, "")) == F.array_sort(F.split(b, "")))
    )
    return (distance <= max_edits) | swapped


def dates_agree(a: Column, b: Column, max_edits: int) -> Column:
    """Birth dates agree when equal up to a day/month swap, or their ``YYYYMMDD`` digits
    are ``near`` (a one-digit typo, two transposed digits)."""
    same = date_up_to_swap(a) == date_up_to_swap(b)
    if max_edits <= 0:
        return same
    return same | near(F.date_format(a, "yyyyMMdd"), F.date_format(b, "yyyyMMdd"), max_edits)


def values_agree(cfg: StitchConfig, field: str, a: Column, b: Column) -> Column:
    """Whether two values of a field can be one person's, typos allowed."""
    if field == "date_of_birth":
        return dates_agree(a, b, cfg.value_max_edits)
    return near(a, b, cfg.value_max_edits)


def _field_agrees(
    cfg: StitchConfig, field: str, left: Callable[[str], Column], right: Callable[[str], Column]
) -> Column:
    """Whether two records' values of ``field`` can be one person's (null when either is
    missing)."""
    if field == "first_name":
        return _first_names_agree(
            left("first_name"),
            right("first_name"),
            left("first_name_canon"),
            right("first_name_canon"),
            left("last_name"),
            right("last_name"),
            cfg.name_max_edits,
        )
    if field == "last_name":
        return F.levenshtein(left(field), right(field)) <= cfg.name_max_edits
    return values_agree(cfg, field, left(field), right(field))


def disagree(
    cfg: StitchConfig,
    left: Callable[[str], Column],
    right: Callable[[str], Column],
    fields: list[str] | None = None,
) -> Column:
    """True when two records disagree on a field of ``fields`` (default
    ``conflict_fields``) that both have, by more than data entry explains; ``left`` and
    ``right`` give a record's field by name (a column of a joined side, or a field of a
    struct in a higher-order function).

    With ``forgive_single_conflict``, one such field is forgiven when the records' other
    personal field says one person (both hold a first name and a birth date, and the one
    not in conflict agrees, typos allowed) and they share a postcode or an address. A
    value replaced by another (a middle name given as first name, a birth date from
    another form) then does not split a person, while two people of one household (two
    first names and two birth dates, or one of them not given) still conflict. What it
    cannot tell apart: twins (one birth date, two first names) and a father and son of
    one name at one address; turn it off where those matter more than typos.
    """
    fields = cfg.conflict_fields if fields is None else fields
    held = {f: left(f).isNotNull() & right(f).isNotNull() for f in {*fields, "first_name", "date_of_birth"}}
    agrees = {f: F.coalesce(_field_agrees(cfg, f, left, right), F.lit(False)) for f in held}
    clashes = {f: held[f] & ~agrees[f] for f in fields}
    out = F.lit(False)
    for c in clashes.values():
        out = out | c
    if not cfg.forgive_single_conflict or not fields:
        return out
    n = sum((c.cast("int") for c in clashes.values()), F.lit(0))
    location = F.coalesce(left("postcode") == right("postcode"), F.lit(False)) | F.coalesce(
        F.levenshtein(left("address"), right("address")) <= cfg.name_max_edits, F.lit(False)
    )
    personal = F.lit(True)
    for f in ("first_name", "date_of_birth"):
        personal = personal & ((held[f] & agrees[f]) | clashes.get(f, F.lit(False)))
    corroborated = location & personal
    return (n > 1) | ((n == 1) & ~corroborated)


def conflict(cfg: StitchConfig, left: str = "l", right: str = "r") -> Column:
    """True when two records (aliased ``left`` and ``right``) disagree on a conflict field
    that both have."""
    return disagree(cfg, lambda name: F.col(f"{left}.{name}"), lambda name: F.col(f"{right}.{name}"))


def compared_fields(cfg: StitchConfig) -> list[str]:
    """The standardised fields the conflict test reads."""
    return sorted(
        {
            *cfg.conflict_fields,
            "first_name",
            "first_name_canon",
            "last_name",
            "date_of_birth",
            "postcode",
            "address",
        }
    )


def deterministic_links(std: DataFrame, cfg: StitchConfig, key: bytes) -> DeterministicResult:
    """Links between records sharing a usable strong key and not in conflict.

    Each key value's holders are gathered in one place with the fields they could
    disagree on (one shuffle, a window counting them, so a value held by a million
    records is counted and never gathered), and the holders of a usable value are
    compared with each other there: no self-join of the key table and no join back to
    the records for the fields (on the reference preset: 1.6M holder pairs, two joins of
    them with 1.2M records).
    """
    compared = compared_fields(cfg)
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
            lambda b: (a["rid"] < b["rid"]) & disagree(cfg, lambda f: a[f], lambda f: b[f]),
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
        "key", pseudonym("value", key).alias("value_hash"), "n_records", "reason"
    )
    return DeterministicResult(links=links, guarded_keys=guarded)


def with_conflict(pairs: DataFrame, std: DataFrame, cfg: StitchConfig) -> DataFrame:
    """``pairs`` (rid_l, rid_r, ...) plus ``conflict``: whether the two records contradict
    each other on a ``conflict_fields`` field."""
    side = std.select("rid", *compared_fields(cfg))
    return (
        pairs.join(side.alias("l"), F.col("rid_l") == F.col("l.rid"))
        .join(side.alias("r"), F.col("rid_r") == F.col("r.rid"))
        .select(*pairs.columns, conflict(cfg).alias("conflict"))
    )
