"""Read the generator's files with pandas, json and csv: independent of the Spark writer."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from custseg.reference import CALL_CENTRE_COLUMNS

from .conftest import Tiny


def raw(tiny: Tiny, *parts: str) -> Path:
    return tiny.root.joinpath("raw", *parts)


def parquet(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def json_lines(folder: Path, pattern: str = "part-0*.json") -> pd.DataFrame:
    rows = [json.loads(line) for f in sorted(folder.glob(pattern)) for line in f.read_text().splitlines()]
    return pd.DataFrame(rows)


def csv_files(folder: Path, pattern: str = "part-0*.csv") -> pd.DataFrame:
    frames = [
        pd.read_csv(f, dtype=str, keep_default_na=False, na_values=[""]) for f in sorted(folder.glob(pattern))
    ]
    return pd.concat(frames, ignore_index=True)


def manifest(tiny: Tiny, table: str | None = None) -> pd.DataFrame:
    m = parquet(tiny.root / "truth" / "bad_input_manifest")
    return m if table is None else m[m["table"] == table]


def identity_records(tiny: Tiny) -> pd.DataFrame:
    """All clean-file identity records in contract columns."""
    web = parquet(raw(tiny, "identity_records", "web"))
    app = json_lines(raw(tiny, "identity_records", "app"))
    cc = csv_files(raw(tiny, "identity_records", "call_centre")).rename(columns=CALL_CENTRE_COLUMNS)
    cc["source_system"] = "call_centre"
    cols = ["source_system", "source_id", "first_name", "last_name", "email", "phone"]
    return pd.concat([web[cols], app[cols], cc[cols]], ignore_index=True)
