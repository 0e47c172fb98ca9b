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

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from custseg.config import IDENTITY_FIELDS, StitchConfig

log = logging.getLogger(__name__)

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


def plan_blocking(df: DataFrame, cfg: StitchConfig) -> tuple[DataFrame, BlockingPlan]:
    """Blocking keys and the budgeted plan: rules kept in order while the estimated
    pairs fit in ``comparison_budget``."""
    rules = {f"blk_{i}": r for i, r in enumerate(cfg.blocking_rules)}
    rules.update({f"tblk_{i}": r for i, r in enumerate(cfg.training_rules)})
    out, by_name = add_blocking_keys(df, rules, cfg.max_block_size)
    stats = [by_name[f"blk_{i}"] for i in range(len(cfg.blocking_rules))]
    for i in range(len(cfg.training_rules)):
        pairs = by_name[f"tblk_{i}"]["estimated_pairs"]
        log.info("stitch: EM training rule %s: %d pairs", cfg.training_rules[i], pairs)
    total = 0
    for s in stats:
        fits = total + s["estimated_pairs"] <= cfg.comparison_budget
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
    return out, BlockingPlan(rules=stats)


def _settings_dict(rules: list[str], prior: float, dialect: str, *, term_frequencies: bool) -> dict[str, Any]:
    """The model's settings in one SQL dialect. Term-frequency adjustments (an exact
    match on a common full name or a shared email counts for less than on a rare one)
    are applied when scoring on Spark; training runs without them."""
    import splink.comparison_library as cl
    from splink import SettingsCreator

    creator = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="rid",
        probability_two_random_records_match=prior,
        comparisons=[
            cl.ForenameSurnameComparison(
                "first_name", "last_name", forename_surname_concat_col_name="full_name"
            ),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=False),
            cl.PostcodeComparison("postcode"),
            # Exact email only: a shared user name on another domain is mostly a shared
            # name (first.last@), which the name comparison already counts.
            cl.ExactMatch("email").configure(term_frequency_adjustments=True),
            cl.ExactMatch("phone"),
            cl.JaroWinklerAtThresholds("address", [0.9]),
            cl.ExactMatch("device_id"),
            cl.ExactMatch("account_number"),
        ],
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
    the pairs EM learns from stay together), about ``max_records`` records."""
    fraction = min(1.0, max_records / max(n, 1))
    bucket = F.abs(F.xxhash64(F.lit(seed), F.coalesce("last_name", "first_name", "rid"))) % 1_000_000
    return df.where(bucket < F.lit(int(fraction * 1_000_000))).limit(max_records)


def train_model(sample: DataFrame, cfg: StitchConfig, prior: float, seed: int) -> dict[str, Any]:
    """Splink's u (random sampling) and m (EM per training rule) on a bounded sample, on
    Splink's DuckDB backend in the driver (7-9 s at the reference scale here), so the
    cost of training does not grow with the data; see docs/stitch.md."""
    from splink import DuckDBAPI, Linker

    pdf = sample.toPandas()
    log.info("stitch: training on %d sampled records", len(pdf))
    linker = Linker(pdf, _settings_dict([], prior, "duckdb", term_frequencies=False), DuckDBAPI())
    _quiet_splink()
    linker.training.estimate_u_using_random_sampling(max_pairs=cfg.u_max_pairs, seed=seed)
    for i, fields in enumerate(cfg.training_rules):
        on = " and ".join(f"l.{f} = r.{f}" for f in fields)
        linker.training.estimate_parameters_using_expectation_maximisation(
            f"l.tblk_{i} = r.tblk_{i} and {on}", estimate_without_term_frequencies=True
        )
    trained: dict[str, Any] = linker.misc.save_model_to_json()
    return trained


def probabilistic_links(
    std: DataFrame, cfg: StitchConfig, *, n_deterministic_pairs: int, seed: int = 42
) -> ProbabilisticResult:
    """Train a Fellegi-Sunter model with Splink and score the budgeted candidate pairs
    between different deterministic clusters on Spark; links at or above
    ``match_threshold``."""
    from splink import Linker, SparkAPI

    _quiet_splink()
    spark = std.sparkSession
    t = time.perf_counter()
    # Cached while the plan counts the keys: the blocked frame is built from it again
    # (the join of the records with their deterministic clusters ran twice).
    base = splink_input(std).persist()
    try:
        df, plan = plan_blocking(base, cfg)
        df = df.persist()
        n = df.count()
    finally:
        base.unpersist()
    total_pairs = max(n * (n - 1) / 2, 1.0)
    prior = min(max(n_deterministic_pairs / cfg.deterministic_recall / total_pairs, 1e-9), 0.5)
    rules = [f"l.blk_{i} = r.blk_{i} and l.det_cluster <> r.det_cluster" for i in plan.used]
    if not rules:
        raise ValueError("stitch: no blocking rule fits stitch.comparison_budget; raise it or add rules")
    log.info("stitch: blocking plan in %.1f s", time.perf_counter() - t)
    t = time.perf_counter()
    trained = train_model(training_sample(df, n, cfg.train_max_records, seed), cfg, prior, seed)
    log.info("stitch: model trained in %.1f s", time.perf_counter() - t)
    t = time.perf_counter()
    model = _copy_parameters(
        trained, _settings_dict(rules, prior, "spark", term_frequencies=cfg.term_frequencies)
    )
    # Parquet lineage breaks: 6 s against 10-17 s with "persist" scoring 50k records here.
    db = SparkAPI(spark_session=spark, break_lineage_method="parquet")  # type: ignore[no-untyped-call]
    linker = Linker(df, model, db)  # type: ignore[arg-type]
    _quiet_splink()
    scored = linker.inference.predict(threshold_match_probability=cfg.match_threshold)
    links = scored.as_spark_dataframe().select("rid_l", "rid_r", "match_probability", "match_weight")
    links = links.localCheckpoint()
    log.info("stitch: %d pairs scored in %.1f s", links.count(), time.perf_counter() - t)
    chart: Any = linker.visualisations.match_weights_chart()
    html = str(chart.to_html())
    df.unpersist()
    return ProbabilisticResult(links=links, plan=plan, model=trained, match_weights_html=html, prior=prior)
