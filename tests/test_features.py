"""Customer features against hand-computed values and an independent pandas computation
(tests/features_reference.py), on a hand-built world and on the tiny preset; leakage,
unmapped events, empty windows, snapshots, attributes and the stage end to end."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from custseg.config import FeaturesConfig, load_config
from custseg.events import mapped_orders
from custseg.features import (
    DEFAULT_WINDOWS,
    EventTables,
    FeatureSpec,
    build_customer_features,
    build_feature_snapshots,
    event_mapping_report,
    event_totals,
    month_end_snapshots,
)
from custseg.features.build import SnapshotPlan
from custseg.generate import GeneratedWorld
from custseg.pipeline import run_stage
from custseg.tables import TableStore

from .conftest import TEST_CONF, temp_overrides
from .features_reference import reference_features

D = date(2026, 6, 1)
TX = "transaction_id string, source_system string, source_id string, ts timestamp, amount double, discount double, cost double, product_category string, channel string"  # noqa: E501
SUPPORT = "contact_id string, source_system string, source_id string, ts timestamp, channel string, handle_minutes double, resolved boolean, cost double"  # noqa: E501
USAGE = "source_system string, source_id string, date date, sessions long, events long, active_minutes double, features_used int"  # noqa: E501
TOUCH = "touch_id string, source_system string, source_id string, ts timestamp, channel string, campaign string, cost double, funnel_stage string"  # noqa: E501
ATTRS = "source_system string, source_id string, plan string, region string, acquisition_cost double"
IMAP = "source_system string, source_id string, customer_id string"


def ts(s: str) -> datetime:
    return datetime.fromisoformat(s)


@dataclass
class Hand:
    tx: DataFrame
    support: DataFrame
    usage: DataFrame
    touches: DataFrame
    attributes: DataFrame
    imap: DataFrame


@pytest.fixture(scope="module")
def hand(spark: SparkSession) -> Hand:
    """Customer A (two records), B (touches only), C (events after D only), unmapped zz."""
    tx = spark.createDataFrame(
        [
            ("t1", "web", "a1", ts("2026-05-31 23:59:00"), 100.0, 10.0, 40.0, "books", "web"),  # day before D
            ("t2", "app", "a2", ts("2026-05-02 08:00:00"), 50.0, 0.0, 20.0, "games", "app"),  # exactly D-30
            ("t3", "web", "a1", ts("2026-05-01 10:00:00"), 20.0, 5.0, 8.0, "books", "app"),  # D-31
            ("R3", "web", "a1", ts("2026-05-20 10:00:00"), -20.0, 0.0, 0.0, "books", "app"),  # refund
            ("t4", "web", "a1", ts("2026-01-01 10:00:00"), 30.0, None, None, "games", "web"),
            ("t5", "web", "a1", ts("2026-06-01 00:00:00"), 999.0, 0.0, 1.0, "books", "web"),  # on D
            ("t6", "web", "c1", ts("2026-07-01 00:00:00"), 10.0, 0.0, 1.0, "books", "web"),  # after D
            ("t7", "web", "zz", ts("2026-05-01 00:00:00"), 10.0, 0.0, 1.0, "books", "web"),  # unmapped
        ],
        TX,
    )
    support = spark.createDataFrame(
        [
            ("s1", "web", "a1", ts("2026-05-15 09:00:00"), "phone", 10.0, True, 5.0),
            ("s2", "app", "a2", ts("2026-03-01 09:00:00"), "chat", 20.0, False, 8.0),
        ],
        SUPPORT,
    )
    usage = spark.createDataFrame(
        [
            ("web", "a1", date(2026, 5, 31), 2, 20, 15.0, 3),
            ("app", "a2", date(2026, 5, 31), 1, 5, 5.0, 4),  # same day, other record: one active day
            ("app", "a2", date(2026, 1, 10), 3, 30, 25.0, 2),
        ],
        USAGE,
    )
    touches = spark.createDataFrame(
        [
            ("m1", "web", "a1", ts("2026-04-01 12:00:00"), "search", "c", 1.5, "visit"),
            ("m2", "call_centre", "b1", ts("2026-05-10 12:00:00"), "webinar", "c", 2.0, "visit"),
            ("m3", None, None, ts("2026-05-10 12:00:00"), "search", "c", 1.0, "visit"),  # anonymous
        ],
        TOUCH,
    )
    attributes = spark.createDataFrame(
        [
            ("web", "a1", "pro", "north", 100.0),
            ("app", "a2", "basic", "north", None),  # plan tie: web wins
            ("call_centre", "b1", None, "south", 50.0),
        ],
        ATTRS,
    )
    imap = spark.createDataFrame(
        [("web", "a1", "A"), ("app", "a2", "A"), ("call_centre", "b1", "B"), ("web", "c1", "C")], IMAP
    )
    return Hand(tx, support, usage, touches, attributes, imap)


def hand_tables(h: Hand) -> dict[str, object]:
    """The hand world's tables and attribute lists, as keyword arguments of the builders."""
    return {
        "support": h.support,
        "usage": h.usage,
        "touches": h.touches,
        "attributes": h.attributes,
        "spec": FeatureSpec(
            categorical_attributes=("plan", "region"), numeric_attributes=("acquisition_cost",)
        ),
    }


def features_of(h: Hand, as_of: date | str = D, **kw: object) -> DataFrame:
    return build_customer_features(h.tx, h.imap, as_of=as_of, **hand_tables(h), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def hand_features(hand: Hand) -> DataFrame:
    return features_of(hand).cache()


def test_hand_computed_values(hand_features: DataFrame) -> None:
    rows = {r["customer_id"]: r.asDict() for r in hand_features.collect()}
    assert set(rows) == {"A", "B"}  # C has events only after D
    a, b = rows["A"], rows["B"]
    assert a["recency_days"] == 1  # purchase the day before as_of
    assert a["tenure_days"] == (D - date(2026, 1, 1)).days
    assert (a["orders_30d"], a["monetary_30d"]) == (2, 130.0)  # D-30 in, D-31 out, refund nets
    assert (a["orders_90d"], a["monetary_90d"]) == (3, 150.0)
    assert (a["orders_lifetime"], a["purchase_days"], a["is_repeat_buyer"]) == (4, 4, True)
    assert a["avg_order_value"] == pytest.approx(200.0 / 4)
    assert a["gross_sales_30d"] == 160.0 and a["discount_share_30d"] == pytest.approx(10 / 160)
    assert a["gross_margin_30d"] == 130.0 - 60.0
    assert a["mean_gap_days"] == pytest.approx(150 / 3)  # Jan 1 -> May 1 -> May 2 -> May 31
    assert a["std_gap_days"] == pytest.approx(pd.Series([120.0, 1.0, 29.0]).std())
    # two orders each way: ties go to the alphabetically first value
    assert a["dominant_channel"] == "app" and a["dominant_product_category"] == "books"
    assert (a["active_days_30d"], a["sessions_30d"], a["max_daily_features_used_30d"]) == (1, 3, 4)
    assert (a["active_days_180d"], a["sessions_180d"]) == (2, 6)
    assert (a["support_contacts_30d"], a["support_cost_90d"], a["support_cost_180d"]) == (1, 5.0, 13.0)
    assert a["support_resolution_rate"] == 0.5
    assert a["touch_cost_90d"] == 1.5 and a["cost_to_serve_90d"] == 6.5
    assert a["profit_90d"] == pytest.approx(150.0 - 68.0 - 6.5)
    assert a["sessions_trend"] == pytest.approx(math.log1p(3) - math.log1p(3))
    assert (a["plan"], a["region"], a["acquisition_cost"]) == ("pro", "north", 100.0)
    # own activity ends with the order and the usage of May 31; the span starts at Jan 1's order
    assert (a["last_active_date"], a["days_since_last_active"]) == (date(2026, 5, 31), 1)
    assert a["active_span_days"] == (date(2026, 5, 31) - date(2026, 1, 1)).days + 1
    # B: touched, never bought: zeros where zero is the truth, null where undefined
    assert b["orders_1095d"] == 0 and b["monetary_1095d"] == 0.0 and b["active_days_1095d"] == 0
    assert b["recency_days"] is None and b["avg_order_value"] is None and b["is_repeat_buyer"] is False
    assert b["support_resolution_rate"] is None and b["touch_cost_30d"] == 2.0
    assert b["last_active_date"] is None and b["active_span_days"] is None  # touches are not activity
    assert (b["plan"], b["region"], b["acquisition_cost"]) == (None, "south", 50.0)


def test_a_free_order_is_an_order(spark: SparkSession, hand: Hand) -> None:
    """A fully discounted purchase (amount 0) is an order: it counts in orders and sets
    recency, in features and in the orders CLV fits; revenue stays what was paid. It
    was left out as 'not a positive amount' before."""
    tx = spark.createDataFrame(
        [
            ("f1", "web", "f1", ts("2026-03-01 10:00:00"), 30.0, 0.0, 10.0, "books", "web"),
            ("f2", "web", "f1", ts("2026-05-30 10:00:00"), 0.0, 25.0, 9.0, "games", "app"),  # free
            ("f3", "web", "f1", ts("2026-05-30 11:00:00"), -30.0, 0.0, 0.0, "books", "web"),  # refund
        ],
        TX,
    )
    imap = spark.createDataFrame([("web", "f1", "F")], IMAP)
    row = build_customer_features(tx, imap, as_of=D).collect()[0]
    assert (row["orders_lifetime"], row["orders_30d"], row["recency_days"]) == (2, 1, 2)
    assert row["monetary_1095d"] == 0.0  # 30 paid, 0 for the free order, 30 refunded
    assert (row["gross_sales_30d"], row["discount_share_30d"]) == (25.0, 1.0)
    orders = mapped_orders(tx, imap).orderBy("day").collect()
    assert [(str(r["day"]), r["amount"]) for r in orders] == [("2026-03-01", 30.0), ("2026-05-30", 0.0)]


def _approx_equal(spark: SparkSession, ours: DataFrame, ref: pd.DataFrame) -> None:
    """Ours equals the pandas reference (same columns; floats to 1e-6), via chispa."""
    cols = ours.columns
    assert sorted(ref.columns) == sorted(cols), set(ref.columns) ^ set(cols)
    casts = {"int": int, "bigint": int, "double": float, "boolean": bool}
    kinds = [casts.get(f.dataType.simpleString()) for f in ours.schema.fields]
    rows = [
        tuple(None if pd.isna(v) else (k(v) if k else v) for v, k in zip(row, kinds, strict=True))
        for row in ref[cols].itertuples(index=False)
    ]
    expected = spark.createDataFrame(rows, schema=ours.schema)
    assert_approx_df_equality(
        ours, expected, precision=1e-6, ignore_nullable=True, ignore_row_order=True, allow_nan_equality=True
    )


def test_hand_built_against_pandas(spark: SparkSession, hand: Hand, hand_features: DataFrame) -> None:
    ref = reference_features(
        D,
        hand.imap.toPandas(),
        hand.tx.toPandas(),
        hand.support.toPandas(),
        hand.usage.toPandas(),
        hand.touches.toPandas(),
        hand.attributes.toPandas(),
        categorical=["plan", "region"],
        numeric=["acquisition_cost"],
    )
    _approx_equal(spark, hand_features, ref)


def test_mapping_report_counts_unmapped_and_anonymous(hand: Hand) -> None:
    totals = event_totals(
        EventTables(hand.tx, hand.support, hand.usage, hand.touches), hand.imap, snapshot_dates=[D]
    )
    report = {r["table"]: r.asDict() for r in event_mapping_report(totals).collect()}
    assert report["transactions"] == {
        "table": "transactions",
        "events": 8,
        "mapped": 7,
        "unmapped": 1,
        "anonymous": 0,
    }
    assert report["marketing_touches"]["anonymous"] == 1 and report["marketing_touches"]["unmapped"] == 0
    assert report["product_usage"]["events"] == 3 and report["support_contacts"]["mapped"] == 2


def test_no_leakage_from_events_on_or_after_the_snapshot(
    spark: SparkSession, hand: Hand, hand_features: DataFrame
) -> None:
    later = spark.createDataFrame(
        [
            ("x1", "web", "a1", ts("2026-06-01 00:00:00"), 500.0, 1.0, 1.0, "toys", "store"),
            ("x2", "call_centre", "b1", ts("2026-06-02 00:00:00"), 70.0, 1.0, 1.0, "toys", "store"),
        ],
        TX,
    )
    more = Hand(
        hand.tx.unionByName(later),
        *[getattr(hand, f) for f in ("support", "usage", "touches", "attributes", "imap")],
    )
    assert_approx_df_equality(
        hand_features, features_of(more, as_of="2026-06-01"), precision=1e-9, ignore_row_order=True
    )


def test_argument_errors(hand: Hand) -> None:
    with pytest.raises(ValueError, match="as_of must be an ISO date"):
        features_of(hand, as_of="01/06/2026")
    with pytest.raises(ValueError, match=r"transactions: missing column\(s\) \['amount'\]"):
        build_customer_features(hand.tx.drop("amount"), hand.imap, as_of=D)
    with pytest.raises(ValueError, match="identity_map: missing column"):
        build_customer_features(hand.tx, hand.imap.drop("customer_id"), as_of=D)
    with pytest.raises(ValueError, match="windows_days must be distinct positive"):
        build_customer_features(hand.tx, hand.imap, as_of=D, spec=FeatureSpec(windows_days=(30, 30)))


def test_month_end_snapshots() -> None:
    assert month_end_snapshots("2026-11-01", 3) == [
        date(2026, 8, 1),
        date(2026, 9, 1),
        date(2026, 10, 1),
        date(2026, 11, 1),
    ]
    assert month_end_snapshots(date(2026, 2, 15), 2) == [
        date(2026, 1, 1),
        date(2026, 2, 1),
        date(2026, 2, 15),
    ]
    assert month_end_snapshots("2026-01-01", 1) == [date(2025, 12, 1), date(2026, 1, 1)]


def test_per_customer_steps_add_no_shuffle_by_snapshot(
    spark: SparkSession, hand: Hand, capsys: pytest.CaptureFixture[str]
) -> None:
    """The event totals are cached hash-partitioned by customer, so the windows, the spine,
    the lifetime purchases, the attributes and their joins on (customer_id, snapshot_date)
    shuffle nothing by snapshot (the joins of 13 snapshots' frames were the costly
    shuffles); the session's adaptive setting is as it was."""
    before = spark.conf.get("spark.sql.adaptive.enabled")
    features = build_feature_snapshots(
        hand.tx,
        hand.imap,
        snapshot_dates=[D - timedelta(days=31), D],
        **hand_tables(hand),  # type: ignore[arg-type]
    )
    assert spark.conf.get("spark.sql.adaptive.enabled") == before
    capsys.readouterr()
    features.explain()
    plan = capsys.readouterr().out
    exchanges = [line for line in plan.splitlines() if "Exchange hashpartitioning" in line]
    assert any("REPARTITION_BY_COL" in line for line in exchanges)  # the totals' own shuffle
    assert not [line for line in exchanges if "snapshot_date" in line]
    assert features.count() == 3  # A at both snapshots, B at D: the plan still runs
    spark.catalog.clearCache()


def test_segments_hold_dense_usage_exactly(spark: SparkSession) -> None:
    """Usage on every day for 3.5 years by two records of one customer (so every day is
    counted once though it has two rows), and on every third day by another: active days
    and sessions per window at 13 month-end snapshots equal a direct count per window.
    Segments are at most 63 days (a day bit each) and every ring bound is a cut."""
    snapshots = month_end_snapshots("2026-11-01", 12)
    plan = SnapshotPlan.of(snapshots, DEFAULT_WINDOWS, 90)
    cuts = plan.cuts
    assert all(0 < (b - a).days <= 63 for a, b in zip(cuts, cuts[1:], strict=False))
    assert {d - timedelta(days=b) for d in snapshots for b in (0, *plan.bounds)} <= set(cuts)
    first = date(2023, 5, 1)
    days = [first + timedelta(days=i) for i in range(1300)]
    rows = [("web", "a", d, 1, 1, 1.0, 1) for d in days] + [("app", "b", d, 2, 1, 1.0, 1) for d in days]
    rows += [("web", "c", d, 1, 1, 1.0, 1) for d in days[::3]]
    usage = spark.createDataFrame(rows, USAGE)
    imap = spark.createDataFrame([("web", "a", "A"), ("app", "b", "A"), ("web", "c", "C")], IMAP)
    tx = spark.createDataFrame([], TX)
    ours = build_feature_snapshots(tx, imap, usage=usage, snapshot_dates=snapshots).collect()
    assert len(ours) == 2 * len(snapshots)
    for row in ours:
        d, every = row["snapshot_date"], 1 if row["customer_id"] == "A" else 3
        for w in DEFAULT_WINDOWS:
            in_window = [x for x in days[::every] if d - timedelta(days=w) <= x < d]
            assert row[f"active_days_{w}d"] == len(in_window), (row["customer_id"], d, w)
            assert row[f"sessions_{w}d"] == len(in_window) * (3 if every == 1 else 1), (d, w)


# --- the tiny preset ------------------------------------------------------------------


@dataclass
class TinyEvents:
    tables: dict[str, DataFrame]
    imap: DataFrame
    pandas: dict[str, pd.DataFrame]


@pytest.fixture(scope="module")
def tiny_events(spark: SparkSession, tiny_world: GeneratedWorld) -> TinyEvents:
    world = tiny_world
    tables = world.customer_tables()  # checkpointed once for the suite
    # The truth as identity map, with ~3 % of records left out so some events are unmapped.
    imap = (
        world.identity_records.select(
            "source_system", "source_id", F.col("person_id").cast("string").alias("customer_id")
        )
        .where(F.abs(F.xxhash64("source_id")) % 100 >= 3)
        .checkpoint()
    )
    pandas = {k: v.toPandas() for k, v in tables.items()}
    pandas["identity_map"] = imap.toPandas()
    return TinyEvents(tables, imap, pandas)


ATTR_CAT = FeaturesConfig().categorical_attributes
ATTR_NUM = FeaturesConfig().numeric_attributes


def test_tiny_preset_snapshots_against_pandas(spark: SparkSession, tiny_events: TinyEvents) -> None:
    t, p = tiny_events.tables, tiny_events.pandas
    dates = [date(2025, 2, 1), date(2026, 11, 1)]
    ours = build_feature_snapshots(
        t["transactions"],
        tiny_events.imap,
        support=t["support_contacts"],
        usage=t["product_usage"],
        touches=t["marketing_touches"],
        attributes=t["customer_attributes"],
        snapshot_dates=dates,
        spec=FeatureSpec(categorical_attributes=tuple(ATTR_CAT), numeric_attributes=tuple(ATTR_NUM)),
    ).cache()
    for d in dates:
        ref = reference_features(
            d,
            p["identity_map"],
            p["transactions"],
            p["support_contacts"],
            p["product_usage"],
            p["marketing_touches"],
            p["customer_attributes"],
            categorical=ATTR_CAT,
            numeric=ATTR_NUM,
        )
        assert len(ref) > 500
        _approx_equal(spark, ours.where(F.col("snapshot_date") == d).drop("snapshot_date"), ref)
    ours.unpersist()


def test_stage_writes_snapshots_report_and_metrics(
    spark: SparkSession, tiny_events: TinyEvents, tmp_path: Path
) -> None:
    cfg = load_config(
        TEST_CONF,
        overrides=[*temp_overrides(tmp_path), "features.as_of=2026-11-01", "features.snapshot_months=3"],
    )
    store = TableStore(spark, cfg.storage.warehouse, run_id="seed")
    for name, df in tiny_events.tables.items():
        store.write(df, f"bronze.{name}")
    store.write(tiny_events.imap, "silver.identity_map")
    run = run_stage(cfg, "features", run_id="features-test")
    store = TableStore(spark, cfg.storage.warehouse, run_id="check")
    gold = store.read("gold.customer_features")
    dates = sorted(r[0] for r in gold.select("snapshot_date").distinct().collect())
    assert dates == [date(2026, 8, 1), date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)]
    assert not {"email", "first_name", "last_name", "phone", "address", "date_of_birth"} & set(gold.columns)
    p = tiny_events.pandas
    keys = p["identity_map"][["source_system", "source_id"]].drop_duplicates()
    report = {r["table"]: r.asDict() for r in store.read("gold.feature_event_mapping").collect()}
    for name in ("transactions", "support_contacts", "product_usage", "marketing_touches"):
        events = p[name]
        known = (
            events.merge(keys, on=["source_system", "source_id"], how="left", indicator=True)["_merge"]
            == "both"
        )
        anonymous = events["source_id"].isna()
        assert report[name]["events"] == len(events)
        assert report[name]["mapped"] == int(known.sum())
        assert report[name]["anonymous"] == int(anonymous.sum())
        assert report[name]["unmapped"] == int((~known & ~anonymous).sum()) > 0
        assert run.metrics[f"{name}.unmapped"] == report[name]["unmapped"]
    direct = build_feature_snapshots(
        tiny_events.tables["transactions"],
        tiny_events.imap,
        support=tiny_events.tables["support_contacts"],
        usage=tiny_events.tables["product_usage"],
        touches=tiny_events.tables["marketing_touches"],
        attributes=tiny_events.tables["customer_attributes"],
        snapshot_dates=["2026-10-01"],
        spec=FeatureSpec.of(cfg.features),
    )
    written = gold.where(F.col("snapshot_date") == date(2026, 10, 1)).select(*direct.columns)
    assert_approx_df_equality(written, direct, precision=1e-9, ignore_row_order=True, ignore_nullable=True)
    assert (
        run.metrics["customers_at_as_of"] == gold.where(F.col("snapshot_date") == date(2026, 11, 1)).count()
    )
