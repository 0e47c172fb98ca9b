"""Is a clustering real? Silhouette, bootstrap stability, economic distinctness, cost of
any partition.

- Silhouette uses the clustering's own mixed dissimilarity (squared Euclidean + gamma x
  mismatches) on a bounded, seeded sample, exactly (every pair of the sample).
- Bootstrap stability follows fpc's ``clusterboot``: B resamples with replacement, each
  clustered afresh; each original cluster's Jaccard similarity to its best-matching
  bootstrap cluster over the resampled rows (duplicates counted, as clusterboot does),
  and the adjusted Rand index of the two partitions, all from k x k contingency tables
  counted in Spark.
- Economic distinctness: each cluster's mean value per customer (e.g. 12-month profit)
  with its interval, and the smallest effect size (Cohen's d) between any two clusters:
  a split that separates customers of nearly the same value justifies no different
  service.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.storagelevel import StorageLevel

from custseg.sampling import hash_order, hash_resample
from custseg.segment.blocks import encode_categories
from custseg.segment.kprototypes import KPrototypes, dissimilarity_columns

log = logging.getLogger(__name__)

_RESAMPLE = "_resample"


# --- silhouette -------------------------------------------------------------------------


def mixed_dissimilarity_matrix(x_num: np.ndarray, x_cat: np.ndarray, gamma: float) -> np.ndarray:
    """All pairs of a (small) sample: squared Euclidean + gamma x categorical mismatches."""
    sq = (x_num**2).sum(axis=1)
    num = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x_num @ x_num.T, 0.0)
    cat = np.zeros_like(num)
    for a in range(x_cat.shape[1]):
        cat += x_cat[:, a][:, None] != x_cat[:, a][None, :]
    out = num + gamma * cat
    np.fill_diagonal(out, 0.0)
    return np.asarray(out, dtype=float)


def silhouette_samples(distance: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Silhouette of every point from a precomputed dissimilarity matrix (sklearn's rules:
    a point alone in its cluster scores 0)."""
    labels = np.asarray(labels)
    clusters, codes = np.unique(labels, return_inverse=True)
    onehot = np.zeros((len(labels), len(clusters)))
    onehot[np.arange(len(labels)), codes] = 1.0
    sums = distance @ onehot
    sizes = onehot.sum(axis=0)
    own = sizes[codes]
    a = np.where(own > 1, sums[np.arange(len(labels)), codes] / np.maximum(own - 1, 1), 0.0)
    others = np.where(onehot.astype(bool), np.inf, sums / sizes[None, :])
    b = others.min(axis=1) if len(clusters) > 1 else np.zeros(len(labels))
    s = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-300), 0.0)
    return np.asarray(np.nan_to_num(s), dtype=float)


def mixed_silhouette(x_num: np.ndarray, x_cat: np.ndarray, labels: np.ndarray, gamma: float) -> float:
    """Mean silhouette of a sample under the mixed dissimilarity; 0 for one cluster."""
    if len(np.unique(labels)) < 2:
        return 0.0
    vocab = [sorted(set(x_cat[:, a])) for a in range(x_cat.shape[1])]
    codes = encode_categories(x_cat, vocab)
    return float(silhouette_samples(mixed_dissimilarity_matrix(x_num, codes, gamma), labels).mean())


def draw_sample(df: DataFrame, rows: int, seed: int, key: str) -> DataFrame:
    """A bounded, seeded sample: rows whose seeded hash of ``key`` is smallest (stable
    whatever the partitioning, so every candidate model is judged on the same rows)."""
    return df.orderBy(hash_order([key], seed)).limit(rows)


# --- contingency tables: Jaccard and ARI ------------------------------------------------


def contingency(
    df: DataFrame, left: str, right: str, k_left: int, k_right: int, *, by: str | None = None, n_by: int = 1
) -> np.ndarray:
    """k_left x k_right counts of (left, right) label pairs, counted in Spark in one job;
    with ``by`` (a column of values 0..n_by-1), one table per value: n_by x k_left x k_right."""
    tables = np.zeros((n_by, k_left, k_right))
    for r in df.groupBy(*([by] if by else []), left, right).count().collect():
        tables[int(r[by]) if by else 0, int(r[left]), int(r[right])] = r["count"]
    return tables if by else tables[0]


def best_jaccard(table: np.ndarray) -> np.ndarray:
    """Per row cluster: Jaccard |A & B| / |A | B| with its best-matching column cluster
    (0 for a row cluster absent from the table, as clusterboot scores a vanished cluster)."""
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    union = rows[:, None] + cols[None, :] - table
    with np.errstate(invalid="ignore", divide="ignore"):
        jac = np.where(union > 0, table / union, 0.0)
    return np.asarray(jac.max(axis=1), dtype=float)


def adjusted_rand_index(table: np.ndarray) -> float:
    """Hubert and Arabie's ARI from a contingency table (sklearn's adjusted_rand_score)."""

    def comb2(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2).sum())

    n = table.sum()
    index = comb2(table)
    a, b = comb2(table.sum(axis=1)), comb2(table.sum(axis=0))
    expected = a * b / (n * (n - 1) / 2) if n > 1 else 0.0
    maximum = (a + b) / 2
    if maximum == expected:
        return 1.0
    return (index - expected) / (maximum - expected)


@dataclass
class Stability:
    """Bootstrap stability of one clustering."""

    jaccard: np.ndarray  # B x k
    ari: np.ndarray  # B

    def per_cluster(self, unstable_below: float, stable_from: float) -> pd.DataFrame:
        """Mean, min Jaccard per cluster, times dissolved (<= 0.5) and recovered (>= 0.75),
        and the verdict: stable, unstable or doubtful."""
        mean = self.jaccard.mean(axis=0)
        verdict = np.where(
            mean >= stable_from, "stable", np.where(mean < unstable_below, "unstable", "doubtful")
        )
        return pd.DataFrame(
            {
                "cluster": np.arange(self.jaccard.shape[1]),
                "jaccard_mean": mean,
                "jaccard_min": self.jaccard.min(axis=0),
                "dissolved": (self.jaccard <= 0.5).sum(axis=0),
                "recovered": (self.jaccard >= 0.75).sum(axis=0),
                "verdict": verdict,
            }
        )


def bootstrap_stability(
    data: DataFrame,
    label_col: str,
    k: int,
    estimator: KPrototypes,
    *,
    resamples: int,
    seed: int,
    fraction: float = 1.0,
    prediction_col: str = "segment",
    key_cols: Sequence[str] | None = None,
) -> Stability:
    """clusterboot on Spark: refit ``estimator`` on B seeded resamples of ``data``.

    ``data`` carries the original clustering in ``label_col`` (0..k-1). ``fraction`` < 1
    resamples a subsample of that expected size (with replacement), which bounds the cost
    of the refits on large inputs. Resample b repeats each row a Poisson(``fraction``)
    number of times drawn by a hash of ``key_cols`` (default: every column) and ``seed + b``
    (``custseg.sampling.hash_resample``: the same rows whatever their order), refitted from
    seed ``seed + b``; the B refits run side by side in the same passes
    (``KPrototypes.fitSubsets``), and the B contingency tables come from one job.
    """
    if resamples < 1:
        return Stability(np.zeros((0, k)), np.zeros(0))
    boot = reduce(
        DataFrame.unionByName,
        [
            hash_resample(data, fraction, seed + b, key_cols or data.columns).withColumn(_RESAMPLE, F.lit(b))
            for b in range(resamples)
        ],
    ).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        models = estimator.copy({estimator.seed: seed}).fitSubsets(boot, _RESAMPLE, resamples)
        rows = boot.drop(prediction_col) if prediction_col != label_col else boot
        labelled = reduce(
            DataFrame.unionByName,
            [
                model.transform(rows.where(F.col(_RESAMPLE) == b)).select(
                    _RESAMPLE, label_col, prediction_col
                )
                for b, model in enumerate(models)
            ],
        )
        k_boot = max(m.getK() for m in models)
        tables = contingency(labelled, label_col, prediction_col, k, k_boot, by=_RESAMPLE, n_by=resamples)
    finally:
        boot.unpersist()
    jaccards = np.array([best_jaccard(t) for t in tables])
    aris = np.array([adjusted_rand_index(t) for t in tables])
    for b in range(resamples):
        log.info(
            "bootstrap %d/%d: ARI %.3f, Jaccard per cluster %s",
            b + 1,
            resamples,
            aris[b],
            np.round(jaccards[b], 3),
        )
    return Stability(jaccards, aris)


# --- economic distinctness: do the clusters differ in value per customer? -------------


def value_by_cluster(labelled: DataFrame, label_col: str, value_col: str, z: float = 1.96) -> pd.DataFrame:
    """Per cluster (one job, k rows): customers, mean and population standard deviation of
    ``value_col`` (nulls and NaN count as 0), and the mean's normal interval mean +- z sd / sqrt(n)."""
    value = F.coalesce(F.nanvl(F.col(value_col).cast("double"), F.lit(None).cast("double")), F.lit(0.0))
    table = pd.DataFrame(
        labelled.groupBy(F.col(label_col).alias("cluster"))
        .agg(
            F.count(F.lit(1)).alias("customers"),
            F.avg(value).alias("mean"),
            F.stddev_pop(value).alias("sd"),
        )
        .toPandas()
    )
    table = table.sort_values("cluster").reset_index(drop=True)
    half = z * table["sd"] / np.sqrt(table["customers"])
    table["lo"], table["hi"] = table["mean"] - half, table["mean"] + half
    return table


def smallest_value_effect(table: pd.DataFrame) -> tuple[float, bool]:
    """Over every pair of clusters of ``value_by_cluster``: the smallest effect size
    (Cohen's d: the difference of means over the pooled standard deviation) and whether
    any two intervals overlap. (inf, False) with fewer than two clusters."""
    smallest, overlap = float("inf"), False
    rows = list(table.itertuples())
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            n = a.customers + b.customers
            pooled = np.sqrt((a.customers * a.sd**2 + b.customers * b.sd**2) / n) if n else 0.0
            gap = abs(a.mean - b.mean)
            smallest = min(smallest, gap / pooled if pooled > 0 else (0.0 if gap == 0 else float("inf")))
            overlap = overlap or (a.lo <= b.hi and b.lo <= a.hi)
    return smallest, overlap


# --- association of two labellings (legacy personas against segments) ----------------


def cramers_v(table: np.ndarray) -> float:
    """Cramér's V of a contingency table (rows and columns without any count dropped):
    sqrt(chi2 / (n (min(r, c) - 1))); 0 for a table with one row or column."""
    table = np.asarray(table, dtype=float)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    n = table.sum()
    if n == 0 or min(table.shape) < 2:
        return 0.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / (n * (min(table.shape) - 1))))


def cramers_v_interval(
    table: np.ndarray, *, resamples: int, seed: int, level: float = 0.95
) -> tuple[float, float, float]:
    """Cramér's V and its percentile bootstrap interval. Resampling customers with
    replacement is a multinomial draw of the table's cells with the observed shares, so
    the B resamples are drawn from the (small) table on the driver, not from the data."""
    table = np.asarray(table, dtype=float)
    n = int(table.sum())
    draws = np.random.default_rng(seed).multinomial(n, (table / n).ravel(), size=resamples)
    values = [cramers_v(d.reshape(table.shape)) for d in draws]
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return cramers_v(table), float(lo), float(hi)


# --- cost of any partition (for the MLlib comparators) ---------------------------------


def partition_cost(
    df: DataFrame, label_col: str, numeric: Sequence[str], categorical: Sequence[str], gamma: float
) -> float:
    """k-prototypes cost of a given partition: each row against its own cluster's mean and
    mode (two passes: the prototypes, then the cost), so any algorithm's clusters can be
    compared with k-prototypes' on one scale."""
    rows = (
        df.groupBy(label_col)
        .agg(
            *[F.avg(c).alias(f"s{i}") for i, c in enumerate(numeric)],
            *[F.mode(c, deterministic=True).alias(f"m{i}") for i, c in enumerate(categorical)],
        )
        .collect()
    )
    labels = [r[label_col] for r in rows]
    distances = dissimilarity_columns(
        numeric,
        categorical,
        [[r[f"s{i}"] for i in range(len(numeric))] for r in rows],
        [[r[f"m{i}"] for i in range(len(categorical))] for r in rows],
        gamma,
    )
    own = F.lit(None).cast("double")
    for label, d in zip(labels, distances, strict=True):
        own = F.when(F.col(label_col) == F.lit(label), d).otherwise(own)
    total = df.select(own.alias("d")).agg(F.sum("d")).first()
    return float(total[0] or 0.0) if total else 0.0
