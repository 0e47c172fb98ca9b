"""Settings of stage ``clv``."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field

from custseg import catalog
from custseg.settings.base import Section


class ClvConfig(Section):
    """Stage ``clv``: orders -> BG/NBD + Gamma-Gamma -> ``gold.customer_clv``, a holdout
    check and the segment cross-check."""

    observation_end: date | None = Field(
        None, description="Last day of the observation period (inclusive); null = the last order's day."
    )
    time_unit: Literal["D", "W"] = Field("D", description="Period of the summaries: a day or a Monday week.")
    holdout_days: int = Field(
        180,
        ge=1,
        description="Out-of-sample check: fit on orders up to observation_end - holdout_days, compare after.",
    )
    horizon_months: int = Field(
        12, ge=1, le=240, description="CLV horizon in months (30 days or 4.345 weeks)."
    )
    discount_rate: float = Field(0.01, ge=0, le=1, description="Monthly discount rate of the CLV.")
    penalizer: float = Field(
        0.0, ge=0, description="L2 penalty on the parameters (as lifetimes' penalizer_coef)."
    )
    max_tuples: int = Field(
        2_000_000,
        ge=1,
        description="Most distinct (frequency, recency, T) tuples taken to the driver for the BG/NBD fit.",
    )
    frequency_buckets: int = Field(
        8,
        ge=2,
        description="Holdout table: calibration frequencies 0 .. n-1, the last bucket holding the rest.",
    )
    segments_table: str = Field(
        catalog.SEGMENT_ASSIGNMENTS,
        description="Segment assignments to cross-check (customer_id + segment_col); skipped when absent.",
    )
    segment_col: str = Field(
        "segment_name", description="Segment column of segments_table (rows with is_outlier are left out)."
    )
