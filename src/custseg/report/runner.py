"""Stage ``report``: the run's answers as one self-contained HTML page and a plain-text
summary, written to ``<report.dir>/<run id>/`` and logged to the run in MLflow."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from custseg import hadoopfs
from custseg.report.data import gather
from custseg.report.render import render_html
from custseg.report.sections import build_sections, summary_text
from custseg.stage import StageContext

log = logging.getLogger(__name__)


def report_dir(report_root: str, run_id: str) -> str:
    """Where the run's report lives."""
    return os.path.join(report_root, run_id)


def run_report(ctx: StageContext) -> None:
    """Stage runner: gather, render, write and log the report of this run."""
    with ctx.timed("gather"):
        data = gather(ctx.tables, ctx.cfg, ctx.run.id)
    with ctx.timed("render"):
        sections = build_sections(data)
        html = render_html(ctx.run.id, ctx.cfg.storage.warehouse, sections)
    folder = report_dir(ctx.cfg.report.dir, ctx.run.id)
    path = os.path.join(folder, "report.html")
    summary = summary_text(data, path)
    hadoopfs.write_bytes(ctx.spark, path, html.encode("utf-8"))
    hadoopfs.write_bytes(ctx.spark, os.path.join(folder, "summary.txt"), summary.encode("utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in (("report.html", html), ("summary.txt", summary)):
            local = Path(tmp) / name
            local.write_text(text, encoding="utf-8")
            ctx.run.log_artifact(local, "report")
    ctx.run.log_metrics(
        {
            "report.bytes": float(len(html)),
            "report.sections": float(len(sections)),
        }
    )
    log.info("report: %d sections, %.0f KB: %s", len(sections), len(html) / 1024, path)
