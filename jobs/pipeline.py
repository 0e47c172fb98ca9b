"""Run the custseg stages in order under one run id (spark-submit entry point)."""

from __future__ import annotations

from collections.abc import Sequence

from custseg.cli import base_parser, config_from_args, setup_logging
from custseg.pipeline import run_pipeline, select_stages, stage_names


def main(argv: Sequence[str] | None = None) -> str:
    parser = base_parser("Run the custseg pipeline.")
    parser.add_argument("--stages", nargs="+", default=None, help=f"subset of {stage_names()}")
    parser.add_argument("--from-stage", default=None, help="start at this stage")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    cfg = config_from_args(args)
    stages = select_stages(args.stages, args.from_stage)
    return run_pipeline(cfg, stages, run_id=args.run_id, force=args.force)


if __name__ == "__main__":
    main()
