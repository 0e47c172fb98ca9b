"""Segment gold.customer_features and register the model (spark-submit entry point)."""

from __future__ import annotations

from collections.abc import Sequence

from custseg.cli import run_stage_main


def main(argv: Sequence[str] | None = None) -> str:
    return run_stage_main("segment", argv)


if __name__ == "__main__":
    main()
