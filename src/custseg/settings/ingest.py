"""Settings of stage ``ingest``: the sources of every bronze table and their checks."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from custseg import reference
from custseg.contract import CONTRACTS, SOURCE_SYSTEMS
from custseg.settings.base import Section


class SourceConfig(Section):
    """One raw source of a contract table.

    Every contract column must come from the source (under its own name, or renamed by
    ``columns``), from ``constants``, or be listed in ``missing_ok``; anything else is
    schema drift and stops the job before a write.
    """

    name: str = Field(description="Short name, used in quarantine rows and metrics.")
    format: Literal["csv", "json", "parquet", "delta", "jdbc"]
    path: str | None = Field(None, description="File or folder, relative to ingest.raw_dir.")
    absolute: bool = Field(
        False,
        description="path may be absolute or a URI (s3a://...) outside ingest.raw_dir; off, a path "
        "that leaves raw_dir (absolute, a URI or '..') is an error.",
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="Source column -> contract column renames."
    )
    constants: dict[str, str] = Field(
        default_factory=dict, description="Contract column -> constant (e.g. source_system)."
    )
    missing_ok: list[str] = Field(
        default_factory=list, description="Contract columns this source does not have (null)."
    )
    date_format: str | None = Field(None, description="Spark datetime pattern of date columns.")
    timestamp_format: str | None = Field(None, description="Pattern of timestamp columns.")
    timezone: str = Field("UTC", description="Zone of zone-less timestamps in this source.")
    options: dict[str, str] = Field(default_factory=dict, description="Extra reader options.")
    jdbc_url: str | None = None
    jdbc_table: str | None = None
    jdbc_user_env: str | None = Field(None, description="Environment variable with the user.")
    jdbc_password_env: str | None = Field(None, description="Environment variable with the password.")
    max_reject_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Largest share of this source's rows ingest may quarantine before it stops "
        "the stage (default: ingest.max_reject_rate).",
    )

    @model_validator(mode="after")
    def _check_location(self) -> SourceConfig:
        if self.format == "jdbc":
            if not (self.jdbc_url and self.jdbc_table):
                raise ValueError(f"source {self.name!r}: jdbc needs jdbc_url and jdbc_table")
        elif not self.path:
            raise ValueError(f"source {self.name!r}: {self.format} needs a path")
        elif not self.absolute:
            path = str(self.path)
            parts = Path(path).parts
            if os.path.isabs(path) or "://" in path or ".." in parts:
                raise ValueError(
                    f"source {self.name!r}: path {path!r} leaves ingest.raw_dir; give a path inside it, "
                    "or say absolute: true to read from anywhere"
                )
        return self


def _generated_sources() -> dict[str, list[SourceConfig]]:
    """Sources of the generator's raw files (``generate.output_dir``/raw)."""
    return {
        "identity_records": [
            SourceConfig(name="web", format="parquet", path="identity_records/web"),
            SourceConfig(name="app", format="json", path="identity_records/app"),
            SourceConfig(
                name="call_centre",
                format="csv",
                path="identity_records/call_centre",
                columns=dict(reference.CALL_CENTRE_COLUMNS),
                constants={"source_system": "call_centre"},
                missing_ok=["device_id"],
                date_format=reference.CALL_CENTRE_DATE,
                timestamp_format=reference.CALL_CENTRE_TIMESTAMP,
            ),
        ],
        "transactions": [SourceConfig(name="transactions", format="parquet", path="transactions")],
        "support_contacts": [
            SourceConfig(
                name="support_contacts",
                format="csv",
                path="support_contacts",
                timestamp_format="yyyy-MM-dd HH:mm:ss",
            )
        ],
        "product_usage": [SourceConfig(name="product_usage", format="parquet", path="product_usage")],
        "marketing_touches": [
            SourceConfig(name="marketing_touches", format="json", path="marketing_touches")
        ],
        "customer_attributes": [
            SourceConfig(name="customer_attributes", format="parquet", path="customer_attributes")
        ],
    }


class IngestConfig(Section):
    """Stage ``ingest``: raw sources -> bronze tables + bronze.quarantine."""

    raw_dir: str | None = Field(
        None, description="Base of relative source paths; null = <generate.output_dir>/raw."
    )
    sources: dict[str, list[SourceConfig]] = Field(default_factory=_generated_sources)
    known_source_systems: list[str] = Field(default_factory=lambda: list(SOURCE_SYSTEMS))
    ts_min: date = Field(date(2000, 1, 1), description="Earliest plausible event time.")
    as_of: date | None = Field(
        None, description="Latest plausible event date (inclusive); null = today (UTC)."
    )
    amount_max: float = Field(1_000_000.0, gt=0, description="Largest plausible |amount|.")
    max_reject_rate: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Largest share of a source's rows (quarantined / read) ingest accepts; above "
        "it the stage stops with the figures before the table is written (a wrong date "
        "format or a shifted column rejects most rows). A source's own max_reject_rate wins.",
    )
    quarantine_max_age_days: int | None = Field(
        90,
        ge=0,
        description="Quarantine rows first quarantined longer ago than this are deleted at the start "
        "of ingest (their raw text may hold personal data); null keeps them.",
    )
    quarantine_identity_fields: list[str] = Field(
        ["source_system", "source_id", "created_at", "updated_at"],
        description="Fields of an identity record shown in clear in bronze.quarantine's raw_record "
        "(what finds the record in its source system to fix it); every other field is masked as "
        "'***' and the raw line is not kept.",
    )
    refund_id_pattern: str = Field(
        "^R", description="Regex on transaction_id marking refunds (the only negative amounts)."
    )
    max_partition_bytes: str = Field(
        "16m",
        description="spark.sql.files.maxPartitionBytes while reading sources: Parquet packs "
        "millions of rows in a few MB, so the default 128m makes partitions too big to cache.",
    )

    @model_validator(mode="after")
    def _check_tables(self) -> IngestConfig:

        for table, sources in self.sources.items():
            if table not in CONTRACTS:
                raise ValueError(f"ingest.sources: unknown table {table!r}; tables: {sorted(CONTRACTS)}")
            names = [s.name for s in sources]
            if len(set(names)) != len(names):
                raise ValueError(f"ingest.sources.{table}: source names must be unique, got {names}")
            contract = CONTRACTS[table]
            for src in sources:
                for target in [*src.columns.values(), *src.constants, *src.missing_ok]:
                    if target not in contract.names:
                        raise ValueError(
                            f"ingest.sources.{table}[{src.name}]: {target!r} is not a column of "
                            f"the {table} contract {contract.names}"
                        )
                for col in src.missing_ok:
                    if contract.column(col).required:
                        raise ValueError(
                            f"ingest.sources.{table}[{src.name}]: required column {col!r} "
                            "cannot be missing_ok"
                        )
        return self
