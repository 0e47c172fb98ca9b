"""Settings of stages ``segment`` and ``score``."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, field_validator, model_validator

from custseg import catalog
from custseg.expressions import NAME, UnsafeExpressionError, safe_expression
from custseg.settings.base import Section

SEGMENT_NUMERIC = (
    "orders_per_active_year",
    "avg_order_value",
    "discount_share_1095d",
    "cost_of_goods_rate",
    "support_per_active_year",
    "unresolved_rate",
    "active_day_share",
    "sessions_per_active_day",
    "max_daily_features_used_1095d",
    "touches_per_active_year",
)
# Rates over the customer's active span in the longest window (first event to last own
# activity, at least 30 days), so a customer who left long ago compares by how it behaved
# while active; every null has a defined fill. docs/segment.md has the evidence.
_ACTIVE_YEARS = "(greatest(coalesce(active_span_days, 0), 30) / 365.25)"
SEGMENT_DERIVED = {
    "orders_per_active_year": f"orders_1095d / {_ACTIVE_YEARS}",
    "avg_order_value": "coalesce(avg_order_value, 0.0)",
    "cost_of_goods_rate": "CASE WHEN gross_sales_1095d > 0 THEN cogs_1095d / gross_sales_1095d ELSE 0.0 END",
    "support_per_active_year": f"support_contacts_1095d / {_ACTIVE_YEARS}",
    "unresolved_rate": "1.0 - coalesce(support_resolution_rate, 1.0)",
    "active_day_share": "active_days_1095d / greatest(coalesce(active_span_days, 0), 30)",
    "sessions_per_active_day": "sessions_1095d / greatest(active_days_1095d, 1)",
    "touches_per_active_year": f"touches_1095d / {_ACTIVE_YEARS}",
}


class SegmentConfig(Section):
    """Stage ``segment``: gold.customer_features -> k-prototypes segments, chosen by
    silhouette and bootstrap stability, with MLlib comparators, registered in MLflow."""

    @field_validator("numeric_features", "log_features", "categorical_features")
    @classmethod
    def _plain_names(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not NAME.match(n)]
        if bad:
            raise ValueError(f"{bad}: a feature name is letters, digits and _ (it becomes a SQL column)")
        return names

    @field_validator("derived")
    @classmethod
    def _safe_derived(cls, derived: dict[str, str]) -> dict[str, str]:
        out = {}
        for name, text in derived.items():
            if not NAME.match(name):
                raise ValueError(f"derived name {name!r}: letters, digits and _ only")
            try:
                out[name] = safe_expression(text)
            except UnsafeExpressionError as err:
                raise ValueError(f"derived {name!r}: {err}") from None
        return out

    features_table: str = Field(
        catalog.CUSTOMER_FEATURES, description="Feature table (customer_id, snapshot_date)."
    )
    snapshot_date: date | None = Field(None, description="Snapshot to segment; null = the latest.")
    numeric_features: list[str] = Field(
        list(SEGMENT_NUMERIC), min_length=1, description="Numeric inputs (feature columns or derived names)."
    )
    derived: dict[str, str] = Field(
        dict(SEGMENT_DERIVED),
        validate_default=True,
        description="Spark SQL expressions over the feature table, computed first (saved with the model); "
        "a name that is also a feature column replaces it (how nulls are filled).",
    )
    log_features: list[str] = Field(
        [
            "orders_per_active_year",
            "avg_order_value",
            "support_per_active_year",
            "sessions_per_active_day",
            "max_daily_features_used_1095d",
            "touches_per_active_year",
        ],
        description="Numeric inputs given a signed log1p before standardising (heavy-tailed money, counts).",
    )
    categorical_features: list[str] = Field(
        ["plan", "company_size", "industry"], description="Categorical inputs (nulls become 'unknown')."
    )
    k_min: int = Field(3, ge=2, description="Smallest k of the sweep.")
    k_max: int = Field(7, ge=2, description="Largest k of the sweep.")
    init_mode: Literal["cao", "huang", "k-means||", "random"] = Field(
        "k-means||", description="KPrototypes initMode."
    )
    n_init: int = Field(
        3,
        ge=1,
        description="KPrototypes nInit: starts per fit (bootstrap refits too), the lowest cost kept; "
        "one start fell in a worse local optimum at k = 4 on the reference preset.",
    )
    max_iter: int = Field(50, ge=1, description="KPrototypes maxIter.")
    tol: float = Field(
        1e-4, ge=0, description="KPrototypes tol: largest centre shift that counts as converged."
    )
    gamma: float | None = Field(
        None, gt=0, description="Weight of a categorical mismatch; null = kmodes' default."
    )
    silhouette_rows: int = Field(3000, ge=10, le=20000, description="Seeded sample for the exact silhouette.")
    bootstrap_resamples: int = Field(5, ge=0, description="B of the bootstrap stability (0 = skip).")
    bootstrap_rows: int = Field(
        50000, ge=100, description="Expected rows per bootstrap resample (all rows when the data has fewer)."
    )
    unstable_below: float = Field(0.6, ge=0, le=1, description="Mean Jaccard below this: cluster unstable.")
    stable_from: float = Field(0.75, ge=0, le=1, description="Mean Jaccard at or above this: cluster stable.")
    selection_rule: Literal[
        "distinct_stable", "largest_stable", "silhouette_if_stable", "silhouette", "stability"
    ] = Field(
        "distinct_stable",
        description="distinct_stable: the largest k whose business clusters are all stable, economically "
        "distinct (min_value_effect) and within silhouette_floor of the best silhouette (else the best "
        "silhouette among the stable k, warned); largest_stable: the largest k whose clusters are all "
        "stable (at scale it kept splitting segments of the same value); silhouette_if_stable: largest "
        "silhouette among those k (silhouette favours few clusters: it merged the 8 % core segment into a "
        "larger one); silhouette: largest silhouette; stability: largest smallest mean Jaccard.",
    )
    min_value_effect: float = Field(
        0.5,
        ge=0,
        description="distinct_stable: every two segments' mean value_col must differ by at least this "
        "effect size (Cohen's d, pooled standard deviation; 0.5 is Cohen's 'medium') with "
        "non-overlapping 95 % intervals.",
    )
    silhouette_floor: float = Field(
        0.95, ge=0, le=1, description="distinct_stable: a k's silhouette must be at least this x the best."
    )
    outlier_probe_k: int = Field(
        12,
        ge=0,
        description="Outlier screen: k of the probe fit whose tiny extreme clusters are outliers (0 = off).",
    )
    outlier_probe_rows: int = Field(
        1_000_000,
        ge=100,
        description="Expected rows of the probe's seeded sample (the default covers the reference workload: "
        "on a 50k sample the 0.3 % bots did not form a cluster of their own).",
    )
    outlier_max_share: float = Field(
        0.01, ge=0, le=1, description="Outlier cluster: at most this share of rows ..."
    )
    outlier_min_z: float = Field(
        4.0, gt=0, description="... and some scaled prototype value at least this far out."
    )
    comparators: list[Literal["kmeans", "bisecting_kmeans", "gaussian_mixture"]] = Field(
        ["kmeans", "bisecting_kmeans"],
        description="MLlib algorithms run beside k-prototypes. gaussian_mixture is not a default: it was "
        "the worst at every k of every run, and once hung in LAPACK's eigen-decomposition (docs/segment.md).",
    )
    comparator_max_iter: int = Field(20, ge=1, description="maxIter of the MLlib comparators.")
    comparator_rows: int = Field(
        100_000,
        ge=0,
        description="The comparators are fitted on a seeded sample of about this many rows (0 = all "
        "rows); their partition of all rows is scored with the same cost as k-prototypes'. Fitting "
        "the three on all 480k rows of the reference preset took ~60 % of the stage.",
    )
    value_col: str = Field(
        "profit_365d",
        description="Naming: the value tier ranks segments by the mean of this feature per customer "
        "(12-month profit: gross margin - cost to serve); the CLV cross-check ranks by the same figure.",
    )
    engagement_col: str = Field("active_days_365d", description="Naming: engagement word from this.")
    cost_col: str | None = Field("cost_to_serve_365d", description="Naming: cost-to-serve word from this.")
    costly_ratio: float = Field(
        1.5,
        gt=1,
        description="Naming: the segment costing most to serve is 'costly to serve' when its mean "
        "cost_col is at least this multiple of the business customers' mean.",
    )
    persona_col: str | None = Field(
        "legacy_persona", description="Legacy personas to cross-tabulate; null = none."
    )
    register_model: bool = Field(True, description="Log and register the chosen pipeline in MLflow.")
    model_name: str = Field("custseg-segmentation", description="Registered model name.")
    alias: str = Field("champion", description="Alias set on the registered version.")
    score_output: str = Field(
        catalog.SEGMENT_SNAPSHOTS, description="jobs/score.py: table of segments per customer and snapshot."
    )

    @model_validator(mode="after")
    def _check(self) -> SegmentConfig:
        if self.k_max < self.k_min:
            raise ValueError(f"segment.k_max ({self.k_max}) < segment.k_min ({self.k_min})")
        unknown = [c for c in self.log_features if c not in self.numeric_features]
        if unknown:
            raise ValueError(f"segment.log_features not in segment.numeric_features: {unknown}")
        if self.unstable_below > self.stable_from:
            raise ValueError("segment.unstable_below must not exceed segment.stable_from")
        return self
