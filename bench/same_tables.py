"""Same tables before and after a change: run the whole pipeline on a preset under a fixed
run id and seed, then write one digest per table (its rows as a sorted multiset of SHA-256
digests of their JSON, hashed again) and compare two such files.

    python bench/same_tables.py run  --out /tmp/before.json [--preset tiny]
    python bench/same_tables.py diff /tmp/before.json /tmp/after.json

A refactor that keeps behaviour gives the same digest for every bronze, silver and gold
table, every column included (no data table holds the wall clock; ``ingest.as_of`` is
fixed, and the files are read from one folder, ``--workdir``). Two known differences
between runs of the same code (docs/architecture.md): bronze's ``_ingest_file`` (a hash of
the file's path; Spark names files with a random id) and the last bits of sums of doubles
read in another file order. ``meta`` tables (run bookkeeping: when each stage ran) are not compared.

    python bench/same_tables.py digest --warehouse DIR --out F   (an existing warehouse)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pyspark.sql import functions as F  # noqa: E402

from custseg.config import load_config, paths_under  # noqa: E402
from custseg.pipeline import run_pipeline  # noqa: E402
from custseg.runs import table_names  # noqa: E402
from custseg.session import build_session  # noqa: E402
from custseg.tables import TableStore  # noqa: E402

RUN_ID = "same-tables"


def digest_tables(warehouse: str, conf: Path) -> dict[str, dict]:
    cfg = load_config(conf, overrides=[f"storage.warehouse={warehouse}"])
    spark = build_session(cfg.spark)
    tables = TableStore(spark, warehouse, run_id="digest")
    out: dict[str, dict] = {}
    for name in sorted(table_names(tables)):
        df = tables.read(name)
        cols = [F.col(f"`{c}`") for c in sorted(df.columns)]
        rows = sorted(r[0] for r in df.select(F.sha2(F.to_json(F.struct(*cols)), 256)).collect())
        out[name] = {
            "rows": len(rows),
            "digest": hashlib.sha256("\n".join(rows).encode()).hexdigest(),
            "columns": len(cols),
        }
    return out


def run(args: argparse.Namespace) -> None:
    # One folder for every run: the raw files' paths enter bronze's ``_ingest_file`` ids,
    # so two runs compare byte for byte only when they read their files from one path.
    tmp = Path(args.workdir)
    if tmp.exists():
        shutil.rmtree(tmp)
    conf = ROOT / "conf" / "test.yaml"
    overrides = [
        *paths_under(tmp),
        f"generate.preset={args.preset}",
        "ingest.as_of=2026-11-01",  # the default is today
    ]
    cfg = load_config(conf, overrides=overrides)
    start = time.perf_counter()
    run_pipeline(cfg, run_id=RUN_ID)
    print(f"pipeline on {args.preset}: {time.perf_counter() - start:.1f} s", flush=True)
    digests = digest_tables(str(tmp / "warehouse"), conf)
    Path(args.out).write_text(json.dumps(digests, indent=1, sort_keys=True))
    print(f"{len(digests)} tables -> {args.out}")


def diff(args: argparse.Namespace) -> int:
    before, after = (json.loads(Path(p).read_text()) for p in (args.before, args.after))
    differing = 0
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        same = a is not None and b is not None and a["digest"] == b["digest"]
        differing += not same
        rows = f"{a['rows'] if a else '-':>8} {b['rows'] if b else '-':>8}"
        print(f"{'same' if same else 'DIFFERENT':<9} {name:<40} {rows}")
    print(f"{len(set(before) | set(after))} tables, {differing} differing")
    return 1 if differing else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--preset", default="tiny")
    r.add_argument("--workdir", default="/tmp/custseg-same-tables", help="emptied first")
    g = sub.add_parser("digest")
    g.add_argument("--warehouse", required=True)
    g.add_argument("--out", required=True)
    d = sub.add_parser("diff")
    d.add_argument("before")
    d.add_argument("after")
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    elif args.command == "digest":
        digests = digest_tables(args.warehouse, ROOT / "conf" / "test.yaml")
        Path(args.out).write_text(json.dumps(digests, indent=1, sort_keys=True))
    else:
        sys.exit(diff(args))


if __name__ == "__main__":
    main()
