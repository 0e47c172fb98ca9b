"""Deliberately broken input, off by default: what ingest must catch, with a manifest.

Two families of damage:

* inline: the row stays in the table's normal file with a bad value (a missing key, a
  negative or absurd amount, a timestamp in the future or before 1970, an unknown source
  system, an orphan source id that no identity record has), or is delivered twice (an
  exact re-delivery, or a second row with the same id and different content);
* bad file: rows a typed writer cannot express (unparseable dates and numbers, a wrong
  column count, a Latin-1 encoded line, a truncated JSON line) go to an extra file
  ``part-bad-*`` beside the table's normal files, as a second export tool would produce.

The manifest has one row per damaged row: ``table, kind, key`` where key is the row's
natural id (``transaction_id``, ``contact_id``, ``touch_id``, ``source_id`` for identity
records, ``source_id|date`` for usage), so ingest can be checked row for row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from custseg.generate.random import uniform

UNKNOWN_SYSTEM = "crm_legacy"
ORPHAN_PREFIX = "ORPHAN-"


@dataclass(frozen=True)
class TableDamage:
    """Which kinds of damage a table gets and how its rows are keyed."""

    table: str
    key: Column
    inline: Mapping[str, Mapping[str, Column]]  # kind -> {column: new value}
    copies: Sequence[str] = ()  # "exact_duplicate", "duplicate_id"
    duplicate_change: Mapping[str, Column] | None = None
    bad_file: Sequence[str] = ()
    eligible: Mapping[str, Column] | None = None  # kind -> rows it can apply to


def _kind_column(seed: int, table: str, kinds: Sequence[str], rate: float, row_key: Column) -> Column:
    u = uniform(seed, f"damage_{table}", row_key)
    expr: Column = F.lit(None).cast("string")
    if not kinds:
        return expr
    step = rate / len(kinds)
    for i, kind in reversed(list(enumerate(kinds))):
        expr = F.when(u < step * (i + 1), F.lit(kind)).otherwise(expr)
    return expr


def damage(
    df: DataFrame, spec: TableDamage, *, seed: int, rate: float, row_key: Column
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """Damage ``df``: returns (rows for the normal files, rows for the bad file, manifest).

    Copies come from an ``explode`` of the chosen rows, so the table is drawn once; the
    caller persists the marked rows (the three results share them). Bad-file rows keep
    the clean schema plus ``_damage``; ``custseg.generate.runner`` renders them as text.
    """
    kinds = [*spec.inline, *spec.copies, *spec.bad_file]
    kind_col = _kind_column(seed, spec.table, kinds, rate, row_key)
    for name, condition in (spec.eligible or {}).items():
        kind_col = F.when((kind_col == name) & ~condition, F.lit(None).cast("string")).otherwise(kind_col)
    marked = df.withColumn("_damage", kind_col)
    kind = F.col("_damage")
    copies = list(spec.copies)
    copy_no = F.explode(
        F.when(kind.isin(*copies), F.array(F.lit(0), F.lit(1))).otherwise(F.array(F.lit(0)))
        if copies
        else F.array(F.lit(0))
    )
    is_bad_file = kind.isin(*spec.bad_file) if spec.bad_file else F.lit(False)
    normal = marked.where(kind.isNull() | ~is_bad_file).withColumn("_copy", copy_no)
    second_changed = (kind == "duplicate_id") & (F.col("_copy") == 1)
    out_cols = []
    for c in df.columns:
        expr: Column = F.col(c)
        for k, changes in spec.inline.items():
            if c in changes:
                expr = F.when(kind == k, changes[c]).otherwise(expr)
        if spec.duplicate_change and c in spec.duplicate_change:
            expr = F.when(second_changed, spec.duplicate_change[c]).otherwise(expr)
        out_cols.append(expr.alias(c))
    damaged = normal.select(*out_cols, "_damage", "_copy")
    out = damaged.drop("_damage", "_copy")
    bad = marked.where(is_bad_file)
    # Keys of inline damage are taken after it (a changed date is part of a usage key).
    manifest_inline = damaged.where(kind.isNotNull() & (F.col("_copy") == 0)).select(
        F.lit(spec.table).alias("table"), kind.alias("kind"), spec.key.alias("key")
    )
    manifest_bad = bad.select(F.lit(spec.table).alias("table"), kind.alias("kind"), spec.key.alias("key"))
    return out, bad, manifest_inline.unionByName(manifest_bad)


def csv_field(c: Column) -> Column:
    """RFC 4180 quoting of one CSV field (null -> empty)."""
    text = F.coalesce(c.cast("string"), F.lit(""))
    return F.when(
        text.rlike('[",\r\n]'), F.concat(F.lit('"'), F.regexp_replace(text, '"', '""'), F.lit('"'))
    ).otherwise(text)


def csv_line(fields: Sequence[Column]) -> Column:
    """One CSV line from string columns."""
    return F.concat_ws(",", *[csv_field(f) for f in fields])
