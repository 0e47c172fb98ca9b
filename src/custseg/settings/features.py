"""Settings of stage ``features``."""

from __future__ import annotations

from datetime import date

from pydantic import Field, model_validator

from custseg.contract import SOURCE_SYSTEMS
from custseg.settings.base import Section


class FeaturesConfig(Section):
    """Stage ``features``: events + identity map -> ``gold.customer_features``.

    Every snapshot at date D uses only events before D; a window of w days is [D - w, D).
    """

    as_of: date | None = Field(
        None, description="Snapshot date of the current features; null = the day after the last transaction."
    )
    windows_days: list[int] = Field(
        default_factory=lambda: [30, 90, 180, 365, 1095],
        description="Window lengths in days, ascending; each gives a suffix _<w>d.",
    )
    snapshot_months: int = Field(
        12,
        ge=0,
        le=120,
        description="Month-end snapshots (taken on the 1st of the next month) before as_of, for migration.",
    )
    trend_days: int = Field(90, ge=1, description="Engagement trend: the last N days against the N before.")
    categorical_attributes: list[str] = Field(
        default_factory=lambda: [
            "plan",
            "region",
            "industry",
            "company_size",
            "lifecycle_stage",
            "acquisition_channel",
            "legacy_persona",
            "decision_maker_level",
        ],
        description="customer_attributes columns carried as categorical features.",
    )
    numeric_attributes: list[str] = Field(
        default_factory=lambda: [
            "acquisition_cost",
            "investment_priority_score",
            "onboarding_score",
            "time_to_value_days",
        ],
        description="customer_attributes columns carried as numeric features.",
    )
    attribute_source_priority: list[str] = Field(
        default_factory=lambda: list(SOURCE_SYSTEMS),
        description="Tie-break between a customer's attribute rows: earlier systems win.",
    )

    @model_validator(mode="after")
    def _check(self) -> FeaturesConfig:
        w = self.windows_days
        if not w or any(x < 1 for x in w) or any(a >= b for a, b in zip(w, w[1:], strict=False)):
            raise ValueError(f"features.windows_days must be positive and strictly ascending, got {w}")
        both = set(self.categorical_attributes) & set(self.numeric_attributes)
        if both:
            raise ValueError(f"features: attribute(s) {sorted(both)} are both categorical and numeric")
        return self
