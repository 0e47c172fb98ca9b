"""Outlier clusters and segment names, both read off the clusters' profiles.

Outliers: a cluster is an outlier (test or bot accounts, data errors) when it is tiny
(at most ``max_share`` of the customers) and its prototype is extreme (some scaled
feature at least ``min_z`` standard deviations from the mean, and not at that feature's
floor: customers who never used the product sit four deviations below the mean usage,
and are customers all the same). Outlier clusters are
labelled ``outlier`` and left out of the business segments.

Names: the business segments are ranked by value (the mean of ``value_col`` per customer,
by default 12-month profit: the figure the report and the CLV cross-check print beside the
name), by engagement (``engagement_col``) and by cost to serve (``cost_col``). The value rank
gives the tier, one word per rank so tiers are monotone in the value figure and no two
segments share a name; the engagement rank gives a word; the segment that costs most to
serve is called costly when its cost per customer is at least ``costly_ratio`` times the
business customers' mean, and a segment whose mean value is negative is called
loss-making. Nothing maps a cluster id to a fixed name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from custseg.contract import OUTLIER


def outlier_clusters(
    sizes: Sequence[int],
    centres: np.ndarray,
    *,
    max_share: float,
    min_z: float,
    floors: Sequence[float] | None = None,
    floor_tol: float = 0.25,
) -> list[bool]:
    """Per cluster: tiny and extreme (``centres`` in the scaled space, z-scores). A value
    within ``floor_tol`` of its column's smallest value (``floors``) is the floor of the
    measure (no usage, no touches), a state many real customers are in, not an anomaly:
    it does not count as extreme however many deviations it lies from the mean."""
    total = max(sum(sizes), 1)
    if centres.size == 0:
        return [False] * len(sizes)
    beyond = np.abs(centres) >= min_z
    if floors is not None:
        beyond &= centres > np.asarray(floors, dtype=float)[None, :] + floor_tol
    extreme = beyond.any(axis=1)
    return [bool(size / total <= max_share and ext) for size, ext in zip(sizes, extreme, strict=True)]


# One tier word per value rank (most valuable first); a tier list per number of segments.
TIERS: dict[int, tuple[str, ...]] = {
    1: ("All",),
    2: ("High-value", "Low-value"),
    3: ("High-value", "Mid-value", "Low-value"),
    4: ("High-value", "Upper-mid-value", "Lower-mid-value", "Low-value"),
    5: ("High-value", "Upper-mid-value", "Mid-value", "Lower-mid-value", "Low-value"),
    6: ("Top-value", "High-value", "Upper-mid-value", "Lower-mid-value", "Low-value", "Bottom-value"),
    7: (
        "Top-value",
        "High-value",
        "Upper-mid-value",
        "Mid-value",
        "Lower-mid-value",
        "Low-value",
        "Bottom-value",
    ),
}


def tiers(m: int) -> tuple[str, ...]:
    """The tier words of m segments, most valuable first (all distinct)."""
    return TIERS.get(m, tuple(f"Value tier {i + 1} of {m}" for i in range(m)))


def _engagement_word(rank: int, m: int) -> str:
    """rank 0 = most engaged of m segments."""
    position = rank / max(m - 1, 1)
    return "engaged" if position < 1 / 3 else ("casual" if position <= 2 / 3 else "dormant")


def segment_names(
    profiles: pd.DataFrame,
    *,
    value_col: str,
    engagement_col: str,
    cost_col: str | None = None,
    costly_ratio: float = 1.5,
    outlier_col: str = "is_outlier",
) -> dict[int, str]:
    """A name per cluster of ``profiles`` (one row per cluster: ``cluster``, ``customers``,
    the mean of every named column, ``is_outlier``); distinct among the business segments."""
    names: dict[int, str] = {int(c): OUTLIER for c in profiles.loc[profiles[outlier_col], "cluster"]}
    business = profiles.loc[~profiles[outlier_col]].copy()
    m = len(business)
    if m == 0:
        return names
    value_rank = business[value_col].rank(ascending=False, method="first").astype(int) - 1
    engagement_rank = business[engagement_col].rank(ascending=False, method="first").astype(int) - 1
    words = tiers(m)
    for row, v_rank, e_rank in zip(business.itertuples(), value_rank, engagement_rank, strict=True):
        name = f"{words[v_rank]} {_engagement_word(int(e_rank), m)}"
        names[int(row.cluster)] = name
    qualifiers: dict[int, list[str]] = {int(c): [] for c in business["cluster"]}
    if cost_col and m > 1:
        weights = business["customers"] if "customers" in business else pd.Series(1.0, business.index)
        mean_cost = float((business[cost_col] * weights).sum() / weights.sum())
        worst = business.loc[business[cost_col].idxmax()]
        if mean_cost > 0 and worst[cost_col] >= costly_ratio * mean_cost:
            qualifiers[int(worst["cluster"])].append("costly to serve")
    for row in business.itertuples():
        if getattr(row, value_col) < 0:
            qualifiers[int(row.cluster)].append("loss-making")
    for cluster, extra in qualifiers.items():
        if extra:
            names[cluster] += ", " + ", ".join(extra)
    found = [names[int(c)] for c in business["cluster"]]
    assert len(set(found)) == m, found  # one tier word per value rank
    return names
