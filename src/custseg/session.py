"""The one place a SparkSession is built: Delta extension, UTC, AQE, checkpoints."""

from __future__ import annotations

import glob
import logging
import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from custseg.config import SparkConfig

log = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def delta_package() -> str:
    """The Maven coordinate of the Delta jar matching the installed delta-spark."""
    from importlib.metadata import version

    return f"io.delta:delta-spark_2.13:{version('delta-spark')}"


def _local_jars(jars_dir: str) -> list[str]:
    jars = sorted(glob.glob(os.path.join(jars_dir, "*.jar")))
    if not jars:
        raise FileNotFoundError(
            f"spark.jars_dir {jars_dir!r} has no .jar files; run `make jars-mvn` to fill it"
        )
    return jars


def splink_jar() -> str:
    """Path of the Scala UDF jar (jaro_winkler, ...) inside the Splink wheel."""
    from splink.internals.spark.jar_location import similarity_jar_location

    return str(similarity_jar_location())


def _submitted_jars() -> list[str]:
    """spark.jars of the JVM spark-submit started (none when this process starts its own:
    asking earlier would start the gateway before ``spark.jars.packages`` is set)."""
    if not os.environ.get("PYSPARK_GATEWAY_PORT"):
        return []
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # connect to that JVM: SparkConf() alone reads no JVM
    return [j for j in (SparkConf().get("spark.jars") or "").split(",") if j]


# JVM options of the driver and executors (spark-submit.sh passes them to the driver too).
# - Code cache: iterative stages (k-prototypes: one query with new prototype literals per
#   iteration) compile a new generated class per pass; at the default 240 MB the JIT code
#   cache of a long segmentation run filled up and the JVM disabled its compiler, after
#   which every pass ran several times slower. A larger cache with flushing keeps it on.
# - -XX:-DontCompileHugeMethods: the JIT otherwise never compiles a method over 8,000
#   bytes of bytecode, and Spark's generated code for a wide rule (ingest's reason: a
#   CASE over every contract rule, pushed into a filter as well) is bigger than that; it
#   then runs interpreted (docs/architecture.md, "Measured choices").
JVM_OPTIONS = (
    "-Duser.timezone=UTC -XX:ReservedCodeCacheSize=1g -XX:+UseCodeCacheFlushing -XX:-DontCompileHugeMethods"
)


def build_session(cfg: SparkConfig, extra_jars: list[str] | None = None) -> SparkSession:
    """Build (or return the running) SparkSession for custseg.

    Delta's jars come from ``cfg.jars_dir`` when set, else from Maven Central through
    ``spark.jars.packages`` (cached by Ivy after the first run), unless
    ``cfg.resolve_delta_package`` is off because spark-submit or the platform adds them.

    Args:
        cfg: the ``spark`` section of the config.
        extra_jars: more local jars for ``spark.jars``. Splink's string-similarity UDF jar
            (shipped in its wheel, built for Spark 4) is always added: stitching needs it.

    Returns:
        The session, with UTC time zone, adaptive execution and the checkpoint dir set.
    """
    builder = SparkSession.builder.appName(cfg.app_name)
    if cfg.master:
        builder = builder.master(cfg.master)
    # Under spark-submit the JVM already holds spark.jars (--jars, and the jars --packages
    # resolved, Delta's among them): setting spark.jars here replaced that list, so
    # executors on a cluster lacked Delta's classes. Keep what spark-submit set.
    jars = [*_submitted_jars(), splink_jar(), *(extra_jars or [])]
    # CUSTSEG_JARS_DIR is where `make jars-mvn` puts Delta's jars on a machine whose
    # Ivy cannot reach Maven Central; the config key wins when both are set.
    jars_dir = cfg.jars_dir or os.environ.get("CUSTSEG_JARS_DIR")
    if jars_dir:
        jars.extend(_local_jars(jars_dir))
    elif cfg.resolve_delta_package:
        builder = builder.config("spark.jars.packages", delta_package())
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    settings = {
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": JVM_OPTIONS,
        "spark.executor.extraJavaOptions": JVM_OPTIONS,
        "spark.sql.adaptive.enabled": "true",
        # A join of frames already hash-partitioned by a prefix of its keys (the feature
        # frames: by customer_id, joined on customer_id and snapshot_date) keeps that
        # partitioning instead of shuffling both sides again. Every such prefix here is a
        # high-cardinality id, so the partitions stay balanced (docs/architecture.md, "Measured choices").
        "spark.sql.requireAllClusterKeysForCoPartition": "false",
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.ui.enabled": str(cfg.ui_enabled).lower(),
        "spark.databricks.delta.snapshotPartitions": str(max(1, cfg.shuffle_partitions)),
        # reliable checkpoints (stitch's connected components) hold record keys: remove
        # them once their frames are gone rather than leave them in checkpoint_dir
        "spark.cleaner.referenceTracking.cleanCheckpoints": "true",
        # what any one action may send the driver: the stages collect only aggregates and
        # config-bounded samples (Splink's training sample of stitch.train_max_records is
        # the largest); a per-customer collect at scale fails here instead of in the heap
        "spark.driver.maxResultSize": "256m",
    }
    # Python workers run the driver's interpreter (the venv with pandas and scipy)
    # unless spark-submit or the environment chose one; pyspark reads only the variable.
    if not os.environ.get("PYSPARK_PYTHON"):
        os.environ["PYSPARK_PYTHON"] = sys.executable
    if cfg.driver_memory:
        settings["spark.driver.memory"] = cfg.driver_memory
    settings.update(cfg.conf)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if "://" not in cfg.checkpoint_dir:
        Path(cfg.checkpoint_dir).mkdir(parents=True, exist_ok=True)
    spark.sparkContext.setCheckpointDir(cfg.checkpoint_dir)
    log.info("Spark %s session %s on %s", spark.version, cfg.app_name, spark.sparkContext.master)
    return spark


def main() -> None:
    """Warm the Delta jar cache: start a session once and write a Delta table."""
    import tempfile

    from custseg.config import load_config

    cfg = load_config(os.environ.get("CUSTSEG_CONF") or None).spark
    spark = build_session(cfg.model_copy(update={"master": "local[1]", "ui_enabled": False}))
    with tempfile.TemporaryDirectory() as tmp:
        spark.range(1).write.format("delta").save(os.path.join(tmp, "warm"))
    spark.stop()
    print(f"Delta jars ready ({delta_package()})")  # noqa: T201 - command-line output


if __name__ == "__main__":
    main()
