"""The outlier screen: a generous k fitted on a sample finds tiny, extreme clusters (bot
accounts); their prototypes set rows aside before the sweep and join the final model."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from custseg.config import SegmentConfig
from custseg.sampling import hash_sample
from custseg.segment.inputs import KEY, categorical_inputs, numeric_inputs
from custseg.segment.kprototypes import KPrototypes, KPrototypesModel
from custseg.segment.naming import outlier_clusters

log = logging.getLogger(__name__)


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
        np.array(probe.clusterCenters()),
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
        np.array(probe.clusterCenters())[flagged],
        np.array(probe.clusterModes(), dtype=object)[flagged],
        int(count[0]) if count else 0,
    )
    return screen, labelled.where(~is_outlier).drop("segment")


def final_model(model: KPrototypesModel, screen: OutlierScreen | None) -> KPrototypesModel:
    """The chosen business prototypes (0..k-1) plus the outlier prototypes after them, so
    scoring sets outliers aside by the same nearest-prototype rule; names come later."""
    centres, modes = np.array(model.clusterCenters()), np.array(model.clusterModes(), dtype=object)
    if screen is not None:
        centres = np.vstack([centres, screen.centres])
        modes = np.vstack([modes, screen.modes])
    final = KPrototypesModel(
        centres=centres.tolist(), modes=modes.tolist(), gamma=model.gamma, summary=model.summary
    )
    model._copyValues(final)
    return final
