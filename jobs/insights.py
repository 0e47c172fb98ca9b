"""The business answers from the gold tables: profiles, concentration, cost to serve,
misallocation, migration, channels, KPIs, recommendations (spark-submit entry point)."""

from __future__ import annotations

from collections.abc import Sequence

from custseg.cli import run_stage_main


def main(argv: Sequence[str] | None = None) -> str:
    return run_stage_main("insights", argv)


if __name__ == "__main__":
    main()
