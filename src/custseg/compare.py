"""Two runs side by side: config differences, metric differences and the agreement of
their segment assignments (adjusted Rand index and a crosstab of segment names).

Each run's ``gold.segment_assignments`` is read at the Delta version that run wrote (time
travel), so comparing an old run with a new one works after the new one overwrote the
table. The agreement is computed from the contingency table of the two labellings, which
Spark aggregates (segments x segments rows); no customer row reaches the driver.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark.sql import functions as F

from custseg import catalog
from custseg.config import Config
from custseg.runs import RunNotFoundError, redact, table_versions
from custseg.segment.validate import adjusted_rand_index
from custseg.tables import TableStore
from custseg.tracking import RunRecord, run_record

ASSIGNMENTS = catalog.SEGMENT_ASSIGNMENTS
# The metrics a data scientist looks at first (stage, metric); every other metric follows.
HIGHLIGHTS = (
    ("stitch", "truth.pairwise_f1"),
    ("stitch", "truth.bcubed_f1"),
    ("segment", "chosen_k"),
    ("segment", "silhouette"),
    ("segment", "ari_mean"),
    ("segment", "outlier_customers"),
    ("clv", "holdout.mae"),
    ("clv", "holdout.corr"),
    ("clv", "segments.spearman"),
    ("insights", "profit_gini"),
    ("insights", "revenue_gini"),
    ("insights", "profit_top_8_share"),
    ("insights", "cohort_share_of_customers"),
)


@dataclass
class Comparison:
    run_a: str
    run_b: str
    config: pd.DataFrame  # key, a, b
    metrics: pd.DataFrame  # stage, metric, a, b, difference
    crosstab: pd.DataFrame | None  # segment names of a (rows) x of b (columns)
    agreement: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "config_differences": self.config.to_dict(orient="records"),
            "metric_differences": _records(self.metrics),
            "agreement": self.agreement,
            "crosstab": None
            if self.crosstab is None
            else {
                "rows": list(map(str, self.crosstab.index)),
                "columns": list(map(str, self.crosstab.columns)),
                "counts": self.crosstab.astype(int).values.tolist(),
            },
        }

    def to_html(self) -> str:
        """An HTML fragment (no page, no script) for a report to include."""
        parts = [f"<h3>Run {html.escape(self.run_b)} against run {html.escape(self.run_a)}</h3>"]
        a = self.agreement
        if a.get("ari") is not None:
            parts.append(
                f"<p>Segment agreement: adjusted Rand index {a['ari']:.3f} over "
                f"{a['customers_both']:,} customers "
                f"in both runs ({a['only_a']:,} only in {html.escape(self.run_a)}, {a['only_b']:,} only in "
                f"{html.escape(self.run_b)}).</p>"
            )
        else:
            parts.append(f"<p>{html.escape(a.get('note', 'no segment agreement'))}</p>")
        if self.crosstab is not None:
            parts.append(self.crosstab.to_html(border=0, classes="grid"))
        parts.append(
            "<p>Settings that differ</p>" + self.config.to_html(index=False, border=0, classes="grid")
        )
        changed = self.metrics[self.metrics["difference"].fillna(1) != 0]
        parts.append(
            "<p>Metrics that differ</p>" + changed.to_html(index=False, border=0, classes="grid", na_rep="")
        )
        return "\n".join(parts)

    def to_text(self) -> str:
        lines = [f"custseg runs compared: A = {self.run_a}, B = {self.run_b}", ""]
        lines.append(f"Settings that differ ({len(self.config)}):")
        lines += [f"  {r.key}: A {r.a}  B {r.b}" for r in self.config.itertuples()] or ["  none"]
        highlighted = [
            (st, m) in HIGHLIGHTS for st, m in zip(self.metrics["stage"], self.metrics["metric"], strict=True)
        ]
        lines += ["", "Key metrics:"]
        lines += [
            f"  {r.stage}.{r.metric}: A {_fmt(r.a)}  B {_fmt(r.b)}"
            for r in self.metrics[highlighted].itertuples()
        ]
        changed = self.metrics[self.metrics["difference"].fillna(1) != 0]
        lines.append(
            f"  ({len(changed)} of {len(self.metrics)} metrics differ; every one is in comparison.json)"
        )
        lines += [""]
        a = self.agreement
        if a.get("ari") is not None:
            lines.append(
                f"Segment agreement: ARI {a['ari']:.4f} on {a['customers_both']:,} customers in both runs "
                f"({a['only_a']:,} only in A, {a['only_b']:,} only in B)"
            )
            assert self.crosstab is not None
            lines.append(self.crosstab.to_string())
        else:
            lines.append(a.get("note", "no segment agreement"))
        return "\n".join(lines) + "\n"


def _fmt(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.6g}"


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
    return records


def config_differences(a: RunRecord, b: RunRecord) -> pd.DataFrame:
    pa, pb = a.logged("config"), b.logged("config")
    rows = [
        {"key": k, "a": redact(k, pa.get(k, "(unset)")), "b": redact(k, pb.get(k, "(unset)"))}
        for k in sorted(set(pa) | set(pb))
        if pa.get(k) != pb.get(k)
    ]
    return pd.DataFrame(rows, columns=["key", "a", "b"])


def metric_differences(a: RunRecord, b: RunRecord) -> pd.DataFrame:
    rows = []
    for stage in sorted(set(a.stages) | set(b.stages)):
        ma, mb = a.metrics(stage), b.metrics(stage)
        for metric in sorted(set(ma) | set(mb)):
            va, vb = ma.get(metric), mb.get(metric)
            diff = vb - va if va is not None and vb is not None else None
            rows.append({"stage": stage, "metric": metric, "a": va, "b": vb, "difference": diff})
    frame = pd.DataFrame(rows, columns=["stage", "metric", "a", "b", "difference"])
    first = {key: i for i, key in enumerate(HIGHLIGHTS)}
    frame["_order"] = [
        first.get((s, m), len(first)) for s, m in zip(frame["stage"], frame["metric"], strict=True)
    ]
    return frame.sort_values(["_order", "stage", "metric"]).drop(columns="_order").reset_index(drop=True)


def segment_agreement(
    tables: TableStore, run_a: str, run_b: str
) -> tuple[dict[str, Any], pd.DataFrame | None]:
    va = table_versions(tables, run_a, [ASSIGNMENTS]).get(ASSIGNMENTS)
    vb = table_versions(tables, run_b, [ASSIGNMENTS]).get(ASSIGNMENTS)
    missing = [r for r, v in ((run_a, va), (run_b, vb)) if v is None or v.written is None]
    if missing:
        return {"ari": None, "note": f"run(s) {missing} wrote no {ASSIGNMENTS}: no segment agreement"}, None
    assert va is not None and vb is not None and va.written is not None and vb.written is not None

    def labels(version: int, col: str) -> Any:
        frame = tables.read(ASSIGNMENTS, version=version)
        if "snapshot_date" in frame.columns:
            latest = frame.agg(F.max("snapshot_date")).first()[0]  # type: ignore[index]
            frame = frame.where(F.col("snapshot_date") == latest)
        return frame.select("customer_id", F.col("segment_name").alias(col))

    joined = labels(va.written, "a").join(labels(vb.written, "b"), "customer_id", "full_outer")
    counts = pd.DataFrame(joined.groupBy("a", "b").count().toPandas())
    both = counts[counts["a"].notna() & counts["b"].notna()]
    crosstab = both.pivot_table(index="a", columns="b", values="count", aggfunc="sum", fill_value=0)
    crosstab.index.name, crosstab.columns.name = f"segment in {run_a}", f"segment in {run_b}"
    agreement: dict[str, Any] = {
        "ari": adjusted_rand_index(crosstab.to_numpy(dtype=float)) if len(both) else None,
        "customers_both": int(both["count"].sum()),
        "only_a": int(counts.loc[counts["b"].isna(), "count"].sum()),
        "only_b": int(counts.loc[counts["a"].isna(), "count"].sum()),
        "version_a": va.written,
        "version_b": vb.written,
        "segments_a": int(crosstab.shape[0]),
        "segments_b": int(crosstab.shape[1]),
    }
    if not len(both):
        agreement["note"] = "the two runs share no customer"
    return agreement, crosstab


def compare_runs(tables: TableStore, cfg: Config, run_a: str, run_b: str) -> Comparison:
    """Compare two runs; RunNotFoundError naming a run id with no trace at all."""
    records = {}
    for run in (run_a, run_b):
        record = run_record(cfg, run)
        if record.parent is None and not any(
            v.written is not None for v in table_versions(tables, run).values()
        ):
            raise RunNotFoundError(
                f"run {run!r} not found: no MLflow run tagged with it in experiment "
                f"{cfg.tracking.experiment!r} and no Delta commit by it under {tables.warehouse}"
            )
        records[run] = record
    agreement, crosstab = segment_agreement(tables, run_a, run_b)
    return Comparison(
        run_a=run_a,
        run_b=run_b,
        config=config_differences(records[run_a], records[run_b]),
        metrics=metric_differences(records[run_a], records[run_b]),
        crosstab=crosstab,
        agreement=agreement,
    )
