"""Stage ``segment``: gold.customer_features -> segments chosen, validated and registered.

1. The latest (or configured) snapshot of the features; a ``SQLTransformer`` computes the
   configured derived inputs and fills nulls, ``LogStandardScaler`` scales the numeric
   inputs. Both are fitted once and saved with the model.
2. For every k of the sweep: k-prototypes (one nested MLflow run), its outlier clusters,
   the exact mixed-dissimilarity silhouette on a bounded seeded sample, bootstrap
   stability; beside it the MLlib comparators on the same scaled features with one-hot
   categoricals (one nested run each) with the same cost and silhouette.
3. The selection rule of the config picks k; the chosen clusters are profiled and named;
   the pipeline (prep, scaler, k-prototypes with names) is logged and registered with the
   configured alias. Outputs: gold.segment_assignments, gold.segment_model_selection,
   gold.segment_stability, gold.segment_persona_crosstab; plots in MLflow.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import altair as alt
import numpy as np
import pandas as pd
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.clustering import BisectingKMeans, GaussianMixture, KMeans
from pyspark.ml.feature import (
    ElementwiseProduct,
    OneHotEncoder,
    SQLTransformer,
    StringIndexer,
    VectorAssembler,
)
from pyspark.ml.linalg import Vectors
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.storagelevel import StorageLevel

from custseg.config import SegmentConfig
from custseg.sampling import canonical_order, hash_sample
from custseg.segment.kprototypes import KPrototypes, KPrototypesModel, mixed_gamma
from custseg.segment.naming import OUTLIER, outlier_clusters, segment_names
from custseg.segment.scaling import LogStandardScaler
from custseg.segment.validate import (
    Stability,
    bootstrap_stability,
    cramers_v_interval,
    draw_sample,
    mixed_silhouette,
    partition_cost,
    smallest_value_effect,
    value_by_cluster,
)
from custseg.tracking import StageRun, candidate_run, log_and_register_spark_model, set_model_alias

if TYPE_CHECKING:
    from custseg.pipeline import StageContext

log = logging.getLogger(__name__)

KEY = "customer_id"
SEG = "seg_"  # prepared model inputs
Z = "z_"  # scaled numeric inputs


# --- inputs -----------------------------------------------------------------------------


def prep_statement(cfg: SegmentConfig) -> str:
    """SQL of the prep step: every model input as ``seg_<name>`` (derived expressions,
    categoricals as strings with nulls as 'unknown'); the input's columns pass through."""
    parts = [f"CAST({cfg.derived.get(c, f'`{c}`')} AS DOUBLE) AS `{SEG}{c}`" for c in cfg.numeric_features]
    parts += [f"coalesce(CAST(`{c}` AS STRING), 'unknown') AS `{SEG}{c}`" for c in cfg.categorical_features]
    return "SELECT *, " + ", ".join(parts) + " FROM __THIS__"


def numeric_inputs(cfg: SegmentConfig) -> list[str]:
    return [f"{Z}{c}" for c in cfg.numeric_features]


def categorical_inputs(cfg: SegmentConfig) -> list[str]:
    return [f"{SEG}{c}" for c in cfg.categorical_features]


def fit_prep(cfg: SegmentConfig, features: DataFrame) -> PipelineModel:
    """The prep SQL and the fitted scaler, as one PipelineModel."""
    need = [c for c in cfg.numeric_features if c not in cfg.derived] + cfg.categorical_features
    missing = [c for c in need if c not in features.columns]
    if missing:
        raise ValueError(
            f"segment: {cfg.features_table} has no column(s) {missing} (segment.numeric_features / "
            "segment.categorical_features)"
        )
    scaler = LogStandardScaler(
        inputCols=[f"{SEG}{c}" for c in cfg.numeric_features],
        outputCols=numeric_inputs(cfg),
        logCols=[f"{SEG}{c}" for c in cfg.log_features],
    )
    return Pipeline(stages=[SQLTransformer(statement=prep_statement(cfg)), scaler]).fit(features)


def profile_columns(cfg: SegmentConfig, columns: list[str]) -> list[str]:
    """Feature columns (original units) kept beside the model inputs for profiling; the
    naming columns must be among them."""
    wanted = [cfg.value_col, cfg.engagement_col, *([cfg.cost_col] if cfg.cost_col else [])]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise ValueError(
            f"segment: {cfg.features_table} has no column(s) {missing} "
            "(segment.value_col / engagement_col / cost_col name the segments)"
        )
    wanted += [c for c in cfg.numeric_features if c in columns]
    return list(dict.fromkeys(c for c in wanted if c in columns))


# --- candidates -------------------------------------------------------------------------


@dataclass
class Candidate:
    """Metrics of one (algorithm, k)."""

    algorithm: str
    k: int
    cost: float
    silhouette: float
    seconds: float
    iterations: int = 0
    stability: Stability | None = None
    model: KPrototypesModel | None = None
    sizes: list[int] = field(default_factory=list)
    value: pd.DataFrame | None = None  # value_by_cluster of segment.value_col

    def economically_distinct(self, cfg: SegmentConfig) -> bool | None:
        """Every two clusters differ in mean value by at least ``min_value_effect`` (Cohen's
        d) with non-overlapping intervals; None when not measured."""
        if self.value is None:
            return None
        effect, overlap = smallest_value_effect(self.value)
        return bool(effect >= cfg.min_value_effect and not overlap)

    def stability_table(self, cfg: SegmentConfig) -> pd.DataFrame | None:
        if self.stability is None:
            return None
        table = self.stability.per_cluster(cfg.unstable_below, cfg.stable_from)
        table["customers"] = self.sizes
        return table

    def all_stable(self, cfg: SegmentConfig) -> bool | None:
        table = self.stability_table(cfg)
        return None if table is None else bool((table["verdict"] == "stable").all())

    def row(self, cfg: SegmentConfig) -> dict[str, Any]:
        business = self.stability_table(cfg)
        return {
            "algorithm": self.algorithm,
            "k": self.k,
            "cost": self.cost,
            "silhouette": self.silhouette,
            "iterations": self.iterations,
            "ari_mean": float(self.stability.ari.mean())
            if self.stability and len(self.stability.ari)
            else None,
            "jaccard_min_mean": float(business["jaccard_mean"].min())
            if business is not None and len(business)
            else None,
            "unstable_clusters": int((business["verdict"] == "unstable").sum())
            if business is not None
            else None,
            "all_stable": self.all_stable(cfg),
            "value_effect_min": smallest_value_effect(self.value)[0] if self.value is not None else None,
            "economically_distinct": self.economically_distinct(cfg),
            "seconds": self.seconds,
        }


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
    estimator = KPrototypes(
        k=k,
        numericCols=numeric,
        categoricalCols=categorical,
        gamma=gamma,
        initMode=cfg.init_mode,
        nInit=cfg.n_init,
        maxIter=cfg.max_iter,
        tol=cfg.tol,
        seed=seed,
    )
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
        child.log_metrics({m: float(v) for m, v in candidate.row(cfg).items() if _numeric(v)})
        log.info(
            "segment: kprototypes k=%d cost %.6g silhouette %.4f all clusters stable %s, mean %s by "
            "cluster %s, smallest effect size %.2f (%.1f s)",
            k,
            candidate.cost,
            silhouette,
            candidate.all_stable(cfg),
            cfg.value_col,
            [round(float(v), 1) for v in value["mean"]],
            smallest_value_effect(value)[0],
            candidate.seconds,
        )
    return candidate


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float | bool | np.floating | np.integer) and not (
        isinstance(value, float) and math.isnan(value)
    )


def onehot_features(cfg: SegmentConfig, scaled: DataFrame, gamma: float) -> PipelineModel:
    """Scaled numerics plus one-hot categoricals for MLlib, each one-hot dimension
    weighted sqrt(gamma / 2): two different categories are then gamma apart in squared
    Euclidean distance, as one mismatch costs in k-prototypes."""
    categorical = categorical_inputs(cfg)
    indexed = [f"{c}_idx" for c in categorical]
    onehot = [f"{c}_1h" for c in categorical]
    encoders = Pipeline(
        stages=[
            StringIndexer(inputCols=categorical, outputCols=indexed, handleInvalid="keep"),
            OneHotEncoder(inputCols=indexed, outputCols=onehot, dropLast=False, handleInvalid="keep"),
            VectorAssembler(inputCols=[*numeric_inputs(cfg), *onehot], outputCol="_raw"),
        ]
    ).fit(scaled)
    first = encoders.transform(scaled.limit(1)).first()
    assert first is not None
    onehot_dims = first["_raw"].size - len(cfg.numeric_features)
    weights = [1.0] * len(cfg.numeric_features) + [math.sqrt(gamma / 2)] * onehot_dims
    product = ElementwiseProduct(scalingVec=Vectors.dense(weights), inputCol="_raw", outputCol="features")
    return PipelineModel(stages=[*encoders.stages, product])


@dataclass
class ComparatorData:
    """The comparators' one-hot vectors: all rows (scored), the rows they are fitted on
    (a seeded sample of about ``comparator_rows``, or all) and the silhouette sample."""

    vectors: DataFrame
    fit_vectors: DataFrame
    sample_vectors: DataFrame
    fit_rows: int

    @classmethod
    def prepare(
        cls,
        cfg: SegmentConfig,
        spark: SparkSession,
        scaled: DataFrame,
        sample: pd.DataFrame,
        gamma: float,
        n: int,
        seed: int,
    ) -> ComparatorData:
        encoder = onehot_features(cfg, scaled, gamma)
        vectors = encoder.transform(
            scaled.select(KEY, *numeric_inputs(cfg), *categorical_inputs(cfg))
        ).persist(StorageLevel.MEMORY_AND_DISK)
        fit_vectors, fit_rows = vectors, n
        if 0 < cfg.comparator_rows < n:
            fit_vectors = hash_sample(vectors, cfg.comparator_rows / n, seed, [KEY]).persist(
                StorageLevel.MEMORY_AND_DISK
            )
            fit_rows = fit_vectors.count()
        sample_vectors = encoder.transform(spark.createDataFrame(sample)).cache()
        log.info("segment: comparators fitted on %d of %d rows", fit_rows, n)
        return cls(vectors, fit_vectors, sample_vectors, fit_rows)

    def unpersist(self) -> None:
        for frame in {id(f): f for f in (self.vectors, self.fit_vectors, self.sample_vectors)}.values():
            frame.unpersist()


def fit_comparator(
    cfg: SegmentConfig,
    algorithm: str,
    data: ComparatorData,
    sample: pd.DataFrame,
    k: int,
    gamma: float,
    seed: int,
    run: StageRun,
) -> Candidate:
    """One MLlib algorithm at k, fitted on ``data.fit_vectors``; its partition of all rows
    scored with k-prototypes' cost, and its silhouette on the common sample."""
    estimators: dict[str, Any] = {
        "kmeans": KMeans(k=k, seed=seed, maxIter=cfg.comparator_max_iter),
        "bisecting_kmeans": BisectingKMeans(k=k, seed=seed, maxIter=cfg.comparator_max_iter),
        "gaussian_mixture": GaussianMixture(k=k, seed=seed, maxIter=cfg.comparator_max_iter),
    }
    estimator = estimators[algorithm].setFeaturesCol("features").setPredictionCol("_label")
    params = {"algorithm": algorithm, "k": k, "seed": seed, "fit_rows": data.fit_rows}
    with candidate_run(run, f"{algorithm} k={k}", params) as child:
        started = time.perf_counter()
        model = estimator.fit(data.fit_vectors)
        cost = partition_cost(
            model.transform(data.vectors), "_label", numeric_inputs(cfg), categorical_inputs(cfg), gamma
        )
        labelled = model.transform(data.sample_vectors).select(KEY, "_label").toPandas()
        labels = sample[[KEY]].merge(labelled, on=KEY, how="left")["_label"].to_numpy()
        silhouette = mixed_silhouette(
            sample[numeric_inputs(cfg)].to_numpy(float),
            sample[categorical_inputs(cfg)].to_numpy(object),
            labels,
            gamma,
        )
        candidate = Candidate(algorithm, k, cost, silhouette, time.perf_counter() - started)
        child.log_metrics({m: float(v) for m, v in candidate.row(cfg).items() if _numeric(v)})
        log.info(
            "segment: %s k=%d cost %.6g silhouette %.4f (%.1f s)",
            algorithm,
            k,
            cost,
            silhouette,
            candidate.seconds,
        )
    return candidate


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


# --- naming, outputs, plots -------------------------------------------------------------


def cluster_profiles(labelled: DataFrame, profile_cols: list[str]) -> pd.DataFrame:
    """Per cluster of ``segment``: customers and the mean of every profile column."""
    rows = pd.DataFrame(
        labelled.groupBy("segment")
        .agg(F.count(F.lit(1)).alias("customers"), *[F.avg(c).alias(c) for c in profile_cols])
        .toPandas()
    )
    return rows.rename(columns={"segment": "cluster"}).sort_values("cluster").reset_index(drop=True)


@dataclass
class OutlierScreen:
    """Prototypes of the outlier clusters found by the probe, and how many rows they took."""

    centres: np.ndarray
    modes: np.ndarray
    customers: int


def screen_outliers(
    cfg: SegmentConfig, scaled: DataFrame, gamma: float, seed: int, n: int, floors: list[float]
) -> tuple[OutlierScreen | None, DataFrame]:
    """Fit a generous k (``outlier_probe_k``) on a bounded seeded sample; its tiny, extreme
    clusters (``floors``: each scaled numeric's smallest value) are outlier prototypes.
    Rows nearest such a prototype (over the probe's prototypes, on all rows) are set
    aside; returns the screen and the business rows."""
    numeric, categorical = numeric_inputs(cfg), categorical_inputs(cfg)
    if cfg.outlier_probe_k < 2:
        return None, scaled
    sample = hash_sample(scaled, min(1.0, cfg.outlier_probe_rows / n), seed, [KEY])
    probe = KPrototypes(
        k=cfg.outlier_probe_k,
        numericCols=numeric,
        categoricalCols=categorical,
        gamma=gamma,
        initMode="k-means||",
        maxIter=cfg.max_iter,
        tol=cfg.tol,
        seed=seed,
    ).fit(sample)
    sizes = probe.summary.clusterSizes
    flags = outlier_clusters(
        sizes,
        np.array(probe.clusterCentres()),
        max_share=cfg.outlier_max_share,
        min_z=cfg.outlier_min_z,
        floors=floors,
    )
    flagged = [j for j, f in enumerate(flags) if f]
    log.info(
        "segment: outlier probe k=%d on %d rows, sizes %s, outlier clusters %s",
        len(sizes),
        sum(sizes),
        sizes,
        flagged,
    )
    if not flagged:
        return None, scaled
    labelled = probe.transform(scaled.drop("segment") if "segment" in scaled.columns else scaled)
    is_outlier = F.col("segment").isin(flagged)
    count = labelled.agg(F.count_if(is_outlier)).first()
    screen = OutlierScreen(
        np.array(probe.clusterCentres())[flagged],
        np.array(probe.clusterModes(), dtype=object)[flagged],
        int(count[0]) if count else 0,
    )
    return screen, labelled.where(~is_outlier).drop("segment")


def save_plots(
    selection: pd.DataFrame, stability: pd.DataFrame | None, profiles: pd.DataFrame, run: StageRun
) -> None:
    """Cost and silhouette by k, stability by cluster, segment profiles: HTML artifacts."""
    charts = {
        "selection_by_k.html": alt.hconcat(
            *[
                alt.Chart(selection)
                .mark_line(point=True)
                .encode(x="k:O", y=alt.Y(f"{metric}:Q", scale=alt.Scale(zero=False)), color="algorithm:N")
                .properties(title=f"{metric} by k", width=320, height=240)
                for metric in ("cost", "silhouette")
            ]
        ),
        "segment_profiles.html": alt.Chart(
            profiles.melt(
                id_vars=["segment_name"], value_vars=[c for c in profiles.columns if c.startswith("z_")]
            )
        )
        .mark_rect()
        .encode(
            x="variable:N", y="segment_name:N", color=alt.Color("value:Q", scale=alt.Scale(scheme="redblue"))
        )
        .properties(title="segment prototypes (standardised)", width=520),
    }
    if stability is not None:
        charts["stability_by_cluster.html"] = (
            alt.Chart(stability)
            .mark_bar()
            .encode(
                x="segment_name:N",
                y=alt.Y("jaccard_mean:Q", scale=alt.Scale(domain=[0, 1])),
                color="verdict:N",
            )
            .properties(title="bootstrap Jaccard by segment", width=420, height=260)
        )
    with tempfile.TemporaryDirectory() as tmp:
        for name, chart in charts.items():
            path = Path(tmp) / name
            chart.save(str(path))
            run.log_artifact(path, "segment")


PERSONA_RESAMPLES = 1000


def persona_association(counts: pd.DataFrame, seed: int) -> dict[str, float]:
    """How much the legacy personas say about the segments: Cramér's V of the persona x
    segment table (business segments and outliers as they are; no persona is one more
    row, 'unknown') with a bootstrap interval."""
    known = counts.assign(legacy_persona=counts["legacy_persona"].fillna("unknown"))
    table = known.pivot_table(
        index="legacy_persona", columns="segment_name", values="customers", aggfunc="sum", fill_value=0
    ).to_numpy()
    v, lo, hi = cramers_v_interval(table, resamples=PERSONA_RESAMPLES, seed=seed)
    return {
        "cramers_v": v,
        "cramers_v_lo": lo,
        "cramers_v_hi": hi,
        "customers": float(table.sum()),
        "resamples": float(PERSONA_RESAMPLES),
    }


def latest_snapshot(features: DataFrame, wanted: Any = None) -> DataFrame:
    """One snapshot of the feature table: ``wanted`` or the latest."""
    if "snapshot_date" not in features.columns:
        return features
    if wanted is None:
        row = features.agg(F.max("snapshot_date")).first()
        wanted = row[0] if row else None
    return features.where(F.col("snapshot_date") == F.lit(wanted))


def run_segment(ctx: StageContext) -> None:
    """Stage runner (see the module docstring)."""
    cfg, tables, run = ctx.cfg.segment, ctx.tables, ctx.run
    if not tables.exists(cfg.features_table):
        raise FileNotFoundError(f"segment needs {cfg.features_table}; run the features stage first")
    started = time.perf_counter()
    seed = ctx.cfg.run.seed
    # the rows in one order wherever the table was written, for the seeded samplers
    features = canonical_order(latest_snapshot(tables.read(cfg.features_table), cfg.snapshot_date), KEY)
    prep = fit_prep(cfg, features)
    numeric, categorical = numeric_inputs(cfg), categorical_inputs(cfg)
    profile_cols = profile_columns(cfg, features.columns)
    persona = [cfg.persona_col] if cfg.persona_col and cfg.persona_col in features.columns else []
    scaled = (
        prep.transform(features)
        .select(KEY, *numeric, *categorical, *profile_cols, *persona)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    business = scaled
    try:
        n = scaled.count()
        if n < cfg.k_max * 2:
            raise ValueError(
                f"segment: {n} customers in {cfg.features_table} are too few for k up to {cfg.k_max}"
            )
        moments = scaled.agg(*[F.stddev_pop(c) for c in numeric], *[F.min(c) for c in numeric]).first()
        values = [float(v or 0.0) for v in (moments or [])]
        stds, floors = values[: len(numeric)], values[len(numeric) :]
        gamma = cfg.gamma or mixed_gamma(stds)
        screen, business = screen_outliers(cfg, scaled, gamma, seed, n, floors)
        if screen is not None:
            business = business.persist(StorageLevel.MEMORY_AND_DISK)
        n_business = n - (screen.customers if screen else 0)
        sample = draw_sample(
            business.select(KEY, *numeric, *categorical), cfg.silhouette_rows, seed, KEY
        ).toPandas()
        log.info(
            "segment: %d customers (%d outliers set aside), gamma %.4f, silhouette sample %d",
            n,
            n - n_business,
            gamma,
            len(sample),
        )
        candidates = sweep(ctx, cfg, business, sample, gamma, seed, n_business)
        chosen = choose(cfg, candidates)
        metrics = finish(ctx, cfg, features, prep, scaled, chosen, candidates, screen, profile_cols, persona)
    finally:
        if business is not scaled:
            business.unpersist()
        scaled.unpersist()
    metrics["seconds"] = time.perf_counter() - started
    run.log_metrics(metrics)
    run.log_params({"segment.chosen_k": chosen.k, "segment.gamma_resolved": gamma})


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


def final_model(chosen: Candidate, screen: OutlierScreen | None) -> KPrototypesModel:
    """The chosen business prototypes (0..k-1) plus the outlier prototypes after them, so
    scoring sets outliers aside by the same nearest-prototype rule; names come later."""
    model = chosen.model
    assert model is not None
    centres, modes = np.array(model.clusterCentres()), np.array(model.clusterModes(), dtype=object)
    if screen is not None:
        centres = np.vstack([centres, screen.centres])
        modes = np.vstack([modes, screen.modes])
    final = KPrototypesModel(
        centres=centres.tolist(), modes=modes.tolist(), gamma=model.gamma, summary=model.summary
    )
    model._copyValues(final)
    return final


def finish(
    ctx: StageContext,
    cfg: SegmentConfig,
    features: DataFrame,
    prep: PipelineModel,
    scaled: DataFrame,
    chosen: Candidate,
    candidates: list[Candidate],
    screen: OutlierScreen | None,
    profile_cols: list[str],
    persona: list[str],
) -> dict[str, float]:
    """Name the chosen clusters, register the pipeline, write the gold tables."""
    tables, run = ctx.tables, ctx.run
    assert chosen.model is not None
    # one assignment of every customer by the final prototypes: the business clusters'
    # profiles (outliers left out, so they cannot shift a name) name them
    model = final_model(chosen, screen)
    final_labels = model.transform(scaled)
    profiles = cluster_profiles(final_labels, profile_cols)
    profiles["is_outlier"] = profiles["cluster"] >= chosen.k
    found = segment_names(
        profiles,
        value_col=cfg.value_col,
        engagement_col=cfg.engagement_col,
        cost_col=cfg.cost_col,
        costly_ratio=cfg.costly_ratio,
    )
    names = {j: found.get(j, f"segment {j} (empty)") for j in range(chosen.k)}
    labels = [*names.values(), *[OUTLIER] * (len(model.clusterCentres()) - chosen.k)]
    model.setSegmentNames(labels)
    profiles["segment_name"] = [labels[int(j)] for j in profiles["cluster"]]
    pipeline = PipelineModel(stages=[*prep.stages, model])
    version = (
        log_and_register_spark_model(
            run, pipeline, name=cfg.model_name, requirements=["custseg", "pyspark==4.0.1"]
        )
        if cfg.register_model
        else None
    )
    centres = np.array(model.clusterCentres())
    for i, c in enumerate(numeric_inputs(cfg)):
        profiles[c] = [centres[int(j), i] for j in profiles["cluster"]]

    assignments = pipeline.transform(features).select(
        KEY,
        *(["snapshot_date"] if "snapshot_date" in features.columns else []),
        "segment",
        "segment_name",
        (F.col("segment_name") == F.lit(OUTLIER)).alias("is_outlier"),
    )
    tables.write(assignments, "gold.segment_assignments")

    selection = pd.DataFrame([c.row(cfg) for c in candidates])
    selection["chosen"] = [(c.algorithm, c.k) == ("kprototypes", chosen.k) for c in candidates]
    selection["rule"] = cfg.selection_rule
    # Without the fit times: a table holds results, equal for equal input and seed (a
    # resumed run's must equal an uninterrupted one's); the times are each candidate's
    # MLflow metric ``seconds``.
    tables.write(
        ctx.spark.createDataFrame(
            selection.drop(columns=["seconds"]).astype(
                {"all_stable": "object", "economically_distinct": "object"}
            )
        ),
        "gold.segment_model_selection",
    )

    stability_rows = []
    for candidate in candidates:
        table = candidate.stability_table(cfg)
        if table is not None:
            table.insert(0, "k", candidate.k)
            table["chosen"] = candidate is chosen
            table["segment_name"] = [names[int(j)] if candidate is chosen else None for j in table["cluster"]]
            stability_rows.append(table)
    persona_metrics: dict[str, float] = {}
    chosen_stability = None
    if stability_rows:
        stability = pd.concat(stability_rows, ignore_index=True)
        tables.write(ctx.spark.createDataFrame(stability), "gold.segment_stability")
        chosen_stability = stability.loc[stability["chosen"]]
    if persona:
        counts = pd.DataFrame(final_labels.groupBy(persona[0], "segment").count().toPandas())
        counts["segment_name"] = [labels[int(j)] for j in counts.pop("segment")]
        counts = counts.rename(columns={persona[0]: "legacy_persona", "count": "customers"})
        counts["share_of_persona"] = counts["customers"] / counts.groupby("legacy_persona")[
            "customers"
        ].transform("sum")
        tables.write(ctx.spark.createDataFrame(counts), "gold.segment_persona_crosstab")
        run.log_dict(counts.to_dict(orient="records"), "segment/persona_crosstab.json")
        association = persona_association(counts, ctx.cfg.run.seed)
        tables.write(
            ctx.spark.createDataFrame(pd.DataFrame([association])), "gold.segment_persona_association"
        )
        persona_metrics = {f"persona_{k}": float(v) for k, v in association.items()}
        log.info(
            "segment: legacy personas against segments: Cramér's V %.3f (95 %% interval %.3f-%.3f)",
            association["cramers_v"],
            association["cramers_v_lo"],
            association["cramers_v_hi"],
        )
    if version is not None:  # moved once the tables above are published, not before
        ctx.after_publish.append(lambda: set_model_alias(cfg.model_name, cfg.alias, version))
    run.log_dict(selection.to_dict(orient="records"), "segment/model_selection.json")
    run.log_dict(profiles.to_dict(orient="records"), "segment/profiles.json")
    save_plots(selection, chosen_stability, profiles, run)
    outlier_customers = int(profiles.loc[profiles["segment_name"] == OUTLIER, "customers"].sum())
    log.info(
        "segment: chose k=%d by %s (silhouette %.4f); segments %s; %d outlier customers; model version %s",
        chosen.k,
        cfg.selection_rule,
        chosen.silhouette,
        profiles.groupby("segment_name")["customers"].sum().to_dict(),
        outlier_customers,
        version,
    )
    return {
        **persona_metrics,
        "chosen_k": chosen.k,
        "silhouette": chosen.silhouette,
        "cost": chosen.cost,
        "outlier_customers": outlier_customers,
        "outlier_clusters": len(screen.centres) if screen else 0,
        "customers": int(profiles["customers"].sum()),
        "ari_mean": float(chosen.stability.ari.mean())
        if chosen.stability and len(chosen.stability.ari)
        else 0.0,
    }
