"""``stitch_identities``: identity records -> links, identity map, golden records."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F

from custseg.config import PrivacyConfig, StitchConfig
from custseg.contract import IDENTITY_FIELDS
from custseg.privacy import pseudonym_key as privacy_key
from custseg.stitch.components import connected_components
from custseg.stitch.deterministic import compared_fields, deterministic_links, disagree, with_conflict
from custseg.stitch.golden import golden_records
from custseg.stitch.ids import IdCollisionError, assign_ids
from custseg.stitch.probabilistic import BlockingPlan, probabilistic_links
from custseg.stitch.session import prepare_session
from custseg.stitch.standardise import (
    RAW_PREFIX,
    date_up_to_swap,
    standardisation_counts,
    standardise_records,
)

log = logging.getLogger(__name__)

StitchSettings = StitchConfig

LINK_COLUMNS = ["rid_l", "rid_r", "link_type", "keys", "match_probability", "match_weight"]


@dataclass
class StitchResult:
    """The outputs of stitching. DataFrames carry keys and scores, except ``customers``
    (golden records, silver only)."""

    links: DataFrame  # record_l, record_r, link_type, keys, match_probability, match_weight, accepted
    identity_map: (
        DataFrame  # source_system, source_id, customer_id, match_confidence, cluster_size, review_reason
    )
    customers: DataFrame  # golden records with per-field lineage
    id_changes: DataFrame  # old_customer_id, new_customer_id, n_records, change
    guarded_keys: DataFrame  # key, value_hash, n_records, reason
    metrics: dict[str, float] = field(default_factory=dict)
    blocking: BlockingPlan = field(default_factory=BlockingPlan)
    model: dict[str, Any] = field(default_factory=dict)
    match_weights_html: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def _populated(counts: dict[str, int], n_records: int, cfg: StitchConfig) -> set[str]:
    """The fields held (after standardisation) by at least ``min_field_coverage`` of the
    records, and by two records at least."""
    out = set()
    for f in IDENTITY_FIELDS:
        held = counts[f"standardise.{f}.present"] - counts[f"standardise.{f}.placeholder"]
        held -= counts[f"standardise.{f}.nulled"]
        if held >= 2 and held >= cfg.min_field_coverage * n_records:
            out.add(f)
    return out


def _log_standardisation(counts: dict[str, int]) -> None:
    """One line per field: values given, kept as given, changed, nulled as placeholders or
    as invalid; a warning when a field lost more than half its values."""
    for f in IDENTITY_FIELDS:
        c = {k: counts[f"standardise.{f}.{k}"] for k in ("present", "changed", "placeholder", "nulled")}
        if not c["present"]:
            continue
        level = logging.WARNING if c["nulled"] + c["placeholder"] > c["present"] / 2 else logging.INFO
        log.log(
            level,
            "stitch: %s: %d values given, %d changed in form, %d placeholders nulled, %d invalid nulled",
            f,
            c["present"],
            c["changed"],
            c["placeholder"],
            c["nulled"],
        )


def _edges(links: DataFrame) -> DataFrame:
    return links.select(F.col("rid_l").alias("src"), F.col("rid_r").alias("dst"))


def _components(rids: DataFrame, links: DataFrame, max_iterations: int) -> DataFrame:
    """(rid, component) for every rid; isolated records are their own component."""
    cc = connected_components(_edges(links), max_iterations=max_iterations)
    return rids.join(cc.withColumnRenamed("id", "rid"), "rid", "left").withColumn(
        "component", F.coalesce("component", "rid")
    )


def _single_value(field: str) -> Column:
    """The field as compared for contradictions: a birth date with day and month swapped
    is the same date typed the other way round, not a second person."""
    return date_up_to_swap(F.col(field)) if field == "date_of_birth" else F.col(field)


def _single_values(std: DataFrame, fields: list[str]) -> DataFrame:
    """(rid, <field>...) with each single-valued field as compared for contradictions."""
    return std.select("rid", *[_single_value(f).alias(f) for f in fields])


def _field_ranges(std: DataFrame, clusters: DataFrame, fields: list[str]) -> DataFrame:
    """Per component, the smallest and largest value of each single-valued field
    (``<field>_lo``, ``<field>_hi``)."""
    return (
        std.join(clusters.select("rid", "component"), "rid")
        .groupBy("component")
        .agg(
            *[
                x
                for f in fields
                for x in (F.min(_single_value(f)).alias(f"{f}_lo"), F.max(_single_value(f)).alias(f"{f}_hi"))
            ]
        )
    )


def _contradicted(std: DataFrame, clusters: DataFrame, cfg: StitchConfig) -> DataFrame:
    """Components holding two records that could not be one person on a single-valued
    field: two values data entry does not explain (``disagree``, the veto's test on
    ``single_valued_fields``: typos, transpositions and day/month swaps allowed, one
    field forgiven when everything else agrees).

    The smallest and largest value per component find the candidates in one aggregate;
    only their records are gathered and compared pairwise. A candidate above
    ``max_cluster_size`` records is contradicted without comparing (it is re-examined
    as oversized anyway).
    """
    fields = cfg.single_valued_fields
    if not fields:
        return clusters.select("component").limit(0)
    suspects = (
        _field_ranges(std, clusters, fields)
        .where(" or ".join(f"{f}_lo < {f}_hi" for f in fields))
        .select("component")
    )
    held = (
        std.join(clusters.select("rid", "component").join(suspects, "component"), "rid")
        .groupBy("component")
        .agg(
            F.collect_list(F.struct("rid", *compared_fields(cfg))).alias("held"),
            F.count("*").alias("n"),
        )
    )
    records = F.col("held")
    clash = F.exists(
        records,
        lambda a: F.exists(
            records, lambda b: (a["rid"] < b["rid"]) & disagree(cfg, lambda f: a[f], lambda f: b[f], fields)
        ),
    )
    return held.where((F.col("n") > cfg.max_cluster_size) | clash).select("component")


def _attachments(clusters: DataFrame, rejected: DataFrame, std: DataFrame, cfg: StitchConfig) -> DataFrame:
    """(rid, target, rid_l, rid_r) for the records re-examination left alone that join a
    cluster again: every rejected link of theirs at or above ``attach_threshold`` leads to
    one cluster of two or more records, and they hold no value of a single-valued field
    that this cluster holds otherwise. One row per attaching link.

    Re-examining a contradicted cluster keeps only links whose records share a birth
    date, phone, device or account, so a record holding none of those (a web sign-up
    with a name and an email) loses all its links, even when they all point to one
    person. Reattaching it only where that is unambiguous recovered 1.6 % of the true
    pairs of a 40,000-person slice of the reference preset for 0.1 % of precision.
    """
    assert cfg.attach_threshold is not None
    fields = cfg.single_valued_fields
    sizes = clusters.groupBy("component").agg(F.count("*").alias("n"))
    sized = clusters.select("rid", "component").join(sizes, "component")
    strong = rejected.where(F.col("match_probability") >= cfg.attach_threshold)
    ends = strong.select(
        "rid_l", "rid_r", F.col("rid_l").alias("rid"), F.col("rid_r").alias("other")
    ).unionByName(strong.select("rid_l", "rid_r", F.col("rid_r").alias("rid"), F.col("rid_l").alias("other")))
    candidates = ends.join(sized.where("n = 1").select("rid"), "rid").join(
        sized.where("n > 1").select(F.col("rid").alias("other"), F.col("component").alias("target")), "other"
    )
    unique = (
        candidates.groupBy("rid")
        .agg(F.min("target").alias("target"), F.count_distinct("target").alias("targets"))
        .where("targets = 1")
        .drop("targets")
    )
    if fields:
        side = _single_values(std, fields)
        # Only the clusters someone would join: their members, not every record.
        wanted = unique.select(F.col("target").alias("component")).distinct()
        ranges = _field_ranges(std, clusters.join(wanted, "component"), fields).withColumnRenamed(
            "component", "target"
        )
        fits = F.lit(True)
        for f in fields:
            lo, hi, mine = F.col(f"{f}_lo"), F.col(f"{f}_hi"), F.col(f)
            fits = fits & (mine.isNull() | lo.isNull() | ((lo == mine) & (hi == mine)))
        unique = unique.join(side, "rid").join(ranges, "target").where(fits).select("rid", "target")
    return candidates.join(unique, ["rid", "target"]).select("rid", "target", "rid_l", "rid_r")


def _with_agreement(links: DataFrame, std: DataFrame, fields: list[str]) -> DataFrame:
    """``links`` with ``agree``: its two records share a value of one of ``fields``."""
    side = _single_values(std, fields)
    left = side.select(F.col("rid").alias("rid_l"), *[F.col(f).alias(f"l_{f}") for f in fields])
    right = side.select(F.col("rid").alias("rid_r"), *[F.col(f).alias(f"r_{f}") for f in fields])
    agree = F.lit(False)
    for f in fields:
        agree = agree | F.coalesce(F.col(f"l_{f}") == F.col(f"r_{f}"), F.lit(False))
    return (
        links.join(left, "rid_l")
        .join(right, "rid_r")
        .withColumn("agree", agree)
        .drop(*[f"{s}_{f}" for s in ("l", "r") for f in fields])
    )


@dataclass
class Standardised:
    """Step 1: the records standardised, with what standardisation counted."""

    std: DataFrame  # rid, source_system, source_id, standardised fields (raw values dropped)
    counts: dict[str, int]
    n_records: int
    populated: set[str]  # the fields enough records hold to compare


@dataclass
class DeterministicPass:
    """Step 2: deterministic links and the clusters they make."""

    links: DataFrame  # LINK_COLUMNS
    clusters: DataFrame  # rid, component
    guarded_keys: DataFrame
    n_links_found: int  # before the links of contradicted clusters were dropped
    n_links: int


@dataclass
class ProbabilisticPass:
    """Step 3: Fellegi-Sunter links between deterministic clusters, vetoed or not."""

    links: DataFrame  # accepted on their score: LINK_COLUMNS
    vetoed: DataFrame  # contradicting records: LINK_COLUMNS
    n_vetoed: int
    result: Any  # probabilistic_links' result: plan, model, prior, weights chart


@dataclass
class Clusters:
    """Steps 4-5: the final clusters and every link with whether it was used."""

    clusters: DataFrame  # rid, component, still_contradicted, cluster_size
    used: DataFrame  # LINK_COLUMNS + accepted
    n_oversized: int
    n_contradicted: int
    n_attached: int


class _Laps:
    """Step timings: each ``lap`` records the time since the previous one."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._t0 = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = now - self._t0
        log.info("stitch: %s done in %.1f s", name, self.timings[name])
        self._t0 = now


def standardised(records: DataFrame, cfg: StitchConfig) -> Standardised:
    """Standardise every identity field and count what changed; refuse records with no
    comparable field or a source key given twice."""
    prepare_session(records.sparkSession)
    full = standardise_records(records, cfg, keep_raw=True).persist()
    counts = standardisation_counts(full, cfg)
    std = full.drop(*[RAW_PREFIX + f for f in IDENTITY_FIELDS])
    n_records = counts.pop("records")
    if not n_records:
        raise ValueError("stitch: no identity records to stitch")
    populated = _populated(counts, n_records, cfg)
    _log_standardisation(counts)
    if not populated:
        raise ValueError(
            "stitch: nothing to compare: the records hold no identity field "
            f"(expected some of {list(IDENTITY_FIELDS)}; columns given: {records.columns})"
        )
    dupes = std.groupBy("rid").count().where("count > 1").limit(1).collect()
    if dupes:
        raise ValueError(
            "stitch: identity records must be unique on (source_system, source_id); "
            f"record {dupes[0]['rid']!r} appears {dupes[0]['count']} times"
        )
    return Standardised(std, counts, n_records, populated)


def deterministic_pass(s: Standardised, cfg: StitchConfig, key: bytes) -> DeterministicPass:
    """Links on the strong keys the records hold (with guards), their connected
    components, and contradicted clusters taken apart again."""
    std = s.std
    keys = [k for k in cfg.deterministic_keys if k in s.populated]
    if not keys:
        # No strong key in these records (census-style): every record is its own cluster.
        log.info("stitch: no deterministic key held (%s): no deterministic links", cfg.deterministic_keys)
        links = std.sparkSession.createDataFrame(
            [],
            "rid_l string, rid_r string, keys array<string>, match_probability double, "
            "link_type string, match_weight double",
        )
        clusters = std.select("rid", F.col("rid").alias("component")).localCheckpoint()
        guarded = std.sparkSession.createDataFrame(
            [], "key string, value_hash string, n_records bigint, reason string"
        )
        return DeterministicPass(links, clusters, guarded, 0, 0)
    det = deterministic_links(std, cfg.model_copy(update={"deterministic_keys": keys}), key)
    links = det.links.withColumn("match_weight", F.lit(None).cast("double")).localCheckpoint()
    clusters = _components(std.select("rid"), links, cfg.max_iterations)
    # Closure can join people no single key contradicts (A shares an email with B, B a
    # device with C): a deterministic cluster holding two values of a field a person has
    # one of is contradicted, and its records go to the probabilistic pass unlinked.
    contradicted = _contradicted(std, clusters, cfg)
    # Dropping every link of a contradicted cluster leaves its records as singletons and
    # every other cluster as it was: no second connected-components run is needed.
    clusters = (
        clusters.join(contradicted.withColumn("bad", F.lit(True)), "component", "left")
        .withColumn("component", F.when(F.col("bad"), F.col("rid")).otherwise(F.col("component")))
        .localCheckpoint()
    )
    bad_rids = clusters.where(F.col("bad")).select(F.col("rid").alias("rid_l"))
    clusters = clusters.drop("bad")
    n_found = links.count()
    links = links.join(bad_rids, "rid_l", "left_anti").localCheckpoint()
    return DeterministicPass(links, clusters, det.guarded_keys, n_found, links.count())


def probabilistic_pass(
    s: Standardised, det: DeterministicPass, cfg: StitchConfig, seed: int
) -> ProbabilisticPass:
    """Splink's Fellegi-Sunter links between deterministic clusters; a link whose records
    contradict each other (two first names, two birth dates) is vetoed, not accepted on
    its score: agreeing on a household's address and landline outweighs both in the model."""
    std = s.std
    std_c = std.join(det.clusters.withColumnRenamed("component", "det_cluster"), "rid")
    prob = probabilistic_links(
        std_c, cfg, n_deterministic_pairs=det.n_links, populated=s.populated, seed=seed
    )
    judged = (
        with_conflict(prob.links, std, cfg)
        if cfg.veto_conflicts
        else prob.links.withColumn("conflict", F.lit(False))
    )
    judged = (
        judged.withColumns({"link_type": F.lit("probabilistic"), "keys": F.array().cast("array<string>")})
        .select(*LINK_COLUMNS, "conflict")
        .localCheckpoint()
    )
    vetoed = judged.where(F.col("conflict")).select(*LINK_COLUMNS)
    return ProbabilisticPass(
        judged.where(~F.col("conflict")).select(*LINK_COLUMNS), vetoed, vetoed.count(), prob
    )


def merged_clusters(det: DeterministicPass, prob_links: DataFrame, cfg: StitchConfig) -> DataFrame:
    """(rid, component): deterministic clusters are connected already, so each is
    contracted to one vertex and the components run over the probabilistic links between
    them only."""
    # From the checkpointed clusters: taken from the records joined with their clusters,
    # that join ran again (docs/architecture.md, "Measured choices").
    member = det.clusters.select("rid", F.col("component").alias("det_cluster"))
    between = (
        prob_links.join(member.withColumnRenamed("rid", "rid_l"), "rid_l")
        .select("rid_r", F.col("det_cluster").alias("src"))
        .join(member.withColumnRenamed("rid", "rid_r"), "rid_r")
        .select("src", F.col("det_cluster").alias("dst"))
    )
    merged = connected_components(between, max_iterations=cfg.max_iterations)
    return (
        member.join(merged.withColumnRenamed("id", "det_cluster"), "det_cluster", "left")
        .select("rid", F.coalesce("component", "det_cluster").alias("component"))
        .localCheckpoint()
    )


def clusters_to_review(std: DataFrame, clusters: DataFrame, cfg: StitchConfig) -> DataFrame:
    """(component, oversized, contradicted): clusters above ``max_cluster_size`` records
    or holding records that cannot be one person."""
    sizes = clusters.groupBy("component").agg(F.count("*").alias("cluster_size"))
    oversized = sizes.where(F.col("cluster_size") > cfg.max_cluster_size).select("component")
    contradicted = _contradicted(std, clusters, cfg)
    return (
        oversized.withColumns({"oversized": F.lit(True), "contradicted": F.lit(False)})
        .unionByName(contradicted.withColumns({"oversized": F.lit(False), "contradicted": F.lit(True)}))
        .groupBy("component")
        .agg(F.max("oversized").alias("oversized"), F.max("contradicted").alias("contradicted"))
        .localCheckpoint()
    )


def reexamined(
    std: DataFrame, clusters: DataFrame, links: DataFrame, review: DataFrame, cfg: StitchConfig
) -> tuple[DataFrame, DataFrame, DataFrame, int]:
    """Re-examine the clusters under review: in a contradicted cluster keep only links
    whose records agree on a single-valued field (same phone, birth date, device or
    account); in an oversized one, deterministic links and links at the strict threshold.
    Records left alone may attach again (``_attachments``). Returns the clusters, the
    links rejected (rid_l, rid_r, rejected), the reviewed records (rid) and how many
    records were reattached."""
    members = clusters.join(review, "component").select("rid", "contradicted")
    under_review = links.join(members.withColumnRenamed("rid", "rid_l"), "rid_l")
    under_review = _with_agreement(under_review, std, cfg.single_valued_fields)
    keep = F.when(F.col("contradicted"), F.col("agree")).otherwise(
        (F.col("link_type") == "deterministic") | (F.col("match_probability") >= cfg.strict_threshold)
    )
    judged = under_review.withColumn("kept", keep).localCheckpoint()
    re_cc = _components(members.select("rid"), judged.where("kept"), cfg.max_iterations).withColumnRenamed(
        "component", "strict_component"
    )
    clusters = (
        clusters.join(re_cc, "rid", "left")
        .withColumn("component", F.coalesce("strict_component", "component"))
        .drop("strict_component")
        .localCheckpoint()
    )
    rejected = judged.where(~F.col("kept"))
    n_attached = 0
    if cfg.attach_threshold is not None:
        attached = _attachments(clusters, rejected, std, cfg).localCheckpoint()
        n_attached = attached.select("rid").distinct().count()
        targets = attached.select("rid", "target").distinct()
        clusters = (
            clusters.join(targets, "rid", "left")
            .withColumn("component", F.coalesce("target", "component"))
            .drop("target")
            .localCheckpoint()
        )
        rejected = rejected.join(attached.select("rid_l", "rid_r"), ["rid_l", "rid_r"], "left_anti")
    rejected = rejected.select("rid_l", "rid_r", F.lit(True).alias("rejected"))
    return clusters, rejected, members.select("rid"), n_attached


def final_clusters(
    s: Standardised, det: DeterministicPass, prob: ProbabilisticPass, cfg: StitchConfig
) -> Clusters:
    """Steps 4-5: connected components over the accepted links, oversized and
    contradicted clusters re-examined, and whether a cluster is still contradicted."""
    std = s.std
    links = det.links.select(*LINK_COLUMNS).unionByName(prob.links).localCheckpoint()
    clusters = merged_clusters(det, prob.links, cfg)
    sizes = clusters.groupBy("component").agg(F.count("*").alias("cluster_size"))
    review = clusters_to_review(std, clusters, cfg)
    # Counted from the checkpoint: the contradiction aggregate over every record runs once.
    counts = review.agg(
        F.sum(F.col("oversized").cast("int")).alias("oversized"),
        F.sum(F.col("contradicted").cast("int")).alias("contradicted"),
    ).collect()[0]
    n_oversized, n_contradicted = int(counts["oversized"] or 0), int(counts["contradicted"] or 0)
    used = links.withColumn("accepted", F.lit(True)).unionByName(
        prob.vetoed.withColumn("accepted", F.lit(False))
    )
    n_attached = 0
    # With nothing to re-examine no cluster is contradicted; otherwise only the clusters
    # re-examination changed can be (below).
    still_contradicted = clusters.select("component").limit(0)
    if n_oversized or n_contradicted:
        log.warning(
            "stitch: re-examining %d clusters above %d records and %d contradicted clusters",
            n_oversized,
            cfg.max_cluster_size,
            n_contradicted,
        )
        clusters, rejected, reviewed, n_attached = reexamined(std, clusters, links, review, cfg)
        sizes = clusters.groupBy("component").agg(F.count("*").alias("cluster_size"))
        used = (
            used.join(rejected, ["rid_l", "rid_r"], "left")
            .withColumn("accepted", F.col("accepted") & F.col("rejected").isNull())
            .drop("rejected")
        )
        # A cluster holding none of the re-examined records kept its records (a record is
        # only reattached from a re-examined cluster, into the cluster it joins, which then
        # holds it) and was not contradicted: only the others are checked again, not every
        # record (the contradiction check's join and aggregate over every record).
        changed = clusters.join(reviewed, "rid", "left_semi").select("component").distinct()
        still_contradicted = _contradicted(std, clusters.join(changed, "component", "left_semi"), cfg)
    clusters = clusters.join(
        still_contradicted.withColumn("still_contradicted", F.lit(True)), "component", "left"
    ).join(sizes, "component")
    return Clusters(clusters, used, n_oversized, n_contradicted, n_attached)


def identity_map_of(std: DataFrame, c: Clusters, ids: DataFrame, cfg: StitchConfig) -> DataFrame:
    """(source_system, source_id, customer_id, match_confidence, cluster_size,
    review_reason). A record's confidence is its strongest accepted link (1.0 for
    deterministic ones and for singletons)."""
    accepted = c.used.where("accepted")
    ends = accepted.select(F.col("rid_l").alias("rid"), "match_probability").unionByName(
        accepted.select(F.col("rid_r").alias("rid"), "match_probability")
    )
    confidence = ends.groupBy("rid").agg(F.max("match_probability").alias("match_confidence"))
    return (
        std.select("rid", "source_system", "source_id")
        .join(ids, "rid")
        .join(c.clusters.select("rid", "cluster_size", "still_contradicted"), "rid")
        .join(confidence, "rid", "left")
        .select(
            "source_system",
            "source_id",
            "customer_id",
            F.coalesce("match_confidence", F.lit(1.0)).alias("match_confidence"),
            "cluster_size",
            F.when(F.col("cluster_size") > cfg.max_cluster_size, F.lit("oversized_cluster"))
            .when(F.col("still_contradicted"), F.lit("contradicted_cluster"))
            .alias("review_reason"),
        )
        .localCheckpoint()
    )


def per_customer(identity_map: DataFrame) -> DataFrame:
    """(customer_id, min_confidence, size, records): a customer's confidence is its
    weakest member's."""
    return identity_map.groupBy("customer_id").agg(
        F.min("match_confidence").alias("min_confidence"),
        F.max("cluster_size").alias("size"),
        F.count("*").alias("records"),
    )


def customer_counts(weakest: DataFrame, cfg: StitchConfig) -> Row:
    """Customers, singletons, low-confidence and still oversized customers (one row);
    ``IdCollisionError`` when an id names more than one cluster."""
    summary = weakest.agg(
        F.count("*").alias("customers"),
        F.sum(F.when(F.col("size") == 1, 1).otherwise(0)).alias("singletons"),
        F.sum(F.when(F.col("min_confidence") < cfg.low_confidence, 1).otherwise(0)).alias("low"),
        F.sum(F.when(F.col("size") > cfg.max_cluster_size, 1).otherwise(0)).alias("still_oversized"),
        # an id over two clusters holds more records than its cluster's size
        F.sum(F.when(F.col("records") != F.col("size"), 1).otherwise(0)).alias("shared_ids"),
    ).collect()[0]
    if summary["shared_ids"]:
        raise IdCollisionError(
            f"stitch: {summary['shared_ids']} customer ids each name more than one cluster"
        )
    return summary


def stitch_metrics(
    s: Standardised,
    det: DeterministicPass,
    prob: ProbabilisticPass,
    c: Clusters,
    summary: Row,
    guarded: DataFrame,
) -> dict[str, float]:
    """What stitching did, in numbers (logged and sent to MLflow by the stage)."""
    link_counts = {
        (r["link_type"], r["accepted"]): r["count"]
        for r in c.used.groupBy("link_type", "accepted").count().collect()
    }
    metrics: dict[str, float] = {
        "records": s.n_records,
        "deterministic_links": det.n_links,
        "deterministic_links_dropped_contradicted": det.n_links_found - det.n_links,
        "probabilistic_links": float(sum(v for (t, _), v in link_counts.items() if t == "probabilistic")),
        "probabilistic_links_vetoed": prob.n_vetoed,
        "links_rejected_by_strict_pass": float(sum(v for (_, a), v in link_counts.items() if not a))
        - prob.n_vetoed,
        "customers": summary["customers"],
        "singletons": summary["singletons"],
        "oversized_clusters": c.n_oversized,
        "contradicted_clusters": c.n_contradicted,
        "oversized_clusters_after_strict_pass": summary["still_oversized"],
        "records_reattached": c.n_attached,
        "low_confidence_customers": summary["low"],
        "guarded_key_values": guarded.count(),
        "candidate_pairs_estimated": prob.result.plan.estimated_pairs,
        "blocking_rules_skipped": sum(1 for r in prob.result.plan.rules if not r["used"]),
        "prior_match_probability": prob.result.prior,
        **{f"{k}": v for k, v in s.counts.items()},
    }
    return {k: float(v) for k, v in metrics.items()}


def stitch_identities(
    records: DataFrame,
    settings: StitchSettings | None = None,
    previous_map: DataFrame | None = None,
    *,
    seed: int = 42,
    retired_ids: DataFrame | None = None,
    id_salt: str = "",
    pseudonym_key: bytes | None = None,
) -> StitchResult:
    """Stitch identity records (the identity_records contract; any identity column may
    be null or absent) into customers.

    1. standardise; 2. deterministic links on strong keys, with guards; 3. Fellegi-Sunter
    links (Splink) between the deterministic clusters, within a comparison budget;
    4. connected components over accepted links, oversized clusters re-examined at the
    strict threshold; 5. stable ids (kept from ``previous_map``, never reissuing one of
    it or of ``retired_ids``; each id names one cluster, checked); 6. golden records.
    Ids and guarded key values are HMACs under ``pseudonym_key`` (default: the
    environment's or local key, ``custseg.privacy.pseudonym_key``).
    """
    cfg = settings or StitchConfig()
    key = pseudonym_key or privacy_key(PrivacyConfig())
    laps = _Laps()
    s = standardised(records, cfg)
    laps.lap("standardise")
    det = deterministic_pass(s, cfg, key)
    laps.lap("deterministic")
    prob = probabilistic_pass(s, det, cfg, seed)
    laps.lap("probabilistic")
    c = final_clusters(s, det, prob, cfg)
    laps.lap("clustering")
    ids = assign_ids(
        c.clusters.select("rid", "component"), cfg.id_prefix, previous_map, retired_ids, salt=id_salt, key=key
    )
    identity_map = identity_map_of(s.std, c, ids.ids, cfg)
    weakest = per_customer(identity_map)
    customers = golden_records(s.std, ids.ids, cfg).join(
        weakest.select("customer_id", "min_confidence"), "customer_id", "left"
    )
    laps.lap("ids_and_golden")
    summary = customer_counts(weakest, cfg)
    guarded = det.guarded_keys.localCheckpoint()
    metrics = stitch_metrics(s, det, prob, c, summary, guarded)
    log.info("stitch: %s", {k: round(v, 4) for k, v in metrics.items()})
    return StitchResult(
        links=c.used.select(
            F.col("rid_l").alias("record_l"),
            F.col("rid_r").alias("record_r"),
            *LINK_COLUMNS[2:],
            "accepted",
        ),
        identity_map=identity_map,
        customers=customers,
        id_changes=ids.changes,
        guarded_keys=guarded,
        metrics=metrics,
        blocking=prob.result.plan,
        model=prob.result.model,
        match_weights_html=prob.result.match_weights_html,
        timings=laps.timings,
    )
