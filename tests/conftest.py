"""One Spark session for the whole suite; per-test temp warehouse and MLflow store."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from custseg.config import Config, load_config, paths_under
from custseg.generate import GeneratedWorld, generate_world, write_world
from custseg.session import build_session

ROOT = Path(__file__).resolve().parents[1]
TEST_CONF = ROOT / "conf" / "test.yaml"
# One pseudonym key for the suite and the spark-submit runs it starts (they inherit the
# environment), so runs compared with each other give the same customer ids.
TEST_PSEUDONYM_KEY = "custseg-test-pseudonym-key-not-a-secret"
os.environ["CUSTSEG_PSEUDONYM_KEY"] = TEST_PSEUDONYM_KEY


def temp_overrides(tmp: Path) -> list[str]:
    """Overrides that keep every path of a test under ``tmp``."""
    return paths_under(tmp)


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
def tiny_world(spark: SparkSession) -> GeneratedWorld:
    """The tiny preset's world (the test config and its seed), drawn once for the suite:
    every frame checkpointed (the same rows, partitions and schema as drawn), so the stage
    tests and the written files share one draw instead of drawing it again each.

    Checkpointed locally (on the executors' block managers), not into the session's
    checkpoint folder: a stage run in this session points that folder at its run's, and
    the privacy tests scan run A's folder for the names this world shares with it."""
    cfg = load_config(TEST_CONF)
    drawn = generate_world(spark, cfg.generate, seed=cfg.run.seed)
    frames = {
        f.name: getattr(drawn, f.name).localCheckpoint()
        for f in fields(drawn)
        if isinstance(getattr(drawn, f.name), DataFrame)
    }
    return replace(drawn, **frames)


@pytest.fixture(scope="session")
def tiny(spark: SparkSession, tiny_world: GeneratedWorld, tmp_path_factory: pytest.TempPathFactory) -> Tiny:
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
    # the same draw; its parameters say this world's bad input settings
    world = replace(
        tiny_world, parameters={**tiny_world.parameters, "bad_input": cfg.generate.bad_input.model_dump()}
    )
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


@dataclass
class Submitted:
    """Two pipeline runs on one small world (the tiny preset at 400 people), shared by the
    spark-submit, report, notebook and comparison tests: run A ran every stage through
    ``spark-submit`` (a fresh JVM and driver); run B re-ran ``segment`` in this session with
    another k range, overwriting gold.segment_assignments after A wrote it."""

    cfg: Config  # run A's settings
    cfg_b: Config  # run B's settings
    run_a: str
    run_b: str
    output: str  # what spark-submit printed
    returncode: int
    tmp: Path


SUBMIT_SETTINGS = [
    "generate.n_people=400",
    "generate.partitions=2",
    "segment.k_min=3",
    "segment.k_max=4",
    "segment.bootstrap_resamples=2",
    "segment.comparators=[kmeans]",
    "insights.replicates=20",
    # score pairs with Splink on Spark (its UDF jar on the executors), not DuckDB
    "stitch.driver_scoring_max_records=0",
    'spark.conf={"spark.ui.showConsoleProgress": "false"}',
]
RUN_B_SETTINGS = ["segment.k_min=2", "segment.k_max=2"]


def submit_command(settings: list[str], run_id: str, *extra: str, master: str = "local[2]") -> list[str]:
    """spark-submit of jobs/pipeline.py (local mode unless ``master``) with the test config
    and ``settings``."""
    command = [
        str(ROOT / "spark-submit.sh"),
        "jobs/pipeline.py",
        "--master",
        master,
        "--conf",
        str(TEST_CONF),
    ]
    for setting in settings:
        command += ["--set", setting]
    return [*command, "--run-id", run_id, *extra]


def failure(output: str, tail: int = 3000) -> str:
    """What a failed spark-submit printed that says why: its last Python traceback, Spark's
    INFO lines left out, or else the output's last ``tail`` characters."""
    start = output.rfind("Traceback (most recent call last)")
    if start < 0:
        return output[-tail:]
    lines = [line for line in output[start:].splitlines() if " INFO " not in line]
    return "\n".join(lines[:80])


def content(df: DataFrame) -> list[str]:
    """The table's rows as sorted digests of their JSON (a multiset: duplicates count)."""
    cols = [F.col(f"`{c}`") for c in sorted(df.columns)]
    digest = F.sha2(F.to_json(F.struct(*cols)), 256)
    return sorted(r[0] for r in df.select(digest).collect())


def close_content(a: DataFrame, b: DataFrame, rtol: float) -> bool:
    """Whether two small tables hold the same rows with doubles equal to a relative
    ``rtol`` (to 1e-12 near zero): rows sorted by their other columns, then doubles."""
    floating = sorted(f.name for f in a.schema.fields if f.dataType.typeName() in ("double", "float"))
    other = sorted(c for c in a.columns if c not in floating)
    if sorted(a.columns) != sorted(b.columns):
        return False
    frames = []
    for df in (a, b):
        pdf = df.toPandas()
        keys = pdf[other].astype(str)
        frames.append(pd.concat([keys, pdf[floating]], axis=1).sort_values([*other, *floating]))
    x, y = frames
    if len(x) != len(y) or not (x[other].to_numpy() == y[other].to_numpy()).all():
        return False
    return bool(
        np.isclose(
            x[floating].to_numpy(float), y[floating].to_numpy(float), rtol=rtol, atol=1e-12, equal_nan=True
        ).all()
    )


def tables_differing_from_a(
    spark: SparkSession, submitted: Submitted, warehouse: Path, rtol: float | None = None
) -> tuple[list[str], list[str]]:
    """Every table of ``warehouse`` (its newest version) compared with the version run A
    wrote: (the table names, those whose content differs): exactly, or with ``rtol`` as in
    ``close_content`` for the doubles."""
    from custseg.runs import table_names, table_versions
    from custseg.tables import TableStore

    ours = TableStore(spark, str(warehouse), run_id="check")
    theirs = TableStore(spark, submitted.cfg.storage.warehouse, run_id="check")
    names = table_names(ours)
    written_by_a = table_versions(theirs, submitted.run_a, names)
    differing = []
    for name in names:
        a, b = theirs.read(name, version=written_by_a[name].written), ours.read(name)
        if content(a) != content(b) and (rtol is None or not close_content(a, b, rtol)):
            differing.append(name)
    return names, differing


@pytest.fixture(scope="session")
def submitted(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Submitted:
    import os
    import subprocess

    from custseg.pipeline import run_stage

    tmp = tmp_path_factory.mktemp("submitted")
    settings = [*temp_overrides(tmp), *SUBMIT_SETTINGS]
    result = subprocess.run(
        submit_command(settings, "submit-a"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ},
    )
    # spark-submit runs the Python driver as a child and forwards its stderr to stdout.
    output = result.stdout + result.stderr
    cfg = load_config(TEST_CONF, overrides=settings)
    cfg_b = load_config(TEST_CONF, overrides=[*settings, *RUN_B_SETTINGS])
    if result.returncode == 0:
        run_stage(cfg_b, "segment", run_id="submit-b")
    return Submitted(cfg, cfg_b, "submit-a", "submit-b", output, result.returncode, tmp)
