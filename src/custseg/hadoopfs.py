"""Hadoop FileSystem access through the session's JVM, for raw files on any storage
(local, HDFS, S3): the one place custseg touches the Hadoop API."""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession


def hadoop_path(spark: SparkSession, path: str) -> tuple[Any, Any]:
    """The (FileSystem, Path) pair for ``path``."""
    jpath = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(path)  # type: ignore[union-attr]
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    return jpath.getFileSystem(conf), jpath


def encoded_uri(spark: SparkSession, path: str) -> str:
    """A decoded Hadoop path string (``Path.toString``) as the URL-encoded URI Spark gives
    in ``_metadata.file_path`` (``Path.toUri``): spaces, ``%`` and escaped partition values
    differ between the two."""
    jpath = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(path)  # type: ignore[union-attr]
    return str(jpath.toUri().toString())


def exists(spark: SparkSession, path: str) -> bool:
    """Whether a file or folder exists."""
    fs, jpath = hadoop_path(spark, path)
    return bool(fs.exists(jpath))


def delete(spark: SparkSession, path: str) -> None:
    """Remove a file or folder (recursively) if it exists."""
    fs, jpath = hadoop_path(spark, path)
    fs.delete(jpath, True)


def write_bytes(spark: SparkSession, path: str, data: bytes) -> None:
    """Create (or replace) a file with ``data``."""
    fs, jpath = hadoop_path(spark, path)
    stream = fs.create(jpath, True)
    try:
        stream.write(data)
    finally:
        stream.close()


def list_dirs(spark: SparkSession, path: str) -> list[str]:
    """Names of the folders directly under ``path`` (empty when it does not exist)."""
    fs, jpath = hadoop_path(spark, path)
    if not fs.exists(jpath):
        return []
    return sorted(str(s.getPath().getName()) for s in fs.listStatus(jpath) if s.isDirectory())
