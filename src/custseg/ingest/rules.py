"""Contract rules: parse each column to its contract type and give every bad row a reason.

A row's reason is the first rule it breaks, in this order:

| reason | rule |
|---|---|
| malformed_record | the CSV/JSON parser could not split the record (wrong column count, broken JSON) |
| bad_encoding | text holds U+FFFD: the bytes were not valid UTF-8 |
| missing_key | a required column is null or blank |
| unparseable_date | a date or timestamp column holds text that is not one |
| unparseable_number | a numeric or boolean column holds text that is not one |
| unknown_source_system | source_system is not in ingest.known_source_systems |
| timestamp_out_of_range | an event time before ingest.ts_min or after ingest.as_of |
| negative_amount | a negative amount on a row the refund pattern does not mark |
| amount_out_of_bounds | abs(amount) above ingest.amount_max |
| negative_value | a count, minutes or cost below zero |
| exact_duplicate | the same row again (same natural key and content) |
| duplicate_id | another row with the same natural key, different content |

Rows without a reason are accepted. Events whose (source_system, source_id) matches no
identity record are accepted and flagged ``is_orphan``, never quarantined.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from custseg.config import SourceConfig
from custseg.contract import TableContract

REPLACEMENT_CHAR = "\ufffd"


def _blank_to_null(text: Column) -> Column:
    trimmed = F.trim(text)
    return F.when(trimmed != "", trimmed)


def parse_column(c: Column, source_type: T.DataType, target: str, src: SourceConfig) -> Column:
    """``c`` converted to the contract type ``target``; null where it does not parse."""
    if target == "string":
        return _blank_to_null(c.cast("string"))
    if not isinstance(source_type, T.StringType):
        typed = c.try_cast(target)
        if target == "timestamp" and src.timezone != "UTC" and isinstance(source_type, T.TimestampNTZType):
            typed = F.to_utc_timestamp(typed, src.timezone)
        return typed
    text = _blank_to_null(c)
    if target in ("double", "long", "int"):
        return text.try_cast(target)
    if target == "boolean":
        low = F.lower(text)
        return F.when(low.isin("true", "1", "yes", "y", "t"), F.lit(True)).when(
            low.isin("false", "0", "no", "n", "f"), F.lit(False)
        )
    if target == "date":
        return (
            F.to_date(F.try_to_timestamp(text, F.lit(src.date_format)))
            if src.date_format
            else text.try_cast("date")
        )
    if target == "timestamp":
        ts = (
            F.try_to_timestamp(text, F.lit(src.timestamp_format))
            if src.timestamp_format
            else text.try_cast("timestamp")
        )
        return F.to_utc_timestamp(ts, src.timezone) if src.timezone != "UTC" else ts
    raise ValueError(f"unsupported contract type {target!r}")


def parse_frame(df: DataFrame, contract: TableContract, src: SourceConfig) -> DataFrame:
    """Contract-typed columns plus ``_unparseable_date``/``_unparseable_number`` (the first
    column that failed), ``_missing_key`` (required columns absent in the raw record) and
    ``_bad_encoding``."""
    types = {f.name: f.dataType for f in df.schema.fields}
    parsed = {}
    date_fail: Column = F.lit(None).cast("string")
    number_fail: Column = F.lit(None).cast("string")
    encoding: Column = F.lit(False)
    for spec in reversed(contract.columns):
        raw = F.col(spec.name)
        value = parse_column(raw, types[spec.name], spec.type, src)
        parsed[spec.name] = value
        failed = raw.isNotNull() & ~_is_blank(raw, types[spec.name]) & value.isNull()
        if spec.type in ("date", "timestamp"):
            date_fail = F.when(failed, F.lit(spec.name)).otherwise(date_fail)
        elif spec.type in ("double", "long", "int", "boolean"):
            number_fail = F.when(failed, F.lit(spec.name)).otherwise(number_fail)
        if isinstance(types[spec.name], T.StringType):
            encoding = encoding | F.coalesce(raw.contains(REPLACEMENT_CHAR), F.lit(False))
    missing = F.concat_ws(
        ",",
        *[
            F.when(F.col(c.name).isNull() | _is_blank(F.col(c.name), types[c.name]), F.lit(c.name))
            for c in contract.columns
            if c.required
        ],
    )
    return df.select(
        *[parsed[name].alias(name) for name in contract.names],
        "_source",
        "_source_file",
        "_raw",
        "_malformed",
        missing.alias("_missing_key"),
        date_fail.alias("_unparseable_date"),
        number_fail.alias("_unparseable_number"),
        # The string columns only: a record the parser could not split is
        # malformed_record, the rule before this one, whatever its bytes.
        encoding.alias("_bad_encoding"),
    )


def _is_blank(c: Column, source_type: T.DataType) -> Column:
    """Whether ``c`` is empty or spaces; a typed (non-string) value never is, so it is not
    converted to text to find out."""
    return F.trim(c) == "" if isinstance(source_type, T.StringType) else F.lit(False)


def row_hash(names: list[str]) -> Column:
    """A content hash of the contract columns (the same row gives the same hash)."""
    return F.xxhash64(*[F.col(n) for n in names])


def check_rows(
    df: DataFrame,
    contract: TableContract,
    *,
    known_source_systems: list[str],
    ts_min: date,
    as_of: date,
    amount_max: float,
    refund_id_pattern: str,
) -> DataFrame:
    """A parsed frame (``parse_frame``) as contract columns, ``_source``, ``_source_file``,
    ``_raw`` (rejected rows only), the row-level ``reason`` and ``detail`` (null when the
    row passes), and the content and key hashes ``_row_hash``, ``_key_hash``; duplicates
    are marked after (``set_aside``, ``rank_duplicates``, ``clean_rows``)."""
    names = contract.names

    ts_max = as_of + timedelta(days=1)
    out_of_range: Column = F.lit(False)
    for col in contract.timestamp_cols if contract.event else ():
        value = F.col(col).cast("timestamp")
        out_of_range = out_of_range | F.coalesce(
            (value < F.lit(ts_min).cast("timestamp")) | (value >= F.lit(ts_max).cast("timestamp")),
            F.lit(False),
        )
    system_known = F.col("source_system").isin(*known_source_systems)
    rules: list[tuple[Column, str, Column]] = [
        (F.col("_malformed"), "malformed_record", F.lit(None).cast("string")),
        (F.col("_bad_encoding"), "bad_encoding", F.lit(None).cast("string")),
        (F.col("_missing_key") != "", "missing_key", F.col("_missing_key")),
        (F.col("_unparseable_date").isNotNull(), "unparseable_date", F.col("_unparseable_date")),
        (F.col("_unparseable_number").isNotNull(), "unparseable_number", F.col("_unparseable_number")),
        (F.col("source_system").isNotNull() & ~system_known, "unknown_source_system", F.col("source_system")),
        (out_of_range, "timestamp_out_of_range", F.lit(",".join(contract.timestamp_cols))),
    ]
    if contract.amount_col:
        amount = F.col(contract.amount_col)
        is_refund = F.coalesce(
            F.col(contract.id_col or contract.key[0]).rlike(refund_id_pattern), F.lit(False)
        )
        rules.append(
            (
                F.coalesce((amount < 0) & ~is_refund, F.lit(False)),
                "negative_amount",
                F.lit(contract.amount_col),
            )
        )
        rules.append(
            (
                F.coalesce(F.abs(amount) > amount_max, F.lit(False)),
                "amount_out_of_bounds",
                F.lit(contract.amount_col),
            )
        )
    for col in contract.nonnegative_cols:
        rules.append((F.coalesce(F.col(col) < 0, F.lit(False)), "negative_value", F.lit(col)))

    reason: Column = F.lit(None).cast("string")
    detail: Column = F.lit(None).cast("string")
    for cond, name, why in reversed(rules):
        reason = F.when(cond, F.lit(name)).otherwise(reason)
        detail = F.when(cond, why).otherwise(detail)

    # The raw text (for the quarantine) is kept only on the rows that break a rule here:
    # carrying it for every row made the ingest of product usage much slower
    # (docs/architecture.md, "Measured choices"). A duplicate's raw record is rendered from its parsed columns
    # when it is quarantined.
    return df.select(
        *names,
        "_source",
        "_source_file",
        F.when(reason.isNotNull(), F.col("_raw")).alias("_raw"),
        reason.alias("reason"),
        detail.alias("detail"),
        row_hash(names).alias("_row_hash"),
        F.xxhash64(*[F.col(k) for k in contract.key]).alias("_key_hash"),
    )


def record_key(contract: TableContract) -> Column:
    """The natural id as text (the key columns but source_system, joined by "|"),
    recovered from the raw text when the record could not be split."""
    key_text = (
        F.concat_ws("|", *[F.col(k).cast("string") for k in contract.key if k != "source_system"])
        if len(contract.key) > 1
        else F.col(contract.key[0])
    )
    return F.coalesce(F.when(key_text != "", key_text), _key_from_raw(contract))


def duplicate_keys(checked: DataFrame) -> DataFrame:
    """Hashes of the natural keys held by more than one row that passes every other rule.

    Only the 8-byte key hash is shuffled; the result is small unless the data is mostly
    duplicates. Two keys sharing a hash only make both candidates: ``rank_duplicates``
    compares the keys themselves.
    """
    return (
        checked.where(F.col("reason").isNull())
        .groupBy("_key_hash")
        .agg(F.count(F.lit(1)).alias("_n"))
        .where(F.col("_n") > 1)
        .select("_key_hash", F.lit(True).alias("_dup_key"))
    )


def set_aside(checked: DataFrame, dup_keys: DataFrame) -> DataFrame:
    """The rows that break a rule, and the passing rows whose key is duplicated (the
    candidates ``rank_duplicates`` orders): few, found in one scan of ``checked``.

    No broadcast hint: ``dup_keys`` is meant to be persisted and counted first, so the
    planner knows its size and broadcasts it when it is under Spark's threshold.
    """
    marked = checked.join(dup_keys, "_key_hash", "left")
    return marked.where(F.col("reason").isNotNull() | F.col("_dup_key").isNotNull()).drop("_dup_key")


def clean_rows(checked: DataFrame, dup_keys: DataFrame) -> DataFrame:
    """The rows that pass every rule and hold a key no other passing row holds."""
    return checked.where(F.col("reason").isNull()).join(dup_keys, "_key_hash", "left_anti")


def rank_duplicates(aside: DataFrame, contract: TableContract) -> DataFrame:
    """``set_aside``'s rows with reason ``exact_duplicate`` / ``duplicate_id`` on every
    candidate of a duplicated key but the first (by ``order_by``, then content hash,
    source and file, for determinism); the first keeps a null reason (accepted), rule breakers keep theirs."""
    keys = list(contract.key)
    broken = aside.where(F.col("reason").isNotNull())
    candidates = aside.where(F.col("reason").isNull())
    # Source and file break the ties of exact duplicates, so every evaluation of this
    # window (the counts, the bronze write, the quarantine) keeps the same copy.
    window = Window.partitionBy(*[F.col(k) for k in keys]).orderBy(
        F.col(contract.order_by).asc_nulls_last(), F.col("_row_hash"), F.col("_source"), F.col("_source_file")
    )
    first_hash = F.first("_row_hash").over(window)
    dup_reason = F.when(
        F.row_number().over(window) > 1,
        F.when(F.col("_row_hash") == first_hash, F.lit("exact_duplicate")).otherwise(F.lit("duplicate_id")),
    )
    ranked = candidates.withColumns(
        {"reason": dup_reason, "detail": F.when(dup_reason.isNotNull(), F.lit(",".join(keys)))}
    )
    return broken.unionByName(ranked.select(*broken.columns))


def classify(
    df: DataFrame,
    contract: TableContract,
    *,
    known_source_systems: list[str],
    ts_min: date,
    as_of: date,
    amount_max: float,
    refund_id_pattern: str,
) -> DataFrame:
    """Every row with its reason (null: accepted): ``check_rows``, then the duplicates,
    composed as the ingest job composes them (without its persists)."""
    checked = check_rows(
        df,
        contract,
        known_source_systems=known_source_systems,
        ts_min=ts_min,
        as_of=as_of,
        amount_max=amount_max,
        refund_id_pattern=refund_id_pattern,
    )
    dup_keys = duplicate_keys(checked)
    ranked = rank_duplicates(set_aside(checked, dup_keys), contract)
    return clean_rows(checked, dup_keys).unionByName(ranked)


def _key_from_raw(contract: TableContract) -> Column:
    """The natural id recovered from a record the parser could not split.

    JSON keeps ``"id": "value"``; for CSV the raw line starts with the id when it is the
    first column (as in every generated export).
    """
    key = contract.key[1] if len(contract.key) > 1 and contract.key[0] == "source_system" else contract.key[0]
    from_json = F.regexp_extract(F.col("_raw"), f'"{key}"\\s*:\\s*"([^"]*)"', 1)
    first_field = F.trim(F.regexp_replace(F.substring_index(F.col("_raw"), ",", 1), '^"|"$', ""))
    return F.when(from_json != "", from_json).when(first_field != "", first_field)


def orphan_keys(events: DataFrame, identity_keys: DataFrame) -> DataFrame:
    """The ``(source_system, source_id)`` pairs events name that no identity record has.

    Both sides are shuffled (distinct pairs only), not broadcast: the identity keys are
    as many as the identity records, and nothing that grows with them goes through the
    driver. Orphan keys are normally few, so ``flag_orphans`` can broadcast them.
    """
    pair = ["source_system", "source_id"]
    named = events.select(*pair).where(F.col("source_system").isNotNull() & F.col("source_id").isNotNull())
    return named.distinct().join(identity_keys.select(*pair), pair, "left_anti")


def flag_orphans(events: DataFrame, orphans: DataFrame) -> DataFrame:
    """Add ``is_orphan``: the event names a source id no accepted identity record has
    (``orphans`` from ``orphan_keys``; an id without a source system is one too).

    No broadcast hint: persist and count ``orphans`` first, so the planner knows their
    size and broadcasts them only under Spark's threshold.
    """
    marked = orphans.select("source_system", "source_id", F.lit(True).alias("_orphan"))
    joined = events.join(marked, ["source_system", "source_id"], "left")
    orphan = F.col("source_id").isNotNull() & (F.col("source_system").isNull() | F.col("_orphan").isNotNull())
    return joined.withColumn("is_orphan", orphan).drop("_orphan")
