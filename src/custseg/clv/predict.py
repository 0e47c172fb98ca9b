"""Per-customer predictions of the fitted models, distributed as a pandas UDF (scipy's
hyp2f1 has no Spark built-in). Formulas as in Fader, Hardie & Lee (2005) and the lifetimes
package: conditional expected purchases, probability alive, Gamma-Gamma expected average
order value, and CLV as the discounted sum of monthly expected spend.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.functions import pandas_udf
from scipy import special

from custseg.clv.models import SUMMARY_COLUMNS, BGNBDFit, GammaGammaFit
from custseg.clv.summary import _unit_days
from custseg.columns import require_columns

Array = NDArray[np.float64]

# Time units in a month, as lifetimes' customer_lifetime_value counts them.
UNITS_PER_MONTH = {"D": 30.0, "W": 4.345}

PREDICTION_SCHEMA = (
    "expected_purchases double, prob_alive double, expected_avg_order_value double, clv double"
)


def _purchase_scale(fit: BGNBDFit, x: Array, tx: Array, T: Array) -> Array:
    """The factor of FHL 2005 eq. 10 that does not depend on the horizon t: its
    denominator is 1 / P(alive)."""
    return np.asarray((fit.a + fit.b + x - 1) / (fit.a - 1) * prob_alive(fit, x, tx, T), dtype=float)


def _purchase_growth(fit: BGNBDFit, t: Array | float, x: Array, T: Array) -> Array:
    """1 - 2F1(r+x, b+x; a+b+x-1; z) ((alpha+T)/(alpha+T+t))^(r+x), z = t/(alpha+T+t); the
    Euler-transformed 2F1 where the series overflows (as lifetimes does)."""
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b
    aa, bb, cc = r + x, b + x, a + b + x - 1
    z = t / (alpha + T + t)
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_hyp = np.log(special.hyp2f1(aa, bb, cc, z))
        bad = np.isinf(ln_hyp)
        if bad.any():
            ln_hyp[bad] = np.log(special.hyp2f1(cc[bad] - aa[bad], cc[bad] - bb[bad], cc[bad], z[bad])) + (
                cc[bad] - aa[bad] - bb[bad]
            ) * np.log1p(-z[bad])
    return np.asarray(1 - np.exp(ln_hyp + (r + x) * np.log((alpha + T) / (alpha + t + T))), dtype=float)


def expected_purchases(fit: BGNBDFit, t: Array | float, x: Array, tx: Array, T: Array) -> Array:
    """E[purchases in (T, T + t] | x, t_x, T] (FHL 2005 eq. 10)."""
    return _purchase_scale(fit, x, tx, T) * _purchase_growth(fit, t, x, T)


def prob_alive(fit: BGNBDFit, x: Array, tx: Array, T: Array) -> Array:
    """P(alive at T | x, t_x, T); 1 for customers without repeat purchases."""
    log_div = (fit.r + x) * np.log((fit.alpha + T) / (fit.alpha + tx)) + np.log(
        fit.a / (fit.b + np.maximum(x, 1) - 1)
    )
    return np.asarray(np.where(x == 0, 1.0, special.expit(-log_div)), dtype=float)


def expected_avg_order_value(fit: GammaGammaFit, x: Array, m: Array) -> Array:
    """E[spend per purchase | x, m]: the weighted mean of the customer's mean spend and
    the population mean (Fader & Hardie 2013 eq. 5)."""
    weight = fit.p * x / (fit.p * x + fit.q - 1)
    return np.asarray((1 - weight) * fit.population_mean() + weight * m, dtype=float)


def discounted_purchases(
    bgnbd: BGNBDFit,
    x: Array,
    tx: Array,
    T: Array,
    *,
    horizon: int,
    units_per_month: float,
    discount_rate: float,
) -> tuple[Array, Array]:
    """Expected purchases over the horizon, and the sum over months i = 1..horizon of the
    expected purchases in month i discounted by (1 + d)^i (CLV = that x expected spend)."""
    scale = _purchase_scale(bgnbd, x, tx, T)
    total = np.zeros_like(x, dtype=float)
    previous = np.zeros_like(x, dtype=float)
    for month in range(1, horizon + 1):
        cumulative = scale * _purchase_growth(bgnbd, month * units_per_month, x, T)
        total += (cumulative - previous) / (1 + discount_rate) ** month
        previous = cumulative
    return previous, total


def predict_clv(
    summary: DataFrame,
    bgnbd: BGNBDFit,
    gamma_gamma: GammaGammaFit,
    *,
    horizon: int,
    time_unit: str = "D",
    discount_rate: float,
) -> DataFrame:
    """``summary`` plus expected_purchases (over the horizon), prob_alive,
    expected_avg_order_value and clv. ``horizon`` is in months (30 days or 4.345 weeks, as
    lifetimes counts them) and ``discount_rate`` is monthly; the summary's time unit must
    be the one the models were fitted in."""
    require_columns(summary, SUMMARY_COLUMNS, "predict_clv")
    _unit_days(time_unit)
    if horizon < 1:
        raise ValueError(f"predict_clv: horizon must be at least one month, got {horizon}")
    if discount_rate < 0:
        raise ValueError(f"predict_clv: discount_rate must be >= 0, got {discount_rate}")
    if gamma_gamma.q <= 1:
        raise ValueError(
            f"predict_clv: the Gamma-Gamma fit has q = {gamma_gamma.q:.4g} <= 1, so the population mean "
            "spend is infinite; refit with a penalizer (clv.penalizer) or check the spend data"
        )
    per_month = UNITS_PER_MONTH[time_unit]

    @pandas_udf(PREDICTION_SCHEMA)  # type: ignore[call-overload]
    def predict(x: pd.Series, tx: pd.Series, T: pd.Series, m: pd.Series) -> pd.DataFrame:
        xv, txv, Tv, mv = (s.to_numpy(dtype=float) for s in (x, tx, T, m))
        aov = expected_avg_order_value(gamma_gamma, xv, mv)
        purchases, discounted = discounted_purchases(
            bgnbd, xv, txv, Tv, horizon=horizon, units_per_month=per_month, discount_rate=discount_rate
        )
        return pd.DataFrame(
            {
                "expected_purchases": purchases,
                "prob_alive": prob_alive(bgnbd, xv, txv, Tv),
                "expected_avg_order_value": aov,
                "clv": aov * discounted,
            }
        )

    cols: list[Column] = [F.col(c).cast("double") for c in SUMMARY_COLUMNS]
    out = summary.withColumn("_prediction", predict(*cols))
    return out.select(*summary.columns, "_prediction.*")


def expected_purchases_column(bgnbd: BGNBDFit, t: Column) -> Column:
    """A Column of expected purchases over ``t`` periods (a per-row time column)."""

    @pandas_udf("double")  # type: ignore[call-overload]
    def expected(t_: pd.Series, x: pd.Series, tx: pd.Series, T: pd.Series) -> pd.Series:
        return pd.Series(expected_purchases(bgnbd, *(s.to_numpy(dtype=float) for s in (t_, x, tx, T))))

    column: Column = expected(
        t.cast("double"), *(F.col(c).cast("double") for c in ("frequency", "recency", "T"))
    )
    return column
