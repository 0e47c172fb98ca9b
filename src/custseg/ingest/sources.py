"""Read a configured raw source into contract-named columns, after checking its schema.

Explicit schemas only: CSV and JSON are read with every mapped column as text (typed
parsing happens in ``custseg.ingest.rules``), Parquet, Delta and JDBC with their own
stored types. Schema drift (a missing or renamed column, a type that cannot become the
contract's) raises ``SchemaDriftError`` naming the file, the column and the expected type,
before anything is written.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import logging
import os
import re
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from custseg.config import SourceConfig
from custseg.contract import TableContract
from custseg.hadoopfs import hadoop_path

log = logging.getLogger(__name__)

CORRUPT_COL = "_corrupt_record"
JSON_SAMPLE_LINES = 2000


class SchemaDriftError(ValueError):
    """A source does not match its mapping; raised before any table is written."""


@dataclass
class SourceFrame:
    """A source read into contract column names (values still as the source typed them).

    Columns: every contract column, ``_source`` (name), ``_source_file``, ``_raw`` (the
    record as text) and ``_malformed`` (the parser could not split the record).
    """

    table: str
    source: SourceConfig
    df: DataFrame
    extra_columns: list[str] = field(default_factory=list)


def list_data_files(spark: SparkSession, path: str) -> list[str]:
    """Data files under ``path`` (a file or a folder), skipping ``_*`` and ``.*``."""
    fs, jpath = hadoop_path(spark, path)
    if not fs.exists(jpath):
        raise SchemaDriftError(f"{path}: source path does not exist")
    if fs.getFileStatus(jpath).isFile():
        return [path]
    files = [
        s.getPath().toString()
        for s in fs.listStatus(jpath)
        if s.isFile() and not s.getPath().getName().startswith(("_", "."))
    ]
    if not files:
        raise SchemaDriftError(f"{path}: source folder has no data files")
    return sorted(files)


def _read_head(spark: SparkSession, file: str, max_lines: int = JSON_SAMPLE_LINES) -> list[str]:
    """The first lines of a file, decoded leniently (for headers and key samples).

    Local files are opened directly; others (HDFS, S3, ...) through a small Spark read.
    """
    local = file[len("file:") :] if file.startswith("file:") else file
    if "://" not in local and os.path.exists(local):
        with open(local, encoding="utf-8", errors="replace", newline="") as fh:
            return [line for _, line in zip(range(max_lines), fh, strict=False)]
    rows = spark.read.text(file).limit(max_lines).collect()  # a bounded sample
    return [r["value"] + "\n" for r in rows]


def expected_source_columns(contract: TableContract, src: SourceConfig) -> dict[str, str]:
    """Source column -> contract column, for every contract column the source must have."""
    renamed_to = set(src.columns.values())
    out = dict(src.columns)
    for name in contract.names:
        if name not in renamed_to and name not in src.constants and name not in src.missing_ok:
            out[name] = name
    return out


_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z_ ]{0,40}$")  # letters, _ and spaces: no @, digit or dot


def _drift(
    file: str, source_col: str, contract: TableContract, target: str, found: list[str]
) -> SchemaDriftError:
    spec = contract.column(target)
    # A 'header' may really be a data row: never echo identity data into an error, not
    # even as a close match (an email is close to 'email'); hint only from a header whose
    # every name looks like a column name.
    identity = contract.name == "identity_records"
    header_like = all(_COLUMN_NAME.match(c) for c in found)
    close = (
        difflib.get_close_matches(source_col, found, n=2, cutoff=0.6) if header_like or not identity else []
    )
    hint = f"; renamed to {close}?" if close else ""
    shown = "" if identity else f"; found columns {found}"
    return SchemaDriftError(
        f"{file}: column '{source_col}' (contract {contract.name}.{target}, {spec.type}"
        f"{', required' if spec.required else ''}) is missing{hint}{shown}"
    )


def _file_path() -> Column:
    """The file a row came from: Spark's hidden file metadata column. Not
    ``input_file_name()``: that one is non-deterministic, so the optimiser keeps the
    projection holding it apart, and every row's raw text (a ``to_json`` of the whole
    record) is rendered there, where only rejected rows need it."""
    return F.col("_metadata.file_path")


def _csv_header(spark: SparkSession, file: str) -> list[str]:
    text = "".join(_read_head(spark, file, 50))
    return next(csv.reader(io.StringIO(text)), [])


def _read_csv(
    spark: SparkSession, contract: TableContract, src: SourceConfig, path: str
) -> tuple[DataFrame, list[str]]:
    expected = expected_source_columns(contract, src)
    groups: dict[tuple[str, ...], list[str]] = {}
    for file in list_data_files(spark, path):
        header = _csv_header(spark, file)
        for source_col, target in expected.items():
            if source_col not in header:
                raise _drift(file, source_col, contract, target, header)
        groups.setdefault(tuple(header), []).append(file)
    extras: set[str] = set()
    frames = []
    for columns, files in groups.items():
        extras |= set(columns) - set(expected)
        schema = T.StructType(
            [T.StructField(h, T.StringType()) for h in columns] + [T.StructField(CORRUPT_COL, T.StringType())]
        )
        reader = (
            spark.read.schema(schema)
            .option("header", True)
            .option("multiLine", True)
            .option("quote", '"')
            .option("escape", '"')
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT_COL)
            .options(**src.options)
        )
        df = reader.csv(files)
        raw = F.coalesce(F.col(CORRUPT_COL), F.to_json(F.struct(*[F.col(f"`{h}`") for h in columns])))
        frames.append(
            df.withColumns({"_raw": raw, "_malformed": F.col(CORRUPT_COL).isNotNull(), "_file": _file_path()})
        )
    return _union(frames), sorted(extras)


def _read_json(
    spark: SparkSession, contract: TableContract, src: SourceConfig, path: str
) -> tuple[DataFrame, list[str]]:
    expected = expected_source_columns(contract, src)
    files = list_data_files(spark, path)
    # JSON writers omit null fields, so a missing optional key proves nothing; a required
    # key absent from a sample of lines is drift (a rename).
    seen: set[str] = set()
    for file in files[:4]:
        for line in _read_head(spark, file):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                seen |= set(row)
    for source_col, target in expected.items():
        if contract.column(target).required and source_col not in seen:
            raise _drift(files[0], source_col, contract, target, sorted(seen))
    schema = T.StructType(
        [T.StructField(c, T.StringType()) for c in expected] + [T.StructField(CORRUPT_COL, T.StringType())]
    )
    df = (
        spark.read.schema(schema)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT_COL)
        .option("allowNumericLeadingZeros", True)
        .options(**src.options)
        .json(files)
    )
    raw = F.coalesce(F.col(CORRUPT_COL), F.to_json(F.struct(*[F.col(f"`{c}`") for c in expected])))
    return df.withColumns(
        {"_raw": raw, "_malformed": F.col(CORRUPT_COL).isNotNull(), "_file": _file_path()}
    ), sorted(seen - set(expected))


_COMPATIBLE = {
    "string": (T.StringType,),
    "double": (T.NumericType, T.StringType),
    "long": (T.IntegralType, T.StringType),
    "int": (T.IntegralType, T.StringType),
    "boolean": (T.BooleanType, T.StringType),
    "date": (T.DateType, T.TimestampType, T.StringType),
    "timestamp": (T.TimestampType, T.TimestampNTZType, T.DateType, T.StringType),
}


def _check_typed(schema: T.StructType, contract: TableContract, src: SourceConfig, where: str) -> list[str]:
    expected = expected_source_columns(contract, src)
    types = {f.name: f.dataType for f in schema.fields}
    for source_col, target in expected.items():
        if source_col not in types:
            raise _drift(where, source_col, contract, target, sorted(types))
        want = contract.column(target).type
        if not isinstance(types[source_col], _COMPATIBLE[want]) and want != "string":
            raise SchemaDriftError(
                f"{where}: column '{source_col}' has type {types[source_col].simpleString()}, "
                f"expected {want} (contract {contract.name}.{target})"
            )
    return sorted(set(types) - set(expected))


def check_parquet_files(
    spark: SparkSession, contract: TableContract, src: SourceConfig, files: list[str]
) -> None:
    """Every file's own schema against the mapping, not only the first footer Spark reads
    for the folder: a later file without a column would otherwise load as nulls. Reading
    a footer also finds a file that is not Parquet (a corrupt or truncated file), before
    any table of the run is written. One footer read per file, on the driver."""
    for file in files:
        try:
            schema = spark.read.parquet(file).schema
        except Exception as exc:  # noqa: BLE001 - Spark raises its own error kinds here
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise SchemaDriftError(f"{file}: not a readable Parquet file ({first})") from None
        _check_typed(schema, contract, src, file)


def _latest_version(spark: SparkSession, path: str) -> int:
    from delta.tables import DeltaTable

    row = DeltaTable.forPath(spark, path).history(1).select("version").first()
    assert row is not None
    return int(row["version"])


def _read_typed(
    spark: SparkSession, contract: TableContract, src: SourceConfig, path: str | None
) -> tuple[DataFrame, list[str]]:
    if src.format == "jdbc":
        props = {
            k: os.environ.get(v, "")
            for k, v in (("user", src.jdbc_user_env), ("password", src.jdbc_password_env))
            if v
        }
        df = spark.read.options(**src.options).jdbc(str(src.jdbc_url), str(src.jdbc_table), properties=props)
        where = f"jdbc table {src.jdbc_table}"
        file_col: Column = F.lit(where)
    else:
        assert path is not None
        if src.format == "parquet":
            check_parquet_files(spark, contract, src, list_data_files(spark, path))
        options = dict(src.options)
        if src.format == "delta" and not {"versionAsOf", "timestampAsOf"} & set(options):
            # One version for every pass and for the file listing: a Delta table read
            # again later would show whatever was committed in between.
            options["versionAsOf"] = str(_latest_version(spark, path))
        df = spark.read.format(src.format).options(**options).load(path)
        where = path
        file_col = _file_path()
    extras = _check_typed(df.schema, contract, src, where)
    expected = expected_source_columns(contract, src)
    raw = F.to_json(F.struct(*[F.col(f"`{c}`") for c in expected]))
    return df.withColumns({"_raw": raw, "_malformed": F.lit(False), "_file": file_col}), extras


def _union(frames: list[DataFrame]) -> DataFrame:
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f, allowMissingColumns=True)
    return out


def read_source(spark: SparkSession, contract: TableContract, src: SourceConfig, raw_dir: str) -> SourceFrame:
    """Check and read one source; returns its rows in contract column names."""
    path = (
        None
        if src.format == "jdbc"
        else (
            src.path
            if os.path.isabs(str(src.path)) or "://" in str(src.path)
            else os.path.join(raw_dir, str(src.path))
        )
    )
    if src.format == "csv":
        assert path is not None
        df, extras = _read_csv(spark, contract, src, path)
    elif src.format == "json":
        assert path is not None
        df, extras = _read_json(spark, contract, src, path)
    else:
        df, extras = _read_typed(spark, contract, src, path)
    if extras:
        log.warning("%s[%s]: extra columns ignored: %s", contract.name, src.name, extras)
    expected = expected_source_columns(contract, src)
    by_target = {target: source_col for source_col, target in expected.items()}
    cols = []
    for name in contract.names:
        if name in src.constants:
            cols.append(F.lit(src.constants[name]).alias(name))
        elif name in by_target:
            cols.append(F.col(f"`{by_target[name]}`").alias(name))
        else:
            cols.append(F.lit(None).cast("string").alias(name))
    out = df.select(
        *cols,
        F.lit(src.name).alias("_source"),
        F.col("_file").alias("_source_file"),
        "_raw",
        "_malformed",
    )
    return SourceFrame(table=contract.name, source=src, df=out, extra_columns=extras)
