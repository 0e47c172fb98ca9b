"""Helpers shared by the benchmarks (run as scripts: ``bench/`` is on sys.path)."""

from __future__ import annotations

import argparse
import tempfile
import threading
from pathlib import Path

from pyspark.sql import SparkSession

from custseg.cli import setup_logging
from custseg.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]


class RssSampler:
    """Peak resident memory of a process, sampled from /proc."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval, self.peak_kb = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except FileNotFoundError:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def bench_parser(doc: str, data_help: str) -> argparse.ArgumentParser:
    """The options every draw-once benchmark has: --preset, --data, --driver-memory, --seed, --set."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--preset", default="reference", choices=["tiny", "small", "reference"])
    parser.add_argument("--data", default=None, help=data_help)
    parser.add_argument("--driver-memory", default="12g")
    parser.add_argument(
        "--seed", type=int, default=42, help="run.seed: the world drawn and every random step"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)"
    )
    return parser


def bench_session(args: argparse.Namespace, name: str) -> tuple[Config, SparkSession, Path, int]:
    """Config, session, data folder (``--data`` or a temp one) and the driver JVM's pid."""
    setup_logging("INFO")
    out = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix=f"custseg-bench-{name}-"))
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(
        ROOT / "conf" / "local.yaml",
        overrides=[
            f"generate.preset={args.preset}",
            "spark.ui_enabled=false",
            f"spark.driver_memory={args.driver_memory}",
            f"spark.checkpoint_dir={out / '_checkpoints'}",
            f"run.seed={args.seed}",
            *args.set,
        ],
    )
    from custseg.session import build_session

    spark = build_session(cfg.spark)
    spark.sparkContext.setLogLevel("ERROR")
    jvm_pid = int(spark.sparkContext._jvm.ProcessHandle.current().pid())  # type: ignore[union-attr]
    return cfg, spark, out, jvm_pid
