"""Draws from known BG/NBD + Gamma-Gamma parameters, for the CLV tests (numpy only)."""

from __future__ import annotations

import numpy as np
import pandas as pd

START = pd.Timestamp("2023-01-02")  # a Monday


def draw_summaries(
    n: int, *, r: float, alpha: float, a: float, b: float, p: float, q: float, v: float, seed: int
) -> pd.DataFrame:
    """Continuous-time BG/NBD customers observed for T in [200, 700) days with their
    Gamma-Gamma mean spend: frequency, recency, T, monetary_value."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(200, 700, n)
    lam = rng.gamma(r, 1 / alpha, n)
    drop = rng.beta(a, b, n)
    nu = rng.gamma(q, 1 / v, n)
    x = np.zeros(n)
    tx = np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T[i]:
                break
            x[i] += 1
            tx[i] = t
            if rng.random() < drop[i]:
                break
    m = np.where(x > 0, rng.gamma(p * np.maximum(x, 1), 1 / (np.maximum(x, 1) * nu)), 0.0)
    return pd.DataFrame({"frequency": x, "recency": tx, "T": T, "monetary_value": m})


def draw_transactions(n: int, seed: int, *, days: int = 720) -> pd.DataFrame:
    """Purchases of n customers with heterogeneous rates and dropout over ``days`` days,
    at random times of day (so per-period grouping matters), several per day possible."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n):
        birth = rng.uniform(0, days * 0.8)
        lam = rng.gamma(1.2, 1 / 25)
        drop = rng.beta(1, 6)
        spend = rng.gamma(4, 15)
        t = birth
        while t < days:
            rows.append(
                (f"c{c:04d}", START + pd.Timedelta(seconds=int(t * 86400)), round(rng.gamma(3, spend / 3), 2))
            )
            if len(rows) > 1 and rng.random() < drop:
                break
            t += rng.exponential(1 / lam)
    return pd.DataFrame(rows, columns=["customer_id", "ts", "amount"])
