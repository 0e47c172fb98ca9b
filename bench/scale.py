"""How the pipeline's cost grows with size: ``bench/pipeline.py`` at several sizes, side by
side, with a fitted slope per stage.

    .venv/bin/python bench/scale.py --root DIR [--sizes tiny small reference double]
        [--reuse reference=DIR/reference/pipeline.json] [--skip-splink]

Each size runs ``bench/pipeline.py`` in its own process and session (data under
DIR/<size>; ``double`` is the reference preset at 960,000 people). ``--reuse SIZE=JSON``
takes the figures of an earlier ``bench/pipeline.py`` run of the same code instead of
running that size again. Per stage: seconds at each size against the rows it read (the
rows it wrote for ``generate``), and the slope of log(seconds) on log(rows), fitted by
least squares over the sizes: 1 is linear, below 1 means fixed costs still dominate.
Prints the table and the fastest-growing stage, and writes DIR/scale.json. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIZES: dict[str, list[str]] = {
    "tiny": ["--preset", "tiny"],
    "small": ["--preset", "small"],
    "reference": ["--preset", "reference"],
    "double": [
        "--preset",
        "reference",
        "--set",
        "generate.n_people=960000",
        "--set",
        "generate.partitions=64",
    ],
}


def run_size(root: Path, size: str, extra: list[str]) -> dict[str, Any]:
    data = root / size
    command = [sys.executable, str(ROOT / "bench" / "pipeline.py"), *SIZES[size], "--data", str(data), *extra]
    print(f"== {size}: {' '.join(command)}", flush=True)  # noqa: T201 - benchmark output
    subprocess.run(command, cwd=ROOT, check=True)
    return dict(json.loads((data / "pipeline.json").read_text()))


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of log(y) on log(x) over points with x, y > 0."""
    logs = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len(logs) < 2:
        return float("nan")
    mx = sum(x for x, _ in logs) / len(logs)
    my = sum(y for _, y in logs) / len(logs)
    sxx = sum((x - mx) ** 2 for x, _ in logs)
    return sum((x - mx) * (y - my) for x, y in logs) / sxx if sxx else float("nan")


def size_of(fig: dict[str, Any], result: dict[str, Any]) -> int:
    """What a stage's cost is measured against: the rows it read from tables, else the rows
    it wrote (ingest reads files), else the rows ingest wrote (generate writes files)."""
    ingest = next((f for f in result["stages"] if f["stage"] == "ingest"), {"rows_out": 0})
    return int(fig["rows_in"] or fig["rows_out"] or ingest["rows_out"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="one folder per size goes here")
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small", "reference"], choices=list(SIZES))
    parser.add_argument("--reuse", action="append", default=[], metavar="SIZE=JSON")
    parser.add_argument("--skip-splink", action="store_true")
    args = parser.parse_args()
    root = Path(args.root).resolve()
    reused = dict(item.split("=", 1) for item in args.reuse)
    extra = ["--skip-splink"] if args.skip_splink else []
    results: dict[str, dict[str, Any]] = {}
    for size in args.sizes:
        if size in reused:
            results[size] = json.loads(Path(reused[size]).read_text())
        else:
            results[size] = run_size(root, size, extra)
    stages = [f["stage"] for f in results[args.sizes[-1]]["stages"]]
    rows: list[dict[str, Any]] = []
    for stage in stages:
        points = []
        for size in args.sizes:
            fig = next((f for f in results[size]["stages"] if f["stage"] == stage), None)
            if fig is not None:
                points.append((size_of(fig, results[size]), float(fig["seconds"])))
        rows.append({"stage": stage, "points": points, "slope": slope(points)})
    width = 24
    head = (
        f"{'stage':<10}" + "".join(f"{size + ' rows / s':>{width}}" for size in args.sizes) + f"{'slope':>8}"
    )
    lines = [head]
    for row in rows:
        cells = "".join(f"{f'{int(x):,} / {y:.1f}':>{width}}" for x, y in row["points"])
        lines.append(f"{row['stage']:<10}{cells}{row['slope']:>8.2f}")
    totals = [results[s]["total_after_generate_s"] for s in args.sizes]
    lines.append(
        "total after generate: "
        + ", ".join(f"{s} {t:.1f} s" for s, t in zip(args.sizes, totals, strict=True))
    )
    fitted = [r for r in rows if not math.isnan(r["slope"])]
    if fitted:
        fastest = max(fitted, key=lambda r: r["slope"])
        lines.append(f"fastest-growing stage: {fastest['stage']} (slope {fastest['slope']:.2f})")
    print("\n".join(lines), flush=True)  # noqa: T201 - benchmark output
    (root / "scale.json").write_text(
        json.dumps({"sizes": args.sizes, "stages": rows, "totals": totals}, indent=2)
    )


if __name__ == "__main__":
    main()
