"""Benchmark the report stage at a preset: the time to build the report after insights.

    .venv/bin/python bench/report.py --preset reference --data DIR [--run-id bench-b200]

Reuses the warehouse bench/insights.py prepared in DIR/insights_warehouse and the run
that bench wrote there (default ``bench-b200``, the insights run with B = 200; a later
run, B = 0, overwrote the gold tables since, so the report reads the run's own versions
by Delta time travel, as it would for any older run). Runs the ``report`` stage twice in
one session (the first pays the session's warm-up on these tables, the second is what a
pipeline that just ran insights pays) and prints the wall time, the gather and render
split, the page's size and the peak JVM and Python RSS. The report lands in
DIR/reports/<run id>/report.html. Asserts nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from _common import RssSampler, bench_parser, bench_session

from custseg.pipeline import run_stage


def say(text: object) -> None:
    """Benchmark output."""
    print(text, flush=True)  # noqa: T201


def main() -> None:
    parser = bench_parser(__doc__, "draw folder holding insights_warehouse and mlflow.db (bench/insights.py)")
    parser.add_argument("--run-id", default="bench-b200", help="the insights run whose report is built")
    args = parser.parse_args()
    assert args.data, "--data: the folder bench/insights.py prepared"
    out = Path(args.data)
    assert (out / "_SUCCESS_INSIGHTS_WAREHOUSE").exists(), f"{out}: run bench/insights.py --data {out} first"
    args.set = [
        f"storage.warehouse={out / 'insights_warehouse'}",
        f"tracking.uri=sqlite:///{out / 'mlflow.db'}",
        f"tracking.artifact_location={out / 'mlartifacts'}",
        f"report.dir={out / 'reports'}",
        *args.set,
    ]
    cfg, _spark, out, jvm_pid = bench_session(args, "report")
    for attempt in ("first (cold session)", "second (warm)"):
        with RssSampler(jvm_pid) as jvm, RssSampler(os.getpid()) as py:
            t0 = time.perf_counter()
            run = run_stage(cfg, "report", run_id=args.run_id, force=True)
            wall = time.perf_counter() - t0
        m = run.metrics
        say(
            f"report of {args.run_id}, {attempt}: {wall:.1f} s (gather {m['seconds.gather']:.1f} s, "
            f"render {m['seconds.render']:.1f} s), {m['report.bytes'] / 1024:.0f} KB, "
            f"{m['report.sections']:.0f} sections; peak JVM RSS {jvm.peak_kb / 2**20:.2f} GiB, "
            f"peak Python RSS {py.peak_kb / 2**20:.2f} GiB"
        )
    say(f"report: {Path(cfg.report.dir) / args.run_id / 'report.html'}")


if __name__ == "__main__":
    main()
