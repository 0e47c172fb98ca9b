"""Fit BG/NBD + Gamma-Gamma and write gold.customer_clv (spark-submit entry point)."""

from __future__ import annotations

from collections.abc import Sequence

from custseg.cli import run_stage_main


def main(argv: Sequence[str] | None = None) -> str:
    return run_stage_main("clv", argv)


if __name__ == "__main__":
    main()
