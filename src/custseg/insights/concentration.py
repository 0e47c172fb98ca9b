"""Value concentration: Gini, top-share, Lorenz and whale curves, with bootstrap intervals.

Customers are ranked once on each measure (``custseg.insights.ranks``) and cut into
``bins`` rank bins of equal size (0.1 % of customers each by default). One bootstrap pass
gives, per measure, bin and replicate, the weighted customers and value; every figure of a
replicate is read from those sums in rank order, so nothing per customer reaches the
driver (measures x bins x (B + 1) rows do).

- Full-sample figures are exact: the Gini from ``2 sum(rank * x) / (n sum(x)) - (n + 1) / n``;
  top shares and curve points are exact where the share falls on a bin edge (1 %, 5 %, ...
  of the customers do whenever bins is a multiple of 100 and divides the customer count;
  elsewhere they are interpolated linearly inside one bin).
- Replicates treat the customers of one bin as equal in value when they order them (the
  bootstrap reweights customers, it does not reorder them); the Gini error this leaves is
  at most 1 / bins (a bin's own inequality, weighted by its squared share of customers),
  and the full sample's exact-minus-binned difference is added to every replicate so the
  interval is centred on the exact figure.
- The whale curve ranks customers by profit, largest first: its peak is where the
  cumulative profit is highest (all customers with positive profit), as a share of
  customers and a multiple of total profit; the tail destroys the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from custseg.columns import require_columns
from custseg.insights.bootstrap import REPLICATE_COL, WEIGHT_COL, collect_replicate_sums, replicate_sums
from custseg.insights.ranks import rank_col, with_ranks

TOP_SHARES = (0.01, 0.05, 0.08, 0.10, 0.20)


def top_label(q: float) -> str:
    """``top_8_share`` for 0.08."""
    return f"top_{round(q * 100):d}"


def concentration_sums(
    df: DataFrame,
    measures: Sequence[str],
    *,
    replicates: int,
    seed: int,
    bins: int = 1000,
    id_col: str = "customer_id",
) -> pd.DataFrame:
    """Per measure, rank bin and replicate: weight, value, rank x value and the positive
    and negative parts (collected: measures x bins x (B + 1) rows). Null values are left
    out of their measure."""
    if bins < 1:
        raise ValueError(f"concentration: bins must be >= 1, got {bins}")
    require_columns(df, [id_col, *measures], "concentration")
    values = df.select(id_col, *measures)
    ranked = values.join(with_ranks(values, measures, id_col=id_col), id_col, how="inner")
    counts = ranked.select(*[F.count(rank_col(m)).alias(m) for m in measures]).first()
    assert counts is not None
    stacked = ranked.select(
        id_col,
        F.explode(
            F.array(
                *[
                    F.struct(
                        F.lit(m).alias("measure"),
                        F.col(m).cast("double").alias("x"),
                        F.col(rank_col(m)).alias("r"),
                        F.lit(int(counts[m])).alias("n"),
                    )
                    for m in measures
                ]
            )
        ).alias("s"),
    ).select(id_col, "s.*")
    stacked = stacked.where(F.col("r").isNotNull()).withColumn(
        "bin", F.least(F.floor((F.col("r") - 1) * bins / F.col("n")), F.lit(bins - 1)).cast("int")
    )
    sums = replicate_sums(
        stacked,
        keys=["measure", "bin"],
        values={
            "x": "x",
            "rx": F.col("r") * F.col("x"),
            "pos": F.greatest(F.col("x"), F.lit(0.0)),
            "neg": F.least(F.col("x"), F.lit(0.0)),
            "npos": (F.col("x") > 0).cast("double"),
        },
        replicates=replicates,
        seed=seed,
        id_col=id_col,
    )
    return collect_replicate_sums(sums)


def _top_value(w: np.ndarray, x: np.ndarray, share: float) -> float:
    """Value of the top ``share`` of the weight, bins in descending order, interpolated."""
    cum_w = np.cumsum(w)
    target = share * cum_w[-1]
    k = int(np.searchsorted(cum_w, target, side="left"))
    k = min(k, len(w) - 1)
    before_w = cum_w[k - 1] if k > 0 else 0.0
    before_x = float(np.sum(x[:k]))
    inside = (target - before_w) / w[k] if w[k] > 0 else 0.0
    return before_x + inside * float(x[k])


def _curve(w: np.ndarray, x: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative share of value at customer shares 0, 1/points, .., 1 (bins in order)."""
    shares = np.linspace(0.0, 1.0, points + 1)
    cum_w = np.concatenate([[0.0], np.cumsum(w)]) / max(np.sum(w), 1e-300)
    cum_x = np.concatenate([[0.0], np.cumsum(x)])
    total = cum_x[-1]
    values = np.interp(shares, cum_w, cum_x)
    return shares, values / total if total != 0 else np.full_like(values, np.nan)


def _binned_gini(w: np.ndarray, x: np.ndarray) -> float:
    total_w, total_x = float(np.sum(w)), float(np.sum(x))
    if total_w <= 0 or total_x == 0:
        return float("nan")
    before = np.concatenate([[0.0], np.cumsum(w)[:-1]])
    return float(np.sum(x * (2 * before + w - total_w)) / (total_w * total_x))


def concentration_tables(
    sums: pd.DataFrame,
    *,
    tops: Sequence[float] = TOP_SHARES,
    points: int = 100,
    whale_measure: str | None = "profit",
    level: float = 0.95,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(concentration, curves)`` from ``concentration_sums``.

    concentration: measure, metric, value, value_lo, value_hi, customers; metrics
    ``total``, ``gini``, ``top_<q>_share`` and ``top_<q>_total`` for each top share,
    ``rest_<q>_total`` (what the other customers add up to), and for ``whale_measure``
    ``whale_peak_customer_share``, ``whale_peak_multiple``, ``tail_destroyed`` (the money
    the customers with negative value take away, as a positive number) and
    ``negative_share``. curves: measure, curve (``lorenz``, ascending; ``whale``, largest
    first), customer_share, cumulative_share (of the measure's total).
    """
    rows: list[dict[str, object]] = []
    curves: list[pd.DataFrame] = []
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
    for measure, frame in sums.groupby("measure", sort=True):
        per_rep: dict[str, list[float]] = {}
        point: dict[str, float] = {}
        exact_gini = float("nan")
        binned_point = float("nan")
        for rep, rep_frame in frame.groupby(REPLICATE_COL, sort=True):
            ordered = rep_frame.sort_values("bin")
            w = ordered[WEIGHT_COL].to_numpy(float)
            x = ordered["x"].to_numpy(float)
            total = float(x.sum())
            figures: dict[str, float] = {"total": total, "gini": _binned_gini(w, x)}
            desc_w, desc_x = w[::-1], x[::-1]
            for q in tops:
                top = _top_value(desc_w, desc_x, q)
                figures[f"{top_label(q)}_total"] = top
                figures[f"rest_{round(q * 100):d}_total"] = total - top
                figures[f"{top_label(q)}_share"] = top / total if total != 0 else float("nan")
            if measure == whale_measure:
                pos, neg = float(ordered["pos"].sum()), float(ordered["neg"].sum())
                figures["whale_peak_customer_share"] = float(ordered["npos"].sum()) / float(w.sum())
                figures["whale_peak_multiple"] = pos / total if total != 0 else float("nan")
                figures["tail_destroyed"] = -neg
                figures["negative_share"] = 1.0 - figures["whale_peak_customer_share"]
            if rep == 0:
                n = float(w.sum())
                binned_point = figures["gini"]
                exact_gini = (
                    2 * float(ordered["rx"].sum()) / (n * total) - (n + 1) / n if total != 0 else float("nan")
                )
                figures["gini"] = exact_gini
                point = figures
                customers = int(round(n))
                shares, lorenz = _curve(w, x, points)
                curves.append(
                    pd.DataFrame(
                        {
                            "measure": measure,
                            "curve": "lorenz",
                            "customer_share": shares,
                            "cumulative_share": lorenz,
                        }
                    )
                )
                if measure == whale_measure:
                    shares, whale = _curve(desc_w, desc_x, points)
                    curves.append(
                        pd.DataFrame(
                            {
                                "measure": measure,
                                "curve": "whale",
                                "customer_share": shares,
                                "cumulative_share": whale,
                            }
                        )
                    )
            else:
                for key, value in figures.items():
                    per_rep.setdefault(key, []).append(value)
        shift = exact_gini - binned_point
        if "gini" in per_rep:
            per_rep["gini"] = [g + shift for g in per_rep["gini"]]
        for key, value in point.items():
            boot = np.array([v for v in per_rep.get(key, []) if np.isfinite(v)])
            rows.append(
                {
                    "measure": measure,
                    "metric": key,
                    "value": value,
                    "value_lo": float(np.quantile(boot, lo_q)) if len(boot) else float("nan"),
                    "value_hi": float(np.quantile(boot, hi_q)) if len(boot) else float("nan"),
                    "customers": customers,
                }
            )
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)
