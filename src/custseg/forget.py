"""The right to erasure: remove people from every table, keep them out, and VACUUM.

``forget(cfg, spark, customer_ids, run_id)`` (``jobs/forget.py``):

1. finds each customer's source records in ``silver.identity_map`` (newest version);
2. deletes, in every bronze, silver and gold table, the rows of those customers: a table
   with ``customer_id`` (or ``old_``/``new_customer_id``) by id, one with ``source_system``
   and ``source_id`` by record, one with ``rid``/``rid_l``/``rid_r`` by record key, and
   ``bronze.quarantine`` rows whose raw text holds one of the person's source ids, emails
   or phones as a whole token. Each table is one MERGE commit whose log holds the join
   condition, never the values;
3. records the erasure in ``meta.erasures`` (pseudonymised customer id, time, run id,
   rows deleted per table; no identity value) and each erased source record in
   ``meta.suppressed_sources`` (its pseudonym and a 16-bit bucket), which ingest drops
   from later deliveries;
4. publishes its table versions (``meta.stage_runs``, stage ``forget``) so readers see the
   tables without the person, sets the retention properties of ``privacy`` on every
   table, and VACUUMs every table with ``privacy.vacuum_retention_hours``.

Aggregates computed before the erasure (segment profiles, KPIs) still count the person
until the next run recomputes them; they hold no row of theirs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from custseg import catalog
from custseg.config import Config
from custseg.lease import holding
from custseg.privacy import (
    bucket,
    pseudonym,
    pseudonym_key,
    retention_properties,
    source_key,
)
from custseg.runs import table_names
from custseg.tables import META, TableStore, utc_now

log = logging.getLogger(__name__)

MAX_ID_CHAIN = 20  # former ids followed back at most this far
# characters that continue an id, email or phone: a needle must not touch one on either side
_TOKEN = "A-Za-z0-9_.@+-"


class ForgetError(ValueError):
    """A customer id to forget is unknown (names the ids, nothing was deleted)."""


@dataclass
class Erasure:
    """What one ``forget`` call did."""

    run_id: str
    erased: list[str] = field(default_factory=list)  # customer ids erased now
    already: list[str] = field(default_factory=list)  # erased by an earlier call
    records: int = 0  # source records of the erased people
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows deleted


def _condition(columns: Sequence[str]) -> tuple[str, Column] | None:
    """(which keys, the MERGE condition) for a table with ``columns``; None when the table
    holds no per-person row."""
    cols = set(columns)
    t, s = F.col, F.col
    if "customer_id" in cols:
        return "ids", t("t.customer_id") == s("s.customer_id")
    if {"old_customer_id", "new_customer_id"} <= cols:
        return "ids", (t("t.old_customer_id") == s("s.customer_id")) | (
            t("t.new_customer_id") == s("s.customer_id")
        )
    if {"source_system", "source_id"} <= cols:
        return "records", (t("t.source_system") == s("s.source_system")) & (
            t("t.source_id") == s("s.source_id")
        )
    rid_cols = [c for c in ("rid", "rid_l", "rid_r") if c in cols]
    if rid_cols:
        cond = t(f"t.{rid_cols[0]}") == s("s.rid")
        for c in rid_cols[1:]:
            cond = cond | (t(f"t.{c}") == s("s.rid"))
        return "rids", cond
    return None


def _needles(tables: TableStore, records: DataFrame) -> DataFrame:
    """What traces a quarantine row to the person (its raw text may not have parsed into
    columns): ``needle``, a regex matching one of their source ids, emails or phones as a
    whole token, and ``context``, a regex the text must match too (a source id's system
    name: ids of two systems may be equal; empty for an email or a phone). A value holding
    a backslash is matched as plain text (``\\Q...\\E`` cannot quote it)."""
    ids = records.select(F.col("source_id").alias("v"), F.col("source_system").alias("system"))
    values = ids
    if tables.exists(catalog.IDENTITY_RECORDS):
        held = tables.read_newest(catalog.IDENTITY_RECORDS).join(
            records, ["source_system", "source_id"], "left_semi"
        )
        for c in ("email", "phone"):
            values = values.unionByName(
                held.select(F.col(c).alias("v"), F.lit(None).cast("string").alias("system"))
            )
    values = values.withColumn("v", F.trim("v")).where(F.length("v") >= 3).distinct()

    def quoted(col: str) -> Column:
        return F.concat(F.lit("\\Q"), F.col(col), F.lit("\\E"))

    plain = F.col("v").contains("\\")
    return values.select(
        F.when(plain, F.col("v"))
        .otherwise(F.concat(F.lit(f"(^|[^{_TOKEN}])"), quoted("v"), F.lit(f"($|[^{_TOKEN}])")))
        .alias("needle"),
        plain.alias("plain"),
        F.when(F.col("system").isNull() | F.col("system").contains("\\"), F.lit(""))
        .otherwise(quoted("system"))
        .alias("context"),
    )


_TRACED = (
    "(CASE WHEN s.plain THEN instr(t.raw_record, s.needle) > 0 ELSE t.raw_record rlike s.needle END)"
    " AND (s.context = '' OR t.raw_record rlike s.context)"
)


def _former_ids(tables: TableStore, ids: DataFrame) -> DataFrame:
    """``ids`` and every id they were known by before (``silver.identity_id_changes``:
    merged or split away from, followed back to the first), so gold rows and change-log
    rows under a former id go too. A person's chain is a few ids: a loop of small joins."""
    if not tables.exists(catalog.IDENTITY_ID_CHANGES):
        return ids
    changes = tables.read_newest(catalog.IDENTITY_ID_CHANGES).select("old_customer_id", "new_customer_id")
    known = ids
    for _ in range(MAX_ID_CHAIN):
        older = (
            changes.join(known.withColumnRenamed("customer_id", "new_customer_id"), "new_customer_id")
            .select(F.col("old_customer_id").alias("customer_id"))
            .join(known, "customer_id", "left_anti")
            .distinct()
            .localCheckpoint()
        )
        if older.isEmpty():
            break
        known = known.unionByName(older).localCheckpoint()
    return known


def forget(cfg: Config, spark: SparkSession, customer_ids: Sequence[str], run_id: str) -> Erasure:
    """Erase ``customer_ids`` (see the module doc); raises ``ForgetError`` naming ids that
    are neither in ``silver.identity_map`` nor erased before, before deleting anything."""
    tables = TableStore(
        spark, cfg.storage.warehouse, run_id=run_id, properties=partial(retention_properties, cfg)
    )
    key = pseudonym_key(cfg.privacy)
    wanted = sorted(set(customer_ids))
    if not wanted:
        raise ForgetError("forget: no customer id given")
    started = utc_now()
    with holding(tables, cfg.run.lease_seconds, cfg.run.lease_wait_seconds):
        ids = spark.createDataFrame([(c,) for c in wanted], "customer_id string").localCheckpoint()
        if not tables.exists(catalog.IDENTITY_MAP):
            raise ForgetError(f"forget: {catalog.IDENTITY_MAP} does not exist (run stitch first)")
        id_map = tables.read_newest(catalog.IDENTITY_MAP)
        records = id_map.join(ids, "customer_id").select("customer_id", "source_system", "source_id")
        records = records.localCheckpoint()
        found = {r["customer_id"] for r in records.select("customer_id").distinct().collect()}  # <= wanted
        done = _erased_before(tables, [c for c in wanted if c not in found], key)
        unknown = [c for c in wanted if c not in found and c not in done]
        if unknown:
            raise ForgetError(
                f"forget: customer id(s) {unknown} are not in {catalog.IDENTITY_MAP} and were not erased "
                "before; nothing was deleted"
            )
        result = Erasure(run_id=run_id, erased=sorted(found), already=sorted(done))
        if found:
            result.records = records.count()
            keys = {
                "ids": _former_ids(tables, ids.join(records.select("customer_id").distinct(), "customer_id")),
                "records": records.select("source_system", "source_id").distinct(),
                "rids": records.select(source_key("source_system", "source_id").alias("rid")),
            }
            needles = _needles(tables, records).localCheckpoint()
            # retention and no statistics first: the delete's files carry none
            _set_properties(tables, cfg)
            _suppress(tables, records, key)
            for name in table_names(tables):
                result.rows[name] = _delete(tables, name, keys, needles)
            _record(tables, result, key)
            tables.publish("forget", started)
        _retain_and_vacuum(tables, cfg)
    log.info(
        "forget: erased %d customer(s) (%d source records), %d already erased; rows deleted: %s",
        len(result.erased),
        result.records,
        len(result.already),
        {k: v for k, v in result.rows.items() if v},
    )
    return result


def _holds_people(tables: TableStore, name: str) -> bool:
    """Whether the table has per-person rows (a column ``_condition`` matches on)."""
    columns = tables.read_newest(name).columns
    return name == catalog.QUARANTINE or _condition(columns) is not None


def _delete(tables: TableStore, name: str, keys: dict[str, DataFrame], needles: DataFrame) -> int:
    if name == catalog.QUARANTINE:
        return tables.delete_matching(name, needles, F.expr(_TRACED))
    rule = _condition(tables.read_newest(name).columns)
    if rule is None:
        return 0
    which, condition = rule
    return tables.delete_matching(name, keys[which], condition)


def _erased_before(tables: TableStore, ids: list[str], key: bytes) -> set[str]:
    if not ids or not tables.exists(catalog.ERASURES):
        return set()
    asked = tables.spark.createDataFrame([(c,) for c in ids], "customer_id string").withColumn(
        "customer_key", pseudonym("customer_id", key)
    )
    erased = tables.read_newest(catalog.ERASURES).select("customer_key")
    return {r["customer_id"] for r in asked.join(erased, "customer_key", "left_semi").collect()}


def _suppress(tables: TableStore, records: DataFrame, key: bytes) -> None:
    rows = records.select(
        pseudonym(source_key("source_system", "source_id"), key).alias("source_key"),
        bucket("source_system", "source_id").alias("bucket"),
        F.lit(tables.run_id).alias("run_id"),
        F.lit(utc_now()).alias("erased_at"),
    )
    tables.merge(rows, catalog.SUPPRESSED_SOURCES, keys=["source_key"], when_matched="ignore")


def _record(tables: TableStore, result: Erasure, key: bytes) -> None:
    counts = {k: v for k, v in result.rows.items()}
    rows = tables.spark.createDataFrame(
        [(c, result.run_id, utc_now(), counts) for c in result.erased],
        "customer_id string, run_id string, erased_at timestamp, rows_deleted map<string,bigint>",
    )
    rows = rows.select(
        pseudonym("customer_id", key).alias("customer_key"), "run_id", "erased_at", "rows_deleted"
    )
    tables.merge(rows, catalog.ERASURES, keys=["customer_key"], when_matched="ignore")


def _all_tables(tables: TableStore) -> list[str]:
    return table_names(tables) + [f"{META}.{t}" for t in _meta_tables(tables)]


def _set_properties(tables: TableStore, cfg: Config) -> None:
    for name in _all_tables(tables):
        tables.set_properties(name, retention_properties(cfg, name))


def _retain_and_vacuum(tables: TableStore, cfg: Config) -> None:
    """Retention properties on every table; VACUUM of every table with per-person rows
    (the others' old versions hold aggregates only)."""
    _set_properties(tables, cfg)
    vacuumed = 0
    for name in table_names(tables):
        if _holds_people(tables, name):
            tables.vacuum(name, cfg.privacy.vacuum_retention_hours)
            vacuumed += 1
    log.info(
        "forget: retention set; VACUUM (%.0f h) of the %d tables with per-person rows",
        cfg.privacy.vacuum_retention_hours,
        vacuumed,
    )


def vacuum(cfg: Config, spark: SparkSession, run_id: str) -> None:
    """Only the retention and VACUUM step (``jobs/forget.py --vacuum-only``): files an
    erasure replaced are removed by the first VACUUM after the retention has passed, so
    schedule this (daily, say) when the retention is not 0."""
    tables = TableStore(
        spark, cfg.storage.warehouse, run_id=run_id, properties=partial(retention_properties, cfg)
    )
    with holding(tables, cfg.run.lease_seconds, cfg.run.lease_wait_seconds):
        _retain_and_vacuum(tables, cfg)


def _meta_tables(tables: TableStore) -> list[str]:
    from custseg import hadoopfs

    return [
        t
        for t in hadoopfs.list_dirs(tables.spark, f"{tables.warehouse}/{META}")
        if tables.exists(f"{META}.{t}")
    ]
