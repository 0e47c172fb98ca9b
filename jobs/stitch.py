"""Stitch bronze identity records into silver customers (spark-submit entry point)."""

from __future__ import annotations

from collections.abc import Sequence

from custseg.cli import run_stage_main


def main(argv: Sequence[str] | None = None) -> str:
    return run_stage_main("stitch", argv)


if __name__ == "__main__":
    main()
