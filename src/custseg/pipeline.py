"""Stage registry and runner: every stage runs the same way, alone or in the pipeline.

A stage is a function ``run(ctx: StageContext) -> None`` that reads its inputs through
``ctx.tables``, calls the stage's pure transforms and writes its outputs. Only stages that
are built are registered; there are no placeholders.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyspark.sql import SparkSession

from custseg.config import Config
from custseg.session import build_session
from custseg.tables import TableStore
from custseg.tracking import StageRun, new_run_id, pipeline_parent, pipeline_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageContext:
    """What a stage gets: config, session, tables and its tracking handle."""

    cfg: Config
    spark: SparkSession
    tables: TableStore
    run: StageRun


StageFn = Callable[[StageContext], None]


def _registry() -> dict[str, StageFn]:
    from custseg.clv.job import run_clv
    from custseg.features.job import run_features
    from custseg.generate.job import run_generate
    from custseg.ingest.job import run_ingest
    from custseg.insights.job import run_insights
    from custseg.report.job import run_report
    from custseg.segment.job import run_segment
    from custseg.segment.score import run_score
    from custseg.stitch.job import run_stitch

    return {
        "generate": run_generate,
        "ingest": run_ingest,
        "stitch": run_stitch,
        "features": run_features,
        "segment": run_segment,
        "score": run_score,
        "clv": run_clv,
        "insights": run_insights,
        "report": run_report,
    }


def stage_names() -> list[str]:
    """Registered stages in pipeline order."""
    return list(_registry())


def select_stages(stages: Sequence[str] | None = None, from_stage: str | None = None) -> list[str]:
    """The stages to run, in pipeline order; raises ValueError naming an unknown stage."""
    known = stage_names()
    for name in [*(stages or []), *([from_stage] if from_stage else [])]:
        if name not in known:
            raise ValueError(f"unknown stage {name!r}; registered stages: {known}")
    chosen = [s for s in known if stages is None or s in stages]
    if from_stage:
        chosen = [s for s in chosen if known.index(s) >= known.index(from_stage)]
    return chosen


def run_stage(cfg: Config, stage: str, run_id: str) -> StageRun:
    """Run one stage under ``run_id`` and return its tracking handle."""
    fn = _registry().get(stage)
    if fn is None:
        raise ValueError(f"unknown stage {stage!r}; registered stages: {stage_names()}")
    with pipeline_run(cfg, stage=stage, run_id=run_id) as run:
        spark = build_session(cfg.spark)
        tables = TableStore(spark, cfg.storage.warehouse, run_id=run.id)
        fn(StageContext(cfg=cfg, spark=spark, tables=tables, run=run))
    return run


def run_pipeline(cfg: Config, stages: Sequence[str] | None = None, run_id: str | None = None) -> str:
    """Run the given stages (default: all) in order under one run id; returns the id."""
    run_id = run_id or new_run_id()
    chosen = select_stages(stages)
    log.info("pipeline run %s: stages %s", run_id, chosen)
    if cfg.tracking.enabled:
        with pipeline_parent(cfg, run_id):
            for stage in chosen:
                run_stage(cfg, stage, run_id)
    else:
        for stage in chosen:
            run_stage(cfg, stage, run_id)
    return run_id
