"""Draw the synthetic customer world as Spark DataFrames (no I/O here).

People are ``spark.range`` rows; every other table is an ``explode`` of person-level
arrays, so nothing is collected and no Python loop runs over people. Every random value is
``uniform(seed, field, ids...)`` (see ``custseg.generate.random``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.functions import pandas_udf
from pyspark.sql.window import Window
from scipy import special, stats

from custseg.config import NoiseConfig
from custseg.generate import spec as S
from custseg.generate.random import (
    bernoulli,
    choice,
    gamma_ppf,
    normal,
    poisson_ppf,
    randint,
    uniform,
    weighted_choice,
    weighted_index,
)

SYSTEMS = tuple(S.SYSTEM_WEIGHTS)
MAX_RECORDS = 8


@dataclass(frozen=True)
class Calendar:
    """The observed history: ``days`` days ending with ``end_date`` (inclusive)."""

    end_date: date
    years: int

    @property
    def days(self) -> int:
        return 365 * self.years

    @property
    def start_date(self) -> date:
        return self.end_date - timedelta(days=self.days - 1)

    @property
    def start_epoch(self) -> int:
        start = datetime.combine(self.start_date, datetime.min.time(), tzinfo=UTC)
        return int(start.timestamp())

    def timestamp(self, day_offset: Column) -> Column:
        """A UTC timestamp ``day_offset`` (fractional days) after the start."""
        return F.timestamp_seconds(F.floor(F.lit(self.start_epoch) + day_offset * 86400.0).cast("long"))

    def date(self, day_offset: Column) -> Column:
        """The calendar date ``floor(day_offset)`` days after the start."""
        return F.date_add(F.lit(self.start_date), F.floor(day_offset).cast("int"))


def _by_segment(values: Sequence[float | str], idx: str = "segment_idx") -> Column:
    return F.element_at(F.array(*[F.lit(v) for v in values]), F.col(idx) + 1)


def _seg_attr(name: str) -> Column:
    return _by_segment([getattr(s, name) for s in S.SEGMENTS])


def _mix_id(x: Column, salt: int, bits: int) -> Column:
    """A bijection of [0, 2^bits): odd multiplier then xor, so ids stay unique."""
    mask = (1 << bits) - 1
    mult = 0x9E3779B1 | 1
    mixed = F.pmod(x * F.lit(mult), F.lit(1 << bits))
    return mixed.bitwiseXOR(F.lit((salt * 0x5BD1E995) & mask)).cast("long")


def record_system(seed: int, person: Column, idx: Column) -> Column:
    """The source system of a person's record ``idx`` (0 is the first record)."""
    return weighted_choice(seed, "system", SYSTEMS, list(S.SYSTEM_WEIGHTS.values()), person, idx)


def record_source_id(seed: int, system: Column, person: Column, idx: Column) -> Column:
    """The id a source system knows the record by; unique by construction."""
    n = _mix_id(person * MAX_RECORDS + idx, seed, 40)
    return (
        F.when(system == "web", F.concat(F.lit("W"), F.lpad(F.hex(n), 10, "0")))
        .when(system == "app", F.concat(F.lit("app-"), F.lower(F.lpad(F.hex(n), 10, "0"))))
        .otherwise(F.concat(F.lit("CC"), F.lpad(n.cast("string"), 13, "0")))
    )


def _ascii_fold(c: Column) -> Column:
    return F.regexp_replace(F.translate(c, "äéëíóöüúñçÉÖÜá", "aeeioouuncEOUa"), "[^A-Za-z]", "")


# ---------------------------------------------------------------- people


def draw_people(
    spark: SparkSession,
    *,
    n_people: int,
    seed: int,
    calendar: Calendar,
    bot_share: float,
    records_per_person: float,
    noise: NoiseConfig,
    partitions: int,
) -> DataFrame:
    """One row per latent person: segment, BG/NBD + Gamma-Gamma draws, demographics."""
    pid = F.col("person_id")
    hh = F.shiftright(pid, 1)  # household: persons 2k and 2k+1

    def u(field: str) -> Column:
        return uniform(seed, field, pid)

    first_names = list(S.FIRST_NAMES)
    nick_map = F.create_map(*[F.lit(x) for k, v in S.FIRST_NAMES.items() if v for x in (k, v)])
    segments = [s.name for s in S.SEGMENTS]
    days = float(calendar.days)

    # Stage 1: segment, acquisition time, and every per-person distribution draw in one
    # pandas UDF (one Python worker per task instead of one per distribution).
    base = (
        spark.range(0, n_people, numPartitions=partitions)
        .withColumnRenamed("id", "person_id")
        .withColumns(
            {
                "is_bot": u("bot") < bot_share,
                "segment_idx": weighted_index(u("segment"), [s.share for s in S.SEGMENTS]),
                "birth": u("birth") * (days - 1.0),
            }
        )
        .withColumns(
            {
                "segment": F.when(F.col("is_bot"), F.lit(S.BOTS.name)).otherwise(
                    F.element_at(F.array(*[F.lit(s) for s in segments]), F.col("segment_idx") + 1)
                ),
                "T": F.lit(days) - F.col("birth"),
                "draws": person_draws(
                    F.struct(
                        u("lambda").alias("u_lambda"),
                        u("p_drop").alias("u_p"),
                        u("nu").alias("u_nu"),
                        u("n_poisson").alias("u_n"),
                        u("n_records").alias("u_records"),
                        _seg_attr("r").alias("r"),
                        _seg_attr("alpha").alias("alpha"),
                        _seg_attr("a").alias("a"),
                        _seg_attr("b").alias("b"),
                        _seg_attr("q").alias("q"),
                        _seg_attr("v").alias("v"),
                        (F.lit(days) - F.col("birth")).alias("T"),
                        F.col("is_bot").alias("is_bot"),
                        F.lit(records_per_person - 1.0).alias("extra_records_mean"),
                    )
                ),
            }
        )
        .select("*", "draws.*")
        .drop("draws")
    )
    # Stage 2: BG/NBD purchase history: Poisson arrivals over (birth, T], truncated at
    # the dropout purchase drawn from Geometric(p_drop).
    history = (
        base.withColumns(
            {
                "dropout_after": F.least(
                    F.lit(1_000_000),
                    F.greatest(
                        F.lit(1),
                        F.ceil(F.log1p(-u("dropout")) / F.log1p(-F.greatest(F.col("p_drop"), F.lit(1e-9)))),
                    ),
                ).cast("int"),
                "n_records": F.least(F.lit(MAX_RECORDS), F.col("n_records")).cast("int"),
            }
        )
        .withColumns(
            {
                "n_repeat": F.least("n_poisson", "dropout_after"),
                "is_dropped": ~F.col("is_bot") & (F.col("n_poisson") >= F.col("dropout_after")),
            }
        )
        .withColumn(
            "repeat_times",
            F.when(
                F.col("n_repeat") > 0,
                F.slice(
                    F.array_sort(
                        F.transform(
                            F.sequence(F.lit(1), F.col("n_poisson")),
                            lambda k: F.col("birth") + uniform(seed, "repeat_t", pid, k) * F.col("T"),
                        )
                    ),
                    1,
                    F.col("n_repeat"),
                ),
            ).otherwise(F.array().cast("array<double>")),
        )
        .withColumn(
            "alive_until",
            F.when(F.col("is_dropped"), F.element_at("repeat_times", F.col("n_repeat"))).otherwise(
                F.lit(days)
            ),
        )
    )
    # Stage 3: demographics, company, contact details.
    common = u("common_name") < noise.common_name
    people = history.withColumns(
        {
            "is_common_name": common,
            "first_name": F.when(common, F.lit("John"))
            .when(u("first_head") < S.FIRST_NAME_HEAD_SHARE, choice(seed, "first", first_names, pid))
            .otherwise(choice(seed, "first_tail", S.FIRST_NAMES_TAIL, pid)),
            "last_name": F.when(common, F.lit("Smith")).otherwise(_surname(seed, "last", pid)),
            "age": randint(seed, "age", 22, 70, pid),
            "region": F.when(common, F.lit("London")).otherwise(
                weighted_choice(seed, "region", S.REGIONS, (0.3, 0.15, 0.14, 0.1, 0.15, 0.06, 0.1), pid)
            ),
            "company_size": _segment_weighted(
                seed, "company_size", S.COMPANY_SIZES, "company_size_weights", pid
            ),
            "industry": _segment_weighted(seed, "industry", S.INDUSTRIES, "industry_weights", pid),
            "plan": _segment_weighted(seed, "plan", S.PLANS, "plan_weights", pid),
            "company_domain": F.concat(
                F.lit("co"), F.lower(F.hex(_mix_id(pid, seed + 7, 32))), F.lit(".co.uk")
            ),
            "is_household": uniform(seed, "household", hh) < noise.household_share,
            "is_shared_device": uniform(seed, "shared_device", hh) < noise.shared_device,
            "email_provider": choice(seed, "provider", S.EMAIL_PROVIDERS, pid),
            "account_number": F.concat(
                F.lit("ACC"), F.lpad(_mix_id(pid, seed + 3, 30).cast("string"), 10, "0")
            ),
            "house_number": randint(seed, "house", 1, 220, pid),
            "street": choice(seed, "street", S.STREETS, pid),
            "flat": F.when(u("flat") < 0.1, randint(seed, "flat_no", 1, 40, pid)),
        }
    ).withColumns(
        {
            "nickname": nick_map[F.col("first_name")],
            "date_of_birth": F.date_sub(
                F.add_months(F.lit(calendar.end_date), -12 * F.col("age")),
                randint(seed, "dob_day", 0, 364, pid),
            ),
            "email": _person_email(seed, pid, hh),
            "phone_digits": _phone_digits(seed, pid, hh),
            "device_id": F.concat(
                F.lit("dev-"),
                F.lower(
                    F.hex(
                        F.xxhash64(
                            F.lit(seed),
                            F.lit("device"),
                            F.when(F.col("is_shared_device"), -1 - hh).otherwise(pid),
                        )
                    )
                ),
            ),
            "postcode": _postcode(seed, "postcode", pid),
        }
    )
    return _unique_mailboxes(people, hh, partitions)


PERSON_DRAWS = T.StructType(
    [
        T.StructField("lambda", T.DoubleType()),
        T.StructField("p_drop", T.DoubleType()),
        T.StructField("nu", T.DoubleType()),
        T.StructField("n_poisson", T.IntegerType()),
        T.StructField("n_records", T.IntegerType()),
    ]
)


@pandas_udf(PERSON_DRAWS)  # type: ignore[call-overload]
def person_draws(x: pd.DataFrame) -> pd.DataFrame:
    """Per-person inverse-CDF draws: lambda ~ Gamma(r, rate alpha), p ~ Beta(a, b),
    nu ~ Gamma(q, rate v), repeat arrivals ~ Poisson(lambda T), records ~ 1 + Poisson."""
    lam = special.gammaincinv(x["r"].to_numpy(), x["u_lambda"].to_numpy()) / x["alpha"].to_numpy()
    lam = np.where(x["is_bot"].to_numpy(), 0.0, lam)
    p_drop = special.betaincinv(x["a"].to_numpy(), x["b"].to_numpy(), x["u_p"].to_numpy())
    nu = special.gammaincinv(x["q"].to_numpy(), x["u_nu"].to_numpy()) / x["v"].to_numpy()
    mu = lam * x["T"].to_numpy()
    n = np.where(mu > 0, stats.poisson.ppf(x["u_n"].to_numpy(), np.where(mu > 0, mu, 1.0)), 0.0)
    extra = stats.poisson.ppf(x["u_records"].to_numpy(), x["extra_records_mean"].to_numpy())
    records = np.where(x["is_bot"].to_numpy(), 1, 1 + np.nan_to_num(extra))
    return pd.DataFrame(
        {
            "lambda": lam,
            "p_drop": p_drop,
            "nu": nu,
            "n_poisson": np.nan_to_num(n).astype("int32"),
            "n_records": records.astype("int32"),
        }
    )


def _segment_weighted(seed: int, field: str, values: Sequence[str], attr: str, *ids: Column) -> Column:
    """A categorical whose weights depend on the person's segment (uniform for bots)."""
    u = uniform(seed, field, *ids)
    expr: Column = F.element_at(
        F.array(*[F.lit(v) for v in values]),
        F.floor(u * len(values)).cast("int") + 1,
    )
    for i, seg in enumerate(S.SEGMENTS):
        weights = getattr(seg, attr)
        pick = F.element_at(F.array(*[F.lit(v) for v in values]), weighted_index(u, weights) + 1)
        expr = F.when(~F.col("is_bot") & (F.col("segment_idx") == i), pick).otherwise(expr)
    return expr


def _person_email(seed: int, pid: Column, hh: Column) -> Column:
    first = F.lower(_ascii_fold(F.col("first_name")))
    last = F.lower(_ascii_fold(F.col("last_name")))
    style = randint(seed, "email_style", 0, 3, pid)
    digits = randint(seed, "email_digits", 1, 99, pid).cast("string")
    local = (
        F.when(style == 0, F.concat_ws(".", first, last))
        .when(style == 1, F.concat(F.substring(first, 1, 1), last, digits))
        .when(style == 2, F.concat(first, F.lit("_"), last))
        .otherwise(F.concat(first, last, digits))
    )
    # One address for both members of a household, made from a surname drawn per household.
    family_name = F.lower(_ascii_fold(_surname(seed, "hh_last", hh)))
    family = F.concat(F.lit("the"), family_name, F.lit("family"), (F.pmod(hh, F.lit(997))).cast("string"))
    provider = F.col("email_provider")
    household_provider = choice(seed, "hh_provider", S.EMAIL_PROVIDERS, hh)
    return F.when(F.col("is_household"), F.concat(family, F.lit("@"), household_provider)).otherwise(
        F.concat(local, F.lit("@"), provider)
    )


def _surname(seed: int, field: str, *ids: Column) -> Column:
    """A surname: one of the common head, else a compound from the long tail."""
    tail = F.concat(
        choice(seed, f"{field}_prefix", S.SURNAME_PREFIXES, *ids),
        choice(seed, f"{field}_suffix", S.SURNAME_SUFFIXES, *ids),
    )
    head = uniform(seed, f"{field}_head", *ids) < S.LAST_NAME_HEAD_SHARE
    return F.when(head, choice(seed, field, S.LAST_NAMES, *ids)).otherwise(tail)


def _unique_mailboxes(people: DataFrame, hh: Column, partitions: int) -> DataFrame:
    """Give every mailbox one owner, as a mail provider does.

    Name-made addresses collide (two John Smiths both want john.smith@gmail.com); the
    provider gives the address to the first and the others add a number. The owner of a
    household address is the household. Addresses are compared with the local part's
    dots removed for every provider (gmail ignores them, so the standardised address is
    unique too; elsewhere this renames a few more than needed);
    ``_<n>`` can end no name-made local part, so the renamed addresses collide with none.
    The renamed persons (a tenth or more of all people) are joined back by a shuffle on
    ``person_id`` into ``partitions`` partitions, as many as the people had: broadcasting
    them would pass a share of all people through the driver.
    """
    local = F.substring_index("email", "@", 1)
    domain = F.substring_index("email", "@", -1)
    owner = F.when(F.col("is_household"), hh).otherwise(F.col("person_id"))
    mailbox = F.concat(F.regexp_replace(local, r"\.", ""), F.lit("@"), domain)
    rank = F.dense_rank().over(Window.partitionBy(mailbox).orderBy(F.col("is_household"), owner))
    renamed = (
        people.select(
            "person_id",
            F.concat(local, F.lit("_"), rank.cast("string"), F.lit("@"), domain).alias("renamed"),
            rank.alias("rank"),
        )
        .where(F.col("rank") > 1)
        .drop("rank")
    )
    return (
        people.repartition(partitions, "person_id")
        .join(renamed.repartition(partitions, "person_id"), "person_id", "left")
        .withColumn("email", F.coalesce("renamed", "email"))
        .drop("renamed")
    )


def _phone_digits(seed: int, pid: Column, hh: Column) -> Column:
    """Ten national digits without the trunk 0: a mobile, or the household's landline."""
    mobile = F.concat(
        F.lit("7"), F.lpad(F.floor(uniform(seed, "mobile", pid) * 1e9).cast("long").cast("string"), 9, "0")
    )
    landline = F.concat(
        F.lit("207"), F.lpad(F.floor(uniform(seed, "landline", hh) * 1e7).cast("long").cast("string"), 7, "0")
    )
    return F.when(F.col("is_household"), landline).otherwise(mobile)


def _postcode(seed: int, field: str, *ids: Column) -> Column:
    areas = F.create_map(
        *[
            x
            for region, codes in S.POSTCODE_AREAS.items()
            for x in (F.lit(region), F.array(*[F.lit(c) for c in codes]))
        ]
    )
    area_list = areas[F.col("region")]
    area = F.element_at(
        area_list, F.floor(uniform(seed, f"{field}_area", *ids) * F.size(area_list)).cast("int") + 1
    )
    letters = "ABDEFGHJLNPQRSTUWXYZ"
    return F.concat(
        area,
        randint(seed, f"{field}_district", 1, 20, *ids).cast("string"),
        F.lit(" "),
        randint(seed, f"{field}_sector", 0, 9, *ids).cast("string"),
        choice(seed, f"{field}_unit1", list(letters), *ids),
        choice(seed, f"{field}_unit2", list(letters), *ids),
    )


# ---------------------------------------------------------------- identity records


def _typo(seed: int, field: str, s: Column, ids: Sequence[Column]) -> Column:
    n = F.length(s)
    pos = (F.floor(uniform(seed, f"{field}_pos", *ids) * F.greatest(n - 1, F.lit(1))) + 1).cast("int")
    op = randint(seed, f"{field}_op", 0, 3, *ids)
    ch = choice(seed, f"{field}_char", list("abcdefghijklmnopqrstuvwxyz"), *ids)
    head = s.substr(F.lit(1), pos - 1)
    return (
        F.when(op == 0, F.concat(head, ch, s.substr(pos, n)))
        .when(op == 1, F.concat(head, s.substr(pos + 1, n)))
        .when(
            op == 2,
            F.concat(head, s.substr(pos + 1, F.lit(1)), s.substr(pos, F.lit(1)), s.substr(pos + 2, n)),
        )
        .otherwise(F.concat(head, ch, s.substr(pos + 1, n)))
    )


def _format_phone(kind: Column, digits: Column) -> Column:
    """National digits (10, no trunk 0) in one of the formats real systems store."""
    d = digits
    return (
        F.when(kind == 0, F.concat(F.lit("+44 "), d.substr(1, 4), F.lit(" "), d.substr(5, 6)))
        .when(kind == 1, F.concat(F.lit("0"), d))
        .when(kind == 2, F.concat(F.lit("0"), d.substr(1, 4), F.lit(" "), d.substr(5, 6)))
        .when(
            kind == 3,
            F.concat(F.lit("0"), d.substr(1, 4), F.lit("-"), d.substr(5, 3), F.lit("-"), d.substr(8, 3)),
        )
        .when(kind == 4, d)
        .when(kind == 5, F.concat(F.lit("+44"), d))
        .otherwise(F.concat(F.lit("(0"), d.substr(1, 4), F.lit(") "), d.substr(5, 6)))
    )


def _email_variant(seed: int, ids: Sequence[Column]) -> Column:
    email = F.col("email")
    local = F.substring_index(email, "@", 1)
    domain = F.substring_index(email, "@", -1)
    kind = randint(seed, "email_variant_kind", 0, 4, *ids)
    dot_pos = (
        F.floor(uniform(seed, "email_dot", *ids) * F.greatest(F.length(local) - 1, F.lit(1))) + 1
    ).cast("int")
    dotted = F.concat(local.substr(F.lit(1), dot_pos), F.lit("."), local.substr(dot_pos + 1, F.length(local)))
    tag = choice(seed, "email_tag", ["news", "shop", "work", "promo"], *ids)
    other = choice(seed, "email_other", S.EMAIL_PROVIDERS, *ids)
    work = F.concat(
        F.lower(_ascii_fold(F.col("first_name"))),
        F.lit("."),
        F.lower(_ascii_fold(F.col("last_name"))),
        F.lit("@"),
        F.col("company_domain"),
    )
    return (
        F.when(
            kind == 0,
            F.concat(
                F.upper(local.substr(1, 1)),
                local.substr(F.lit(2), F.length(local)),
                F.lit("@"),
                F.initcap(domain),
            ),
        )
        .when(
            kind == 1,
            F.concat(F.when(domain == "gmail.com", dotted).otherwise(F.upper(local)), F.lit("@"), domain),
        )
        .when(kind == 2, F.concat(local, F.lit("+"), tag, F.lit("@"), domain))
        .when(kind == 3, F.concat(local, F.lit("@"), other))
        .otherwise(work)
    )


def draw_identity_records(
    people: DataFrame, *, seed: int, noise: NoiseConfig, calendar: Calendar
) -> DataFrame:
    """Identity records of the contract, plus ``person_id`` and the noise flags applied.

    The email variant of kind 0 (capitalised words) is only a change of case and
    punctuation; the other kinds are dots, plus-tags, another provider, a work address.
    """
    pid, idx = F.col("person_id"), F.col("record_idx")
    ids = [pid, idx]

    def flag(field: str, rate: float) -> Column:
        return bernoulli(seed, f"rec_{field}", rate, *ids)

    def present(field: str, by_system: dict[str, float]) -> Column:
        p = F.element_at(
            F.create_map(*[x for k, v in by_system.items() for x in (F.lit(k), F.lit(v))]),
            F.col("source_system"),
        )
        return (uniform(seed, f"has_{field}", *ids) < p) & ~flag(f"missing_{field}", noise.missing_field)

    system = F.col("source_system")
    fn0 = F.when(F.col("is_nickname"), F.col("nickname")).otherwise(F.col("first_name"))
    typo_first = F.col("is_typo") & F.col("typo_in_first")
    typo_last = F.col("is_typo") & ~F.col("typo_in_first")
    recs = (
        people.withColumn("record_idx", F.explode(F.sequence(F.lit(0), F.col("n_records") - 1)))
        .withColumn("source_system", record_system(seed, pid, idx))
        .withColumns(
            {
                "source_id": record_source_id(seed, system, pid, idx),
                "is_nickname": flag("nickname", noise.nickname) & F.col("nickname").isNotNull(),
                "is_typo": flag("typo", noise.typo),
                "typo_in_first": bernoulli(seed, "typo_first", 0.5, *ids),
                "is_swapped": flag("swap", noise.swap_names),
                "is_email_variant": flag("email_variant", noise.email_variant),
                "is_phone_format": flag("phone_format", noise.phone_format),
                "is_dob_swap": flag("dob_swap", noise.dob_swap)
                & (F.dayofmonth("date_of_birth") <= 12)
                & (F.dayofmonth("date_of_birth") != F.month("date_of_birth")),
                "is_moved": flag("moved", noise.moved) & (idx > 0),
                "placeholder_field": F.when(
                    flag("placeholder", noise.placeholder),
                    choice(seed, "placeholder_field", list(S.PLACEHOLDERS), *ids),
                ),
                "created_offset": F.col("birth")
                - uniform(seed, "created", *ids) * 30.0
                + idx * uniform(seed, "created_later", *ids) * F.col("T") / F.col("n_records"),
            }
        )
        .withColumns(
            {
                "fn": F.when(typo_first, _typo(seed, "typo_fn", fn0, ids)).otherwise(fn0),
                "ln": F.when(typo_last, _typo(seed, "typo_ln", F.col("last_name"), ids)).otherwise(
                    F.col("last_name")
                ),
                "rec_email": F.when(F.col("is_email_variant"), _email_variant(seed, ids)).otherwise(
                    F.col("email")
                ),
                "phone_kind": F.when(F.col("is_phone_format"), randint(seed, "phone_kind", 0, 6, *ids))
                .when(system == "call_centre", F.lit(2))
                .when(system == "web", F.lit(5))
                .otherwise(F.lit(0)),
                "rec_dob": F.when(
                    F.col("is_dob_swap"),
                    F.make_date(
                        F.year("date_of_birth"), F.dayofmonth("date_of_birth"), F.month("date_of_birth")
                    ),
                ).otherwise(F.col("date_of_birth")),
                "rec_postcode": F.when(
                    F.col("is_moved"), _postcode(seed, "moved_postcode", pid, idx)
                ).otherwise(F.col("postcode")),
                "rec_address": F.concat_ws(
                    ", ",
                    F.when(
                        F.col("flat").isNotNull() & ~F.col("is_moved"),
                        F.concat(F.lit("Flat "), F.col("flat").cast("string")),
                    ),
                    F.concat_ws(
                        " ",
                        F.when(F.col("is_moved"), randint(seed, "moved_house", 1, 220, *ids))
                        .otherwise(F.col("house_number"))
                        .cast("string"),
                        F.when(F.col("is_moved"), choice(seed, "moved_street", S.STREETS, *ids)).otherwise(
                            F.col("street")
                        ),
                    ),
                    F.col("region"),
                ),
                "updated_offset": F.col("created_offset")
                + uniform(seed, "updated", *ids) * (F.lit(float(calendar.days)) - F.col("created_offset")),
            }
        )
        .withColumns(
            {
                "rec_first": F.when(F.col("is_swapped"), F.col("ln")).otherwise(F.col("fn")),
                "rec_last": F.when(F.col("is_swapped"), F.col("fn")).otherwise(F.col("ln")),
                "rec_phone": _format_phone(F.col("phone_kind"), F.col("phone_digits")),
            }
        )
    )
    ph = F.col("placeholder_field")
    keep_email = present("email", {"web": 1.0, "app": 1.0, "call_centre": 0.5})
    keep_phone = present("phone", {"web": 0.3, "app": 0.6, "call_centre": 1.0})
    keep_dob = present("dob", {"web": 0.4, "app": 0.2, "call_centre": 1.0})
    keep_address = present("address", {"web": 0.7, "app": 0.2, "call_centre": 1.0})
    keep_device = present("device", {"web": 0.6, "app": 1.0, "call_centre": 0.0})
    keep_account = present("account", {"web": 0.3, "app": 0.3, "call_centre": 0.9})
    return recs.select(
        "person_id",
        "record_idx",
        "source_system",
        "source_id",
        F.when(~flag("missing_first", noise.missing_field / 3), F.col("rec_first")).alias("first_name"),
        F.when(~flag("missing_last", noise.missing_field / 3), F.col("rec_last")).alias("last_name"),
        F.when(ph == "email", F.lit(S.PLACEHOLDERS["email"]))
        .when(keep_email, F.col("rec_email"))
        .alias("email"),
        F.when(ph == "phone", F.lit(S.PLACEHOLDERS["phone"]))
        .when(keep_phone, F.col("rec_phone"))
        .alias("phone"),
        F.when(ph == "date_of_birth", F.lit(S.PLACEHOLDERS["date_of_birth"]).cast("date"))
        .when(keep_dob, F.col("rec_dob"))
        .alias("date_of_birth"),
        F.when(ph == "postcode", F.lit(S.PLACEHOLDERS["postcode"]))
        .when(keep_address, F.col("rec_postcode"))
        .alias("postcode"),
        F.when(keep_address, F.col("rec_address")).alias("address"),
        F.when(keep_device, F.col("device_id")).alias("device_id"),
        F.when(keep_account, F.col("account_number")).alias("account_number"),
        calendar.timestamp(F.col("created_offset")).alias("created_at"),
        calendar.timestamp(F.col("updated_offset")).alias("updated_at"),
        "is_nickname",
        "is_typo",
        "is_swapped",
        "is_email_variant",
        "is_phone_format",
        "is_dob_swap",
        "is_moved",
        "placeholder_field",
    )


# ---------------------------------------------------------------- events


def _pick_record(
    seed: int, field: str, prefer: Sequence[str], event_ids: Sequence[Column]
) -> tuple[Column, Column]:
    """(source_system, source_id) of one of the person's records, preferring systems."""
    pid = F.col("person_id")
    all_idx = F.sequence(F.lit(0), F.col("n_records") - 1)
    preferred = F.filter(all_idx, lambda i: record_system(seed, pid, i).isin(*prefer))
    pool = F.when(F.size(preferred) > 0, preferred).otherwise(all_idx)
    idx = F.element_at(pool, (F.floor(uniform(seed, field, *event_ids) * F.size(pool)) + 1).cast("int"))
    system = record_system(seed, pid, idx)
    return system, record_source_id(seed, system, pid, idx)


def _event_id(prefix: str, seed: int, field: str, *ids: Column) -> Column:
    return F.concat(
        F.lit(prefix), F.lpad(F.lower(F.hex(F.xxhash64(F.lit(seed), F.lit(field), *ids))), 16, "0")
    )


def draw_transactions(
    people: DataFrame, *, seed: int, calendar: Calendar, refund_rate: float = 0.005
) -> DataFrame:
    """Purchases (the first at acquisition, repeats from the BG/NBD draws) and refunds."""
    pid, k = F.col("person_id"), F.col("k")
    ids = [pid, k]
    buyers = people.where(~F.col("is_bot"))
    tx = (
        buyers.select(
            "*", F.posexplode(F.concat(F.array(F.col("birth")), F.col("repeat_times"))).alias("k", "tx_t")
        )
        .withColumn("spend", gamma_ppf(uniform(seed, "spend", *ids), _seg_attr("p")) / F.col("nu"))
        .withColumn(
            "discount_share",
            F.least(
                F.lit(0.9),
                F.greatest(
                    F.lit(0.0), _seg_attr("discount_share") * (1.0 + 0.5 * normal(seed, "discount", *ids))
                ),
            ),
        )
    )
    system, source_id = _pick_record(seed, "tx_record", SYSTEMS, ids)
    purchases = tx.select(
        _event_id("T", seed, "tx_id", *ids).alias("transaction_id"),
        system.alias("source_system"),
        source_id.alias("source_id"),
        F.col("tx_t"),
        F.round(F.col("spend"), 2).alias("amount"),
        F.round(F.col("spend") * F.col("discount_share") / (1.0 - F.col("discount_share")), 2).alias(
            "discount"
        ),
        F.round(F.col("spend") / (1.0 - F.col("discount_share")) * _seg_attr("cogs_ratio"), 2).alias("cost"),
        _segment_weighted(seed, "category", S.PRODUCT_CATEGORIES, "category_weights", *ids).alias(
            "product_category"
        ),
        _segment_weighted(seed, "channel", S.SALES_CHANNELS, "channel_weights", *ids).alias("channel"),
        (F.col("tx_t") + 1.0 + 13.0 * uniform(seed, "refund_delay", *ids)).alias("refund_t"),
        (uniform(seed, "refund", *ids) < refund_rate).alias("has_refund"),
    )
    # A refund is a second row (same explode, no second pass): id R..., negative amount.
    with_refunds = purchases.withColumn(
        "is_refund",
        F.explode(
            F.when(
                F.col("has_refund") & (F.col("refund_t") < calendar.days), F.array(F.lit(False), F.lit(True))
            ).otherwise(F.array(F.lit(False)))
        ),
    )
    refund = F.col("is_refund")
    return with_refunds.select(
        F.when(refund, F.concat(F.lit("R"), F.col("transaction_id").substr(F.lit(2), F.lit(100))))
        .otherwise(F.col("transaction_id"))
        .alias("transaction_id"),
        "source_system",
        "source_id",
        calendar.timestamp(F.when(refund, F.col("refund_t")).otherwise(F.col("tx_t"))).alias("ts"),
        F.when(refund, -F.col("amount")).otherwise(F.col("amount")).alias("amount"),
        F.when(refund, F.lit(0.0)).otherwise(F.col("discount")).alias("discount"),
        F.when(refund, F.lit(0.0)).otherwise(F.col("cost")).alias("cost"),
        "product_category",
        "channel",
    )


def _alive_span(tail_days: float) -> Column:
    """Days from acquisition until dropout plus a tail, capped at the history's end."""
    return F.col("alive_until") + F.lit(tail_days) - F.col("birth")


def draw_support_contacts(people: DataFrame, *, seed: int, calendar: Calendar) -> DataFrame:
    """Support contacts: heavier in the unprofitable segments, while the customer is alive."""
    pid, k = F.col("person_id"), F.col("k")
    ids = [pid, k]
    span = F.least(_alive_span(30.0), F.lit(float(calendar.days)) - F.col("birth"))
    base = (
        people.where(~F.col("is_bot"))
        .withColumn("span", span)
        .withColumn(
            "n_contacts",
            poisson_ppf(
                uniform(seed, "n_contacts", pid), _seg_attr("support_per_30d") * F.col("span") / 30.0
            ).cast("int"),
        )
    )
    rows = base.where(F.col("n_contacts") > 0).withColumn(
        "k", F.explode(F.sequence(F.lit(1), F.col("n_contacts")))
    )
    channel = _segment_weighted(seed, "support_channel", S.SUPPORT_CHANNELS, "support_channel_weights", *ids)
    rate = F.element_at(
        F.create_map(*[x for c, v in S.SUPPORT_COST_PER_MINUTE.items() for x in (F.lit(c), F.lit(v))]),
        F.col("channel"),
    )
    system, source_id = _pick_record(seed, "support_record", ("call_centre",), ids)
    return (
        rows.withColumn("channel", channel)
        .withColumn(
            "handle_minutes",
            F.round(
                F.exp(F.lit(2.2) + 0.6 * normal(seed, "handle", *ids))
                * F.when(F.col("channel") == "phone", 1.4).otherwise(1.0),
                1,
            ),
        )
        .select(
            _event_id("C", seed, "contact_id", *ids).alias("contact_id"),
            system.alias("source_system"),
            source_id.alias("source_id"),
            calendar.timestamp(F.col("birth") + uniform(seed, "support_t", *ids) * F.col("span")).alias("ts"),
            "channel",
            "handle_minutes",
            (uniform(seed, "resolved", *ids) >= _seg_attr("unresolved_rate")).alias("resolved"),
            F.round(F.lit(2.0) + F.col("handle_minutes") * rate, 2).alias("cost"),
        )
    )


def draw_product_usage(people: DataFrame, *, seed: int, calendar: Calendar) -> DataFrame:
    """Daily usage rows on active days only; bots are heavy on a handful of days."""
    pid, k = F.col("person_id"), F.col("k")
    ids = [pid, k]
    b = S.BOTS
    span = F.greatest(F.lit(1.0), F.least(_alive_span(14.0), F.lit(float(calendar.days)) - F.col("birth")))
    share = F.when(F.col("is_bot"), F.lit(0.0)).otherwise(_seg_attr("active_day_share"))
    base = (
        people.withColumn("span", span)
        .withColumn(
            "n_days",
            F.when(F.col("is_bot"), randint(seed, "bot_days", b.active_days_min, b.active_days_max, pid))
            .otherwise(poisson_ppf(uniform(seed, "n_days", pid), share * F.col("span")))
            .cast("int"),
        )
        .withColumn("n_days", F.least(F.col("n_days"), F.floor(F.col("span")).cast("int")))
    )
    rows = base.where(F.col("n_days") > 0).withColumn(
        "k", F.explode(F.sequence(F.lit(0), F.col("n_days") - 1))
    )
    # Stratified whole days, one per integer stratum of the span, so days are distinct.
    span_days = F.floor(F.col("span"))
    lo = F.floor(k * span_days / F.col("n_days"))
    hi = F.floor((k + 1) * span_days / F.col("n_days"))
    day = F.floor(F.col("birth")) + lo + F.floor(uniform(seed, "usage_day", *ids) * (hi - lo))
    sessions_mean = F.when(F.col("is_bot"), F.lit(b.sessions_mean)).otherwise(_seg_attr("sessions_mean"))
    sessions = F.greatest(
        F.lit(1), F.round(sessions_mean * F.exp(0.5 * normal(seed, "sessions", *ids) - 0.125)).cast("long")
    )
    per_session = F.when(F.col("is_bot"), F.lit(b.events_per_session)).otherwise(F.lit(12.0))
    features_mean = F.when(F.col("is_bot"), F.lit(b.features_mean)).otherwise(_seg_attr("features_mean"))
    system, source_id = _pick_record(seed, "usage_record", ("web", "app"), ids)
    return rows.select(
        system.alias("source_system"),
        source_id.alias("source_id"),
        calendar.date(day).alias("date"),
        sessions.alias("sessions"),
        F.round(sessions * per_session * F.exp(0.3 * normal(seed, "events", *ids)))
        .cast("long")
        .alias("events"),
        F.round(sessions * F.exp(F.lit(2.3) + 0.5 * normal(seed, "minutes", *ids)), 1).alias(
            "active_minutes"
        ),
        F.least(
            F.lit(40),
            F.greatest(F.lit(1), F.round(features_mean * F.exp(0.4 * normal(seed, "features", *ids)))),
        )
        .cast("int")
        .alias("features_used"),
    )


def draw_marketing_touches(
    people: DataFrame, *, seed: int, calendar: Calendar, anonymous_share: float
) -> DataFrame:
    """Marketing touches around and after acquisition; a share is anonymous (no source id)."""
    pid, k = F.col("person_id"), F.col("k")
    ids = [pid, k]
    span = F.least(_alive_span(60.0), F.lit(float(calendar.days)) - F.col("birth")) + 30.0
    base = (
        people.where(~F.col("is_bot"))
        .withColumn("span", span)
        .withColumn(
            "n_touches",
            poisson_ppf(
                uniform(seed, "n_touches", pid), _seg_attr("touches_per_30d") * F.col("span") / 30.0
            ).cast("int")
            + 1,
        )
    )
    rows = base.withColumn("k", F.explode(F.sequence(F.lit(1), F.col("n_touches"))))
    t = F.greatest(F.lit(0.0), F.col("birth") - 30.0 + uniform(seed, "touch_t", *ids) * F.col("span"))
    channel = choice(seed, "touch_channel", S.TOUCH_CHANNELS, *ids)
    cost = F.element_at(
        F.create_map(*[x for c, v in S.TOUCH_COST.items() for x in (F.lit(c), F.lit(v))]), channel
    )
    is_anonymous = uniform(seed, "anonymous", *ids) < anonymous_share
    system, source_id = _pick_record(seed, "touch_record", ("web",), ids)
    stage = (
        F.when(
            t < F.col("birth") - 7.0,
            weighted_choice(seed, "funnel", S.FUNNEL_STAGES, (0.6, 0.3, 0.1, 0.0), *ids),
        )
        .when(
            t < F.col("birth"), weighted_choice(seed, "funnel2", S.FUNNEL_STAGES, (0.2, 0.3, 0.3, 0.2), *ids)
        )
        .otherwise(weighted_choice(seed, "funnel3", S.FUNNEL_STAGES, (0.5, 0.1, 0.1, 0.3), *ids))
    )
    return rows.select(
        _event_id("M", seed, "touch_id", *ids).alias("touch_id"),
        F.when(~is_anonymous, system).alias("source_system"),
        F.when(~is_anonymous, source_id).alias("source_id"),
        calendar.timestamp(t).alias("ts"),
        channel.alias("channel"),
        F.concat(channel, F.lit("-"), F.date_format(calendar.date(t), "yyyy-MM")).alias("campaign"),
        F.round(cost * F.exp(0.3 * normal(seed, "touch_cost", *ids)), 2).alias("cost"),
        stage.alias("funnel_stage"),
    )


def draw_customer_attributes(people: DataFrame, *, seed: int, calendar: Calendar) -> DataFrame:
    """CRM attributes keyed by the person's first record.

    ``investment_priority_score`` is biased on purpose: it rewards company size, seniority
    and 'prestige' industries, not what the customer returns, so it over-rates the costly
    public-sector, education and healthcare accounts.
    """
    pid = F.col("person_id")
    zero = F.lit(0)
    system = record_system(seed, pid, zero)
    size_rank = F.array_position(F.array(*[F.lit(s) for s in S.COMPANY_SIZES]), F.col("company_size")) - 1
    level = weighted_choice(seed, "decision_level", S.DECISION_MAKER_LEVELS, (0.4, 0.3, 0.2, 0.1), pid)
    level_rank = F.array_position(F.array(*[F.lit(s) for s in S.DECISION_MAKER_LEVELS]), level) - 1
    age_band = F.when(F.col("age") < 35, 0).when(F.col("age") <= 50, 1).otherwise(2)
    size_band = F.when(size_rank <= 1, 0).when(size_rank <= 2, 1).otherwise(2)
    persona_idx = F.when(
        uniform(seed, "persona_noise", pid) < 0.15, randint(seed, "persona_any", 0, 8, pid)
    ).otherwise(age_band * 3 + size_band)
    acq = weighted_choice(seed, "acq_channel", S.ACQUISITION_CHANNELS, (0.2, 0.3, 0.15, 0.1, 0.15, 0.1), pid)
    acq_cost = F.element_at(
        F.create_map(*[x for c, v in S.TOUCH_COST.items() for x in (F.lit(c), F.lit(v * 20 + 40))]), acq
    )
    tenure = F.lit(float(calendar.days)) - F.col("birth")
    lifecycle = (
        F.when(F.col("is_dropped"), F.lit("dormant"))
        .when(tenure < 90, F.lit("activation"))
        .when(tenure < 365, F.lit("growth"))
        .when(F.col("n_repeat") >= 5, F.lit("maturity"))
        .otherwise(F.lit("retention"))
    )
    seg_quality = F.when(F.col("is_bot"), F.lit(20.0)).otherwise(_by_segment([85.0, 70.0, 50.0, 45.0]))
    score = (
        F.lit(20.0)
        + 12.0 * size_rank
        + 8.0 * level_rank
        + F.when(F.col("industry").isin(*S.OVERRATED_INDUSTRIES), 18.0).otherwise(0.0)
        + 6.0 * normal(seed, "score_noise", pid)
    )
    return people.select(
        system.alias("source_system"),
        record_source_id(seed, system, pid, zero).alias("source_id"),
        "plan",
        "region",
        "industry",
        "company_size",
        acq.alias("acquisition_channel"),
        F.round(acq_cost * F.exp(0.25 * normal(seed, "acq_cost", pid)), 2).alias("acquisition_cost"),
        lifecycle.alias("lifecycle_stage"),
        F.element_at(F.array(*[F.lit(p) for p in S.LEGACY_PERSONAS]), persona_idx + 1).alias(
            "legacy_persona"
        ),
        F.least(
            F.lit(100.0),
            F.greatest(F.lit(0.0), F.round(seg_quality + 12.0 * normal(seed, "onboarding", pid), 1)),
        ).alias("onboarding_score"),
        level.alias("decision_maker_level"),
        F.greatest(
            F.lit(1),
            F.round(F.exp(F.lit(3.0) + 0.6 * normal(seed, "ttv", pid)) * (110.0 - seg_quality) / 50.0),
        )
        .cast("int")
        .alias("time_to_value_days"),
        F.least(F.lit(100.0), F.greatest(F.lit(0.0), F.round(score, 1))).alias("investment_priority_score"),
    )


def truth_identity(records: DataFrame) -> DataFrame:
    """(source_system, source_id) -> person_id."""
    return records.select("source_system", "source_id", "person_id")


def truth_people(people: DataFrame, calendar: Calendar) -> DataFrame:
    """Per person: latent segment and the drawn parameters (no PII)."""
    return people.select(
        "person_id",
        "segment",
        "is_bot",
        "lambda",
        "p_drop",
        "nu",
        "n_records",
        calendar.timestamp(F.col("birth")).alias("acquired_at"),
        (F.col("n_repeat") + F.when(F.col("is_bot"), 0).otherwise(1)).alias("n_purchases"),
        "is_dropped",
        calendar.timestamp(F.col("alive_until")).alias("alive_until"),
    )
