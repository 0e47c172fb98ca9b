"""Standardisation of identity fields as Spark column functions.

Each function takes a raw column and returns the standardised column, null where the
value is empty or a placeholder. Phones go through the ``phonenumbers`` library (a
vectorised pandas UDF, parsing each distinct value of a batch once); everything else is
built-in Spark functions, so the plan stays in the JVM.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd
import phonenumbers
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.functions import pandas_udf

from custseg.config import StitchConfig
from custseg.contract import IDENTITY_FIELDS

_ACCENTED = "àáâãäåāăąçćčďèéêëēėęěğìíîïīįıłñńňòóôõöøōőŕřśšşťùúûüūůűųýÿžźż"
_PLAIN = "aaaaaaaaacccdeeeeeeeegiiiiiiilnnnooooooooorrsssstuuuuuuuuyyzzz"
_ADDRESS_WORDS = {
    "street": "st",
    "road": "rd",
    "avenue": "ave",
    "lane": "ln",
    "drive": "dr",
    "close": "cl",
    "court": "ct",
    "crescent": "cres",
    "place": "pl",
    "square": "sq",
    "gardens": "gdns",
    "terrace": "ter",
    "apartment": "flat",
    "apt": "flat",
}


def _blank_to_null(c: Column) -> Column:
    return F.when(F.length(c) > 0, c)


def not_placeholder(raw: Column, placeholders: Iterable[str]) -> Column:
    """``raw`` trimmed, or null when it is empty or (case-folded) one of ``placeholders``."""
    trimmed = F.trim(raw.cast("string"))
    values = sorted({p.strip().lower() for p in placeholders})
    return F.when((F.length(trimmed) > 0) & ~F.lower(trimmed).isin(values), trimmed)


def fold(c: Column) -> Column:
    """Lower case with Latin accents removed."""
    return F.translate(F.lower(c), _ACCENTED, _PLAIN)


def name(raw: Column, placeholders: Iterable[str]) -> Column:
    """Lower case, accents folded, apostrophes and dots dropped, other punctuation to a
    space, spaces collapsed: ``"  O'Brien-Smith "`` -> ``"obrien smith"``."""
    c = fold(not_placeholder(raw, placeholders))
    c = F.regexp_replace(c, "['`.\u2019]", "")
    c = F.regexp_replace(c, "[^a-z]+", " ")
    return _blank_to_null(F.trim(c))


def canonical_first_name(first: Column, nicknames: Mapping[str, str]) -> Column:
    """The formal first name of a standardised first name (``bob`` -> ``robert``)."""
    if not nicknames:
        return first
    table = F.create_map(*[F.lit(x) for k, v in sorted(nicknames.items()) for x in (k.lower(), v.lower())])
    return F.coalesce(F.element_at(table, first), first)


def email(raw: Column, cfg: StitchConfig) -> Column:
    """Lower case; googlemail -> gmail; plus-tags dropped and dots removed where the
    provider ignores them; null unless it looks like ``local@domain.tld``."""
    c = F.lower(not_placeholder(raw, cfg.placeholders))
    c = F.when(c.rlike(r"^[^@\s]+@[^@\s]+\.[^@\s]+$"), c)
    local = F.substring_index(c, "@", 1)
    domain = F.regexp_replace(F.substring_index(c, "@", -1), "^googlemail\\.com$", "gmail.com")
    plus = [d.lower() for d in cfg.email_plus_tag_domains]
    dots = [d.lower() for d in cfg.email_dot_insensitive_domains]
    local = F.when(domain.isin(plus), F.substring_index(local, "+", 1)).otherwise(local)
    local = F.when(domain.isin(dots), F.regexp_replace(local, "\\.", "")).otherwise(local)
    out = F.concat(local, F.lit("@"), domain)
    return F.when(F.length(local) > 0, out)


def email_local(std_email: Column) -> Column:
    return F.substring_index(std_email, "@", 1)


def _e164_series(values: pd.Series, regions: pd.Series) -> pd.Series:
    def one(v: str | None, region: str) -> str | None:
        if v is None:
            return None
        try:
            number = phonenumbers.parse(v, region)
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_possible_number(number):
            return None
        national = str(number.national_number)
        if len(set(national)) == 1:  # 0000000, 1111111: a placeholder in disguise
            return None
        return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))

    if regions.nunique(dropna=False) <= 1:  # one region in the batch (the usual case)
        region = str(regions.iloc[0]) if len(regions) else "ZZ"
        by_value = {v: one(v, region) for v in values.dropna().unique()}
        return pd.Series([by_value.get(v) for v in values], index=values.index, dtype=object)
    keys = list(zip(values, regions, strict=True))
    lookup = {k: one(*k) for k in set(keys) if k[0] is not None}
    return pd.Series([lookup.get(k) for k in keys], index=values.index, dtype=object)


def phone(raw: Column, cfg: StitchConfig, region: Column | None = None) -> Column:
    """E.164 (``+447123456789``) by ``phonenumbers``, national numbers read in the record's
    ``region`` (default ``cfg.default_region``); null when it cannot be a phone number."""

    @pandas_udf(T.StringType())  # type: ignore[call-overload]
    def to_e164(values: pd.Series, regions: pd.Series) -> pd.Series:
        return _e164_series(values, regions)

    cleaned = not_placeholder(raw, cfg.placeholders)
    out: Column = to_e164(cleaned, region if region is not None else F.lit(cfg.default_region.upper()))
    return out


# Postcode formats with a canonical spacing, by region: (pattern of the compact form,
# where the space goes counted from the end). Any other value, or a region not listed,
# keeps its compact form (upper case, letters and digits only): never dropped.
_POSTCODE_SPACED = {
    "GB": (r"^[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}$", 3),  # SW1A 1AA
    "CA": (r"^[A-Z][0-9][A-Z][0-9][A-Z][0-9]$", 3),  # K1A 0B1
    "NL": (r"^[0-9]{4}[A-Z]{2}$", 2),  # 1234 AB
    "IE": (r"^[A-Z][0-9][0-9W][A-Z0-9]{4}$", 4),  # D02 X285
}


def postcode(raw: Column, placeholders: Iterable[str], region: Column | None = None) -> Column:
    """Upper case, letters and digits only; in a region with a known spaced format
    (GB, CA, NL, IE) and matching it, one space where that format puts it (``"sw1a1aa"``
    -> ``"SW1A 1AA"``); US ZIP+4 -> the 5-digit ZIP. Any other value keeps that compact
    form: a postcode from a country not listed, or one that matches no format, is never
    dropped (a 4-digit Australian postcode stays ``"4223"``)."""
    c = _blank_to_null(F.regexp_replace(F.upper(not_placeholder(raw, placeholders)), "[^A-Z0-9]", ""))
    region = region if region is not None else F.lit("GB")
    out = c
    for code, (pattern, tail) in _POSTCODE_SPACED.items():
        spaced = F.concat(c.substr(F.lit(1), F.length(c) - tail), F.lit(" "), F.substring(c, -tail, tail))
        out = F.when((region == code) & c.rlike(pattern), spaced).otherwise(out)
    return F.when((region == "US") & c.rlike(r"^[0-9]{9}$"), c.substr(1, 5)).otherwise(out)


def date_of_birth(
    raw: Column,
    placeholders: Iterable[str],
    as_of: Column | None = None,
    formats: Iterable[str] | None = None,
) -> Column:
    """The date, null for placeholder dates, before 1900-01-02 or after ``as_of``. A
    string is read with the first of ``formats`` (Spark datetime patterns) that parses
    it; a value none parses is null (counted by ``standardisation_counts``)."""
    dates = []
    for p in placeholders:
        try:
            dates.append(pd.Timestamp(p).date().isoformat())
        except ValueError:
            continue
    if formats is None:
        d = raw.cast("date")
    else:
        text = F.trim(raw.cast("string"))
        d = F.coalesce(*[F.try_to_timestamp(text, F.lit(f)).cast("date") for f in formats])
    upper = as_of if as_of is not None else F.current_date()
    ok = d.isNotNull() & ~d.cast("string").isin(dates) & (d > F.lit("1900-01-01").cast("date")) & (d <= upper)
    return F.when(ok, d)


def date_up_to_swap(d: Column) -> Column:
    """A date as ``year-min(month, day)-max(month, day)``: equal for a date and the same
    date with day and month swapped (typed the other way round), null for null."""
    return F.when(
        d.isNotNull(),
        F.concat_ws(
            "-", F.year(d), F.least(F.month(d), F.dayofmonth(d)), F.greatest(F.month(d), F.dayofmonth(d))
        ),
    )


def address(raw: Column, placeholders: Iterable[str]) -> Column:
    """Folded, punctuation to spaces, common street words abbreviated, spaces collapsed."""
    c = F.trim(F.regexp_replace(fold(not_placeholder(raw, placeholders)), "[^a-z0-9]+", " "))
    # One lookup per word, not one regex pass per street word (docs/architecture.md, "Measured choices").
    short = F.create_map(*[F.lit(x) for pair in _ADDRESS_WORDS.items() for x in pair])
    words = F.transform(F.split(c, " "), lambda w: F.coalesce(F.element_at(short, w), w))
    return _blank_to_null(F.array_join(words, " "))


def identifier(raw: Column, placeholders: Iterable[str]) -> Column:
    """Device ids and account numbers: trimmed, upper case, inner spaces removed."""
    return _blank_to_null(F.regexp_replace(F.upper(not_placeholder(raw, placeholders)), "\\s+", ""))


def record_region(columns: list[str], cfg: StitchConfig) -> Column:
    """A record's region (ISO 3166 alpha-2, upper case) for phones and postcodes: its
    ``country`` column when records carry one, else ``stitch.source_regions`` of its
    source system, else ``stitch.default_region``."""
    choices = []
    if "country" in columns:
        choices.append(_blank_to_null(F.upper(F.trim(F.col("country").cast("string")))))
    if cfg.source_regions:
        table = F.create_map(
            *[F.lit(x) for k, v in sorted(cfg.source_regions.items()) for x in (k, v.upper())]
        )
        choices.append(F.element_at(table, F.col("source_system").cast("string")))
    return F.coalesce(*choices, F.lit(cfg.default_region.upper()))


RAW_PREFIX = "raw_"


def standardise_records(records: DataFrame, cfg: StitchConfig, *, keep_raw: bool = False) -> DataFrame:
    """One row per identity record: ``rid`` (``source_system:source_id``), the source
    keys, ``updated_at``, the standardised fields, ``first_name_canon`` (nicknames
    resolved) and ``email_local``. Identity columns missing from ``records`` are null.
    With ``keep_raw`` also ``raw_<field>``: each value as given, for
    ``standardisation_counts``."""
    missing = [c for c in ("source_system", "source_id") if c not in records.columns]
    if missing:
        raise ValueError(f"identity records need columns {missing}; got {records.columns}")
    raw = records
    for c in IDENTITY_FIELDS:
        if c not in raw.columns:
            raw = raw.withColumn(c, F.lit(None).cast("date" if c == "date_of_birth" else "string"))
    if "updated_at" not in raw.columns:
        raw = raw.withColumn("updated_at", F.lit(None).cast("timestamp"))
    ph = cfg.placeholders
    region = record_region(records.columns, cfg)
    dob_is_text = dict(raw.dtypes)["date_of_birth"] not in ("date", "timestamp", "timestamp_ntz")
    first = name(F.col("first_name"), ph)
    std = raw.select(
        F.concat_ws(":", "source_system", "source_id").alias("rid"),
        "source_system",
        "source_id",
        F.coalesce("updated_at", *(["created_at"] if "created_at" in raw.columns else [])).alias(
            "updated_at"
        ),
        first.alias("first_name"),
        name(F.col("last_name"), ph).alias("last_name"),
        email(F.col("email"), cfg).alias("email"),
        phone(F.col("phone"), cfg, region).alias("phone"),
        date_of_birth(F.col("date_of_birth"), ph, formats=cfg.date_formats if dob_is_text else None).alias(
            "date_of_birth"
        ),
        postcode(F.col("postcode"), ph, region).alias("postcode"),
        address(F.col("address"), ph).alias("address"),
        identifier(F.col("device_id"), ph).alias("device_id"),
        identifier(F.col("account_number"), ph).alias("account_number"),
        *([F.col(c).cast("string").alias(RAW_PREFIX + c) for c in IDENTITY_FIELDS] if keep_raw else []),
    )
    return std.withColumns(
        {
            "first_name_canon": canonical_first_name(F.col("first_name"), cfg.nicknames),
            "email_local": email_local(F.col("email")),
        }
    )


def standardisation_counts(std: DataFrame, cfg: StitchConfig) -> dict[str, int]:
    """Per field, from ``standardise_records(..., keep_raw=True)`` in one aggregation:
    ``records``, and ``standardise.<field>.present`` (a non-blank value given),
    ``.placeholder`` (nulled as a placeholder), ``.nulled`` (nulled as no valid value of
    the field: an impossible phone, an unreadable date, an email without a domain) and
    ``.changed`` (kept in another form: case, spacing, E.164...)."""
    aggs = [F.count("*").alias("records")]
    for f in IDENTITY_FIELDS:
        given = F.trim(F.col(RAW_PREFIX + f))
        present = F.length(given) > 0
        placeholder = present & not_placeholder(F.col(RAW_PREFIX + f), cfg.placeholders).isNull()
        value = F.col(f).cast("string")
        aggs += [
            F.count(F.when(present, 1)).alias(f"standardise.{f}.present"),
            F.count(F.when(placeholder, 1)).alias(f"standardise.{f}.placeholder"),
            F.count(F.when(present & ~placeholder & value.isNull(), 1)).alias(f"standardise.{f}.nulled"),
            F.count(F.when(value.isNotNull() & (value != given), 1)).alias(f"standardise.{f}.changed"),
        ]
    row = std.agg(*aggs).collect()[0]
    return {k: int(v or 0) for k, v in row.asDict().items()}
