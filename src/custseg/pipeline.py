"""Stage registry and runner: every stage runs the same way, alone or in the pipeline.

A stage is a function ``run(ctx: StageContext) -> None`` that reads its inputs through
``ctx.tables``, calls the stage's pure transforms and writes its outputs. Only stages that
are built are registered; there are no placeholders.

A stage's outputs appear together: when the function returns, the runner commits one row
to ``meta.stage_runs`` (the versions it read and wrote) and only then runs the stage's
``after_publish`` steps (moving the model registry alias). Readers see the versions the
last finished stage run published. A stage this run id already finished is not run again
(``force`` runs it anyway). The run holds the warehouse (``custseg.lease``) throughout.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from functools import partial

from custseg.config import Config
from custseg.lease import check_held, holding
from custseg.privacy import retention_properties
from custseg.session import build_session
from custseg.stage import STAGES, StageContext, StageFn
from custseg.tables import TableStore, check_run_id, utc_now
from custseg.tracking import StageRun, new_run_id, pipeline_parent, pipeline_run

log = logging.getLogger(__name__)


def _registry() -> dict[str, StageFn]:
    # imported when a stage runs, not with this module: a job that runs one stage loads
    # only that stage's dependencies (Splink, statsmodels and matplotlib are heavy)
    from custseg.clv.runner import run_clv
    from custseg.features.runner import run_features
    from custseg.generate.runner import run_generate
    from custseg.ingest.runner import run_ingest
    from custseg.insights.runner import run_insights
    from custseg.report.runner import run_report
    from custseg.score.runner import run_score
    from custseg.segment.runner import run_segment
    from custseg.stitch.runner import run_stitch

    registry: dict[str, StageFn] = {
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
    assert tuple(registry) == STAGES, "the registry runs exactly custseg.stage.STAGES, in order"
    return registry


def stage_names() -> list[str]:
    """Registered stages in pipeline order."""
    return list(STAGES)


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


def _hold(cfg: Config, run_id: str) -> AbstractContextManager[None]:
    tables = TableStore(
        build_session(cfg.spark),
        cfg.storage.warehouse,
        run_id=run_id,
        properties=partial(retention_properties, cfg),
    )
    return holding(tables, cfg.run.lease_seconds, cfg.run.lease_wait_seconds)


class ErasedSinceStartError(RuntimeError):
    """A run resumed after an erasure that published since the run started."""


def run_stage(cfg: Config, stage: str, run_id: str, force: bool = False) -> StageRun | None:
    """Run one stage under ``run_id`` and return its tracking handle; None when this run
    id already finished the stage (and ``force`` is off): a rerun changes nothing."""
    fn = _registry().get(stage)
    if fn is None:
        raise ValueError(f"unknown stage {stage!r}; registered stages: {stage_names()}")
    check_run_id(run_id)
    with _hold(cfg, run_id):
        spark = build_session(cfg.spark)
        tables = TableStore(
            spark, cfg.storage.warehouse, run_id=run_id, properties=partial(retention_properties, cfg)
        )
        erased = tables.erased_since_start()
        if erased is not None:
            raise ErasedSinceStartError(
                f"run {run_id} started before the erasure published at {erased:%Y-%m-%d %H:%M:%S} UTC; its "
                "earlier outputs hold the erased people: start a new run (a new --run-id)"
            )
        if not force and tables.finished(stage):
            log.info(
                "stage %s of run %s already finished; nothing to do (--force runs it again)", stage, run_id
            )
            return None
        started = utc_now()
        with pipeline_run(cfg, stage=stage, run_id=run_id) as run:
            tables.pin_reads_of(stage)  # a forced rerun reads what the first attempt read
            ctx = StageContext(cfg=cfg, spark=spark, tables=tables, run=run)
            fn(ctx)
            check_held(tables.warehouse)  # a run that lost its hold publishes nothing
            status = "PUBLISHED" if ctx.after_publish else "FINISHED"
            tables.publish(stage, started_at=started, mlflow_run_id=run.mlflow_run_id, status=status)
            if ctx.after_publish:
                # killed in here, the stage stays PUBLISHED (not FINISHED) and its rerun
                # does the steps again (a model version it registered is reused)
                for step in ctx.after_publish:
                    step()
                tables.publish(stage, started_at=started, mlflow_run_id=run.mlflow_run_id)
    return run


def run_pipeline(
    cfg: Config, stages: Sequence[str] | None = None, run_id: str | None = None, force: bool = False
) -> str:
    """Run the given stages (default: all) in order under one run id; returns the id.
    Stages this run id already finished are skipped unless ``force``."""
    run_id = check_run_id(run_id or new_run_id())
    chosen = select_stages(stages)
    log.info("pipeline run %s: stages %s", run_id, chosen)
    with _hold(cfg, run_id):
        if cfg.tracking.enabled:
            with pipeline_parent(cfg, run_id):
                for stage in chosen:
                    run_stage(cfg, stage, run_id, force=force)
        else:
            for stage in chosen:
                run_stage(cfg, stage, run_id, force=force)
    return run_id
