"""Counter-based random columns: every value is a function of (seed, field, entity ids).

Values come from ``xxhash64(seed, field, ids...)`` as in dbldatagen, so a table's content
does not depend on partitioning, executor count or row order. Distributions Spark has no
built-in sampler for (gamma, beta, Poisson) are inverse-CDF transforms of such uniforms in
vectorised pandas UDFs on scipy's special functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.pandas.functions import pandas_udf
from pyspark.sql.types import DoubleType, LongType
from scipy import special, stats

_TWO_53 = float(2**53)


def uniform(seed: int, field: str, *ids: Column | str) -> Column:
    """A uniform double in [0, 1) keyed by (seed, field, ids)."""
    cols = [F.col(i) if isinstance(i, str) else i for i in ids]
    h = F.xxhash64(F.lit(seed), F.lit(field), *cols)
    # The top 53 bits of the unsigned hash: exactly representable in a double.
    return F.shiftrightunsigned(h, 11).cast("double") / F.lit(_TWO_53)


def bernoulli(seed: int, field: str, p: Column | float, *ids: Column | str) -> Column:
    """True with probability ``p``."""
    prob = p if isinstance(p, Column) else F.lit(p)
    return uniform(seed, field, *ids) < prob


def normal(seed: int, field: str, *ids: Column | str) -> Column:
    """A standard normal (Box-Muller on two keyed uniforms)."""
    u1 = uniform(seed, f"{field}#1", *ids)
    u2 = uniform(seed, f"{field}#2", *ids)
    return F.sqrt(-2.0 * F.log1p(-u1)) * F.cos(2.0 * np.pi * u2)


def randint(seed: int, field: str, low: int, high: int, *ids: Column | str) -> Column:
    """An integer uniform on [low, high]."""
    return (F.floor(uniform(seed, field, *ids) * (high - low + 1)) + low).cast("int")


def choice(seed: int, field: str, values: Sequence[str], *ids: Column | str) -> Column:
    """One of ``values``, uniformly."""
    arr = F.array(*[F.lit(v) for v in values])
    idx = F.floor(uniform(seed, field, *ids) * len(values)).cast("int") + 1
    return F.element_at(arr, idx)


def weighted_index(u: Column, weights: Sequence[float]) -> Column:
    """The index i (0-based) with cumulative weight bracket containing ``u``."""
    total = float(sum(weights))
    expr: Column = F.lit(len(weights) - 1)
    cum = np.cumsum(weights) / total
    for i in reversed(range(len(weights) - 1)):
        expr = F.when(u < float(cum[i]), F.lit(i)).otherwise(expr)
    return expr


def weighted_choice(
    seed: int, field: str, values: Sequence[str], weights: Sequence[float], *ids: Column | str
) -> Column:
    """One of ``values`` with the given weights."""
    arr = F.array(*[F.lit(v) for v in values])
    return F.element_at(arr, weighted_index(uniform(seed, field, *ids), weights) + 1)


@pandas_udf(DoubleType())  # type: ignore[call-overload]
def gamma_ppf(u: pd.Series, shape: pd.Series) -> pd.Series:
    """Inverse CDF of Gamma(shape, scale=1) at ``u``."""
    return pd.Series(special.gammaincinv(shape.to_numpy(), u.to_numpy()))


@pandas_udf(LongType())  # type: ignore[call-overload]
def poisson_ppf(u: pd.Series, mu: pd.Series) -> pd.Series:
    """Inverse CDF of Poisson(mu) at ``u`` (0 where mu is 0)."""
    mu_arr = np.maximum(mu.to_numpy(dtype="float64"), 0.0)
    out = stats.poisson.ppf(u.to_numpy(), np.where(mu_arr > 0, mu_arr, 1.0))
    out = np.where(mu_arr > 0, out, 0.0)
    return pd.Series(np.nan_to_num(out, nan=0.0).astype("int64"))
