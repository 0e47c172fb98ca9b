"""What ``stitch_identities`` needs of the SparkSession it is given, set up or asked for.

- A checkpoint directory: Splink breaks the lineage of its intermediate tables by writing
  them as Parquet there. In local mode, when none is set, one is made under the system's
  temp folder (and logged); on a cluster it must be storage every executor reaches, so
  the call stops at once saying what to set.
- Splink's string-similarity functions (``jaro_winkler``, ...) from the Scala jar in
  Splink's wheel: registered when the jar is on the classpath (``build_session`` puts it
  there); otherwise the jar is added to the running session (``ADD JAR``) and they are
  registered again; if that fails too, the call stops saying which ``spark.jars`` to set.
"""

from __future__ import annotations

import logging
import tempfile

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def _checkpoint_dir(spark: SparkSession) -> str | None:
    jdir = spark.sparkContext._jsc.sc().getCheckpointDir()  # type: ignore[union-attr]
    return None if jdir.isEmpty() else str(jdir.get())


def _register_splink_functions(spark: SparkSession) -> None:
    from splink.internals.spark.jar_location import get_scala_udfs

    for udf in get_scala_udfs():  # type: ignore[no-untyped-call]
        spark.udf.registerJavaFunction(*udf)


def prepare_session(spark: SparkSession) -> None:
    """Make ``spark`` ready for stitching, or raise ``RuntimeError`` saying what to add."""
    if _checkpoint_dir(spark) is None:
        master = str(spark.sparkContext.master)
        if not master.startswith("local"):
            raise RuntimeError(
                "stitch: the SparkSession has no checkpoint directory, and on a cluster "
                f"({master}) it must be storage every executor reaches: call "
                "spark.sparkContext.setCheckpointDir('hdfs:///tmp/custseg-checkpoints') "
                "(or an s3a://, abfss://, shared file system path) before stitch_identities"
            )
        folder = tempfile.mkdtemp(prefix="custseg-stitch-checkpoints-")
        spark.sparkContext.setCheckpointDir(folder)
        log.warning("stitch: no checkpoint directory was set; using %s", folder)
    try:
        _register_splink_functions(spark)
        return
    except Exception:  # noqa: BLE001 - the jar is not on the classpath: add it below
        pass
    from splink.backends.spark import similarity_jar_location

    jar = similarity_jar_location()
    try:
        spark.sql(f"ADD JAR '{jar}'")
        _register_splink_functions(spark)
        log.info("stitch: Splink's similarity functions registered from %s", jar)
    except Exception as exc:
        raise RuntimeError(
            "stitch: Splink's string functions (jaro_winkler, ...) could not be registered; "
            f"start the session with .config('spark.jars', '{jar}') "
            "(from splink.backends.spark import similarity_jar_location)"
        ) from exc
