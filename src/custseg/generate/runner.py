"""Build the synthetic world's DataFrames and write them as the raw files real exports are.

Layout under ``output_dir``::

    raw/identity_records/web/*.parquet        contract columns
    raw/identity_records/app/*.json           JSON lines, contract columns
    raw/identity_records/call_centre/*.csv    the call centre's own column names and formats
    raw/transactions/*.parquet
    raw/product_usage/*.parquet
    raw/support_contacts/*.csv
    raw/marketing_touches/*.json
    raw/customer_attributes/*.parquet
    truth/identity/ truth/people/ truth/bad_input_manifest/   Parquet
    truth/parameters.json

With bad input on, extra ``part-bad-*`` files appear beside a table's files (see
``custseg.generate.corrupt``).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from custseg import hadoopfs
from custseg.config import GenerateConfig
from custseg.contract import CONTRACTS
from custseg.generate import corrupt as C
from custseg.generate import world as W
from custseg.generate.spec import WorldSpec
from custseg.reference import CALL_CENTRE_COLUMNS, CALL_CENTRE_DATE, CALL_CENTRE_TIMESTAMP
from custseg.stage import StageContext

log = logging.getLogger(__name__)

IDENTITY_COLUMNS = CONTRACTS["identity_records"].names  # the generator writes the contract
CSV_TIMESTAMP = "yyyy-MM-dd HH:mm:ss"
SUPPORT_COLUMNS = (
    "contact_id",
    "source_system",
    "source_id",
    "ts",
    "channel",
    "handle_minutes",
    "resolved",
    "cost",
)


@dataclass
class GeneratedWorld:
    """The generated tables (clean, before damage) and the truth."""

    people: DataFrame
    identity_records: DataFrame  # contract columns + person_id + noise flags
    transactions: DataFrame
    support_contacts: DataFrame
    product_usage: DataFrame
    marketing_touches: DataFrame
    customer_attributes: DataFrame
    calendar: W.Calendar
    parameters: dict[str, Any] = field(default_factory=dict)

    def customer_tables(self) -> dict[str, DataFrame]:
        """The four event tables and customer_attributes, by contract table name."""
        return {
            "transactions": self.transactions,
            "support_contacts": self.support_contacts,
            "product_usage": self.product_usage,
            "marketing_touches": self.marketing_touches,
            "customer_attributes": self.customer_attributes,
        }


def generate_world(spark: SparkSession, cfg: GenerateConfig, *, seed: int) -> GeneratedWorld:
    """Draw every table of the world as DataFrames; nothing is written or collected."""
    calendar = W.Calendar(end_date=cfg.end_date, years=cfg.years)
    people = W.draw_people(
        spark,
        n_people=cfg.resolved_n_people,
        seed=seed,
        calendar=calendar,
        bot_share=cfg.bot_share,
        records_per_person=cfg.records_per_person,
        noise=cfg.noise,
        partitions=cfg.resolved_partitions,
    )
    records = W.draw_identity_records(people, seed=seed, noise=cfg.noise, calendar=calendar)
    parameters = {
        "seed": seed,
        "n_people": cfg.resolved_n_people,
        "start_date": calendar.start_date.isoformat(),
        "end_date": calendar.end_date.isoformat(),
        "time_unit_of_rates": "day",
        "noise": cfg.noise.model_dump(),
        "bad_input": cfg.bad_input.model_dump(),
        "bot_share": cfg.bot_share,
        "records_per_person": cfg.records_per_person,
        "anonymous_touch_share": cfg.anonymous_touch_share,
        **WorldSpec().to_json(),
    }
    return GeneratedWorld(
        people=people,
        identity_records=records,
        transactions=W.draw_transactions(people, seed=seed, calendar=calendar),
        support_contacts=W.draw_support_contacts(people, seed=seed, calendar=calendar),
        product_usage=W.draw_product_usage(people, seed=seed, calendar=calendar),
        marketing_touches=W.draw_marketing_touches(
            people, seed=seed, calendar=calendar, anonymous_share=cfg.anonymous_touch_share
        ),
        customer_attributes=W.draw_customer_attributes(people, seed=seed, calendar=calendar),
        calendar=calendar,
        parameters=parameters,
    )


# ---------------------------------------------------------------- damage specs


def _damage_specs(calendar: W.Calendar) -> dict[str, C.TableDamage]:
    future = F.lit(f"{calendar.end_date.year + 5}-06-01 12:00:00").cast("timestamp")
    ancient = F.lit("1962-03-04 09:30:00").cast("timestamp")
    orphan = F.concat(F.lit(C.ORPHAN_PREFIX), F.col("source_id"))
    unknown = {"source_system": F.lit(C.UNKNOWN_SYSTEM)}
    return {
        "transactions": C.TableDamage(
            table="transactions",
            key=F.col("transaction_id"),
            inline={
                "missing_key": {"source_id": F.lit(None).cast("string")},
                "negative_amount": {"amount": -F.abs(F.col("amount")) - 1.0},
                "absurd_amount": {"amount": F.lit(9.5e8)},
                "future_ts": {"ts": future},
                "pre_1970_ts": {"ts": ancient},
                "unknown_source_system": unknown,
                "orphan": {"source_id": orphan},
            },
            copies=("exact_duplicate", "duplicate_id"),
            duplicate_change={
                "ts": F.col("ts") + F.expr("INTERVAL 1 HOURS"),
                "amount": F.round(F.col("amount") * 1.1, 2),
            },
            # A refund made more negative is still a valid refund: damage purchases only.
            eligible={"negative_amount": F.col("amount") > 0},
        ),
        "product_usage": C.TableDamage(
            table="product_usage",
            key=F.concat_ws("|", F.col("source_id"), F.col("date").cast("string")),
            inline={
                "missing_key": {"source_system": F.lit(None).cast("string")},
                "negative_value": {"sessions": F.lit(-3).cast("long")},
                "future_ts": {"date": F.lit(f"{calendar.end_date.year + 5}-06-01").cast("date")},
                "unknown_source_system": unknown,
                "orphan": {"source_id": orphan},
            },
            copies=("exact_duplicate",),
        ),
        "support_contacts": C.TableDamage(
            table="support_contacts",
            key=F.col("contact_id"),
            inline={
                "missing_key": {"source_id": F.lit(None).cast("string")},
                "unknown_source_system": unknown,
                "orphan": {"source_id": orphan},
            },
            copies=("duplicate_id",),
            duplicate_change={
                "ts": F.col("ts") + F.expr("INTERVAL 1 HOURS"),
                "handle_minutes": F.col("handle_minutes") + 5.0,
            },
            bad_file=("unparseable_date", "unparseable_number", "wrong_column_count"),
        ),
        "marketing_touches": C.TableDamage(
            table="marketing_touches",
            key=F.col("touch_id"),
            inline={"pre_1970_ts": {"ts": ancient}},
            copies=("exact_duplicate",),
            bad_file=("unparseable_number", "malformed_json"),
        ),
        "identity_web": C.TableDamage(
            table="identity_records",
            key=F.col("source_id"),
            inline={"missing_key": {"source_system": F.lit(None).cast("string")}},
            copies=("duplicate_id",),
            duplicate_change={
                "updated_at": F.col("updated_at") + F.expr("INTERVAL 1 HOURS"),
                "postcode": F.lit("ZZ9 9ZZ"),
            },
        ),
        "identity_app": C.TableDamage(
            table="identity_records",
            key=F.col("source_id"),
            inline={"unknown_source_system": unknown},
            bad_file=("malformed_json",),
        ),
        "identity_call_centre": C.TableDamage(
            table="identity_records",
            key=F.col("source_id"),
            inline={},
            bad_file=("unparseable_date", "wrong_column_count", "bad_encoding"),
        ),
    }


# ---------------------------------------------------------------- writing


class _Writer:
    def __init__(self, spark: SparkSession, root: str) -> None:
        self.spark = spark
        self.root = root

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @contextmanager
    def _timed(self, parts: tuple[str, ...]) -> Iterator[None]:
        started = time.perf_counter()
        yield
        log.info("wrote %s in %.1f s", "/".join(parts), time.perf_counter() - started)

    def parquet(self, df: DataFrame, *parts: str) -> None:
        with self._timed(parts):
            df.write.mode("overwrite").parquet(self.path(*parts))

    def json(self, df: DataFrame, *parts: str) -> None:
        with self._timed(parts):
            df.write.mode("overwrite").option("timestampFormat", "yyyy-MM-dd'T'HH:mm:ss'Z'").json(
                self.path(*parts)
            )

    def csv(self, df: DataFrame, *parts: str, encoding: str = "UTF-8") -> None:
        with self._timed(parts):
            self._csv(df, *parts, encoding=encoding)

    def _csv(self, df: DataFrame, *parts: str, encoding: str = "UTF-8") -> None:
        (
            df.write.mode("overwrite")
            .option("header", True)
            .option("quote", '"')
            .option("escape", '"')
            .option("encoding", encoding)
            .option("timestampFormat", CSV_TIMESTAMP)
            .csv(self.path(*parts))
        )

    def extra_file(
        self, df: DataFrame, name: str, *parts: str, header: str | None = None, encoding: str | None = None
    ) -> None:
        """Write ``df`` as one extra file ``name`` into the folder ``parts``."""
        tmp = self.path("_tmp", uuid.uuid4().hex)
        if encoding:
            self.csv(df.repartition(1), os.path.relpath(tmp, self.root), encoding=encoding)
        else:
            # One file, header first, lines in a fixed order (whatever the partitioning);
            # repartition, not coalesce, so the filter upstream still runs in parallel.
            lines = df.select(F.lit(1).alias("_order"), F.col("value"))
            if header is not None:
                head = self.spark.createDataFrame([(0, header)], "_order int, value string")
                lines = head.unionByName(lines)
            lines.repartition(1).sortWithinPartitions("_order", "value").select("value").write.mode(
                "overwrite"
            ).text(tmp)
        self._move_single_part(tmp, self.path(*parts, name))

    def _move_single_part(self, tmp: str, target: str) -> None:
        fs, src_dir = hadoopfs.hadoop_path(self.spark, tmp)
        parts = [s.getPath() for s in fs.listStatus(src_dir) if s.getPath().getName().startswith("part-")]
        if len(parts) != 1:
            raise RuntimeError(f"expected one part file in {tmp}, found {len(parts)}")
        _, dst = hadoopfs.hadoop_path(self.spark, target)
        fs.delete(dst, False)
        fs.rename(parts[0], dst)
        fs.delete(src_dir.getParent(), True)


def _call_centre_frame(records: DataFrame, keep: tuple[str, ...] = ()) -> DataFrame:
    """Contract rows -> the call centre's export columns (all strings), plus ``keep``."""
    address = F.regexp_replace(F.col("address"), r"^(Flat \d+), ", "$1\n")
    values: dict[str, Column] = {
        "source_id": F.col("source_id"),
        "first_name": F.col("first_name"),
        "last_name": F.col("last_name"),
        "email": F.col("email"),
        "phone": F.col("phone"),
        "date_of_birth": F.date_format(F.col("date_of_birth"), CALL_CENTRE_DATE),
        "postcode": F.col("postcode"),
        "address": address,
        "account_number": F.col("account_number"),
        "created_at": F.date_format(F.col("created_at"), CALL_CENTRE_TIMESTAMP),
        "updated_at": F.date_format(F.col("updated_at"), CALL_CENTRE_TIMESTAMP),
    }
    return records.select(*[values[src].alias(name) for name, src in CALL_CENTRE_COLUMNS.items()], *keep)


def _support_frame(df: DataFrame, keep: tuple[str, ...] = ()) -> DataFrame:
    return df.select(
        *[
            F.date_format("ts", CSV_TIMESTAMP).alias("ts") if c == "ts" else F.col(c).cast("string").alias(c)
            for c in SUPPORT_COLUMNS
        ],
        *keep,
    )


@dataclass
class _Damaged:
    clean: DataFrame
    bad: DataFrame | None


def write_world(
    spark: SparkSession, world: GeneratedWorld, cfg: GenerateConfig, *, seed: int
) -> dict[str, int]:
    """Write raw files and truth under ``cfg.output_dir``; returns rows written per file set.

    Each table is drawn once: with bad input on, it is persisted while its clean file,
    its bad file and its manifest rows are written, then released. Counts are read back
    from the written files (Parquet from metadata).
    """
    out = _Writer(spark, cfg.output_dir)
    specs = _damage_specs(world.calendar)
    manifest_path = out.path("truth", "bad_input_manifest")
    hadoopfs.delete(spark, manifest_path)
    people = world.people.persist()
    records = world.identity_records.persist()

    @contextmanager
    def damaged(df: DataFrame, name: str, row_key: Column) -> Iterator[_Damaged]:
        if not cfg.bad_input.enabled:
            yield _Damaged(df, None)
            return
        source = df.persist()
        clean, bad, manifest = C.damage(
            source, specs[name], seed=seed, rate=cfg.bad_input.rate, row_key=row_key
        )
        yield _Damaged(clean, bad if specs[name].bad_file else None)
        manifest.repartition(1).write.mode("append").parquet(manifest_path)
        source.unpersist()

    contract = records.select(*IDENTITY_COLUMNS)
    system = F.col("source_system")
    source_id = F.col("source_id")
    with damaged(contract.where(system == "web"), "identity_web", source_id) as web:
        out.parquet(web.clean, "raw", "identity_records", "web")
    with damaged(contract.where(system == "app"), "identity_app", source_id) as app:
        out.json(app.clean, "raw", "identity_records", "app")
        if app.bad is not None:
            whole = F.to_json(F.struct(*[F.col(c) for c in IDENTITY_COLUMNS]))
            out.extra_file(
                app.bad.select(whole.substr(F.lit(1), F.length(whole) - 12).alias("value")),
                "part-bad-00000.json",
                "raw",
                "identity_records",
                "app",
            )
    with damaged(contract.where(system == "call_centre"), "identity_call_centre", source_id) as cc:
        out.csv(_call_centre_frame(cc.clean), "raw", "identity_records", "call_centre")
        if cc.bad is not None:
            _write_call_centre_bad(out, cc.bad)
    with damaged(world.transactions, "transactions", F.col("transaction_id")) as tx:
        out.parquet(tx.clean, "raw", "transactions")
    usage_key = F.concat_ws("|", "source_id", F.col("date").cast("string"))
    with damaged(world.product_usage, "product_usage", usage_key) as usage:
        out.parquet(usage.clean, "raw", "product_usage")
    with damaged(world.support_contacts, "support_contacts", F.col("contact_id")) as support:
        out.csv(_support_frame(support.clean), "raw", "support_contacts")
        if support.bad is not None:
            _write_support_bad(out, support.bad)
    with damaged(world.marketing_touches, "marketing_touches", F.col("touch_id")) as touches:
        out.json(touches.clean, "raw", "marketing_touches")
        if touches.bad is not None:
            _write_touches_bad(out, touches.bad)
    out.parquet(world.customer_attributes, "raw", "customer_attributes")
    out.parquet(W.truth_identity(records), "truth", "identity")
    out.parquet(W.truth_people(people, world.calendar), "truth", "people")
    hadoopfs.write_bytes(
        spark,
        out.path("truth", "parameters.json"),
        json.dumps(world.parameters, indent=2, default=str).encode("utf-8"),
    )
    started = time.perf_counter()
    counts = count_outputs(spark, cfg.output_dir)
    log.info("counted the written files in %.1f s", time.perf_counter() - started)
    people.unpersist()
    records.unpersist()
    return counts


def _write_call_centre_bad(out: _Writer, bad: DataFrame) -> None:
    """Call-centre rows another export tool mangled: Latin-1 text, bad dates, extra fields."""
    enc = bad.where(F.col("_damage") == "bad_encoding").withColumn("first_name", F.lit("Zoë"))
    out.extra_file(
        _call_centre_frame(enc),
        "part-bad-00001-latin1.csv",
        "raw",
        "identity_records",
        "call_centre",
        encoding="ISO-8859-1",
    )
    text = bad.where(F.col("_damage") != "bad_encoding")
    kind = F.col("_damage")
    frame = _call_centre_frame(text, keep=("_damage",)).withColumn(
        "DOB", F.when(kind == "unparseable_date", F.lit("45/13/1985")).otherwise(F.col("DOB"))
    )
    line = C.csv_line([F.col(f"`{n}`") for n in CALL_CENTRE_COLUMNS])
    line = F.when(kind == "wrong_column_count", F.concat(line, F.lit(",EXTRA,FIELD"))).otherwise(line)
    out.extra_file(
        frame.select(line.alias("value")),
        "part-bad-00000.csv",
        "raw",
        "identity_records",
        "call_centre",
        header=",".join(CALL_CENTRE_COLUMNS),
    )


def _write_support_bad(out: _Writer, bad: DataFrame) -> None:
    """Support rows with text where numbers and dates belong, or a field too many."""
    kind = F.col("_damage")
    frame = _support_frame(bad, keep=("_damage",))
    frame = frame.withColumn(
        "ts", F.when(kind == "unparseable_date", F.lit("31/02/2025 25:61")).otherwise(F.col("ts"))
    )
    frame = frame.withColumn(
        "cost", F.when(kind == "unparseable_number", F.lit("12,50 GBP")).otherwise(F.col("cost"))
    )
    line = C.csv_line([F.col(c) for c in SUPPORT_COLUMNS])
    line = F.when(kind == "wrong_column_count", F.concat(line, F.lit(",extra"))).otherwise(line)
    out.extra_file(
        frame.select(line.alias("value")),
        "part-bad-00000.csv",
        "raw",
        "support_contacts",
        header=",".join(SUPPORT_COLUMNS),
    )


def _write_touches_bad(out: _Writer, bad: DataFrame) -> None:
    """Touch rows with a cost that is not a number, or cut off mid-line."""
    kind = F.col("_damage")
    cols = [c for c in bad.columns if not c.startswith("_")]
    as_text = F.to_json(
        F.struct(
            *[
                (
                    F.lit("n/a")
                    if c == "cost"
                    else F.date_format(c, "yyyy-MM-dd'T'HH:mm:ss'Z'")
                    if c == "ts"
                    else F.col(c)
                ).alias(c)
                for c in cols
            ]
        )
    )
    whole = F.to_json(
        F.struct(
            *[
                (F.date_format(c, "yyyy-MM-dd'T'HH:mm:ss'Z'") if c == "ts" else F.col(c)).alias(c)
                for c in cols
            ]
        )
    )
    line = F.when(kind == "unparseable_number", as_text).otherwise(
        whole.substr(F.lit(1), F.length(whole) - 12)
    )
    out.extra_file(bad.select(line.alias("value")), "part-bad-00000.json", "raw", "marketing_touches")


RAW_FILE_SETS = {
    "identity_records/web": "parquet",
    "identity_records/app": "json",
    "identity_records/call_centre": "csv",
    "transactions": "parquet",
    "product_usage": "parquet",
    "support_contacts": "csv",
    "marketing_touches": "json",
    "customer_attributes": "parquet",
}


def count_outputs(spark: SparkSession, output_dir: str) -> dict[str, int]:
    """Rows per raw file set and truth table, read back from disk (lines for text files)."""
    counts: dict[str, int] = {}
    for name, fmt in RAW_FILE_SETS.items():
        path = os.path.join(output_dir, "raw", name)
        if fmt == "parquet":
            counts[name] = spark.read.parquet(path).count()
        elif fmt == "json":
            counts[name] = spark.read.text(path).count()
        else:
            # Records, not lines: quoted fields may hold line breaks.
            counts[name] = (
                spark.read.option("header", True)
                .option("multiLine", True)
                .option("escape", '"')
                .option("mode", "PERMISSIVE")
                .csv(path)
                .count()
            )
    for name in ("identity", "people", "bad_input_manifest"):
        path = os.path.join(output_dir, "truth", name)
        if name != "bad_input_manifest" or hadoopfs.exists(spark, path):
            counts[f"truth/{name}"] = spark.read.parquet(path).count()
    return counts


def run_generate(ctx: StageContext) -> None:
    """Stage runner: generate the world from ``cfg.generate`` and write it."""
    gcfg = ctx.cfg.generate
    seed = ctx.cfg.run.seed
    log.info("generating %d people (preset %s) into %s", gcfg.resolved_n_people, gcfg.preset, gcfg.output_dir)
    world = generate_world(ctx.spark, gcfg, seed=seed)
    counts = write_world(ctx.spark, world, gcfg, seed=seed)
    for name, n in counts.items():
        log.info("wrote %s: %d rows", name, n)
    ctx.run.log_params({"generate.n_people": gcfg.resolved_n_people, "generate.output_dir": gcfg.output_dir})
    ctx.run.log_metrics({f"rows.{k.replace('/', '.')}": v for k, v in counts.items()})
    ctx.run.log_dict(world.parameters, "truth_parameters.json")
