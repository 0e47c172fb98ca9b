"""Settings of stage ``stitch`` (also ``StitchSettings`` of ``custseg.stitch.stitch_identities``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from custseg import reference
from custseg.contract import IDENTITY_FIELDS, SOURCE_SYSTEMS
from custseg.settings.base import Section

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


class StitchConfig(Section):
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
