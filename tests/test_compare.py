"""``jobs/compare.py`` on two runs of one warehouse with different ``segment.k`` ranges:
config and metric differences from MLflow, and the segment agreement against sklearn on
the assignments each run wrote (read by delta-rs at that run's version)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession
from sklearn.metrics import adjusted_rand_score

from tests.conftest import Submitted, failure
from tests.test_report import run_version


def _args(submitted: Submitted, out: Path) -> list[str]:
    args = ["--conf", str(Path(__file__).resolve().parents[1] / "conf" / "test.yaml")]
    for key, value in (
        ("storage.warehouse", submitted.cfg.storage.warehouse),
        ("tracking.uri", submitted.cfg.tracking.uri),
        ("report.dir", submitted.cfg.report.dir),
    ):
        args += ["--set", f"{key}={value}"]
    return [*args, "--out", str(out)]


def test_compare_two_runs_against_sklearn(
    submitted: Submitted, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.compare import main

    assert submitted.returncode == 0, failure(submitted.output)
    assert main([submitted.run_a, submitted.run_b, *_args(submitted, tmp_path)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "comparison.json").read_text())
    fragment = (tmp_path / "comparison.html").read_text()
    assert "<script" not in fragment and "<html" not in fragment

    # the settings that differ: the k range, and the session settings spark-submit owned in A
    diffs = {d["key"]: (d["a"], d["b"]) for d in result["config_differences"]}
    assert {k: v for k, v in diffs.items() if k.startswith("segment.")} == {
        "segment.k_min": ("3", "2"),
        "segment.k_max": ("4", "2"),
    }
    assert {k.split(".")[0] for k in diffs} == {"segment", "spark"}
    assert diffs["spark.master"] == ("None", "local[2]")
    assert "segment.k_min: A 3  B 2" in printed
    # metrics: run B chose k = 2; run A ran every stage, B only segment
    metrics = {(m["stage"], m["metric"]): m for m in result["metric_differences"]}
    assert metrics[("segment", "chosen_k")]["b"] == 2.0
    assert metrics[("segment", "chosen_k")]["a"] in (3.0, 4.0)
    assert metrics[("clv", "holdout.mae")]["b"] is None

    # agreement against sklearn on the assignments each run wrote
    gold = Path(submitted.cfg.storage.warehouse) / "gold"
    a = run_version(gold / "segment_assignments", submitted.run_a)
    b = run_version(gold / "segment_assignments", submitted.run_b)
    both = a.merge(b, on="customer_id", suffixes=("_a", "_b"))
    assert result["agreement"]["customers_both"] == len(both)
    assert result["agreement"]["ari"] == pytest.approx(
        adjusted_rand_score(both["segment_name_a"], both["segment_name_b"]), abs=1e-12
    )
    expected = pd.crosstab(both["segment_name_a"], both["segment_name_b"])
    crosstab = result["crosstab"]
    assert crosstab["rows"] == list(expected.index) and crosstab["columns"] == list(expected.columns)
    assert crosstab["counts"] == expected.to_numpy().tolist()
    assert f"ARI {result['agreement']['ari']:.4f}" in printed


def test_compare_names_a_missing_run(
    submitted: Submitted, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.compare import main

    assert main([submitted.run_a, "no-such-run", *_args(submitted, tmp_path)]) == 2
    # one line of error (beside the log lines), naming the run
    err = [line for line in capsys.readouterr().err.splitlines() if not re.match(r"\d{4}-\d\d-\d\d ", line)]
    assert len(err) == 1 and err[0].startswith("compare: run 'no-such-run' not found"), err
    assert main(["..", submitted.run_a, *_args(submitted, tmp_path)]) == 2
    assert "run id '..'" in capsys.readouterr().err


def test_every_table_a_run_writes_is_in_the_catalog(spark: SparkSession, submitted: Submitted) -> None:
    """The whole pipeline's tables are exactly the catalog's bronze, silver and gold
    entries (the catalog lists nothing a run does not write, and misses nothing)."""
    from custseg import catalog
    from custseg.runs import table_names
    from custseg.tables import TableStore

    assert submitted.returncode == 0, failure(submitted.output)
    written = set(table_names(TableStore(spark, submitted.cfg.storage.warehouse, run_id="check")))
    listed = {t.name for t in catalog.TABLES.values() if t.layer != catalog.META}
    assert written == listed
