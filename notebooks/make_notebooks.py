"""Writes the three notebooks from the cells below, without outputs (run it after editing
a cell: ``.venv/bin/python notebooks/make_notebooks.py``). The notebooks are committed;
this script keeps their source reviewable as Python."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SESSION = """\
import logging
import pandas as pd
from custseg.config import load_config
from custseg.session import build_session
from custseg.tables import TableStore
from custseg import runs

overrides = [f"storage.warehouse={warehouse}", f"tracking.uri={tracking_uri}"] + list(overrides)
cfg = load_config(conf, overrides=overrides)
spark = build_session(cfg.spark)
spark.sparkContext.setLogLevel("ERROR")
pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 20)"""


def explore() -> list:
    return [
        new_markdown_cell(
            "# Explore a run's segments\n\n"
            "The gold tables of one run, read at the Delta versions that run wrote: who the segments are, "
            "what sets them apart, how concentrated value is, and a few customers' feature histories "
            "(by `customer_id`, which reveals nothing about the person)."
        ),
        new_code_cell(
            '# parameters\nconf = "conf/local.yaml"\nwarehouse = "./data/warehouse"\n'
            'tracking_uri = "sqlite:///data/mlflow.db"\nrun_id = ""\noverrides = []\ncustomers_shown = 3',
            metadata={"tags": ["parameters"]},
        ),
        new_code_cell(SESSION),
        new_code_cell(
            "tables = TableStore(spark, cfg.storage.warehouse, run_id=run_id)\n"
            "versions = runs.table_versions(tables, run_id)\n"
            "def gold(name):\n"
            '    return runs.read_as_written(tables, f"gold.{name}", versions)\n'
            "written = sorted(n for n, v in versions.items() if v.written is not None)\n"
            'print(f"run {run_id} wrote {len(written)} tables")'
        ),
        new_markdown_cell(
            "## Segment profiles\nShares of customers, revenue and profit, with 95 % bootstrap intervals."
        ),
        new_code_cell(
            'profiles = gold("segment_profiles").toPandas()\n'
            'business = profiles[~profiles["is_outlier"] & (profiles["segment_name"] != "(all customers)")]\n'
            'cols = ["segment_name", "customers", "customer_share", "revenue_share", "profit_share",\n'
            '        "profit_mean", "profit_mean_lo", "profit_mean_hi", "clv_mean"]\n'
            'shown = business[cols].sort_values("profit_mean", ascending=False).reset_index(drop=True)\n'
            'assert abs(shown["customer_share"].sum() - 1) < 1e-9, "segment shares must add up to 1"\n'
            'print("PROFILES")\n'
            "print(shown.round(3).to_string())"
        ),
        new_markdown_cell(
            "## Traits\nThe attribute values that set each segment apart (lift = share in segment / share overall)."
        ),
        new_code_cell(
            'traits = gold("segment_traits").where("is_trait").toPandas()\n'
            'print("TRAITS")\n'
            'print(traits[["segment_name", "attribute", "value", "share", "share_all", "lift"]].round(3).to_string())'
        ),
        new_markdown_cell("## Concentration\nGini and top shares, and the Lorenz curve of profit."),
        new_code_cell(
            'conc = gold("value_concentration").toPandas()\n'
            'gini = conc[conc["metric"] == "gini"].set_index("measure")["value"]\n'
            'print("GINI", gini.round(4).to_dict())\n'
            'curves = gold("value_curves").toPandas()\n'
            'lorenz = curves[(curves["measure"] == "revenue") & (curves["curve"] == "lorenz")]\n'
            'ax = lorenz.plot(x="customer_share", y="cumulative_share", title="Lorenz curve of revenue", legend=False)\n'
            'ax.plot([0, 1], [0, 1], linestyle=":")'
        ),
        new_markdown_cell(
            "## A few customers' feature histories\nMonthly snapshots of RFM and cost to serve, by `customer_id`."
        ),
        new_code_cell(
            "from pyspark.sql import functions as F\n"
            'assignments = gold("segment_assignments")\n'
            'picked = [r["customer_id"] for r in assignments.where(~F.col("is_outlier")).orderBy("customer_id").limit(customers_shown).collect()]\n'
            "features = runs.read_as_written(tables, cfg.segment.features_table, versions)\n"
            'history = (features.where(F.col("customer_id").isin(picked))\n'
            '           .select("customer_id", "snapshot_date", "recency_days", "orders_365d", "monetary_365d",\n'
            '                   "cost_to_serve_365d", "profit_365d")\n'
            '           .orderBy("customer_id", "snapshot_date").toPandas())\n'
            'assert set(history["customer_id"]) == set(picked)\n'
            'print("HISTORY", len(picked), "customers")\n'
            "print(history.round(2).to_string())"
        ),
    ]


def compare() -> list:
    return [
        new_markdown_cell(
            "# Compare runs\n\n"
            "Every run of the experiment in MLflow, then two runs side by side: the settings that differ, "
            "their metrics, and how far their segment assignments agree (adjusted Rand index and a crosstab), "
            "each read at the Delta version its run wrote."
        ),
        new_code_cell(
            '# parameters\nconf = "conf/local.yaml"\nwarehouse = "./data/warehouse"\n'
            'tracking_uri = "sqlite:///data/mlflow.db"\nrun_a = ""\nrun_b = ""\noverrides = []',
            metadata={"tags": ["parameters"]},
        ),
        new_code_cell(SESSION),
        new_markdown_cell("## The runs of the experiment"),
        new_code_cell(
            "import mlflow\n"
            "from custseg.tracking import RUN_TAG, STAGE_TAG\n"
            "mlflow.set_tracking_uri(cfg.tracking.uri)\n"
            "found = mlflow.search_runs(experiment_names=[cfg.tracking.experiment],\n"
            "                           filter_string=f\"tags.`{STAGE_TAG}` = 'pipeline'\")\n"
            'pipeline_runs = found[[f"tags.{RUN_TAG}", "status", "start_time"]].rename(columns={f"tags.{RUN_TAG}": "run_id"})\n'
            'assert {run_a, run_b} <= set(pipeline_runs["run_id"])\n'
            'print("RUNS", sorted(pipeline_runs["run_id"]))\n'
            "pipeline_runs"
        ),
        new_markdown_cell("## Settings, metrics and segment agreement"),
        new_code_cell(
            "from custseg.compare import compare_runs\n"
            "tables = TableStore(spark, cfg.storage.warehouse, run_id=run_b)\n"
            "comparison = compare_runs(tables, cfg, run_a, run_b)\n"
            'print("SETTINGS")\n'
            "print(comparison.config.to_string(index=False))"
        ),
        new_code_cell(
            "from custseg.compare import HIGHLIGHTS\n"
            "m = comparison.metrics\n"
            'key = m[[(s, k) in HIGHLIGHTS for s, k in zip(m["stage"], m["metric"])]]\n'
            'print("METRICS")\n'
            "print(key.to_string(index=False))"
        ),
        new_code_cell(
            "agreement = comparison.agreement\n"
            'assert -1 <= agreement["ari"] <= 1\n'
            "print(f\"ARI {agreement['ari']:.6f} on {agreement['customers_both']} customers\")\n"
            'print("CROSSTAB")\n'
            "print(comparison.crosstab.to_string())"
        ),
    ]


def review() -> list:
    return [
        new_markdown_cell(
            "# Review identity matches\n\n"
            "The records stitching sent to review and the merges that rest on a weak probabilistic link, with "
            "their match weights. No identity value (name, email, phone, address, birth date) is shown: records "
            "appear by a pseudonymous record key (the HMAC of source system and id under the deployment's key, as "
            "custseg's other pseudonyms), customers by `customer_id`."
        ),
        new_code_cell(
            '# parameters\nconf = "conf/local.yaml"\nwarehouse = "./data/warehouse"\n'
            'tracking_uri = "sqlite:///data/mlflow.db"\nrun_id = ""\noverrides = []\nshown = 20\n'
            "low_confidence = 0.95",
            metadata={"tags": ["parameters"]},
        ),
        new_code_cell(SESSION),
        new_code_cell(
            "from pyspark.sql import functions as F\n"
            "tables = TableStore(spark, cfg.storage.warehouse, run_id=run_id)\n"
            'versions = runs.table_versions(tables, run_id, ["silver.identity_map", "silver.identity_links"])\n'
            'imap = runs.read_as_written(tables, "silver.identity_map", versions)\n'
            "from custseg.privacy import pseudonym, pseudonym_key, source_key\n"
            'record = pseudonym(source_key("source_system", "source_id"), pseudonym_key(cfg.privacy)).substr(1, 12)\n'
            'queue = imap.where(F.col("review_reason").isNotNull())\n'
            'by_reason = queue.groupBy("review_reason").count().orderBy(F.desc("count")).toPandas()\n'
            'print("REVIEW QUEUE", int(by_reason["count"].sum()) if len(by_reason) else 0)\n'
            "by_reason"
        ),
        new_markdown_cell(
            "## Low-confidence merges\nRecords whose strongest accepted link is below the threshold, with the links that placed them."
        ),
        new_code_cell(
            'weak = (imap.where(F.col("match_confidence") < low_confidence)\n'
            '        .select(record.alias("record"), "source_system", "customer_id", "match_confidence",\n'
            '                "cluster_size", "review_reason"))\n'
            "weak_count = weak.count()\n"
            'print("LOW CONFIDENCE", weak_count)\n'
            'weak.orderBy("match_confidence", "record").limit(shown).toPandas()'
        ),
        new_code_cell(
            'links = runs.read_as_written(tables, "silver.identity_links", versions)\n'
            'weights = (links.where(F.col("accepted") & (F.col("match_probability") < low_confidence))\n'
            '           .select("link_type", "match_probability", "match_weight")\n'
            '           .orderBy("match_weight").limit(shown).toPandas())\n'
            'summary = links.groupBy("link_type", "accepted").agg(\n'
            '    F.count(F.lit(1)).alias("links"), F.avg("match_weight").alias("mean_weight")).toPandas()\n'
            'assert summary["links"].sum() == links.count()\n'
            'print("LINKS")\n'
            "print(summary.round(3).to_string(index=False))\n"
            "weights.round(3)"
        ),
    ]


def main() -> None:
    for name, cells in (
        ("01_explore_segments.ipynb", explore()),
        ("02_compare_runs.ipynb", compare()),
        ("03_review_identity_matches.ipynb", review()),
    ):
        notebook = new_notebook(cells=cells)
        notebook.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        notebook.metadata["language_info"] = {"name": "python"}
        nbformat.write(notebook, HERE / name)


if __name__ == "__main__":
    main()
