"""The segment stage's inputs: the prep SQL (derived inputs, categoricals as strings),
the scaler, the model's column names and the profile columns kept beside them."""

from __future__ import annotations

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import SQLTransformer
from pyspark.sql import DataFrame

from custseg.config import SegmentConfig
from custseg.segment.scaling import LogStandardScaler

KEY = "customer_id"
SEG = "seg_"  # prepared model inputs
Z = "z_"  # scaled numeric inputs


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
