"""Erase people: remove their rows from every table, keep them out of later ingests, VACUUM.

    spark-submit jobs/forget.py --customer-id C0123... [--customer-id ...] [--from-file ids.txt]
        [--conf conf/local.yaml] [--set privacy.vacuum_retention_hours=0]
    spark-submit jobs/forget.py --vacuum-only        # schedule it, e.g. daily

``--from-file`` holds one customer id per line (blank lines and ``#`` comments skipped).
Prints what was deleted per table; exit status 2, with nothing deleted, when an id is
neither a customer nor erased before. See docs/security.md.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from custseg.cli import base_parser, config_from_args, setup_logging

log = logging.getLogger("custseg.forget")


def _ids(args_ids: list[str], files: list[str]) -> list[str]:
    ids = list(args_ids)
    for name in files:
        for line in Path(name).read_text().splitlines():
            text = line.split("#", 1)[0].strip()
            if text:
                ids.append(text)
    return ids


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser("erase customers (right to erasure)")
    parser.add_argument("--customer-id", action="append", default=[], help="a customer id (repeatable)")
    parser.add_argument("--from-file", action="append", default=[], help="a file of customer ids, one a line")
    parser.add_argument(
        "--vacuum-only",
        action="store_true",
        help="erase nobody: set the retention properties and VACUUM (schedule it: files an erasure "
        "replaced go at the first VACUUM after privacy.vacuum_retention_hours)",
    )
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    if args.vacuum_only:
        from custseg.forget import vacuum
        from custseg.session import build_session
        from custseg.tracking import new_run_id

        cfg = config_from_args(args)
        vacuum(cfg, build_session(cfg.spark), args.run_id or f"vacuum-{new_run_id()}")
        print("retention set and VACUUM done")
        return 0
    try:
        ids = _ids(args.customer_id, args.from_file)
    except OSError as err:
        print(f"forget: {err}", file=sys.stderr)
        return 2
    if not ids:
        parser.error("give --customer-id or --from-file")
    cfg = config_from_args(args)
    from custseg.forget import ForgetError, forget
    from custseg.session import build_session
    from custseg.tracking import new_run_id

    run_id = args.run_id or f"forget-{new_run_id()}"
    try:
        result = forget(cfg, build_session(cfg.spark), ids, run_id)
    except ForgetError as err:
        print(str(err), file=sys.stderr)
        return 2
    print(f"forget run {run_id}: erased {len(result.erased)} customer(s), {result.records} source records")
    if result.already:
        print(f"already erased before: {len(result.already)}")
    for table, n in sorted(result.rows.items()):
        if n:
            print(f"  {table}: {n} rows deleted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
