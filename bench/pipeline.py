"""Benchmark the whole pipeline end to end on a generated preset, stage by stage.

    .venv/bin/python bench/pipeline.py --preset reference [--data DIR] [--json OUT.json]
        [--skip-splink] [--driver-memory 12g] [--set KEY=VALUE ...]

One run of ``generate`` (skipped when --data already holds this preset's files) and then
every stage, in one local session (local[*]) with Spark's event log on, under one run id.
Per stage: wall time, rows read and written (the table versions the stage recorded in
meta.stage_runs), peak RSS of the driver JVM and of this Python process, and from the
event log shuffle read and write bytes, spill and the largest result one job sent the
driver. Then stitching quality against the generator's truth and, in the same session,
Splink alone on Spark on all identity records (``bench/stitch.py``'s ``splink_alone``:
the same standardisation, comparisons and blocking, no deterministic pass), timed beside
our stitch stage. Prints a table, writes the figures as JSON and logs them as metrics on
the run's MLflow parent. Asserts nothing.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import RssSampler, bench_parser, bench_session
from pyspark.sql import SparkSession

from custseg import catalog
from custseg.config import Config
from custseg.pipeline import run_stage, stage_names
from custseg.tables import TableStore

log = logging.getLogger("bench.pipeline")
GIB = 2**30
CORE_STAGES = ("ingest", "stitch", "features", "segment", "score", "clv")


@dataclass
class StageFigures:
    stage: str
    seconds: float
    rows_in: int = 0
    rows_out: int = 0
    driver_jvm_peak_gib: float = 0.0
    python_peak_gib: float = 0.0
    shuffle_read_bytes: int = 0
    shuffle_write_bytes: int = 0
    spill_memory_bytes: int = 0
    spill_disk_bytes: int = 0
    largest_job_result_bytes: int = 0
    window: tuple[int, int] = (0, 0)  # epoch ms
    tables_out: dict[str, int] = field(default_factory=dict)


def bench_config(args: Any, name: str) -> tuple[Config, SparkSession, Path, int]:
    """The session and config of an end-to-end run: every path under the data folder, the
    event log on (uncompressed, one file) under ``<data>/events``."""
    events = Path(args.data).resolve() / "events" if args.data else None
    spark_conf = {"spark.ui.showConsoleProgress": "false"}
    if events is not None:
        events.mkdir(parents=True, exist_ok=True)
        spark_conf |= {
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": str(events),
            "spark.eventLog.compress": "false",
            "spark.eventLog.rolling.enabled": "false",
        }
    data = Path(args.data).resolve() if args.data else None
    paths = (
        [
            f"storage.warehouse={data / 'warehouse'}",
            f"tracking.uri=sqlite:///{data / 'mlflow.db'}",
            f"tracking.artifact_location={data / 'mlartifacts'}",
            f"generate.output_dir={data / 'generated'}",
            f"report.dir={data / 'reports'}",
            f"privacy.key_file={data / 'pseudonym.key'}",
        ]
        if data
        else []
    )
    args.set = [*paths, f"spark.conf={json.dumps(spark_conf)}", *args.set]
    return bench_session(args, name)


def run_measured(cfg: Config, run_id: str, stages: list[str], jvm_pid: int) -> list[StageFigures]:
    """Run ``stages`` in order under ``run_id``; wall time and peak RSS per stage."""
    figures = []
    for stage in stages:
        started_ms = int(time.time() * 1000)
        started = time.perf_counter()
        with RssSampler(jvm_pid) as jvm, RssSampler(os.getpid()) as py:
            run_stage(cfg, stage, run_id, force=True)
        seconds = time.perf_counter() - started
        figures.append(
            StageFigures(
                stage,
                seconds,
                driver_jvm_peak_gib=jvm.peak_kb / 2**20,
                python_peak_gib=py.peak_kb / 2**20,
                window=(started_ms, int(time.time() * 1000)),
            )
        )
        log.info("bench: %s %.1f s", stage, seconds)
    return figures


def add_rows(spark: SparkSession, cfg: Config, run_id: str, figures: list[StageFigures]) -> None:
    """Rows each stage read and wrote: the row counts of the table versions it recorded."""
    store = TableStore(spark, cfg.storage.warehouse, run_id="bench-count")
    runs = store.read(catalog.STAGE_RUNS).where(f"run_id = '{run_id}'").collect()  # one row per stage
    counted: dict[tuple[str, int], int] = {}

    def rows(name: str, version: int) -> int:
        if (name, version) not in counted:
            counted[name, version] = store.read(name, version=version).count()
        return counted[name, version]

    by_stage = {r["stage"]: r for r in runs}
    for fig in figures:
        row = by_stage.get(fig.stage)
        if row is None:
            continue
        read = dict(row["reads"] or {})
        written = dict(row["writes"] or {})
        fig.rows_in = sum(rows(n, v) for n, v in read.items() if n not in written)
        fig.tables_out = {n: rows(n, v) for n, v in written.items()}
        fig.rows_out = sum(fig.tables_out.values())


def add_event_log(events: Path, figures: list[StageFigures]) -> None:
    """Shuffle, spill and the largest job result per stage, from the event log: a Spark
    stage or job counts for the pipeline stage whose time window holds its completion."""
    wanted = ('"SparkListenerStageCompleted"', '"SparkListenerTaskEnd"', '"SparkListenerJobStart"')
    job_of_stage: dict[int, int] = {}
    job_result: Counter[int] = Counter()
    job_end_ms: dict[int, int] = {}
    metrics: dict[str, Counter[str]] = defaultdict(Counter)

    def owner(ms: int) -> StageFigures | None:
        return next((f for f in figures if f.window[0] <= ms <= f.window[1]), None)

    files = [p for p in events.rglob("*") if p.is_file() and not p.name.startswith((".", "appstatus"))]
    for path in files:
        with path.open() as lines:
            for line in lines:
                if not any(w in line[:60] for w in wanted):
                    continue
                e = json.loads(line)
                kind = e["Event"]
                if kind == "SparkListenerJobStart":
                    job_of_stage.update(dict.fromkeys(e["Stage IDs"], e["Job ID"]))
                elif kind == "SparkListenerTaskEnd":
                    job = job_of_stage.get(e["Stage ID"], -1)
                    job_result[job] += int((e.get("Task Metrics") or {}).get("Result Size", 0))
                    job_end_ms[job] = max(job_end_ms.get(job, 0), int(e["Task Info"]["Finish Time"]))
                else:
                    info = e["Stage Info"]
                    fig = owner(int(info.get("Completion Time") or 0))
                    if fig is None:
                        continue
                    for acc in info.get("Accumulables", []):
                        metrics[fig.stage][acc.get("Name", "")] += int(float(acc.get("Value") or 0))
    for job, size in job_result.items():
        fig = owner(job_end_ms.get(job, 0))
        if fig is not None:
            fig.largest_job_result_bytes = max(fig.largest_job_result_bytes, size)
    for fig in figures:
        m = metrics[fig.stage]
        read = "internal.metrics.shuffle.read."
        fig.shuffle_read_bytes = m[read + "remoteBytesRead"] + m[read + "localBytesRead"]
        fig.shuffle_write_bytes = m["internal.metrics.shuffle.write.bytesWritten"]
        fig.spill_memory_bytes = m["internal.metrics.memoryBytesSpilled"]
        fig.spill_disk_bytes = m["internal.metrics.diskBytesSpilled"]


def stitch_quality(spark: SparkSession, cfg: Config) -> dict[str, float]:
    from custseg.stitch.quality import stitch_scores
    from custseg.stitch.runner import truth_frame

    truth = truth_frame(spark, cfg)
    if truth is None:
        return {}
    store = TableStore(spark, cfg.storage.warehouse, run_id="bench-quality")
    return stitch_scores(store.read("silver.identity_map"), truth)


def splink_on_spark(spark: SparkSession, cfg: Config) -> dict[str, Any]:
    """Splink alone on Spark on every identity record of bronze (``bench/stitch.py``)."""
    from stitch import splink_alone

    from custseg.stitch.runner import CONTRACT_COLUMNS, truth_frame

    store = TableStore(spark, cfg.storage.warehouse, run_id="bench-splink")
    records = store.read("bronze.identity_records").select(*CONTRACT_COLUMNS)
    truth = truth_frame(spark, cfg)
    assert truth is not None, "no truth: the data folder holds no generated truth/identity"
    wall, scores, how = splink_alone(records, truth, cfg)
    return {"seconds": wall, "clustering": how, **scores}


def table(figures: list[StageFigures]) -> list[str]:
    head = (
        f"{'stage':<10}{'time s':>9}{'rows in':>14}{'rows out':>14}{'JVM GiB':>9}{'Py GiB':>8}"
        f"{'shuf rd GiB':>12}{'shuf wr GiB':>12}{'spill GiB':>10}{'max res MiB':>12}"
    )
    lines = [head]
    for f in figures:
        lines.append(
            f"{f.stage:<10}{f.seconds:>9.1f}{f.rows_in:>14,}{f.rows_out:>14,}"
            f"{f.driver_jvm_peak_gib:>9.2f}{f.python_peak_gib:>8.2f}"
            f"{f.shuffle_read_bytes / GIB:>12.2f}{f.shuffle_write_bytes / GIB:>12.2f}"
            f"{f.spill_disk_bytes / GIB:>10.2f}{f.largest_job_result_bytes / 2**20:>12.2f}"
        )
    return lines


def log_to_parent(cfg: Config, run_id: str, summary: dict[str, Any]) -> None:
    import mlflow

    from custseg.tracking import pipeline_parent

    metrics: dict[str, float] = {"bench.total_after_generate_s": summary["total_after_generate_s"]}
    for f in summary["stages"]:
        for key in (
            "seconds",
            "rows_in",
            "rows_out",
            "driver_jvm_peak_gib",
            "shuffle_read_bytes",
            "shuffle_write_bytes",
            "spill_disk_bytes",
            "largest_job_result_bytes",
        ):
            metrics[f"bench.{f['stage']}.{key}"] = float(f[key])
    for key, value in summary.get("splink_alone", {}).items():
        if isinstance(value, float | int):
            metrics[f"bench.splink_alone.{key}"] = float(value)
    with pipeline_parent(cfg, run_id):
        mlflow.log_metrics(metrics)


def main() -> None:
    parser = bench_parser(__doc__, "folder for the generated files, warehouse, MLflow store and event log")
    parser.add_argument("--json", default=None, help="write the figures here (default <data>/pipeline.json)")
    parser.add_argument("--skip-splink", action="store_true", help="no Splink-alone comparison")
    parser.add_argument("--run-id", default=None)
    args = parser.parse_args()
    if args.data is None:
        parser.error("--data is required: the run's files and event log live there")
    cfg, spark, data, jvm_pid = bench_config(args, "pipeline")
    run_id = args.run_id or f"bench-{args.preset}-{time.strftime('%Y%m%dT%H%M%S')}"
    stages = stage_names()
    generated = (Path(cfg.generate.output_dir) / "truth" / "parameters.json").exists()
    if generated:
        stages = [s for s in stages if s != "generate"]
        log.info("bench: %s already holds a generated world; generate skipped", cfg.generate.output_dir)
    figures = run_measured(cfg, run_id, stages, jvm_pid)
    add_rows(spark, cfg, run_id, figures)
    add_event_log(data / "events", figures)
    after = [f for f in figures if f.stage != "generate"]
    summary: dict[str, Any] = {
        "preset": args.preset,
        "run_id": run_id,
        "machine": "local[*], 2 cores",
        "driver_memory": args.driver_memory,
        "stages": [asdict(f) for f in figures],
        "total_after_generate_s": sum(f.seconds for f in after),
        # the six stages the first end-to-end measurement (main e0c605d) summed
        "total_ingest_to_clv_s": sum(f.seconds for f in after if f.stage in CORE_STAGES),
        "python_peak_gib_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "stitch_quality": stitch_quality(spark, cfg),
    }
    lines = [f"preset {args.preset}, run {run_id}, {summary['machine']}, driver {args.driver_memory}"]
    lines += table(figures)
    lines.append(
        f"total after generate: {summary['total_after_generate_s']:.1f} s "
        f"(ingest to clv: {summary['total_ingest_to_clv_s']:.1f} s)"
    )
    quality = summary["stitch_quality"]
    if quality:
        lines.append(
            f"stitch pairwise F1 {quality['pairwise_f1']:.4f} (P {quality['pairwise_precision']:.4f}, "
            f"R {quality['pairwise_recall']:.4f})"
        )
    print("\n".join(lines), flush=True)  # noqa: T201 - benchmark output
    out = Path(args.json) if args.json else data / "pipeline.json"
    out.write_text(json.dumps(summary, indent=2, default=str))
    log_to_parent(cfg, run_id, summary)
    print(f"figures: {out}", flush=True)  # noqa: T201 - benchmark output
    if args.skip_splink:
        return
    # last, and written again when it ends: at the reference size it is the longest step
    splink = splink_on_spark(spark, cfg)
    summary["splink_alone"] = splink
    ours = next(f.seconds for f in figures if f.stage == "stitch")
    print(  # noqa: T201 - benchmark output
        f"Splink alone on Spark, all records: {splink['seconds']:.1f} s, pairwise F1 "
        f"{splink.get('pairwise_f1', float('nan')):.4f} ({splink['clustering']}); "
        f"time ratio Splink alone / our stitch stage {splink['seconds'] / ours:.2f}x",
        flush=True,
    )
    out.write_text(json.dumps(summary, indent=2, default=str))
    log_to_parent(cfg, run_id, summary)


if __name__ == "__main__":
    main()
