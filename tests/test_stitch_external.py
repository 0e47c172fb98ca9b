"""Stitching on records we did not generate: census-style FEBRL records (no email, phone
or device), postcodes and dates of other countries and formats, rules derived from the
fields a source holds, and a plain SparkSession."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import date
from itertools import combinations
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from custseg.config import StitchConfig
from custseg.contract import IDENTITY_FIELDS
from custseg.stitch import stitch_identities
from custseg.stitch.febrl import febrl_records
from custseg.stitch.probabilistic import BLOCKING_CANDIDATES, resolve_rules
from custseg.stitch.standardise import standardisation_counts, standardise_records

ROOT = Path(__file__).resolve().parents[1]


def _pairs(groups: pd.Series) -> set[tuple[str, str]]:
    """Record pairs sharing a group label (index: record id)."""
    out: set[tuple[str, str]] = set()
    for _, ids in groups.groupby(groups).groups.items():
        out |= {tuple(sorted(p)) for p in combinations(ids, 2)}  # type: ignore[misc]
    return out


def test_census_records_without_email_phone_or_device(spark: SparkSession) -> None:
    """FEBRL 4 (first 600 people: 1,200 records, one true match each; typos, swapped and
    missing values), default settings: pairwise precision and recall counted here in
    pandas from the identity map and the truth."""
    records, truth = febrl_records(spark, "febrl4")
    keep = truth.where(F.col("person_id").cast("int") < 600)
    records = records.join(keep.select("source_system", "source_id"), ["source_system", "source_id"])
    result = stitch_identities(records, StitchConfig())
    got = result.identity_map.select(
        F.concat_ws(":", "source_system", "source_id").alias("rid"), "customer_id"
    ).toPandas()
    want = keep.select(F.concat_ws(":", "source_system", "source_id").alias("rid"), "person_id").toPandas()
    assert len(got) == len(want) == 1200
    predicted = _pairs(got.set_index("rid").customer_id)
    true = _pairs(want.set_index("rid").person_id)
    assert len(true) == 600
    hits = len(predicted & true)
    precision, recall = hits / max(len(predicted), 1), hits / len(true)
    assert precision >= 0.99, (precision, recall)
    assert recall >= 0.9, (precision, recall)
    # The model compared what these records hold and trained on rules made of them.
    assert result.metrics["deterministic_links"] == 0
    assert result.metrics["standardise.postcode.nulled"] == 0  # Australian postcodes kept
    assert result.metrics["standardise.date_of_birth.present"] > 1100


def test_postcodes_of_other_countries_survive_standardisation(spark: SparkSession) -> None:
    cfg = StitchConfig(source_regions={"us_shop": "us"})
    rows = [
        ("web", "gb", "sw1a1aa", None),  # UK: spaced
        ("web", "au", " 4223 ", None),  # Australian under the GB default: kept, compact
        ("web", "odd", "abc-12", None),  # no known format: kept, normalised
        ("web", "ph", "N/A", None),  # a placeholder: null
        ("us_shop", "zip4", "12345-6789", None),  # by source region: ZIP+4 -> ZIP
        ("web", "ca", "k1a0b1", "CA"),  # by the record's country
        ("web", "nl", "1234ab", "nl"),
        ("web", "blank", "  ", None),
    ]
    df = spark.createDataFrame(
        rows, "source_system string, source_id string, postcode string, country string"
    )
    std = standardise_records(df, cfg, keep_raw=True)
    got = {r["source_id"]: r["postcode"] for r in std.collect()}
    assert got == {
        "gb": "SW1A 1AA",
        "au": "4223",
        "odd": "ABC12",
        "ph": None,
        "zip4": "12345",
        "ca": "K1A 0B1",
        "nl": "1234 AB",
        "blank": None,
    }
    counts = standardisation_counts(std, cfg)
    assert counts["records"] == 8
    assert counts["standardise.postcode.present"] == 7  # all but the blank
    assert counts["standardise.postcode.placeholder"] == 1
    assert counts["standardise.postcode.nulled"] == 0  # none dropped for its format
    assert counts["standardise.postcode.changed"] == 5  # gb, odd, zip4, ca, nl: not "4223" (only trimmed)
    assert counts["standardise.email.present"] == 0


def test_phones_read_in_their_region_and_dates_in_several_formats(spark: SparkSession) -> None:
    cfg = StitchConfig(source_regions={"us_shop": "US"})
    rows = [
        ("web", "uk", "07700 900123", "1915-11-11"),
        ("us_shop", "us", "(201) 555-0123", "19151111"),
        ("web", "slash", None, "11/11/1915"),
        ("web", "bad", "12", "31/02/1915"),  # no such phone, no such day
    ]
    df = spark.createDataFrame(
        rows, "source_system string, source_id string, phone string, date_of_birth string"
    )
    std = standardise_records(df, cfg, keep_raw=True)
    got = {r["source_id"]: (r["phone"], r["date_of_birth"]) for r in std.collect()}
    assert got == {
        "uk": ("+447700900123", date(1915, 11, 11)),
        "us": ("+12015550123", date(1915, 11, 11)),
        "slash": (None, date(1915, 11, 11)),
        "bad": (None, None),
    }
    counts = standardisation_counts(std, cfg)
    assert counts["standardise.phone.nulled"] == 1 and counts["standardise.date_of_birth.nulled"] == 1
    assert counts["standardise.date_of_birth.changed"] == 2  # 19151111 and 11/11/1915 rewritten


def test_rules_derived_from_the_fields_records_hold() -> None:
    everything = set(IDENTITY_FIELDS)
    full = resolve_rules(StitchConfig(), everything)
    # All fields held: the rules the reference preset was tuned with.
    assert full.training == [["email"], ["phone"]]
    assert full.blocking[: len(BLOCKING_CANDIDATES)] == [list(r) for r in BLOCKING_CANDIDATES]
    census = resolve_rules(
        StitchConfig(), {"first_name", "last_name", "date_of_birth", "postcode", "address"}
    )
    assert census.training == [["date_of_birth"], ["first_name", "last_name"]]
    assert census.comparisons == ["name", "date_of_birth", "postcode", "address"]
    assert ["phone"] not in census.blocking and ["date_of_birth", "first_name"] in census.blocking
    names_only = resolve_rules(StitchConfig(), {"first_name", "last_name", "email"})
    assert names_only.blocking[0] == ["first_name", "last_name"]
    assert ["email"] not in names_only.blocking  # a deterministic key, never a blocking rule
    assert names_only.training == [["email"], ["first_name", "last_name"]]
    # Named rules over fields the records lack are left out, not run into Splink's error.
    named = resolve_rules(
        StitchConfig(training_rules=[["email"], ["phone"]], blocking_rules=[["phone"], ["last_name"]]),
        {"first_name", "last_name", "date_of_birth"},
    )
    assert named.blocking == [["last_name"]]
    assert named.training == [["date_of_birth"], ["first_name", "last_name"]]


def test_nothing_to_compare_is_one_clear_error(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("web", "1", "x"), ("web", "2", "y")], "source_system string, source_id string, note string"
    )
    with pytest.raises(ValueError, match="nothing to compare"):
        stitch_identities(df, StitchConfig())


def test_stitch_on_a_plain_spark_session(tmp_path: Path) -> None:
    """A user's own SparkSession, with no checkpoint folder and no Splink jar: the call
    sets up both and stitches six people's pairs of records, birth dates given as text in
    two formats (in a child process: one JVM per process)."""
    script = tmp_path / "plain.py"
    script.write_text(
        textwrap.dedent(
            """
            from pyspark.sql import SparkSession
            from custseg.stitch import stitch_identities
            spark = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
                     .config("spark.sql.shuffle.partitions", "1").getOrCreate())
            people = [("Ann", "Smith", "1980-02-01", "SW1A 1AA"), ("Bob", "Jones", "19750607", "M1 1AE"),
                      ("Cyrus", "Patel", "1990-12-24", "LS6 2QT"), ("Dee", "Okafor", "1966-03-03", "BT9 5EE"),
                      ("Eve", "Novak", "2001-07-15", "CF10 1EP"), ("Fay", "Lund", "1958-11-30", "EH1 1YZ")]
            rows = [(system, system + str(i), *p) for i, p in enumerate(people) for system in ("web", "app")]
            df = spark.createDataFrame(rows, "source_system string, source_id string, first_name string, "
                                             "last_name string, date_of_birth string, postcode string")
            out = stitch_identities(df).identity_map
            print("CUSTOMERS", out.select("customer_id").distinct().count(), out.count())
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_GATEWAY", "SPARK_"))}
    env["PYSPARK_PYTHON"] = sys.executable
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("CUSTOMERS"))
    customers, records = map(int, line.split()[1:])
    assert (records, customers) == (12, 6)  # each person's two records, one customer
    assert "no checkpoint directory was set" in done.stderr
