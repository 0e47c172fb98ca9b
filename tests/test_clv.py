"""CLV: summaries, fits and predictions against the lifetimes package; parameter recovery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import calibration_and_holdout_data, summary_data_from_transaction_data
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scipy import stats

from custseg.clv import (
    BGNBDFit,
    GammaGammaFit,
    calibration_and_holdout,
    fit_bgnbd,
    fit_gamma_gamma,
    predict_clv,
    summarize_transactions,
)
from custseg.clv.models import _LocalSpendSums, _SparkSpendSums, bgnbd_hessian, bgnbd_loglik_terms
from custseg.config import load_config
from custseg.generate import GeneratedWorld
from custseg.pipeline import run_stage
from custseg.tables import TableStore

from .clv_reference import draw_summaries, draw_transactions
from .conftest import TEST_CONF, temp_overrides

TRUE = {"r": 0.9, "alpha": 40.0, "a": 0.7, "b": 3.0, "p": 4.0, "q": 5.0, "v": 60.0}
OBS_END = "2024-12-20"  # a Friday: a partial last week


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    return draw_transactions(400, seed=7)


@pytest.fixture(scope="module")
def tx_df(spark: SparkSession, transactions: pd.DataFrame) -> DataFrame:
    return spark.createDataFrame(transactions).cache()


def lifetimes_summary(transactions: pd.DataFrame, freq: str) -> pd.DataFrame:
    return summary_data_from_transaction_data(
        transactions,
        "customer_id",
        "ts",
        monetary_value_col="amount",
        observation_period_end=OBS_END,
        freq=freq,
    )


@pytest.mark.parametrize("unit", ["D", "W"])
def test_summary_matches_lifetimes(tx_df: DataFrame, transactions: pd.DataFrame, unit: str) -> None:
    ours = (
        summarize_transactions(tx_df, observation_end=OBS_END, time_unit=unit)
        .toPandas()
        .set_index("customer_id")
        .sort_index()
    )
    ref = lifetimes_summary(transactions, unit).sort_index()
    assert list(ours.index) == list(ref.index)
    assert (ref["frequency"] > 0).sum() > 100 and ref["frequency"].max() >= 10
    pd.testing.assert_frame_equal(
        ours[list(ref.columns)], ref, check_exact=False, rtol=1e-9, check_names=False
    )


def test_transactions_after_observation_end_are_ignored(tx_df: DataFrame, transactions: pd.DataFrame) -> None:
    end = "2023-09-30"
    ours = summarize_transactions(tx_df, observation_end=end).toPandas().set_index("customer_id")
    before = transactions[transactions["ts"] < pd.Timestamp("2023-10-01")]
    assert set(ours.index) == set(before["customer_id"])
    assert (ours["T"] >= ours["recency"]).all()
    with pytest.raises(ValueError, match="time_unit"):
        summarize_transactions(tx_df, observation_end=end, time_unit="M")
    with pytest.raises(ValueError, match="missing column"):
        summarize_transactions(tx_df.drop("amount"), observation_end=end)


def test_calibration_and_holdout_match_lifetimes(spark: SparkSession, transactions: pd.DataFrame) -> None:
    # Midnight timestamps: lifetimes splits raw timestamps at the calibration end's midnight,
    # we split by period; on whole days the two agree.
    daily = transactions.assign(ts=transactions["ts"].dt.normalize())
    ours = (
        calibration_and_holdout(
            spark.createDataFrame(daily), calibration_end="2024-06-30", observation_end=OBS_END
        )
        .toPandas()
        .set_index("customer_id")
        .sort_index()
    )
    ref = calibration_and_holdout_data(
        daily,
        "customer_id",
        "ts",
        calibration_period_end="2024-06-30",
        observation_period_end=OBS_END,
        monetary_value_col="amount",
    ).sort_index()
    ref.columns = [c.removesuffix("_cal") for c in ref.columns]
    assert (ref["frequency_holdout"] > 0).sum() > 30
    pd.testing.assert_frame_equal(
        ours[list(ref.columns)], ref, check_exact=False, rtol=1e-9, check_names=False
    )


@pytest.fixture(scope="module")
def drawn(spark: SparkSession) -> tuple[pd.DataFrame, DataFrame]:
    df = draw_summaries(6000, seed=3, **TRUE)
    return df, spark.createDataFrame(df).cache()


def lifetimes_bgnbd_ll(params: dict[str, float], df: pd.DataFrame) -> float:
    log_params = np.log([params["r"], params["alpha"], params["a"], params["b"]])
    mean_nll = BetaGeoFitter._negative_log_likelihood(
        log_params,
        df["frequency"].to_numpy(),
        df["recency"].to_numpy(),
        df["T"].to_numpy(),
        np.ones(len(df)),
        0.0,
    )
    return -float(mean_nll) * len(df)


def test_bgnbd_matches_lifetimes(drawn: tuple[pd.DataFrame, DataFrame]) -> None:
    df, sdf = drawn
    ours = fit_bgnbd(sdf)
    ref = BetaGeoFitter().fit(df["frequency"], df["recency"], df["T"])
    for name, value in ref.params_.items():
        assert ours.params()[name] == pytest.approx(value, rel=1e-3), name
    # the full log-likelihood, checked against lifetimes' formula at our parameters and
    # at its own optimum (its fit runs on rescaled time, so its stored value differs by a
    # constant)
    assert ours.log_likelihood == pytest.approx(lifetimes_bgnbd_ll(ours.params(), df), rel=1e-9)
    assert ours.log_likelihood == pytest.approx(lifetimes_bgnbd_ll(dict(ref.params_), df), rel=1e-3)
    assert ours.log_likelihood >= lifetimes_bgnbd_ll(dict(ref.params_), df) - 1e-6 * abs(ours.log_likelihood)
    assert ours.n_customers == len(df) and ours.converged


def test_gamma_gamma_matches_lifetimes(drawn: tuple[pd.DataFrame, DataFrame]) -> None:
    df, sdf = drawn
    ours = fit_gamma_gamma(sdf)
    repeat = df[df["frequency"] > 0]
    ref = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    for name, value in ref.params_.items():
        assert ours.params()[name] == pytest.approx(value, rel=1e-3), name
    ref_ll = -ref._negative_log_likelihood_ * len(repeat)
    assert ours.log_likelihood == pytest.approx(ref_ll, rel=1e-3)
    assert ours.n_customers == len(repeat)


def test_bgnbd_hessian_against_finite_differences(drawn: tuple[pd.DataFrame, DataFrame]) -> None:
    df, _ = drawn
    x, tx, T = (df[c].to_numpy() for c in ("frequency", "recency", "T"))
    w = np.ones(len(df))
    at = np.array([0.8, 35.0, 0.6, 2.5])
    numeric = np.zeros((4, 4))
    for i in range(4):
        step = np.zeros(4)
        step[i] = 1e-6 * at[i]
        up, down = (bgnbd_loglik_terms(at + d, x, tx, T)[1] @ w for d in (step, -step))
        numeric[:, i] = (up - down) / (2 * step[i])
    np.testing.assert_allclose(bgnbd_hessian(at, x, tx, T, w), numeric, rtol=1e-5)


def test_spark_spend_sums_equal_driver_sums(drawn: tuple[pd.DataFrame, DataFrame]) -> None:
    df, sdf = drawn
    repeat = df[df["frequency"] > 0]
    spark_sums = _SparkSpendSums(sdf)
    try:
        local = _LocalSpendSums(repeat["frequency"].to_numpy(), repeat["monetary_value"].to_numpy())
        for v in (3.0, 60.0, 70.0, 46.0, 74.9, 900.0):  # 70, 46, 74.9 from the series around 60
            assert spark_sums.at(v) == pytest.approx(local.at(v), rel=1e-10)
            np.testing.assert_allclose(
                spark_sums.loglik(4.0, 5.0, v)[1], local.loglik(4.0, 5.0, v)[1], rtol=1e-9
            )
        assert spark_sums.aggregations == 3
    finally:
        spark_sums.close()


def test_fits_recover_generating_parameters(drawn: tuple[pd.DataFrame, DataFrame]) -> None:
    _, sdf = drawn
    bg, gg = fit_bgnbd(sdf), fit_gamma_gamma(sdf)
    for fit in (bg, gg):
        assert set(fit.standard_errors) == set(fit.params())
        for name, value in fit.params().items():
            se = fit.standard_errors[name]
            assert 0 < se < value, name
            assert abs(value - TRUE[name]) <= 3 * se, (name, value, TRUE[name], se)


def test_predictions_match_lifetimes(spark: SparkSession, drawn: tuple[pd.DataFrame, DataFrame]) -> None:
    df, sdf = drawn
    bgf = BetaGeoFitter().fit(df["frequency"], df["recency"], df["T"])
    repeat = df[df["frequency"] > 0]
    ggf = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    bg = BGNBDFit(**dict(bgf.params_), log_likelihood=0.0, n_customers=len(df))
    gg = GammaGammaFit(**dict(ggf.params_), log_likelihood=0.0, n_customers=len(repeat))
    sample = df.iloc[:500].reset_index(drop=True)
    ours = (
        predict_clv(
            spark.createDataFrame(sample.reset_index()), bg, gg, horizon=12, time_unit="D", discount_rate=0.01
        )
        .toPandas()
        .set_index("index")
        .sort_index()
    )
    f, rec, T, m = (sample[c] for c in ("frequency", "recency", "T", "monetary_value"))
    expected = {
        "expected_purchases": bgf.conditional_expected_number_of_purchases_up_to_time(360, f, rec, T),
        "prob_alive": bgf.conditional_probability_alive(f, rec, T),
        "expected_avg_order_value": ggf.conditional_expected_average_profit(f, m),
        "clv": ggf.customer_lifetime_value(bgf, f, rec, T, m, time=12, discount_rate=0.01, freq="D"),
    }
    for col, ref in expected.items():
        np.testing.assert_allclose(ours[col].to_numpy(), np.asarray(ref, dtype=float), rtol=1e-9, err_msg=col)
    assert ours["clv"].gt(0).all() and ours["prob_alive"].between(0, 1).all()


def test_bad_inputs_are_named(spark: SparkSession, drawn: tuple[pd.DataFrame, DataFrame]) -> None:
    _, sdf = drawn
    with pytest.raises(ValueError, match="missing column"):
        fit_bgnbd(sdf.drop("recency"))
    with pytest.raises(ValueError, match="non-positive monetary_value"):
        fit_gamma_gamma(spark.createDataFrame([(2.0, 0.0)], "frequency double, monetary_value double"))
    with pytest.raises(ValueError, match="max_tuples"):
        fit_bgnbd(sdf, max_tuples=10)
    bg = BGNBDFit(r=1.0, alpha=40.0, a=0.5, b=3.0, log_likelihood=0.0, n_customers=1)
    heavy_tailed = GammaGammaFit(p=4.0, q=0.9, v=60.0, log_likelihood=0.0, n_customers=1)
    with pytest.raises(ValueError, match="q = 0.9 <= 1"):
        predict_clv(sdf, bg, heavy_tailed, horizon=12, discount_rate=0.01)


def test_stage_writes_clv_holdout_and_segment_check(
    spark: SparkSession, tiny_world: GeneratedWorld, tmp_path: Path
) -> None:
    """The stage on the tiny preset: its fit against lifetimes on the same orders, the
    written CLV against lifetimes' CLV at the stage's parameters, and the segment check
    (hand-made assignments: the generator's latent segments) against pandas."""
    cfg = load_config(
        TEST_CONF, overrides=[*temp_overrides(tmp_path), "clv.holdout_days=120", "clv.segment_col=segment"]
    )
    world = tiny_world
    transactions = world.transactions.checkpoint()
    imap = world.identity_records.select(
        "source_system", "source_id", F.col("person_id").cast("string").alias("customer_id")
    ).checkpoint()
    segments = world.people.select(F.col("person_id").cast("string").alias("customer_id"), "segment")
    store = TableStore(spark, cfg.storage.warehouse, run_id="seed")
    store.write(transactions, "bronze.transactions")
    store.write(imap, "silver.identity_map")
    store.write(segments, "gold.segment_assignments")
    # the figure segment names rank by (segment.value_col); any per-customer value will do
    profit = (
        transactions.join(imap, ["source_system", "source_id"])
        .groupBy("customer_id")
        .agg(F.sum(F.when(F.col("ts") >= "2025-11-01", F.col("amount")).otherwise(0.0)).alias("profit_365d"))
    )
    store.write(profit, "gold.customer_features")
    run = run_stage(cfg, "clv", run_id="clv-test")

    orders = (
        transactions.where(F.col("amount") >= 0)  # free orders count as purchases
        .join(imap, ["source_system", "source_id"])
        .select("customer_id", F.to_date("ts").alias("day"), "amount")
        .toPandas()
    )
    orders["day"] = pd.to_datetime(orders["day"])
    end = orders["day"].max()
    ref = summary_data_from_transaction_data(
        orders, "customer_id", "day", monetary_value_col="amount", observation_period_end=end, freq="D"
    )
    bgf = BetaGeoFitter().fit(ref["frequency"], ref["recency"], ref["T"])
    repeat = ref[(ref["frequency"] > 0) & (ref["monetary_value"] > 0)]  # free repeat orders only: no spend
    ggf = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    for name, value in [*bgf.params_.items()]:
        assert run.metrics[f"bgnbd.{name}"] == pytest.approx(value, rel=1e-3), name
    for name, value in [*ggf.params_.items()]:
        assert run.metrics[f"gamma_gamma.{name}"] == pytest.approx(value, rel=1e-3), name

    check = TableStore(spark, cfg.storage.warehouse, run_id="check")
    clv = check.read("gold.customer_clv").toPandas().set_index("customer_id").sort_index()
    assert not {"email", "first_name", "last_name", "phone", "address", "date_of_birth"} & set(clv.columns)
    assert list(clv.index) == sorted(ref.index) and run.metrics["customers"] == len(ref)
    bg = BGNBDFit(
        **{k: run.metrics[f"bgnbd.{k}"] for k in ("r", "alpha", "a", "b")}, log_likelihood=0, n_customers=0
    )
    ours_gg = {k: run.metrics[f"gamma_gamma.{k}"] for k in ("p", "q", "v")}
    ggf.params_ = pd.Series(ours_gg)
    bgf.params_ = pd.Series(bg.params())
    ref = ref.sort_index()
    expected = ggf.customer_lifetime_value(
        bgf, ref["frequency"], ref["recency"], ref["T"], ref["monetary_value"], time=12, discount_rate=0.01
    )
    np.testing.assert_allclose(clv["clv"].to_numpy(), expected.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(
        clv["historical_value"].to_numpy(),
        orders.groupby("customer_id")["amount"].sum().sort_index(),
        rtol=1e-9,
    )

    # holdout: lifetimes' calibration/holdout split of the same orders, its fit of the
    # calibration period, and the model's and the naive baseline's errors from it
    hold = calibration_and_holdout_data(
        orders,
        "customer_id",
        "day",
        calibration_period_end=end - pd.Timedelta(days=120),
        observation_period_end=end,
        freq="D",
    )
    hold_fit = BetaGeoFitter().fit(hold["frequency_cal"], hold["recency_cal"], hold["T_cal"])
    for name, value in hold_fit.params_.items():
        assert run.metrics[f"holdout.bgnbd.{name}"] == pytest.approx(value, rel=1e-3), name
    hold_fit.params_ = pd.Series({k: run.metrics[f"holdout.bgnbd.{k}"] for k in ("r", "alpha", "a", "b")})
    actual = hold["frequency_holdout"].to_numpy()
    predicted = hold_fit.conditional_expected_number_of_purchases_up_to_time(
        hold["duration_holdout"], hold["frequency_cal"], hold["recency_cal"], hold["T_cal"]
    ).to_numpy()
    naive = (
        np.where(hold["T_cal"] > 0, hold["frequency_cal"] / hold["T_cal"].clip(lower=1e-12), 0.0)
        * hold["duration_holdout"].to_numpy()
    )
    want = {
        "mae": np.abs(predicted - actual).mean(),
        "naive_mae": np.abs(naive - actual).mean(),
        "corr": np.corrcoef(predicted, actual)[0, 1],
        "naive_corr": np.corrcoef(naive, actual)[0, 1],
        "mean_actual": actual.mean(),
        "mean_predicted": predicted.mean(),
    }
    for key, value in want.items():
        assert run.metrics[f"holdout.{key}"] == pytest.approx(value, rel=1e-6), key
    assert run.metrics["holdout.customers"] == len(hold) < len(ref)

    seg = check.read("gold.clv_segment_check").toPandas().set_index("segment")
    truth = clv.join(segments.toPandas().set_index("customer_id"), how="inner").join(
        profit.toPandas().set_index("customer_id"), how="left"
    )
    by = truth.groupby("segment")
    pd.testing.assert_series_equal(seg["mean_clv"].sort_index(), by["clv"].mean(), check_names=False)
    pd.testing.assert_series_equal(
        seg["mean_value"].sort_index(), by["profit_365d"].mean(), check_names=False
    )
    pd.testing.assert_series_equal(seg["customers"].sort_index(), by.size(), check_names=False)
    assert (seg["value_col"] == "profit_365d").all()
    rho = stats.spearmanr(by["profit_365d"].mean(), by["clv"].mean()).statistic
    assert run.metrics["segments.spearman"] == pytest.approx(rho)
    assert seg.loc["core", "value_rank"] == 1 and seg.loc["core", "clv_rank"] == 1
    assert run.metrics["segments.top_clv_share"] > run.metrics["segments.top_customer_share"]
