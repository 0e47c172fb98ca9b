"""Probabilistic links: Fellegi-Sunter with EM-trained m and u, on Splink's Spark backend.

What Splink does (model, u by random sampling, m by EM, scoring) is Splink's. What this
module adds:

- blocking keys computed up front, one column per rule, with key values held by more
  than ``max_block_size`` records nulled (a common name in a big city cannot explode
  into billions of pairs) and reported;
- the pairs each rule would generate estimated from the key counts before anything is
  scored, in rule order, and rules that would overflow ``comparison_budget`` skipped and
  reported;
- every rule skips pairs the deterministic pass already put in one cluster, so only what
  the deterministic pass leaves open is scored;
- the prior (probability two random records match) from the deterministic link count.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from custseg.config import StitchConfig
from custseg.contract import IDENTITY_FIELDS

log = logging.getLogger(__name__)

# Derived blocking rules: these, in this order, where every field is populated. No
# [email]: an email is a deterministic link unless guarded (docs/stitch.md: 90 % of the
# scored pairs, no recall).
BLOCKING_CANDIDATES = (
    ("date_of_birth", "first_name"),
    ("date_of_birth", "last_name"),
    ("postcode", "last_name"),
    ("postcode", "first_name"),
    ("date_of_birth", "postcode"),
    ("first_name", "last_name", "address"),
    ("phone",),
    ("account_number",),
    ("device_id",),
)
# Derived EM training rules: taken in this order where populated, until every compared
# field is left free by one of them.
TRAINING_CANDIDATES = (
    ("email",),
    ("phone",),
    ("date_of_birth",),
    ("first_name", "last_name"),
    ("postcode",),
    ("account_number",),
    ("device_id",),
    ("address",),
)

SPLINK_COLUMNS = (*IDENTITY_FIELDS, "email_local")


@dataclass
class BlockingPlan:
    """Per rule: fields, estimated pairs, oversized key values skipped, used or not."""

    rules: list[dict[str, Any]] = field(default_factory=list)

    @property
    def used(self) -> list[int]:
        return [r["index"] for r in self.rules if r["used"]]

    @property
    def estimated_pairs(self) -> int:
        return sum(int(r["estimated_pairs"]) for r in self.rules if r["used"])


@dataclass
class ProbabilisticResult:
    links: DataFrame  # rid_l, rid_r, match_probability, match_weight (>= match_threshold)
    plan: BlockingPlan
    model: dict[str, Any]  # Splink's model JSON: m and u per comparison level, no data
    match_weights_html: str
    prior: float


# The fields of each comparison of the model (a comparison is "free" in an EM training
# rule that uses none of them).
COMPARISON_FIELDS: dict[str, tuple[str, ...]] = {
    "name": ("first_name", "last_name"),
    "date_of_birth": ("date_of_birth",),
    "postcode": ("postcode",),
    "email": ("email",),
    "phone": ("phone",),
    "address": ("address",),
    "device_id": ("device_id",),
    "account_number": ("account_number",),
}


@dataclass(frozen=True)
class Rules:
    """What the model compares and the rules it blocks and trains on, for the fields the
    records hold (``resolve_rules``)."""

    comparisons: list[str]  # keys of COMPARISON_FIELDS
    blocking: list[list[str]]
    training: list[list[str]]
    # Derived single-field rules, used only where they are small (single_rule_max_pairs_per_record)
    small_only: set[int] = field(default_factory=set)


def _compared(comparisons: list[str]) -> set[str]:
    return {f for c in comparisons for f in COMPARISON_FIELDS[c]}


def _all_free(training: list[list[str]], comparisons: list[str]) -> bool:
    """Every comparison is left free (none of its fields used) by one training rule."""
    return all(any(not set(COMPARISON_FIELDS[c]) & set(t) for t in training) for c in comparisons)


def _usable(rules: list[list[str]], populated: set[str], what: str) -> list[list[str]]:
    kept = [r for r in rules if set(r) <= populated]
    for r in rules:
        if r not in kept:
            log.warning(
                "stitch: %s rule %s left out: %s not held by the records", what, r, sorted(set(r) - populated)
            )
    return kept


def resolve_rules(cfg: StitchConfig, populated: set[str]) -> Rules:
    """Comparisons, blocking and training rules for records holding ``populated`` fields.

    Comparisons: one per populated field (the name comparison when either name is).
    Blocking: ``stitch.blocking_rules`` if set, else ``BLOCKING_CANDIDATES`` whose fields
    are all populated, then a rule for each compared field none of those covers (first
    and last name together); never email (a deterministic key). Training:
    ``stitch.training_rules`` if set, else ``TRAINING_CANDIDATES`` in order until every
    comparison is free in one. Named rules over fields the records do not hold are left
    out with a warning: an empty field never stops a run.
    """
    comparisons = [c for c, fields in COMPARISON_FIELDS.items() if set(fields) & populated]
    compared = _compared(comparisons) & populated
    small_only: set[int] = set()
    if cfg.blocking_rules is not None:
        blocking = _usable(cfg.blocking_rules, populated, "blocking")
    else:
        blocking = [list(r) for r in BLOCKING_CANDIDATES if set(r) <= populated]
        covered = {f for r in blocking for f in r}
        open_fields = sorted(compared - covered - {"email"})
        if {"first_name", "last_name"} <= set(open_fields):
            blocking.append(["first_name", "last_name"])
            open_fields = [f for f in open_fields if f not in ("first_name", "last_name")]
        blocking += [[f] for f in open_fields]
        # One field alone, where the records hold no strong key and it makes few pairs:
        # census-style records with typos in every other field still meet (10,000 FEBRL
        # records: a few thousand pairs each). Where strong keys exist the pair rules
        # above were tuned without them: on the reference preset a birth date, postcode
        # or address alone added millions of pairs, mostly non-matches, to the scoring.
        strong = populated & set(cfg.deterministic_keys)
        for f in SINGLE_FIELD_CANDIDATES if not strong else ():
            if f in populated and [f] not in blocking:
                small_only.add(len(blocking))
                blocking.append([f])
    training = _usable(cfg.training_rules, populated, "training") if cfg.training_rules is not None else []
    if not training:
        for r in TRAINING_CANDIDATES:
            if training and _all_free(training, comparisons):
                break
            if set(r) <= populated:
                training.append(list(r))
    return Rules(comparisons=comparisons, blocking=blocking, training=training, small_only=small_only)


def splink_input(std: DataFrame) -> DataFrame:
    """The columns Splink compares; first names with nicknames resolved."""
    return std.select(
        "rid",
        "det_cluster",
        F.col("first_name_canon").alias("first_name"),
        *[c for c in SPLINK_COLUMNS if c != "first_name"],
        F.concat_ws(" ", "first_name_canon", "last_name").alias("full_name"),
    )


def _key(fields: list[str]) -> Any:
    cols = [F.col(f).cast("string") for f in fields]
    present = F.lit(True)
    for c in cols:
        present = present & c.isNotNull()
    return F.when(present, F.concat_ws("|", *cols))


def add_blocking_keys(
    df: DataFrame, rules: dict[str, list[str]], max_block_size: int
) -> tuple[DataFrame, dict[str, dict[str, Any]]]:
    """Add one key column per rule (named by the dict key; null where a field is null or
    the value is held by more than ``max_block_size`` records) and return per-rule
    estimates. All rules are counted in one aggregation; only a few numbers per rule
    reach the driver, and the oversized values join back as a broadcast."""
    out = df.withColumns({name: _key(fields) for name, fields in rules.items()})
    exploded = out.select(
        F.explode(
            F.array(*[F.struct(F.lit(name).alias("rule"), F.col(name).alias("key")) for name in rules])
        ).alias("rk")
    ).select("rk.rule", "rk.key")
    counts = exploded.where(F.col("key").isNotNull()).groupBy("rule", "key").agg(F.count("*").alias("n"))
    counts = counts.persist()
    big_n = F.col("n") > max_block_size
    pairs = F.col("n") * (F.col("n") - 1) / 2
    rows = {
        r["rule"]: r
        for r in counts.groupBy("rule")
        .agg(
            F.sum(F.when(~big_n, pairs)).alias("pairs"),
            F.sum(F.when(big_n, 1)).alias("big_values"),
            F.sum(F.when(big_n, F.col("n"))).alias("big_records"),
            F.sum(F.when(big_n, pairs)).alias("big_pairs"),
        )
        .collect()
    }
    stats: dict[str, dict[str, Any]] = {}
    for i, (name, fields) in enumerate(rules.items()):
        row = rows.get(name)
        stats[name] = {
            "index": i,
            "fields": fields,
            "estimated_pairs": int((row and row["pairs"]) or 0),
            "oversized_values": int((row and row["big_values"]) or 0),
            "oversized_records": int((row and row["big_records"]) or 0),
            "pairs_avoided": int((row and row["big_pairs"]) or 0),
        }
        if stats[name]["oversized_values"]:
            big = counts.where((F.col("rule") == name) & big_n).select(
                F.col("key").alias(name), F.lit(True).alias("_big")
            )
            out = (
                out.join(F.broadcast(big), name, "left")
                .withColumn(name, F.when(F.col("_big").isNull(), F.col(name)))
                .drop("_big")
            )
    counts.unpersist()
    return out, stats


PRIOR_FIELDS = ("first_name", "last_name", "date_of_birth")
SINGLE_FIELD_CANDIDATES = ("last_name", "first_name", "date_of_birth", "postcode", "address")


def plan_blocking(
    df: DataFrame, cfg: StitchConfig, rules: Rules, n_records: int
) -> tuple[DataFrame, BlockingPlan, int]:
    """Blocking keys and the budgeted plan: rules kept in order while the estimated
    pairs fit in ``comparison_budget``. Also the pairs equal on every populated field of
    ``PRIOR_FIELDS`` (0 when fewer than two are held), counted in the same aggregation,
    for the prior."""
    keys = {f"blk_{i}": r for i, r in enumerate(rules.blocking)}
    keys.update({f"tblk_{i}": r for i, r in enumerate(rules.training)})
    prior_fields = [f for f in PRIOR_FIELDS if f in _compared(rules.comparisons)]
    if len(prior_fields) >= 2:
        keys["prior_key"] = prior_fields
    out, by_name = add_blocking_keys(df, keys, cfg.max_block_size)
    out = out.drop("prior_key") if "prior_key" in keys else out
    exact_pairs = int(by_name["prior_key"]["estimated_pairs"]) if "prior_key" in keys else 0
    stats = [by_name[f"blk_{i}"] for i in range(len(rules.blocking))]
    for i, fields in enumerate(rules.training):
        log.info("stitch: EM training rule %s: %d pairs", fields, by_name[f"tblk_{i}"]["estimated_pairs"])
    total = 0
    small = cfg.single_rule_max_pairs_per_record * n_records
    for s in stats:
        fits = total + s["estimated_pairs"] <= cfg.comparison_budget
        # Counted with the values max_block_size leaves out: a field whose common values
        # are cut off is not small, its rare values only make pairs of little worth.
        whole = s["estimated_pairs"] + s["pairs_avoided"]
        if s["index"] in rules.small_only and whole > small:
            log.info(
                "stitch: single-field blocking rule %s not used: %d pairs, above %s per record",
                s["fields"],
                whole,
                cfg.single_rule_max_pairs_per_record,
            )
            s["used"] = False
            continue
        s["used"] = fits
        if fits:
            total += s["estimated_pairs"]
        else:
            log.warning(
                "stitch: blocking rule %s skipped: %d estimated pairs would exceed the budget of %d",
                s["fields"],
                s["estimated_pairs"],
                cfg.comparison_budget,
            )
        if s["oversized_values"]:
            log.warning(
                "stitch: blocking rule %s: %d key values held by more than %d records skipped "
                "(%d records, %d pairs not generated)",
                s["fields"],
                s["oversized_values"],
                cfg.max_block_size,
                s["oversized_records"],
                s["pairs_avoided"],
            )
    return out, BlockingPlan(rules=stats), exact_pairs


def _postcode_comparison() -> Any:
    """Splink's UK postcode levels (exact, sector, district, area; a level is skipped
    where the value is no UK postcode) with one for a one-character typo in any
    country's code, between sector and district."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import ColumnExpression

    uk = cl.PostcodeComparison
    col = ColumnExpression("postcode")
    return cl.CustomComparison(
        output_column_name="postcode",
        comparison_levels=[
            cll.NullLevel("postcode"),
            cll.ExactMatchLevel("postcode"),
            cll.ExactMatchLevel(col.regex_extract(uk.SECTOR_REGEX)).configure(
                label_for_charts="Exact match on sector"
            ),
            cll.LevenshteinLevel("postcode", 1),
            cll.ExactMatchLevel(col.regex_extract(uk.DISTRICT_REGEX)).configure(
                label_for_charts="Exact match on district"
            ),
            cll.ExactMatchLevel(col.regex_extract(uk.AREA_REGEX)).configure(
                label_for_charts="Exact match on area"
            ),
            cll.ElseLevel(),
        ],
    )


def _comparisons(names: list[str], populated: set[str]) -> list[Any]:
    """Splink comparisons for ``names`` (keys of COMPARISON_FIELDS)."""
    import splink.comparison_library as cl

    made: dict[str, Any] = {
        "date_of_birth": lambda: cl.DateOfBirthComparison("date_of_birth", input_is_string=False),
        "postcode": _postcode_comparison,
        # Exact email only: a shared user name on another domain is mostly a shared
        # name (first.last@), which the name comparison already counts.
        "email": lambda: cl.ExactMatch("email").configure(term_frequency_adjustments=True),
        "phone": lambda: cl.ExactMatch("phone"),
        # Two levels: 0.7 still tells a typo'd street ("weipap lace" / "weipa pl") from another.
        "address": lambda: cl.JaroWinklerAtThresholds("address", [0.9, 0.7]),
        "device_id": lambda: cl.ExactMatch("device_id"),
        "account_number": lambda: cl.ExactMatch("account_number"),
    }
    out = []
    for c in names:
        if c != "name":
            out.append(made[c]())
        elif {"first_name", "last_name"} <= populated:
            out.append(
                cl.ForenameSurnameComparison(
                    "first_name", "last_name", forename_surname_concat_col_name="full_name"
                )
            )
        else:  # one of the two names only
            out.append(cl.NameComparison("first_name" if "first_name" in populated else "last_name"))
    return out


def _settings_dict(
    rules: list[str], prior: float, dialect: str, *, term_frequencies: bool, comparisons: list[Any]
) -> dict[str, Any]:
    """The model's settings in one SQL dialect. Term-frequency adjustments (an exact
    match on a common full name or a shared email counts for less than on a rare one)
    are applied when scoring on Spark; training runs without them."""
    from splink import SettingsCreator

    creator = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="rid",
        probability_two_random_records_match=prior,
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=list[Any](rules),
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )
    settings: dict[str, Any] = creator.create_settings_dict(sql_dialect_str=dialect)
    if term_frequencies:
        return settings
    for comparison in settings["comparisons"]:
        for level in comparison["comparison_levels"]:
            level.pop("tf_adjustment_column", None)
            level.pop("tf_adjustment_weight", None)
    return settings


def _copy_parameters(trained: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """Put the m and u probabilities of ``trained`` into ``target`` (same comparisons and
    levels, another SQL dialect)."""
    out = dict(target)
    for mine, theirs in zip(out["comparisons"], trained["comparisons"], strict=True):
        for level, fitted in zip(mine["comparison_levels"], theirs["comparison_levels"], strict=True):
            for key in ("m_probability", "u_probability"):
                if key in fitted:
                    level[key] = fitted[key]
    return out


def _quiet_splink() -> None:
    """Splink prints training progress at INFO on its own handler; keep warnings only."""
    logging.getLogger("splink").setLevel(logging.WARNING)


def training_sample(df: DataFrame, n: int, max_records: int, seed: int) -> DataFrame:
    """A bounded sample of ``df`` (``n`` records) for training: whole last-name groups (so
    the pairs EM learns from stay together), about ``max_records`` records, the same
    records in the same order however ``df`` is partitioned (the trained model depends
    on the order Splink sees the rows in)."""
    fraction = min(1.0, max_records / max(n, 1))
    bucket = F.abs(F.xxhash64(F.lit(seed), F.coalesce("last_name", "first_name", "rid"))) % 1_000_000
    picked = df.where(bucket < F.lit(int(fraction * 1_000_000)))
    return picked.orderBy("rid").limit(max_records)


def single_threaded_duckdb() -> Any:
    """Splink's DuckDB backend on one thread: DuckDB sums in the order its threads finish,
    so with several the trained m/u values (and every match weight after them) differed in
    the last bits between two runs on the same rows; the same input must give the same
    tables (a resumed run's equal to an uninterrupted one's)."""
    import duckdb
    from splink import DuckDBAPI

    connection = duckdb.connect()
    connection.execute("SET threads TO 1")
    return DuckDBAPI(connection=connection)


def train_model(
    pdf: Any, cfg: StitchConfig, rules: Rules, comparisons: list[Any], prior: float, seed: int
) -> dict[str, Any]:
    """Splink's u (random sampling) and m (EM per training rule) on a bounded sample, on
    Splink's DuckDB backend in the driver, so the cost of training does not grow with the
    data; see docs/stitch.md."""
    from splink import Linker

    log.info("stitch: training on %d sampled records, EM rules %s", len(pdf), rules.training)
    settings = _settings_dict([], prior, "duckdb", term_frequencies=False, comparisons=comparisons)
    linker = Linker(pdf, settings, single_threaded_duckdb())
    _quiet_splink()
    linker.training.estimate_u_using_random_sampling(max_pairs=cfg.u_max_pairs, seed=seed)
    for i, fields in enumerate(rules.training):
        on = " and ".join(f"l.{f} = r.{f}" for f in fields)
        rule = f"l.tblk_{i} = r.tblk_{i} and {on}"
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(
                rule, estimate_without_term_frequencies=True
            )
        except Exception as exc:  # noqa: BLE001 - Splink raises bare exceptions here
            # A rule whose sampled pairs are empty (or all alike) trains nothing; the others
            # still can; Splink warns at scoring about levels left at their defaults.
            log.warning(
                "stitch: EM on training rule %s trained nothing: %s", fields, str(exc).splitlines()[0]
            )
    trained: dict[str, Any] = linker.misc.save_model_to_json()
    return trained


def _no_links(std: DataFrame) -> DataFrame:
    return std.sparkSession.createDataFrame(
        [], "rid_l string, rid_r string, match_probability double, match_weight double"
    )


def blocked_records(
    std: DataFrame, cfg: StitchConfig, rules: Rules
) -> tuple[DataFrame, BlockingPlan, int, int]:
    """The records in Splink's form with their blocking keys (persisted) and the plan of
    the rules that fit the comparison budget; also how many pairs are equal on
    ``PRIOR_FIELDS`` and how many records there are."""
    # Cached while the plan counts the keys: the blocked frame is built from it again
    # (the join of the records with their deterministic clusters ran twice).
    base = splink_input(std).persist()
    try:
        n = base.count()
        df, plan, exact_pairs = plan_blocking(base, cfg, rules, n)
        df = df.persist()
    finally:
        base.unpersist()
    return df, plan, exact_pairs, n


def match_prior(cfg: StitchConfig, n: int, n_deterministic_pairs: int, exact_pairs: int) -> float:
    """The prior match probability from the pairs the strongest evidence finds: the
    deterministic links, or, where the records have fewer strong keys (census-style
    records have none), the pairs equal on first name, last name and birth date."""
    total_pairs = max(n * (n - 1) / 2, 1.0)
    evidence = max(n_deterministic_pairs, exact_pairs)
    prior = min(max(evidence / cfg.deterministic_recall / total_pairs, 1e-9), 0.5)
    log.info(
        "stitch: prior %.3g from %d deterministic links and %d pairs equal on %s",
        prior,
        n_deterministic_pairs,
        exact_pairs,
        PRIOR_FIELDS,
    )
    return prior


def score_pairs(
    df: DataFrame, pdf: Any, model: dict[str, Any], in_driver: bool, cfg: StitchConfig
) -> tuple[DataFrame, Any]:
    """Splink's predictions at or above ``match_threshold`` (checkpointed) and the linker:
    on DuckDB in the driver when ``pdf`` (the training sample) is every record, else on
    Spark."""
    from splink import Linker, SparkAPI

    spark = df.sparkSession
    linker: Any
    if in_driver:
        # The sample is every record: score on the frame the driver already holds
        # (Splink on DuckDB) instead of Spark's jobs and Parquet lineage breaks.
        linker = Linker(pdf, model, single_threaded_duckdb())
        _quiet_splink()
        scored = linker.inference.predict(
            threshold_match_probability=cfg.match_threshold
        ).as_pandas_dataframe()
        links = spark.createDataFrame(
            scored[["rid_l", "rid_r", "match_probability", "match_weight"]],
            "rid_l string, rid_r string, match_probability double, match_weight double",
        )
    else:
        # Parquet lineage breaks, faster than "persist" (docs/architecture.md, "Measured choices").
        db = SparkAPI(spark_session=spark, break_lineage_method="parquet")  # type: ignore[no-untyped-call]
        linker = Linker(df, model, db)  # type: ignore[arg-type]
        _quiet_splink()
        scored = linker.inference.predict(threshold_match_probability=cfg.match_threshold)
        links = scored.as_spark_dataframe().select("rid_l", "rid_r", "match_probability", "match_weight")
    return links.localCheckpoint(), linker


def probabilistic_links(
    std: DataFrame,
    cfg: StitchConfig,
    *,
    n_deterministic_pairs: int,
    populated: set[str] | None = None,
    seed: int = 42,
) -> ProbabilisticResult:
    """Train a Fellegi-Sunter model with Splink and score the budgeted candidate pairs
    between different deterministic clusters on Spark; links at or above
    ``match_threshold``. ``populated``: the fields the records hold (default: all); the
    model compares those, and blocks and trains on rules made of them
    (``resolve_rules``). With fewer than two comparisons or no blocking rule nothing is
    scored (a warning says why)."""
    _quiet_splink()
    held = set(IDENTITY_FIELDS) if populated is None else populated
    rules = resolve_rules(cfg, held)
    log.info(
        "stitch: comparing %s; blocking rules %s; EM training rules %s",
        rules.comparisons,
        rules.blocking,
        rules.training,
    )
    if len(rules.comparisons) < 2 or not rules.blocking or not rules.training:
        log.warning(
            "stitch: no probabilistic links: the records hold too few comparable fields (%s)", sorted(held)
        )
        return ProbabilisticResult(
            links=_no_links(std), plan=BlockingPlan(), model={}, match_weights_html="", prior=0.0
        )
    comparisons = _comparisons(rules.comparisons, held)
    t = time.perf_counter()
    df, plan, exact_pairs, n = blocked_records(std, cfg, rules)
    prior = match_prior(cfg, n, n_deterministic_pairs, exact_pairs)
    blocking = [f"l.blk_{i} = r.blk_{i} and l.det_cluster <> r.det_cluster" for i in plan.used]
    if not blocking:
        raise ValueError("stitch: no blocking rule fits stitch.comparison_budget; raise it or add rules")
    log.info("stitch: blocking plan in %.1f s", time.perf_counter() - t)
    t = time.perf_counter()
    # ordered on the driver too: toPandas keeps partition order, not the sort's
    pdf: Any = training_sample(df, n, cfg.train_max_records, seed).toPandas()
    pdf = pdf.sort_values("rid", kind="stable").reset_index(drop=True)
    trained = train_model(pdf, cfg, rules, comparisons, prior, seed)
    log.info("stitch: model trained in %.1f s", time.perf_counter() - t)
    t = time.perf_counter()
    in_driver = n <= min(cfg.driver_scoring_max_records, cfg.train_max_records)
    dialect = "duckdb" if in_driver else "spark"
    settings = _settings_dict(
        blocking, prior, dialect, term_frequencies=cfg.term_frequencies, comparisons=comparisons
    )
    links, linker = score_pairs(df, pdf, _copy_parameters(trained, settings), in_driver, cfg)
    log.info(
        "stitch: %d pairs scored in %.1f s (%s)",
        links.count(),
        time.perf_counter() - t,
        "DuckDB" if in_driver else "Spark",
    )
    html = str(linker.visualisations.match_weights_chart().to_html())
    df.unpersist()
    if not in_driver:
        remove_splink_files(std.sparkSession)
    return ProbabilisticResult(links=links, plan=plan, model=trained, match_weights_html=html, prior=prior)


def remove_splink_files(spark: SparkSession) -> int:
    """Delete the Parquet tables Splink's Spark backend wrote under the checkpoint
    directory (``__splink__*``: standardised identity records, blocked pairs, scores).
    Splink leaves them there; they hold personal data outside the silver tables. Called
    once the links are checkpointed. Returns how many folders were removed."""
    sc = spark.sparkContext
    directory = sc._jsc.sc().getCheckpointDir()  # type: ignore[union-attr]
    if not directory.isDefined():
        return 0
    jvm = sc._jvm
    assert jvm is not None
    root = jvm.org.apache.hadoop.fs.Path(directory.get())
    fs = root.getFileSystem(sc._jsc.hadoopConfiguration())  # type: ignore[union-attr]
    removed = 0
    for status in fs.listStatus(root) if fs.exists(root) else []:
        if status.getPath().getName().startswith("__splink__") and fs.delete(status.getPath(), True):
            removed += 1
    log.info("stitch: removed %d Splink intermediate tables from the checkpoint directory", removed)
    return removed
