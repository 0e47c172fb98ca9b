"""Benchmark the segmentation on a generated preset beside the kmodes package.

    .venv/bin/python bench/segment.py --preset reference [--data DIR] [--kmodes-timeout S] [--skip-stage]

1. Draws the preset once into DIR (as bench/features.py; with --data an earlier draw is
   reused) and builds the as-of customer features from the true identity map; prepares
   the stage's model inputs (prep SQL + LogStandardScaler of the default config) and
   writes them as one Parquet data set, the common input of both tools.
2. One KPrototypes fit at k = 4 (the generator's four latent segments) from a k-means||
   start computed once, then kmodes' KPrototypes (n_init=1) from the same start, the
   same gamma and max_iter, in a child process (pandas read of the same Parquet): wall
   times, their ratio, both costs and their ratio, peak memory.
3. The whole stage ``segment`` with the default config (outlier screen, k sweep with
   silhouette, bootstrap stability and the MLlib comparators, naming, MLflow
   registration): wall time, the chosen k, the adjusted Rand index of the chosen
   segments against the latent segments (bots left out), the share of bots labelled
   outlier and the selection table.
Asserts nothing.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import resource
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import RssSampler, bench_parser, bench_session
from features import EVENTS, draw
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from sklearn.metrics import adjusted_rand_score

from custseg.config import Config
from custseg.features import FeatureSpec, build_customer_features
from custseg.pipeline import run_stage
from custseg.segment import KPrototypes
from custseg.segment.blocks import ColumnBlocks
from custseg.segment.inputs import categorical_inputs, fit_prep, numeric_inputs
from custseg.segment.kprototypes import init_kmeans_parallel, mixed_gamma
from custseg.tables import TableStore

log = logging.getLogger("bench.segment")
K = 4


def say(text: object) -> None:
    """Benchmark output."""
    print(text, flush=True)  # noqa: T201


def draw_features(spark: SparkSession, cfg: Config, out: Path) -> DataFrame:
    """The preset drawn once into ``out`` (as bench/features.py) and its as-of customer
    features built from the true identity map (kept in ``out/customer_features``)."""
    draw(spark, cfg, out)
    if not (out / "customer_features" / "_SUCCESS").exists():
        read = {n: spark.read.parquet(str(out / n)) for n in (*EVENTS, "customer_attributes", "identity_map")}
        fc = cfg.features
        build_customer_features(
            read["transactions"],
            read["identity_map"],
            support=read["support_contacts"],
            usage=read["product_usage"],
            touches=read["marketing_touches"],
            attributes=read["customer_attributes"],
            as_of=cfg.generate.end_date + timedelta(days=1),
            spec=FeatureSpec.of(fc),
        ).write.mode("overwrite").parquet(str(out / "customer_features"))
    return spark.read.parquet(str(out / "customer_features"))


def truth_segments(spark: SparkSession, out: Path) -> DataFrame:
    """customer_id (the person), latent segment and is_bot of the drawn people."""
    return spark.read.parquet(str(out / "people")).select(
        F.col("person_id").cast("string").alias("customer_id"), F.col("segment").alias("latent"), "is_bot"
    )


def kmodes_run(
    path: str, numeric: list[str], categorical: list[str], init: Any, gamma: float, max_iter: int, queue: Any
) -> None:
    """kmodes' KPrototypes from the given start (child process: its own peak memory)."""
    from kmodes.kprototypes import KPrototypes as KmodesKPrototypes

    df = pd.read_parquet(path)
    x = df[numeric + categorical].to_numpy(dtype=object)
    started = time.perf_counter()
    model = KmodesKPrototypes(n_clusters=K, init=init, gamma=gamma, n_init=1, max_iter=max_iter).fit(
        x, categorical=list(range(len(numeric), len(numeric) + len(categorical)))
    )
    seconds = time.perf_counter() - started
    queue.put(
        {
            "seconds": seconds,
            "cost": float(model.cost_),
            "iterations": int(model.n_iter_),
            "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        }
    )


def compare_with_kmodes(
    args: Any,
    data: Any,
    inputs: Any,
    numeric: list[str],
    categorical: list[str],
    gamma: float,
    cfg: Any,
    n: int,
    jvm_pid: int,
) -> None:
    """Our fit and kmodes' on the same rows from the same k-means|| start."""
    sc = cfg.segment
    started = time.perf_counter()
    blocks = ColumnBlocks(data, numeric, categorical)
    centres, modes = init_kmeans_parallel(blocks, K, gamma, cfg.run.seed, 2)
    blocks.unpersist()
    init_seconds = time.perf_counter() - started
    start = [[*map(float, c), *map(str, m)] for c, m in zip(centres, modes, strict=True)]
    with RssSampler(jvm_pid) as rss:
        started = time.perf_counter()
        model = KPrototypes(
            k=K,
            numericCols=numeric,
            categoricalCols=categorical,
            gamma=gamma,
            initialCentres=start,
            maxIter=sc.max_iter,
            tol=0.0,
        ).fit(data)
        ours_seconds = time.perf_counter() - started
    ours = model.summary

    pdf_cats = pd.read_parquet(inputs, columns=categorical)
    codes = [{v: i for i, v in enumerate(np.unique(pdf_cats[c].to_numpy(dtype=object)))} for c in categorical]
    init = [np.array(centres, dtype=float), np.array([[codes[a][v] for a, v in enumerate(m)] for m in modes])]
    queue: Any = mp.get_context("spawn").Queue()
    child = mp.get_context("spawn").Process(
        target=kmodes_run, args=(str(inputs), numeric, categorical, init, gamma, sc.max_iter, queue)
    )
    child.start()
    child.join(args.kmodes_timeout)
    if child.is_alive():
        child.terminate()
        ref = None
    else:
        ref = queue.get()
    say(f"\n== KPrototypes fit at k=4 from one k-means|| start (init itself: {init_seconds:.1f} s) ==")
    say(
        f"custseg (Spark): {ours_seconds:8.1f} s, {n / ours_seconds:,.0f} rows/s, "
        f"{ours.iterations} iterations, cost {ours.trainingCost:.6g}, converged {ours.converged}, "
        f"driver JVM peak {rss.peak_kb / 2**20:.1f} GiB"
    )
    if ref is None:
        say(f"kmodes: did not finish within {args.kmodes_timeout:.0f} s (stopped)")
    else:
        say(
            f"kmodes:          {ref['seconds']:8.1f} s, {n / ref['seconds']:,.0f} rows/s, "
            f"{ref['iterations']} iterations, "
            f"cost {ref['cost']:.6g}, peak {ref['peak_gib']:.1f} GiB"
        )
        say(
            f"time ratio kmodes/custseg {ref['seconds'] / ours_seconds:.1f}x; "
            f"cost ratio custseg/kmodes {ours.trainingCost / ref['cost']:.5f}"
        )


def main() -> None:
    parser = bench_parser(__doc__ or "", "draw folder (reused when it holds a draw)")
    parser.add_argument("--kmodes-timeout", type=float, default=3600.0)
    parser.add_argument("--skip-stage", action="store_true", help="only the fit beside kmodes")
    parser.add_argument("--skip-fit", action="store_true", help="only the whole stage (no kmodes run)")
    args = parser.parse_args()
    cfg, spark, out, jvm_pid = bench_session(args, "segment")
    features = draw_features(spark, cfg, out)
    sc = cfg.segment
    numeric, categorical = numeric_inputs(sc), categorical_inputs(sc)
    inputs = out / "segment_inputs"
    fit_prep(sc, features).transform(features).select("customer_id", *numeric, *categorical).write.mode(
        "overwrite"
    ).parquet(str(inputs))
    data = spark.read.parquet(str(inputs)).cache()
    n = data.count()
    stds = [float(s) for s in data.agg(*[F.stddev_pop(c) for c in numeric]).first() or []]
    gamma = mixed_gamma(stds)
    say(
        f"preset {args.preset}: {n:,} customers; {len(numeric)} numeric + {len(categorical)} "
        "categorical inputs; "
        f"k={K}; gamma {gamma:.4f}; local[*], 2 cores",
    )

    if not args.skip_fit:
        compare_with_kmodes(args, data, inputs, numeric, categorical, gamma, cfg, n, jvm_pid)
    data.unpersist()
    if args.skip_stage:
        return

    # the whole stage on the same features
    warehouse = out / "warehouse"
    stage_cfg = cfg.model_copy(
        update={
            "storage": cfg.storage.model_copy(update={"warehouse": str(warehouse)}),
            "tracking": cfg.tracking.model_copy(
                update={
                    "uri": f"sqlite:///{out / 'mlflow.db'}",
                    "artifact_location": str(out / "mlartifacts"),
                }
            ),
        }
    )
    store = TableStore(spark, str(warehouse), run_id="bench")
    store.write(
        features.withColumn("snapshot_date", F.lit(cfg.generate.end_date + timedelta(days=1))),
        "gold.customer_features",
    )
    started = time.perf_counter()
    run = run_stage(stage_cfg, "segment", run_id=f"bench-{int(time.time())}")
    stage_seconds = time.perf_counter() - started
    truth = truth_segments(spark, out)
    value_col = cfg.segment.value_col
    joined = (
        store.read("gold.segment_assignments")
        .join(truth, "customer_id")
        .join(features.select("customer_id", value_col), "customer_id", "left")
    )
    counts = (
        joined.groupBy("latent", "is_bot", "segment_name", "is_outlier")
        .agg(F.count(F.lit(1)).alias("count"), F.sum(value_col).alias("value"))
        .toPandas()
    )
    bots = counts[counts["is_bot"]]
    bot_share = bots.loc[bots["is_outlier"], "count"].sum() / max(bots["count"].sum(), 1)
    business = counts[~counts["is_bot"]]
    others_outlier = business.loc[business["is_outlier"], "count"].sum()
    labels_true = np.repeat(business["latent"].to_numpy(), business["count"].to_numpy())
    labels_pred = np.repeat(business["segment_name"].to_numpy(), business["count"].to_numpy())
    ari = adjusted_rand_score(labels_true, labels_pred)
    say(f"\n== stage segment (default config): {stage_seconds:.1f} s ({stage_seconds / 60:.1f} min) ==")
    say(
        f"chosen k {run.metrics['chosen_k']:.0f}; ARI vs latent segments (bots left out) {ari:.3f}; "
        f"bots labelled outlier {bot_share:.1%} of {bots['count'].sum()}; "
        f"other customers labelled outlier {others_outlier} ({others_outlier / business['count'].sum():.3%})"
    )
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    say(pd.crosstab(pd.Series(labels_pred, name="segment"), pd.Series(labels_true, name="latent")))
    # every segment (bots included, as the business sees them) with its value figure
    segments = counts[~counts["is_outlier"]].groupby("segment_name")[["count", "value"]].sum()
    segments["share"] = segments["count"] / segments["count"].sum()
    segments[f"mean {value_col}"] = segments["value"] / segments["count"]
    segments = segments.sort_values(f"mean {value_col}", ascending=False)
    say(segments[["count", "share", f"mean {value_col}"]].to_string(float_format=lambda v: f"{v:,.3f}"))
    top = segments.index[0]
    core = business[business["latent"] == "core"]["count"].sum()
    in_top = business[(business["segment_name"] == top)]
    core_in_top = in_top.loc[in_top["latent"] == "core", "count"].sum()
    say(
        f"top segment by mean {value_col}: {top!r}: holds {core_in_top / core:.1%} of the core customers "
        f"(recall), {core_in_top / in_top['count'].sum():.1%} of it is core (precision)"
    )
    say(
        f"legacy personas against segments: Cramér's V {run.metrics['persona_cramers_v']:.3f} "
        f"(95 % interval {run.metrics['persona_cramers_v_lo']:.3f}-{run.metrics['persona_cramers_v_hi']:.3f})"
    )
    selection = store.read("gold.segment_model_selection").toPandas().sort_values(["k", "algorithm"])
    columns = [
        "algorithm",
        "k",
        "cost",
        "silhouette",
        "ari_mean",
        "jaccard_min_mean",
        "all_stable",
        "value_effect_min",
        "economically_distinct",
        "seconds",
        "chosen",
    ]
    say(selection[columns].to_string(index=False))


if __name__ == "__main__":
    main()
