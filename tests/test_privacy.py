"""Privacy and security (docs/security.md): no secret logged, pseudonyms under a secret key,
erasure with VACUUM and suppression, retention, safe config and run ids.

Each test reproduces one of the ways custseg leaked or could be misused before, and
checks the fix against an independent reference (``hmac`` by hand, a byte scan of every
file, pyarrow's decoding of every Parquet file)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import shutil
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from custseg.config import ConfigError, PrivacyConfig, load_config
from custseg.privacy import PseudonymKeyError, pseudonym, pseudonym_key
from custseg.tables import TableStore

from .conftest import ROOT, TEST_CONF, TEST_PSEUDONYM_KEY, Submitted, Tiny, failure, temp_overrides

CANARY = "Canary-s3cr3t-7f9e2d"


# --- 1. secrets -------------------------------------------------------------------------------


def _canary_config(tmp_path: Path, db_url: str, raw: Path) -> Path:
    """A config file taking a secret from the environment into a Spark conf key, a JDBC
    source's URL and options, and a tracking URI's user info (docs/security.md)."""
    text = f"""
extends: {TEST_CONF}
spark:
  conf:
    spark.hadoop.fs.s3a.secret.key: ${{CUSTSEG_CANARY}}
    spark.ui.showConsoleProgress: "false"
ingest:
  raw_dir: {raw}
  as_of: 2026-11-01
  sources:
    identity_records: []
    support_contacts: []
    product_usage: []
    marketing_touches: []
    customer_attributes: []
    transactions:
      - name: transactions
        format: jdbc
        jdbc_url: "{db_url};user=app;password=${{CUSTSEG_CANARY}}"
        jdbc_table: TX
        options:
          driver: org.apache.derby.iapi.jdbc.AutoloadedDriver
          password: ${{CUSTSEG_CANARY}}
"""
    path = tmp_path / "canary.yaml"
    path.write_text(text)
    return path


def _hits(root: Path, needle: bytes) -> list[str]:
    """Files under ``root`` whose bytes hold ``needle``."""
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes())


def test_a_secret_from_the_environment_reaches_no_store_log_or_table(
    spark: SparkSession,
    tiny: Tiny,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The canary: a secret given as ${CUSTSEG_CANARY} to a Spark conf key and to a JDBC
    source (URL and options) is used (the JDBC read works) but the MLflow store (SQLite
    bytes and artifacts), the logs and the tables hold it 0 times; the logged config shows
    ${CUSTSEG_CANARY} or ***."""
    from custseg.pipeline import run_stage

    monkeypatch.setenv("CUSTSEG_CANARY", CANARY)
    db = tmp_path / "db"
    url = f"jdbc:derby:{db};create=true"
    driver = {"driver": "org.apache.derby.iapi.jdbc.AutoloadedDriver"}
    spark.read.parquet(str(tiny.root / "raw" / "transactions")).write.options(**driver).jdbc(url, "TX")
    cfg = load_config(_canary_config(tmp_path, url, tiny.root / "raw"), overrides=temp_overrides(tmp_path))
    assert cfg.spark.conf["spark.hadoop.fs.s3a.secret.key"] == CANARY  # expanded for use
    caplog.set_level(logging.DEBUG)
    run_stage(cfg, "ingest", "canary-run")
    store = TableStore(spark, cfg.storage.warehouse, run_id="canary-run")
    assert store.read("bronze.transactions").count() > 0  # the source was read with the secret
    # every file of the run: the MLflow SQLite store, its artifacts, the tables (the Derby
    # database holds the rows only: Derby without authentication keeps no password)
    assert (tmp_path / "mlflow.db").exists() and any((tmp_path / "mlartifacts").rglob("config.yaml"))
    assert _hits(tmp_path, CANARY.encode()) == []
    assert [r.getMessage() for r in caplog.records if CANARY in r.getMessage()] == []
    with sqlite3.connect(tmp_path / "mlflow.db") as conn:
        params = dict(conn.execute("select key, value from params").fetchall())
    assert params["config.spark.conf.spark.hadoop.fs.s3a.secret.key"] == "***"
    assert params["config.ingest.sources.transactions"].count("***") >= 1
    logged = yaml.safe_load(next((tmp_path / "mlartifacts").rglob("config.yaml")).read_text())
    assert logged["spark"]["conf"]["spark.hadoop.fs.s3a.secret.key"] == "***"
    source = logged["ingest"]["sources"]["transactions"][0]
    assert source["options"] == {"driver": "***", "password": "***"}
    assert source["jdbc_url"] == f"{url};user=***;password=***"


def test_logged_config_is_as_written_and_errors_echo_no_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Unit cases of the same rule: a tracking URI with user info, a ${NAME} left as
    written, and a config error in a source entry that holds a password."""
    from custseg.runs import redact

    monkeypatch.setenv("CUSTSEG_CANARY", CANARY)
    path = tmp_path / "c.yaml"
    path.write_text(
        f"extends: {TEST_CONF}\ntracking:\n  uri: http://bob:${{CUSTSEG_CANARY}}@mlflow:5000\n"
        "  artifact_location: s3a://bucket/x?token=abc\n"
    )
    cfg = load_config(path)
    assert cfg.tracking.uri == f"http://bob:{CANARY}@mlflow:5000"
    shown = cfg.loggable()["tracking"]
    assert (
        shown["uri"] == "http://***@mlflow:5000" and shown["artifact_location"] == "s3a://bucket/x?token=***"
    )
    assert redact("ingest.sources.tx.options.password", "pw") == "***"
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"extends: {TEST_CONF}\ningest:\n  sources:\n    transactions:\n"
        "      - name: tx\n        format: jdbc\n"
        f"        jdbc_url: jdbc:x\n        jdbc_table: T\n        max_reject_rate: [1]\n"
        f"        options: {{password: '${{CUSTSEG_CANARY}}'}}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "max_reject_rate" in str(err.value) and CANARY not in str(err.value)
    # a --set whose value holds a secret, with an error inside that value
    source = {"name": "t", "format": "jdbc", "jdbc_url": "x", "jdbc_table": "y", "max_reject_rate": [1]}
    sources = json.dumps({"transactions": [{**source, "options": {"password": CANARY}}]})
    with pytest.raises(ConfigError, match="max_reject_rate") as err:
        load_config(TEST_CONF, overrides=[f"ingest.sources={sources}"])
    assert CANARY not in str(err.value) and str(err.value).startswith("--set ingest.sources:")
    # a validator's message that quotes a value: a path with user info
    sources = json.dumps({"transactions": [{"name": "t", "format": "csv", "path": f"s3a://AK:{CANARY}@b/x"}]})
    with pytest.raises(ConfigError, match="leaves ingest.raw_dir") as err:
        load_config(TEST_CONF, overrides=[f"ingest.sources={sources}"])
    assert CANARY not in str(err.value)
    broken = tmp_path / "broken.yaml"
    broken.write_text(f"tracking:\n  uri: {{password: {CANARY}\n")  # a YAML syntax error on a secret's line
    with pytest.raises(ConfigError, match="not valid YAML at line") as err:
        load_config(broken)
    assert CANARY not in str(err.value)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://u:pw@db/mlflow", "postgresql://***@db/mlflow"),
        ("https://acct.blob/x?sv=1&sig=ABC&se=2", "https://acct.blob/x?sv=1&sig=***&se=2"),
        (
            "Protocol=https;AccountName=a;AccountKey=XYZ==;Suffix=x",
            "Protocol=https;AccountName=a;AccountKey=***;Suffix=x",
        ),
        ("http://x/?access_token=T&a=1", "http://x/?access_token=***&a=1"),
        ("https://s3/x?X-Amz-Signature=S&X-Amz-Date=1", "https://s3/x?X-Amz-Signature=***&X-Amz-Date=1"),
        (
            "jdbc:derby:/db;create=true;user=app;password=pw",
            "jdbc:derby:/db;create=true;user=***;password=***",
        ),
    ],
)
def test_uris_and_connection_strings_lose_their_secrets(text: str, shown: str) -> None:
    from custseg.config import is_secret_key, redact_text

    assert redact_text(text) == shown
    assert is_secret_key(["spark", "conf", "spark.hadoop.fs.azure.account.key.acct.blob.core.windows.net"])
    assert not is_secret_key(["privacy", "require_key"]) and not is_secret_key(["privacy", "key_env"])


# --- 2. pseudonyms ---------------------------------------------------------------------------


def test_the_key_comes_from_the_environment_or_a_private_local_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = PrivacyConfig(key_file=str(tmp_path / "k" / "pseudonym.key"))
    assert pseudonym_key(cfg) == TEST_PSEUDONYM_KEY.encode()  # conftest's environment
    monkeypatch.setenv(cfg.key_env, "short")
    with pytest.raises(PseudonymKeyError, match="shorter than 16"):
        pseudonym_key(cfg)
    monkeypatch.delenv(cfg.key_env)
    with pytest.raises(PseudonymKeyError, match=r"\$CUSTSEG_PSEUDONYM_KEY is not set"):
        pseudonym_key(cfg.model_copy(update={"require_key": True}))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert load_config(ROOT / "conf" / "cluster.yaml").privacy.require_key  # a cluster needs it
    with caplog.at_level(logging.WARNING):
        first = pseudonym_key(cfg)
    assert "created a random pseudonym key" in caplog.text and first.decode() not in caplog.text
    assert (Path(cfg.key_file).stat().st_mode & 0o777) == 0o600
    assert pseudonym_key(cfg) == first and len(first) == 64  # kept, not made again


def test_pseudonym_is_hmac_sha256_under_the_key(spark: SparkSession) -> None:
    key = b"another-test-key-0123456789"
    values = ["ada@x.org", "+447000111222", None, "ünïcode"]
    df = spark.createDataFrame([(v,) for v in values], "v string")
    got = [r["h"] for r in df.select(pseudonym("v", key).alias("h")).collect()]
    want = [None if v is None else hmac.new(key, v.encode(), hashlib.sha256).hexdigest() for v in values]
    assert got == want
    assert want[0] != hashlib.sha256(b"ada@x.org").hexdigest()  # not the dictionary-reversible hash


# --- 5. safe config and ids -----------------------------------------------------------------


def test_run_ids_and_source_paths_are_confined() -> None:
    from custseg.cli import base_parser
    from custseg.tables import check_run_id

    for bad in ["..", ".", "../x", "a/b", "a'b", "", "x" * 101, " a", "-a"]:
        with pytest.raises(ValueError):
            check_run_id(bad)
    with pytest.raises(SystemExit):
        base_parser("x").parse_args(["--run-id", ".."])
    assert base_parser("x").parse_args(["--run-id", "20261204T010101-ab12cd"]).run_id
    for path in ["/etc", "../other", "a/../../b", "s3a://bucket/x"]:
        sources = json.dumps({"transactions": [{"name": "t", "format": "csv", "path": path}]})
        with pytest.raises(ConfigError, match="leaves ingest.raw_dir"):
            load_config(TEST_CONF, overrides=[f"ingest.sources={sources}"])
        allowed = json.dumps(
            {"transactions": [{"name": "t", "format": "csv", "path": path, "absolute": True}]}
        )
        assert load_config(TEST_CONF, overrides=[f"ingest.sources={allowed}"])


@pytest.mark.parametrize(
    "expression",
    [
        "reflect('java.lang.Runtime', 'getRuntime')",
        "java_method('java.lang.System', 'exit', 0)",
        "(SELECT max(x) FROM other)",
        "1) AS x FROM __THIS__ --",
        "x; DROP TABLE y",
        "t.orders_1095d",
        "CAST(x AS STRING)",
    ],
)
def test_a_derived_expression_outside_the_allow_list_is_refused(expression: str) -> None:
    with pytest.raises(ConfigError, match="segment.derived"):
        load_config(TEST_CONF, overrides=[f"segment.derived={json.dumps({'x': expression})}"])


def test_derived_expressions_are_rewritten_with_quoted_names() -> None:
    derived = {
        "r": "CASE WHEN a > 0 THEN log1p(b) / greatest(a, 1) ELSE 0.0 END",
        "n": "coalesce(c, 0)",
        "s": "sign(a) + CAST(b AS DECIMAL(10, 2))",
    }
    cfg = load_config(TEST_CONF, overrides=[f"segment.derived={json.dumps(derived)}"])
    assert cfg.segment.derived == {
        "r": "CASE WHEN `a` > 0 THEN LOG1P(`b`) / GREATEST(`a`, 1) ELSE 0.0 END",
        "n": "COALESCE(`c`, 0)",
        "s": "SIGN(`a`) + CAST(`b` AS DECIMAL(10, 2))",
    }
    with pytest.raises(ConfigError, match="feature name"):
        load_config(TEST_CONF, overrides=["segment.numeric_features=['a` FROM x --']"])


def test_the_mlflow_ui_is_bound_to_this_machine() -> None:
    for name in ("README.md", "Makefile"):
        lines = [line for line in (ROOT / name).read_text().splitlines() if "mlflow ui" in line]
        assert lines and all("--host 127.0.0.1" in line for line in lines), name


# --- 3, 4, 6. erasure, retention, quarantine ---------------------------------------------------


def _decoded_hits(root: Path, needles: list[str]) -> dict[str, list[str]]:
    """Needles found in the decoded values of every Parquet file under ``root`` (pyarrow:
    compression cannot hide a value) and in the bytes of every other file."""
    found: dict[str, list[str]] = {n: [] for n in needles}
    for path in (p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            text = str(pq.read_table(path).to_pylist())
        else:
            text = path.read_bytes().decode("utf-8", errors="replace")
        for n in needles:
            if n in text:
                found[n].append(str(path.relative_to(root)))
    return {n: sorted(v) for n, v in found.items() if v}


@pytest.fixture(scope="module")
def erased(spark: SparkSession, submitted: Submitted, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy of the spark-submit run's warehouse with one person forgotten: the canary is
    a customer whose email, phone and last name no other customer holds."""
    from custseg.forget import forget

    assert submitted.returncode == 0, failure(submitted.output)
    tmp = tmp_path_factory.mktemp("erased")
    shutil.copytree(submitted.tmp / "warehouse", tmp / "warehouse")
    cfg = load_config(
        TEST_CONF,
        overrides=[*temp_overrides(tmp), "privacy.vacuum_retention_hours=0", "ingest.as_of=2026-11-01"],
    )
    cfg = cfg.model_copy(update={"generate": submitted.cfg.generate, "ingest": submitted.cfg.ingest})
    store = TableStore(spark, cfg.storage.warehouse, run_id="pick")
    ids = store.read("silver.identity_map")
    records = store.read("bronze.identity_records").join(ids, ["source_system", "source_id"])
    holders = {
        c: records.where(F.col(c).isNotNull()).groupBy(c).agg(F.countDistinct("customer_id").alias("n"))
        for c in ("email", "phone", "last_name")
    }
    unique = records
    for c, h in holders.items():
        unique = unique.join(h.where("n = 1").select(c), c, "left_semi")
    chosen = (
        unique.groupBy("customer_id")
        .agg(
            F.count("*").alias("n_unique"),
            F.first("email").alias("email"),
            F.first("phone").alias("phone"),
            F.first("last_name").alias("last_name"),
        )
        .where("n_unique >= 2")
        .orderBy("customer_id")
        .first()
    )
    assert chosen is not None
    person = {**chosen.asDict(), "n": ids.where(F.col("customer_id") == chosen["customer_id"]).count()}
    # the person's rows in every table with customer_id, counted in the original warehouse
    original = TableStore(spark, str(submitted.tmp / "warehouse"), run_id="count")
    own_rows = {}
    for layer in ("bronze", "silver", "gold"):
        for table in sorted(p.name for p in (submitted.tmp / "warehouse" / layer).iterdir()):
            name = f"{layer}.{table}"
            df = original.read_newest(name)
            if "customer_id" in df.columns:
                own_rows[name] = df.where(F.col("customer_id") == chosen["customer_id"]).count()
    canary = [person["email"], person["phone"], person["last_name"]]
    # the pipeline created its tables with the retention properties; bronze and silver
    # without column statistics (read before forget sets any property)
    props = {
        name: dict(spark.sql(f"SHOW TBLPROPERTIES delta.`{original.path(name)}`").collect())
        for name in ("silver.customers", "bronze.quarantine", "gold.customer_features")
    }
    before = _decoded_hits(tmp / "warehouse", canary)
    result = forget(cfg, spark, [person["customer_id"]], "forget-1")
    return {
        "cfg": cfg,
        "person": person,
        "canary": canary,
        "before": before,
        "result": result,
        "tmp": tmp,
        "own_rows": own_rows,
        "props": props,
    }


def test_forget_removes_every_row_and_every_byte_of_the_person(spark: SparkSession, erased: dict) -> None:
    cfg, person, result, tmp = erased["cfg"], erased["person"], erased["result"], erased["tmp"]
    # the scan sees the person before: in bronze and silver (it is not a scan that finds nothing)
    layers_before = {p.split(os.sep)[0] for paths in erased["before"].values() for p in paths}
    assert {"bronze", "silver"} <= layers_before, erased["before"]
    assert result.erased == [person["customer_id"]] and result.records == person["n"]
    assert result.rows["bronze.identity_records"] == person["n"]
    assert result.rows["silver.identity_map"] == person["n"] and result.rows["silver.customers"] == 1
    # every table keyed by customer_id lost exactly the rows the original held of the person
    assert {k: result.rows[k] for k in erased["own_rows"]} == erased["own_rows"]
    assert erased["own_rows"]["gold.customer_features"] >= 1 and erased["own_rows"]["silver.customers"] == 1
    store = TableStore(spark, cfg.storage.warehouse, run_id="check")
    for name in result.rows:
        if "customer_id" in store.read(name).columns:
            assert store.read(name).where(F.col("customer_id") == person["customer_id"]).count() == 0, name
    # after VACUUM: no Parquet file, Delta log (statistics included) or checkpoint holds them
    assert _decoded_hits(tmp / "warehouse", erased["canary"]) == {}
    erasures = store.read("meta.erasures").collect()
    key = TEST_PSEUDONYM_KEY.encode()
    assert [r["customer_key"] for r in erasures] == [
        hmac.new(key, person["customer_id"].encode(), hashlib.sha256).hexdigest()
    ]
    assert erasures[0]["rows_deleted"]["bronze.identity_records"] == person["n"]
    props = erased["props"]
    assert all(p["delta.logRetentionDuration"] == cfg.privacy.log_retention for p in props.values())
    assert all(
        p["delta.deletedFileRetentionDuration"] == cfg.privacy.deleted_file_retention for p in props.values()
    )
    assert props["silver.customers"]["delta.dataSkippingNumIndexedCols"] == "0"
    assert props["bronze.quarantine"]["delta.dataSkippingNumIndexedCols"] == "0"
    assert "delta.dataSkippingNumIndexedCols" not in props["gold.customer_features"]


def test_no_artifact_report_or_checkpoint_of_the_run_holds_the_person(
    erased: dict, submitted: Submitted
) -> None:
    """What forget does not touch never held the person: the run's MLflow store and
    artifacts, its report and Spark's checkpoint folder (scanned decoded, as above)."""
    for folder in ("mlartifacts", "reports", "checkpoints"):
        assert folder == "checkpoints" or any((submitted.tmp / folder).rglob("*.*")), folder
        assert _decoded_hits(submitted.tmp / folder, erased["canary"]) == {}, folder
    assert not [n for n in erased["canary"] if n.encode() in (submitted.tmp / "mlflow.db").read_bytes()]


def test_a_forgotten_person_does_not_come_back_and_a_second_forget_is_a_no_op(
    spark: SparkSession, erased: dict, submitted: Submitted
) -> None:
    from custseg.forget import ForgetError, forget
    from custseg.ingest.runner import ingest_all

    cfg, person = erased["cfg"], erased["person"]
    store = TableStore(spark, cfg.storage.warehouse, run_id="after-forget")
    reports = {r.table: r for r in ingest_all(spark, store, cfg)}  # the same files, sent again
    assert reports["identity_records"].suppressed >= person["n"]
    assert sum(r.suppressed for r in reports.values()) > person["n"]  # their events too
    rows = store.read_newest("bronze.identity_records")
    assert rows.where(F.col("email") == person["email"]).count() == 0
    again = forget(cfg, spark, [person["customer_id"]], "forget-2")
    assert again.erased == [] and again.already == [person["customer_id"]]
    with pytest.raises(ForgetError, match="C-nobody"):
        forget(cfg, spark, ["C-nobody"], "forget-3")
    # the run from before the erasure may not resume: its outputs hold the person
    from custseg.pipeline import ErasedSinceStartError, run_stage

    with pytest.raises(ErasedSinceStartError, match=f"run {submitted.run_a} started before the erasure"):
        run_stage(cfg, "features", submitted.run_a)


def test_former_ids_and_quarantine_traces(spark: SparkSession, tmp_path: Path) -> None:
    """By hand: a person now C was B, and B was A (id change log): all three go. Their
    quarantine rows are found by a whole-token id in the same system, an email or a phone;
    an equal id of another system, a longer id and a value with a backslash are handled."""
    from custseg.forget import _TRACED, _former_ids, _needles

    store = TableStore(spark, str(tmp_path / "warehouse"), run_id="f")
    store.write(
        spark.createDataFrame(
            [("A", "B", 2, "merged"), ("B", "C", 1, "merged"), ("X", "Y", 1, "split")],
            "old_customer_id string, new_customer_id string, n_records long, change string",
        ),
        "silver.identity_id_changes",
    )
    ids = spark.createDataFrame([("C",)], "customer_id string")
    assert sorted(r[0] for r in _former_ids(store, ids).collect()) == ["A", "B", "C"]
    records = spark.createDataFrame(
        [("web", "W123"), ("app", "a\\Eb")], "source_system string, source_id string"
    )
    needles = _needles(store, records)
    raw = [
        "web,W123,2026-01-01,12.5",  # the person's transaction
        '{"source_system":"web","source_id":"W123","email":"***"}',  # a masked identity row
        "app,W123,2026-01-01,3.0",  # another system's W123: someone else
        "web,W1234,2026-01-01,1.0",  # a longer id
        "app,a\\Eb,2026-01-02,2.0",  # an id with a backslash: matched as text
    ]
    q = spark.createDataFrame([(r,) for r in raw], "raw_record string")
    traced = sorted(
        r[0] for r in q.alias("t").join(needles.alias("s"), F.expr(_TRACED), "left_semi").collect()
    )
    assert traced == sorted([raw[0], raw[1], raw[4]])


def test_a_schema_drift_error_never_echoes_an_identity_value() -> None:
    """A 'header' that is really a data row: the error names the missing column, and
    neither the values nor a close match among them ('ada.lovelace@x.org' ~ 'email')."""
    from custseg.contract import CONTRACTS
    from custseg.ingest.sources import _drift

    row = ["W123", "Ada", "Lovelace", "ada.lovelace@x.org", "07700 900123", "1815-12-10", "emaill"]
    message = str(_drift("f.csv", "email", CONTRACTS["identity_records"], "email", row))
    assert "column 'email'" in message and not [v for v in row if v in message.replace("column 'email'", "")]
    header = str(_drift("f.csv", "email", CONTRACTS["identity_records"], "email", ["source_id", "emial"]))
    assert "renamed to ['emial']" in header  # a real header still gets the hint
