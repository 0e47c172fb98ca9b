"""The conflict test of stitching, written again in plain Python over standardised records
(dicts), to check the Spark version (``custseg.stitch.deterministic.disagree``) against."""

from __future__ import annotations

from datetime import date
from typing import Any

from custseg.config import StitchConfig


def levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def near(a: str, b: str, k: int) -> bool:
    if k <= 0:
        return a == b
    d = levenshtein(a, b)
    return d <= k or (d == 2 and len(a) == len(b) and sorted(a) == sorted(b))


def dates_agree(a: date, b: date, k: int) -> bool:
    def swap(d: date) -> tuple[int, int, int]:
        return d.year, min(d.month, d.day), max(d.month, d.day)

    return swap(a) == swap(b) or (k > 0 and near(a.strftime("%Y%m%d"), b.strftime("%Y%m%d"), k))


def field_agrees(cfg: StitchConfig, f: str, a: dict[str, Any], b: dict[str, Any]) -> bool:
    x, y = a[f], b[f]
    if f == "first_name":
        shorter = min(len(x), len(y))
        return (
            levenshtein(a["first_name_canon"], b["first_name_canon"]) <= cfg.name_max_edits
            or levenshtein(x, y) <= cfg.name_max_edits
            or (shorter >= 3 and (x.startswith(y) or y.startswith(x)))
            or x == b["last_name"]
            or y == a["last_name"]
        )
    if f == "last_name":
        return levenshtein(x, y) <= cfg.name_max_edits
    if f == "date_of_birth":
        return dates_agree(x, y, cfg.value_max_edits)
    return near(x, y, cfg.value_max_edits)


def disagree(
    cfg: StitchConfig, a: dict[str, Any], b: dict[str, Any], fields: list[str] | None = None
) -> bool:
    fields = cfg.conflict_fields if fields is None else fields

    def held(f: str) -> bool:
        return a.get(f) is not None and b.get(f) is not None

    clashes = [f for f in fields if held(f) and not field_agrees(cfg, f, a, b)]
    if not clashes or not cfg.forgive_single_conflict:
        return bool(clashes)
    if len(clashes) > 1:
        return True
    location = (held("postcode") and a["postcode"] == b["postcode"]) or (
        held("address") and levenshtein(a["address"], b["address"]) <= cfg.name_max_edits
    )
    personal = all(
        f in clashes or (held(f) and field_agrees(cfg, f, a, b)) for f in ("first_name", "date_of_birth")
    )
    return not (location and personal)
