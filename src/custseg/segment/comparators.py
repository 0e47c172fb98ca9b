"""The MLlib comparators (k-means, bisecting k-means, Gaussian mixture) on the same
scaled features with one-hot categoricals, scored with k-prototypes' cost and silhouette."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.clustering import BisectingKMeans, GaussianMixture, KMeans
from pyspark.ml.feature import ElementwiseProduct, OneHotEncoder, StringIndexer, VectorAssembler
from pyspark.ml.linalg import Vectors
from pyspark.sql import DataFrame, SparkSession
from pyspark.storagelevel import StorageLevel

from custseg.config import SegmentConfig
from custseg.sampling import hash_sample
from custseg.segment.candidates import Candidate, loggable
from custseg.segment.inputs import KEY, categorical_inputs, numeric_inputs
from custseg.segment.validate import mixed_silhouette, partition_cost
from custseg.tracking import StageRun, candidate_run

log = logging.getLogger(__name__)


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
        child.log_metrics(loggable(candidate.row(cfg)))
        log.info(
            "segment: %s k=%d cost %.6g silhouette %.4f (%.1f s)",
            algorithm,
            k,
            cost,
            silhouette,
            candidate.seconds,
        )
    return candidate
