"""One Spark session for the whole suite; per-test temp warehouse and MLflow store."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from custseg.config import Config, load_config
from custseg.session import build_session

ROOT = Path(__file__).resolve().parents[1]
TEST_CONF = ROOT / "conf" / "test.yaml"


def temp_overrides(tmp: Path) -> list[str]:
    """Overrides that keep every path of a test under ``tmp``."""
    return [
        f"storage.warehouse={tmp / 'warehouse'}",
        f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
        f"tracking.artifact_location={tmp / 'mlartifacts'}",
        f"generate.output_dir={tmp / 'generated'}",
        f"spark.checkpoint_dir={tmp / 'checkpoints'}",
    ]


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    tmp = tmp_path_factory.mktemp("spark")
    cfg = load_config(TEST_CONF, overrides=temp_overrides(tmp))
    session = build_session(cfg.spark)
    session.sparkContext.setLogLevel("ERROR")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    yield session
    session.stop()


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    """The test config with every path under this test's temp dir."""
    return load_config(TEST_CONF, overrides=temp_overrides(tmp_path))


@pytest.fixture(autouse=True)
def _clean_spark_state(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "spark" in request.fixturenames:
        session: SparkSession = request.getfixturevalue("spark")
        session.catalog.clearCache()
        for table in session.catalog.listTables():
            if table.isTemporary:
                session.catalog.dropTempView(table.name)
