"""Segment migration and channel economics against hand-computed rows and an independent
pandas computation of the same definitions (merges and group counts written here)."""

from __future__ import annotations

import math
from datetime import date, datetime

import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession

from custseg.insights.channels import channel_economics
from custseg.insights.migration import segment_flows, segment_transitions

SNAPSHOTS = "customer_id string, snapshot_date date, segment_name string, is_outlier boolean"
TOUCH = "touch_id string, source_system string, source_id string, ts timestamp, channel string, campaign string, cost double, funnel_stage string"  # noqa: E501
IMAP = "source_system string, source_id string, customer_id string"
CUSTOMERS = "customer_id string, segment_name string, is_outlier boolean, acquisition_channel string, acquisition_cost double, clv double"  # noqa: E501

JAN, FEB, MAR = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)
OUT = "Outliers"
STAGES = ("visit", "signup", "trial", "paid")
END = date(2026, 6, 1)

# c3 leaves after January, c7 arrives in February and c8 in March; c5 and c6 pass through
# the outlier segment.
MEMBERS = {
    JAN: {"c1": "A", "c2": "A", "c3": "A", "c4": "B", "c5": "B", "c6": OUT},
    FEB: {"c1": "A", "c2": "B", "c4": "B", "c5": OUT, "c6": "A", "c7": "A"},
    MAR: {"c1": "B", "c2": "B", "c4": "B", "c5": "B", "c6": "A", "c7": "A", "c8": "B"},
}


def ts(s: str) -> datetime:
    return datetime.fromisoformat(s)


@pytest.fixture(scope="module")
def snapshots(spark: SparkSession) -> DataFrame:
    rows = [(c, d, s, s == OUT) for d, members in MEMBERS.items() for c, s in members.items()]
    return spark.createDataFrame(rows, SNAPSHOTS)


def _sorted(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return df.sort_values(keys).reset_index(drop=True)


# ---------------------------------------------------------------- migration


def reference_transitions() -> pd.DataFrame:
    """Transitions by pandas outer merges of each pair of snapshot frames."""
    frames = {
        d: pd.DataFrame({"customer_id": list(m), "segment": list(m.values())}) for d, m in MEMBERS.items()
    }
    dates = sorted(frames)
    pairs = [("consecutive", a, b) for a, b in zip(dates, dates[1:], strict=False)]
    pairs.append(("first_to_last", dates[0], dates[-1]))
    out = []
    for period, a, b in pairs:
        m = frames[a].merge(
            frames[b], on="customer_id", how="outer", suffixes=("_from", "_to"), indicator=True
        )
        m["from_segment"] = m["segment_from"].where(m["_merge"] != "right_only", "(new)")
        m["to_segment"] = m["segment_to"].where(m["_merge"] != "left_only", "(gone)")
        cells = m.groupby(["from_segment", "to_segment"]).size().rename("customers").reset_index()
        cells["row_share"] = cells["customers"] / cells.groupby("from_segment")["customers"].transform("sum")
        out.append(cells.assign(period=period, from_snapshot=a, to_snapshot=b))
    cols = ["period", "from_snapshot", "to_snapshot", "from_segment", "to_segment", "customers", "row_share"]
    return pd.concat(out)[cols]


def test_segment_transitions_match_pandas_and_hand_counts(snapshots: DataFrame) -> None:
    got = segment_transitions(snapshots)
    assert got.columns == [
        "period",
        "from_snapshot",
        "to_snapshot",
        "from_segment",
        "to_segment",
        "customers",
        "row_share",
    ]
    assert dict(got.dtypes)["customers"] == "bigint"
    keys = ["period", "from_snapshot", "to_snapshot", "from_segment", "to_segment"]
    pdf = _sorted(got.toPandas(), keys)
    pd.testing.assert_frame_equal(pdf, _sorted(reference_transitions(), keys), check_dtype=False)

    cells = {
        (r.period, r.from_snapshot, r.from_segment, r.to_segment): (r.customers, r.row_share)
        for r in pdf.itertuples()
    }
    hand = {
        ("consecutive", JAN, "A", "A"): (1, 1 / 3),
        ("consecutive", JAN, "A", "B"): (1, 1 / 3),
        ("consecutive", JAN, "A", "(gone)"): (1, 1 / 3),
        ("consecutive", JAN, "B", "B"): (1, 0.5),
        ("consecutive", JAN, "B", OUT): (1, 0.5),
        ("consecutive", JAN, OUT, "A"): (1, 1.0),
        ("consecutive", JAN, "(new)", "A"): (1, 1.0),
        ("consecutive", FEB, "A", "A"): (2, 2 / 3),
        ("consecutive", FEB, "A", "B"): (1, 1 / 3),
        ("consecutive", FEB, "B", "B"): (2, 1.0),
        ("consecutive", FEB, OUT, "B"): (1, 1.0),
        ("consecutive", FEB, "(new)", "B"): (1, 1.0),
        ("first_to_last", JAN, "A", "B"): (2, 2 / 3),
        ("first_to_last", JAN, "A", "(gone)"): (1, 1 / 3),
        ("first_to_last", JAN, "B", "B"): (2, 1.0),
        ("first_to_last", JAN, OUT, "A"): (1, 1.0),
        ("first_to_last", JAN, "(new)", "A"): (1, 0.5),
        ("first_to_last", JAN, "(new)", "B"): (1, 0.5),
    }
    assert cells.keys() == hand.keys()  # zero cells are not written
    for key, (n, share) in hand.items():
        assert cells[key][0] == n and cells[key][1] == pytest.approx(share), key
    assert set(pdf.loc[pdf.period == "first_to_last", "to_snapshot"]) == {MAR}
    shares = pdf.groupby(["period", "from_snapshot", "from_segment"])["row_share"].sum()
    assert shares.to_numpy() == pytest.approx([1.0] * len(shares))


def test_segment_flows_hand_counts_and_identity(snapshots: DataFrame) -> None:
    got = segment_flows(snapshots)
    measures = ["customers_start", "customers_end", "inflow", "outflow", "new_customers", "net_change"]
    assert got.columns == ["from_snapshot", "to_snapshot", "segment_name", *measures]
    assert {t for c, t in got.dtypes if c in measures} == {"bigint"}
    pdf = got.toPandas()
    rows = {
        (r.from_snapshot, r.segment_name): tuple(int(getattr(r, m)) for m in measures)
        for r in pdf.itertuples()
    }
    assert rows == {
        # start, end, inflow, outflow, new, net
        (JAN, "A"): (3, 3, 2, 2, 1, 0),
        (JAN, "B"): (2, 2, 1, 1, 0, 0),
        (JAN, OUT): (1, 1, 1, 1, 0, 0),
        (FEB, "A"): (3, 2, 0, 1, 0, -1),
        (FEB, "B"): (2, 5, 3, 0, 1, 3),
        (FEB, OUT): (1, 0, 0, 1, 0, -1),
    }
    assert set(zip(pdf.from_snapshot, pdf.to_snapshot, strict=True)) == {(JAN, FEB), (FEB, MAR)}
    assert (pdf.customers_end - pdf.customers_start == pdf.inflow - pdf.outflow).all()
    assert (pdf.net_change == pdf.inflow - pdf.outflow).all()
    # Independent check of start/end against the memberships themselves.
    for r in pdf.itertuples():
        assert r.customers_start == sum(s == r.segment_name for s in MEMBERS[r.from_snapshot].values())
        assert r.customers_end == sum(s == r.segment_name for s in MEMBERS[r.to_snapshot].values())


def test_migration_names_missing_columns(spark: SparkSession) -> None:
    bad = spark.createDataFrame([("c1", JAN)], "customer_id string, snapshot_date date")
    with pytest.raises(ValueError, match=r"snapshots: missing column\(s\) \['segment_name'\]"):
        segment_transitions(bad)
    with pytest.raises(ValueError, match=r"snapshots: missing column\(s\) \['segment_name'\]"):
        segment_flows(bad)


# ---------------------------------------------------------------- channels

TOUCH_ROWS = [
    ("t01", "web", "w1", "2026-05-01 10:00:00", "search", "k", 1.0, "visit"),
    ("t02", "web", "w1", "2026-05-02 10:00:00", "search", "k", 1.0, "visit"),  # same customer again
    ("t03", "app", "a1", "2026-05-03 10:00:00", "search", "k", 2.0, "signup"),  # C1's other record
    ("t04", "web", "w1", "2026-05-04 10:00:00", "search", "k", 5.0, "paid"),
    ("t05", "web", "w2", "2026-05-01 10:00:00", "search", "k", 1.0, "visit"),
    ("t06", "web", "w2", "2026-05-02 10:00:00", "search", "k", 2.0, "signup"),
    ("t07", "app", "a3", "2026-05-01 10:00:00", "search", "k", 1.0, "visit"),
    ("t08", "app", "a3", "2026-05-02 10:00:00", "search", "k", 3.0, "trial"),
    ("t09", "web", "w4", "2026-05-01 10:00:00", "search", "k", 1.0, "visit"),  # outlier
    ("t10", "web", "w4", "2026-05-02 10:00:00", "search", "k", 4.0, "paid"),
    ("t11", None, None, "2026-05-01 10:00:00", "search", "k", 0.5, "visit"),  # anonymous
    ("t12", None, None, "2026-05-02 10:00:00", "search", "k", 0.5, "signup"),
    ("t13", "web", "zz", "2026-05-01 10:00:00", "search", "k", 1.0, "visit"),  # unmapped
    ("t14", "web", "w5", "2026-05-01 10:00:00", "search", "k", 1.0, "visit"),  # mapped, no segment
    ("t15", "web", "w1", "2026-05-01 10:00:00", "social", "s", 2.0, "visit"),
    ("t16", "web", "w2", "2026-05-01 10:00:00", "social", "s", None, "trial"),
    ("t17", "web", "w2", "2026-05-02 10:00:00", "social", "s", 6.0, "paid"),
    ("t18", "web", "w1", "2026-06-01 00:00:00", "search", "k", 50.0, "paid"),  # on end: ignored
    ("t19", None, None, "2026-05-01 10:00:00", "email", "e", 0.2, "visit"),  # anonymous-only channel
    ("t20", "web", "w1", "2026-05-05 10:00:00", "search", "k", 1.0, None),  # no stage
    ("t21", "web", "w2", "2026-05-05 10:00:00", None, "k", 1.0, "visit"),  # no channel
]
IMAP_ROWS = [
    ("web", "w1", "C1"),
    ("app", "a1", "C1"),
    ("web", "w2", "C2"),
    ("app", "a3", "C3"),
    ("web", "w4", "C4"),
    ("web", "w5", "C5"),
]
CUSTOMER_ROWS = [
    ("C1", "A", False, "search", 100.0, 500.0),
    ("C2", "A", False, "social", 50.0, None),
    ("C3", "B", False, "search", 80.0, 200.0),
    ("C4", OUT, True, "search", 10.0, 9000.0),
    ("C6", "B", False, "tv", 300.0, 600.0),  # tv is never touched
    ("C7", "A", False, "search", 120.0, 300.0),
]


@pytest.fixture(scope="module")
def channel_inputs(spark: SparkSession) -> tuple[DataFrame, DataFrame, DataFrame]:
    touches = spark.createDataFrame([(*r[:3], ts(r[3]), *r[4:]) for r in TOUCH_ROWS], TOUCH)
    return (
        touches,
        spark.createDataFrame(IMAP_ROWS, IMAP),
        spark.createDataFrame(CUSTOMER_ROWS, CUSTOMERS),
    )


def reference_channels() -> pd.DataFrame:
    """The same definitions by pandas merges and group counts."""
    t = pd.DataFrame(TOUCH_ROWS, columns=TOUCH_COLUMNS)
    t["ts"] = pd.to_datetime(t["ts"])
    t = t[t["ts"] < pd.Timestamp(END)].copy()
    t["channel"] = t["channel"].fillna("(unknown)")
    imap = pd.DataFrame(IMAP_ROWS, columns=["source_system", "source_id", "customer_id"])
    cust = pd.DataFrame(CUSTOMER_ROWS, columns=CUSTOMER_COLUMNS)
    t = t.merge(imap, on=["source_system", "source_id"], how="left").merge(
        cust[["customer_id", "segment_name", "is_outlier"]], on="customer_id", how="left"
    )
    t.loc[t["source_id"].isna(), "customer_id"] = None
    t["segment"] = t["segment_name"].fillna("(unsegmented)")
    t.loc[t["customer_id"].isna(), "segment"] = "(unmapped)"
    t.loc[t["source_id"].isna(), "segment"] = "(anonymous)"
    t["business"] = t["is_outlier"].eq(False)
    t = pd.concat([t, t[t["business"]].assign(segment="(all)")])

    def touch_stats(g: pd.DataFrame) -> pd.Series:
        stats = {"touches": len(g), "marketing_cost": g["cost"].fillna(0).sum()}
        for s in STAGES:
            stats[f"touches_{s}"] = int((g["funnel_stage"] == s).sum())
            stats[f"reached_{s}"] = g.loc[g["funnel_stage"] == s, "customer_id"].nunique()
        return pd.Series(stats)

    touched = t.groupby(["channel", "segment"]).apply(touch_stats, include_groups=False)
    cust["channel"] = cust["acquisition_channel"].fillna("(unknown)")
    acq_rows = pd.concat(
        [cust.assign(segment=cust["segment_name"]), cust[~cust["is_outlier"]].assign(segment="(all)")]
    )
    acquired = acq_rows.groupby(["channel", "segment"]).agg(
        acquired_customers=("customer_id", "size"),
        mean_acquisition_cost=("acquisition_cost", "mean"),
        mean_clv_acquired=("clv", "mean"),
    )
    channels = set(t["channel"]) | set(cust["channel"])
    index = touched.index.union(acquired.index).union(
        pd.MultiIndex.from_tuples([(c, "(all)") for c in channels])
    )
    index = index.set_names(["channel", "segment"])
    ref = touched.reindex(index).join(acquired.reindex(index))
    count_cols = [
        "touches",
        "marketing_cost",
        *[f"touches_{s}" for s in STAGES],
        *[f"reached_{s}" for s in STAGES],
    ]
    ref[count_cols] = ref[count_cols].fillna(0)
    ref["acquired_customers"] = ref["acquired_customers"].fillna(0)
    no_customer = ref.index.get_level_values("segment").isin(["(anonymous)", "(unmapped)"])
    for s in STAGES:
        ref.loc[no_customer, f"reached_{s}"] = math.nan

    def div(a: pd.Series, b: pd.Series) -> pd.Series:
        return (a / b).where(b > 0)

    ref["cost_per_touch"] = div(ref["marketing_cost"], ref["touches"])
    for a, b in zip(STAGES, STAGES[1:], strict=False):
        ref[f"conversion_{a}_to_{b}"] = div(ref[f"reached_{b}"], ref[f"reached_{a}"])
        ref[f"dropoff_{a}_to_{b}"] = 1 - ref[f"conversion_{a}_to_{b}"]
    ref["cost_per_paid"] = div(ref["marketing_cost"], ref["reached_paid"])
    ref["clv_to_acquisition_cost"] = div(ref["mean_clv_acquired"], ref["mean_acquisition_cost"])
    ref = ref.reset_index().rename(columns={"segment": "segment_name"})
    return ref[ECONOMICS_COLUMNS]


TOUCH_COLUMNS = [
    "touch_id",
    "source_system",
    "source_id",
    "ts",
    "channel",
    "campaign",
    "cost",
    "funnel_stage",
]
CUSTOMER_COLUMNS = [
    "customer_id",
    "segment_name",
    "is_outlier",
    "acquisition_channel",
    "acquisition_cost",
    "clv",
]
ECONOMICS_COLUMNS = [
    "channel",
    "segment_name",
    "touches",
    "marketing_cost",
    "cost_per_touch",
    *[f"touches_{s}" for s in STAGES],
    *[f"reached_{s}" for s in STAGES],
    *[
        f"{kind}_{a}_to_{b}"
        for a, b in zip(STAGES, STAGES[1:], strict=False)
        for kind in ("conversion", "dropoff")
    ],
    "cost_per_paid",
    "acquired_customers",
    "mean_acquisition_cost",
    "mean_clv_acquired",
    "clv_to_acquisition_cost",
]


def test_channel_economics_matches_pandas_and_hand_values(
    channel_inputs: tuple[DataFrame, DataFrame, DataFrame],
) -> None:
    touches, imap, customers = channel_inputs
    got = channel_economics(touches, identity_map=imap, customers=customers, end=END)
    assert got.columns == ECONOMICS_COLUMNS
    types = dict(got.dtypes)
    assert {types[c] for c in ("touches", "reached_paid", "touches_visit", "acquired_customers")} == {
        "bigint"
    }
    keys = ["channel", "segment_name"]
    pdf = _sorted(got.toPandas(), keys)
    pd.testing.assert_frame_equal(pdf, _sorted(reference_channels(), keys), check_dtype=False)

    rows = pdf.set_index(keys)
    assert set(rows.index) == {
        ("search", "A"),
        ("search", "B"),
        ("search", OUT),
        ("search", "(anonymous)"),
        ("search", "(unmapped)"),
        ("search", "(unsegmented)"),
        ("search", "(all)"),
        ("social", "A"),
        ("social", "(all)"),
        ("email", "(anonymous)"),
        ("email", "(all)"),
        ("tv", "B"),
        ("tv", "(all)"),
        ("(unknown)", "A"),
        ("(unknown)", "(all)"),
    }
    a = rows.loc[("search", "A")]
    assert (a.touches, a.marketing_cost, a.cost_per_touch) == (7, 13.0, pytest.approx(13 / 7))
    assert [a[f"touches_{s}"] for s in STAGES] == [3, 2, 0, 1]
    assert [a[f"reached_{s}"] for s in STAGES] == [2, 2, 0, 1]  # C1 twice via two records counts once
    assert (a.conversion_visit_to_signup, a.conversion_signup_to_trial) == (1.0, 0.0)
    assert math.isnan(a.conversion_trial_to_paid) and a.dropoff_signup_to_trial == 1.0
    assert a.cost_per_paid == 13.0
    assert (a.acquired_customers, a.mean_acquisition_cost, a.mean_clv_acquired) == (2, 110.0, 400.0)
    assert a.clv_to_acquisition_cost == pytest.approx(400 / 110)

    every = rows.loc[("search", "(all)")]  # A and B: no outlier, anonymous, unmapped or unsegmented
    assert (every.touches, every.marketing_cost) == (9, 17.0)
    assert [every[f"reached_{s}"] for s in STAGES] == [3, 2, 1, 1]
    assert every.conversion_visit_to_signup == pytest.approx(2 / 3)
    assert (every.acquired_customers, every.mean_acquisition_cost) == (3, 100.0)
    assert every.mean_clv_acquired == pytest.approx(1000 / 3)

    outlier = rows.loc[("search", OUT)]
    assert (outlier.touches, outlier.reached_paid, outlier.cost_per_paid, outlier.acquired_customers) == (
        2,
        1,
        5.0,
        1,
    )

    anon = rows.loc[("search", "(anonymous)")]
    assert (anon.touches, anon.marketing_cost, anon.touches_visit, anon.touches_signup) == (2, 1.0, 1, 1)
    assert all(math.isnan(anon[f"reached_{s}"]) for s in STAGES)
    assert math.isnan(anon.conversion_visit_to_signup) and math.isnan(anon.cost_per_paid)
    assert anon.acquired_customers == 0
    unmapped = rows.loc[("search", "(unmapped)")]
    assert (unmapped.touches, unmapped.marketing_cost, unmapped.touches_visit) == (1, 1.0, 1)
    assert math.isnan(unmapped.reached_visit)
    assert rows.loc[("search", "(unsegmented)")].reached_visit == 1

    email_all = rows.loc[("email", "(all)")]  # anonymous touches only: not in (all)
    assert (email_all.touches, email_all.marketing_cost, email_all.reached_visit) == (0, 0.0, 0)
    tv = rows.loc[("tv", "B")]  # acquisition channel never touched
    assert (tv.touches, tv.marketing_cost, tv.acquired_customers, tv.clv_to_acquisition_cost) == (
        0,
        0.0,
        1,
        2.0,
    )
    assert math.isnan(tv.cost_per_touch)
    social = rows.loc[("social", "A")]  # a null cost adds nothing; C2's clv is null
    assert (social.touches, social.marketing_cost, social.reached_paid) == (3, 8.0, 1)
    assert social.mean_acquisition_cost == 50.0 and math.isnan(social.mean_clv_acquired)


def test_channel_economics_without_end_and_other_stages(
    channel_inputs: tuple[DataFrame, DataFrame, DataFrame],
) -> None:
    touches, imap, customers = channel_inputs
    got = channel_economics(touches, identity_map=imap, customers=customers, stages=("visit", "paid"))
    assert got.columns[5:11] == [
        "touches_visit",
        "touches_paid",
        "reached_visit",
        "reached_paid",
        "conversion_visit_to_paid",
        "dropoff_visit_to_paid",
    ]
    [a] = got.where("channel = 'search' AND segment_name = 'A'").collect()
    # Without an end, t18 (paid, 50.0, on the end date) counts.
    assert (a.touches, a.marketing_cost, a.touches_paid, a.reached_paid) == (8, 63.0, 2, 1)
    assert (a.conversion_visit_to_paid, a.cost_per_paid) == (0.5, 63.0)


def test_channel_economics_errors(
    spark: SparkSession, channel_inputs: tuple[DataFrame, DataFrame, DataFrame]
) -> None:
    touches, imap, customers = channel_inputs
    with pytest.raises(ValueError, match=r"touches: missing column\(s\) \['funnel_stage'\]"):
        channel_economics(touches.drop("funnel_stage"), identity_map=imap, customers=customers)
    with pytest.raises(ValueError, match=r"identity_map: missing column\(s\) \['customer_id'\]"):
        channel_economics(touches, identity_map=imap.drop("customer_id"), customers=customers)
    with pytest.raises(ValueError, match=r"customers: missing column\(s\) \['clv'\]"):
        channel_economics(touches, identity_map=imap, customers=customers.drop("clv"))
    with pytest.raises(ValueError, match="stages must be distinct"):
        channel_economics(touches, identity_map=imap, customers=customers, stages=("visit", "visit"))
    with pytest.raises(ValueError, match="end must be an ISO date"):
        channel_economics(touches, identity_map=imap, customers=customers, end="June")
