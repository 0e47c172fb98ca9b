"""The table catalog: every table custseg writes, with its layer, owner stage, key and
meaning. Code names a table through the constants here, never through a string literal;
``docs/tables.md`` is rendered from this module (``render_markdown``) and a test fails
when the document is stale.

Three names are settings with these defaults (``segment.features_table``,
``segment.score_output``, ``insights.segments_table``): a run may point them elsewhere;
the catalog lists the defaults.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

LAYERS = ("bronze", "silver", "gold")
META = "meta"


@dataclass(frozen=True)
class Table:
    name: str  # layer.table
    owner: str  # the stage (or service) that writes it
    key: tuple[str, ...]  # the columns that identify a row (empty: a log, no key)
    meaning: str
    pii: bool = False  # holds raw personal data (bronze and silver identity tables only)

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def short(self) -> str:
        return self.name.split(".", 1)[1]


_TABLES: list[Table] = []


def _table(name: str, owner: str, key: tuple[str, ...], meaning: str, pii: bool = False) -> str:
    _TABLES.append(Table(name, owner, key, meaning, pii))
    return name


# bronze: the data contract applied to the raw sources (stage ingest)
TRANSACTIONS = _table(
    "bronze.transactions",
    "ingest",
    ("transaction_id",),
    "Orders with amount, discount, cost, category and channel.",
)
SUPPORT_CONTACTS = _table(
    "bronze.support_contacts",
    "ingest",
    ("contact_id",),
    "Support contacts with channel, handling time and cost.",
)
PRODUCT_USAGE = _table(
    "bronze.product_usage",
    "ingest",
    ("source_system", "source_id", "date"),
    "Daily product usage per source account: sessions, events, minutes, features used.",
)
MARKETING_TOUCHES = _table(
    "bronze.marketing_touches",
    "ingest",
    ("touch_id",),
    "Marketing touches with channel, campaign, cost and funnel stage.",
)
CUSTOMER_ATTRIBUTES = _table(
    "bronze.customer_attributes",
    "ingest",
    ("source_system", "source_id"),
    "Account attributes per source record (plan, region, acquisition channel and cost, ...).",
)
IDENTITY_RECORDS = _table(
    "bronze.identity_records",
    "ingest",
    ("source_system", "source_id"),
    "Identity records from the web, app and call-centre systems (names, emails, phones, ...).",
    pii=True,
)
QUARANTINE = _table(
    "bronze.quarantine",
    "ingest",
    ("table", "source", "reason", "raw_hash", "occurrence"),
    "Rows the contract refused, with the reason and the raw record.",
    pii=True,
)
INGEST_FILES = _table(
    "bronze.ingest_files", "ingest", ("table", "source_file"), "The source files each ingest run took in."
)

# silver: one customer per person (stage stitch)
IDENTITY_MAP = _table(
    "silver.identity_map",
    "stitch",
    ("source_system", "source_id"),
    "Each source record's customer id, match confidence, cluster size and review reason.",
)
IDENTITY_LINKS = _table(
    "silver.identity_links",
    "stitch",
    ("record_l", "record_r"),
    "Pairs of records linked, deterministically or by Fellegi-Sunter score, accepted or not.",
)
CUSTOMERS = _table(
    "silver.customers",
    "stitch",
    ("customer_id",),
    "Golden records: one row per customer, each field with the source it came from.",
    pii=True,
)
IDENTITY_ID_CHANGES = _table(
    "silver.identity_id_changes",
    "stitch",
    ("old_customer_id", "new_customer_id", "_run_id"),
    "Customer ids merged or split by each stitch run (appended).",
)
STITCH_GUARDED_KEYS = _table(
    "silver.stitch_guarded_keys",
    "stitch",
    ("key", "value_hash"),
    "Hashed key values shared by too many records to link on (placeholders, shared phones).",
)

# gold: features, segments, value and insights
CUSTOMER_FEATURES = _table(
    "gold.customer_features",
    "features",
    ("customer_id", "snapshot_date"),
    "Windowed RFM, engagement and cost-to-serve features per customer and month-end snapshot.",
)
FEATURE_EVENT_MAPPING = _table(
    "gold.feature_event_mapping",
    "features",
    ("table",),
    "Per event table: events, mapped to a customer, unmapped and anonymous.",
)
SEGMENT_ASSIGNMENTS = _table(
    "gold.segment_assignments",
    "segment",
    ("customer_id",),
    "The chosen segmentation's segment and name per customer at the fitted snapshot.",
)
SEGMENT_MODEL_SELECTION = _table(
    "gold.segment_model_selection",
    "segment",
    ("algorithm", "k"),
    "Every candidate (algorithm, k): cost, silhouette, bootstrap stability and the choice.",
)
SEGMENT_STABILITY = _table(
    "gold.segment_stability",
    "segment",
    ("k", "cluster"),
    "Per candidate cluster: bootstrap Jaccard, dissolved and recovered counts, verdict.",
)
SEGMENT_PERSONA_CROSSTAB = _table(
    "gold.segment_persona_crosstab",
    "segment",
    ("legacy_persona", "segment_name"),
    "Customers per legacy persona and segment.",
)
SEGMENT_PERSONA_ASSOCIATION = _table(
    "gold.segment_persona_association",
    "segment",
    (),
    "Cramer's V between legacy persona and segment, with its bootstrap interval.",
)
SEGMENT_SNAPSHOTS = _table(
    "gold.segment_snapshots",
    "score",
    ("customer_id", "snapshot_date"),
    "The registered model's segment for every customer of every feature snapshot.",
)
CUSTOMER_CLV = _table(
    "gold.customer_clv",
    "clv",
    ("customer_id",),
    "BG/NBD + Gamma-Gamma summaries and predictions (purchases, P(alive), CLV) per customer.",
)
CLV_SEGMENT_CHECK = _table(
    "gold.clv_segment_check",
    "clv",
    ("segment",),
    "Segments ranked by their value column and by predicted CLV, and whether the ranks agree.",
)
SEGMENT_PROFILES = _table(
    "gold.segment_profiles",
    "insights",
    ("segment_name",),
    "Per segment: customers, revenue, margin, cost to serve, CLV, with intervals.",
)
SEGMENT_TRAITS = _table(
    "gold.segment_traits",
    "insights",
    ("segment_name", "attribute", "value"),
    "Attribute values over-represented in a segment (share, lift, intervals).",
)
COST_TO_SERVE = _table(
    "gold.cost_to_serve",
    "insights",
    ("segment_name",),
    "Support and marketing cost per customer and share of revenue.",
)
SERVICE_SCENARIOS = _table(
    "gold.service_scenarios",
    "insights",
    ("scenario", "segment_name"),
    "What-if service changes: cost to serve and profit before and after.",
)
STITCH_QUALITY_BY_SEGMENT = _table(
    "gold.stitch_quality_by_segment",
    "insights",
    ("segment_name",),
    "Share of customers and revenue resting on a low-confidence identity match.",
)
CHURN_RISK = _table(
    "gold.churn_risk", "insights", ("segment_name",), "Customers and CLV at risk (low P(alive)) per segment."
)
CHURN_DRIVERS = _table(
    "gold.churn_drivers",
    "insights",
    ("feature",),
    "Features ranked by their Spearman correlation with P(alive).",
)
VALUE_CONCENTRATION = _table(
    "gold.value_concentration",
    "insights",
    ("measure", "metric"),
    "How concentrated revenue, margin and CLV are (top shares, Gini), with intervals.",
)
VALUE_CURVES = _table(
    "gold.value_curves",
    "insights",
    ("measure", "curve", "customer_share"),
    "Lorenz curves of each value measure.",
)
MISALLOCATION_COHORT = _table(
    "gold.misallocation_cohort",
    "insights",
    ("customer_id",),
    "Customers the business invests in most but who return least (investment vs value percentiles).",
)
MISALLOCATION_SUMMARY = _table(
    "gold.misallocation_summary",
    "insights",
    ("section", "group", "subgroup", "metric"),
    "The misallocated cohort's size, cost and make-up, with intervals.",
)
SEGMENT_MIGRATION = _table(
    "gold.segment_migration",
    "insights",
    ("period", "from_snapshot", "to_snapshot", "from_segment", "to_segment"),
    "Customers moving between segments from one snapshot to the next.",
)
SEGMENT_FLOWS = _table(
    "gold.segment_flows",
    "insights",
    ("from_snapshot", "to_snapshot", "segment_name"),
    "Per segment and period: start, end, inflow, outflow and new customers.",
)
CHANNEL_ECONOMICS = _table(
    "gold.channel_economics",
    "insights",
    ("channel", "segment_name"),
    "Marketing channels' cost, funnel conversion and the value of the customers they reach.",
)
KPI_MONTHLY = _table(
    "gold.kpi_monthly",
    "insights",
    ("month",),
    "Monthly revenue, margin, costs, orders and active and new customers.",
)
KPI_TRENDS = _table("gold.kpi_trends", "insights", ("kpi",), "Each KPI's trend per month with its interval.")
KPI_FORECAST = _table(
    "gold.kpi_forecast",
    "insights",
    ("kpi", "month"),
    "Each KPI forecast for the coming months with its interval.",
)
KPI_ANOMALIES = _table(
    "gold.kpi_anomalies", "insights", ("kpi", "month"), "Months where a KPI left its expected range."
)
KPI_TESTS = _table(
    "gold.kpi_tests",
    "insights",
    ("test", "measure", "group"),
    "Kruskal-Wallis tests of whether segments differ in a measure.",
)
RECOMMENDATIONS = _table(
    "gold.recommendations",
    "insights",
    ("rule", "subject"),
    "Actions proposed by the rules, each with its evidence.",
)
INSIGHT_HEADLINES = _table(
    "gold.insight_headlines",
    "insights",
    ("name",),
    "The answers in words, every number read from the tables.",
)

# meta: run bookkeeping (written by the runner and services, not by a stage's transform)
STAGE_RUNS = _table(
    "meta.stage_runs",
    "pipeline",
    ("stage", "run_id"),
    "Each stage run's status and the table versions it read and published.",
)
RUN_SETTINGS = _table(
    "meta.run_settings",
    "pipeline",
    ("run_id", "key"),
    "Values a run fixed once (e.g. ingest.as_of) for its reruns.",
)
LEASES = _table("meta.leases", "pipeline", ("name",), "Who holds the warehouse, until when.")
ERASURES = _table(
    "meta.erasures",
    "forget",
    ("customer_key",),
    "Erasures done: the customer's pseudonym, when, and the rows removed per table.",
)
SUPPRESSED_SOURCES = _table(
    "meta.suppressed_sources",
    "forget",
    ("source_key",),
    "Pseudonyms of erased people's source records, kept out of later ingests.",
)

TABLES: dict[str, Table] = {t.name: t for t in _TABLES}


def table(name: str) -> Table:
    """The catalog entry of ``name``; KeyError naming the known tables when absent."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"table {name!r} is not in the catalog (custseg.catalog): {sorted(TABLES)}") from None


def owned_by(stage: str) -> list[str]:
    """The tables ``stage`` writes, in catalog order."""
    return [t.name for t in _TABLES if t.owner == stage]


def bronze(short: str) -> str:
    """``bronze.<short>`` for a contract table name, checked against the catalog."""
    return table(f"bronze.{short}").name


def render_markdown() -> str:
    """``docs/tables.md``: the catalog as a document."""
    lines = [
        "# Tables",
        "",
        "Every table custseg writes, rendered from `src/custseg/catalog.py` by",
        "`python -m custseg.catalog > docs/tables.md` (a test fails when this file is stale).",
        "Layers: **bronze** holds the sources as the data contract accepted them, **silver**",
        "one customer per person, **gold** features, segments, value and insights, **meta**",
        "run bookkeeping. Raw personal data (PII) stays in the tables marked so.",
        "",
    ]
    for layer in (*LAYERS, META):
        lines += [f"## {layer}", "", "| table | written by | key | meaning |", "|---|---|---|---|"]
        for t in _TABLES:
            if t.layer == layer:
                key = ", ".join(f"`{k}`" for k in t.key) or "(none)"
                pii = " **PII.**" if t.pii else ""
                lines.append(f"| `{t.name}` | {t.owner} | {key} | {t.meaning}{pii} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
