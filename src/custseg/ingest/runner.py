"""Stage ``ingest``: raw sources -> bronze tables and ``bronze.quarantine``.

For each contract table (identity first): check and read every source (all sources of
all tables are checked before anything is written), parse to contract types, classify,
then write accepted rows to ``bronze.<table>`` with a Delta MERGE on the natural key
(insert only) and rejected rows to ``bronze.quarantine`` with a MERGE on
(table, source, reason, raw-record hash, occurrence), so a rerun or a re-sent file adds
nothing twice. Rows read = rows inserted + rows already loaded + rows quarantined, per
table, with the written counts taken from the Delta commits; a mismatch fails the stage.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from pyspark.sql import Column, DataFrame, Observation, SparkSession, Window
from pyspark.sql import functions as F

from custseg import catalog, hadoopfs
from custseg.config import Config, IngestConfig, SourceConfig
from custseg.contract import CONTRACTS, TABLE_ORDER, TableContract
from custseg.ingest.rules import (
    check_rows,
    clean_rows,
    duplicate_keys,
    flag_orphans,
    orphan_keys,
    parse_frame,
    rank_duplicates,
    record_key,
    row_hash,
    set_aside,
)
from custseg.ingest.sources import SchemaDriftError, SourceFrame, read_source
from custseg.privacy import pseudonym_key, suppressed_records
from custseg.stage import StageContext
from custseg.tables import TableStore, utc_now

log = logging.getLogger(__name__)

QUARANTINE_KEY = list(catalog.table(catalog.QUARANTINE).key)
INGEST_FILES = catalog.INGEST_FILES


class ReconciliationError(RuntimeError):
    """Rows read do not equal rows accepted + already loaded + quarantined."""


@dataclass
class TableReport:
    """Counts of one table's ingest (all small, per source and reason)."""

    table: str
    read: dict[str, int] = field(default_factory=dict)
    by_reason: dict[tuple[str, str], int] = field(default_factory=dict)
    inserted: int = 0
    already_loaded: int = 0
    quarantined_new: int = 0
    quarantined: int = 0
    orphans: int = 0
    suppressed: int = 0  # rows of erased people dropped before the checks (meta.suppressed_sources)
    extra_columns: dict[str, list[str]] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        t = self.table
        out: dict[str, float] = {
            f"{t}.inserted": self.inserted,
            f"{t}.already_loaded": self.already_loaded,
            f"{t}.quarantined": self.quarantined,
            f"{t}.orphans": self.orphans,
            f"{t}.suppressed": self.suppressed,
        }
        for source, n in self.read.items():
            out[f"{t}.{source}.read"] = n
        for (source, reason), n in self.by_reason.items():
            out[f"{t}.{source}.{reason}"] = n
        return out


def raw_dir(cfg: Config) -> str:
    """Base folder of relative source paths."""
    return cfg.ingest.raw_dir or os.path.join(cfg.generate.output_dir, "raw")


def check_sources(spark: SparkSession, cfg: Config) -> dict[str, list[SourceFrame]]:
    """Check and open every configured source; raises SchemaDriftError before any write."""
    base = raw_dir(cfg)
    frames: dict[str, list[SourceFrame]] = {}
    for table in TABLE_ORDER:
        sources = cfg.ingest.sources.get(table, [])
        if sources:
            frames[table] = [read_source(spark, CONTRACTS[table], src, base) for src in sources]
    return frames


class RejectRateError(RuntimeError):
    """A source's rows were quarantined above its limit (``max_reject_rate``)."""


def run_as_of(tables: TableStore, ingest: IngestConfig) -> date:
    """The latest plausible event date of this run: ``ingest.as_of``, else the UTC date the
    run first ingested, kept in ``meta.run_settings``, so a rerun of the run id on a later
    day loads and quarantines the same rows."""
    if ingest.as_of is not None:
        return ingest.as_of
    return date.fromisoformat(tables.run_setting("ingest.as_of", datetime.now(UTC).date().isoformat()))


def check_reject_rates(report: TableReport, frames: list[SourceFrame], ingest: IngestConfig) -> None:
    """Stop with the figures when a source's quarantined share is above its limit."""
    for f in frames:
        read = report.read.get(f.source.name, 0)
        rejected = sum(n for (s, r), n in report.by_reason.items() if s == f.source.name and r != "accepted")
        limit = f.source.max_reject_rate if f.source.max_reject_rate is not None else ingest.max_reject_rate
        if read and rejected / read > limit:
            reasons = {
                r: n for (s, r), n in report.by_reason.items() if s == f.source.name and r != "accepted"
            }
            raise RejectRateError(
                f"{report.table}[{f.source.name}]: {rejected} of {read} rows ({rejected / read:.1%}) "
                f"would be quarantined, above the limit of {limit:.1%} (max_reject_rate); "
                f"by reason {reasons}. "
                "Nothing of this table was written; fix the source or its mapping, or raise the limit."
            )


def check_table(
    frames: list[SourceFrame], contract: TableContract, ingest: IngestConfig, as_of: date
) -> DataFrame:
    """All sources of one table, parsed and checked row by row together."""
    parsed = [parse_frame(f.df, contract, f.source) for f in frames]
    union = parsed[0]
    for p in parsed[1:]:
        union = union.unionByName(p)
    return check_rows(
        union,
        contract,
        known_source_systems=ingest.known_source_systems,
        ts_min=ingest.ts_min,
        as_of=as_of,
        amount_max=ingest.amount_max,
        refund_id_pattern=ingest.refund_id_pattern,
    )


def _quarantine_rows(rejected: DataFrame, contract: TableContract, clear_fields: list[str]) -> DataFrame:
    """The quarantine table's rows; ``raw_record`` is the source text of a row that broke a
    parse or value rule, and for a duplicate (which parsed cleanly) its contract columns
    as JSON. An identity record's raw text is not kept: its ``raw_record`` is its fields as
    JSON with all but ``clear_fields`` masked (``***``). ``raw_hash`` is of the raw text."""
    raw = F.coalesce(F.col("_raw"), F.to_json(F.struct(*[F.col(n) for n in contract.names])))
    raw_hash = F.xxhash64(raw)
    if contract.name == "identity_records":
        raw = F.to_json(
            F.struct(
                *[
                    F.col(n).alias(n)
                    if n in clear_fields
                    else F.when(F.col(n).isNotNull(), F.lit("***")).alias(n)
                    for n in contract.names
                ]
            )
        )
    occurrence = F.row_number().over(
        Window.partitionBy("_source", "reason", raw_hash).orderBy("_source_file", "_row_hash")
    )
    return rejected.select(
        F.lit(contract.name).alias("table"),
        F.col("_source").alias("source"),
        F.col("_source_file").alias("source_file"),
        "reason",
        "detail",
        record_key(contract).alias("record_key"),
        raw.alias("raw_record"),
        raw_hash.alias("raw_hash"),
        occurrence.alias("occurrence"),
    )


def _last_commit_rows(tables: TableStore, name: str, before: int | None) -> int:
    """Rows the newest commit wrote, from Delta's operation metrics (0 if no new commit)."""
    if not tables.exists(name):
        return 0
    row = (
        tables.history(name)
        .orderBy(F.desc("version"))
        .select("version", "operation", "operationMetrics")
        .first()
    )
    assert row is not None
    if before is not None and row["version"] <= before:
        return 0
    metrics = row["operationMetrics"] or {}
    key = "numTargetRowsInserted" if row["operation"] == "MERGE" else "numOutputRows"
    return int(metrics.get(key, 0))


@contextmanager
def _step(table: str, what: str) -> Iterator[None]:
    """Log how long one step of a table's ingest took (progress on long runs)."""
    started = time.perf_counter()
    yield
    log.info("%s: %s in %.1f s", table, what, time.perf_counter() - started)


def _version(tables: TableStore, name: str) -> int | None:
    return tables.latest_version(name) if tables.exists(name) else None


def staging_root(tables: TableStore) -> str:
    """The run's staging folder (removed when the stage ends)."""
    return os.path.join(tables.warehouse, "_staging", "ingest", tables.run_id.replace(":", "_"))


def staging_path(tables: TableStore, table: str) -> str:
    """Where a table's checked rows are staged during its ingest (removed after)."""
    return os.path.join(staging_root(tables), table)


# Sources read again for each pass over the table rather than staged: columnar files,
# immutable within a delivery and cheap to decode: reading product usage again costs a
# fifth of staging it (docs/architecture.md, "Measured choices").
# Text sources are parsed once and staged; JDBC and Delta sources are staged so that every
# pass sees the same rows.
REREAD_FORMATS = {"parquet"}


def bronze_properties(contract: TableContract) -> dict[str, str]:
    """Table properties of a new bronze table: file statistics (for data skipping) on the
    event-time columns and ``_ingest_file`` only. Delta's default, the first 32 columns,
    would add min/max statistics of every id, text and lineage column to every write, and
    random ids skip nothing (product usage at the reference preset: the bronze write
    68.8 s -> 52.7 s). ``_ingest_file`` is a hash too, but a bronze file written from one
    source file holds one value, so a lookup by file skips the others; its statistics
    are a long's, cheap to keep."""
    return {"delta.dataSkippingStatsColumns": ",".join([*contract.timestamp_cols, "_ingest_file"])}


def ingest_file_id(run_id: str, file: Column) -> Column:
    """A bronze row's lineage: one 8-byte id per (run, source file), resolved to the file,
    source, table and run by ``bronze.ingest_files``. Not the path and run id as text on
    every row: a 100-character string per row cost ~20 s of the 60 s bronze write of
    product usage at the reference preset (36.7M rows), more than every check together."""
    return F.xxhash64(F.lit(run_id), file)


def _listed_file(spark: SparkSession, src: SourceConfig, path: str) -> str:
    """A path from ``inputFiles()`` as Spark's ``_metadata.file_path`` gives it (what the
    rows' ids are made from). File sources list URL-encoded URIs, ``file:///x`` for local
    files where the rows say ``file:/x``; Delta lists decoded paths, encoded here."""
    if src.format == "delta":
        path = hadoopfs.encoded_uri(spark, path)
    return "file:/" + path[len("file:///") :] if path.startswith("file:///") else path


def record_files(tables: TableStore, frames: dict[str, list[SourceFrame]]) -> None:
    """Write every source file of this run to ``bronze.ingest_files`` (one small MERGE for
    all tables, once the sources are checked and before any table is loaded; the ids
    are the run's and the file's, so a rerun adds nothing)."""
    every = [f for table_frames in frames.values() for f in table_frames]
    tables.merge(
        ingest_files(tables.spark, every, tables.run_id),
        INGEST_FILES,
        keys=["table", "ingest_file"],
        when_matched="ignore",
    )


def ingest_files(spark: SparkSession, frames: list[SourceFrame], run_id: str) -> DataFrame:
    """``bronze.ingest_files`` rows of the given sources: ``table, source, source_file,
    run_id, ingest_file`` (the id bronze rows carry). The files come from each source's
    file listing on the driver (as many as the files, not the rows); a JDBC source is one
    'file', its table."""
    rows = []
    for f in frames:
        src = f.source
        files = (
            [f"jdbc table {src.jdbc_table}"]
            if src.format == "jdbc"
            else sorted({_listed_file(spark, src, p) for p in f.df.inputFiles()})
        )
        rows += [(f.table, src.name, file, run_id) for file in files]
    listed = spark.createDataFrame(rows, "table string, source string, source_file string, run_id string")
    return listed.withColumn("ingest_file", ingest_file_id(run_id, F.col("source_file")))


def _per_source(frames: list[SourceFrame]) -> list[Column]:
    """Row counts per source, as aggregates for an ``Observation``."""
    return [
        F.count(F.when(F.col("_source") == f.source.name, 1)).alias(f"n{i}") for i, f in enumerate(frames)
    ]


def _source_counts(frames: list[SourceFrame], observed: Observation) -> dict[str, int]:
    """The counts of ``_per_source`` by source name, once the observed action has run."""
    got = observed.get
    return {f.source.name: int(got[f"n{i}"]) for i, f in enumerate(frames)}


def ingest_table(
    tables: TableStore,
    contract: TableContract,
    frames: list[SourceFrame],
    ingest: IngestConfig,
    identity_keys: DataFrame | None,
    as_of: date,
    suppression: Suppression | None = None,
) -> TableReport:
    """Classify, write and reconcile one table; returns its counts.

    Passes over the checked rows, each reading only the columns it needs and each one
    scan: the duplicated key hashes; the rejected rows and the rows of duplicated keys
    (few, kept in memory, where the duplicates are ranked); for events, the orphan keys
    (distinct source pairs against the identity keys); the accepted rows, written to
    bronze. Rows read per source are counted on the way
    through the first pass (an ``Observation``), accepted rows and orphans on the way
    through the write. The checked rows come from the sources each time, or, for text,
    Delta and JDBC sources, from a Parquet staging copy written once (``REREAD_FORMATS``).
    """
    name = f"bronze.{contract.name}"
    spark = frames[0].df.sparkSession
    report = TableReport(table=contract.name, extra_columns={f.source.name: f.extra_columns for f in frames})
    checked = check_table(frames, contract, ingest, as_of)
    if suppression is not None:
        checked, report.suppressed = suppression.drop_from(checked)
    stage = any(f.source.format not in REREAD_FORMATS for f in frames)
    # Rows read per source, counted on the first pass as they leave the row checks (which
    # neither add nor drop rows) and narrowed to what that pass needs: an observation on
    # the source frames would render every row's raw text.
    read = Observation()
    first = (checked if stage else checked.select("_source", "reason", "_key_hash")).observe(
        read, *_per_source(frames)
    )
    staging = staging_path(tables, contract.name)
    dup_keys: DataFrame | None = None
    aside: DataFrame | None = None
    orphans: DataFrame | None = None
    quarantine: DataFrame | None = None
    try:
        if stage:
            with _step(name, "read, parsed, checked and staged the rows"):
                first.write.mode("overwrite").parquet(staging)
            checked = first = spark.read.parquet(staging)
        with _step(name, "found the duplicated keys"):
            dup_keys = duplicate_keys(first).persist()
            dup_keys.count()
        report.read = _source_counts(frames, read)
        with _step(name, "set the rejected rows and the duplicates aside"):
            # One scan; the few rows it keeps are held in memory and ranked there.
            aside = set_aside(checked, dup_keys).persist()
            ranked = rank_duplicates(aside, contract)
            rejected = ranked.where(F.col("reason").isNotNull())
            for row in rejected.groupBy("_source", "reason").count().collect():  # sources x reasons
                report.by_reason[(row["_source"], row["reason"])] = int(row["count"])
        check_reject_rates(report, frames, ingest)
        accepted = clean_rows(checked, dup_keys).unionByName(ranked.where(F.col("reason").isNull()))
        if contract.event:
            if identity_keys is not None:
                with _step(name, "found the orphan keys"):
                    orphans = orphan_keys(checked, identity_keys).persist()
                    orphans.count()
                accepted = flag_orphans(accepted, orphans)
            else:
                accepted = accepted.withColumn("is_orphan", F.lit(None).cast("boolean"))
        passed = Observation()
        counts = _per_source(frames)
        if contract.event:
            counts.append(F.count(F.when(F.col("is_orphan"), 1)).alias("orphans"))
        out = accepted.select(
            *contract.names,
            *(["is_orphan"] if contract.event else []),
            "_source",
            ingest_file_id(tables.run_id, F.col("_source_file")).alias("_ingest_file"),
            "_row_hash",
        ).observe(passed, *counts)
        quarantine_rows = rejected
        if tables.exists(name):
            # A later delivery: rows whose key is loaded already are either the same row
            # (counted, not written again) or a conflicting version (quarantined).
            # at the newest version, the one the MERGE below inserts into (a killed
            # attempt of this run may have loaded rows not published yet)
            existing = tables.read_newest(name).select(
                *contract.key, row_hash(contract.names).alias("_existing_hash")
            )
            matched = out.join(existing, list(contract.key), "left")
            same = F.col("_existing_hash") == F.col("_row_hash")
            report.already_loaded = matched.where(same).count()
            conflicts = matched.where(F.col("_existing_hash").isNotNull() & ~same).select(
                "_row_hash", *contract.key
            )
            conflict_rows = accepted.join(conflicts, ["_row_hash", *contract.key], "left_semi").withColumns(
                {
                    "reason": F.lit("duplicate_id"),
                    "detail": F.lit(",".join(contract.key) + " (already loaded)"),
                }
            )
            quarantine_rows = rejected.unionByName(conflict_rows.select(*rejected.columns))
            new_rows = matched.where(F.col("_existing_hash").isNull()).drop("_existing_hash", "_row_hash")
        else:
            new_rows = out.drop("_row_hash")
        before = _version(tables, name)
        with _step(name, "wrote the accepted rows"):
            tables.merge(
                new_rows,
                name,
                keys=list(contract.key),
                when_matched="ignore",
                properties=bronze_properties(contract),
            )
        report.inserted = _last_commit_rows(tables, name, before)
        for source, n in _source_counts(frames, passed).items():
            report.by_reason[(source, "accepted")] = n
        report.orphans = int(passed.get.get("orphans", 0))
        # The rejected rows are few: kept in memory for the write and the checks after it.
        quarantine = (
            _quarantine_rows(quarantine_rows, contract, ingest.quarantine_identity_fields)
            .withColumn("run_id", F.lit(tables.run_id))
            .persist()
        )
        q_before = _version(tables, catalog.QUARANTINE)
        with _step(name, "wrote the quarantined rows"):
            report.quarantined = quarantine.count()
            tables.merge(quarantine, catalog.QUARANTINE, keys=QUARANTINE_KEY, when_matched="ignore")
        report.quarantined_new = _last_commit_rows(tables, catalog.QUARANTINE, q_before)
        with _step(name, "reconciled the quarantine"):
            # Every rejected row must now be in the quarantine table (new or from a rerun).
            stored = tables.read(catalog.QUARANTINE).join(
                quarantine.select(*QUARANTINE_KEY), QUARANTINE_KEY, "left_semi"
            )
            if stored.count() != report.quarantined:
                raise ReconciliationError(
                    f"{name}: {report.quarantined} rows rejected but not all are in {catalog.QUARANTINE}"
                )
    finally:
        for frame in (dup_keys, aside, orphans, quarantine):
            if frame is not None:
                frame.unpersist()
        if stage:
            hadoopfs.delete(spark, staging)
    total_read = sum(report.read.values())
    accounted = report.inserted + report.already_loaded + report.quarantined
    log.info(
        "%s: read %d = inserted %d + already loaded %d + quarantined %d (%d new quarantine rows); orphans %d",
        name,
        total_read,
        report.inserted,
        report.already_loaded,
        report.quarantined,
        report.quarantined_new,
        report.orphans,
    )
    if total_read != accounted:
        raise ReconciliationError(
            f"{name}: rows read {total_read} != inserted {report.inserted} + already loaded "
            f"{report.already_loaded} + quarantined {report.quarantined}"
        )
    return report


def ingest_all(spark: SparkSession, tables: TableStore, cfg: Config) -> list[TableReport]:
    """Check every source, then ingest the tables in contract order."""
    previous = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", cfg.ingest.max_partition_bytes)
    try:
        return _ingest_all(spark, tables, cfg)
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", str(previous))
        hadoopfs.delete(spark, staging_root(tables))


def _ingest_all(spark: SparkSession, tables: TableStore, cfg: Config) -> list[TableReport]:
    started = time.perf_counter()
    # Staging folders of runs killed before their cleanup (this run holds the warehouse)
    stale = os.path.join(tables.warehouse, "_staging", "ingest")
    if hadoopfs.exists(spark, stale):
        log.info("removing staging folders left by killed runs: %s", hadoopfs.list_dirs(spark, stale))
        hadoopfs.delete(spark, stale)
    frames = check_sources(spark, cfg)
    log.info(
        "checked %d sources in %.1f s", sum(len(v) for v in frames.values()), time.perf_counter() - started
    )
    for table in frames:
        name = f"bronze.{table}"
        if tables.exists(name) and "_ingest_file" not in tables.read(name).columns:
            raise SchemaDriftError(
                f"{name} was written by a custseg older than 2026-12-02 (its rows carry "
                "_source_file and _ingest_run_id, not _ingest_file): ingest into a new "
                "warehouse, or drop the bronze tables and ingest again"
            )
    as_of = run_as_of(tables, cfg.ingest)
    log.info("ingest as of %s", as_of)
    if frames:
        record_files(tables, frames)
    expire_quarantine(tables, cfg.ingest.quarantine_max_age_days)
    suppression = Suppression.load(tables, cfg)
    reports = []
    identity_keys: DataFrame | None = None
    try:
        for table, table_frames in frames.items():
            t0 = time.perf_counter()
            # Orphans are judged against every identity record loaded so far (this run's
            # included, since identity is ingested first).
            if CONTRACTS[table].event and identity_keys is None:
                identity_keys = identity_key_set(tables)
                if identity_keys is None:
                    log.warning("no bronze.identity_records yet: event rows get is_orphan = null")
            report = ingest_table(
                tables, CONTRACTS[table], table_frames, cfg.ingest, identity_keys, as_of, suppression
            )
            log.info("ingested %s in %.1f s", table, time.perf_counter() - t0)
            reports.append(report)
    finally:
        if identity_keys is not None:
            identity_keys.unpersist()
    return reports


@dataclass
class Suppression:
    """The source records of erased people (``meta.suppressed_sources``), dropped from
    every delivery before its checks, and counted."""

    suppressed: DataFrame  # source_key, bucket
    key: bytes

    @classmethod
    def load(cls, tables: TableStore, cfg: Config) -> Suppression | None:
        """None when nobody was erased (no cost for the usual run)."""
        if not tables.exists(catalog.SUPPRESSED_SOURCES):
            return None
        found = tables.read_newest(catalog.SUPPRESSED_SOURCES).select("source_key", "bucket")
        if found.isEmpty():
            return None
        return cls(found.persist(), pseudonym_key(cfg.privacy))

    def drop_from(self, checked: DataFrame) -> tuple[DataFrame, int]:
        """``checked`` without the suppressed records, and the rows dropped (one pass over
        the source and identity columns; rows whose id did not parse are kept)."""
        pair = ["source_system", "source_id"]
        hits = suppressed_records(checked, self.suppressed, self.key).localCheckpoint()
        dropped = int(hits.agg(F.coalesce(F.sum("rows"), F.lit(0))).first()[0])  # type: ignore[index]
        if dropped:
            log.info("dropped %d rows of %d erased source records", dropped, hits.count())
        return checked.join(F.broadcast(hits.select(*pair)), pair, "left_anti"), dropped


def expire_quarantine(tables: TableStore, max_age_days: int | None) -> None:
    """Delete the quarantine rows of runs that first quarantined them more than
    ``max_age_days`` ago. A run's age: when its ingest started (``meta.stage_runs``, kept
    for good), else its first commit to the table (Delta history, which log retention
    trims: a run older than that and never published stays)."""
    if max_age_days is None or not tables.exists(catalog.QUARANTINE):
        return
    cutoff = utc_now() - timedelta(days=max_age_days)
    started = tables.history(catalog.QUARANTINE).where(F.col("userMetadata").isNotNull())
    started = started.select(F.col("userMetadata").alias("run_id"), F.col("timestamp").alias("at"))
    if tables.exists(catalog.STAGE_RUNS):
        ingests = tables.read_newest(catalog.STAGE_RUNS).where(F.col("stage") == "ingest")
        started = started.unionByName(ingests.select("run_id", F.col("started_at").alias("at")))
    runs = (
        started.groupBy("run_id")
        .agg(F.min("at").alias("first"))
        .where(F.col("first") < F.lit(cutoff))
        .select("run_id")
        .localCheckpoint()
    )
    if runs.isEmpty():
        return
    deleted = tables.delete_matching(catalog.QUARANTINE, runs, F.col("t.run_id") == F.col("s.run_id"))
    log.info(
        "deleted %d quarantine rows older than %d days (ingest.quarantine_max_age_days)",
        deleted,
        max_age_days,
    )


def identity_key_set(tables: TableStore) -> DataFrame | None:
    """The distinct ``(source_system, source_id)`` of the loaded identity records, persisted
    on the executors once for every event table's orphan check (read and made distinct
    once, not four times); None before any is loaded."""
    if not tables.exists(catalog.IDENTITY_RECORDS):
        return None
    pair = ["source_system", "source_id"]
    return tables.read(catalog.IDENTITY_RECORDS).select(*pair).distinct().persist()


def run_ingest(ctx: StageContext) -> None:
    """Stage runner: ingest every configured source and log the reconciliation."""
    reports = ingest_all(ctx.spark, ctx.tables, ctx.cfg)
    for report in reports:
        ctx.run.log_metrics(report.metrics())
        ctx.run.log_dict(
            {
                "extra_columns": report.extra_columns,
                "read": report.read,
                "by_reason": {f"{s}.{r}": n for (s, r), n in report.by_reason.items()},
            },
            f"ingest/{report.table}.json",
        )
