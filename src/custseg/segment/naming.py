"""Outlier clusters and segment names, both read off the clusters' profiles.

Outliers: a cluster is an outlier (test or bot accounts, data errors) when it is tiny
(at most ``max_share`` of the customers) and its prototype is extreme (some scaled
feature at least ``min_z`` standard deviations from the mean). Outlier clusters are
labelled ``outlier`` and left out of the business segments.

Names: the business segments are ranked by value (the mean rank of their mean values in
``value_cols``, e.g. monetary and gross margin), by engagement (``engagement_col``) and by
cost to serve per unit of value; the value rank gives the tier, the engagement rank a
word, and the segment that costs most to serve per unit of value (when that cost exceeds
half its value) is called costly. Nothing maps a cluster id to a fixed name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

OUTLIER = "outlier"


def outlier_clusters(
    sizes: Sequence[int], centres: np.ndarray, *, max_share: float, min_z: float
) -> list[bool]:
    """Per cluster: tiny and extreme (``centres`` in the scaled space, z-scores)."""
    total = max(sum(sizes), 1)
    extreme = np.abs(centres).max(axis=1) >= min_z if centres.size else np.zeros(len(sizes), bool)
    return [bool(size / total <= max_share and ext) for size, ext in zip(sizes, extreme, strict=True)]


def _tiers(m: int) -> list[str]:
    if m == 1:
        return ["All"]
    if m == 2:
        return ["High-value", "Low-value"]
    if m == 3:
        return ["High-value", "Mid-value", "Low-value"]
    return [
        "High-value",
        *(["Upper-mid-value", "Lower-mid-value"] if m == 4 else ["Mid-value"] * (m - 2)),
        "Low-value",
    ]


def _engagement_word(rank: int, m: int) -> str:
    """rank 0 = most engaged of m segments."""
    position = rank / max(m - 1, 1)
    return "engaged" if position < 1 / 3 else ("casual" if position <= 2 / 3 else "dormant")


def segment_names(
    profiles: pd.DataFrame,
    *,
    value_cols: Sequence[str],
    engagement_col: str,
    cost_col: str | None = None,
    outlier_col: str = "is_outlier",
) -> dict[int, str]:
    """A name per cluster of ``profiles`` (one row per cluster: ``cluster``, the mean of
    every named column, ``is_outlier``); unique among the business segments."""
    names: dict[int, str] = {int(c): OUTLIER for c in profiles.loc[profiles[outlier_col], "cluster"]}
    business = profiles.loc[~profiles[outlier_col]].copy()
    m = len(business)
    if m == 0:
        return names
    value_rank = business[list(value_cols)].rank(ascending=False, method="first").mean(axis=1)
    business["value_rank"] = value_rank.rank(method="first").astype(int) - 1
    business["engagement_rank"] = (
        business[engagement_col].rank(ascending=False, method="first").astype(int) - 1
    )
    tiers = _tiers(m)
    base = {
        int(r.cluster): f"{tiers[int(r.value_rank)]} {_engagement_word(int(r.engagement_rank), m)}"
        for r in business.itertuples()
    }
    if cost_col and m > 1:
        value = business[list(value_cols)[-1]].clip(lower=1e-9)
        ratio = business[cost_col] / value
        worst = business.loc[ratio.idxmax()]
        if ratio.max() > 0.5:
            base[int(worst.cluster)] += ", costly to serve"
    counts: dict[str, int] = {}
    for cluster in business.sort_values("value_rank")["cluster"]:
        name = base[int(cluster)]
        counts[name] = counts.get(name, 0) + 1
        names[int(cluster)] = name if counts[name] == 1 else f"{name} {counts[name]}"
    return names
