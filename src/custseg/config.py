"""One typed, frozen configuration for every stage, loaded from YAML with overlays.

A config file may name a base file with ``extends: other.yaml`` (relative to itself); the
base is loaded first and the file's keys are merged over it. ``--set a.b.c=value``
overrides are applied last; their values are parsed as YAML (``true``, ``3``, ``[1, 2]``).
String values may reference environment variables as ``${NAME}`` so that secrets never
live in ``conf/``. What is logged (MLflow params, the ``config.yaml`` artifact) is
``Config.loggable()``: the config as written, ``${NAME}`` left unexpanded, with secrets
redacted (``redact``; docs/security.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from custseg import catalog, reference
from custseg.contract import CONTRACTS, IDENTITY_FIELDS, SOURCE_SYSTEMS
from custseg.expressions import NAME, UnsafeExpressionError, safe_expression


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkConfig(_Section):
    """How the SparkSession is built (see ``custseg.session``)."""

    master: str | None = Field("local[*]", description="Spark master URL; null leaves it to spark-submit.")
    app_name: str = "custseg"
    driver_memory: str | None = Field(
        "8g", description="Only effective when the session starts the JVM (local mode)."
    )
    shuffle_partitions: int = Field(8, ge=1)
    ui_enabled: bool = True
    checkpoint_dir: str = "./data/checkpoints"
    jars_dir: str | None = Field(
        None,
        description="Folder of Delta jars (from `make jars-mvn`) used instead of resolving "
        "io.delta:delta-spark from Maven Central with Ivy.",
    )
    resolve_delta_package: bool = Field(
        True,
        description="Add io.delta:delta-spark to spark.jars.packages (the delta-spark pip "
        "way). Turn off when the cluster already ships Delta or spark-submit adds it.",
    )
    conf: dict[str, str] = Field(default_factory=dict, description="Extra Spark conf.")


class StorageConfig(_Section):
    """Where Delta tables live: ``<warehouse>/<layer>/<table>``."""

    warehouse: str = "./data/warehouse"


class TrackingConfig(_Section):
    """MLflow tracking store and experiment."""

    uri: str = "sqlite:///data/mlflow.db"
    experiment: str = "custseg"
    artifact_location: str | None = Field(
        "./data/mlartifacts", description="Artifact root for a new experiment."
    )
    enabled: bool = True


class RunConfig(_Section):
    """Settings shared by all stages."""

    seed: int = Field(42, description="Seed for every random step.")
    currency: str = "GBP"
    lease_seconds: int = Field(
        600,
        ge=10,
        description="How long a run's hold on the warehouse (meta.leases) lasts without renewal; "
        "a running pipeline renews it every third of this, so a killed run's hold expires.",
    )
    lease_wait_seconds: int = Field(
        0,
        ge=0,
        description="How long a run waits for another run's hold on the warehouse to end before "
        "stopping with a message naming the holder (0: stop at once).",
    )


_INTERVAL = r"^interval \d+ (hours|days|weeks)$"


class PrivacyConfig(_Section):
    """Pseudonymisation, erasure and retention (docs/security.md)."""

    key_env: str = Field(
        "CUSTSEG_PSEUDONYM_KEY",
        description="Environment variable holding the secret key of every pseudonym (HMAC-SHA256 of "
        "identity-derived keys and customer ids).",
    )
    require_key: bool = Field(
        False,
        description="Stop when the key_env variable is not set (conf/cluster.yaml). Off: local mode "
        "creates a random key in key_file, with a warning.",
    )
    key_file: str = Field(
        "./data/pseudonym.key",
        description="Local mode's key when key_env is not set (created once, mode 0600). Losing it "
        "changes every customer id at the next stitch.",
    )
    log_retention: str = Field(
        "interval 30 days",
        pattern=_INTERVAL,
        description="delta.logRetentionDuration of every table: how long the Delta log (time travel "
        "metadata) is kept.",
    )
    deleted_file_retention: str = Field(
        "interval 7 days",
        pattern=_INTERVAL,
        description="delta.deletedFileRetentionDuration of every table: how long files a newer version "
        "replaced stay readable by time travel; VACUUM removes them after that.",
    )
    vacuum_retention_hours: float = Field(
        168.0,
        ge=0,
        description="Retention VACUUM uses in jobs/forget.py (erased rows stay in replaced files, "
        "readable by time travel, for this long). Below 168 Delta's safety check is turned off for "
        "the VACUUM: a reader of an older version at the same time may fail.",
    )


class BadInputConfig(_Section):
    """Deliberately malformed rows the generator injects for ingest to catch."""

    enabled: bool = False
    rate: float = Field(0.002, ge=0.0, le=0.2, description="Share of rows corrupted per file.")


class NoiseConfig(_Section):
    """Rates of realistic noise in identity records (per record, independently)."""

    typo: float = Field(0.06, ge=0, le=1)
    nickname: float = Field(0.08, ge=0, le=1)
    swap_names: float = Field(0.02, ge=0, le=1)
    missing_field: float = Field(0.10, ge=0, le=1)
    email_variant: float = Field(0.15, ge=0, le=1)
    phone_format: float = Field(0.5, ge=0, le=1)
    moved: float = Field(0.05, ge=0, le=1)
    dob_swap: float = Field(0.02, ge=0, le=1)
    placeholder: float = Field(0.01, ge=0, le=1)
    household_share: float = Field(0.03, ge=0, le=1)
    shared_device: float = Field(0.01, ge=0, le=1)
    common_name: float = Field(0.02, ge=0, le=1)


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"n_people": 2_000, "partitions": 4},
    "small": {"n_people": 50_000, "partitions": 8},
    "reference": {"n_people": 480_000, "partitions": 32},
}


class GenerateConfig(_Section):
    """The synthetic customer world (``custseg.generate``)."""

    preset: Literal["tiny", "small", "reference", "custom"] = "small"
    n_people: int | None = Field(None, ge=10, description="People to draw; null takes the preset's size.")
    partitions: int | None = Field(None, ge=1, description="Output partitions; null = preset.")
    end_date: date = Field(date(2026, 10, 31), description="Last day of the 3-year history.")
    years: int = Field(3, ge=1, le=10)
    records_per_person: float = Field(2.5, ge=1.0, le=6.0)
    bot_share: float = Field(0.003, ge=0.0, le=0.05)
    anonymous_touch_share: float = Field(0.15, ge=0.0, le=1.0)
    output_dir: str = "./data/generated"
    noise: NoiseConfig = NoiseConfig()
    bad_input: BadInputConfig = BadInputConfig()

    @property
    def resolved_n_people(self) -> int:
        if self.n_people is not None:
            return self.n_people
        if self.preset == "custom":
            raise ConfigError("generate.n_people: required when generate.preset is 'custom'")
        return int(PRESETS[self.preset]["n_people"])

    @property
    def resolved_partitions(self) -> int:
        if self.partitions is not None:
            return self.partitions
        return int(PRESETS.get(self.preset, PRESETS["small"])["partitions"])


class SourceConfig(_Section):
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


class IngestConfig(_Section):
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


SurvivorshipRule = Literal["source_priority", "most_frequent", "most_recent"]


def _default_survivorship() -> dict[str, list[SurvivorshipRule]]:
    return {
        "first_name": ["most_frequent", "source_priority", "most_recent"],
        "last_name": ["most_frequent", "source_priority", "most_recent"],
        "email": ["source_priority", "most_recent"],
        "phone": ["source_priority", "most_recent"],
        "date_of_birth": ["source_priority", "most_frequent"],
        "postcode": ["most_recent"],
        "address": ["most_recent"],
        "device_id": ["most_recent"],
        "account_number": ["source_priority", "most_frequent"],
    }


class StitchConfig(_Section):
    """Stage ``stitch``: identity records -> links, identity map, golden records.

    Also the ``StitchSettings`` of ``custseg.stitch.stitch_identities``. Field names below
    are the standardised identity fields: first_name, last_name, email, phone,
    date_of_birth, postcode, address, device_id, account_number.
    """

    default_region: str = Field(
        "GB",
        description="ISO 3166 region of a record whose source has no entry in source_regions "
        "(and no country column): national phone numbers are read in it, postcodes take its "
        "format (GB, CA, NL, IE spaced; US ZIP+4 to ZIP; others compact).",
    )
    source_regions: dict[str, str] = Field(
        default_factory=dict,
        description="Source system -> ISO 3166 region of its records (e.g. {web_us: US}).",
    )
    date_formats: list[str] = Field(
        default_factory=lambda: [
            "yyyy-MM-dd",
            "yyyyMMdd",
            "dd/MM/yyyy",
            "yyyy/MM/dd",
            "dd.MM.yyyy",
            "dd-MM-yyyy",
        ],
        description="Spark datetime patterns tried in order on a birth date given as text "
        "(a date column is taken as it is); a value none reads is null and counted.",
    )
    min_field_coverage: float = Field(
        0.01,
        ge=0,
        le=1,
        description="A field held (after standardisation) by fewer than this share of the "
        "records is left out of the model and of derived blocking and training rules.",
    )
    placeholders: list[str] = Field(
        default_factory=reference.placeholders,
        description="Values (compared trimmed, case-folded) that mean 'no value' in any field.",
    )
    nicknames: dict[str, str] = Field(
        default_factory=reference.nicknames, description="Nickname -> formal first name."
    )
    email_dot_insensitive_domains: list[str] = Field(
        default_factory=lambda: ["gmail.com", "googlemail.com"],
        description="Providers that ignore dots in the local part.",
    )
    email_plus_tag_domains: list[str] = Field(
        default_factory=lambda: [
            "gmail.com",
            "googlemail.com",
            "outlook.com",
            "hotmail.com",
            "live.com",
            "icloud.com",
            "fastmail.com",
            "protonmail.com",
        ],
        description="Providers that deliver local+tag@ to local@ (the tag is dropped).",
    )
    deterministic_keys: list[str] = Field(
        default_factory=lambda: ["email", "phone", "device_id", "account_number"],
        description="Strong keys: records sharing one are linked unless guarded.",
    )
    max_key_records: int = Field(
        10, ge=2, description="A key value held by more records is not used as a link (reported)."
    )
    conflict_fields: list[str] = Field(
        default_factory=lambda: ["first_name", "date_of_birth", "phone", "device_id", "account_number"],
        description="Records sharing a key are not linked when both have these and they "
        "disagree beyond data-entry errors (first names: not within name_max_edits, as "
        "written or after nicknames, neither a prefix of the other (3+ letters), nor swapped "
        "with the last name; dates, phones, devices, accounts: not within value_max_edits "
        "or a transposition, dates also not a day/month swap); also vetoes probabilistic "
        "links (veto_conflicts). Assumes one phone, device and account per person.",
    )
    forgive_single_conflict: bool = Field(
        True,
        description="One conflicting field is forgiven when the other of first name and birth "
        "date agrees and the records share a postcode or address: a value replaced by "
        "another does not split a person; two of a household (two first names and two birth "
        "dates, or one not given) still conflict. Cannot tell twins, or a father and son of "
        "one name at one address, apart.",
    )
    name_max_edits: int = Field(
        2, ge=0, description="First names within this edit distance (Levenshtein) do not conflict."
    )
    value_max_edits: int = Field(
        1,
        ge=0,
        description="Birth dates (as YYYYMMDD digits), phones, devices and accounts within this "
        "edit distance, or equal but for two swapped characters, do not conflict (a one-digit "
        "typo, transposed digits); 0 = only equal values agree (and a day/month swap).",
    )
    single_valued_fields: list[str] = Field(
        default_factory=lambda: ["date_of_birth", "phone", "device_id", "account_number"],
        description="Fields a person has one value of: a deterministic cluster holding two "
        "values of one is contradicted and left to the probabilistic pass.",
    )
    blocking_rules: list[list[str]] | None = Field(
        None,
        description="Probabilistic candidate pairs: records equal on every field of a rule. "
        "null = derived from the fields the records hold (BLOCKING_CANDIDATES whose fields "
        "are all populated, then a rule for each populated field none of them covers).",
    )
    max_block_size: int = Field(
        200, ge=2, description="A blocking-key value held by more records is skipped (reported)."
    )
    single_rule_max_pairs_per_record: float = Field(
        10,
        ge=0,
        description="Derived blocking rules on one field alone (last name, first name, birth "
        "date, postcode, address), added only when the records hold no deterministic key, are "
        "used only where they make at most this many pairs per record (census-style records "
        "with typos in several fields).",
    )
    comparison_budget: int = Field(
        50_000_000,
        ge=1,
        description="Most candidate pairs scored; rules are estimated first, in order, and a "
        "rule that would exceed the budget is skipped and reported.",
    )
    training_rules: list[list[str]] | None = Field(
        None,
        description="EM blocking rules: each comparison must be left free by at least one "
        "(a comparison using a rule's field is not estimated from that rule). null = derived: "
        "TRAINING_CANDIDATES whose fields are populated, in order, until every compared field "
        "is free in one.",
    )
    driver_scoring_max_records: int = Field(
        100_000,
        ge=0,
        description="Inputs of at most this many records (and at most train_max_records, so "
        "the training sample is all of them) are scored by Splink on DuckDB in the driver, on "
        "the frame already collected for training, instead of on Spark: for interactive use "
        "on small inputs. 0 = always Spark.",
    )
    u_max_pairs: int = Field(1_000_000, ge=1000, description="Random pairs to estimate u.")
    train_max_records: int = Field(
        200_000,
        ge=100,
        description="Records (whole last-name groups) the model is trained on, in the driver "
        "with Splink's DuckDB backend; bounded, so driver memory does not grow with the data.",
    )
    deterministic_recall: float = Field(
        0.6,
        gt=0,
        le=1,
        description="Assumed share of true pairs the deterministic keys find; sets the prior "
        "probability that two random records match.",
    )
    term_frequencies: bool = Field(
        False,
        description="Term-frequency adjustments on the full name and the email when scoring "
        "(a match on a common value counts for less). Costs a frequency table and join per "
        "column on Spark: 6x the scoring time on the tiny preset.",
    )
    match_threshold: float = Field(0.8, gt=0, lt=1, description="Accept probabilistic links at or above.")
    veto_conflicts: bool = Field(
        True,
        description="Reject a probabilistic link whose two records disagree on a conflict "
        "field (the deterministic guard's test), however high its score; kept in "
        "silver.identity_links with accepted = false.",
    )
    strict_threshold: float = Field(
        0.999, gt=0, lt=1, description="Threshold when an oversized cluster is re-examined."
    )
    attach_threshold: float | None = Field(
        0.9999,
        gt=0,
        lt=1,
        description="After re-examination, a record left alone whose links at or above this "
        "all lead to one cluster of two or more records, and which holds no value that cluster "
        "contradicts, joins it; null = never.",
    )
    max_cluster_size: int = Field(
        12, ge=2, description="Clusters with more records are re-examined at strict_threshold."
    )
    low_confidence: float = Field(
        0.99, gt=0, le=1, description="Mappings whose weakest link is below count as low-confidence."
    )
    max_iterations: int = Field(50, ge=1, description="Connected-components iterations at most.")
    survivorship: dict[str, list[SurvivorshipRule]] = Field(
        default_factory=_default_survivorship,
        description="Per golden-record field, the rules in order (ties fall to the next); "
        "placeholders and nulls never survive.",
    )
    source_priority: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "default": ["call_centre", "app", "web"],
            "email": list(SOURCE_SYSTEMS),
        },
        description="Source systems most trusted first, per field ('default' for the rest).",
    )
    truth_path: str | None = Field(
        "auto",
        description="Parquet of (source_system, source_id, person_id) to score against; "
        "'auto' = <generate.output_dir>/truth/identity when it exists; null = none.",
    )
    id_prefix: str = Field("C", description="Prefix of customer ids.")

    @model_validator(mode="after")
    def _check_fields(self) -> StitchConfig:
        fields = {*IDENTITY_FIELDS, "email_local"}
        named = [
            ("deterministic_keys", self.deterministic_keys),
            ("conflict_fields", self.conflict_fields),
            ("single_valued_fields", self.single_valued_fields),
            ("survivorship", list(self.survivorship)),
            *[(f"blocking_rules[{i}]", r) for i, r in enumerate(self.blocking_rules or [])],
            *[(f"training_rules[{i}]", r) for i, r in enumerate(self.training_rules or [])],
        ]
        for key, values in named:
            unknown = [v for v in values if v not in fields]
            if unknown:
                raise ValueError(f"stitch.{key}: unknown field(s) {unknown}; fields: {sorted(fields)}")
        if self.strict_threshold < self.match_threshold:
            raise ValueError("stitch.strict_threshold must be at least stitch.match_threshold")
        if self.attach_threshold is not None and self.attach_threshold < self.match_threshold:
            raise ValueError("stitch.attach_threshold must be at least stitch.match_threshold")
        return self


class FeaturesConfig(_Section):
    """Stage ``features``: events + identity map -> ``gold.customer_features``.

    Every snapshot at date D uses only events before D; a window of w days is [D - w, D).
    """

    as_of: date | None = Field(
        None, description="Snapshot date of the current features; null = the day after the last transaction."
    )
    windows_days: list[int] = Field(
        default_factory=lambda: [30, 90, 180, 365, 1095],
        description="Window lengths in days, ascending; each gives a suffix _<w>d.",
    )
    snapshot_months: int = Field(
        12,
        ge=0,
        le=120,
        description="Month-end snapshots (taken on the 1st of the next month) before as_of, for migration.",
    )
    trend_days: int = Field(90, ge=1, description="Engagement trend: the last N days against the N before.")
    categorical_attributes: list[str] = Field(
        default_factory=lambda: [
            "plan",
            "region",
            "industry",
            "company_size",
            "lifecycle_stage",
            "acquisition_channel",
            "legacy_persona",
            "decision_maker_level",
        ],
        description="customer_attributes columns carried as categorical features.",
    )
    numeric_attributes: list[str] = Field(
        default_factory=lambda: [
            "acquisition_cost",
            "investment_priority_score",
            "onboarding_score",
            "time_to_value_days",
        ],
        description="customer_attributes columns carried as numeric features.",
    )
    attribute_source_priority: list[str] = Field(
        default_factory=lambda: list(SOURCE_SYSTEMS),
        description="Tie-break between a customer's attribute rows: earlier systems win.",
    )

    @model_validator(mode="after")
    def _check(self) -> FeaturesConfig:
        w = self.windows_days
        if not w or any(x < 1 for x in w) or any(a >= b for a, b in zip(w, w[1:], strict=False)):
            raise ValueError(f"features.windows_days must be positive and strictly ascending, got {w}")
        both = set(self.categorical_attributes) & set(self.numeric_attributes)
        if both:
            raise ValueError(f"features: attribute(s) {sorted(both)} are both categorical and numeric")
        return self


class ClvConfig(_Section):
    """Stage ``clv``: orders -> BG/NBD + Gamma-Gamma -> ``gold.customer_clv``, a holdout
    check and the segment cross-check."""

    observation_end: date | None = Field(
        None, description="Last day of the observation period (inclusive); null = the last order's day."
    )
    time_unit: Literal["D", "W"] = Field("D", description="Period of the summaries: a day or a Monday week.")
    holdout_days: int = Field(
        180,
        ge=1,
        description="Out-of-sample check: fit on orders up to observation_end - holdout_days, compare after.",
    )
    horizon_months: int = Field(
        12, ge=1, le=240, description="CLV horizon in months (30 days or 4.345 weeks)."
    )
    discount_rate: float = Field(0.01, ge=0, le=1, description="Monthly discount rate of the CLV.")
    penalizer: float = Field(
        0.0, ge=0, description="L2 penalty on the parameters (as lifetimes' penalizer_coef)."
    )
    max_tuples: int = Field(
        2_000_000,
        ge=1,
        description="Most distinct (frequency, recency, T) tuples taken to the driver for the BG/NBD fit.",
    )
    frequency_buckets: int = Field(
        8,
        ge=2,
        description="Holdout table: calibration frequencies 0 .. n-1, the last bucket holding the rest.",
    )
    segments_table: str = Field(
        catalog.SEGMENT_ASSIGNMENTS,
        description="Segment assignments to cross-check (customer_id + segment_col); skipped when absent.",
    )
    segment_col: str = Field(
        "segment_name", description="Segment column of segments_table (rows with is_outlier are left out)."
    )


SEGMENT_NUMERIC = (
    "orders_per_active_year",
    "avg_order_value",
    "discount_share_1095d",
    "cost_of_goods_rate",
    "support_per_active_year",
    "unresolved_rate",
    "active_day_share",
    "sessions_per_active_day",
    "max_daily_features_used_1095d",
    "touches_per_active_year",
)
# Rates over the customer's active span in the longest window (first event to last own
# activity, at least 30 days), so a customer who left long ago compares by how it behaved
# while active; every null has a defined fill. docs/segment.md has the evidence.
_ACTIVE_YEARS = "(greatest(coalesce(active_span_days, 0), 30) / 365.25)"
SEGMENT_DERIVED = {
    "orders_per_active_year": f"orders_1095d / {_ACTIVE_YEARS}",
    "avg_order_value": "coalesce(avg_order_value, 0.0)",
    "cost_of_goods_rate": "CASE WHEN gross_sales_1095d > 0 THEN cogs_1095d / gross_sales_1095d ELSE 0.0 END",
    "support_per_active_year": f"support_contacts_1095d / {_ACTIVE_YEARS}",
    "unresolved_rate": "1.0 - coalesce(support_resolution_rate, 1.0)",
    "active_day_share": "active_days_1095d / greatest(coalesce(active_span_days, 0), 30)",
    "sessions_per_active_day": "sessions_1095d / greatest(active_days_1095d, 1)",
    "touches_per_active_year": f"touches_1095d / {_ACTIVE_YEARS}",
}


class SegmentConfig(_Section):
    """Stage ``segment``: gold.customer_features -> k-prototypes segments, chosen by
    silhouette and bootstrap stability, with MLlib comparators, registered in MLflow."""

    @field_validator("numeric_features", "log_features", "categorical_features")
    @classmethod
    def _plain_names(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not NAME.match(n)]
        if bad:
            raise ValueError(f"{bad}: a feature name is letters, digits and _ (it becomes a SQL column)")
        return names

    @field_validator("derived")
    @classmethod
    def _safe_derived(cls, derived: dict[str, str]) -> dict[str, str]:
        out = {}
        for name, text in derived.items():
            if not NAME.match(name):
                raise ValueError(f"derived name {name!r}: letters, digits and _ only")
            try:
                out[name] = safe_expression(text)
            except UnsafeExpressionError as err:
                raise ValueError(f"derived {name!r}: {err}") from None
        return out

    features_table: str = Field(
        catalog.CUSTOMER_FEATURES, description="Feature table (customer_id, snapshot_date)."
    )
    snapshot_date: date | None = Field(None, description="Snapshot to segment; null = the latest.")
    numeric_features: list[str] = Field(
        list(SEGMENT_NUMERIC), min_length=1, description="Numeric inputs (feature columns or derived names)."
    )
    derived: dict[str, str] = Field(
        dict(SEGMENT_DERIVED),
        validate_default=True,
        description="Spark SQL expressions over the feature table, computed first (saved with the model); "
        "a name that is also a feature column replaces it (how nulls are filled).",
    )
    log_features: list[str] = Field(
        [
            "orders_per_active_year",
            "avg_order_value",
            "support_per_active_year",
            "sessions_per_active_day",
            "max_daily_features_used_1095d",
            "touches_per_active_year",
        ],
        description="Numeric inputs given a signed log1p before standardising (heavy-tailed money, counts).",
    )
    categorical_features: list[str] = Field(
        ["plan", "company_size", "industry"], description="Categorical inputs (nulls become 'unknown')."
    )
    k_min: int = Field(3, ge=2, description="Smallest k of the sweep.")
    k_max: int = Field(7, ge=2, description="Largest k of the sweep.")
    init_mode: Literal["cao", "huang", "k-means||", "random"] = Field(
        "k-means||", description="KPrototypes initMode."
    )
    n_init: int = Field(
        3,
        ge=1,
        description="KPrototypes nInit: starts per fit (bootstrap refits too), the lowest cost kept; "
        "one start fell in a worse local optimum at k = 4 on the reference preset.",
    )
    max_iter: int = Field(50, ge=1, description="KPrototypes maxIter.")
    tol: float = Field(
        1e-4, ge=0, description="KPrototypes tol: largest centre shift that counts as converged."
    )
    gamma: float | None = Field(
        None, gt=0, description="Weight of a categorical mismatch; null = kmodes' default."
    )
    silhouette_rows: int = Field(3000, ge=10, le=20000, description="Seeded sample for the exact silhouette.")
    bootstrap_resamples: int = Field(5, ge=0, description="B of the bootstrap stability (0 = skip).")
    bootstrap_rows: int = Field(
        50000, ge=100, description="Expected rows per bootstrap resample (all rows when the data has fewer)."
    )
    unstable_below: float = Field(0.6, ge=0, le=1, description="Mean Jaccard below this: cluster unstable.")
    stable_from: float = Field(0.75, ge=0, le=1, description="Mean Jaccard at or above this: cluster stable.")
    selection_rule: Literal[
        "distinct_stable", "largest_stable", "silhouette_if_stable", "silhouette", "stability"
    ] = Field(
        "distinct_stable",
        description="distinct_stable: the largest k whose business clusters are all stable, economically "
        "distinct (min_value_effect) and within silhouette_floor of the best silhouette (else the best "
        "silhouette among the stable k, warned); largest_stable: the largest k whose clusters are all "
        "stable (at scale it kept splitting segments of the same value); silhouette_if_stable: largest "
        "silhouette among those k (silhouette favours few clusters: it merged the 8 % core segment into a "
        "larger one); silhouette: largest silhouette; stability: largest smallest mean Jaccard.",
    )
    min_value_effect: float = Field(
        0.5,
        ge=0,
        description="distinct_stable: every two segments' mean value_col must differ by at least this "
        "effect size (Cohen's d, pooled standard deviation; 0.5 is Cohen's 'medium') with "
        "non-overlapping 95 % intervals.",
    )
    silhouette_floor: float = Field(
        0.95, ge=0, le=1, description="distinct_stable: a k's silhouette must be at least this x the best."
    )
    outlier_probe_k: int = Field(
        12,
        ge=0,
        description="Outlier screen: k of the probe fit whose tiny extreme clusters are outliers (0 = off).",
    )
    outlier_probe_rows: int = Field(
        1_000_000,
        ge=100,
        description="Expected rows of the probe's seeded sample (the default covers the reference workload: "
        "on a 50k sample the 0.3 % bots did not form a cluster of their own).",
    )
    outlier_max_share: float = Field(
        0.01, ge=0, le=1, description="Outlier cluster: at most this share of rows ..."
    )
    outlier_min_z: float = Field(
        4.0, gt=0, description="... and some scaled prototype value at least this far out."
    )
    comparators: list[Literal["kmeans", "bisecting_kmeans", "gaussian_mixture"]] = Field(
        ["kmeans", "bisecting_kmeans"],
        description="MLlib algorithms run beside k-prototypes. gaussian_mixture is not a default: it was "
        "the worst at every k of every run, and once hung in LAPACK's eigen-decomposition (docs/segment.md).",
    )
    comparator_max_iter: int = Field(20, ge=1, description="maxIter of the MLlib comparators.")
    comparator_rows: int = Field(
        100_000,
        ge=0,
        description="The comparators are fitted on a seeded sample of about this many rows (0 = all "
        "rows); their partition of all rows is scored with the same cost as k-prototypes'. Fitting "
        "the three on all 480k rows of the reference preset took ~60 % of the stage.",
    )
    value_col: str = Field(
        "profit_365d",
        description="Naming: the value tier ranks segments by the mean of this feature per customer "
        "(12-month profit: gross margin - cost to serve); the CLV cross-check ranks by the same figure.",
    )
    engagement_col: str = Field("active_days_365d", description="Naming: engagement word from this.")
    cost_col: str | None = Field("cost_to_serve_365d", description="Naming: cost-to-serve word from this.")
    costly_ratio: float = Field(
        1.5,
        gt=1,
        description="Naming: the segment costing most to serve is 'costly to serve' when its mean "
        "cost_col is at least this multiple of the business customers' mean.",
    )
    persona_col: str | None = Field(
        "legacy_persona", description="Legacy personas to cross-tabulate; null = none."
    )
    register_model: bool = Field(True, description="Log and register the chosen pipeline in MLflow.")
    model_name: str = Field("custseg-segmentation", description="Registered model name.")
    alias: str = Field("champion", description="Alias set on the registered version.")
    score_output: str = Field(
        catalog.SEGMENT_SNAPSHOTS, description="jobs/score.py: table of segments per customer and snapshot."
    )

    @model_validator(mode="after")
    def _check(self) -> SegmentConfig:
        if self.k_max < self.k_min:
            raise ValueError(f"segment.k_max ({self.k_max}) < segment.k_min ({self.k_min})")
        unknown = [c for c in self.log_features if c not in self.numeric_features]
        if unknown:
            raise ValueError(f"segment.log_features not in segment.numeric_features: {unknown}")
        if self.unstable_below > self.stable_from:
            raise ValueError("segment.unstable_below must not exceed segment.stable_from")
        return self


ScenarioKind = Literal["support_shift", "stop_discounts"]
SEGMENT_SELECTORS = ("all", "costly", "loss_making", "top_value", "lowest_value")


class ScenarioConfig(_Section):
    """A what-if on cost to serve (``gold.service_scenarios``), stored with its figures.

    ``segments`` are segment names or selectors: ``all``, ``costly`` (highest support cost
    per customer), ``loss_making`` (negative mean profit), ``top_value`` and
    ``lowest_value`` (highest and lowest mean profit per customer).
    """

    name: str
    kind: ScenarioKind = Field(
        description="support_shift: move `share` of `from_channel` support minutes to `to_channel` at "
        "its observed cost per minute; stop_discounts: stop the discounts, keeping the discount "
        "as revenue, and lose `retention_loss` of the segment's profit"
    )
    segments: list[str] = Field(default_factory=lambda: ["costly"], min_length=1)
    from_channel: str = "phone"
    to_channel: str = "chat"
    share: float = Field(0.5, ge=0, le=1, description="support_shift: share of from_channel minutes moved.")
    retention_loss: float = Field(
        0.0, ge=0, le=1, description="stop_discounts: share of the segment's customers assumed lost."
    )


class ConditionConfig(_Section):
    """One test of a recommendation rule on a metric."""

    metric: str = Field(
        description="segment scope: a column of gold.segment_profiles (with _lo/_hi intervals); "
        "global scope: a metric of gold.insight_metrics"
    )
    op: Literal["max", "min", ">", ">=", "<", "<="]
    threshold: float | Literal["all_customers"] | None = Field(
        None, description="A number, 'all_customers' (the all-customers row), or null for max / min."
    )

    @model_validator(mode="after")
    def _check(self) -> ConditionConfig:
        if self.op in ("max", "min") and self.threshold is not None:
            raise ValueError(f"condition on {self.metric}: op {self.op} takes no threshold")
        if self.op not in ("max", "min") and self.threshold is None:
            raise ValueError(f"condition on {self.metric}: op {self.op} needs a threshold")
        return self


class RuleConfig(_Section):
    """A recommendation: every condition holds -> the action, citing each metric."""

    name: str
    action: str
    scope: Literal["segment", "global"] = "segment"
    conditions: list[ConditionConfig] = Field(min_length=1)


def _c(metric: str, op: str, threshold: float | str | None = None) -> ConditionConfig:
    return ConditionConfig.model_validate({"metric": metric, "op": op, "threshold": threshold})


def _default_scenarios() -> list[ScenarioConfig]:
    return [
        ScenarioConfig(name="automate_support", kind="support_shift", segments=["costly"], share=0.5),
        ScenarioConfig(
            name="stop_discounts", kind="stop_discounts", segments=["costly"], retention_loss=0.10
        ),
    ]


def _default_rules() -> list[RuleConfig]:
    return [
        RuleConfig(
            name="named_account_team",
            action="Give them a named account team",
            conditions=[_c("profit_mean", "max")],
        ),
        RuleConfig(
            name="automated_journeys",
            action="Serve them through automated journeys",
            conditions=[_c("profit_mean", "<", 0.0)],
        ),
        RuleConfig(
            name="stop_blanket_discounts",
            action="Stop blanket discounts",
            conditions=[_c("discount_share", ">", 0.15), _c("clv_mean", "<", "all_customers")],
        ),
        RuleConfig(
            name="cut_cost_to_serve",
            action="Move support to self-service and chat",
            conditions=[_c("cost_to_serve_share_of_revenue", ">", 0.25)],
        ),
        RuleConfig(
            name="retention_priority",
            action="Prioritise retention outreach",
            conditions=[_c("clv_at_risk_total", "max")],
        ),
        RuleConfig(
            name="recalibrate_investment_score",
            action="Recalibrate the investment priority score",
            scope="global",
            conditions=[_c("investment_vs_clv_spearman", "<", 0.2)],
        ),
    ]


class InsightsConfig(_Section):
    """Stage ``insights``: gold and silver tables -> the business answers (docs/insights.md)."""

    replicates: int = Field(200, ge=0, description="B of the one-pass Poisson bootstrap (0 = no intervals).")
    level: float = Field(0.95, gt=0, lt=1, description="Level of every interval.")
    window_days: int = Field(
        365, ge=1, description="Window of profiles and cost to serve (one of features.windows_days)."
    )
    curve_bins: int = Field(1000, ge=10, description="Rank bins of the concentration figures (1/bins each).")
    top_shares: list[float] = Field(
        default_factory=lambda: [0.01, 0.05, 0.08, 0.10, 0.20],
        description="Top shares of customers reported.",
    )
    headline_top: float = Field(0.08, gt=0, lt=1, description="The top share the headline sentence names.")
    profile_attributes: list[str] = Field(
        default_factory=lambda: [
            "dominant_channel",
            "dominant_product_category",
            "plan",
            "region",
            "industry",
            "company_size",
            "legacy_persona",
        ],
        description="Categorical features whose mix is profiled and searched for traits.",
    )
    max_values: int = Field(40, ge=2, description="Most values per attribute kept; the rest are '(other)'.")
    trait_min_share: float = Field(
        0.05, ge=0, le=1, description="A trait must hold for at least this share of its segment."
    )
    traits_per_segment: int = Field(5, ge=1, description="Top traits (by lift) flagged per segment.")
    investment_col: str = "investment_priority_score"
    investment_top: float = Field(
        0.30, gt=0, lt=1, description="Misallocation: top share by investment score."
    )
    performance_bottom: float = Field(
        0.50, gt=0, lt=1, description="Misallocation: bottom share by the composite performance score."
    )
    performance_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "monetary_365d": 0.40,
            "max_daily_features_used_365d": 0.35,
            "resolution": 0.25,
        },
        description="Composite performance: weight of each column's percentile rank ('resolution' = "
        "support resolution rate, 1 without contacts).",
    )
    root_cause_groups: list[str] = Field(default_factory=lambda: ["industry", "company_size"])
    min_group_size: int = Field(30, ge=1, description="Root causes: smallest group reported.")
    onboarding_col: str = "onboarding_score"
    adoption_col: str = "max_daily_features_used_365d"
    time_to_value_col: str = "time_to_value_days"
    decision_level_col: str = "decision_maker_level"
    lifecycle_col: str = "lifecycle_stage"
    acquisition_cost_col: str = "acquisition_cost"
    alive_threshold: float = Field(0.5, gt=0, lt=1, description="Churn risk: probability alive below this.")
    churn_features: list[str] = Field(
        default_factory=lambda: [
            "days_since_last_active",
            "recency_days",
            "active_days_365d",
            "orders_365d",
            "sessions_trend",
            "support_contacts_365d",
            "touches_365d",
        ],
        description="Features ranked by their rank correlation with the probability of being alive.",
    )
    kpi_z_threshold: float = Field(3.5, gt=0, description="Robust z from which a KPI month is an anomaly.")
    forecast_months: int = Field(3, ge=1, le=24)
    scenarios: list[ScenarioConfig] = Field(default_factory=_default_scenarios)
    recommendations: list[RuleConfig] = Field(default_factory=_default_rules)

    @model_validator(mode="after")
    def _check(self) -> InsightsConfig:
        if abs(sum(self.performance_weights.values()) - 1.0) > 1e-9:
            raise ValueError(f"insights.performance_weights must sum to 1, got {self.performance_weights}")
        if any(not 0 < q < 1 for q in self.top_shares):
            raise ValueError(f"insights.top_shares must lie in (0, 1), got {self.top_shares}")
        names = [s.name for s in self.scenarios]
        if len(set(names)) != len(names):
            raise ValueError(f"insights.scenarios: names must be unique, got {names}")
        return self


class ReportConfig(_Section):
    """Stage ``report``: one self-contained HTML page per run (docs/report.md)."""

    dir: str = Field(
        "./data/reports", description="Reports are written to <dir>/<run id>/report.html (and summary.txt)."
    )
    top_recommendations: int = Field(5, ge=1, description="Recommendations named in the plain-text summary.")
    confidence_bins: int = Field(20, ge=2, description="Bins of the match-confidence histogram.")
    dpi: int = Field(90, ge=50, le=300, description="Resolution of the inline PNG plots.")


class Config(_Section):
    """The whole configuration."""

    spark: SparkConfig = SparkConfig()
    storage: StorageConfig = StorageConfig()
    tracking: TrackingConfig = TrackingConfig()
    run: RunConfig = RunConfig()
    generate: GenerateConfig = GenerateConfig()
    ingest: IngestConfig = IngestConfig()
    stitch: StitchConfig = StitchConfig()
    features: FeaturesConfig = FeaturesConfig()
    segment: SegmentConfig = SegmentConfig()
    clv: ClvConfig = ClvConfig()
    insights: InsightsConfig = InsightsConfig()
    report: ReportConfig = ReportConfig()
    privacy: PrivacyConfig = PrivacyConfig()

    # (path) -> value as written, for values that referenced ${NAME} (see loggable())
    _written: dict[tuple[str, ...], Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check_invariants(self) -> Config:
        if self.generate.preset == "custom" and self.generate.n_people is None:
            raise ValueError("generate.n_people is required when generate.preset is 'custom'")
        if self.insights.window_days not in self.features.windows_days:
            raise ValueError(
                f"insights.window_days ({self.insights.window_days}) must be one of features.windows_days "
                f"{self.features.windows_days}"
            )
        return self

    def flat(self) -> dict[str, Any]:
        """The config as ``{"a.b.c": value}`` (values expanded: not for logging)."""
        return flatten(self.model_dump(mode="json"))

    def loggable(self) -> dict[str, Any]:
        """The config as written, for MLflow: ``${NAME}`` references unexpanded and every
        secret redacted (``redact``)."""
        tree: dict[str, Any] = self.model_dump(mode="json")
        for path, written in self._written.items():
            node: Any = tree
            for part in path[:-1]:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and path[-1] in node:
                node[path[-1]] = written
        out: dict[str, Any] = redact(tree)
        return out


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# A key naming a secret: its value is never logged nor echoed in an error.
SECRET_NAME = re.compile(
    r"(?i)(password|passwd|pwd|secret|token|credential|keytab|signature|api_?key|access[._-]?key|"
    r"private[._-]?key|account[._-]?key|(^|[._-])key([._-]|$))"
)
# names that hold the name of a variable or a path, never a secret
_NOT_SECRET = re.compile(r"(?i)(_env|^key_env|^key_file|^require_key)$")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")
# a URL, JDBC or connection-string parameter naming a secret (access_token=, AccountKey=,
# X-Amz-Signature=, sig=, user=, ...): its value is redacted
_SECRET_PARAM = re.compile(
    r"(?i)([A-Za-z0-9_.-]*(?:password|passwd|pwd|secret|token|key|sig|signature|credential|user|username)"
    r"[A-Za-z0-9_.-]*)=[^&;,\s]*"
)
REDACTED = "***"


def redact_text(text: str) -> str:
    """``text`` with a URI's user info and secret query parameters (``password=...``)
    replaced by ``***``: for any value that may be a URL (tracking URI, JDBC URL)."""
    text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


def is_secret_key(path: Sequence[Any]) -> bool:
    """Whether a config path names a secret: a key in it matches ``SECRET_NAME``, or it is
    a reader option of a source (JDBC options carry credentials)."""
    names = [str(p) for p in path]
    if names and _NOT_SECRET.search(names[-1]):
        return False
    if any(SECRET_NAME.search(n) for n in names):
        return True
    return "options" in names[:-1] and names[0] == "ingest"


def redact(tree: Any, path: tuple[str, ...] = ()) -> Any:
    """A copy of a config tree with secrets replaced by ``***`` (``is_secret_key``) and
    URIs' user info and secret parameters removed (``redact_text``)."""
    if isinstance(tree, Mapping):
        return {k: redact(v, (*path, str(k))) for k, v in tree.items()}
    if isinstance(tree, list):
        return [redact(v, path) for v in tree]
    if path and is_secret_key(path) and tree not in (None, "", {}, []):
        return REDACTED
    return redact_text(tree) if isinstance(tree, str) else tree


def _expand_env(value: Any, source: str, key: str) -> Any:
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{source}: key '{key}': environment variable ${{{name}}} is not set")
            return os.environ[name]

        return _ENV_REF.sub(repl, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, source, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, source, key) for v in value]
    return value


def _read_yaml(path: Path, chain: Sequence[Path] = ()) -> list[tuple[str, dict[str, Any]]]:
    """The file and its ``extends`` ancestors as (source, mapping), base first."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.resolve() in [p.resolve() for p in chain]:
        raise ConfigError(f"{path}: 'extends' forms a cycle")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        # the position and the problem, never the offending line (it may hold a secret)
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    base = data.pop("extends", None)
    layers: list[tuple[str, dict[str, Any]]] = []
    if base is not None:
        layers.extend(_read_yaml(path.parent / str(base), [*chain, path]))
    layers.append((str(path), data))
    return layers


def _record_written(value: Any, path: tuple[str, ...], written: dict[tuple[str, ...], Any]) -> None:
    """Remember, by path, every value under ``path`` that references ``${NAME}``, as written
    (what is logged instead of the expanded value); forget what an earlier layer set there."""
    for old in [p for p in written if p[: len(path)] == path]:
        del written[old]
    if isinstance(value, Mapping):
        for k, v in value.items():
            _record_written(v, (*path, str(k)), written)
    elif _ENV_REF.search(str(value)):
        written[path] = value


def _merge(
    target: dict[str, Any],
    layer: Mapping[str, Any],
    source: str,
    provenance: dict[str, str],
    written: dict[tuple[str, ...], Any],
    path: tuple[str, ...] = (),
) -> None:
    for key, value in layer.items():
        here = (*path, str(key))
        dotted = ".".join(here)
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value, source, provenance, written, here)
        else:
            _record_written(value, here, written)
            target[key] = _expand_env(value, source, dotted)
        provenance[dotted] = source


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError("--set: expected KEY=VALUE, e.g. spark.master=local[2]")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {key.strip()!r}: empty key segment")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return parts, value


def _describe_error(err: Mapping[str, Any], provenance: Mapping[str, str], default: str) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    source = default
    # The most specific key (or its nearest parent) that a file or override set.
    parts = loc.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in provenance:
            source = provenance[".".join(parts[:i])]
            break
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{source}: unknown key '{loc}'"
    got = err.get("input")
    # never a secret, nor a whole mapping or list (a source entry may hold a password)
    if is_secret_key(parts) or isinstance(got, Mapping | list):
        shown = f"a {type(got).__name__}"
    else:
        shown = repr(redact_text(got)) if isinstance(got, str) else repr(got)
    return f"{source}: key '{loc}': {redact_text(str(err['msg']))} (got {shown})"


def load_config(path: str | os.PathLike[str] | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load and validate the config.

    Args:
        path: a YAML file (its ``extends`` chain is followed); None gives the built-in
            defaults, which equal ``conf/local.yaml``.
        overrides: ``a.b.c=value`` strings applied last.

    Returns:
        The frozen, validated ``Config``.

    Raises:
        ConfigError: naming the file (or ``--set``), the key and what was expected.
    """
    merged: dict[str, Any] = {}
    provenance: dict[str, str] = {}
    written: dict[tuple[str, ...], Any] = {}
    layers = _read_yaml(Path(path)) if path is not None else []
    for source, layer in layers:
        _merge(merged, layer, source, provenance, written)
    for text in overrides:
        parts, value = _parse_override(text)
        _record_written(None, tuple(parts), written)
        node = merged
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
        provenance[".".join(parts)] = f"--set {'.'.join(parts)}"  # the key: a value may be a secret
    default_source = layers[-1][0] if layers else "defaults"
    try:
        cfg = Config.model_validate(merged)
    except ValidationError as exc:
        messages = [_describe_error(e, provenance, default_source) for e in exc.errors()]
        raise ConfigError("; ".join(messages)) from None
    cfg._written = written
    return cfg
