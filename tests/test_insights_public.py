"""The insights methods on public data no one here made: the CDNOW customer sample shipped
with the lifetimes package (23,570 customers who first bought from CDNOW in early 1997,
69,659 purchases to mid-1998; Fader and Hardie's data set).

The concentration figures and the monthly KPIs are checked against pandas on it, and the
bootstrap's interval of the top-20 % share against a pandas bootstrap with the same
weights: the defaults (1,000 rank bins, B replicates) hold on spend data that is heavily
skewed and full of ties, unlike the generator's.
"""

from __future__ import annotations

from pathlib import Path

import lifetimes
import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from scipy import stats

from custseg.config import Config
from custseg.insights.bootstrap import customer_hash, poisson_weights
from custseg.insights.concentration import concentration_sums, concentration_tables
from custseg.insights.kpis import kpi_trends, monthly_kpis

CDNOW = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_master.txt"


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    raw = pd.read_csv(CDNOW, sep=r"\s+", header=0, names=["customer_id", "date", "cds", "amount"], dtype=str)
    raw["amount"] = raw["amount"].astype(float)
    raw["ts"] = pd.to_datetime(raw["date"], format="%Y%m%d")
    assert raw["customer_id"].nunique() == 23570 and len(raw) == 69659
    return raw


def test_concentration_of_cdnow_spend_against_pandas(spark: SparkSession, cdnow: pd.DataFrame) -> None:
    spend = cdnow.groupby("customer_id", as_index=False)["amount"].sum()
    df = spark.createDataFrame(spend)
    n_replicates = 40
    table, curves = concentration_tables(
        concentration_sums(df, ["amount"], replicates=n_replicates, seed=7, bins=1000), whale_measure=None
    )
    got = table.set_index("metric")["value"]
    x = np.sort(spend["amount"].to_numpy())
    n = len(x)
    gini = 2 * np.sum(np.arange(1, n + 1) * x) / (n * x.sum()) - (n + 1) / n
    assert got["gini"] == pytest.approx(gini, rel=1e-9)
    desc = x[::-1]
    for q in (0.01, 0.05, 0.2):
        k = q * n
        top = desc[: int(k)].sum() + (k - int(k)) * desc[int(k)]
        assert got[f"top_{round(q * 100)}_share"] == pytest.approx(top / x.sum(), rel=2e-3)
    lorenz = curves[curves["curve"] == "lorenz"]
    half = lorenz.loc[np.isclose(lorenz["customer_share"], 0.5), "cumulative_share"].iloc[0]
    assert half == pytest.approx(x[: n // 2].sum() / x.sum(), rel=2e-3)
    # the top-20 % share's interval against pandas with the same weights
    hashes = pd.DataFrame(df.select("customer_id", customer_hash("customer_id", 7).alias("h")).toPandas())
    spend = spend.merge(hashes, on="customer_id")
    w = poisson_weights(spend["h"].to_numpy(), n_replicates)[:, 1:]
    order = np.argsort(-spend["amount"].to_numpy(), kind="stable")
    v, ws = spend["amount"].to_numpy()[order], w[order]
    shares = []
    for b in range(n_replicates):
        cum = np.cumsum(ws[:, b])
        target = 0.2 * cum[-1]
        k = int(np.searchsorted(cum, target))
        before = cum[k - 1] if k else 0.0
        shares.append((np.sum(ws[:k, b] * v[:k]) + (target - before) * v[k]) / np.sum(ws[:, b] * v))
    row = table.set_index("metric").loc["top_20_share"]
    assert row["value_lo"] == pytest.approx(np.quantile(shares, 0.025), rel=5e-3)
    assert row["value_hi"] == pytest.approx(np.quantile(shares, 0.975), rel=5e-3)


def _cdnow_monthly(spark: SparkSession, cdnow: pd.DataFrame) -> pd.DataFrame:
    """monthly_kpis of CDNOW's purchases (one record per customer, no costs)."""
    tx = spark.createDataFrame(
        cdnow.assign(
            transaction_id=[f"T{i}" for i in range(len(cdnow))],
            source_system="cdnow",
            source_id=cdnow["customer_id"],
            cost=0.0,
            discount=0.0,
        )[["transaction_id", "source_system", "source_id", "ts", "amount", "cost", "discount"]]
    ).withColumn("ts", F.col("ts").cast("timestamp"))
    imap = tx.select("source_system", "source_id", F.col("source_id").alias("customer_id")).distinct()
    return pd.DataFrame(monthly_kpis(tx, identity_map=imap, end="1998-07-01").toPandas())


def test_monthly_kpis_and_trend_on_cdnow_against_pandas(spark: SparkSession, cdnow: pd.DataFrame) -> None:
    monthly = _cdnow_monthly(spark, cdnow)
    by_month = cdnow.groupby(cdnow["ts"].dt.to_period("M")).agg(
        revenue=("amount", "sum"),
        # the log's own count: every row is a purchase, its $0.00 ones included
        orders=("amount", "size"),
        active=("customer_id", "nunique"),
    )
    got = monthly.assign(p=pd.to_datetime(monthly["month"]).dt.to_period("M")).set_index("p")
    assert list(got.index) == list(by_month.index)
    np.testing.assert_allclose(got["revenue"], by_month["revenue"], rtol=1e-9)
    assert (got["orders"].to_numpy() == by_month["orders"].to_numpy()).all()
    assert (cdnow["amount"] == 0).any()  # the free purchases a positive-amount rule dropped
    assert (got["active_customers"].to_numpy() == by_month["active"].to_numpy()).all()
    trends, forecast, _ = kpi_trends(monthly, ["revenue"], horizon=3)
    complete = by_month["revenue"].to_numpy()
    slope, intercept, lo, hi = stats.theilslopes(complete, np.arange(len(complete)))
    assert trends["slope_per_month"].iloc[0] == pytest.approx(slope, rel=1e-9)
    # CDNOW's cohort was acquired in Q1 1997 and then decays: the trend is down
    assert trends["slope_hi"].iloc[0] < 0 and len(forecast) == 3


def test_report_of_cdnow_tables(spark: SparkSession, cdnow: pd.DataFrame, cfg: Config) -> None:
    """The report on a run that wrote only what public data supports (concentration of
    spend and monthly KPIs of CDNOW): those sections state CDNOW's figures, every other
    section says what the run did not write, and nothing fails."""
    from custseg.insights.runner import pandas_to_spark
    from custseg.pipeline import run_stage
    from custseg.tables import TableStore

    spend = cdnow.groupby("customer_id", as_index=False)["amount"].sum()
    table, curves = concentration_tables(
        concentration_sums(spark.createDataFrame(spend), ["amount"], replicates=20, seed=7, bins=200),
        tops=[0.08, 0.2],
        whale_measure=None,
    )
    monthly = _cdnow_monthly(spark, cdnow)
    trends, forecast, anomalies = kpi_trends(monthly, ["revenue", "active_customers"], horizon=3)
    store = TableStore(spark, cfg.storage.warehouse, run_id="cdnow")
    for name, frame in (
        ("value_concentration", table),
        ("value_curves", curves),
        ("kpi_monthly", monthly),
        ("kpi_trends", trends),
        ("kpi_forecast", forecast),
        ("kpi_anomalies", anomalies),
    ):
        store.write(pandas_to_spark(spark, frame), f"gold.{name}")
    run_stage(cfg, "report", run_id="cdnow")
    html = (Path(cfg.report.dir) / "cdnow" / "report.html").read_text(encoding="utf-8")

    x = np.sort(spend["amount"].to_numpy())
    n = len(x)
    gini = 2 * np.sum(np.arange(1, n + 1) * x) / (n * x.sum()) - (n + 1) / n
    assert f"the Gini of amount is {gini:.3f}" in html
    top8 = table.set_index("metric").loc["top_8_share", "value"]
    assert f"The top 8% of customers hold {top8:.0%}" in html
    slope = trends.set_index("kpi").loc["revenue", "relative_slope"]
    assert f"Revenue moves by {slope:.1%} of its median a month" in html
    assert html.count("This run wrote no ") == 10  # all but concentration, KPIs and the run itself
    panels = [k for k in ("revenue", "profit", "active_customers") if k in monthly.columns]
    assert html.count('<img src="data:image/png;base64,') == 1 + len(panels)  # the curves, a panel per KPI
