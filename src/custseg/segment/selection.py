"""Model selection: every k of the sweep fitted (k-prototypes with its silhouette,
bootstrap stability and value by cluster; the MLlib comparators beside it), and the
configured rule choosing k."""

from __future__ import annotations

import logging
import time

import pandas as pd
from pyspark.sql import DataFrame

from custseg.config import SegmentConfig
from custseg.segment.candidates import Candidate, loggable
from custseg.segment.comparators import ComparatorData, fit_comparator
from custseg.segment.inputs import KEY, categorical_inputs, numeric_inputs
from custseg.segment.kprototypes import KPrototypes
from custseg.segment.validate import (
    bootstrap_stability,
    mixed_silhouette,
    smallest_value_effect,
    value_by_cluster,
)
from custseg.stage import StageContext
from custseg.tracking import StageRun, candidate_run

log = logging.getLogger(__name__)


def kprototypes_estimator(cfg: SegmentConfig, k: int, gamma: float, seed: int) -> KPrototypes:
    """The configured k-prototypes estimator at k."""
    return KPrototypes(
        k=k,
        numericCols=numeric_inputs(cfg),
        categoricalCols=categorical_inputs(cfg),
        gamma=gamma,
        initMode=cfg.init_mode,
        nInit=cfg.n_init,
        maxIter=cfg.max_iter,
        tol=cfg.tol,
        seed=seed,
    )


def fit_kprototypes(
    cfg: SegmentConfig,
    scaled: DataFrame,
    sample: pd.DataFrame,
    k: int,
    gamma: float,
    seed: int,
    n: int,
    run: StageRun,
) -> Candidate:
    """k-prototypes at k: fit, silhouette, bootstrap stability; one nested run."""
    numeric, categorical = numeric_inputs(cfg), categorical_inputs(cfg)
    estimator = kprototypes_estimator(cfg, k, gamma, seed)
    params = {
        "algorithm": "kprototypes",
        "k": k,
        "gamma": gamma,
        "init_mode": cfg.init_mode,
        "n_init": cfg.n_init,
        "seed": seed,
    }
    with candidate_run(run, f"kprototypes k={k}", params) as child:
        started = time.perf_counter()
        model = estimator.fit(scaled)
        summary = model.summary
        labels = model.predict_local(sample[numeric].to_numpy(float), sample[categorical].to_numpy(object))
        silhouette = mixed_silhouette(
            sample[numeric].to_numpy(float), sample[categorical].to_numpy(object), labels, gamma
        )
        stability = None
        if cfg.bootstrap_resamples > 0:
            labelled = model.transform(scaled.select(KEY, *numeric, *categorical)).withColumnRenamed(
                "segment", "_orig"
            )
            stability = bootstrap_stability(
                labelled,
                "_orig",
                k,
                estimator,
                resamples=cfg.bootstrap_resamples,
                seed=seed + 1000 * k,
                fraction=min(1.0, cfg.bootstrap_rows / n),
                key_cols=[KEY],
            )
        value = value_by_cluster(
            model.transform(scaled.select(*numeric, *categorical, cfg.value_col)), "segment", cfg.value_col
        )
        candidate = Candidate(
            "kprototypes",
            k,
            summary.trainingCost,
            silhouette,
            time.perf_counter() - started,
            summary.iterations,
            stability,
            model,
            summary.clusterSizes,
            value,
        )
        child.log_metrics(loggable(candidate.row(cfg)))
        _log_candidate(cfg, candidate)
    return candidate


def _log_candidate(cfg: SegmentConfig, candidate: Candidate) -> None:
    assert candidate.value is not None
    log.info(
        "segment: kprototypes k=%d cost %.6g silhouette %.4f all clusters stable %s, mean %s by "
        "cluster %s, smallest effect size %.2f (%.1f s)",
        candidate.k,
        candidate.cost,
        candidate.silhouette,
        candidate.all_stable(cfg),
        cfg.value_col,
        [round(float(v), 1) for v in candidate.value["mean"]],
        smallest_value_effect(candidate.value)[0],
        candidate.seconds,
    )


def sweep(
    ctx: StageContext,
    cfg: SegmentConfig,
    scaled: DataFrame,
    sample: pd.DataFrame,
    gamma: float,
    seed: int,
    n: int,
) -> list[Candidate]:
    """Every k: k-prototypes, then the comparators on one-hot vectors."""
    candidates = []
    data = ComparatorData.prepare(cfg, ctx.spark, scaled, sample, gamma, n, seed) if cfg.comparators else None
    try:
        for k in range(cfg.k_min, cfg.k_max + 1):
            candidates.append(fit_kprototypes(cfg, scaled, sample, k, gamma, seed, n, ctx.run))
            for algorithm in cfg.comparators:
                assert data is not None
                candidates.append(fit_comparator(cfg, algorithm, data, sample, k, gamma, seed, ctx.run))
    finally:
        if data is not None:
            data.unpersist()
    return candidates


def choose(cfg: SegmentConfig, candidates: list[Candidate]) -> Candidate:
    """The k-prototypes candidate the configured rule picks (recorded in the selection).

    ``distinct_stable``: the largest k whose clusters are all stable, economically
    distinct (every two differ in mean value by at least ``min_value_effect``) and whose
    silhouette is at least ``silhouette_floor`` x the sweep's best; when no k is all
    three, the largest silhouette among the stable k, then the largest silhouette.
    """
    kp = [c for c in candidates if c.algorithm == "kprototypes"]
    if cfg.selection_rule == "stability" and all(c.stability is not None for c in kp):
        return max(kp, key=lambda c: (c.row(cfg)["jaccard_min_mean"] or 0.0, c.silhouette))
    stable = [c for c in kp if c.all_stable(cfg)]
    if cfg.selection_rule == "distinct_stable":
        best = max(c.silhouette for c in kp)
        floor = cfg.silhouette_floor * best if best > 0 else best
        eligible = [c for c in stable if c.economically_distinct(cfg) and c.silhouette >= floor]
        if eligible:
            return max(eligible, key=lambda c: c.k)
        log.warning(
            "segment: no k is stable, economically distinct (smallest effect size >= %.2f) and within "
            "the silhouette floor; choosing the best silhouette among the stable k",
            cfg.min_value_effect,
        )
    if cfg.selection_rule in ("largest_stable", "silhouette_if_stable", "distinct_stable"):
        if stable and cfg.selection_rule == "largest_stable":
            return max(stable, key=lambda c: c.k)
        if stable:
            return max(stable, key=lambda c: c.silhouette)
        log.warning("segment: no k has all business clusters stable; choosing by silhouette alone")
    return max(kp, key=lambda c: c.silhouette)
