"""Ingest on the dirty tiny world: quarantine against the manifest row for row,
reconciliation, orphans, schema drift, reruns and re-deliveries, and a PII canary."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable as RsDeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from custseg import catalog
from custseg.config import Config, ConfigError, SourceConfig, load_config
from custseg.contract import TABLE_ORDER
from custseg.ingest.runner import (
    RejectRateError,
    TableReport,
    check_reject_rates,
    check_sources,
    ingest_all,
    run_as_of,
)
from custseg.ingest.sources import SchemaDriftError
from custseg.pipeline import run_stage
from custseg.tables import STAGE_RUNS_SCHEMA, TableStore

from .conftest import TEST_CONF, Tiny, temp_overrides
from .files import manifest, parquet

# What each kind of damage must be quarantined as (orphans are kept and flagged).
REASON_OF_KIND = {
    "missing_key": "missing_key",
    "duplicate_id": "duplicate_id",
    "exact_duplicate": "exact_duplicate",
    "negative_amount": "negative_amount",
    "absurd_amount": "amount_out_of_bounds",
    "negative_value": "negative_value",
    "future_ts": "timestamp_out_of_range",
    "pre_1970_ts": "timestamp_out_of_range",
    "unknown_source_system": "unknown_source_system",
    "unparseable_date": "unparseable_date",
    "unparseable_number": "unparseable_number",
    "wrong_column_count": "malformed_record",
    "malformed_json": "malformed_record",
    "bad_encoding": "bad_encoding",
}
TABLES = TABLE_ORDER


@dataclass
class Ingested:
    cfg: Config
    store: TableStore
    reports: dict[str, TableReport]


def config_for(tiny: Tiny, tmp: Path, *extra: str) -> Config:
    return load_config(
        TEST_CONF,
        overrides=[
            *temp_overrides(tmp),
            f"ingest.raw_dir={tiny.root / 'raw'}",
            "ingest.as_of=2026-11-01",
            *extra,
        ],
    )


def delta(store: TableStore, name: str) -> pd.DataFrame:
    """A bronze table read with delta-rs (an independent reader)."""
    return RsDeltaTable(store.path(name)).to_pandas()


@pytest.fixture(scope="module")
def ingested(spark: SparkSession, tiny: Tiny, tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    cfg = config_for(tiny, tmp_path_factory.mktemp("ingest"))
    store = TableStore(spark, cfg.storage.warehouse, run_id="ing-1")
    reports = {r.table: r for r in ingest_all(spark, store, cfg)}
    return Ingested(cfg=cfg, store=store, reports=reports)


def test_quarantine_matches_the_manifest_row_for_row(tiny: Tiny, ingested: Ingested) -> None:
    m = manifest(tiny)
    m = m[m["kind"] != "orphan"]
    expected = set(zip(m["table"], m["key"], m["kind"].map(REASON_OF_KIND), strict=True))
    q = delta(ingested.store, "bronze.quarantine")
    got = set(zip(q["table"], q["record_key"], q["reason"], strict=True))
    # Identity records the damage removed make their events' keys unknown, which is not
    # a quarantine reason; so quarantine must be exactly the manifest.
    assert got == expected
    assert len(q) == len(m)
    assert len(set(m["kind"])) >= 12
    # The raw record is kept as text, with its file.
    assert q["raw_record"].str.len().min() > 0
    assert q["source_file"].str.contains("part-").all()


def test_orphans_are_kept_and_flagged(tiny: Tiny, ingested: Ingested) -> None:
    tx = delta(ingested.store, "bronze.transactions")
    identity = delta(ingested.store, "bronze.identity_records")
    known = set(zip(identity["source_system"], identity["source_id"], strict=True))
    orphan_keys = set(manifest(tiny, "transactions").query("kind == 'orphan'")["key"])
    assert orphan_keys and orphan_keys <= set(tx.loc[tx["is_orphan"], "transaction_id"])
    flagged = tx[tx["is_orphan"]]
    assert all(
        (s, i) not in known for s, i in zip(flagged["source_system"], flagged["source_id"], strict=True)
    )
    assert all(
        (s, i) in known
        for s, i in zip(
            tx.loc[~tx["is_orphan"], "source_system"], tx.loc[~tx["is_orphan"], "source_id"], strict=True
        )
    )
    assert ingested.reports["transactions"].orphans == len(flagged)


def test_reconciliation_against_the_files(tiny: Tiny, ingested: Ingested) -> None:
    q = delta(ingested.store, "bronze.quarantine")
    files_of = {
        "identity_records": ["identity_records/web", "identity_records/app", "identity_records/call_centre"],
    }
    for table in TABLES:
        report = ingested.reports[table]
        rows_in_files = sum(tiny.counts[f] for f in files_of.get(table, [table]))
        bronze_rows = len(delta(ingested.store, f"bronze.{table}"))
        quarantined = int((q["table"] == table).sum())
        assert sum(report.read.values()) == rows_in_files, table
        assert bronze_rows + quarantined == rows_in_files, table
        assert report.inserted == bronze_rows and report.quarantined == quarantined, table
        assert sum(report.by_reason.values()) == rows_in_files, table


def test_bronze_statistics_cover_event_times_and_the_file_id_only(ingested: Ingested) -> None:
    table = RsDeltaTable(ingested.store.path("bronze.transactions"))
    assert table.metadata().configuration["delta.dataSkippingStatsColumns"] == "ts,_ingest_file"
    stats = pa.table(table.get_add_actions(flatten=True)).to_pandas()
    assert stats["min.ts"].notna().all() and stats["min._ingest_file"].notna().all()
    assert not any(c.endswith((".transaction_id", ".source_id", "._source")) for c in stats.columns)
    # Staged copies of text sources are removed with the run's staging folder.
    assert not (Path(ingested.store.warehouse) / "_staging" / "ingest" / "ing-1").exists()


def test_every_bronze_row_resolves_to_the_file_it_came_from(tiny: Tiny, ingested: Ingested) -> None:
    files = delta(ingested.store, "bronze.ingest_files")
    assert not files.duplicated(["table", "ingest_file"]).any()
    files = files[files["run_id"] == "ing-1"]
    # The listing is every data file of every configured source, as on disk.
    listed = set(
        zip(files["table"], files["source"], files["source_file"].str.replace("file:", ""), strict=True)
    )
    on_disk = {
        (table, src.name, str(f))
        for table, sources in ingested.cfg.ingest.sources.items()
        for src in sources
        for f in (tiny.root / "raw" / str(src.path)).glob("part-*")
        if not f.name.endswith(".crc")
    }
    assert listed == on_disk
    # Each accepted row of a Parquet source is found in bronze under its own file's id.
    tx = delta(ingested.store, "bronze.transactions")
    assert tx["_ingest_file"].isin(files.loc[files["table"] == "transactions", "ingest_file"]).all()
    file_of = dict(zip(files["ingest_file"], files["source_file"].str.replace("file:", ""), strict=True))
    checked = 0
    for path in sorted((tiny.root / "raw" / "transactions").glob("part-*.parquet")):
        ids = set(parquet(path)["transaction_id"]) & set(tx["transaction_id"])
        rows = tx[tx["transaction_id"].isin(ids)]
        from_here = rows[rows["_ingest_file"].map(file_of) == str(path)]
        checked += len(from_here)
        # A key in two files (a duplicate) is loaded once, from one of them.
        assert len(from_here) >= len(ids) - int(
            manifest(tiny, "transactions")["kind"].str.contains("dup").sum()
        )
    assert checked > 0


def test_bronze_values_are_parsed_to_contract_types(tiny: Tiny, ingested: Ingested) -> None:
    support = delta(ingested.store, "bronze.support_contacts").set_index("contact_id")
    raw = pd.concat(
        [
            pd.read_csv(f, dtype=str)
            for f in sorted((tiny.root / "raw" / "support_contacts").glob("part-0*.csv"))
        ]
    )
    raw = raw.drop_duplicates("contact_id").set_index("contact_id").loc[support.index[:200]]
    pd.testing.assert_series_equal(
        support.loc[raw.index, "cost"], raw["cost"].astype(float), check_names=False
    )
    assert (support.loc[raw.index, "resolved"] == (raw["resolved"] == "true")).all()
    assert (support.loc[raw.index, "ts"].dt.strftime("%Y-%m-%d %H:%M:%S") == raw["ts"]).all()
    identity = delta(ingested.store, "bronze.identity_records")
    cc = identity[identity["source_system"] == "call_centre"]
    assert cc["date_of_birth"].notna().mean() > 0.8
    assert cc["address"].str.contains("\n").any()  # a two-line address survived


def test_each_drift_case_stops_before_any_write(
    spark: SparkSession, tiny: Tiny, ingested: Ingested, tmp_path: Path
) -> None:
    store = ingested.store
    versions = {t: store.latest_version(f"bronze.{t}") for t in TABLES}
    versions["quarantine"] = store.latest_version("bronze.quarantine")
    raw = tmp_path / "raw"
    shutil.copytree(tiny.root / "raw", raw)
    base = [f"storage.warehouse={store.warehouse}", f"ingest.raw_dir={raw}"]

    # 1. A renamed CSV column in the last table's source... support contacts.
    support = raw / "support_contacts"
    for f in support.glob("part-*.csv"):
        text = f.read_text()
        f.write_text(text.replace("handle_minutes", "handle_mins", 1))
    cfg = load_config(TEST_CONF, overrides=[*temp_overrides(tmp_path), *base, "ingest.as_of=2026-11-01"])
    with pytest.raises(
        SchemaDriftError,
        match=r"support_contacts/part-.*\.csv: column 'handle_minutes' "
        r"\(contract support_contacts.handle_minutes, double\) is missing; "
        r"renamed to \['handle_mins'\]\?",
    ):
        ingest_all(spark, TableStore(spark, store.warehouse, run_id="drift"), cfg)
    shutil.rmtree(support)
    shutil.copytree(tiny.root / "raw" / "support_contacts", support)

    # 2. A Parquet source without a required column.
    attributes = raw / "customer_attributes"
    frame = parquet(attributes).drop(columns=["source_id"])
    shutil.rmtree(attributes)
    attributes.mkdir()
    frame.to_parquet(attributes / "part-00000.parquet")
    with pytest.raises(
        SchemaDriftError,
        match=r"customer_attributes/part-00000\.parquet: column 'source_id' \(contract "
        r"customer_attributes.source_id, string, required\) is missing",
    ):
        ingest_all(spark, TableStore(spark, store.warehouse, run_id="drift"), cfg)

    # 3. A Parquet column whose type cannot become the contract's.
    frame = parquet(tiny.root / "raw" / "customer_attributes")
    frame["acquisition_cost"] = [[1.0]] * len(frame)
    shutil.rmtree(attributes)
    attributes.mkdir()
    frame.to_parquet(attributes / "part-00000.parquet")
    with pytest.raises(
        SchemaDriftError, match=r"column 'acquisition_cost' has type array<double>, expected double"
    ):
        ingest_all(spark, TableStore(spark, store.warehouse, run_id="drift"), cfg)
    shutil.rmtree(attributes)
    shutil.copytree(tiny.root / "raw" / "customer_attributes", attributes)

    # 4. A JSON source whose required key was renamed.
    touches = raw / "marketing_touches"
    for f in touches.glob("part-*.json"):
        f.write_text(f.read_text().replace('"touch_id"', '"touchId"'))
    with pytest.raises(
        SchemaDriftError, match=r"marketing_touches/part-.*: column 'touch_id' .*required\) is missing"
    ):
        ingest_all(spark, TableStore(spark, store.warehouse, run_id="drift"), cfg)

    # 5. A mapping that names no contract column stops at config load.
    with pytest.raises(
        ConfigError,
        match=r"ingest.sources.transactions\[tx\]: 'amt' is not a column of the "
        r"transactions contract",
    ):
        load_config(
            None,
            overrides=[
                'ingest.sources={"transactions": [{"name": "tx", "format": "parquet", '
                '"path": "t", "columns": {"a": "amt"}}]}'
            ],
        )
    # 6. A missing source folder.
    cfg_missing = load_config(
        TEST_CONF, overrides=[*temp_overrides(tmp_path), *base[:1], f"ingest.raw_dir={tmp_path / 'nowhere'}"]
    )
    with pytest.raises(SchemaDriftError, match=r"nowhere/identity_records/web: source path does not exist"):
        ingest_all(spark, TableStore(spark, store.warehouse, run_id="drift"), cfg_missing)

    # 7. A later Parquet file of a folder without a column the first file has: Spark reads
    # one footer for the folder and would load that file's rows with nulls.
    cfg_tx = transactions_only(tmp_path, raw, "parquet", *base[:1])
    tx = raw / "transactions"
    frame = parquet(tiny.root / "raw" / "transactions")
    shutil.rmtree(tx)
    tx.mkdir()
    half = len(frame) // 2
    like_spark = {"index": False, "coerce_timestamps": "us", "allow_truncated_timestamps": True}
    frame.iloc[:half].to_parquet(tx / "part-00000.parquet", **like_spark)
    frame.iloc[half:].drop(columns=["discount"]).to_parquet(tx / "part-00001.parquet", **like_spark)
    with pytest.raises(
        SchemaDriftError, match=r"transactions/part-00001\.parquet: column 'discount' .* is missing"
    ):
        ingest_all(spark, TableStore(spark, store.warehouse, run_id="drift"), cfg_tx)
    # 8. A corrupt file (not Parquet at all) among good ones.
    frame.iloc[half:].to_parquet(tx / "part-00001.parquet", **like_spark)
    (tx / "part-00002.parquet").write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(
        SchemaDriftError, match=r"transactions/part-00002\.parquet: not a readable Parquet file"
    ):
        ingest_all(spark, TableStore(spark, store.warehouse, run_id="drift"), cfg_tx)

    after = {t: store.latest_version(f"bronze.{t}") for t in TABLES}
    after["quarantine"] = store.latest_version("bronze.quarantine")
    assert after == versions


def test_rerun_with_the_same_run_id_changes_nothing(
    spark: SparkSession, tiny: Tiny, ingested: Ingested
) -> None:
    before = {t: delta(ingested.store, f"bronze.{t}") for t in [*TABLES, "quarantine"]}
    reports = {r.table: r for r in ingest_all(spark, ingested.store, ingested.cfg)}
    for table in TABLES:
        assert reports[table].inserted == 0
        assert reports[table].already_loaded == ingested.reports[table].inserted
        assert reports[table].quarantined_new == 0
    for name, frame in before.items():
        after = delta(ingested.store, f"bronze.{name}")
        assert len(after) == len(frame), name
        every = list(frame.columns)  # sorted on every column: no tie leaves the order to chance
        pd.testing.assert_frame_equal(
            after.astype(str).sort_values(every).reset_index(drop=True),
            frame.astype(str).sort_values(every).reset_index(drop=True),
        )


def transactions_only(tmp_path: Path, raw_dir: Path, fmt: str, *extra: str) -> Config:
    """A config that ingests one transactions source of format ``fmt`` from ``raw_dir``."""
    sources = json.dumps({"transactions": [{"name": "transactions", "format": fmt, "path": "transactions"}]})
    return load_config(
        TEST_CONF,
        overrides=[
            *temp_overrides(tmp_path),
            f"ingest.raw_dir={raw_dir}",
            "ingest.as_of=2026-11-01",
            f"ingest.sources={sources}",
            *extra,
        ],
    )


def test_a_resent_file_adds_nothing_and_a_new_file_adds_its_rows(
    spark: SparkSession, tiny: Tiny, ingested: Ingested, tmp_path: Path
) -> None:
    delivery = tmp_path / "delivery2" / "transactions"
    delivery.mkdir(parents=True)
    first_file = sorted((tiny.root / "raw" / "transactions").glob("part-*.parquet"))[0]
    shutil.copy(first_file, delivery / "part-resent.parquet")
    fresh = parquet(first_file).head(25).copy()
    fresh = fresh[fresh["amount"].between(0, 1e5) & fresh["transaction_id"].str.startswith("T")]
    fresh["transaction_id"] = "N" + fresh["transaction_id"].str[1:]
    fresh = fresh.drop_duplicates("transaction_id")
    # Written as Spark writes it: UTC-adjusted microsecond timestamps, no pandas index.
    fresh["ts"] = fresh["ts"].dt.tz_localize("UTC")
    fresh.to_parquet(
        delivery / "part-new.parquet", index=False, coerce_timestamps="us", allow_truncated_timestamps=True
    )
    cfg = transactions_only(
        tmp_path, tmp_path / "delivery2", "parquet", f"storage.warehouse={ingested.store.warehouse}"
    )
    bronze_before = len(delta(ingested.store, "bronze.transactions"))
    quarantine_before = len(delta(ingested.store, "bronze.quarantine"))
    (report,) = ingest_all(spark, TableStore(spark, ingested.store.warehouse, run_id="delivery-2"), cfg)
    assert report.inserted == len(fresh)
    assert len(delta(ingested.store, "bronze.transactions")) == bronze_before + len(fresh)
    assert len(delta(ingested.store, "bronze.quarantine")) == quarantine_before
    assert report.already_loaded + report.quarantined + report.inserted == sum(report.read.values())


def ingest_like_the_files(
    spark: SparkSession, store: TableStore, cfg: Config, ingested: Ingested
) -> pd.DataFrame:
    """Ingest ``cfg``'s one transactions source (the tiny world's transactions in another
    form) and check it gives what the files gave: the same counts by source and reason
    and the same bronze rows; returns those rows."""
    (report,) = ingest_all(spark, store, cfg)
    from_files = ingested.reports["transactions"]
    assert report.read == from_files.read and report.by_reason == from_files.by_reason
    columns = ["transaction_id", "source_system", "source_id", "ts", "amount", "cost"]
    got = delta(store, "bronze.transactions")[columns].sort_values("transaction_id").reset_index(drop=True)
    first_run = delta(ingested.store, "bronze.ingest_files").query("run_id == 'ing-1'")["ingest_file"]
    loaded = delta(ingested.store, "bronze.transactions")
    want = loaded[loaded["_ingest_file"].isin(first_run)][columns]
    pd.testing.assert_frame_equal(got, want.sort_values("transaction_id").reset_index(drop=True))
    return got


def test_a_delta_source_is_ingested_like_the_same_rows_in_files(
    spark: SparkSession, tiny: Tiny, ingested: Ingested, tmp_path: Path
) -> None:
    # Delta sources are staged once (a table could change between passes), Parquet files
    # are read again for each pass: the same rows must come out the same either way.
    # Partitioned, under a folder with a space, by a value with a space and a colon: Delta
    # lists decoded paths and Spark's row metadata gives encoded ones (lineage must match).
    spark.read.parquet(str(tiny.root / "raw" / "transactions")).withColumn(
        "batch", F.lit("2026-12-02 03:00")
    ).write.format("delta").partitionBy("batch").save(str(tmp_path / "raw dir" / "transactions"))
    cfg = transactions_only(tmp_path, tmp_path / "raw dir", "delta")
    store = TableStore(spark, cfg.storage.warehouse, run_id="from-delta")
    got = ingest_like_the_files(spark, store, cfg, ingested)
    q, q_files = delta(store, "bronze.quarantine"), delta(ingested.store, "bronze.quarantine")
    q_files = q_files[q_files["table"] == "transactions"]
    assert sorted(zip(q["record_key"], q["reason"], q["raw_record"], strict=True)) == sorted(
        zip(q_files["record_key"], q_files["reason"], q_files["raw_record"], strict=True)
    )
    assert q["source_file"].str.contains("part-").all()
    assert not (Path(cfg.storage.warehouse) / "_staging" / "ingest" / "from-delta").exists()
    files = delta(store, "bronze.ingest_files")
    assert len(files) > 0 and files["source_file"].str.contains("batch=").all()
    assert (
        got.shape[0] > 0
        and delta(store, "bronze.transactions")["_ingest_file"].isin(files["ingest_file"]).all()
    )


def test_bronze_written_before_file_lineage_stops_before_any_write(
    spark: SparkSession, tiny: Tiny, tmp_path: Path
) -> None:
    cfg = transactions_only(tmp_path, tmp_path / "raw", "parquet")
    store = TableStore(spark, cfg.storage.warehouse, run_id="old")
    spark.createDataFrame(
        [("T1", "web", "a", "x.parquet")],
        "transaction_id string, source_system string, source_id string, _source_file string",
    ).write.format("delta").save(store.path("bronze.transactions"))
    shutil.copytree(tiny.root / "raw" / "transactions", tmp_path / "raw" / "transactions")
    before = store.latest_version("bronze.transactions")
    with pytest.raises(SchemaDriftError, match="bronze.transactions .*_ingest_file"):
        ingest_all(spark, store, cfg)
    assert store.latest_version("bronze.transactions") == before
    assert not store.exists("bronze.ingest_files")


def test_pii_canary_never_reaches_logs_or_mlflow(
    spark: SparkSession, tiny: Tiny, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    canary = "canary.7f3a9c@pii-canary.example"
    app = tmp_path / "raw" / "identity_records" / "app"
    app.mkdir(parents=True)
    good = {"source_system": "app", "source_id": "app-canary-1", "first_name": "Canary", "email": canary}
    lines = [
        json.dumps(good),
        json.dumps({**good, "source_id": "app-canary-2"})[:-5],  # truncated
        json.dumps({**good, "source_id": "app-canary-1", "first_name": "Twin"}),
    ]  # duplicate id
    (app / "part-00000.json").write_text("\n".join(lines) + "\n")
    sources = json.dumps(
        # two of its three lines are bad on purpose: no reject-rate limit for this source
        {
            "identity_records": [
                {"name": "app", "format": "json", "path": "identity_records/app", "max_reject_rate": 1}
            ]
        }
    )
    cfg = config_for(tiny, tmp_path, f"ingest.raw_dir={tmp_path / 'raw'}", f"ingest.sources={sources}")
    with caplog.at_level(logging.DEBUG):
        run = run_stage(cfg, "ingest", run_id="canary")
    assert run.metrics["identity_records.app.malformed_record"] == 1
    assert run.metrics["identity_records.app.duplicate_id"] == 1
    assert canary not in caplog.text and "Canary" not in caplog.text
    # Neither the tracking database nor any artifact holds it.
    db = Path(cfg.tracking.uri.removeprefix("sqlite:///")).read_bytes()
    assert canary.encode() not in db
    artifacts = Path(str(cfg.tracking.artifact_location))
    for f in artifacts.rglob("*"):
        if f.is_file():
            assert canary.encode() not in f.read_bytes(), f
    # It does live in bronze, where PII belongs.
    store = TableStore(spark, cfg.storage.warehouse, run_id="canary")
    assert canary in set(delta(store, "bronze.identity_records")["email"])


def test_a_source_rejected_above_its_limit_stops_before_its_table_is_written(
    spark: SparkSession, tiny: Tiny, ingested: Ingested, tmp_path: Path
) -> None:
    """The dirty tiny world quarantines a few rows per source; a limit below that stops
    the stage with the figures, before the table is written. The staging folder a killed
    run left behind is removed when the stage starts."""
    cfg = config_for(tiny, tmp_path, "ingest.max_reject_rate=0.0001")
    store = TableStore(spark, cfg.storage.warehouse, run_id="strict")
    stale = Path(cfg.storage.warehouse) / "_staging" / "ingest" / "killed-run" / "transactions"
    stale.mkdir(parents=True)
    (stale / "part-0.parquet").write_bytes(b"left by a killed run")
    first = ingested.reports["identity_records"]
    source = cfg.ingest.sources["identity_records"][0].name  # the first source checked
    rejected = sum(n for (s, r), n in first.by_reason.items() if s == source and r != "accepted")
    read = first.read[source]
    assert 0 < rejected
    with pytest.raises(
        RejectRateError,
        match=rf"identity_records\[{source}\]: {rejected} of {read} rows \({rejected / read:.1%}\) would be "
        r"quarantined, above the limit of 0\.0%",
    ):
        ingest_all(spark, store, cfg)
    assert not store.exists("bronze.identity_records") and not store.exists("bronze.quarantine")
    assert not stale.parent.exists()
    # A source's own limit wins over the stage's.
    sources = cfg.ingest.sources
    lax = {t: [src.model_copy(update={"max_reject_rate": 1.0}) for src in v] for t, v in sources.items()}
    cfg_lax = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"sources": lax})})
    check_reject_rates(first, [f for f in check_sources(spark, cfg_lax)["identity_records"]], cfg_lax.ingest)


def test_as_of_is_fixed_once_per_run(spark: SparkSession, tmp_path: Path) -> None:
    """Without ingest.as_of, a run's as-of date is the day it first ingested, kept in
    meta.run_settings: a rerun of the run id on a later day uses the same date (and so
    accepts and quarantines the same rows). It used to be each attempt's own today."""
    cfg = load_config(TEST_CONF, overrides=[*temp_overrides(tmp_path), "ingest.as_of=null"])
    store = TableStore(spark, cfg.storage.warehouse, run_id="late-rerun")
    store.run_setting("ingest.as_of", "2026-06-01")  # what its first attempt, in June, fixed
    assert run_as_of(store, cfg.ingest) == date(2026, 6, 1)
    other = TableStore(spark, cfg.storage.warehouse, run_id="new-run")
    assert run_as_of(other, cfg.ingest) == datetime.now(UTC).date()
    assert run_as_of(store, cfg.ingest) == date(2026, 6, 1)
    pinned = cfg.ingest.model_copy(update={"as_of": date(2026, 1, 2)})
    assert run_as_of(store, pinned) == date(2026, 1, 2)  # a configured date always wins


def test_a_jdbc_source_is_ingested_like_the_same_rows_in_files(
    spark: SparkSession, tiny: Tiny, ingested: Ingested, tmp_path: Path
) -> None:
    """A JDBC source (Derby, embedded, from pyspark's own jars): the same transactions as
    the Parquet files give the same accepted rows and quarantine reasons; its lineage is
    the JDBC table."""
    url = f"jdbc:derby:{tmp_path / 'db'};create=true"
    driver = {"driver": "org.apache.derby.iapi.jdbc.AutoloadedDriver"}
    spark.read.parquet(str(tiny.root / "raw" / "transactions")).write.options(**driver).jdbc(url, "TX")
    sources = json.dumps(
        {
            "transactions": [
                {
                    "name": "transactions",
                    "format": "jdbc",
                    "jdbc_url": url,
                    "jdbc_table": "TX",
                    "options": driver,
                }
            ]
        }
    )
    cfg = transactions_only(tmp_path, tmp_path, "parquet", f"ingest.sources={sources}")
    store = TableStore(spark, cfg.storage.warehouse, run_id="from-jdbc")
    ingest_like_the_files(spark, store, cfg, ingested)
    assert list(delta(store, "bronze.ingest_files")["source_file"]) == ["jdbc table TX"]


def test_a_row_count_that_does_not_reconcile_stops_the_stage(
    spark: SparkSession, tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows read must equal rows inserted + already loaded + quarantined. A commit that
    inserts fewer rows than the stage sent (here: Delta's operation metrics report one
    row fewer, as a lost write would) stops the stage with the figures."""
    import custseg.ingest.runner as job

    real = job._last_commit_rows
    monkeypatch.setattr(
        job,
        "_last_commit_rows",
        lambda tables, name, before: real(tables, name, before) - (name != catalog.QUARANTINE),
    )
    cfg = transactions_only(tmp_path, tiny.root / "raw", "parquet")
    with pytest.raises(job.ReconciliationError, match=r"bronze.transactions: rows read \d+ != inserted \d+"):
        ingest_all(spark, TableStore(spark, cfg.storage.warehouse, run_id="lost"), cfg)


def test_source_config_needs_a_location() -> None:
    with pytest.raises(ValueError, match="needs a path"):
        SourceConfig(name="x", format="csv")
    with pytest.raises(ValueError, match="jdbc needs jdbc_url and jdbc_table"):
        SourceConfig(name="x", format="jdbc")


def test_quarantined_identity_records_are_masked_and_old_ones_expire(
    spark: SparkSession, tiny: Tiny, ingested: Ingested, tmp_path: Path
) -> None:
    """An identity row in quarantine shows only the fields that find it in its source
    (``ingest.quarantine_identity_fields``), every other field as ``***``: no name or email
    of the world is in it. Quarantine rows older than ``quarantine_max_age_days`` are
    deleted at the next ingest (here on a copy of the table)."""
    from custseg.ingest.runner import expire_quarantine

    q = delta(ingested.store, catalog.QUARANTINE)
    identity = [json.loads(r) for r in q.loc[q["table"] == "identity_records", "raw_record"]]
    assert len(identity) >= 5
    clear = set(ingested.cfg.ingest.quarantine_identity_fields)
    masked = [k for record in identity for k, v in record.items() if k not in clear and v is not None]
    assert masked and all(record[k] in (None, "***") for record in identity for k in record if k not in clear)
    assert all(record["source_id"] for record in identity if record.get("source_id") is not None)
    people = set(tiny.people["last_name"]) | set(tiny.people["email"].dropna())
    assert not [v for record in identity for v in record.values() if v in people]
    shutil.copytree(ingested.store.path(catalog.QUARANTINE), tmp_path / "warehouse" / "bronze" / "quarantine")
    copy = TableStore(spark, str(tmp_path / "warehouse"), run_id="expire")
    expire_quarantine(copy, 1)  # younger than a day by the table's history: kept
    assert copy.read_newest(catalog.QUARANTINE).count() == len(q)
    # the run's ingest started 100 days ago by meta.stage_runs (kept longer than the history)
    started = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=100)
    row = {"stage": "ingest", "run_id": ingested.store.run_id, "status": "FINISHED", "started_at": started}
    row |= {"finished_at": started, "reads": {}, "writes": {}, "mlflow_run_id": None}
    copy.merge(spark.createDataFrame([row], STAGE_RUNS_SCHEMA), catalog.STAGE_RUNS, keys=["stage", "run_id"])
    expire_quarantine(copy, 120)
    assert copy.read_newest(catalog.QUARANTINE).count() == len(q)
    expire_quarantine(copy, 90)
    assert copy.read_newest(catalog.QUARANTINE).count() == 0
