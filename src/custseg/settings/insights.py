"""Settings of stage ``insights``: windows, bootstrap, scenarios and recommendation rules."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from custseg.settings.base import Section

ScenarioKind = Literal["support_shift", "stop_discounts"]
SEGMENT_SELECTORS = ("all", "costly", "loss_making", "top_value", "lowest_value")


class ScenarioConfig(Section):
    """A what-if on cost to serve (``gold.service_scenarios``), stored with its figures.

    ``segments`` are segment names or selectors: ``all``, ``costly`` (highest support cost
    per customer), ``loss_making`` (negative mean profit), ``top_value`` and
    ``lowest_value`` (highest and lowest mean profit per customer).
    """

    name: str
    kind: ScenarioKind = Field(
        description="support_shift: move `share` of `from_channel` support minutes to `to_channel` at "
        "its observed cost per minute; stop_discounts: stop the discounts, keeping the discount "
        "as revenue, and lose `retention_loss` of the segment's profit"
    )
    segments: list[str] = Field(default_factory=lambda: ["costly"], min_length=1)
    from_channel: str = "phone"
    to_channel: str = "chat"
    share: float = Field(0.5, ge=0, le=1, description="support_shift: share of from_channel minutes moved.")
    retention_loss: float = Field(
        0.0, ge=0, le=1, description="stop_discounts: share of the segment's customers assumed lost."
    )


class ConditionConfig(Section):
    """One test of a recommendation rule on a metric."""

    metric: str = Field(
        description="segment scope: a column of gold.segment_profiles (with _lo/_hi intervals); "
        "global scope: a metric of gold.insight_metrics"
    )
    op: Literal["max", "min", ">", ">=", "<", "<="]
    threshold: float | Literal["all_customers"] | None = Field(
        None, description="A number, 'all_customers' (the all-customers row), or null for max / min."
    )

    @model_validator(mode="after")
    def _check(self) -> ConditionConfig:
        if self.op in ("max", "min") and self.threshold is not None:
            raise ValueError(f"condition on {self.metric}: op {self.op} takes no threshold")
        if self.op not in ("max", "min") and self.threshold is None:
            raise ValueError(f"condition on {self.metric}: op {self.op} needs a threshold")
        return self


class RuleConfig(Section):
    """A recommendation: every condition holds -> the action, citing each metric."""

    name: str
    action: str
    scope: Literal["segment", "global"] = "segment"
    conditions: list[ConditionConfig] = Field(min_length=1)


def _c(metric: str, op: str, threshold: float | str | None = None) -> ConditionConfig:
    return ConditionConfig.model_validate({"metric": metric, "op": op, "threshold": threshold})


def _default_scenarios() -> list[ScenarioConfig]:
    return [
        ScenarioConfig(name="automate_support", kind="support_shift", segments=["costly"], share=0.5),
        ScenarioConfig(
            name="stop_discounts", kind="stop_discounts", segments=["costly"], retention_loss=0.10
        ),
    ]


def _default_rules() -> list[RuleConfig]:
    return [
        RuleConfig(
            name="named_account_team",
            action="Give them a named account team",
            conditions=[_c("profit_mean", "max")],
        ),
        RuleConfig(
            name="automated_journeys",
            action="Serve them through automated journeys",
            conditions=[_c("profit_mean", "<", 0.0)],
        ),
        RuleConfig(
            name="stop_blanket_discounts",
            action="Stop blanket discounts",
            conditions=[_c("discount_share", ">", 0.15), _c("clv_mean", "<", "all_customers")],
        ),
        RuleConfig(
            name="cut_cost_to_serve",
            action="Move support to self-service and chat",
            conditions=[_c("cost_to_serve_share_of_revenue", ">", 0.25)],
        ),
        RuleConfig(
            name="retention_priority",
            action="Prioritise retention outreach",
            conditions=[_c("clv_at_risk_total", "max")],
        ),
        RuleConfig(
            name="recalibrate_investment_score",
            action="Recalibrate the investment priority score",
            scope="global",
            conditions=[_c("investment_vs_clv_spearman", "<", 0.2)],
        ),
    ]


class InsightsConfig(Section):
    """Stage ``insights``: gold and silver tables -> the business answers (docs/insights.md)."""

    replicates: int = Field(200, ge=0, description="B of the one-pass Poisson bootstrap (0 = no intervals).")
    level: float = Field(0.95, gt=0, lt=1, description="Level of every interval.")
    window_days: int = Field(
        365, ge=1, description="Window of profiles and cost to serve (one of features.windows_days)."
    )
    curve_bins: int = Field(1000, ge=10, description="Rank bins of the concentration figures (1/bins each).")
    top_shares: list[float] = Field(
        default_factory=lambda: [0.01, 0.05, 0.08, 0.10, 0.20],
        description="Top shares of customers reported.",
    )
    headline_top: float = Field(0.08, gt=0, lt=1, description="The top share the headline sentence names.")
    profile_attributes: list[str] = Field(
        default_factory=lambda: [
            "dominant_channel",
            "dominant_product_category",
            "plan",
            "region",
            "industry",
            "company_size",
            "legacy_persona",
        ],
        description="Categorical features whose mix is profiled and searched for traits.",
    )
    max_values: int = Field(40, ge=2, description="Most values per attribute kept; the rest are '(other)'.")
    trait_min_share: float = Field(
        0.05, ge=0, le=1, description="A trait must hold for at least this share of its segment."
    )
    traits_per_segment: int = Field(5, ge=1, description="Top traits (by lift) flagged per segment.")
    investment_col: str = "investment_priority_score"
    investment_top: float = Field(
        0.30, gt=0, lt=1, description="Misallocation: top share by investment score."
    )
    performance_bottom: float = Field(
        0.50, gt=0, lt=1, description="Misallocation: bottom share by the composite performance score."
    )
    performance_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "monetary_365d": 0.40,
            "max_daily_features_used_365d": 0.35,
            "resolution": 0.25,
        },
        description="Composite performance: weight of each column's percentile rank ('resolution' = "
        "support resolution rate, 1 without contacts).",
    )
    root_cause_groups: list[str] = Field(default_factory=lambda: ["industry", "company_size"])
    min_group_size: int = Field(30, ge=1, description="Root causes: smallest group reported.")
    onboarding_col: str = "onboarding_score"
    adoption_col: str = "max_daily_features_used_365d"
    time_to_value_col: str = "time_to_value_days"
    decision_level_col: str = "decision_maker_level"
    lifecycle_col: str = "lifecycle_stage"
    acquisition_cost_col: str = "acquisition_cost"
    alive_threshold: float = Field(0.5, gt=0, lt=1, description="Churn risk: probability alive below this.")
    churn_features: list[str] = Field(
        default_factory=lambda: [
            "days_since_last_active",
            "recency_days",
            "active_days_365d",
            "orders_365d",
            "sessions_trend",
            "support_contacts_365d",
            "touches_365d",
        ],
        description="Features ranked by their rank correlation with the probability of being alive.",
    )
    kpi_z_threshold: float = Field(3.5, gt=0, description="Robust z from which a KPI month is an anomaly.")
    forecast_months: int = Field(3, ge=1, le=24)
    scenarios: list[ScenarioConfig] = Field(default_factory=_default_scenarios)
    recommendations: list[RuleConfig] = Field(default_factory=_default_rules)

    @model_validator(mode="after")
    def _check(self) -> InsightsConfig:
        if abs(sum(self.performance_weights.values()) - 1.0) > 1e-9:
            raise ValueError(f"insights.performance_weights must sum to 1, got {self.performance_weights}")
        if any(not 0 < q < 1 for q in self.top_shares):
            raise ValueError(f"insights.top_shares must lie in (0, 1), got {self.top_shares}")
        names = [s.name for s in self.scenarios]
        if len(set(names)) != len(names):
            raise ValueError(f"insights.scenarios: names must be unique, got {names}")
        return self
