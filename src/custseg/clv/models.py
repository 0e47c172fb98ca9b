"""BG/NBD and Gamma-Gamma maximum-likelihood fits on Spark summaries.

Written by hand (no library fits these on Spark): the likelihoods of Fader, Hardie & Lee
(2005) and Fader & Hardie (2013), with every constant term, their analytic gradients, and
scipy's optimisers on the driver over data whose size does not grow with customers:

- BG/NBD: the likelihood of a customer depends on (frequency, recency, T) only, so it is
  evaluated on the distinct tuples with their counts (aggregated in Spark; the table is
  bounded by the time grid and its size is logged; ``max_tuples`` guards it).
- Gamma-Gamma: the mean spend is continuous, so distinct tuples would be one per customer.
  Every term except sum_i (p x_i + q) log(v + x_i m_i) reduces to per-frequency sums; that
  one term and its derivatives are six sums over customers for a given v, computed by one
  Spark aggregation per distinct v the optimiser visits (Newton steps with the exact
  Hessian, about a dozen).

Objectives are the mean negative log-likelihood plus ``penalizer * sum(params**2)``, as in
the lifetimes package; the fitted ``log_likelihood`` is the unpenalised total.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy import optimize, special

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ("frequency", "recency", "T", "monetary_value")
Array = NDArray[np.float64]


@dataclass(frozen=True)
class BGNBDFit:
    """A fitted BG/NBD: purchase rate ~ Gamma(r, alpha), dropout ~ Beta(a, b), in the
    summary's time unit."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    n_customers: int
    standard_errors: dict[str, float] = field(default_factory=dict)
    n_tuples: int = 0
    converged: bool = True

    def params(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}


@dataclass(frozen=True)
class GammaGammaFit:
    """A fitted Gamma-Gamma spend model: spend ~ Gamma(p, nu), nu ~ Gamma(q, v)."""

    p: float
    q: float
    v: float
    log_likelihood: float
    n_customers: int
    standard_errors: dict[str, float] = field(default_factory=dict)
    converged: bool = True

    def params(self) -> dict[str, float]:
        return {"p": self.p, "q": self.q, "v": self.v}

    def population_mean(self) -> float:
        """Expected spend per transaction of a new customer (infinite for q <= 1)."""
        return self.v * self.p / (self.q - 1) if self.q > 1 else float("inf")


def _require(summary: DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in summary.columns]
    if missing:
        raise ValueError(f"{what}: summary lacks column(s) {missing}; it has {summary.columns}")


def _standard_errors(names: tuple[str, ...], hessian_total: Array) -> dict[str, float]:
    """Standard errors of the natural parameters from the Hessian of the total negative
    log-likelihood in those parameters; {} where it is singular or not positive."""
    try:
        cov = np.linalg.inv(hessian_total)
    except np.linalg.LinAlgError:
        return {}
    diag = np.diag(cov)
    if not np.all(np.isfinite(diag)) or np.any(diag <= 0):
        return {}
    return {n: float(s) for n, s in zip(names, np.sqrt(diag), strict=True)}


# --------------------------------------------------------------------------- BG/NBD


def bgnbd_tuples(summary: DataFrame, max_tuples: int = 2_000_000) -> pd.DataFrame:
    """The distinct (frequency, recency, T) tuples with their customer counts, on the
    driver (bounded by the time grid, not by customers; raises above ``max_tuples``)."""
    _require(summary, ("frequency", "recency", "T"), "fit_bgnbd")
    grouped = summary.groupBy("frequency", "recency", "T").agg(F.count(F.lit(1)).alias("n"))
    n_tuples = grouped.count()
    if n_tuples > max_tuples:
        raise ValueError(
            f"fit_bgnbd: {n_tuples} distinct (frequency, recency, T) tuples exceed max_tuples={max_tuples}; "
            "summarise in a coarser time unit (time_unit='W') or raise the limit"
        )
    log.info("BG/NBD sufficient statistics: %d distinct (frequency, recency, T) tuples", n_tuples)
    tuples = cast(pd.DataFrame, grouped.toPandas()).astype(
        {"frequency": float, "recency": float, "T": float, "n": float}
    )
    bad = tuples[(tuples["frequency"] < 0) | (tuples["recency"] < 0) | (tuples["recency"] > tuples["T"])]
    if len(bad) or tuples[["frequency", "recency", "T"]].isna().any().any():
        raise ValueError(
            "fit_bgnbd: summary has null, negative or recency > T rows "
            f"(first: {bad.head(1).to_dict('records')})"
        )
    return tuples


def bgnbd_loglik_terms(params: Array, x: Array, tx: Array, T: Array) -> tuple[Array, Array]:
    """Per-tuple log-likelihood and its gradient (rows r, alpha, a, b) in the natural
    parameters (Fader, Hardie & Lee 2005, eq. 6, with every constant)."""
    r, alpha, a, b = params
    repeat = x > 0
    base = (
        special.gammaln(r + x)
        - special.gammaln(r)
        + r * np.log(alpha)
        - (r + x) * np.log(alpha + T)
        + special.gammaln(a + b)
        + special.gammaln(b + x)
        - special.gammaln(b)
        - special.gammaln(a + b + x)
    )
    bx1 = np.where(repeat, b + x - 1, 1.0)
    log_ratio = np.log(alpha + T) - np.log(alpha + tx)
    e = np.log(a) - np.log(bx1) + (r + x) * log_ratio
    ll = base + np.where(repeat, np.logaddexp(0.0, e), 0.0)
    share = np.where(repeat, special.expit(e), 0.0)  # D / (1 + D)
    grad = np.vstack(
        [
            special.digamma(r + x)
            - special.digamma(r)
            + np.log(alpha)
            - np.log(alpha + T)
            + share * log_ratio,
            r / alpha - (r + x) / (alpha + T) + share * (r + x) * (1 / (alpha + T) - 1 / (alpha + tx)),
            special.digamma(a + b) - special.digamma(a + b + x) + share / a,
            special.digamma(b + x)
            + special.digamma(a + b)
            - special.digamma(b)
            - special.digamma(a + b + x)
            - share / bx1,
        ]
    )
    return ll, grad


def bgnbd_log_likelihood(params: dict[str, float] | BGNBDFit, summary: pd.DataFrame) -> float:
    """Total BG/NBD log-likelihood of a pandas summary (frequency, recency, T[, n])."""
    p = params.params() if isinstance(params, BGNBDFit) else params
    arr = np.array([p["r"], p["alpha"], p["a"], p["b"]], dtype=float)
    w = summary["n"].to_numpy(float) if "n" in summary else np.ones(len(summary))
    ll, _ = bgnbd_loglik_terms(arr, *(summary[c].to_numpy(float) for c in ("frequency", "recency", "T")))
    return float(np.dot(w, ll))


def _fd_hessian(grad: Any, at: Array, rel: float = 1e-5) -> Array:
    """Central-difference Hessian of an analytic gradient, symmetrised."""
    k = len(at)
    h = np.zeros((k, k))
    for i in range(k):
        step = rel * max(abs(at[i]), 1e-8)
        up, down = at.copy(), at.copy()
        up[i] += step
        down[i] -= step
        h[:, i] = (grad(up) - grad(down)) / (2 * step)
    return np.asarray((h + h.T) / 2, dtype=float)


def fit_bgnbd(
    summary: DataFrame,
    *,
    penalizer: float = 0.0,
    initial: dict[str, float] | None = None,
    max_tuples: int = 2_000_000,
) -> BGNBDFit:
    """Maximum-likelihood BG/NBD on a summary (frequency, recency, T), fitted on its
    distinct tuples. Standard errors from the observed information where it inverts."""
    if penalizer < 0:
        raise ValueError(f"fit_bgnbd: penalizer must be >= 0, got {penalizer}")
    tuples = bgnbd_tuples(summary, max_tuples)
    if tuples.empty:
        raise ValueError("fit_bgnbd: the summary has no customers")
    x, tx, T, w = (tuples[c].to_numpy(float) for c in ("frequency", "recency", "T", "n"))
    n = float(w.sum())
    scale = float(np.average(T, weights=w)) or 1.0
    start = initial or {"r": 1.0, "alpha": scale, "a": 1.0, "b": 1.0}
    theta0 = np.log([start["r"], start["alpha"], start["a"], start["b"]])

    def objective(theta: Array) -> tuple[float, Array]:
        params = np.exp(theta)
        ll, grad = bgnbd_loglik_terms(params, x, tx, T)
        value = -float(np.dot(w, ll)) / n + penalizer * float(np.sum(params**2))
        g = -(grad @ w) / n + 2 * penalizer * params
        if not np.isfinite(value):
            return 1e300, np.zeros(4)
        return value, g * params

    result = optimize.minimize(
        objective, theta0, jac=True, method="BFGS", options={"gtol": 1e-9, "maxiter": 2000}
    )
    params = np.exp(result.x)
    ll, _ = bgnbd_loglik_terms(params, x, tx, T)

    def total_grad(p: Array) -> Array:
        return np.asarray(-(bgnbd_loglik_terms(p, x, tx, T)[1] @ w), dtype=float)

    names = ("r", "alpha", "a", "b")
    errors = _standard_errors(names, _fd_hessian(total_grad, params))
    r, alpha, a, b = map(float, params)
    fit = BGNBDFit(
        r=r,
        alpha=alpha,
        a=a,
        b=b,
        log_likelihood=float(np.dot(w, ll)),
        n_customers=int(n),
        standard_errors=errors,
        n_tuples=len(tuples),
        converged=bool(result.success) or float(np.max(np.abs(result.jac))) < 1e-6,
    )
    log.info("BG/NBD fit: %s, log-likelihood %.3f (%s)", fit.params(), fit.log_likelihood, result.message)
    return fit


# --------------------------------------------------------------------- Gamma-Gamma


def _trigamma(z: Array | float) -> Array:
    return np.asarray(special.polygamma(1, z), dtype=float)


class _SpendSums:
    """The repeat customers' (frequency x, mean spend m) on Spark, with the per-frequency
    sums on the driver and one aggregation per v for the terms in log(v + x m)."""

    def __init__(self, summary: DataFrame) -> None:
        _require(summary, ("frequency", "monetary_value"), "fit_gamma_gamma")
        x, m = F.col("frequency").cast("double"), F.col("monetary_value").cast("double")
        self.data = summary.where(F.col("frequency") > 0).select(x.alias("x"), m.alias("m")).persist()
        by_x = cast(
            pd.DataFrame,
            self.data.groupBy("x")
            .agg(
                F.count(F.lit(1)).alias("n"),
                F.sum(F.log(F.when(F.col("m") > 0, F.col("m")))).alias("log_m"),
                F.sum("m").alias("m"),
                F.sum(F.when(F.col("m").isNull() | (F.col("m") <= 0), 1).otherwise(0)).alias("bad"),
            )
            .toPandas(),
        )
        if by_x.empty:
            self.data.unpersist()
            raise ValueError("fit_gamma_gamma: no customer has frequency > 0")
        if by_x["bad"].sum():
            self.data.unpersist()
            raise ValueError(
                f"fit_gamma_gamma: {int(by_x['bad'].sum())} repeat customers have a null or non-positive "
                "monetary_value; the Gamma-Gamma model needs positive spend"
            )
        self.x = by_x["x"].to_numpy(float)
        self.w = by_x["n"].to_numpy(float)
        self.log_m = by_x["log_m"].to_numpy(float)
        self.n = float(self.w.sum())
        self.mean_m = float(by_x["m"].sum() / self.n)
        self._cache: dict[float, dict[str, float]] = {}

    def at(self, v: float) -> dict[str, float]:
        """S1 = sum x log(v+xm), S0 = sum log(v+xm), R1 = sum x/(v+xm), R0 = sum 1/(v+xm),
        Q1 = sum x/(v+xm)^2, Q0 = sum 1/(v+xm)^2 (one Spark aggregation)."""
        if v not in self._cache:
            d = F.lit(v) + F.col("x") * F.col("m")
            row = self.data.agg(
                F.sum(F.col("x") * F.log(d)).alias("S1"),
                F.sum(F.log(d)).alias("S0"),
                F.sum(F.col("x") / d).alias("R1"),
                F.sum(1 / d).alias("R0"),
                F.sum(F.col("x") / (d * d)).alias("Q1"),
                F.sum(1 / (d * d)).alias("Q0"),
            ).first()
            assert row is not None
            self._cache[v] = {k: float(row[k]) for k in ("S1", "S0", "R1", "R0", "Q1", "Q0")}
        return self._cache[v]

    def loglik(self, p: float, q: float, v: float) -> tuple[float, Array, Array]:
        """Total log-likelihood (Fader & Hardie 2013), gradient and Hessian in (p, q, v)."""
        s, x, w = self.at(v), self.x, self.w
        px = p * x
        ll = float(
            np.dot(
                w,
                special.gammaln(px + q)
                - special.gammaln(px)
                - special.gammaln(q)
                + q * np.log(v)
                + px * np.log(x),
            )
            + p * np.dot(x, self.log_m)
            - self.log_m.sum()
            - (p * s["S1"] + q * s["S0"])
        )
        dg, tg = special.digamma, _trigamma
        grad = np.array(
            [
                np.dot(w, x * (dg(px + q) - dg(px) + np.log(x))) + np.dot(x, self.log_m) - s["S1"],
                np.dot(w, dg(px + q) - dg(q) + np.log(v)) - s["S0"],
                self.n * q / v - (p * s["R1"] + q * s["R0"]),
            ]
        )
        pp = np.dot(w, x * x * (tg(px + q) - tg(px)))
        pq = np.dot(w, x * tg(px + q))
        qq = np.dot(w, tg(px + q) - tg(q))
        pv = -s["R1"]
        qv = self.n / v - s["R0"]
        vv = -self.n * q / v**2 + p * s["Q1"] + q * s["Q0"]
        hess = np.array([[pp, pq, pv], [pq, qq, qv], [pv, qv, vv]])
        return ll, grad, hess


def fit_gamma_gamma(
    summary: DataFrame, *, penalizer: float = 0.0, initial: dict[str, float] | None = None
) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma on the customers with frequency > 0, by trust-region
    Newton steps with the exact Hessian; standard errors from the observed information."""
    if penalizer < 0:
        raise ValueError(f"fit_gamma_gamma: penalizer must be >= 0, got {penalizer}")
    sums = _SpendSums(summary)
    try:
        start = initial or {"p": 2.0, "q": 3.0, "v": sums.mean_m}
        n = sums.n

        def parts(theta: Array) -> tuple[float, Array, Array]:
            p = np.exp(theta)
            ll, g, h = sums.loglik(*p)
            f = -ll / n + penalizer * float(np.sum(p**2))
            g_nat = -g / n + 2 * penalizer * p
            h_nat = -h / n + 2 * penalizer * np.eye(3)
            return f, g_nat * p, h_nat * np.outer(p, p) + np.diag(g_nat * p)

        result = optimize.minimize(
            lambda t: parts(t)[0],
            np.log([start["p"], start["q"], start["v"]]),
            jac=lambda t: parts(t)[1],
            hess=lambda t: parts(t)[2],
            method="trust-exact",
            options={"gtol": 1e-10, "maxiter": 200},
        )
        params = np.exp(result.x)
        ll, _, hess = sums.loglik(*params)
        log.info(
            "Gamma-Gamma fit: %d Spark aggregations over %d repeat customers (%s)",
            len(sums._cache),
            int(n),
            result.message,
        )
    finally:
        sums.data.unpersist()
    p, q, v = map(float, params)
    fit = GammaGammaFit(
        p=p,
        q=q,
        v=v,
        log_likelihood=ll,
        n_customers=int(n),
        standard_errors=_standard_errors(("p", "q", "v"), -hess),
        converged=bool(result.success) or float(np.max(np.abs(result.jac))) < 1e-7,
    )
    log.info("Gamma-Gamma fit: %s, log-likelihood %.3f", fit.params(), fit.log_likelihood)
    return fit
