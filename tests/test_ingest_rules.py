"""Contract rules on hand-built rows: every reason, precedence, parsing, orphans."""

from __future__ import annotations

from datetime import date, datetime

from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from custseg.config import SourceConfig
from custseg.contract import CONTRACTS
from custseg.ingest.rules import classify, flag_orphans, orphan_keys, parse_frame, record_key

TX = CONTRACTS["transactions"]
RAW_SCHEMA = (
    "transaction_id string, source_system string, source_id string, ts string, amount string, "
    "discount string, cost string, product_category string, channel string"
)
SRC = SourceConfig(name="tx", format="csv", path="tx", timestamp_format="yyyy-MM-dd HH:mm:ss")


def classify_rows(spark: SparkSession, rows: list[tuple]) -> dict[str, tuple[str | None, str | None]]:
    df = spark.createDataFrame(rows, RAW_SCHEMA).withColumns(
        {
            "_source": F.lit("tx"),
            "_source_file": F.lit("f.csv"),
            "_raw": F.concat_ws(",", "transaction_id", "source_id", "amount"),
            "_malformed": F.lit(False),
        }
    )
    out = classify(
        parse_frame(df, TX, SRC),
        TX,
        known_source_systems=["web", "app"],
        ts_min=date(2000, 1, 1),
        as_of=date(2026, 10, 31),
        amount_max=1000.0,
        refund_id_pattern="^R",
    )
    # Keyed by the record key the quarantine would report (recovered from the raw text
    # when the parsed id is blank), as the quarantine computes it.
    got = out.withColumn("record_key", record_key(TX)).collect()
    return {r["record_key"]: (r["reason"], r["detail"]) for r in got}


def test_every_rule_and_its_detail(spark: SparkSession) -> None:
    ok = ("web", "s1", "2026-01-05 10:00:00", "10.5", "1.0", "3.0", "software", "online")
    rows = [
        ("T1", *ok),
        ("T2", "web", None, "2026-01-05 10:00:00", "10", "0", "0", "x", "y"),  # missing key
        ("T3", "web", "s1", "05/01/2026", "10", "0", "0", "x", "y"),  # unparseable date
        ("T4", "web", "s1", "2026-01-05 10:00:00", "12,50", "0", "0", "x", "y"),  # unparseable number
        ("T5", "crm", "s1", "2026-01-05 10:00:00", "10", "0", "0", "x", "y"),  # unknown system
        ("T6", "web", "s1", "2031-01-05 10:00:00", "10", "0", "0", "x", "y"),  # future
        ("T7", "web", "s1", "1962-01-05 10:00:00", "10", "0", "0", "x", "y"),  # before ts_min
        ("T8", "web", "s1", "2026-01-05 10:00:00", "-10", "0", "0", "x", "y"),  # negative purchase
        ("R9", "web", "s1", "2026-01-06 10:00:00", "-10", "0", "0", "x", "y"),  # refund: fine
        ("T10", "web", "s1", "2026-01-05 10:00:00", "5000", "0", "0", "x", "y"),  # absurd
        ("T11", "web", "s1", "2026-01-05 10:00:00", "10", "0", "-2", "x", "y"),  # negative cost
        ("T12", "web", None, "garbage", "abc", "0", "0", "x", "y"),  # missing key wins
        ("  ", "web", "s1", "2026-01-05 10:00:00", "10", "0", "0", "x", "y"),  # blank id
    ]
    got = classify_rows(spark, rows)
    assert got["T1"] == (None, None)
    assert got["T2"] == ("missing_key", "source_id")
    assert got["T3"] == ("unparseable_date", "ts")
    assert got["T4"] == ("unparseable_number", "amount")
    assert got["T5"] == ("unknown_source_system", "crm")
    assert got["T6"] == ("timestamp_out_of_range", "ts")
    assert got["T7"] == ("timestamp_out_of_range", "ts")
    assert got["T8"] == ("negative_amount", "amount")
    assert got["R9"] == (None, None)
    assert got["T10"] == ("amount_out_of_bounds", "amount")
    assert got["T11"] == ("negative_value", "cost")
    assert got["T12"] == ("missing_key", "source_id")
    # A blank id has no key to report, in the row or its raw text.
    assert got[None] == ("missing_key", "transaction_id")


def test_duplicates_keep_the_first_by_time(spark: SparkSession) -> None:
    rows = [
        ("T1", "web", "s1", "2026-01-05 10:00:00", "10", "0", "0", "x", "y"),
        ("T1", "web", "s1", "2026-01-05 10:00:00", "10", "0", "0", "x", "y"),  # exact re-delivery
        ("T1", "web", "s1", "2026-01-05 11:00:00", "11", "0", "0", "x", "y"),  # later, different
        ("T2", "web", "s1", "2026-01-07 09:00:00", "20", "0", "0", "x", "y"),
        ("T2", "web", "s1", "2026-01-05 09:00:00", "21", "0", "0", "x", "y"),  # earlier: kept
    ]
    df = spark.createDataFrame(rows, RAW_SCHEMA).withColumns(
        {
            "_source": F.lit("tx"),
            "_source_file": F.lit("f.csv"),
            "_raw": F.lit("r"),
            "_malformed": F.lit(False),
        }
    )
    out = classify(
        parse_frame(df, TX, SRC),
        TX,
        known_source_systems=["web"],
        ts_min=date(2000, 1, 1),
        as_of=date(2026, 10, 31),
        amount_max=1000.0,
        refund_id_pattern="^R",
    ).select("transaction_id", "amount", "reason")
    expected = spark.createDataFrame(
        [
            ("T1", 10.0, None),
            ("T1", 10.0, "exact_duplicate"),
            ("T1", 11.0, "duplicate_id"),
            ("T2", 20.0, "duplicate_id"),
            ("T2", 21.0, None),
        ],
        "transaction_id string, amount double, reason string",
    )
    assert_df_equality(out, expected, ignore_row_order=True)


def test_parsing_to_contract_types(spark: SparkSession) -> None:
    support = CONTRACTS["support_contacts"]
    src = SourceConfig(
        name="s", format="csv", path="s", timestamp_format="dd/MM/yyyy HH:mm", timezone="Europe/London"
    )
    df = spark.createDataFrame(
        [
            ("C1", "web", "s1", "01/07/2026 10:30", "phone", " 4.5 ", "YES", "3"),
            ("C2", "web", "s1", "01/01/2026 10:30", "", "", "no", None),
        ],
        "contact_id string, source_system string, source_id string, ts string, channel string, "
        "handle_minutes string, resolved string, cost string",
    ).withColumns(
        {"_source": F.lit("s"), "_source_file": F.lit("f"), "_raw": F.lit("r"), "_malformed": F.lit(False)}
    )
    out = parse_frame(df, support, src).select(*support.names)
    expected = spark.createDataFrame(
        [
            ("C1", "web", "s1", datetime(2026, 7, 1, 9, 30), "phone", 4.5, True, 3.0),  # BST: UTC+1
            ("C2", "web", "s1", datetime(2026, 1, 1, 10, 30), None, None, False, None),
        ],  # GMT
        "contact_id string, source_system string, source_id string, ts timestamp, channel string, "
        "handle_minutes double, resolved boolean, cost double",
    )
    assert_df_equality(out, expected, ignore_row_order=True)


def test_orphans_are_flagged_not_removed(spark: SparkSession) -> None:
    events = spark.createDataFrame(
        [
            ("E1", "web", "a"),
            ("E2", "web", "zz"),
            ("E3", None, None),
            ("E4", "web", "zz"),
            ("E5", None, "a"),
            ("E6", "app", "zz"),
        ],
        "touch_id string, source_system string, source_id string",
    )
    identity = spark.createDataFrame(
        [("web", "a"), ("web", "a"), ("app", "zz")], "source_system string, source_id string"
    )
    orphans = orphan_keys(events, identity)
    assert sorted(tuple(r) for r in orphans.collect()) == [("web", "zz")]
    out = flag_orphans(events, orphans).select("touch_id", "is_orphan")
    # E3 is anonymous (no source id), not an orphan; E5 names an id with no system.
    expected = spark.createDataFrame(
        [("E1", False), ("E2", True), ("E3", False), ("E4", True), ("E5", True), ("E6", False)],
        "touch_id string, is_orphan boolean",
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)
