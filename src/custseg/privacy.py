"""Pseudonyms: HMAC-SHA256 under a secret key, for every key derived from an identity field
that leaves the silver layer or is stored for the stitch guards (docs/security.md).

An unsalted hash of an email or a phone is reversed by hashing a list of candidates; an
HMAC is not, without the key. The key comes from the environment (``privacy.key_env``,
``CUSTSEG_PSEUDONYM_KEY`` by default); a cluster config requires it (``privacy.require_key``),
local mode falls back to a random key kept in ``privacy.key_file`` and says so. The key
is the same for every run of a deployment, so pseudonyms (customer ids among them) are
stable across runs; changing it changes every id at the next stitch.

Spark has no HMAC function. The column version is a vectorised pandas UDF over the
standard library's ``hmac``: the key reaches executors inside the UDF's pickled closure,
never as a literal in a query plan (which the Spark UI, event logs and error messages
show).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.functions import pandas_udf

from custseg.config import Config, PrivacyConfig

log = logging.getLogger(__name__)

BUCKETS = 65536  # a suppressed record's bucket: 16 bits of a public hash, to find candidates cheaply
KEY_BYTES = 32
MIN_KEY_CHARS = 16


class PseudonymKeyError(RuntimeError):
    """No usable pseudonym key (names the variable or file, never the key)."""


def pseudonym_key(cfg: PrivacyConfig) -> bytes:
    """The deployment's secret key: ``$<key_env>``, else (unless ``require_key``) the
    local key file, created with a random key on first use (mode 0600)."""
    value = os.environ.get(cfg.key_env)
    if value:
        if len(value) < MIN_KEY_CHARS:
            raise PseudonymKeyError(
                f"${cfg.key_env} is shorter than {MIN_KEY_CHARS} characters; use a random key, e.g. "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        return value.encode()
    if cfg.require_key:
        raise PseudonymKeyError(
            f"${cfg.key_env} is not set and privacy.require_key is on: set it to the deployment's "
            "pseudonym key (the same for every run, kept in the cluster's secret store)"
        )
    path = Path(cfg.key_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(KEY_BYTES))
            log.warning(
                "privacy: $%s is not set; created a random pseudonym key in %s. Keep that file: "
                "customer ids change when the key does. Set $%s on shared deployments.",
                cfg.key_env,
                path,
                cfg.key_env,
            )
    text = path.read_text().strip()
    if len(text) < MIN_KEY_CHARS:
        raise PseudonymKeyError(f"{path}: the pseudonym key file is empty or too short; remove it")
    return text.encode()


def pseudonym_text(value: str, key: bytes) -> str:
    """HMAC-SHA256 of ``value`` (UTF-8) under ``key``, as 64 hex digits."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def pseudonym(col: Column | str, key: bytes) -> Column:
    """The column's HMAC-SHA256 under ``key`` as 64 hex digits (null stays null)."""

    @pandas_udf("string")  # type: ignore[call-overload]
    def _hmac(values: pd.Series) -> pd.Series:
        return values.map(lambda v: None if pd.isna(v) else pseudonym_text(str(v), key))

    column = F.col(col) if isinstance(col, str) else col
    out: Column = _hmac(column.cast("string"))
    return out


def source_key(system: Column | str, source_id: Column | str) -> Column:
    """A source record's key as text, ``system:id`` (what its pseudonym is taken of)."""
    return F.concat_ws(":", system, source_id)


def bucket(system: Column | str, source_id: Column | str) -> Column:
    """The record's suppression bucket: a public 16-bit hash, so ingest computes the secret
    pseudonym only for the few rows in a suppressed bucket (it reveals 16 bits of an id)."""
    return F.pmod(F.xxhash64(source_key(system, source_id)), F.lit(BUCKETS)).cast("int")


def suppressed_records(rows: DataFrame, suppressed: DataFrame, key: bytes) -> DataFrame:
    """The distinct ``(source_system, source_id, rows)`` of ``rows`` that ``suppressed``
    (``meta.suppressed_sources``: bucket, source_key) holds: one pass over ``rows`` with a
    cheap bucket filter; the pseudonym is computed for the rows in a suppressed bucket only."""
    pair = ["source_system", "source_id"]
    buckets = suppressed.select("bucket").distinct()
    candidates = (
        rows.select(*pair)
        .where(F.col("source_id").isNotNull())
        .withColumn("bucket", bucket(*pair))
        .join(F.broadcast(buckets), "bucket", "left_semi")
        .groupBy(*pair)
        .agg(F.count("*").alias("rows"))
    )
    return candidates.withColumn("source_key", pseudonym(source_key(*pair), key)).join(
        suppressed.select("source_key"), "source_key", "left_semi"
    )


def retention_properties(cfg: Config, name: str) -> dict[str, str]:
    """The Delta properties ``privacy`` sets on a table (at creation, and on every table
    by ``jobs/forget.py``); bronze and silver tables also collect no column statistics:
    those sit in the Delta log, which VACUUM does not clean, so the min and max of a name
    column would outlive the erasure of its holder. A table that names its statistics
    columns (bronze's timestamps, ``delta.dataSkippingStatsColumns``) keeps those."""
    props = {
        "delta.logRetentionDuration": cfg.privacy.log_retention,
        "delta.deletedFileRetentionDuration": cfg.privacy.deleted_file_retention,
    }
    if name.split(".")[0] in ("bronze", "silver"):
        props["delta.dataSkippingNumIndexedCols"] = "0"
    return props
