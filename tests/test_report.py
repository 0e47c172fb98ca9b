"""The run report as a person sees it: rendered in headless Chromium (Debian's package),
every section there in order, every figure decoded, no console error, no request but the
page itself; its numbers against the Delta tables read independently (delta-rs), and no
identity value anywhere in it (canary)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable as RsDeltaTable
from mlflow.tracking import MlflowClient

from custseg.config import Config
from custseg.report.sections import TITLES
from custseg.tracking import run_record
from tests.conftest import Submitted, failure

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
IDENTITY = ("first_name", "last_name", "email", "phone", "date_of_birth", "postcode", "address")


def run_version(path: Path, run_id: str) -> pd.DataFrame:
    """A table as ``run_id`` wrote it, read by delta-rs (not by custseg's code)."""
    table = RsDeltaTable(str(path))
    table.load_as_version(max(c["version"] for c in table.history() if c.get("userMetadata") == run_id))
    return table.to_pandas()


def _report(submitted: Submitted) -> Path:
    assert submitted.returncode == 0, failure(submitted.output)
    return Path(submitted.cfg.report.dir) / submitted.run_a / "report.html"


def test_report_in_headless_chromium(submitted: Submitted) -> None:
    from playwright.sync_api import sync_playwright

    path = _report(submitted)
    shot = submitted.tmp / "report-tiny.png"  # tests write nothing into the repository
    problems: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on(
            "console",
            lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None,
        )
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri(), wait_until="load")
        images = page.evaluate(
            "Array.from(document.images).map(i => ({ok: i.complete, w: i.naturalWidth, h: i.naturalHeight, "
            "shown: i.getBoundingClientRect().width}))"
        )
        headings = page.locator("section > h2").all_inner_texts()
        findings = page.locator("section > p.finding").all_inner_texts()
        text = page.locator("body").inner_text()
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert problems == []
    # nothing but the page itself was fetched: the figures are inline
    assert [u for u in requests if not u.startswith("data:")] == [path.as_uri()]
    assert len(images) >= 12
    assert all(i["ok"] and i["w"] > 0 and i["h"] > 0 and i["shown"] > 0 for i in images), images
    assert headings == [f"{i}. {t}" for i, t in enumerate(TITLES, start=1)]
    # every section opens with its finding, and each finding carries a number
    assert len(findings) == len(TITLES) and all(re.search(r"\d", f) for f in findings), findings
    assert "nothing to show" not in text
    assert shot.stat().st_size > 100_000


def test_report_numbers_match_the_tables(submitted: Submitted) -> None:
    html = _report(submitted).read_text(encoding="utf-8")
    gold = Path(submitted.cfg.storage.warehouse) / "gold"
    silver = Path(submitted.cfg.storage.warehouse) / "silver"
    profiles = run_version(gold / "segment_profiles", submitted.run_a)
    business = profiles[~profiles["is_outlier"] & (profiles["segment_name"] != "(all customers)")]
    best = business.loc[business["profit_mean"].idxmax()]
    assert (
        f"{len(business)} segments; &#39;{best['segment_name']}&#39; is {best['customer_share']:.1%} "
        f"of customers and earns {best['profit_share']:.1%} of profit." in html
    )
    imap = run_version(silver / "identity_map", submitted.run_a)
    assert f"{len(imap):,} identity records resolve to {imap['customer_id'].nunique():,} customers" in html
    queue = int(imap["review_reason"].notna().sum())
    assert f"{queue:,} records wait for review" in html
    # data quality: rows loaded are the bronze rows (one ingest of a fresh warehouse)
    tx = RsDeltaTable(str(Path(submitted.cfg.storage.warehouse) / "bronze" / "transactions")).to_pandas()
    row = re.search(r"<td>transactions</td>\s*<td>(\d+)</td>\s*<td>(\d+)</td>", html)
    assert row is not None and int(row.group(2)) == len(tx)
    # recommendations: one table row per rule that fired, each with its evidence
    recs = run_version(gold / "recommendations", submitted.run_a)
    for evidence in recs["evidence"]:
        assert evidence.replace("<", "&lt;").replace(">", "&gt;") in html
    # the run: the settings given on the command line differ from the defaults
    assert "<td>generate.n_people</td>\n      <td>400</td>" in html
    # chosen k: run A's, although run B re-segmented afterwards with k = 2
    selection = run_version(gold / "segment_model_selection", submitted.run_a)
    chosen = int(selection.loc[selection["chosen"], "k"].iloc[0])
    assert f"k = {chosen} chosen by rule" in html


def test_report_summary_and_artifact(submitted: Submitted) -> None:
    folder = Path(submitted.cfg.report.dir) / submitted.run_a
    summary = (folder / "summary.txt").read_text(encoding="utf-8")
    profiles = run_version(
        Path(submitted.cfg.storage.warehouse) / "gold" / "segment_profiles", submitted.run_a
    )
    business = profiles[~profiles["is_outlier"] & (profiles["segment_name"] != "(all customers)")]
    for r in business.itertuples():
        assert (
            f"{r.segment_name}: {r.customer_share:.1%} of customers, {r.profit_share:.1%} of profit"
            in summary
        )
    headlines = run_version(
        Path(submitted.cfg.storage.warehouse) / "gold" / "insight_headlines", submitted.run_a
    )
    top = headlines.set_index("name").loc["top_share_of_profit", "text"]
    assert top in summary
    assert "Recommendations:" in summary and f"Report: {folder / 'report.html'}" in summary
    # logged to the run's report stage in MLflow
    record = run_record(submitted.cfg, submitted.run_a)
    stage = record.stages["report"]
    logged = {a.path for a in MlflowClient().list_artifacts(stage.info.run_id, "report")}
    assert logged == {"report/report.html", "report/summary.txt"}
    assert stage.data.metrics["report.sections"] == len(TITLES)


def test_no_identity_value_in_report_or_summary(submitted: Submitted) -> None:
    folder = Path(submitted.cfg.report.dir) / submitted.run_a
    text = (folder / "report.html").read_text(encoding="utf-8") + (folder / "summary.txt").read_text()
    records = RsDeltaTable(
        str(Path(submitted.cfg.storage.warehouse) / "bronze" / "identity_records")
    ).to_pandas()
    values: set[str] = set()
    for col in IDENTITY:
        for v in records[col].dropna().astype(str):
            # names of four letters or fewer also occur inside ordinary words
            if len(v) >= (5 if col in ("first_name", "last_name") else 4):
                values.add(v)
    assert len(values) > 1000
    leaked = sorted(v for v in values if v in text)
    assert leaked == []


@pytest.mark.parametrize("run_id", ["..", "a/b", "x' or '1'='1"])
def test_run_ids_that_are_paths_or_filters_are_refused(submitted: Submitted, run_id: str) -> None:
    with pytest.raises(ValueError, match="run id"):
        run_record(submitted.cfg, run_id)


def test_settings_shown_hide_secrets(cfg: Config) -> None:
    """The run section and the comparison show logged settings (real MLflow params); a
    secret among them (a key naming one, or a password in a URI) is never shown."""
    from custseg.compare import config_differences as compare_differences
    from custseg.report.sections import config_differences
    from custseg.runs import redact
    from custseg.tracking import pipeline_parent

    secret = cfg.model_copy(
        update={
            "spark": cfg.spark.model_copy(update={"conf": {"spark.hadoop.fs.s3a.secret.key": "s3-canary"}})
        }
    )
    with pipeline_parent(cfg, "plain"):
        pass
    with pipeline_parent(secret, "secret"):
        pass
    plain_run, secret_run = run_record(cfg, "plain"), run_record(secret, "secret")
    shown = config_differences(secret_run.logged("config"), secret).set_index("key")["run"].to_dict()
    assert shown["spark.conf.spark.hadoop.fs.s3a.secret.key"] == "***"
    text = compare_differences(plain_run, secret_run).to_string() + str(shown)
    assert "s3-canary" not in text and "***" in text
    assert (
        redact("tracking.uri", "postgresql://analyst:pw@db:5432/mlflow") == "postgresql://***@db:5432/mlflow"
    )
