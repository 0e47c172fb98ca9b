"""Stage ``insights``: the gold and silver tables -> the business answers (docs/insights.md).

Reads the segments' snapshot of ``segment.features_table``, ``gold.segment_assignments``,
``gold.customer_clv``, ``gold.segment_snapshots``, ``silver.identity_map`` (its match
confidence and review flag only) and the bronze event tables; writes the gold insight
tables, each also logged to MLflow as a JSON artifact (the cohort, one row per customer,
only as a count). No identity field is read into any output: the customer frame is built
from features, segments and scores, which hold ``customer_id`` only.

Outlier customers (the segment stage's bots and test accounts) keep their own row in the
per-segment tables and are left out of every business figure: the all-customers rows, the
concentration, the misallocation, the KPIs' customer counts, the rank correlations.
"""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from custseg import catalog
from custseg.contract import IDENTITY_FIELDS
from custseg.insights.concentration import concentration_sums, concentration_tables, top_label
from custseg.insights.misallocation import (
    cohort_table,
    correlation_pairs,
    correlations,
    misallocation_summary,
    score_customers,
)
from custseg.insights.profiles import (
    ALL,
    SEGMENT,
    churn_risk,
    cost_to_serve,
    customer_frame,
    profile_sums,
    segment_profiles,
    segment_traits,
    stitch_quality,
    support_by_channel,
)
from custseg.insights.ranks import with_ranks
from custseg.insights.recommend import recommend
from custseg.insights.scenarios import service_scenarios
from custseg.snapshots import latest_snapshot, newest_snapshot_date
from custseg.stage import StageContext

log = logging.getLogger(__name__)

IDENTITY_COLUMNS = frozenset({*IDENTITY_FIELDS, "email_local"})


def pandas_to_spark(spark: SparkSession, pdf: pd.DataFrame) -> DataFrame:
    """A small pandas table as a Spark DataFrame with an explicit schema (bool, long,
    double, date or string per column), so all-null and mixed columns write cleanly."""
    fields: list[T.StructField] = []
    columns: dict[str, list[Any]] = {}
    for name in pdf.columns:
        col = pdf[name]
        non_null = col.dropna()
        if pd.api.types.is_bool_dtype(col) or (
            len(non_null) and all(isinstance(v, bool | np.bool_) for v in non_null)
        ):
            kind: T.DataType = T.BooleanType()
            values: list[Any] = [None if pd.isna(v) else bool(v) for v in col]
        elif pd.api.types.is_integer_dtype(col):
            kind, values = T.LongType(), [int(v) for v in col]
        elif pd.api.types.is_numeric_dtype(col):
            kind = T.DoubleType()
            values = [None if pd.isna(v) else float(v) for v in col]
        elif len(non_null) and all(isinstance(v, date) for v in non_null):
            kind = T.DateType()
            values = [None if pd.isna(v) else v for v in col]
        else:
            kind = T.StringType()
            values = [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in col]
        fields.append(T.StructField(str(name), kind, True))
        columns[name] = values
    rows = list(zip(*columns.values(), strict=True)) if columns else []
    return spark.createDataFrame(rows, T.StructType(fields))


def _check_no_identity(name: str, columns: list[str]) -> None:
    leaked = IDENTITY_COLUMNS & set(columns)
    if leaked:
        raise RuntimeError(f"insights: {name} would hold identity fields {sorted(leaked)}")


def _log_table(ctx: StageContext, name: str, pdf: pd.DataFrame) -> None:
    _check_no_identity(name, list(pdf.columns))
    ctx.tables.write(pandas_to_spark(ctx.spark, pdf), name)
    records = json.loads(pdf.to_json(orient="records", date_format="iso"))
    ctx.run.log_dict(records, f"insights/{name.split('.', 1)[1]}.json")


def _segments(ctx: StageContext) -> tuple[DataFrame, Any]:
    tables, sc = ctx.tables, ctx.cfg.segment
    ctx.require_tables(sc.features_table, catalog.SEGMENT_ASSIGNMENTS)
    segments = tables.read(catalog.SEGMENT_ASSIGNMENTS)
    return segments, newest_snapshot_date(segments)


def run_insights(ctx: StageContext) -> None:
    """Stage runner (see the module docstring)."""
    cfg, tables, run = ctx.cfg.insights, ctx.tables, ctx.run
    seed, replicates, level = ctx.cfg.run.seed, cfg.replicates, cfg.level
    segments, snapshot = _segments(ctx)
    features = latest_snapshot(tables.read(ctx.cfg.segment.features_table), snapshot)
    as_of: date = snapshot or ctx.cfg.features.as_of or date.today()
    longest = max(ctx.cfg.features.windows_days)
    identity_map = ctx.read_optional(catalog.IDENTITY_MAP)
    clv = ctx.read_optional(catalog.CUSTOMER_CLV)
    support = ctx.read_optional(catalog.SUPPORT_CONTACTS)
    channels: list[str] = []
    by_channel = None
    if support is not None and identity_map is not None:
        channels = sorted(
            r[0] for r in support.select("channel").where(F.col("channel").isNotNull()).distinct().collect()
        )
        by_channel = support_by_channel(
            support,
            identity_map=identity_map,
            start=as_of - timedelta(days=cfg.window_days),
            end=as_of,
            channels=channels,
        )
    customers = customer_frame(
        features,
        segments=segments,
        clv=clv,
        identity_map=identity_map,
        support_by_channel=by_channel,
        window_days=cfg.window_days,
        longest_days=longest,
        low_confidence=ctx.cfg.stitch.low_confidence,
    ).localCheckpoint(eager=True)
    counts = customers.groupBy("is_outlier").count().collect()
    n_outliers = sum(int(r["count"]) for r in counts if r["is_outlier"])
    n_business = sum(int(r["count"]) for r in counts if not r["is_outlier"])
    log.info(
        "insights: %d business customers, %d outliers left out, snapshot %s", n_business, n_outliers, as_of
    )
    metrics: dict[str, float] = {
        "customers": float(n_business),
        "outliers": float(n_outliers),
        "replicates": replicates,
    }
    global_metrics: dict[str, tuple[float, float, float]] = {}

    # 1. profiles, traits, cost to serve, scenarios, match uncertainty, churn risk
    with ctx.timed("profiles"):
        sums, mix = profile_sums(
            customers,
            attributes=cfg.profile_attributes,
            max_values=cfg.max_values,
            channels=channels,
            alive_threshold=cfg.alive_threshold,
            replicates=replicates,
            seed=seed,
        )
        profiles = segment_profiles(sums, mix, level=level)
        _log_table(ctx, catalog.SEGMENT_PROFILES, profiles)
        _log_table(
            ctx,
            catalog.SEGMENT_TRAITS,
            segment_traits(
                sums, mix, level=level, min_share=cfg.trait_min_share, per_segment=cfg.traits_per_segment
            ),
        )
        _log_table(ctx, catalog.COST_TO_SERVE, cost_to_serve(sums, channels, level=level))
        _log_table(
            ctx, catalog.SERVICE_SCENARIOS, service_scenarios(sums, profiles, cfg.scenarios, level=level)
        )
        _log_table(ctx, catalog.STITCH_QUALITY_BY_SEGMENT, stitch_quality(sums, level=level))
        business = customers.where(~F.col("is_outlier"))
        churn = churn_risk(sums, customers, alive_threshold=cfg.alive_threshold, level=level)
        _log_table(ctx, catalog.CHURN_RISK, churn)

    # 2. concentration
    with ctx.timed("concentration"):
        measures = {"revenue": "revenue", "profit": "profit", "clv": "clv"}
        conc_sums = concentration_sums(
            business.select("customer_id", *measures.values()),
            list(measures.values()),
            replicates=replicates,
            seed=seed,
            bins=cfg.curve_bins,
        )
        concentration, curves = concentration_tables(
            conc_sums,
            tops=sorted(set(cfg.top_shares) | {cfg.headline_top}),
            whale_measure="profit",
            level=level,
        )
        _log_table(ctx, catalog.VALUE_CONCENTRATION, concentration)
        _log_table(ctx, catalog.VALUE_CURVES, curves)
        for _, r in concentration.iterrows():
            global_metrics[f"{r['measure']}_{r['metric']}"] = (r["value"], r["value_lo"], r["value_hi"])

    # 3. misallocation
    with ctx.timed("misallocation"):
        pairs = correlation_pairs(
            investment=cfg.investment_col,
            onboarding=cfg.onboarding_col,
            adoption=cfg.adoption_col,
            time_to_value=cfg.time_to_value_col,
        )
        present_pairs = {
            k: v
            for k, v in pairs.items()
            if all(c in customers.columns or c in ("roi", "composite_score") for c in v)
        }
        for name in set(pairs) - set(present_pairs):
            log.warning("insights: correlation %s left out: its columns are not in the features", name)
        scored = score_customers(
            business,
            investment=cfg.investment_col,
            weights=cfg.performance_weights,
            top=cfg.investment_top,
            bottom=cfg.performance_bottom,
            extra_ranked=[
                c
                for c in (cfg.onboarding_col, cfg.adoption_col, cfg.time_to_value_col)
                if c in customers.columns
            ],
            acquisition_cost=cfg.acquisition_cost_col,
        ).localCheckpoint(eager=True)
        cohort = cohort_table(scored, investment=cfg.investment_col, weights=cfg.performance_weights)
        tables.write(cohort, catalog.MISALLOCATION_COHORT)
        summary = misallocation_summary(
            scored,
            groups=cfg.root_cause_groups,
            lifecycle=cfg.lifecycle_col,
            decision_level=cfg.decision_level_col,
            pairs=present_pairs,
            min_group_size=cfg.min_group_size,
            replicates=replicates,
            seed=seed,
            level=level,
        )
        _log_table(ctx, catalog.MISALLOCATION_SUMMARY, summary)
        for _, r in summary[summary["section"].isin(["correlation", "overview"])].iterrows():
            global_metrics[str(r["metric"])] = (r["value"], r["value_lo"], r["value_hi"])

    # 4. churn drivers: rank correlations with the probability of being alive
    with ctx.timed("churn_drivers"):
        drivers = [c for c in cfg.churn_features if c in customers.columns]
        alive = business.where(F.col("prob_alive").isNotNull())
        if drivers and clv is not None:
            ranked = alive.select("customer_id", "prob_alive", *drivers).join(
                with_ranks(alive.select("customer_id", "prob_alive", *drivers), ["prob_alive", *drivers]),
                "customer_id",
                how="inner",
            )
            driver_table = correlations(
                ranked,
                {f"{d}_vs_alive": (d, "prob_alive") for d in drivers},
                replicates=replicates,
                seed=seed,
                level=level,
            )
            driver_table = driver_table[driver_table["subgroup"] == "spearman"].assign(
                feature=lambda f: f["group"].str.removesuffix("_vs_alive")
            )
            driver_table = driver_table.assign(strength=driver_table["value"].abs()).sort_values(
                "strength", ascending=False
            )
            out = driver_table[["feature", "value", "value_lo", "value_hi", "customers"]].rename(
                columns={"value": "spearman", "value_lo": "spearman_lo", "value_hi": "spearman_hi"}
            )
            out.insert(0, "rank", np.arange(1, len(out) + 1))
            _log_table(ctx, catalog.CHURN_DRIVERS, out.reset_index(drop=True))

    # 5. migration, channels, KPIs
    with ctx.timed("migration_channels_kpis"):
        _migration(ctx)
        _channels(ctx, customers, identity_map, clv, as_of)
        _kpis(ctx, business, customers, identity_map, as_of)

    # 6. recommendations and headlines
    recommendations = recommend(profiles, global_metrics, cfg.recommendations)
    _log_table(ctx, catalog.RECOMMENDATIONS, recommendations)
    headlines = headline_sentences(profiles, concentration, cfg.headline_top, ctx.cfg.run.currency)
    _log_table(ctx, catalog.INSIGHT_HEADLINES, headlines)
    for text in headlines["text"]:
        log.info("insights: %s", text)
    for name, (value, lo, hi) in global_metrics.items():
        if np.isfinite(value):
            metrics[name] = float(value)
            if np.isfinite(lo) and np.isfinite(hi):
                metrics[f"{name}_lo"], metrics[f"{name}_hi"] = float(lo), float(hi)
    metrics["cohort_customers"] = float(global_metrics.get("cohort_customers", (np.nan,) * 3)[0])
    metrics["recommendations"] = float(len(recommendations))
    run.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})


def _headline(name: str, text: str, row: pd.Series, col: str = "value") -> dict[str, Any]:
    return {
        "name": name,
        "text": text,
        "value": float(row[col]),
        "value_lo": float(row[f"{col}_lo"]),
        "value_hi": float(row[f"{col}_hi"]),
    }


def headline_sentences(
    profiles: pd.DataFrame, concentration: pd.DataFrame, top: float, currency: str
) -> pd.DataFrame:
    """The answers in words, every number read from the tables (gold.insight_headlines)."""
    got = concentration.set_index(["measure", "metric"])
    rows = []
    label = top_label(top)
    if ("profit", f"{label}_share") in got.index:
        share = got.loc[("profit", f"{label}_share")]
        rest = got.loc[("profit", f"rest_{label[4:]}_total")]
        verb = "lose" if rest["value"] < 0 else "earn"
        text = (
            f"The top {top:.0%} of customers earn {share['value']:.0%} of 12-month profit "
            f"(95 % interval {share['value_lo']:.0%}-{share['value_hi']:.0%}); the other {1 - top:.0%} "
            f"together {verb} {currency} {abs(rest['value']):,.0f}."
        )
        rows.append(_headline("top_share_of_profit", text, share))
    if ("profit", "whale_peak_customer_share") in got.index:
        peak = got.loc[("profit", "whale_peak_customer_share")]
        multiple = got.loc[("profit", "whale_peak_multiple")]
        tail = got.loc[("profit", "tail_destroyed")]
        text = (
            f"The {peak['value']:.0%} of customers with positive profit earn {multiple['value']:.0%} of "
            f"total profit; the other {1 - peak['value']:.0%} destroy {currency} {tail['value']:,.0f}."
        )
        rows.append(_headline("whale_curve", text, multiple))
    business = profiles[~profiles["is_outlier"].astype(bool) & (profiles[SEGMENT] != ALL)]
    if len(business):
        best = business.loc[business["profit_mean"].idxmax()]
        text = (
            f"'{best[SEGMENT]}' is {best['customer_share']:.0%} of customers and earns "
            f"{best['profit_share']:.0%} of profit ({best['revenue_share']:.0%} of revenue); "
            f"{currency} {best['profit_mean']:,.0f} profit per customer."
        )
        rows.append(_headline("top_segment", text, best, "profit_share"))
        costly = business.loc[business["cost_to_serve_mean"].idxmax()]
        text = (
            f"'{costly[SEGMENT]}' costs {currency} {costly['cost_to_serve_mean']:,.0f} per customer to "
            f"serve, {costly['cost_to_serve_share_of_revenue']:.0%} of its revenue; its mean profit is "
            f"{currency} {costly['profit_mean']:,.0f}."
        )
        rows.append(_headline("cost_to_serve", text, costly, "cost_to_serve_mean"))
    return pd.DataFrame(rows, columns=["name", "text", "value", "value_lo", "value_hi"])


def _migration(ctx: StageContext) -> None:
    from custseg.insights.migration import segment_flows, segment_transitions

    snapshots = ctx.read_optional(ctx.cfg.segment.score_output)
    if snapshots is None:
        return
    snapshots = snapshots.select("customer_id", "snapshot_date", "segment_name").localCheckpoint(eager=True)
    transitions = pd.DataFrame(segment_transitions(snapshots).toPandas())
    _log_table(ctx, catalog.SEGMENT_MIGRATION, transitions)
    _log_table(ctx, catalog.SEGMENT_FLOWS, pd.DataFrame(segment_flows(snapshots).toPandas()))


def _channels(
    ctx: StageContext,
    customers: DataFrame,
    identity_map: DataFrame | None,
    clv: DataFrame | None,
    as_of: date,
) -> None:
    from custseg.insights.channels import channel_economics

    touches = ctx.read_optional(catalog.MARKETING_TOUCHES)
    if touches is None or identity_map is None:
        return
    cfg = ctx.cfg.insights
    acq = [c for c in ("acquisition_channel", cfg.acquisition_cost_col) if c in customers.columns]
    if len(acq) < 2:
        log.warning("insights: channel economics without acquisition attributes: %s missing", acq)
        return
    people = customers.select(
        "customer_id",
        SEGMENT,
        "is_outlier",
        "acquisition_channel",
        F.col(cfg.acquisition_cost_col).alias("acquisition_cost"),
        "clv",
    )
    table = pd.DataFrame(
        channel_economics(touches, identity_map=identity_map, customers=people, end=as_of).toPandas()
    )
    _log_table(ctx, catalog.CHANNEL_ECONOMICS, table)


def _kpis(
    ctx: StageContext,
    business: DataFrame,
    customers: DataFrame,
    identity_map: DataFrame | None,
    as_of: date,
) -> None:
    from custseg.insights.kpis import kpi_trends, kruskal_wallis, monthly_kpis

    cfg = ctx.cfg.insights
    transactions = ctx.read_optional(catalog.TRANSACTIONS)
    if transactions is not None and identity_map is not None:
        excluded = customers.where(F.col("is_outlier")).select("customer_id")
        first_seen = business.select("customer_id", F.col("first_event_date").alias("first_date"))
        monthly = pd.DataFrame(
            monthly_kpis(
                transactions,
                identity_map=identity_map,
                support=ctx.read_optional(catalog.SUPPORT_CONTACTS),
                touches=ctx.read_optional(catalog.MARKETING_TOUCHES),
                usage=ctx.read_optional(catalog.PRODUCT_USAGE),
                excluded=excluded,
                first_seen=first_seen,
                end=as_of,
            ).toPandas()
        )
        _log_table(ctx, catalog.KPI_MONTHLY, monthly)
        kpis = [c for c in KPI_COLUMNS if c in monthly.columns]
        complete = monthly[monthly["complete"]] if "complete" in monthly.columns else monthly
        trends, forecast, anomalies = kpi_trends(
            complete, kpis, horizon=cfg.forecast_months, alpha=1 - cfg.level, z_threshold=cfg.kpi_z_threshold
        )
        _log_table(ctx, catalog.KPI_TRENDS, trends)
        _log_table(ctx, catalog.KPI_FORECAST, forecast)
        _log_table(ctx, catalog.KPI_ANOMALIES, anomalies)
    tests = []
    groups = [g for g in ("industry", "company_size") if g in business.columns]
    for group in groups:
        # ranked among exactly the customers the test uses: a known group and a CLV
        data = business.select("customer_id", group, "clv").where(
            F.col(group).isNotNull() & F.col("clv").isNotNull()
        )
        ranked = data.join(with_ranks(data, ["clv"]), "customer_id", how="inner")
        try:
            result = kruskal_wallis(ranked, group_col=group, value_col="clv", rank_col="clv_rank")
        except ValueError as exc:  # e.g. fewer than two groups with customers
            log.warning("insights: no Kruskal-Wallis test of CLV across %s: %s", group, exc)
            continue
        frame = result if isinstance(result, pd.DataFrame) else pd.DataFrame([result])
        frame = frame.rename(columns={group: "group"})
        tests.append(frame.assign(test="kruskal_wallis", measure="clv", grouping=group))
    if tests:
        _log_table(ctx, catalog.KPI_TESTS, pd.concat(tests, ignore_index=True))


KPI_COLUMNS = (
    "revenue",
    "gross_margin",
    "profit",
    "marketing_cost",
    "support_cost",
    "active_customers",
    "new_customers",
    "orders",
    "average_order_value",
)
