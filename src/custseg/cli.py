"""Argument parsing and logging set-up shared by the thin entry points in ``jobs/``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from custseg.config import Config, load_config


def run_id_arg(text: str) -> str:
    """argparse type of a run id: checked here, before it reaches MLflow or a path."""
    from custseg.tables import check_run_id

    try:
        return check_run_id(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def base_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the options every job takes: --conf, --set, --run-id."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--conf", default=None, help="YAML config (default: built-in = conf/local.yaml)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set spark.master=local[2] (repeatable)",
    )
    parser.add_argument(
        "--run-id",
        default=None,
        type=run_id_arg,
        help="reuse a run id (a rerun replaces its output); letters, digits and _.:- only",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="run stages this run id already finished again (default: a rerun skips them)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr; called only by jobs, never by the library."""
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    for noisy in ("py4j", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def config_from_args(args: argparse.Namespace) -> Config:
    """Load the config named by --conf with the --set overrides."""
    return load_config(args.conf, overrides=args.set)


def run_stage_main(stage: str, argv: Sequence[str] | None = None) -> str:
    """Entry point of a single-stage job; returns the run id."""
    from custseg.pipeline import run_stage
    from custseg.tracking import new_run_id

    args = base_parser(f"custseg {stage} stage").parse_args(argv)
    setup_logging(args.log_level)
    cfg = config_from_args(args)
    run_id = args.run_id or new_run_id()
    run_stage(cfg, stage, run_id, force=args.force)
    return run_id
