"""The notebooks, executed as a person runs them (papermill, a real Jupyter kernel starting
the project's Spark session) on the two shared runs, and what they show checked against
the tables read independently (delta-rs, sklearn) and against identity values (canary)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from deltalake import DeltaTable as RsDeltaTable
from sklearn.metrics import adjusted_rand_score

from tests.conftest import ROOT, TEST_CONF, Submitted, failure
from tests.test_report import IDENTITY, run_version

NOTEBOOKS = ROOT / "notebooks"


def _execute(submitted: Submitted, name: str, out: Path, **parameters: Any) -> str:
    """Run a notebook with papermill; the text of all its outputs."""
    import papermill

    assert submitted.returncode == 0, failure(submitted.output)
    source = nbformat.read(NOTEBOOKS / name, as_version=4)
    # saved without outputs, so what a reader opens is the code, not a stale run
    assert all(not c.get("outputs") for c in source.cells if c.cell_type == "code")
    papermill.execute_notebook(
        str(NOTEBOOKS / name),
        str(out),
        parameters={
            "conf": str(TEST_CONF),
            "warehouse": submitted.cfg.storage.warehouse,
            "tracking_uri": submitted.cfg.tracking.uri,
            "overrides": ['spark.conf={"spark.ui.showConsoleProgress": "false"}'],
            **parameters,
        },
        cwd=str(ROOT),
        kernel_name="python3",
        progress_bar=False,
    )
    executed = nbformat.read(out, as_version=4)
    texts = []
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            if output.get("name") == "stdout":
                texts.append(output["text"])
            elif "data" in output:
                texts.append(str(output["data"].get("text/plain", "")))
                texts.append(str(output["data"].get("text/html", "")))
    return "\n".join(texts)


def _no_identity(submitted: Submitted, text: str) -> None:
    records = RsDeltaTable(
        str(Path(submitted.cfg.storage.warehouse) / "bronze" / "identity_records")
    ).to_pandas()
    values = {
        v
        for col in IDENTITY
        for v in records[col].dropna().astype(str)
        if len(v) >= (5 if col in ("first_name", "last_name") else 4)
    }
    assert sorted(v for v in values if v in text) == []


def test_explore_segments(submitted: Submitted, tmp_path: Path) -> None:
    text = _execute(submitted, "01_explore_segments.ipynb", tmp_path / "01.ipynb", run_id=submitted.run_a)
    gold = Path(submitted.cfg.storage.warehouse) / "gold"
    profiles = run_version(gold / "segment_profiles", submitted.run_a)
    business = profiles[~profiles["is_outlier"] & (profiles["segment_name"] != "(all customers)")]
    shown = text.split("PROFILES", 1)[1].split("TRAITS", 1)[0]
    for r in business.itertuples():
        assert r.segment_name in shown and f"{r.customers}" in shown
    conc = run_version(gold / "value_concentration", submitted.run_a)
    gini = conc[(conc["metric"] == "gini") & (conc["measure"] == "revenue")]["value"].iloc[0]
    assert f"'revenue': {round(gini, 4)}" in text
    assert "HISTORY 3 customers" in text
    _no_identity(submitted, text)


def test_compare_runs(submitted: Submitted, tmp_path: Path) -> None:
    text = _execute(
        submitted,
        "02_compare_runs.ipynb",
        tmp_path / "02.ipynb",
        run_a=submitted.run_a,
        run_b=submitted.run_b,
    )
    gold = Path(submitted.cfg.storage.warehouse) / "gold"
    a = run_version(gold / "segment_assignments", submitted.run_a)
    b = run_version(gold / "segment_assignments", submitted.run_b)
    both = a.merge(b, on="customer_id", suffixes=("_a", "_b"))
    ari = adjusted_rand_score(both["segment_name_a"], both["segment_name_b"])
    assert f"ARI {ari:.6f} on {len(both)} customers" in text
    settings = text.split("SETTINGS", 1)[1].split("METRICS", 1)[0]
    assert "segment.k_min" in settings and "segment.k_max" in settings
    assert "chosen_k" in text.split("METRICS", 1)[1]


def test_review_identity_matches(submitted: Submitted, tmp_path: Path) -> None:
    text = _execute(
        submitted, "03_review_identity_matches.ipynb", tmp_path / "03.ipynb", run_id=submitted.run_a
    )
    imap = run_version(Path(submitted.cfg.storage.warehouse) / "silver" / "identity_map", submitted.run_a)
    assert f"REVIEW QUEUE {int(imap['review_reason'].notna().sum())}" in text
    assert f"LOW CONFIDENCE {int((imap['match_confidence'] < 0.95).sum())}" in text
    links = run_version(Path(submitted.cfg.storage.warehouse) / "silver" / "identity_links", submitted.run_a)
    counts = links.groupby(["link_type", "accepted"]).size()
    shown = text.split("LINKS", 1)[1]
    for (kind, _accepted), n in counts.items():
        assert kind in shown and str(n) in shown
    # the source ids are not printed either: records appear by a hash
    ids = set(imap["source_id"].astype(str))
    assert not any(f" {i} " in text for i in ids if len(i) >= 6)
    _no_identity(submitted, text)


@pytest.mark.parametrize(
    "name", ["01_explore_segments.ipynb", "02_compare_runs.ipynb", "03_review_identity_matches.ipynb"]
)
def test_notebooks_are_saved_without_outputs_and_take_parameters(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "warehouse" in tagged[0].source and "tracking_uri" in tagged[0].source
    assert all(
        not c.get("outputs") and c.get("execution_count") is None
        for c in notebook.cells
        if c.cell_type == "code"
    )
