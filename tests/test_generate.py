"""The synthetic world: determinism, configured rates, truth, and the bad-input manifest.

Statistics are checked from the written files with pandas and the standard library
(independent of the Spark code that wrote them), against the configured rates with
binomial tolerances of four standard deviations.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession

from custseg.config import Config
from custseg.generate import generate_world, write_world
from custseg.generate.corrupt import ORPHAN_PREFIX, UNKNOWN_SYSTEM
from custseg.generate.spec import (
    FIRST_NAME_HEAD_SHARE,
    FIRST_NAMES,
    LAST_NAME_HEAD_SHARE,
    LAST_NAMES,
    PLACEHOLDERS,
    SEGMENTS,
    SURNAME_PREFIXES,
    SURNAME_SUFFIXES,
)

from .conftest import Tiny
from .files import csv_files, identity_records, manifest, parquet, raw


def within(observed: float, expected: float, n: int, sds: float = 4.0) -> bool:
    sd = math.sqrt(max(expected * (1 - expected), 1e-12) / n)
    return abs(observed - expected) <= sds * sd


# ---------------------------------------------------------------- determinism


def _table_content(df: DataFrame) -> DataFrame:
    return df.drop("repeat_times") if "repeat_times" in df.columns else df


def test_same_content_at_1_and_8_partitions(spark: SparkSession, cfg: Config) -> None:
    base = cfg.generate.model_copy(update={"n_people": 300})
    one = generate_world(spark, base.model_copy(update={"partitions": 1}), seed=11)
    eight = generate_world(spark, base.model_copy(update={"partitions": 8}), seed=11)
    layouts = {}
    for name in (
        "people",
        "identity_records",
        "transactions",
        "support_contacts",
        "product_usage",
        "marketing_touches",
        "customer_attributes",
    ):
        a, b = _table_content(getattr(one, name)), _table_content(getattr(eight, name))
        layouts[name] = (a.rdd.getNumPartitions(), b.rdd.getNumPartitions())
        # Drawn once each: the counts and both differences below would redraw them.
        a, b = a.localCheckpoint(), b.localCheckpoint()
        n = a.count()
        assert n > 0 and n == b.count(), name
        assert a.exceptAll(b).count() == 0, name
        assert b.exceptAll(a).count() == 0, name
    # the equal contents above came from different layouts (else they prove nothing)
    assert all(p1 < p8 for p1, p8 in layouts.values()), layouts
    # A different seed gives a different world.
    other = generate_world(spark, base.model_copy(update={"partitions": 1}), seed=12)
    assert other.transactions.exceptAll(one.transactions).count() > 0


# ---------------------------------------------------------------- configured rates


def test_records_per_person_and_systems(tiny: Tiny) -> None:
    truth = parquet(tiny.root / "truth" / "identity")
    people = parquet(tiny.root / "truth" / "people")
    n = len(people)
    assert n == 2_000
    per_person = truth.groupby("person_id").size()
    assert per_person.index.nunique() == n  # everyone has a record
    assert abs(per_person.mean() - 2.5) < 0.12
    shares = truth["source_system"].value_counts(normalize=True)
    for system, weight in {"web": 0.45, "app": 0.35, "call_centre": 0.20}.items():
        assert within(shares[system], weight, len(truth)), (system, shares[system])
    assert truth.duplicated(["source_system", "source_id"]).sum() == 0


def test_segment_shares_and_top_segment_revenue(tiny: Tiny) -> None:
    people = parquet(tiny.root / "truth" / "people")
    humans = people[~people["is_bot"]]
    shares = humans["segment"].value_counts(normalize=True)
    for seg in SEGMENTS:
        assert within(shares[seg.name], seg.share, len(humans)), (seg.name, shares[seg.name])
    bots = people[people["is_bot"]]
    assert 0 < len(bots) <= 20  # 0.3 % of 2,000 is 6

    tx = parquet(raw(tiny, "transactions"))
    bad = set(manifest(tiny, "transactions")["key"])
    tx = tx[~tx["transaction_id"].isin(bad)]
    truth = parquet(tiny.root / "truth" / "identity")
    tx = tx.merge(truth, on=["source_system", "source_id"], how="inner").merge(people, on="person_id")
    revenue = tx.groupby("segment")["amount"].sum()
    top_share = revenue["core"] / revenue.sum()
    assert top_share > 0.5, revenue
    assert "bot" not in revenue.index  # bots never buy
    # The core's people share is about 8 %.
    assert within((people["segment"] == "core").mean(), 0.08 * (1 - 0.003), len(people))


def test_bots_have_heavy_usage_on_few_days(tiny: Tiny) -> None:
    usage = parquet(raw(tiny, "product_usage"))
    truth = parquet(tiny.root / "truth" / "identity")
    people = parquet(tiny.root / "truth" / "people")
    usage = usage.merge(truth, on=["source_system", "source_id"]).merge(people, on="person_id")
    per_person = usage.groupby(["person_id", "is_bot"]).agg(
        days=("date", "nunique"), sessions=("sessions", "mean")
    )
    bots = per_person.xs(True, level="is_bot")
    humans = per_person.xs(False, level="is_bot")
    assert bots["days"].max() <= 8
    assert bots["sessions"].min() > 5 * humans["sessions"].quantile(0.99)


def test_identity_noise_rates(tiny: Tiny) -> None:
    noise = tiny.cfg.generate.noise
    records = identity_records(tiny)
    truth = parquet(tiny.root / "truth" / "identity")
    rec = records.merge(truth, on=["source_system", "source_id"]).merge(
        tiny.people, on="person_id", suffixes=("", "_true")
    )
    n = len(rec)
    # Placeholders: one field of about 1 % of records holds a placeholder value.
    placeholder = (rec["email"] == PLACEHOLDERS["email"]) | (rec["phone"] == PLACEHOLDERS["phone"])
    # Only two of the four placeholder fields are in this frame: expect half the rate.
    assert within(placeholder.mean(), noise.placeholder / 2, n)
    # Missing first names: a third of the missing-field rate.
    assert within(rec["first_name"].isna().mean(), noise.missing_field / 3, n)
    # Swapped names: the record's first name is the person's last name.
    swap_rate = (
        (rec["first_name"] == rec["last_name_true"]) & (rec["first_name_true"] != rec["last_name_true"])
    ).mean()
    assert within(swap_rate, noise.swap_names * (1 - noise.missing_field / 3), n, sds=5)
    # Nicknames, among records of people who have one.
    has_nick = rec[rec["nickname"].notna() & (rec["first_name"].notna())]
    nick_rate = (has_nick["first_name"] == has_nick["nickname"]).mean()
    assert within(
        nick_rate, noise.nickname * (1 - noise.swap_names) * (1 - noise.typo / 2), len(has_nick), sds=5
    )
    # Email variants: the record's email differs from the person's own.
    emails = rec[rec["email"].notna() & (rec["email"] != PLACEHOLDERS["email"])]
    variant_rate = (emails["email"] != emails["email_true"]).mean()
    # Kind 3 (another provider) keeps the address 1 time in 5: 1/5 of 1/5 of variants.
    assert within(variant_rate, noise.email_variant * (1 - 0.04), len(emails))


def test_names_have_a_long_tail_and_every_mailbox_one_owner(tiny: Tiny) -> None:
    people = tiny.people
    ordinary = people[~((people["first_name"] == "John") & (people["last_name"] == "Smith"))]
    n = len(ordinary)
    # Head names at their configured shares; every other surname is a tail compound.
    assert within(ordinary["first_name"].isin(FIRST_NAMES).mean(), FIRST_NAME_HEAD_SHARE, n)
    assert within(ordinary["last_name"].isin(LAST_NAMES).mean(), LAST_NAME_HEAD_SHARE, n)
    compounds = {p + s for p in SURNAME_PREFIXES for s in SURNAME_SUFFIXES}
    tail = ordinary.loc[~ordinary["last_name"].isin(LAST_NAMES), "last_name"]
    assert tail.isin(compounds).all()
    # So most people's full name is theirs alone (it was ~150 people per name before).
    full = ordinary["first_name"] + " " + ordinary["last_name"]
    assert (full.map(full.value_counts()) == 1).mean() > 0.8
    # A mailbox (gmail ignores dots) belongs to one person, or to one household.
    parts = people["email"].str.split("@", n=1, expand=True)
    mailbox = parts[0].str.replace(".", "", regex=False) + "@" + parts[1]
    owner = people["person_id"].where(~people["is_household"], -1 - people["person_id"] // 2)
    assert (owner.groupby(mailbox).nunique() == 1).all()
    households = people[people["is_household"]].groupby(people["person_id"] // 2)["email"]
    assert (households.nunique() == 1).all() and (households.size() == 2).any()


def test_call_centre_export_uses_its_own_columns_and_formats(tiny: Tiny) -> None:
    files = sorted(raw(tiny, "identity_records", "call_centre").glob("part-0*.csv"))
    header = files[0].read_text().splitlines()[0]
    assert (
        header
        == "CustRef,Forename,Surname,Email Address,Tel,DOB,Post Code,Address,Acct No,Created,Last Updated"
    )
    cc = csv_files(raw(tiny, "identity_records", "call_centre"))
    dob = cc["DOB"].dropna()
    dob = dob[dob != PLACEHOLDERS["date_of_birth"]]
    assert dob.str.fullmatch(r"\d{2}/\d{2}/\d{4}").all()
    # Quoted addresses survive with their commas and (for flats) line breaks.
    assert cc["Address"].str.contains(",").all()
    assert cc["Address"].str.contains("\n").any()


# ---------------------------------------------------------------- truth


def test_truth_is_complete_and_consistent(tiny: Tiny) -> None:
    truth = parquet(tiny.root / "truth" / "identity")
    people = parquet(tiny.root / "truth" / "people")
    assert sorted(people["person_id"]) == list(range(2_000))
    assert set(truth["person_id"]) == set(people["person_id"])
    records = identity_records(tiny)
    clean_keys = set(zip(records["source_system"], records["source_id"], strict=True))
    truth_keys = set(zip(truth["source_system"], truth["source_id"], strict=True))
    damaged = manifest(tiny, "identity_records")
    moved_out = set(
        damaged.loc[
            damaged["kind"].isin(
                ["malformed_json", "wrong_column_count", "unparseable_date", "bad_encoding"]
            ),
            "key",
        ]
    )
    renamed = set(damaged.loc[damaged["kind"].isin(["missing_key", "unknown_source_system"]), "key"])
    assert {k for k in truth_keys if k[1] not in moved_out | renamed} <= clean_keys
    assert {k for k in clean_keys if k[0] in ("web", "app", "call_centre")} <= truth_keys
    # Every clean purchase maps to a person, and purchase counts match the truth.
    tx = parquet(raw(tiny, "transactions"))
    tx = tx[~tx["transaction_id"].isin(set(manifest(tiny, "transactions")["key"]))]
    mapped = tx.merge(truth, on=["source_system", "source_id"], how="left")
    assert mapped["person_id"].notna().all()
    # Each purchase is one T id (damage may change its values or deliver it twice, never
    # drop it), so distinct T ids in the file equal the truth's purchase count.
    all_tx = parquet(raw(tiny, "transactions"))
    purchase_ids = all_tx.loc[all_tx["transaction_id"].str.startswith("T"), "transaction_id"]
    assert purchase_ids.nunique() == people["n_purchases"].sum()
    assert (all_tx["transaction_id"].str[0].isin(["T", "R"])).all()
    params = json.loads((tiny.root / "truth" / "parameters.json").read_text())
    assert {s["name"] for s in params["segments"]} == {s.name for s in SEGMENTS}
    assert params["noise"]["typo"] == tiny.cfg.generate.noise.typo
    assert params["end_date"] == "2026-10-31"


# ---------------------------------------------------------------- bad input


def test_manifest_covers_at_least_twelve_kinds(tiny: Tiny) -> None:
    m = manifest(tiny)
    assert m["kind"].nunique() >= 12, sorted(m["kind"].unique())
    assert m["key"].notna().all()


def test_transaction_damage_matches_the_manifest_row_for_row(tiny: Tiny) -> None:
    tx = parquet(raw(tiny, "transactions"))
    m = manifest(tiny, "transactions")
    keys = {kind: set(g["key"]) for kind, g in m.groupby("kind")}
    end = pd.Timestamp(date(2026, 10, 31)) + pd.Timedelta(days=1)
    checks = {
        "missing_key": tx["source_id"].isna(),
        "absurd_amount": tx["amount"] >= 1e8,
        "future_ts": tx["ts"] >= end,
        "pre_1970_ts": tx["ts"] < pd.Timestamp("1970-01-01"),
        "unknown_source_system": tx["source_system"] == UNKNOWN_SYSTEM,
        "orphan": tx["source_id"].fillna("").str.startswith(ORPHAN_PREFIX),
    }
    for kind, flagged in checks.items():
        assert set(tx.loc[flagged, "transaction_id"]) == keys[kind], kind
    # Negative amounts on purchases (T ids) are damage; the manifest may also hit refunds.
    negative = tx[tx["amount"] < 0]
    assert (
        set(negative.loc[negative["transaction_id"].str.startswith("T"), "transaction_id"])
        <= keys["negative_amount"]
    )
    assert keys["negative_amount"] <= set(negative["transaction_id"])
    exact = tx[tx.duplicated(keep=False)]
    assert set(exact["transaction_id"]) == keys["exact_duplicate"]
    assert (exact.groupby("transaction_id").size() == 2).all()
    same_id = tx[tx.duplicated("transaction_id", keep=False) & ~tx.duplicated(keep=False)]
    assert set(same_id["transaction_id"]) == keys["duplicate_id"]
    # Real refunds are marked (R ids) and are the only other negative amounts.
    negatives = tx[(tx["amount"] < 0) & ~tx["transaction_id"].isin(keys["negative_amount"])]
    assert negatives["transaction_id"].str.startswith("R").all()


def test_usage_and_identity_damage_match_the_manifest(tiny: Tiny) -> None:
    usage = parquet(raw(tiny, "product_usage"))
    m = manifest(tiny, "product_usage")
    key = usage["source_id"].astype(str) + "|" + usage["date"].astype(str)
    for kind, flagged in {
        "missing_key": usage["source_system"].isna(),
        "negative_value": usage["sessions"] < 0,
        "unknown_source_system": usage["source_system"] == UNKNOWN_SYSTEM,
    }.items():
        assert set(key[flagged]) == set(m.loc[m["kind"] == kind, "key"]), kind
    web = parquet(raw(tiny, "identity_records", "web"))
    mi = manifest(tiny, "identity_records")
    assert set(web.loc[web["source_system"].isna(), "source_id"]) == set(
        mi.loc[mi["kind"] == "missing_key", "key"]
    )
    dup = web[web.duplicated("source_id", keep=False)]
    assert set(dup["source_id"]) == set(mi.loc[mi["kind"] == "duplicate_id", "key"])


def test_bad_files_match_the_manifest(tiny: Tiny) -> None:
    # Support contacts: a second export with text in number and date fields, extra fields.
    m = manifest(tiny, "support_contacts")
    lines = raw(tiny, "support_contacts", "part-bad-00000.csv").read_text().splitlines()
    assert lines[0] == "contact_id,source_system,source_id,ts,channel,handle_minutes,resolved,cost"
    parsed = list(csv.reader(io.StringIO("\n".join(lines[1:]))))
    bad_kinds = {"unparseable_date", "unparseable_number", "wrong_column_count"}
    expected = m[m["kind"].isin(bad_kinds)].set_index("key")["kind"].to_dict()
    assert {row[0] for row in parsed} == set(expected)
    for row in parsed:
        kind = expected[row[0]]
        if kind == "wrong_column_count":
            assert len(row) == 9
        elif kind == "unparseable_date":
            with pytest.raises(ValueError):
                pd.Timestamp(row[3])
        else:
            with pytest.raises(ValueError):
                float(row[7])
    # Call centre: a Latin-1 file that is not valid UTF-8, and a file of broken rows.
    latin = raw(tiny, "identity_records", "call_centre", "part-bad-00001-latin1.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        latin.decode("utf-8")
    text = latin.decode("latin-1")
    mi = manifest(tiny, "identity_records")
    encoded = set(mi.loc[mi["kind"] == "bad_encoding", "key"])
    latin_rows = list(csv.reader(io.StringIO(text)))[1:]
    assert {row[0] for row in latin_rows} == encoded
    assert all(row[1] == "Zoë" for row in latin_rows)
    # JSON lines: truncated lines do not parse; unparseable numbers are text.
    mt = manifest(tiny, "marketing_touches")
    broken, text_cost = set(), set()
    for line in raw(tiny, "marketing_touches", "part-bad-00000.json").read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            broken.add(line[len('{"touch_id":"') :][:17])
        else:
            assert row["cost"] == "n/a"
            text_cost.add(row["touch_id"])
    assert broken == set(mt.loc[mt["kind"] == "malformed_json", "key"])
    assert text_cost == set(mt.loc[mt["kind"] == "unparseable_number", "key"])


def test_bad_input_is_off_by_default(spark: SparkSession, cfg: Config) -> None:
    assert cfg.generate.bad_input.enabled is False
    small = cfg.generate.model_copy(update={"n_people": 60, "partitions": 1})
    counts = write_world(spark, generate_world(spark, small, seed=3), small, seed=3)
    root = Path(small.output_dir)
    assert not (root / "truth" / "bad_input_manifest").exists()
    assert not list(root.glob("raw/**/part-bad-*"))
    assert counts["truth/people"] == 60
