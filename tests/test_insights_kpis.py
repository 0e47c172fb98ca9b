"""Monthly KPIs against hand-computed months; trends, forecasts and anomalies against scipy,
statsmodels and an independent robust z; Kruskal-Wallis against scipy.stats.kruskal."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scipy import stats
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from custseg.insights.kpis import MONTHLY_COLUMNS, kpi_trends, kruskal_wallis, monthly_kpis

TX = "transaction_id string, source_system string, source_id string, ts string, amount double, discount double, cost double, product_category string, channel string"  # noqa: E501
SUPPORT = "contact_id string, source_system string, source_id string, ts string, channel string, handle_minutes double, resolved boolean, cost double"  # noqa: E501
TOUCH = "touch_id string, source_system string, source_id string, ts string, channel string, campaign string, cost double, funnel_stage string"  # noqa: E501
USAGE = "source_system string, source_id string, date date, sessions long, events long, active_minutes double, features_used int"  # noqa: E501
IMAP = "source_system string, source_id string, customer_id string"


def _timed(df: DataFrame) -> DataFrame:
    """Timestamps parsed in the session time zone (UTC), not the machine's."""
    return df.withColumn("ts", F.to_timestamp("ts"))


def _tx(tid: str, system: str, sid: str | None, ts: str, amount: float, cost: float | None) -> tuple:
    return (tid, system, sid, ts, amount, 0.0, cost, "shoes", "web")


@pytest.fixture(scope="module")
def events(spark: SparkSession) -> dict[str, DataFrame]:
    """Customers A (records crm/c1, web/w1), B (crm/c2), C (crm/c3, excluded), D (crm/c4,
    usage and a touch only); pos/p9 is unmapped; one touch is anonymous. Events from
    2024-01-05; February has none; end is 2024-04-16."""
    tx = [
        _tx("t1", "crm", "c1", "2024-01-05 10:00:00", 100.0, 60.0),
        _tx("t2", "web", "w1", "2024-01-20 12:00:00", 50.0, 20.0),
        _tx("t3", "crm", "c2", "2024-01-31 23:30:00", 80.0, 50.0),
        _tx("t4", "crm", "c2", "2024-03-02 09:00:00", -30.0, 0.0),  # refund
        _tx("t5", "crm", "c3", "2024-03-10 09:00:00", 1000.0, 100.0),  # excluded customer
        _tx("t6", "pos", "p9", "2024-03-15 09:00:00", 40.0, 10.0),  # unmapped record
        _tx("t7", "crm", "c1", "2024-03-20 09:00:00", 70.0, None),  # cost unknown: 0
        _tx("t8", "crm", "c1", "2024-04-15 23:59:59", 60.0, 30.0),
        _tx("t9", "crm", "c2", "2024-04-16 00:00:00", 500.0, 1.0),  # on end: ignored
        _tx("t0", "crm", "c2", "2023-12-31 23:59:59", 7.0, 1.0),  # before start (2nd test only)
    ]
    support = [
        ("s1", "crm", "c2", "2024-01-10 08:00:00", "phone", 12.0, True, 5.0),
        ("s2", "crm", "c3", "2024-03-11 08:00:00", "phone", 3.0, True, 7.0),
        ("s3", "pos", "p9", "2024-03-12 08:00:00", "chat", 4.0, False, 4.0),
        ("s4", "web", "w1", "2024-04-01 08:00:00", "chat", 9.0, True, 6.0),
    ]
    touches = [
        ("m1", None, None, "2024-01-07 08:00:00", "ads", "winter", 10.0, "awareness"),
        ("m2", "crm", "c4", "2024-03-05 08:00:00", "email", "spring", 3.0, "consideration"),
        ("m3", "crm", "c3", "2024-04-02 08:00:00", "email", "spring", 8.0, "consideration"),
        ("m4", "crm", "c1", "2024-05-01 08:00:00", "email", "may", 100.0, "retention"),
    ]
    usage = [
        ("crm", "c4", date(2024, 3, 6), 2, 10, 30.0, 3),
        ("crm", "c3", date(2024, 4, 3), 1, 5, 10.0, 1),
    ]
    imap = [
        ("crm", "c1", "A"),
        ("web", "w1", "A"),
        ("crm", "c2", "B"),
        ("crm", "c3", "C"),
        ("crm", "c4", "D"),
    ]
    first_seen = [
        ("A", date(2024, 1, 5)),
        ("B", date(2024, 1, 10)),
        ("C", date(2024, 3, 10)),  # excluded
        ("D", date(2024, 3, 5)),
        ("E", date(2024, 4, 20)),  # after end
        ("F", date(2023, 12, 1)),  # before the first month
        ("G", date(2024, 2, 14)),  # signed up, no events
    ]
    return {
        "tx": _timed(spark.createDataFrame(tx, TX)),
        "support": _timed(spark.createDataFrame(support, SUPPORT)),
        "touches": _timed(spark.createDataFrame(touches, TOUCH)),
        "usage": spark.createDataFrame(usage, USAGE),
        "imap": spark.createDataFrame(imap, IMAP),
        "excluded": spark.createDataFrame([("C",)], "customer_id string"),
        "first_seen": spark.createDataFrame(first_seen, "customer_id string, first_date date"),
    }


def _rows(df: DataFrame) -> list[dict]:
    assert tuple(df.columns) == MONTHLY_COLUMNS
    return [r.asDict() for r in df.collect()]


def _assert_months(got: list[dict], expected: list[dict]) -> None:
    assert [r["month"] for r in got] == [r["month"] for r in expected]
    for g, e in zip(got, expected, strict=True):
        for name, value in e.items():
            if isinstance(value, float):
                assert g[name] == pytest.approx(value, rel=1e-12, abs=1e-12), (e["month"], name)
            else:
                assert g[name] == value, (e["month"], name)


def _month(month: date, complete: bool, revenue: float, gm: float, mkt: float, sup: float, orders: int,
           aov: float | None, active: int, new: int | None) -> dict:  # fmt: skip
    return {
        "month": month, "complete": complete, "revenue": revenue, "gross_margin": gm, "marketing_cost": mkt,
        "support_cost": sup, "profit": gm - mkt - sup, "orders": orders, "average_order_value": aov,
        "active_customers": active, "new_customers": new,
    }  # fmt: skip


def test_monthly_kpis_hand_computed(events: dict[str, DataFrame]) -> None:
    got = monthly_kpis(
        events["tx"].where(F.col("transaction_id") != "t0"),
        identity_map=events["imap"],
        support=events["support"],
        touches=events["touches"],
        usage=events["usage"],
        excluded=events["excluded"],
        first_seen=events["first_seen"],
        end=date(2024, 4, 16),
    )
    expected = [
        # t1 + t2 + t3; margin 40 + 30 + 30; anonymous touch m1; s1; A and B active; A, B new.
        # Not complete: the data starts on 2024-01-05.
        _month(date(2024, 1, 1), False, 230.0, 100.0, 10.0, 5.0, 3, 230.0 / 3, 2, 2),
        # No events: zeros, no average order value; G signed up.
        _month(date(2024, 2, 1), True, 0.0, 0.0, 0.0, 0.0, 0, None, 0, 1),
        # t4 refund + t6 unmapped + t7 (t5 excluded); margin -30 + 30 + 70; touch m2;
        # support s3 unmapped (s2 excluded); orders t6, t7; B, A, D (usage) active; D new.
        _month(date(2024, 3, 1), True, 80.0, 70.0, 3.0, 4.0, 2, 55.0, 3, 1),
        # t8 (t9 on end ignored); m3 excluded; s4; A active (C excluded); E after end.
        _month(date(2024, 4, 1), False, 60.0, 30.0, 0.0, 6.0, 1, 60.0, 1, 0),
    ]
    _assert_months(_rows(got), expected)


def test_monthly_kpis_start_and_whole_months(events: dict[str, DataFrame]) -> None:
    """start and an end on the first of a month: one complete month, transactions only."""
    got = monthly_kpis(
        events["tx"], identity_map=events["imap"], start=date(2024, 3, 1), end=date(2024, 4, 1)
    )
    # t4, t5 (nobody excluded), t6, t7; customers B, C, A.
    expected = [_month(date(2024, 3, 1), True, 1080.0, 970.0, 0.0, 0.0, 3, 1110.0 / 3, 3, None)]
    _assert_months(_rows(got), expected)
    # Without start the data begins with t0 on 2023-12-31: December is a month, not complete.
    months = _rows(monthly_kpis(events["tx"], identity_map=events["imap"], end=date(2024, 2, 1)))
    assert [(r["month"], r["complete"], r["revenue"]) for r in months] == [
        (date(2023, 12, 1), False, 7.0),
        (date(2024, 1, 1), True, 230.0),
    ]


def test_monthly_kpis_errors(events: dict[str, DataFrame]) -> None:
    with pytest.raises(ValueError, match=r"transactions: missing column\(s\) \['amount'\]"):
        monthly_kpis(events["tx"].drop("amount"), identity_map=events["imap"], end=date(2024, 4, 1))
    with pytest.raises(ValueError, match=r"identity_map: missing column\(s\) \['customer_id'\]"):
        monthly_kpis(events["tx"], identity_map=events["imap"].drop("customer_id"), end=date(2024, 4, 1))
    with pytest.raises(ValueError, match="start .* must be before end"):
        monthly_kpis(events["tx"], identity_map=events["imap"], start=date(2024, 4, 1), end=date(2024, 4, 1))


N_MONTHS = 30
SPIKE_AT = 17


def _series() -> pd.DataFrame:
    """30 complete months and one partial month with a wild value that must be ignored."""
    rng = np.random.default_rng(11)
    t = np.arange(N_MONTHS)
    spiky = 50 + 1.5 * t + rng.normal(0, 1.0, N_MONTHS)
    spiky[SPIKE_AT] += 25
    frame = pd.DataFrame(
        {
            "month": [date(2022 + (m // 12), m % 12 + 1, 1) for m in range(N_MONTHS + 1)],
            "complete": [True] * N_MONTHS + [False],
            "revenue": [*(1000 + 20 * t + rng.normal(0, 5.0, N_MONTHS)), 1.0],
            "orders": [*spiky, 0.0],
            "linear": [*(200.0 + 7.0 * t), 0.0],
            "flat": [42.0] * N_MONTHS + [0.0],
        }
    )
    return frame


def _robust_z(y: np.ndarray) -> np.ndarray:
    t = np.arange(len(y), dtype=float)
    fit = stats.theilslopes(y, t)
    r = y - (fit.intercept + fit.slope * t)
    med = np.median(r)
    return 0.6745 * (r - med) / np.median(np.abs(r - med))


def test_kpi_trends_against_scipy_and_robust_z() -> None:
    monthly = _series()
    trends, _, anomalies = kpi_trends(monthly, ["revenue", "orders", "flat"], alpha=0.1)
    trends = trends.set_index("kpi")
    for kpi in ("revenue", "orders"):
        y = monthly[kpi].to_numpy()[:N_MONTHS]
        ref = stats.theilslopes(y, np.arange(N_MONTHS), alpha=0.9)
        row = trends.loc[kpi]
        assert row["months"] == N_MONTHS
        assert row["slope_per_month"] == pytest.approx(ref.slope, rel=1e-12)
        assert row["slope_lo"] == pytest.approx(ref.low_slope, rel=1e-12)
        assert row["slope_hi"] == pytest.approx(ref.high_slope, rel=1e-12)
        assert row["intercept"] == pytest.approx(ref.intercept, rel=1e-12)
        assert row["relative_slope"] == pytest.approx(ref.slope / np.median(y), rel=1e-12)
        assert row["slope_lo"] < row["slope_per_month"] < row["slope_hi"]

    z = _robust_z(monthly["orders"].to_numpy()[:N_MONTHS])
    assert np.flatnonzero(np.abs(z) >= 3.5).tolist() == [SPIKE_AT]
    assert np.abs(_robust_z(monthly["revenue"].to_numpy()[:N_MONTHS])).max() < 3.5
    # Only the spike: nothing on the clean revenue, nothing on the flat series (MAD 0).
    assert anomalies["kpi"].tolist() == ["orders"]
    spike = anomalies.iloc[0]
    assert spike["month"] == date(2023, 6, 1)
    assert spike["value"] == monthly["orders"].iloc[SPIKE_AT]
    assert spike["z"] == pytest.approx(z[SPIKE_AT], rel=1e-12)
    ref = stats.theilslopes(monthly["orders"].to_numpy()[:N_MONTHS], np.arange(N_MONTHS))
    y = monthly["orders"].to_numpy()[:N_MONTHS]
    residual_median = np.median(y - (ref.intercept + ref.slope * np.arange(N_MONTHS)))
    assert spike["expected"] == pytest.approx(
        ref.intercept + ref.slope * SPIKE_AT + residual_median, rel=1e-12
    )
    assert trends.loc["flat", "slope_per_month"] == 0.0


def test_kpi_trends_forecast_against_statsmodels() -> None:
    monthly = _series()
    _, forecast, _ = kpi_trends(monthly, ["revenue", "linear", "flat"], horizon=3, alpha=0.1)
    ahead = [date(2024, 7, 1), date(2024, 8, 1), date(2024, 9, 1)]

    revenue = forecast[forecast["kpi"] == "revenue"]
    assert revenue["month"].tolist() == ahead
    assert set(revenue["method"]) == {"ETS(A,A,N)"}
    # the model is fitted to the values at 12 significant digits (the docstring's contract)
    y = _twelve_digits(monthly["revenue"].to_numpy()[:N_MONTHS])
    ref = ETSModel(pd.Series(y), error="add", trend="add", damped_trend=False).fit(disp=False)
    frame = ref.get_prediction(start=N_MONTHS, end=N_MONTHS + 2).summary_frame(alpha=0.1)
    np.testing.assert_allclose(revenue["forecast"], frame["mean"], rtol=1e-9)
    np.testing.assert_allclose(revenue["lo"], frame["pi_lower"], rtol=1e-9)
    np.testing.assert_allclose(revenue["hi"], frame["pi_upper"], rtol=1e-9)
    assert (revenue["lo"] < revenue["forecast"]).all() and (revenue["forecast"] < revenue["hi"]).all()
    # sums of doubles added in another order (a cluster run) differ in the last bit: the
    # forecast does not move, where the optimiser alone would move it in the 5th digit
    nudged = monthly.assign(revenue=np.nextafter(monthly["revenue"].to_numpy(), np.inf))
    _, again, _ = kpi_trends(nudged, ["revenue"], horizon=3, alpha=0.1)
    assert again["forecast"].tolist() == revenue["forecast"].tolist()

    linear = forecast[forecast["kpi"] == "linear"]
    line = 200.0 + 7.0 * np.arange(N_MONTHS, N_MONTHS + 3)
    np.testing.assert_allclose(linear["forecast"], line, rtol=1e-6)

    flat = forecast[forecast["kpi"] == "flat"]
    assert set(flat["method"]) == {"constant"}
    assert flat["forecast"].tolist() == [42.0] * 3
    assert flat["lo"].isna().all() and flat["hi"].isna().all()


def test_kpi_trends_short_series_seasonal_and_gaps() -> None:
    monthly = _series()
    short = monthly.iloc[-6:]  # five complete months and the partial one
    trends, forecast, _ = kpi_trends(short, ["revenue"], horizon=2)
    assert trends.loc[0, "months"] == 5
    assert set(forecast["method"]) == {"too_short"}
    assert forecast[["forecast", "lo", "hi"]].isna().all().all()
    assert forecast["month"].tolist() == [date(2024, 7, 1), date(2024, 8, 1)]

    # 30 months hold two cycles of 12: seasonality is used when asked, and matches statsmodels.
    _, seasonal, _ = kpi_trends(monthly, ["revenue"], horizon=2, seasonal=12)
    assert set(seasonal["method"]) == {"ETS(A,A,A)[12]"}
    y = pd.Series(_twelve_digits(monthly["revenue"].to_numpy()[:N_MONTHS]))
    ref = ETSModel(y, error="add", trend="add", seasonal="add", seasonal_periods=12).fit(disp=False)
    frame = ref.get_prediction(start=N_MONTHS, end=N_MONTHS + 1).summary_frame(alpha=0.05)
    np.testing.assert_allclose(seasonal["hi"], frame["pi_upper"], rtol=1e-9)
    # 24 months needed: 20 are not enough, the model falls back to no season.
    _, fallback, _ = kpi_trends(monthly.iloc[10:], ["revenue"], horizon=1, seasonal=12)
    assert fallback["method"].tolist() == ["ETS(A,A,N)"]

    with pytest.raises(ValueError, match="not consecutive"):
        kpi_trends(monthly.drop(index=4), ["revenue"])
    with pytest.raises(ValueError, match=r"monthly: missing column\(s\) \['profit'\]"):
        kpi_trends(monthly, ["profit"])


def _twelve_digits(values: np.ndarray) -> np.ndarray:
    return np.array(
        [float(np.format_float_positional(v, precision=12, unique=False, fractional=False)) for v in values]
    )


def _lower_median(values: np.ndarray) -> float:
    return float(np.sort(values)[(len(values) - 1) // 2])


def test_kruskal_wallis_against_scipy(spark: SparkSession) -> None:
    rng = np.random.default_rng(5)
    sizes = {"a": 40, "b": 55, "c": 36}
    shift = {"a": 0, "b": 4, "c": 2}
    frame = pd.concat(
        [pd.DataFrame({"segment": g, "spend": rng.integers(0, 15, n) + shift[g]}) for g, n in sizes.items()],
        ignore_index=True,
    ).astype({"spend": float})
    frame["spend_rank"] = frame["spend"].rank(method="average")
    # Left out: rows without a group or a value (not ranked).
    extra = pd.DataFrame({"segment": [None, "a"], "spend": [3.0, None], "spend_rank": [None, None]})
    ranked = spark.createDataFrame(
        pd.concat([frame, extra], ignore_index=True), "segment string, spend double, spend_rank double"
    )
    got = kruskal_wallis(ranked, group_col="segment", value_col="spend", rank_col="spend_rank")

    samples = [frame.loc[frame["segment"] == g, "spend"].to_numpy() for g in sizes]
    ref = stats.kruskal(*samples)
    n_total, k = sum(sizes.values()), len(sizes)
    assert got["segment"].tolist() == ["a", "b", "c"]
    assert got["n"].tolist() == list(sizes.values())
    assert got["h"].iloc[0] == pytest.approx(ref.statistic, rel=1e-9)
    assert got["p_value"].iloc[0] == pytest.approx(ref.pvalue, rel=1e-9)
    assert ref.pvalue < 1e-3  # the shifted groups differ: a real test, not a null one
    assert got["eta_squared"].iloc[0] == pytest.approx((ref.statistic - k + 1) / (n_total - k), rel=1e-9)
    assert (got["df"] == k - 1).all() and (got["n_total"] == n_total).all() and (got["groups"] == k).all()
    ties = frame["spend"].value_counts().to_numpy()
    correction = 1 - (ties**3 - ties).sum() / (n_total**3 - n_total)
    assert got["tie_correction"].iloc[0] == pytest.approx(correction, rel=1e-12)
    for g, sample in zip(sizes, samples, strict=True):
        row = got[got["segment"] == g].iloc[0]
        ranks = frame.loc[frame["segment"] == g, "spend_rank"]
        assert row["rank_sum"] == ranks.sum() and row["mean_rank"] == pytest.approx(ranks.mean(), rel=1e-12)
        assert row["median"] == _lower_median(sample)


def test_kruskal_wallis_refuses_wrong_ranks(spark: SparkSession) -> None:
    frame = pd.DataFrame({"g": ["x", "x", "y", "y", "y"], "v": [1.0, 2.0, 2.0, 3.0, 5.0]})
    frame["r"] = frame["v"].rank(method="average")
    schema = "g string, v double, r double"
    shifted = spark.createDataFrame(frame.assign(r=frame["r"] + 1), schema)
    with pytest.raises(ValueError, match="rank exactly those rows"):
        kruskal_wallis(shifted, group_col="g", value_col="v", rank_col="r")
    one_group = spark.createDataFrame(frame.assign(g="x"), schema)
    with pytest.raises(ValueError, match="at least two groups"):
        kruskal_wallis(one_group, group_col="g", value_col="v", rank_col="r")
    with pytest.raises(ValueError, match=r"ranked: missing column\(s\) \['rank'\]"):
        kruskal_wallis(one_group, group_col="g", value_col="v", rank_col="rank")
