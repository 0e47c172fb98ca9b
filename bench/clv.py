"""Benchmark the CLV fit on a generated preset beside the lifetimes package.

    .venv/bin/python bench/clv.py --preset reference [--data DIR]

1. Draws the preset's transactions, the true identity map and the latent people once into
   DIR (default: a temp folder; with --data an earlier draw is reused, e.g. the features
   bench's) and writes the orders (every non-refund row, as the stage counts them, with
   their person and day) as one
   Parquet data set, the common input of both tools.
2. In one run, from that Parquet: custseg (Spark: summarize_transactions, fit_bgnbd,
   fit_gamma_gamma, predict_clv for every customer into the noop sink), then lifetimes in a
   child process (pandas read, summary_data_from_transaction_data, BetaGeoFitter,
   GammaGammaFitter, customer_lifetime_value), each tool two rounds (the first of ours pays
   the JIT warm-up and the Python workers' start). Prints wall times per round, rows/s,
   peak memory (driver JVM, our Python, lifetimes' process), the ratios, parameters side
   by side.
3. Against truth: BG/NBD + Gamma-Gamma fitted on the top latent segment's customers alone
   beside the segment's generating parameters (BG/NBD per day), the Spearman correlation
   of the latent segments' value order (mean historical spend) with their mean CLV, and
   the top segment's share of customers and of predicted CLV; the holdout check of the
   stage (last 180 days) beside the naive baseline.
Asserts nothing.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import resource
import time
from datetime import timedelta
from typing import Any

from _common import RssSampler, bench_parser, bench_session
from features import draw
from pyspark.sql import functions as F

from custseg.clv import fit_bgnbd, fit_gamma_gamma, predict_clv, summarize_transactions
from custseg.clv.check import holdout_comparison, segment_value_check
from custseg.clv.runner import spenders
from custseg.clv.summary import calibration_and_holdout
from custseg.events import is_order
from custseg.generate.spec import SEGMENTS

log = logging.getLogger("bench.clv")
ROUNDS = 2


def lifetimes_run(orders: str, end: str, queue: Any) -> None:
    """lifetimes end to end on the orders (child process: its own peak memory)."""
    import numpy as np
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import summary_data_from_transaction_data

    rounds = []
    for _ in range(ROUNDS):
        times = {}
        started = time.perf_counter()
        df = pd.read_parquet(orders)
        times["read"] = time.perf_counter() - started
        summary = summary_data_from_transaction_data(
            df, "customer_id", "day", monetary_value_col="amount", observation_period_end=end, freq="D"
        )
        times["summary"] = time.perf_counter() - started
        bgf = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
        repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
        ggf = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
        times["fit"] = time.perf_counter() - started
        clv = ggf.customer_lifetime_value(
            bgf,
            summary["frequency"],
            summary["recency"],
            summary["T"],
            summary["monetary_value"],
            time=12,
            discount_rate=0.01,
            freq="D",
        )
        times["total"] = time.perf_counter() - started
        rounds.append(times)
    queue.put(
        {
            "rounds": rounds,
            "bgnbd": dict(bgf.params_),
            "gamma_gamma": dict(ggf.params_),
            "customers": len(summary),
            "clv_total": float(np.sum(clv)),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        }
    )


def main() -> None:
    args = bench_parser(__doc__ or "", "folder of an earlier draw to reuse").parse_args()
    cfg, spark, out, jvm_pid = bench_session(args, "clv")
    draw(spark, cfg, out)
    orders_path = out / "clv_orders"
    if not (orders_path / "_SUCCESS").exists():
        tx = spark.read.parquet(str(out / "transactions"))
        imap = spark.read.parquet(str(out / "identity_map"))
        (
            tx.where(is_order())
            .join(imap, ["source_system", "source_id"])
            .select("customer_id", F.to_date("ts").alias("day"), F.col("amount").cast("double"))
            .write.mode("overwrite")
            .parquet(str(orders_path))
        )
    end = spark.read.parquet(str(orders_path)).agg(F.max("day")).first()[0]  # type: ignore[index]
    n_orders = spark.read.parquet(str(orders_path)).count()
    print(f"preset {args.preset}: {n_orders:,} orders, observation end {end}", flush=True)  # noqa: T201

    # custseg: two rounds in the same session (the first pays the JVM's JIT warm-up and
    # the Python workers' start), lifetimes: two rounds in one child process
    rounds = []
    for _ in range(ROUNDS):
        with RssSampler(jvm_pid) as rss:
            started = time.perf_counter()
            orders = spark.read.parquet(str(orders_path))
            summary = summarize_transactions(orders, ts_col="day", observation_end=end).cache()
            n_customers = summary.count()
            t_summary = time.perf_counter() - started
            bg = fit_bgnbd(summary)
            gg = fit_gamma_gamma(spenders(summary))
            t_fit = time.perf_counter() - started
            predicted = predict_clv(summary, bg, gg, horizon=12, discount_rate=0.01)
            predicted.write.format("noop").mode("overwrite").save()
            rounds.append((time.perf_counter() - started, t_summary, t_fit, rss.peak_kb / 2**20))
        if len(rounds) < ROUNDS:
            summary.unpersist()
    ours_py = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    clv_total = predicted.agg(F.sum("clv")).first()[0]  # type: ignore[index]

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=lifetimes_run, args=(str(orders_path), str(end), queue))
    child.start()
    ref = queue.get()
    child.join()

    lines = [f"customers {n_customers:,}; BG/NBD tuples on the driver {bg.n_tuples:,}"]
    for i, (ours, t_summary, t_fit, jvm_peak) in enumerate(rounds, 1):
        times = ref["rounds"][i - 1]
        theirs = times["total"]  # from its read on, as ours (no interpreter start-up)
        lines += [
            f"round {i}: custseg  {ours:6.1f} s (summary {t_summary:.1f}, +fit {t_fit - t_summary:.1f}, "
            f"+predict {ours - t_fit:.1f}); {n_orders / ours:,.0f} orders/s; "
            f"driver JVM peak {jvm_peak:.2f} GiB",
            f"round {i}: lifetimes {theirs:6.1f} s (read {times['read']:.1f}, summary "
            f"{times['summary'] - times['read']:.1f}, fit {times['fit'] - times['summary']:.1f}, CLV "
            f"{times['total'] - times['fit']:.1f})",
            f"round {i}: time ratio custseg / lifetimes {ours / theirs:.3f} (target <= 0.5)",
        ]
    lines += [
        f"peak memory: our Python {ours_py:.2f} GiB; lifetimes' process {ref['peak_rss_gib']:.2f} GiB",
        f"customers: {n_customers} vs {ref['customers']}; 12-month CLV total "
        f"{clv_total:,.0f} vs {ref['clv_total']:,.0f}",
    ]
    for name, fit in (("bgnbd", bg), ("gamma_gamma", gg)):
        for k, v in fit.params().items():
            theirs_v = ref[name][k]
            lines.append(
                f"  {name}.{k}: {v:.6g} vs {theirs_v:.6g} (rel diff {abs(v - theirs_v) / abs(theirs_v):.2e})"
            )
    print("\n".join(lines), flush=True)  # noqa: T201 - benchmark output

    # truth
    people = spark.read.parquet(str(out / "people")).select(
        F.col("person_id").cast("string").alias("customer_id"), "segment"
    )
    top = SEGMENTS[0]
    top_summary = summary.join(people.where(F.col("segment") == top.name), "customer_id")
    bg_top, gg_top = fit_bgnbd(top_summary), fit_gamma_gamma(spenders(top_summary))
    lines = [f"top segment '{top.name}': fitted (± s.e.) vs generating"]
    for fit in (bg_top, gg_top):
        for k, v in fit.params().items():
            se = fit.standard_errors.get(k, float("nan"))
            lines.append(f"  {k}: {v:.4g} ± {se:.2g} vs {getattr(top, k)}")
    historical = orders.groupBy("customer_id").agg(F.sum("amount").alias("historical_value"))
    table, rho = segment_value_check(
        predicted.join(historical, "customer_id"), people.where(F.col("segment") != "bot")
    )
    lines.append(f"Spearman(value order, CLV order) over latent segments: {rho:.3f}")
    lines.append(
        table[
            [
                "segment",
                "customers",
                "customer_share",
                "clv_share",
                "mean_historical_value",
                "mean_clv",
                "value_rank",
                "clv_rank",
            ]
        ].to_string(index=False, float_format=lambda v: f"{v:.4g}")
    )
    cal_end = end - timedelta(days=180)
    holdout = calibration_and_holdout(
        orders, ts_col="day", calibration_end=cal_end, observation_end=end
    ).cache()
    metrics, buckets = holdout_comparison(holdout, fit_bgnbd(holdout))
    lines.append(f"holdout after {cal_end}: {json.dumps({k: round(v, 4) for k, v in metrics.items()})}")
    lines.append(buckets.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\n".join(lines), flush=True)  # noqa: T201 - benchmark output
    summary.unpersist()
    holdout.unpersist()


if __name__ == "__main__":
    main()
