"""Stage ``segment``: gold.customer_features -> segments chosen, validated and registered.

1. The latest (or configured) snapshot of the features; a ``SQLTransformer`` computes the
   configured derived inputs and fills nulls, ``LogStandardScaler`` scales the numeric
   inputs. Both are fitted once and saved with the model (``segment.inputs``).
2. Outliers set aside (``segment.outliers``); for every k of the sweep: k-prototypes (one
   nested MLflow run), the exact mixed-dissimilarity silhouette on a bounded seeded
   sample, bootstrap stability; beside it the MLlib comparators on the same scaled
   features with one-hot categoricals (``segment.comparators``).
3. The selection rule of the config picks k (``segment.selection``); the chosen clusters
   are profiled and named; the pipeline (prep, scaler, k-prototypes with names) is logged
   and registered with the configured alias. Outputs (``segment.outputs``):
   gold.segment_assignments, gold.segment_model_selection, gold.segment_stability,
   gold.segment_persona_crosstab and _association; plots in MLflow (``segment.plots``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.storagelevel import StorageLevel

from custseg.config import SegmentConfig
from custseg.sampling import canonical_order
from custseg.segment.candidates import Candidate
from custseg.segment.inputs import KEY, categorical_inputs, fit_prep, numeric_inputs, profile_columns
from custseg.segment.kprototypes import mixed_gamma
from custseg.segment.outliers import OutlierScreen, final_model, screen_outliers
from custseg.segment.outputs import (
    chosen_metrics,
    name_clusters,
    write_assignments,
    write_persona,
    write_selection,
    write_stability,
)
from custseg.segment.plots import save_plots
from custseg.segment.selection import choose, sweep
from custseg.segment.validate import draw_sample
from custseg.snapshots import latest_snapshot
from custseg.stage import StageContext
from custseg.tracking import log_and_register_spark_model, set_model_alias

log = logging.getLogger(__name__)


@dataclass
class SegmentInputs:
    """The snapshot segmented, the fitted prep and the scaled rows (persisted)."""

    features: DataFrame  # the snapshot, in one order wherever the table was written
    prep: PipelineModel
    scaled: DataFrame  # key, model inputs, profile columns, persona
    profile_cols: list[str]
    persona: list[str]  # the legacy persona column, when there is one


def prepared_inputs(ctx: StageContext, cfg: SegmentConfig) -> SegmentInputs:
    """Step 1: the snapshot, the prep fitted on it and every row scaled."""
    # the rows in one order wherever the table was written, for the seeded samplers
    features = canonical_order(latest_snapshot(ctx.tables.read(cfg.features_table), cfg.snapshot_date), KEY)
    prep = fit_prep(cfg, features)
    profile_cols = profile_columns(cfg, features.columns)
    persona = [cfg.persona_col] if cfg.persona_col and cfg.persona_col in features.columns else []
    scaled = (
        prep.transform(features)
        .select(KEY, *numeric_inputs(cfg), *categorical_inputs(cfg), *profile_cols, *persona)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    return SegmentInputs(features, prep, scaled, profile_cols, persona)


def gamma_and_floors(cfg: SegmentConfig, scaled: DataFrame) -> tuple[float, list[float]]:
    """The categorical weight (configured, or from the numerics' spread) and each scaled
    numeric's smallest value (the outlier screen's floors), in one aggregate."""
    numeric = numeric_inputs(cfg)
    moments = scaled.agg(*[F.stddev_pop(c) for c in numeric], *[F.min(c) for c in numeric]).first()
    values = [float(v or 0.0) for v in (moments or [])]
    stds, floors = values[: len(numeric)], values[len(numeric) :]
    return cfg.gamma or mixed_gamma(stds), floors


def run_segment(ctx: StageContext) -> None:
    """Stage runner (see the module docstring)."""
    cfg, seed = ctx.cfg.segment, ctx.cfg.run.seed
    ctx.require_tables(cfg.features_table)
    inputs = prepared_inputs(ctx, cfg)
    scaled = business = inputs.scaled
    try:
        n = scaled.count()
        if n < cfg.k_max * 2:
            raise ValueError(
                f"segment: {n} customers in {cfg.features_table} are too few for k up to {cfg.k_max}"
            )
        gamma, floors = gamma_and_floors(cfg, scaled)
        screen, business = screen_outliers(cfg, scaled, gamma, seed, n, floors)
        if screen is not None:
            business = business.persist(StorageLevel.MEMORY_AND_DISK)
        n_business = n - (screen.customers if screen else 0)
        sample = draw_sample(
            business.select(KEY, *numeric_inputs(cfg), *categorical_inputs(cfg)),
            cfg.silhouette_rows,
            seed,
            KEY,
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
        metrics = finish(ctx, cfg, inputs, chosen, candidates, screen)
    finally:
        if business is not scaled:
            business.unpersist()
        scaled.unpersist()
    ctx.run.log_metrics(metrics)
    ctx.run.log_params({"segment.chosen_k": chosen.k, "segment.gamma_resolved": gamma})


def finish(
    ctx: StageContext,
    cfg: SegmentConfig,
    inputs: SegmentInputs,
    chosen: Candidate,
    candidates: list[Candidate],
    screen: OutlierScreen | None,
) -> dict[str, Any]:
    """Step 3: name the chosen clusters, register the pipeline, write the gold tables."""
    run = ctx.run
    assert chosen.model is not None
    # one assignment of every customer by the final prototypes names the clusters
    model = final_model(chosen.model, screen)
    final_labels = model.transform(inputs.scaled)
    profiles, names, labels = name_clusters(cfg, model, final_labels, inputs.profile_cols, chosen.k)
    pipeline = PipelineModel(stages=[*inputs.prep.stages, model])
    version = (
        log_and_register_spark_model(
            run, pipeline, name=cfg.model_name, requirements=["custseg", "pyspark==4.0.1"]
        )
        if cfg.register_model
        else None
    )
    centres = np.array(model.clusterCenters())
    for i, c in enumerate(numeric_inputs(cfg)):
        profiles[c] = [centres[int(j), i] for j in profiles["cluster"]]
    write_assignments(ctx, pipeline, inputs.features)
    selection = write_selection(ctx, cfg, candidates, chosen)
    chosen_stability = write_stability(ctx, cfg, candidates, chosen, names)
    persona_metrics = write_persona(ctx, inputs.persona[0], final_labels, labels) if inputs.persona else {}
    if version is not None:  # moved once the tables above are published, not before
        ctx.after_publish.append(lambda: set_model_alias(cfg.model_name, cfg.alias, version))
    run.log_dict(selection.to_dict(orient="records"), "segment/model_selection.json")
    run.log_dict(profiles.to_dict(orient="records"), "segment/profiles.json")
    save_plots(selection, chosen_stability, profiles, run)
    metrics = chosen_metrics(chosen, profiles, len(screen.centres) if screen else 0)
    log.info(
        "segment: chose k=%d by %s (silhouette %.4f); segments %s; %d outlier customers; model version %s",
        chosen.k,
        cfg.selection_rule,
        chosen.silhouette,
        profiles.groupby("segment_name")["customers"].sum().to_dict(),
        metrics["outlier_customers"],
        version,
    )
    return {**persona_metrics, **metrics}
