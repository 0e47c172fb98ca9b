"""Compare two runs: config and metric differences, and the agreement of their segment
assignments (ARI and a crosstab), each run's tables read at the versions it wrote.

    spark-submit jobs/compare.py RUN_A RUN_B [--conf conf/local.yaml] [--out DIR]

Prints the comparison and writes ``comparison.json`` and ``comparison.html`` (a fragment
a report can include) to ``DIR`` (default ``<report.dir>/compare/<RUN_A>_vs_<RUN_B>``).
A run id with no trace gives a one-line error naming it and exit status 2.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence

from custseg.cli import base_parser, config_from_args, setup_logging
from custseg.compare import compare_runs
from custseg.runs import RunNotFoundError
from custseg.tables import check_run_id

log = logging.getLogger("custseg.compare")


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser("compare two custseg runs")
    parser.add_argument("run_a", help="the run id to compare from")
    parser.add_argument("run_b", help="the run id to compare with")
    parser.add_argument("--out", default=None, help="output folder (default: <report.dir>/compare/A_vs_B)")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        for run in (args.run_a, args.run_b):
            check_run_id(run)
    except ValueError as err:
        print(f"compare: {err}", file=sys.stderr)
        return 2
    cfg = config_from_args(args)
    from custseg import hadoopfs
    from custseg.session import build_session
    from custseg.tables import TableStore

    spark = build_session(cfg.spark)
    tables = TableStore(spark, cfg.storage.warehouse, run_id=args.run_b)
    try:
        comparison = compare_runs(tables, cfg, args.run_a, args.run_b)
    except RunNotFoundError as err:
        print(f"compare: {err}", file=sys.stderr)
        return 2
    out = args.out or os.path.join(cfg.report.dir, "compare", f"{args.run_a}_vs_{args.run_b}")
    hadoopfs.write_bytes(
        spark, os.path.join(out, "comparison.json"), json.dumps(comparison.to_dict(), indent=2).encode()
    )
    hadoopfs.write_bytes(spark, os.path.join(out, "comparison.html"), comparison.to_html().encode())
    print(comparison.to_text())
    print(f"Written: {out}/comparison.json and comparison.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
