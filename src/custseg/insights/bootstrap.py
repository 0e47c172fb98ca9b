"""A one-pass Poisson bootstrap over customers, on Spark.

Every customer gets B weights ``w_1 .. w_B``, each a Poisson(1) draw made from a hash of
its id and the replicate number: the same customer gets the same weights at any
partitioning, in any job, on any machine. A statistic that is a function of weighted sums
(a share, a mean, a ratio, a correlation) is then computed for every replicate from the
sums ``sum(w_b * x)``, which one pass over the customers gives for all replicates at once:
each partition multiplies its (rows x B) weight matrix by its (rows x values) matrix and
emits a few small rows per group; Spark adds the partitions' rows. Replicate 0 has weight
1 for everyone: the full-sample estimate comes from the same pass.

The 95 % interval is the percentile interval of the replicates. The Poisson bootstrap
(Hanley and MacGibbon 2006; Chamandy et al. 2012) approximates the multinomial resample
for large n and, unlike it, needs no count of n before drawing, so it streams.

Nothing per customer reaches the driver: ``collect_replicate_sums`` brings groups x (B + 1)
rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from custseg.columns import require_columns

REPLICATE_COL = "replicate"
WEIGHT_COL = "weight"
_HASH = "_bootstrap_hash"
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
# P(X <= k) for X ~ Poisson(1), k = 0 .. 19 (beyond: probability below 1e-18)
_POISSON_CDF = np.cumsum([math.exp(-1.0) / math.factorial(k) for k in range(20)])


def customer_hash(id_col: str | Column, seed: int) -> Column:
    """The 64-bit hash of a customer's id and the seed that all its weights come from."""
    col = F.col(id_col) if isinstance(id_col, str) else id_col
    return F.xxhash64(col.cast("string"), F.lit(int(seed)))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def poisson_weights(hashes: np.ndarray, replicates: int) -> np.ndarray:
    """The (n, replicates + 1) weight matrix of customers with these ``customer_hash``
    values: column 0 is 1 (the full sample), column b a Poisson(1) draw from
    ``splitmix64(hash + b * golden ratio)``, by the inverse of the Poisson CDF."""
    h = np.asarray(hashes, dtype=np.int64).view(np.uint64)
    out = np.ones((len(h), replicates + 1), dtype=np.float64)
    if replicates == 0 or len(h) == 0:
        return out
    with np.errstate(over="ignore"):
        b = np.arange(1, replicates + 1, dtype=np.uint64) * _GOLDEN
        bits = _splitmix64(h[:, None] + b[None, :])
    u = (bits >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    out[:, 1:] = np.searchsorted(_POISSON_CDF, u, side="right")
    return out


def replicate_sums(
    df: DataFrame,
    *,
    keys: Sequence[str],
    values: Mapping[str, Column | str],
    replicates: int,
    seed: int,
    id_col: str = "customer_id",
) -> DataFrame:
    """Weighted sums for every replicate and group, in one pass.

    Args:
        df: one row per customer (or per customer and something else: every row of a
            customer gets that customer's weights).
        keys: grouping columns (may be empty).
        values: output name -> numeric expression; nulls count as 0, so pass an
            indicator (``x IS NOT NULL``) beside a value whose mean skips nulls.
        replicates: B; 0 gives the full-sample sums only.
        seed: the weights' seed.
        id_col: the column the weights hash.

    Returns:
        keys, ``replicate`` (0 = full sample, 1 .. B), ``weight`` (sum of weights: the
        customers, resampled) and one column per value: ``sum(w * value)``.
    """
    if replicates < 0:
        raise ValueError(f"replicate_sums: replicates must be >= 0, got {replicates}")
    require_columns(df, [*keys, id_col], "replicate_sums")
    names = list(values)
    clash = [n for n in names if n in (*keys, REPLICATE_COL, WEIGHT_COL)]
    if clash:
        raise ValueError(f"replicate_sums: value names {clash} clash with keys or output columns")
    exprs = [(F.col(v) if isinstance(v, str) else v) for v in values.values()]
    prepared = df.select(
        *keys,
        customer_hash(id_col, seed).alias(_HASH),
        *[F.coalesce(e.cast("double"), F.lit(0.0)).alias(f"_v{i}") for i, e in enumerate(exprs)],
    )
    key_fields = [prepared.schema[k] for k in keys]
    schema = T.StructType(
        [
            *[T.StructField(f.name, f.dataType, True) for f in key_fields],
            T.StructField(REPLICATE_COL, T.IntegerType(), False),
            T.StructField(WEIGHT_COL, T.DoubleType(), False),
            *[T.StructField(f"_v{i}", T.DoubleType(), False) for i in range(len(names))],
        ]
    )
    key_list = list(keys)
    value_cols = [f"_v{i}" for i in range(len(names))]

    def partial_sums(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        totals: dict[tuple[object, ...], np.ndarray] = {}
        for pdf in batches:
            if pdf.empty:
                continue
            weights = poisson_weights(pdf[_HASH].to_numpy(), replicates)
            x = np.column_stack([np.ones(len(pdf)), pdf[value_cols].to_numpy(dtype=np.float64)])
            if key_list:
                groups = pdf.groupby(key_list, dropna=False, sort=False).indices
            else:
                groups = {(): np.arange(len(pdf))}
            for key, idx in groups.items():
                key_t = key if isinstance(key, tuple) else (key,)
                block = weights[idx].T @ x[idx]
                if key_t in totals:
                    totals[key_t] += block
                else:
                    totals[key_t] = block
        if not totals:
            return
        frames = []
        for key_t, block in totals.items():
            frame = pd.DataFrame(block, columns=[WEIGHT_COL, *value_cols])
            for name, value in zip(key_list, key_t, strict=True):
                frame[name] = None if _is_missing(value) else value
            frame[REPLICATE_COL] = np.arange(replicates + 1, dtype=np.int32)
            frames.append(frame)
        yield pd.concat(frames, ignore_index=True)[schema.fieldNames()]

    partial = prepared.mapInPandas(partial_sums, schema)  # type: ignore[arg-type]
    summed = partial.groupBy(*keys, REPLICATE_COL).agg(
        F.sum(WEIGHT_COL).alias(WEIGHT_COL),
        *[F.sum(c).alias(n) for c, n in zip(value_cols, names, strict=True)],
    )
    return summed


def _is_missing(value: object) -> bool:
    try:
        return bool(pd.isna(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def collect_replicate_sums(sums: DataFrame) -> pd.DataFrame:
    """The replicate sums on the driver: groups x (B + 1) rows, bounded by the config."""
    return pd.DataFrame(sums.toPandas())


Statistic = Callable[[pd.DataFrame], pd.Series]


def summarise(
    sums: pd.DataFrame,
    keys: Sequence[str],
    statistics: Mapping[str, Statistic],
    *,
    level: float = 0.95,
) -> pd.DataFrame:
    """Point estimates and percentile intervals of statistics of replicate sums.

    Each statistic maps the sums frame (one row per group and replicate) to a Series
    aligned with it. Returns one row per group: ``<name>`` (replicate 0),
    ``<name>_lo`` and ``<name>_hi`` (the replicates' (1 - level) / 2 and (1 + level) / 2
    quantiles, NaN replicates left out; NaN without replicates).
    """
    computed = {name: fn(sums).astype(float) for name, fn in statistics.items()}
    frame = pd.concat([sums[[c for c in sums.columns if c not in computed]], pd.DataFrame(computed)], axis=1)
    group = list(keys)
    point = frame[frame[REPLICATE_COL] == 0].set_index(group) if group else frame[frame[REPLICATE_COL] == 0]
    boot = frame[frame[REPLICATE_COL] > 0]
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
    names = list(statistics)
    if group:
        out = point[names].copy()
        if boot.empty:
            for name in names:
                out[f"{name}_lo"] = np.nan
                out[f"{name}_hi"] = np.nan
        else:
            grouped = boot.groupby(group, dropna=False)[names]
            lo = grouped.quantile(lo_q).add_suffix("_lo")
            hi = grouped.quantile(hi_q).add_suffix("_hi")
            out = out.join(lo).join(hi)
        return out.reset_index()
    row: dict[str, float] = {}
    for name in names:
        row[name] = float(point[name].iloc[0]) if len(point) else math.nan
        values = boot[name].dropna().to_numpy()
        row[f"{name}_lo"] = float(np.quantile(values, lo_q)) if len(values) else math.nan
        row[f"{name}_hi"] = float(np.quantile(values, hi_q)) if len(values) else math.nan
    return pd.DataFrame([row])


def ratio(numerator: str, denominator: str) -> Statistic:
    """``numerator / denominator`` of two sums (NaN where the denominator is 0)."""

    def fn(frame: pd.DataFrame) -> pd.Series:
        den = frame[denominator].astype(float)
        return frame[numerator].astype(float) / den.where(den != 0)

    return fn


def pearson_from_sums(n: str, x: str, y: str, xx: str, yy: str, xy: str) -> Statistic:
    """The weighted Pearson correlation from the sums of 1, x, y, x², y² and xy."""

    def fn(frame: pd.DataFrame) -> pd.Series:
        w = frame[n].astype(float)
        sx, sy = frame[x].astype(float), frame[y].astype(float)
        cov = frame[xy] - sx * sy / w
        vx = frame[xx] - sx * sx / w
        vy = frame[yy] - sy * sy / w
        den = np.sqrt(vx * vy)
        return (cov / den.where(den > 0)).astype(float)

    return fn
