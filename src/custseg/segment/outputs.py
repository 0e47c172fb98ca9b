"""The segment stage's outputs: the chosen clusters profiled and named, and the gold
tables (assignments, model selection, stability, persona crosstab and association)."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from custseg import catalog
from custseg.config import SegmentConfig
from custseg.contract import OUTLIER
from custseg.segment.candidates import Candidate
from custseg.segment.inputs import KEY
from custseg.segment.kprototypes import KPrototypesModel
from custseg.segment.naming import segment_names
from custseg.segment.validate import cramers_v_interval
from custseg.stage import StageContext

log = logging.getLogger(__name__)


def cluster_profiles(labelled: DataFrame, profile_cols: list[str]) -> pd.DataFrame:
    """Per cluster of ``segment``: customers and the mean of every profile column."""
    rows = pd.DataFrame(
        labelled.groupBy("segment")
        .agg(F.count(F.lit(1)).alias("customers"), *[F.avg(c).alias(c) for c in profile_cols])
        .toPandas()
    )
    return rows.rename(columns={"segment": "cluster"}).sort_values("cluster").reset_index(drop=True)


def name_clusters(
    cfg: SegmentConfig, model: KPrototypesModel, labelled: DataFrame, profile_cols: list[str], k: int
) -> tuple[pd.DataFrame, dict[int, str], list[str]]:
    """Profile every cluster of ``labelled`` (the final prototypes' assignment of every
    customer) and name the business clusters from their profiles (outliers left out, so
    they cannot shift a name); the model gets the names. Returns the profiles, the
    business names by cluster and the name of every prototype."""
    profiles = cluster_profiles(labelled, profile_cols)
    profiles["is_outlier"] = profiles["cluster"] >= k
    found = segment_names(
        profiles,
        value_col=cfg.value_col,
        engagement_col=cfg.engagement_col,
        cost_col=cfg.cost_col,
        costly_ratio=cfg.costly_ratio,
    )
    names = {j: found.get(j, f"segment {j} (empty)") for j in range(k)}
    labels = [*names.values(), *[OUTLIER] * (len(model.clusterCenters()) - k)]
    model.setSegmentNames(labels)
    profiles["segment_name"] = [labels[int(j)] for j in profiles["cluster"]]
    return profiles, names, labels


def write_assignments(ctx: StageContext, pipeline: PipelineModel, features: DataFrame) -> None:
    """gold.segment_assignments: every customer of the snapshot by the registered pipeline."""
    assignments = pipeline.transform(features).select(
        KEY,
        *(["snapshot_date"] if "snapshot_date" in features.columns else []),
        "segment",
        "segment_name",
        (F.col("segment_name") == F.lit(OUTLIER)).alias("is_outlier"),
    )
    ctx.tables.write(assignments, catalog.SEGMENT_ASSIGNMENTS)


def write_selection(
    ctx: StageContext, cfg: SegmentConfig, candidates: list[Candidate], chosen: Candidate
) -> pd.DataFrame:
    """gold.segment_model_selection: every candidate's figures and which was chosen."""
    selection = pd.DataFrame([c.row(cfg) for c in candidates])
    selection["chosen"] = [(c.algorithm, c.k) == ("kprototypes", chosen.k) for c in candidates]
    selection["rule"] = cfg.selection_rule
    # Without the fit times: a table holds results, equal for equal input and seed (a
    # resumed run's must equal an uninterrupted one's); the times are each candidate's
    # MLflow metric ``seconds`` (per candidate).
    ctx.tables.write(
        ctx.spark.createDataFrame(
            selection.drop(columns=["seconds"]).astype(
                {"all_stable": "object", "economically_distinct": "object"}
            )
        ),
        catalog.SEGMENT_MODEL_SELECTION,
    )
    return selection


def write_stability(
    ctx: StageContext,
    cfg: SegmentConfig,
    candidates: list[Candidate],
    chosen: Candidate,
    names: dict[int, str],
) -> pd.DataFrame | None:
    """gold.segment_stability: every candidate cluster's bootstrap figures (when the sweep
    measured them); returns the chosen candidate's rows."""
    rows = []
    for candidate in candidates:
        table = candidate.stability_table(cfg)
        if table is not None:
            table.insert(0, "k", candidate.k)
            table["chosen"] = candidate is chosen
            table["segment_name"] = [names[int(j)] if candidate is chosen else None for j in table["cluster"]]
            rows.append(table)
    if not rows:
        return None
    stability = pd.concat(rows, ignore_index=True)
    ctx.tables.write(ctx.spark.createDataFrame(stability), catalog.SEGMENT_STABILITY)
    return stability.loc[stability["chosen"]]


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


def write_persona(
    ctx: StageContext, persona: str, labelled: DataFrame, labels: list[str]
) -> dict[str, float]:
    """gold.segment_persona_crosstab and gold.segment_persona_association: how the legacy
    personas spread over the segments; returns the association as metrics."""
    counts = pd.DataFrame(labelled.groupBy(persona, "segment").count().toPandas())
    counts["segment_name"] = [labels[int(j)] for j in counts.pop("segment")]
    counts = counts.rename(columns={persona: "legacy_persona", "count": "customers"})
    counts["share_of_persona"] = counts["customers"] / counts.groupby("legacy_persona")[
        "customers"
    ].transform("sum")
    ctx.tables.write(ctx.spark.createDataFrame(counts), catalog.SEGMENT_PERSONA_CROSSTAB)
    ctx.run.log_dict(counts.to_dict(orient="records"), "segment/persona_crosstab.json")
    association = persona_association(counts, ctx.cfg.run.seed)
    ctx.tables.write(
        ctx.spark.createDataFrame(pd.DataFrame([association])), catalog.SEGMENT_PERSONA_ASSOCIATION
    )
    log.info(
        "segment: legacy personas against segments: Cramér's V %.3f (95 %% interval %.3f-%.3f)",
        association["cramers_v"],
        association["cramers_v_lo"],
        association["cramers_v_hi"],
    )
    return {f"persona_{k}": float(v) for k, v in association.items()}


def chosen_metrics(chosen: Candidate, profiles: pd.DataFrame, outlier_clusters: int) -> dict[str, Any]:
    """The stage's headline metrics for MLflow."""
    return {
        "chosen_k": chosen.k,
        "silhouette": chosen.silhouette,
        "cost": chosen.cost,
        "outlier_customers": int(profiles.loc[profiles["segment_name"] == OUTLIER, "customers"].sum()),
        "outlier_clusters": outlier_clusters,
        "customers": int(profiles["customers"].sum()),
        "ari_mean": float(chosen.stability.ari.mean())
        if chosen.stability and len(chosen.stability.ari)
        else 0.0,
    }
