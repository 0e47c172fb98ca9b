"""One candidate segmentation (an algorithm at a k) and the figures it is judged by."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from custseg.config import SegmentConfig
from custseg.segment.kprototypes import KPrototypesModel
from custseg.segment.validate import Stability, smallest_value_effect


@dataclass
class Candidate:
    """Metrics of one (algorithm, k)."""

    algorithm: str
    k: int
    cost: float
    silhouette: float
    seconds: float
    iterations: int = 0
    stability: Stability | None = None
    model: KPrototypesModel | None = None
    sizes: list[int] = field(default_factory=list)
    value: pd.DataFrame | None = None  # value_by_cluster of segment.value_col

    def economically_distinct(self, cfg: SegmentConfig) -> bool | None:
        """Every two clusters differ in mean value by at least ``min_value_effect`` (Cohen's
        d) with non-overlapping intervals; None when not measured."""
        if self.value is None:
            return None
        effect, overlap = smallest_value_effect(self.value)
        return bool(effect >= cfg.min_value_effect and not overlap)

    def stability_table(self, cfg: SegmentConfig) -> pd.DataFrame | None:
        if self.stability is None:
            return None
        table = self.stability.per_cluster(cfg.unstable_below, cfg.stable_from)
        table["customers"] = self.sizes
        return table

    def all_stable(self, cfg: SegmentConfig) -> bool | None:
        table = self.stability_table(cfg)
        return None if table is None else bool((table["verdict"] == "stable").all())

    def row(self, cfg: SegmentConfig) -> dict[str, Any]:
        business = self.stability_table(cfg)
        return {
            "algorithm": self.algorithm,
            "k": self.k,
            "cost": self.cost,
            "silhouette": self.silhouette,
            "iterations": self.iterations,
            "ari_mean": float(self.stability.ari.mean())
            if self.stability and len(self.stability.ari)
            else None,
            "jaccard_min_mean": float(business["jaccard_mean"].min())
            if business is not None and len(business)
            else None,
            "unstable_clusters": int((business["verdict"] == "unstable").sum())
            if business is not None
            else None,
            "all_stable": self.all_stable(cfg),
            "value_effect_min": smallest_value_effect(self.value)[0] if self.value is not None else None,
            "economically_distinct": self.economically_distinct(cfg),
            "seconds": self.seconds,
        }


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float | bool | np.floating | np.integer) and not (
        isinstance(value, float) and math.isnan(value)
    )


def loggable(row: dict[str, Any]) -> dict[str, float]:
    """The numeric figures of a candidate's row, as MLflow metrics."""
    return {m: float(v) for m, v in row.items() if _numeric(v)}
