"""Stage ``insights`` on the tiny preset, every table against pandas on the same inputs.

The warehouse holds the generator's world: its events as bronze tables, its true identity
map (with some records marked low-confidence) as silver, features built by the features
transform, the latent segments as the assignments (bots as outliers), a score table where
some customers move between snapshots, and the CLV stage's output. So the planted truths
(core segment, costly segment, biased investment score, bots) are known exactly.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from scipy import stats

from custseg.config import Config, load_config
from custseg.contract import OUTLIER
from custseg.features import FeatureSpec, build_feature_snapshots
from custseg.generate import GeneratedWorld
from custseg.generate.spec import OVERRATED_INDUSTRIES
from custseg.insights.bootstrap import customer_hash, poisson_weights
from custseg.pipeline import run_pipeline, run_stage
from custseg.tables import TableStore
from tests.conftest import TEST_CONF, temp_overrides

SNAPSHOTS = ["2026-09-01", "2026-10-01", "2026-11-01"]
LATEST = SNAPSHOTS[-1]
B = 60
IDENTITY = ("first_name", "last_name", "email", "phone", "date_of_birth", "postcode", "address")


@dataclass
class World:
    cfg: Config
    store: TableStore
    customers: pd.DataFrame  # latest features + segment + clv, one row per customer
    records: pd.DataFrame  # identity records with their PII, for the canary
    imap: pd.DataFrame
    transactions: pd.DataFrame
    support: pd.DataFrame
    touches: pd.DataFrame
    snapshots: pd.DataFrame


def _read(store: TableStore, name: str) -> pd.DataFrame:
    return pd.DataFrame(store.read(name).toPandas())


@pytest.fixture(scope="module")
def world(spark: SparkSession, tiny_world: GeneratedWorld, tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("insights")
    cfg = load_config(
        TEST_CONF,
        overrides=[
            *temp_overrides(tmp),
            f"insights.replicates={B}",
            "insights.curve_bins=200",
            "clv.holdout_days=120",
        ],
    )
    gen = tiny_world
    events = gen.customer_tables()
    store = TableStore(spark, cfg.storage.warehouse, run_id="seed")
    for name, frame in events.items():
        store.write(frame, f"bronze.{name}")
    # the true map; 1 record in 12 rests on a weak link, 1 in 40 is flagged for review
    rid = F.xxhash64("source_system", "source_id")
    imap = gen.identity_records.select(
        "source_system",
        "source_id",
        F.col("person_id").cast("string").alias("customer_id"),
        F.when(F.pmod(rid, 12) == 0, F.lit(0.9)).otherwise(F.lit(1.0)).alias("match_confidence"),
        F.lit(1).alias("cluster_size"),
        F.when(F.pmod(rid, 40) == 1, F.lit("oversized")).alias("review_reason"),
    )
    store.write(imap, "silver.identity_map")
    fc = cfg.features
    features = build_feature_snapshots(
        events["transactions"],
        imap,
        support=events["support_contacts"],
        usage=events["product_usage"],
        touches=events["marketing_touches"],
        attributes=events["customer_attributes"],
        snapshot_dates=SNAPSHOTS,
        spec=FeatureSpec.of(fc),
    )
    store.write(features, "gold.customer_features", partition_by=["snapshot_date"])
    truth = gen.people.select(F.col("person_id").cast("string").alias("customer_id"), "segment", "is_bot")
    keyed = (
        store.read("gold.customer_features").select("customer_id", "snapshot_date").join(truth, "customer_id")
    )
    named = F.when(F.col("is_bot"), F.lit(OUTLIER)).otherwise(F.col("segment"))
    # in the first snapshot, 1 in 7 steady customers was still occasional: some migration
    moved = (F.col("snapshot_date") == SNAPSHOTS[0]) & (F.col("segment") == "steady")
    moved = moved & (F.pmod(F.xxhash64("customer_id"), 7) == 0)
    snapshots = keyed.select(
        "customer_id",
        "snapshot_date",
        F.lit(0).alias("segment"),
        F.when(moved, F.lit("occasional")).otherwise(named).alias("segment_name"),
        F.col("is_bot").alias("is_outlier"),
        F.lit("1").alias("model_version"),
    )
    store.write(snapshots, "gold.segment_snapshots", partition_by=["snapshot_date"])
    store.write(snapshots.where(F.col("snapshot_date") == LATEST), "gold.segment_assignments")
    run_stage(cfg, "clv", run_id="insights-test")
    run_stage(cfg, "insights", run_id="insights-test")

    latest = _read(store, "gold.customer_features")
    latest = latest[latest["snapshot_date"].astype(str) == LATEST]
    assignments = _read(store, "gold.segment_assignments")[["customer_id", "segment_name", "is_outlier"]]
    clv = _read(store, "gold.customer_clv")[["customer_id", "clv", "prob_alive", "expected_purchases_90d"]]
    customers = latest.merge(assignments, on="customer_id").merge(clv, on="customer_id", how="left")
    customers["clv"] = customers["clv"].fillna(0.0)
    return World(
        cfg=cfg,
        store=store,
        customers=customers,
        records=pd.DataFrame(gen.identity_records.select(*IDENTITY).toPandas()),
        imap=_read(store, "silver.identity_map"),
        transactions=pd.DataFrame(events["transactions"].toPandas()),
        support=pd.DataFrame(events["support_contacts"].toPandas()),
        touches=pd.DataFrame(events["marketing_touches"].toPandas()),
        snapshots=_read(store, "gold.segment_snapshots"),
    )


def _business(w: World) -> pd.DataFrame:
    return w.customers[~w.customers["is_outlier"]]


def test_profiles_against_pandas_and_one_interval_against_a_pandas_bootstrap(
    spark: SparkSession, world: World
) -> None:
    profiles = _read(world.store, "gold.segment_profiles").set_index("segment_name")
    c, biz = world.customers, _business(world)
    for seg, rows in c.groupby("segment_name"):
        got = profiles.loc[seg]
        assert got["customers"] == len(rows)
        assert got["customer_share"] == pytest.approx(len(rows) / len(biz))
        assert got["revenue_total"] == pytest.approx(rows["monetary_365d"].sum())
        assert got["revenue_share"] == pytest.approx(rows["monetary_365d"].sum() / biz["monetary_365d"].sum())
        assert got["profit_mean"] == pytest.approx(rows["profit_365d"].mean())
        assert got["cost_to_serve_mean"] == pytest.approx(rows["cost_to_serve_365d"].mean())
        assert got["clv_mean"] == pytest.approx(rows["clv"].mean())
        assert got["clv_share"] == pytest.approx(rows["clv"].sum() / biz["clv"].sum())
        assert got["repeat_buyer_share"] == pytest.approx(rows["is_repeat_buyer"].mean())
        contacts = rows["support_contacts_365d"].sum()
        if contacts:
            assert got["resolution_rate"] == pytest.approx(rows["support_resolved_365d"].sum() / contacts)
        assert got["discount_share"] == pytest.approx(
            rows["discount_365d"].sum() / rows["gross_sales_365d"].sum(), nan_ok=True
        )
        top_plan = rows["plan"].fillna("unknown").value_counts()
        assert got["top_plan_share"] == pytest.approx(top_plan.iloc[0] / len(rows))
        assert got["profit_mean_lo"] <= got["profit_mean"] <= got["profit_mean_hi"]
    everyone = profiles.loc["(all customers)"]
    assert everyone["customers"] == len(biz) and everyone["revenue_share"] == pytest.approx(1.0)
    # the interval of the core's mean profit against pandas with the same weights
    core = c[c["segment_name"] == "core"].reset_index(drop=True)
    h = spark.createDataFrame(core[["customer_id"]]).select(
        "customer_id", customer_hash("customer_id", 42).alias("h")
    )
    core = core.merge(pd.DataFrame(h.toPandas()), on="customer_id")
    w = poisson_weights(core["h"].to_numpy(), B)[:, 1:]
    means = (w.T @ core["profit_365d"].to_numpy()) / w.sum(axis=0)
    assert profiles.loc["core", "profit_mean_lo"] == pytest.approx(np.quantile(means, 0.025), rel=1e-9)
    assert profiles.loc["core", "profit_mean_hi"] == pytest.approx(np.quantile(means, 0.975), rel=1e-9)


def test_planted_truths_are_recovered(world: World) -> None:
    profiles = _read(world.store, "gold.segment_profiles")
    business = profiles[~profiles["is_outlier"] & (profiles["segment_name"] != "(all customers)")]
    top = business.loc[business["profit_mean"].idxmax()]
    assert top["segment_name"] == "core"
    # its shares against the truth: the latent segments and the raw transactions of the window
    biz = _business(world)
    true_share = (biz["segment_name"] == "core").mean()
    assert abs(top["customer_share"] - true_share) <= 0.01
    tx = world.transactions.merge(world.imap[["source_system", "source_id", "customer_id"]])
    tx = tx[(tx["ts"] >= pd.Timestamp("2025-11-01")) & (tx["ts"] < pd.Timestamp(LATEST))]
    tx = tx.merge(biz[["customer_id", "segment_name"]], on="customer_id")
    true_revenue = tx.loc[tx["segment_name"] == "core", "amount"].sum() / tx["amount"].sum()
    assert abs(top["revenue_share"] - true_revenue) <= 0.02
    costly = business.set_index("segment_name")
    assert costly["support_cost_mean"].idxmax() == "costly"
    assert costly["profit_mean"].idxmin() == "costly"
    # bots: their own row, the count of the segment stage's outliers, in no business figure
    outliers = profiles[profiles["is_outlier"]]
    assert list(outliers["segment_name"]) == [OUTLIER]
    assert outliers["customers"].iloc[0] == world.customers["is_outlier"].sum() > 0
    assert (
        business["customers"].sum()
        == profiles.loc[profiles["segment_name"] == "(all customers)", "customers"].iloc[0]
    )
    run = _stage_run(world)
    assert run.data.metrics["outliers"] == world.customers["is_outlier"].sum()


def _stage_run(world: World) -> mlflow.entities.Run:
    mlflow.set_tracking_uri(world.cfg.tracking.uri)
    exp = mlflow.get_experiment_by_name(world.cfg.tracking.experiment)
    runs = MlflowClient().search_runs([exp.experiment_id], filter_string="tags.`custseg.stage` = 'insights'")
    return runs[0]


def test_traits_lift_against_pandas(world: World) -> None:
    traits = _read(world.store, "gold.segment_traits")
    biz = _business(world)
    row = traits[
        (traits["segment_name"] == "core")
        & (traits["attribute"] == "industry")
        & (traits["value"] == "software")
    ]
    core = biz[biz["segment_name"] == "core"]
    share = (core["industry"] == "software").mean()
    assert row["share"].iloc[0] == pytest.approx(share)
    assert row["lift"].iloc[0] == pytest.approx(share / (biz["industry"] == "software").mean())
    flagged = traits[traits["is_trait"]]
    assert (flagged["lift"] > 1).all() and (flagged.groupby("segment_name").size() <= 5).all()


def test_concentration_against_pandas(world: World) -> None:
    conc = _read(world.store, "gold.value_concentration").set_index(["measure", "metric"])
    biz = _business(world)
    for measure, col in (("revenue", "monetary_365d"), ("profit", "profit_365d"), ("clv", "clv")):
        x = np.sort(biz[col].to_numpy())
        n = len(x)
        gini = 2 * np.sum(np.arange(1, n + 1) * x) / (n * x.sum()) - (n + 1) / n
        assert conc.loc[(measure, "gini"), "value"] == pytest.approx(gini, rel=1e-9)
        lo, hi = conc.loc[(measure, "gini"), ["value_lo", "value_hi"]]
        assert lo <= gini <= hi
        # top 8 %: interpolated inside one rank bin (200 bins), so within one bin's value
        k = 0.08 * n
        top = x[::-1][: int(k)].sum() + (k - int(k)) * x[::-1][int(k)]
        assert conc.loc[(measure, "top_8_share"), "value"] == pytest.approx(top / x.sum(), rel=0.02)
    profit = biz["profit_365d"].to_numpy()
    assert conc.loc[("profit", "whale_peak_customer_share"), "value"] == pytest.approx((profit > 0).mean())
    assert conc.loc[("profit", "tail_destroyed"), "value"] == pytest.approx(-profit[profit < 0].sum())
    headlines = _read(world.store, "gold.insight_headlines").set_index("name")
    share = conc.loc[("profit", "top_8_share"), "value"]
    assert f"earn {share:.0%} of 12-month profit" in headlines.loc["top_share_of_profit", "text"]


def test_cost_to_serve_scenarios_and_stitch_quality_against_pandas(world: World) -> None:
    cts = _read(world.store, "gold.cost_to_serve").set_index("segment_name")
    biz = _business(world)
    sup = world.support.merge(world.imap[["source_system", "source_id", "customer_id"]])
    sup = sup.rename(columns={"handle_minutes": "minutes"})
    sup = sup[(sup["ts"] >= pd.Timestamp("2025-11-01")) & (sup["ts"] < pd.Timestamp(LATEST))]
    by = sup.pivot_table(index="customer_id", columns="channel", values="cost", aggfunc="sum").fillna(0.0)
    for seg, rows in world.customers.groupby("segment_name"):
        phone = by.reindex(rows["customer_id"]).fillna(0.0)["phone"]
        assert cts.loc[seg, "support_phone_per_customer"] == pytest.approx(phone.mean())
        assert cts.loc[seg, "discounts_share_of_revenue"] == pytest.approx(
            rows["discount_365d"].sum() / rows["monetary_365d"].sum(), nan_ok=True
        )
        assert cts.loc[seg, "unprofitable_customers"] == (rows["profit_1095d"] < 0).sum()
        assert cts.loc[seg, "profit_destroyed"] == pytest.approx(
            -rows.loc[rows["profit_1095d"] < 0, "profit_1095d"].sum()
        )
    scen = _read(world.store, "gold.service_scenarios")
    shift = scen[(scen["scenario"] == "automate_support") & (scen["segment_name"] == "costly")].iloc[0]
    rows = biz[biz["segment_name"] == "costly"]
    minutes = sup.pivot_table(index="customer_id", columns="channel", values="minutes", aggfunc="sum").fillna(
        0.0
    )
    chat_rate = (
        by.reindex(biz["customer_id"]).fillna(0)["chat"].sum()
        / minutes.reindex(biz["customer_id"]).fillna(0)["chat"].sum()
    )
    phone_cost = by.reindex(rows["customer_id"]).fillna(0)["phone"].sum()
    phone_minutes = minutes.reindex(rows["customer_id"]).fillna(0)["phone"].sum()
    assert shift["delta_cost_to_serve"] == pytest.approx(
        0.5 * (phone_minutes * chat_rate - phone_cost), rel=1e-9
    )
    assert shift["delta_cost_to_serve"] < 0 and json.loads(shift["assumptions"])["share"] == 0.5
    stop = scen[(scen["scenario"] == "stop_discounts") & (scen["segment_name"] == "costly")].iloc[0]
    expected = 0.9 * (rows["profit_365d"].sum() + rows["discount_365d"].sum()) - rows["profit_365d"].sum()
    assert stop["delta_profit"] == pytest.approx(expected, rel=1e-9)
    quality = _read(world.store, "gold.stitch_quality_by_segment").set_index("segment_name")
    weak = world.imap.groupby("customer_id").agg(
        low=("match_confidence", lambda s: (s < world.cfg.stitch.low_confidence).any()),
        review=("review_reason", lambda s: s.notna().any()),
    )
    flagged = weak["low"] | weak["review"]
    for seg, rows in world.customers.groupby("segment_name"):
        low = flagged.reindex(rows["customer_id"]).fillna(False).to_numpy()
        assert quality.loc[seg, "low_confidence_share"] == pytest.approx(low.mean())
        assert quality.loc[seg, "low_confidence_revenue_share"] == pytest.approx(
            rows.loc[low, "monetary_365d"].sum() / rows["monetary_365d"].sum(), nan_ok=True
        )


def test_misallocation_against_pandas(world: World) -> None:
    biz = _business(world).copy()
    n = len(biz)

    def pct(s: pd.Series) -> pd.Series:
        return (s.rank(method="average") - 1) / (s.count() - 1)

    resolution = biz["support_resolution_rate"].fillna(1.0)
    composite = (
        0.40 * pct(biz["monetary_365d"])
        + 0.35 * pct(biz["max_daily_features_used_365d"])
        + 0.25 * pct(resolution)
    )
    in_cohort = (pct(biz["investment_priority_score"]) >= 0.7) & (
        (composite.rank(method="average") - 1) / (n - 1) < 0.5
    )
    cohort = _read(world.store, "gold.misallocation_cohort")
    assert set(cohort["customer_id"]) == set(biz.loc[in_cohort, "customer_id"])
    assert set(cohort.columns) >= {"customer_id", "investment_score", "composite_score"}
    assert (
        len(set(cohort.columns) - {"customer_id"} - {c for c in cohort.columns if "score" in c or "pct" in c})
        == 0
    )
    summary = _read(world.store, "gold.misallocation_summary")
    root = summary[(summary["section"] == "root_cause") & (summary["metric"] == "lift")]
    assert (root["customers"] >= 30).all()
    top3 = root.sort_values("value", ascending=False).head(3)
    assert set(top3["group"]) & set(OVERRATED_INDUSTRIES), top3
    biz["roi"] = biz["clv"] / biz["acquisition_cost"]
    for _, r in root.head(3).iterrows():
        grp = biz[(biz["industry"] == r["group"]) & (biz["company_size"] == r["subgroup"])]
        rate = in_cohort[grp.index].mean() / in_cohort.mean()
        assert r["value"] == pytest.approx(rate)
    corr = summary[summary["section"] == "correlation"].set_index("metric")
    rho = stats.spearmanr(biz["investment_priority_score"], biz["clv"]).statistic
    assert corr.loc["investment_vs_clv_spearman", "value"] == pytest.approx(rho, abs=1e-9)
    r = stats.pearsonr(biz["onboarding_score"], biz["max_daily_features_used_365d"]).statistic
    assert corr.loc["onboarding_vs_adoption_pearson", "value"] == pytest.approx(r, abs=1e-9)
    # the biased score: its correlation with CLV is below the composite's, intervals apart
    inv, perf = corr.loc["investment_vs_clv_spearman"], corr.loc["performance_vs_clv_spearman"]
    assert inv["value"] < 0.2 and inv["value_hi"] < perf["value_lo"]
    levels = summary[(summary["section"] == "roi_by_level") & (summary["metric"] == "roi_mean")].set_index(
        "group"
    )
    for level, rows in biz.groupby("decision_maker_level"):
        assert levels.loc[level, "value"] == pytest.approx(rows["roi"].mean())


def test_churn_risk_and_drivers_against_pandas(world: World) -> None:
    churn = _read(world.store, "gold.churn_risk").set_index("segment_name")
    for seg, rows in world.customers.groupby("segment_name"):
        alive = rows["prob_alive"].dropna()
        assert churn.loc[seg, "at_risk_customers"] == (alive < 0.5).sum()
        assert churn.loc[seg, "clv_at_risk_total"] == pytest.approx(
            rows.loc[rows["prob_alive"] < 0.5, "clv"].sum()
        )
        assert churn.loc[seg, "expected_purchases_90d"] == pytest.approx(rows["expected_purchases_90d"].sum())
        assert churn.loc[seg, "orders_last_90d"] == rows["orders_90d"].sum()
        if len(alive) > 4:
            assert churn.loc[seg, "prob_alive_p50"] == pytest.approx(np.quantile(alive, 0.5), abs=0.02)
    drivers = _read(world.store, "gold.churn_drivers").set_index("feature")
    biz = _business(world).dropna(subset=["prob_alive"])
    for feature in ("days_since_last_active", "active_days_365d"):
        ok = biz[feature].notna()
        rho = stats.spearmanr(biz.loc[ok, feature], biz.loc[ok, "prob_alive"]).statistic
        # ranks are taken over all customers with each value, then correlated over complete pairs
        assert drivers.loc[feature, "spearman"] == pytest.approx(rho, abs=0.02)
    assert set(drivers.index) == set(world.cfg.insights.churn_features)
    assert drivers.sort_values("rank")["spearman"].abs().is_monotonic_decreasing


def test_migration_channels_kpis_and_tests_against_pandas(world: World) -> None:
    migration = _read(world.store, "gold.segment_migration")
    s = world.snapshots
    first = s[s["snapshot_date"].astype(str) == SNAPSHOTS[0]].set_index("customer_id")["segment_name"]
    second = s[s["snapshot_date"].astype(str) == SNAPSHOTS[1]].set_index("customer_id")["segment_name"]
    moved = ((first == "occasional") & (second.reindex(first.index) == "steady")).sum()
    cell = migration[
        (migration["period"] == "consecutive")
        & (migration["from_segment"] == "occasional")
        & (migration["to_segment"] == "steady")
        & (migration["from_snapshot"].astype(str) == SNAPSHOTS[0])
    ]
    assert moved > 0 and cell["customers"].iloc[0] == moved
    channels = _read(world.store, "gold.channel_economics")
    t = world.touches[world.touches["ts"] < pd.Timestamp(LATEST)]
    mapped = t.merge(world.imap[["source_system", "source_id", "customer_id"]]).merge(
        world.customers[["customer_id", "segment_name"]]
    )
    for (channel, seg), rows in list(mapped.groupby(["channel", "segment_name"]))[:5]:
        got = channels[(channels["channel"] == channel) & (channels["segment_name"] == seg)].iloc[0]
        assert got["touches"] == len(rows) and got["marketing_cost"] == pytest.approx(rows["cost"].sum())
    anonymous = channels[channels["segment_name"] == "(anonymous)"]
    assert anonymous["touches"].sum() == t["source_id"].isna().sum()
    monthly = _read(world.store, "gold.kpi_monthly")
    tx = world.transactions.merge(world.imap[["source_system", "source_id", "customer_id"]], how="left")
    tx = tx[~tx["customer_id"].isin(world.customers.loc[world.customers["is_outlier"], "customer_id"])]
    tx = tx[tx["ts"] < pd.Timestamp(LATEST)]
    by_month = tx.groupby(tx["ts"].dt.to_period("M"))["amount"].sum()
    got = monthly.assign(p=pd.to_datetime(monthly["month"]).dt.to_period("M")).set_index("p")["revenue"]
    for period, value in by_month.items():
        assert got.loc[period] == pytest.approx(value)
    assert {"kpi", "slope_per_month"} <= set(_read(world.store, "gold.kpi_trends").columns)
    assert len(_read(world.store, "gold.kpi_forecast")) == 3 * len(_read(world.store, "gold.kpi_trends"))
    tests = _read(world.store, "gold.kpi_tests")
    biz = _business(world)
    h = stats.kruskal(*[g["clv"].to_numpy() for _, g in biz.groupby("industry")]).statistic
    assert tests.loc[tests["grouping"] == "industry", "h"].iloc[0] == pytest.approx(h, rel=1e-9)


def test_recommendations_cite_their_numbers(world: World) -> None:
    recs = _read(world.store, "gold.recommendations")
    profiles = _read(world.store, "gold.segment_profiles").set_index("segment_name")
    team = recs[recs["rule"] == "named_account_team"].iloc[0]
    assert team["subject"] == "core" and team["value"] == pytest.approx(profiles.loc["core", "profit_mean"])
    assert team["value_lo"] == pytest.approx(profiles.loc["core", "profit_mean_lo"])
    assert np.isfinite(recs["value"]).all() and recs["evidence"].str.contains("95 % interval").all()
    recal = recs[recs["rule"] == "recalibrate_investment_score"]
    assert len(recal) == 1 and recal["value"].iloc[0] < 0.2


def test_no_identity_field_reaches_tables_or_mlflow(world: World) -> None:
    """Canary: every name, email and phone of the identity records is searched for in every
    insights table, MLflow param, metric, tag and artifact: none is found."""
    placeholders = set(world.cfg.stitch.placeholders)  # in the config: no one's data
    canaries = {
        str(v) for v in world.records["email"].dropna() if "@" in str(v) and str(v) not in placeholders
    }
    canaries |= {str(v) for v in world.records["last_name"].dropna() if len(str(v)) >= 6}
    # phones with at least 4 distinct digits (a placeholder such as 0000000000 is no one's)
    canaries |= {
        str(v) for v in world.records["phone"].dropna() if len(set(filter(str.isdigit, str(v)))) >= 4
    }
    names = [
        "segment_profiles",
        "segment_traits",
        "value_concentration",
        "value_curves",
        "cost_to_serve",
        "service_scenarios",
        "misallocation_cohort",
        "misallocation_summary",
        "segment_migration",
        "segment_flows",
        "channel_economics",
        "kpi_monthly",
        "kpi_trends",
        "kpi_forecast",
        "kpi_anomalies",
        "kpi_tests",
        "stitch_quality_by_segment",
        "churn_risk",
        "churn_drivers",
        "recommendations",
        "insight_headlines",
    ]
    for name in names:
        frame = _read(world.store, f"gold.{name}")
        assert not set(IDENTITY) & set(frame.columns), name
        text = frame.astype(str).to_string()
        assert not [c for c in canaries if c in text], name
    db = world.cfg.tracking.uri.removeprefix("sqlite:///")
    with sqlite3.connect(db) as con:
        dump = "\n".join(con.iterdump())
    artifacts = "".join(
        p.read_text(errors="ignore")
        for p in Path(world.cfg.tracking.artifact_location or "").rglob("*")
        if p.is_file()
    )
    hits = [c for c in canaries if c in dump or c in artifacts]
    assert not hits, hits[:5]
    assert (
        "insights/segment_profiles.json" in dump
        or (Path(world.cfg.tracking.artifact_location or "")).exists()
    )


def test_insights_alone_on_existing_tables_gives_the_same_answers(world: World) -> None:
    before = _read(world.store, "gold.segment_profiles").sort_values("segment_name").reset_index(drop=True)
    run_pipeline(world.cfg, stages=["insights"], run_id="insights-again")
    after = _read(world.store, "gold.segment_profiles").sort_values("segment_name").reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)
