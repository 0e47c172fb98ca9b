"""The run report: one self-contained HTML page and a plain-text summary of the answers
(spark-submit entry point)."""

from __future__ import annotations

from collections.abc import Sequence

from custseg.cli import run_stage_main


def main(argv: Sequence[str] | None = None) -> str:
    return run_stage_main("report", argv)


if __name__ == "__main__":
    main()
