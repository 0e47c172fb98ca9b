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
  Spark aggregation of power sums around a centre v0 from which they follow exactly for
  any v within v0/4 (a series in (v - v0) / (v0 + x m)); Newton steps with the exact
  Hessian start from the optimum of a bounded random sample of repeat customers fitted on
  the driver, so the full fit usually needs one aggregation.

Objectives are the mean negative log-likelihood plus ``penalizer * sum(params**2)``, as in
the lifetimes package; the fitted ``log_likelihood`` is the unpenalised total.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy import special

from custseg.columns import require_columns
from custseg.sampling import hash_sample

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
    require_columns(summary, ("frequency", "recency", "T"), "fit_bgnbd")
    grouped = summary.groupBy(*(F.col(c).cast("double").alias(c) for c in ("frequency", "recency", "T"))).agg(
        F.count(F.lit(1)).cast("double").alias("n")
    )
    tuples = grouped.limit(max_tuples + 1).toArrow().to_pandas()
    if len(tuples) > max_tuples:
        raise ValueError(
            f"fit_bgnbd: more than max_tuples={max_tuples} distinct (frequency, recency, T) tuples; "
            "summarise in a coarser time unit (time_unit='W') or raise the limit"
        )
    log.info("BG/NBD sufficient statistics: %d distinct (frequency, recency, T) tuples", len(tuples))
    values = tuples[["frequency", "recency", "T"]]
    bad = tuples[(values["frequency"] < 0) | (values["recency"] < 0) | (values["recency"] > values["T"])]
    if len(bad) or values.isna().any().any():
        raise ValueError(
            "fit_bgnbd: summary has null, negative or recency > T rows "
            f"(first: {bad.head(1).to_dict('records')})"
        )
    return tuples


def _trigamma(z: Array | float) -> Array:
    return np.asarray(special.polygamma(1, z), dtype=float)


class _Frequencies:
    """The distinct frequencies of a tuple table: special functions of ``shift + x`` are
    evaluated once per distinct x (a few hundred values) and spread to the tuples."""

    def __init__(self, x: Array) -> None:
        self.values, self.index = np.unique(x, return_inverse=True)

    def __call__(self, fn: Callable[[Array], Array], shift: float) -> Array:
        return np.asarray(fn(shift + self.values), dtype=float)[self.index]


def bgnbd_loglik_terms(
    params: Array, x: Array, tx: Array, T: Array, freqs: _Frequencies | None = None
) -> tuple[Array, Array]:
    """Per-tuple log-likelihood and its gradient (rows r, alpha, a, b) in the natural
    parameters (Fader, Hardie & Lee 2005, eq. 6, with every constant)."""
    r, alpha, a, b = params
    on_x = freqs or _Frequencies(x)
    repeat = x > 0
    base = (
        on_x(special.gammaln, r)
        - special.gammaln(r)
        + r * np.log(alpha)
        - (r + x) * np.log(alpha + T)
        + special.gammaln(a + b)
        + on_x(special.gammaln, b)
        - special.gammaln(b)
        - on_x(special.gammaln, a + b)
    )
    bx1 = np.where(repeat, b + x - 1, 1.0)
    log_ratio = np.log(alpha + T) - np.log(alpha + tx)
    e = np.log(a) - np.log(bx1) + (r + x) * log_ratio
    ll = base + np.where(repeat, np.logaddexp(0.0, e), 0.0)
    share = np.where(repeat, special.expit(e), 0.0)  # D / (1 + D)
    grad = np.vstack(
        [
            on_x(special.digamma, r)
            - special.digamma(r)
            + np.log(alpha)
            - np.log(alpha + T)
            + share * log_ratio,
            r / alpha - (r + x) / (alpha + T) + share * (r + x) * (1 / (alpha + T) - 1 / (alpha + tx)),
            special.digamma(a + b) - on_x(special.digamma, a + b) + share / a,
            on_x(special.digamma, b)
            + special.digamma(a + b)
            - special.digamma(b)
            - on_x(special.digamma, a + b)
            - share / bx1,
        ]
    )
    return ll, grad


def bgnbd_hessian(
    params: Array, x: Array, tx: Array, T: Array, w: Array, freqs: _Frequencies | None = None
) -> Array:
    """The weighted total Hessian of the BG/NBD log-likelihood in (r, alpha, a, b)."""
    r, alpha, a, b = params
    on_x = freqs or _Frequencies(x)
    repeat = x > 0
    tg = _trigamma
    bx1 = np.where(repeat, b + x - 1, 1.0)
    log_ratio = np.log(alpha + T) - np.log(alpha + tx)
    e = np.log(a) - np.log(bx1) + (r + x) * log_ratio
    sig = np.where(repeat, special.expit(e), 0.0)
    d_alpha = 1 / (alpha + T) - 1 / (alpha + tx)
    grad_e = [log_ratio, (r + x) * d_alpha, np.full_like(x, 1 / a), -1 / bx1]
    h = np.zeros((4, 4))
    ab = float(np.dot(w, tg(a + b) - on_x(tg, a + b)))
    h[0, 0] = np.dot(w, on_x(tg, r) - tg(r))
    h[0, 1] = h[1, 0] = np.dot(w, 1 / alpha - 1 / (alpha + T) + sig * d_alpha)
    h[1, 1] = np.dot(
        w,
        -r / alpha**2
        + (r + x) / (alpha + T) ** 2
        + sig * (r + x) * (1 / (alpha + tx) ** 2 - 1 / (alpha + T) ** 2),
    )
    h[2, 2] = ab - np.dot(w, sig) / a**2
    h[2, 3] = h[3, 2] = ab
    h[3, 3] = np.dot(w, on_x(tg, b) - tg(b) + sig / bx1**2) + ab
    curvature = w * sig * (1 - sig)
    for i in range(4):
        for j in range(4):
            h[i, j] += np.dot(curvature, grad_e[i] * grad_e[j])
    return h


def _newton(parts: Callable[[Array], tuple[float, Array, Array]], theta0: Array) -> Any:
    """Minimise with trust-region Newton steps (scipy's trust-exact) given value, gradient
    and Hessian in one call, each point evaluated once."""
    # imported here: prediction UDFs unpickle the fits from this module in every Python
    # worker, which then need not import scipy.optimize (docs/architecture.md, "Measured choices")
    from scipy import optimize

    cache: dict[bytes, tuple[float, Array, Array]] = {}

    def at(theta: Array) -> tuple[float, Array, Array]:
        key = theta.tobytes()
        if key not in cache:
            cache[key] = parts(theta)
        return cache[key]

    return optimize.minimize(
        lambda t: at(t)[0],
        theta0,
        jac=lambda t: at(t)[1],
        hess=lambda t: at(t)[2],
        method="trust-exact",
        options={"gtol": 1e-9, "maxiter": 500},
    )


def _penalised_in_logs(
    params: Array, ll: float, grad: Array, hess: Array, n: float, penalizer: float
) -> tuple[float, Array, Array]:
    """Mean negative log-likelihood plus ``penalizer * sum(params**2)``, with its gradient
    and Hessian in the log-parameters, from the total log-likelihood, gradient and Hessian
    in the natural parameters ``params``."""
    value = -ll / n + penalizer * float(np.sum(params**2))
    g = -grad / n + 2 * penalizer * params
    h = -hess / n + 2 * penalizer * np.eye(len(params))
    return value, g * params, h * np.outer(params, params) + np.diag(g * params)


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
    freqs = _Frequencies(x)
    scale = float(np.average(T, weights=w)) or 1.0
    start = initial or {"r": 1.0, "alpha": scale, "a": 1.0, "b": 1.0}
    theta0 = np.log([start["r"], start["alpha"], start["a"], start["b"]])

    def parts(theta: Array) -> tuple[float, Array, Array]:
        params = np.exp(theta)
        ll, grad = bgnbd_loglik_terms(params, x, tx, T, freqs)
        hess = bgnbd_hessian(params, x, tx, T, w, freqs)
        return _penalised_in_logs(params, float(np.dot(w, ll)), grad @ w, hess, n, penalizer)

    result = _newton(parts, theta0)
    params = np.exp(result.x)
    ll, _ = bgnbd_loglik_terms(params, x, tx, T, freqs)

    errors = _standard_errors(("r", "alpha", "a", "b"), -bgnbd_hessian(params, x, tx, T, w, freqs))
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


class _SpendSums:
    """Gamma-Gamma data as per-frequency sums (driver) plus, for a given v, the six sums
    S1 = sum x log(v+xm), S0 = sum log(v+xm), R1 = sum x/(v+xm), R0 = sum 1/(v+xm),
    Q1 = sum x/(v+xm)^2, Q0 = sum 1/(v+xm)^2 over customers (``_sums``)."""

    KEYS = ("S1", "S0", "R1", "R0", "Q1", "Q0")

    def __init__(self, by_x: pd.DataFrame) -> None:
        if by_x.empty:
            raise ValueError("fit_gamma_gamma: no customer has frequency > 0")
        if by_x["bad"].sum():
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

    def _sums(self, v: float) -> dict[str, float]:
        raise NotImplementedError

    def at(self, v: float) -> dict[str, float]:
        if v not in self._cache:
            self._cache[v] = self._sums(v)
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


SERIES_TERMS = 30


def _series_sums(v: float, v0: float, power: Array) -> dict[str, float]:
    """The six sums at v from the power sums at v0, for |v - v0| <= v0 / 4: with
    d = v0 + x m, u = v0 / d and rho = (v - v0) / v0, log(v + x m) = log d + log(1 + rho u)
    and 1 / (v + x m) = u / v0 / (1 + rho u), expanded in powers of rho u (|rho u| <= 1/4,
    so SERIES_TERMS = 30 leaves a relative error below 1e-16)."""
    n_k = SERIES_TERMS + 2
    a, b = power[2 : 2 + n_k], power[2 + n_k :]  # a[k-1] = sum u^k, b[k-1] = sum x u^k
    rho = (v - v0) / v0
    k = np.arange(1, SERIES_TERMS + 1)
    log_terms = (-1.0) ** (k + 1) * rho**k / k
    j = np.arange(0, SERIES_TERMS + 1)
    inv_terms = (-rho) ** j
    return {
        "S0": power[0] + float(np.dot(log_terms, a[:SERIES_TERMS])),
        "S1": power[1] + float(np.dot(log_terms, b[:SERIES_TERMS])),
        "R0": float(np.dot(inv_terms, a[: SERIES_TERMS + 1])) / v0,
        "R1": float(np.dot(inv_terms, b[: SERIES_TERMS + 1])) / v0,
        "Q0": float(np.dot((j + 1) * inv_terms, a[1 : SERIES_TERMS + 2])) / v0**2,
        "Q1": float(np.dot((j + 1) * inv_terms, b[1 : SERIES_TERMS + 2])) / v0**2,
    }


class _SparkSpendSums(_SpendSums):
    """The repeat customers on Spark (persisted until ``close``). One aggregation gives the
    power sums around a centre v0, from which the sums at any v within v0 / 4 of it follow
    on the driver exactly (to rounding); the centre moves only when the optimiser leaves
    that range."""

    def __init__(self, summary: DataFrame) -> None:
        require_columns(summary, ("frequency", "monetary_value"), "fit_gamma_gamma")
        x, m = F.col("frequency").cast("double"), F.col("monetary_value").cast("double")
        # a few large partitions: every pass over them is one small job
        parts = summary.sparkSession.sparkContext.defaultParallelism
        self.data = (
            summary.where(F.col("frequency") > 0).select(x.alias("x"), m.alias("m")).coalesce(parts).persist()
        )
        by_x = self.data.groupBy("x").agg(
            F.count(F.lit(1)).alias("n"),
            F.sum(F.log(F.when(F.col("m") > 0, F.col("m")))).alias("log_m"),
            F.sum("m").alias("m"),
            F.sum(F.when(F.col("m").isNull() | (F.col("m") <= 0), 1).otherwise(0)).alias("bad"),
        )
        try:
            super().__init__(by_x.toArrow().to_pandas())
        except ValueError:
            self.close()
            raise
        self._center: tuple[float, Array] | None = None
        self.aggregations = 0

    def _sums(self, v: float) -> dict[str, float]:
        if self._center is None or abs(v - self._center[0]) > self._center[0] / 4:
            self._center = (v, self._power_sums(v))
            self.aggregations += 1
        return _series_sums(v, *self._center)

    def _power_sums(self, v0: float) -> Array:
        """One pass: sum log d, sum x log d, then sum u^k and sum x u^k for
        k = 1..SERIES_TERMS+2, with d = v0 + x m and u = v0 / d in (0, 1]; numpy per Arrow
        batch (powers by cumulative products), one row of partial sums per partition."""
        n_k = SERIES_TERMS + 2
        names = [f"s{i}" for i in range(2 + 2 * n_k)]

        def partial(batches: Iterable[pa.RecordBatch]) -> Iterable[pa.RecordBatch]:
            acc = np.zeros(len(names))
            for batch in batches:
                x = batch.column("x").to_numpy(zero_copy_only=False)
                d = v0 + x * batch.column("m").to_numpy(zero_copy_only=False)
                powers = np.cumprod(np.repeat((v0 / d)[:, None], n_k, axis=1), axis=1)
                log_d = np.log(d)
                acc[0] += log_d.sum()
                acc[1] += x @ log_d
                acc[2 : 2 + n_k] += powers.sum(axis=0)
                acc[2 + n_k :] += x @ powers
            yield pa.RecordBatch.from_arrays([pa.array([value]) for value in acc], names=names)

        schema = ", ".join(f"{name} double" for name in names)
        rows = self.data.mapInArrow(partial, schema).toArrow().to_pandas()  # one row per partition
        return np.asarray(rows.sum(axis=0).to_numpy(), dtype=float)

    def sample(self, rows: int, seed: int) -> _LocalSpendSums:
        """About ``rows`` repeat customers drawn at random, on the driver (bounded)."""
        fraction = min(1.0, rows / self.n)
        drawn = hash_sample(self.data, fraction, seed, ["x", "m"]).toArrow().to_pandas()
        return _LocalSpendSums(drawn["x"].to_numpy(float), drawn["m"].to_numpy(float))

    def close(self) -> None:
        self.data.unpersist()


class _LocalSpendSums(_SpendSums):
    """Repeat customers as driver arrays (a bounded sample, or a test's data)."""

    def __init__(self, x: Array, m: Array) -> None:
        self.xs, self.ms = x, m
        frame = pd.DataFrame({"x": x, "m": m, "log_m": np.log(np.where(m > 0, m, np.nan)), "bad": m <= 0})
        by_x = frame.groupby("x", as_index=False).agg(
            n=("m", "size"), log_m=("log_m", "sum"), m=("m", "sum"), bad=("bad", "sum")
        )
        super().__init__(by_x)

    def _sums(self, v: float) -> dict[str, float]:
        d = v + self.xs * self.ms
        x = self.xs
        values = (x * np.log(d), np.log(d), x / d, 1 / d, x / d**2, 1 / d**2)
        return {k: float(np.sum(e)) for k, e in zip(self.KEYS, values, strict=True)}


def _fit_spend(sums: _SpendSums, penalizer: float, start: dict[str, float]) -> Any:
    """Newton on the Gamma-Gamma objective of ``sums`` from ``start``."""

    def parts(theta: Array) -> tuple[float, Array, Array]:
        params = np.exp(theta)
        return _penalised_in_logs(params, *sums.loglik(*params), sums.n, penalizer)

    return _newton(parts, np.log([start["p"], start["q"], start["v"]]))


GG_WARM_START_ROWS = 20_000


def fit_gamma_gamma(
    summary: DataFrame, *, penalizer: float = 0.0, initial: dict[str, float] | None = None
) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma on the customers with frequency > 0, by trust-region
    Newton steps with the exact Hessian; standard errors from the observed information."""
    if penalizer < 0:
        raise ValueError(f"fit_gamma_gamma: penalizer must be >= 0, got {penalizer}")
    sums = _SparkSpendSums(summary)
    try:
        start = initial
        if start is None:  # a fit on a bounded sample: the full fit then needs few aggregations
            local = sums.sample(GG_WARM_START_ROWS, seed=17)
            warm = _fit_spend(local, penalizer, {"p": 2.0, "q": 3.0, "v": local.mean_m})
            start = dict(zip(("p", "q", "v"), np.exp(warm.x), strict=True))
        result = _fit_spend(sums, penalizer, start)
        params = np.exp(result.x)
        ll, _, hess = sums.loglik(*params)
        log.info(
            "Gamma-Gamma fit: %d Spark aggregations over %d repeat customers (%s)",
            sums.aggregations,
            int(sums.n),
            result.message,
        )
    finally:
        sums.close()
    p, q, v = map(float, params)
    fit = GammaGammaFit(
        p=p,
        q=q,
        v=v,
        log_likelihood=ll,
        n_customers=int(sums.n),
        standard_errors=_standard_errors(("p", "q", "v"), -hess),
        converged=bool(result.success) or float(np.max(np.abs(result.jac))) < 1e-7,
    )
    log.info("Gamma-Gamma fit: %s, log-likelihood %.3f", fit.params(), fit.log_likelihood)
    return fit
