"""One Spark session for the whole suite; per-test temp warehouse and MLflow store."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from custseg.config import Config, load_config
from custseg.generate import generate_world, write_world
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


BAD_RATE = 0.03


@dataclass
class Tiny:
    """The tiny preset written with bad input on (shared by generator and ingest tests)."""

    cfg: Config
    root: Path
    counts: dict[str, int]
    people: pd.DataFrame  # latent persons with their true names, from the drawn DataFrame


@pytest.fixture(scope="session")
def tiny(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    tmp = tmp_path_factory.mktemp("tiny")
    cfg = load_config(
        TEST_CONF,
        overrides=[
            *temp_overrides(tmp),
            "generate.bad_input.enabled=true",
            f"generate.bad_input.rate={BAD_RATE}",
            "ingest.as_of=2026-11-01",
        ],
    )
    world = generate_world(spark, cfg.generate, seed=cfg.run.seed)
    counts = write_world(spark, world, cfg.generate, seed=cfg.run.seed)
    people = world.people.select(
        "person_id", "segment", "first_name", "nickname", "last_name", "email", "is_household"
    ).toPandas()
    return Tiny(cfg=cfg, root=Path(cfg.generate.output_dir), counts=counts, people=people)


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
