"""Misallocated investment: customers the investment score ranks high who perform low.

The cohort is the customers in the top ``top`` share by the investment score and the
bottom ``bottom`` share by a composite performance score: the weighted mean of percentile
ranks (0 = lowest, 1 = highest, ties averaged) of revenue, product adoption and support
resolution efficiency (the resolution rate; 1 for a customer without contacts). The
summary explains it: the cohort by lifecycle stage, the root-cause groups (industry x
company size by default) by their lift in the cohort with their median ROI (12-month CLV /
acquisition cost), Pearson and Spearman correlations with intervals, and ROI by
decision-maker level. Spearman correlations are Pearson correlations of the full-sample
ranks; each bootstrap replicate reweights customers without re-ranking them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from custseg.columns import require_columns
from custseg.insights.bootstrap import (
    REPLICATE_COL,
    WEIGHT_COL,
    Statistic,
    collect_replicate_sums,
    pearson_from_sums,
    ratio,
    replicate_sums,
    summarise,
)
from custseg.insights.ranks import rank_col, with_ranks

RESOLUTION = "resolution"
SUMMARY_COLUMNS = ["section", "group", "subgroup", "metric", "value", "value_lo", "value_hi", "customers"]


def correlation_pairs(
    *, investment: str, onboarding: str, adoption: str, time_to_value: str
) -> dict[str, tuple[str, str]]:
    """The correlations the summary reports: name -> (x, y)."""
    return {
        "onboarding_vs_adoption": (onboarding, adoption),
        "time_to_value_vs_roi": (time_to_value, "roi"),
        "investment_vs_profit": (investment, "profit"),
        "investment_vs_clv": (investment, "clv"),
        "performance_vs_clv": ("composite_score", "clv"),
    }


def _pct(col: str, n: Column) -> Column:
    return F.when(n > 1, (F.col(rank_col(col)) - 1) / (n - 1)).otherwise(F.lit(0.5))


def score_customers(
    customers: DataFrame,
    *,
    investment: str,
    weights: Mapping[str, float],
    top: float,
    bottom: float,
    extra_ranked: Sequence[str] = (),
    acquisition_cost: str = "acquisition_cost",
) -> DataFrame:
    """customers (business customers, one row each) with percentile ranks, the composite
    score, ``in_cohort``, ``roi`` and ``<col>_rank`` for every ranked column."""
    need = [investment, *[c for c in weights if c != RESOLUTION], acquisition_cost, "clv", "profit"]
    require_columns(customers, need, "insights misallocation: the customer features")
    base = customers.withColumn(
        RESOLUTION, F.coalesce(F.col("support_resolution_rate"), F.lit(1.0))
    ).withColumn(
        "roi",
        F.when(F.col(acquisition_cost) > 0, F.col("clv") / F.col(acquisition_cost)),
    )
    ranked_cols = list(dict.fromkeys([investment, *weights, *extra_ranked, "roi", "profit", "clv"]))
    ranked_cols = [c for c in ranked_cols if c in base.columns]
    ranks = with_ranks(base.select("customer_id", *ranked_cols), ranked_cols)
    counts = ranks.select(*[F.count(rank_col(c)).alias(c) for c in ranked_cols]).first()
    assert counts is not None
    scored = base.join(ranks, "customer_id", how="left")
    composite = sum(
        (float(w) * F.coalesce(_pct(c, F.lit(int(counts[c]))), F.lit(0.0)) for c, w in weights.items()),
        F.lit(0.0),
    )
    scored = scored.withColumn("investment_pct", _pct(investment, F.lit(int(counts[investment])))).withColumn(
        "composite_score", composite
    )
    for c in weights:
        scored = scored.withColumn(f"{c}_pct", _pct(c, F.lit(int(counts[c]))))
    composite_ranks = with_ranks(scored.select("customer_id", "composite_score"), ["composite_score"])
    n = scored.count()
    scored = scored.join(composite_ranks, "customer_id", how="left").withColumn(
        "composite_pct", _pct("composite_score", F.lit(n))
    )
    return scored.withColumn(
        "in_cohort",
        (F.col("investment_pct") >= 1 - top) & (F.col("composite_pct") < bottom),
    )


def cohort_table(scored: DataFrame, *, investment: str, weights: Mapping[str, float]) -> DataFrame:
    """gold.misallocation_cohort: customer_id and the scores only."""
    return scored.where("in_cohort").select(
        "customer_id",
        F.col(investment).alias("investment_score"),
        "investment_pct",
        "composite_score",
        "composite_pct",
        *[F.col(f"{c}_pct").alias(f"{c}_pct") for c in weights],
    )


def _group_rows(
    frame: pd.DataFrame, section: str, group_cols: Sequence[str], *, level: float, min_size: int
) -> pd.DataFrame:
    summed = frame.groupby([*group_cols, REPLICATE_COL], dropna=False, as_index=False)[
        [WEIGHT_COL, "cohort", "roi", "has_roi"]
    ].sum()
    totals = frame.groupby(REPLICATE_COL)[[WEIGHT_COL, "cohort"]].sum().add_prefix("tot_")
    summed = summed.join(totals, on=REPLICATE_COL)

    def lift(f: pd.DataFrame) -> pd.Series:
        rate = f["cohort"] / f[WEIGHT_COL].where(f[WEIGHT_COL] > 0)
        base = f["tot_cohort"] / f[f"tot_{WEIGHT_COL}"]
        return (rate / base.where(base > 0)).astype(float)

    stats: dict[str, Statistic] = {
        "cohort_rate": ratio("cohort", WEIGHT_COL),
        "share_of_cohort": ratio("cohort", "tot_cohort"),
        "share_of_customers": ratio(WEIGHT_COL, f"tot_{WEIGHT_COL}"),
        "lift": lift,
        "roi_mean": ratio("roi", "has_roi"),
    }
    table = summarise(summed, list(group_cols), stats, level=level)
    point = summed[summed[REPLICATE_COL] == 0].set_index(list(group_cols))
    table = table.set_index(list(group_cols))
    table["customers"] = point[WEIGHT_COL].round().astype("int64")
    table["cohort_customers"] = point["cohort"].round().astype("int64")
    table = table[table["customers"] >= min_size].reset_index()
    rows = []
    for _, row in table.iterrows():
        group = str(row[group_cols[0]])
        subgroup = str(row[group_cols[1]]) if len(group_cols) > 1 else None
        for metric in [*stats, "cohort_customers"]:
            rows.append(
                {
                    "section": section,
                    "group": group,
                    "subgroup": subgroup,
                    "metric": metric,
                    "value": float(row[metric]),
                    "value_lo": float(row.get(f"{metric}_lo", np.nan)),
                    "value_hi": float(row.get(f"{metric}_hi", np.nan)),
                    "customers": int(row["customers"]),
                }
            )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def misallocation_summary(
    scored: DataFrame,
    *,
    groups: Sequence[str],
    lifecycle: str,
    decision_level: str,
    pairs: Mapping[str, tuple[str, str]],
    min_group_size: int,
    replicates: int,
    seed: int,
    level: float,
) -> pd.DataFrame:
    """gold.misallocation_summary (long: section, group, subgroup, metric, value, value_lo,
    value_hi, customers). Sections: ``overview``, ``lifecycle``, ``root_cause`` (sorted
    by lift, groups of at least ``min_group_size``, with ``roi_median``), ``roi_by_level``
    and ``correlation`` (``<pair>_pearson`` and ``<pair>_spearman``)."""
    keys = [c for c in [*groups, lifecycle, decision_level] if c in scored.columns]
    fill = {k: F.coalesce(F.col(k).cast("string"), F.lit("unknown")).alias(k) for k in keys}
    prepared = scored.select(
        "customer_id",
        *fill.values(),
        "in_cohort",
        "roi",
        "revenue",
        "clv",
        *{c for p in pairs.values() for c in p},
    )
    values: dict[str, Column | str] = {
        "cohort": F.col("in_cohort").cast("double"),
        "roi": F.coalesce(F.col("roi"), F.lit(0.0)),
        "has_roi": F.col("roi").isNotNull().cast("double"),
        "cohort_revenue": F.when(F.col("in_cohort"), F.col("revenue")).otherwise(0.0),
        "revenue": "revenue",
        "cohort_clv": F.when(F.col("in_cohort"), F.col("clv")).otherwise(0.0),
        "clv": "clv",
    }
    sums = collect_replicate_sums(
        replicate_sums(prepared, keys=keys, values=values, replicates=replicates, seed=seed)
    )
    parts = []
    # overview
    overall = sums.groupby(REPLICATE_COL, as_index=False)[
        [WEIGHT_COL, "cohort", "cohort_revenue", "revenue", "cohort_clv", "clv"]
    ].sum()
    overview = summarise(
        overall,
        [],
        {
            "cohort_share_of_customers": ratio("cohort", WEIGHT_COL),
            "cohort_share_of_revenue": ratio("cohort_revenue", "revenue"),
            "cohort_share_of_clv": ratio("cohort_clv", "clv"),
        },
        level=level,
    ).iloc[0]
    n_all = int(round(overall.loc[overall[REPLICATE_COL] == 0, WEIGHT_COL].iloc[0]))
    n_cohort = int(round(overall.loc[overall[REPLICATE_COL] == 0, "cohort"].iloc[0]))
    parts.append(
        pd.DataFrame(
            [
                {
                    "section": "overview",
                    "group": None,
                    "subgroup": None,
                    "metric": "cohort_customers",
                    "value": float(n_cohort),
                    "value_lo": np.nan,
                    "value_hi": np.nan,
                    "customers": n_all,
                },
                *[
                    {
                        "section": "overview",
                        "group": None,
                        "subgroup": None,
                        "metric": m,
                        "value": overview[m],
                        "value_lo": overview[f"{m}_lo"],
                        "value_hi": overview[f"{m}_hi"],
                        "customers": n_all,
                    }
                    for m in ("cohort_share_of_customers", "cohort_share_of_revenue", "cohort_share_of_clv")
                ],
            ],
            columns=SUMMARY_COLUMNS,
        )
    )
    if lifecycle in keys:
        parts.append(_group_rows(sums, "lifecycle", [lifecycle], level=level, min_size=1))
    root_groups = [g for g in groups if g in keys]
    if root_groups:
        root = _group_rows(sums, "root_cause", root_groups, level=level, min_size=min_group_size)
        medians = collect_group_medians(scored, root_groups, "roi")
        root = pd.concat([root, medians.assign(section="root_cause")], ignore_index=True)
        lifts = root[root["metric"] == "lift"].set_index(["group", "subgroup"])["value"]
        root["_lift"] = [
            lifts.get((g, s), np.nan) for g, s in zip(root["group"], root["subgroup"], strict=True)
        ]
        root = root[root["_lift"].notna()].sort_values(["_lift", "metric"], ascending=[False, True])
        parts.append(root.drop(columns="_lift"))
    if decision_level in keys:
        by_level = _group_rows(sums, "roi_by_level", [decision_level], level=level, min_size=1)
        by_level = by_level[by_level["metric"].isin(["roi_mean", "share_of_customers", "cohort_rate"])]
        medians = collect_group_medians(scored, [decision_level], "roi").assign(section="roi_by_level")
        parts.append(pd.concat([by_level, medians], ignore_index=True))
    parts.append(correlations(scored, pairs, replicates=replicates, seed=seed, level=level))
    return pd.concat([p for p in parts if not p.empty], ignore_index=True)[SUMMARY_COLUMNS]


def collect_group_medians(scored: DataFrame, groups: Sequence[str], col: str) -> pd.DataFrame:
    """The median of ``col`` per group (Spark's percentile_approx, accuracy 10,000: an
    actual value within 1/10,000 in rank of the median); one row per group."""
    keyed = [F.coalesce(F.col(g).cast("string"), F.lit("unknown")).alias(g) for g in groups]
    rows = pd.DataFrame(
        scored.where(F.col(col).isNotNull())
        .groupBy(*keyed)
        .agg(F.percentile_approx(col, 0.5, 10_000).alias("median"), F.count("*").alias("n"))
        .toPandas()
    )
    return pd.DataFrame(
        {
            "group": rows[groups[0]].astype(str),
            "subgroup": rows[groups[1]].astype(str) if len(groups) > 1 else None,
            "metric": f"{col}_median",
            "value": rows["median"].astype(float),
            "value_lo": np.nan,
            "value_hi": np.nan,
            "customers": rows["n"].astype("int64"),
        }
    )


def correlations(
    scored: DataFrame, pairs: Mapping[str, tuple[str, str]], *, replicates: int, seed: int, level: float
) -> pd.DataFrame:
    """Pearson (values) and Spearman (full-sample ranks) correlations with intervals, over
    the customers with both values."""
    values: dict[str, Column | str] = {}
    stats: dict[str, Statistic] = {}
    for name, (x, y) in pairs.items():
        for kind, (cx, cy) in (("pearson", (x, y)), ("spearman", (rank_col(x), rank_col(y)))):
            both = F.col(cx).isNotNull() & F.col(cy).isNotNull()
            vx = F.when(both, F.col(cx).cast("double"))
            vy = F.when(both, F.col(cy).cast("double"))
            p = f"{name}_{kind}"
            values.update(
                {
                    f"{p}__n": both.cast("double"),
                    f"{p}__x": vx,
                    f"{p}__y": vy,
                    f"{p}__xx": vx * vx,
                    f"{p}__yy": vy * vy,
                    f"{p}__xy": vx * vy,
                }
            )
            stats[p] = pearson_from_sums(*(f"{p}__{s}" for s in ("n", "x", "y", "xx", "yy", "xy")))
    sums = collect_replicate_sums(
        replicate_sums(scored, keys=[], values=values, replicates=replicates, seed=seed)
    )
    row = summarise(sums, [], stats, level=level).iloc[0]
    point = sums[sums[REPLICATE_COL] == 0].iloc[0]
    return pd.DataFrame(
        [
            {
                "section": "correlation",
                "group": name.rsplit("_", 1)[0],
                "subgroup": name.rsplit("_", 1)[1],
                "metric": name,
                "value": row[name],
                "value_lo": row[f"{name}_lo"],
                "value_hi": row[f"{name}_hi"],
                "customers": int(round(point[f"{name}__n"])),
            }
            for name in stats
        ],
        columns=SUMMARY_COLUMNS,
    )
